"""What the device remembers about automatic backup (kept inside the encrypted store).

The recovery secret itself is never stored. ``backup --enable`` derives the
backup key once and keeps the derived key (with its salt, KDF parameters and
key check) here, protected by the local passphrase, so that the automatic
backup after every change needs no prompt. Every backup written until the next
``--enable`` shares that salt and key, with a fresh nonce each time.
"""

import base64
from dataclasses import dataclass, replace
from typing import Optional

from authenticator.crypto import KdfParams

DIRECTORY = "directory"


@dataclass(frozen=True)
class BackupSettings:
    location: str
    kdf: KdfParams
    salt: bytes
    encryption_key: bytes
    key_check: bytes
    storage: str = DIRECTORY
    last_backup_at: Optional[str] = None
    # SHA-256 (hex) of the file this device wrote last: an automatic backup overwrites the file at
    # ``location`` only while it is still that one (another device may have taken the folder over).
    # None in settings written before it was kept.
    written_sha256: Optional[str] = None
    # SHA-256 of the file being written: saved in the store before the file is written and cleared
    # once the store records it as written, so that after a crash in between the file at
    # ``location`` (the old one or the new one) is still recognised as this device's own.
    pending_sha256: Optional[str] = None

    def expecting(self, pending_sha256: str) -> "BackupSettings":
        return replace(self, pending_sha256=pending_sha256)

    def after_write(self, when: str, written_sha256: str) -> "BackupSettings":
        return replace(self, last_backup_at=when, written_sha256=written_sha256, pending_sha256=None)

    def to_dict(self) -> dict:
        return {
            "storage": self.storage,
            "location": self.location,
            "kdf": {"name": "scrypt", "n": self.kdf.n, "r": self.kdf.r, "p": self.kdf.p},
            "salt": _b64(self.salt),
            "encryption_key": _b64(self.encryption_key),
            "key_check": _b64(self.key_check),
            "last_backup_at": self.last_backup_at,
            "written_sha256": self.written_sha256,
            "pending_sha256": self.pending_sha256,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "BackupSettings":
        kdf = data["kdf"]
        return cls(
            storage=data["storage"],
            location=data["location"],
            kdf=KdfParams(n=kdf["n"], r=kdf["r"], p=kdf["p"]),
            salt=base64.b64decode(data["salt"]),
            encryption_key=base64.b64decode(data["encryption_key"]),
            key_check=base64.b64decode(data["key_check"]),
            last_backup_at=data.get("last_backup_at"),
            written_sha256=data.get("written_sha256"),
            pending_sha256=data.get("pending_sha256"),
        )


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
