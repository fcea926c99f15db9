"""The backup container, version 1: a fixed 80-byte header, then AES-256-GCM ciphertext.

Layout (big-endian; see ``docs/backup-format.md``)::

    0   8  magic b"IDPAUTHB"
    8   2  format version (1)
    10  1  KDF id (1 = scrypt)
    11  1  log2(scrypt n)
    12  2  scrypt r
    14  2  scrypt p
    16 16  salt
    32 32  key check (HMAC-SHA256, see authenticator.crypto)
    64 12  nonce
    76  4  ciphertext length L (tag included)
    80  L  ciphertext || 16-byte tag; associated data = bytes 0..79

Reading checks, in order, so each failure gets its own error: magic, version
(before the header length, as a newer version may have another header),
completeness against the lengths the header declares (truncated), the key
check (wrong secret), then the GCM tag (tampered).
"""

import struct
from dataclasses import dataclass

from authenticator import crypto
from authenticator.errors import (
    AuthenticatorError,
    BackupTampered,
    BackupTruncated,
    UnsupportedBackupVersion,
    WrongRecoverySecret,
)

MAGIC = b"IDPAUTHB"
VERSION = 1
KDF_SCRYPT = 1
PURPOSE = b"idp-authenticator backup"
_HEADER = struct.Struct(">8sHBBHH16s32s12sI")
HEADER_SIZE = _HEADER.size  # 80
TAG_SIZE = 16
# No backup is larger (a TOTP account takes about 200 bytes of payload): a storage refuses a bigger
# file before reading it, since the length field alone would let a file of 4 GiB be read whole before
# any check, and writers refuse to write one.
MAX_FILE_SIZE = 16 * 2**20


@dataclass(frozen=True)
class BackupKey:
    """Everything needed to write backups without asking for the secret again."""

    kdf: crypto.KdfParams
    salt: bytes
    keys: crypto.DerivedKeys


def new_backup_key(recovery_secret: str) -> BackupKey:
    params = crypto.KdfParams.for_new_file(crypto.BACKUP_N, p=1)
    salt = crypto.new_salt()
    return BackupKey(params, salt, crypto.derive_keys(recovery_secret, salt, params, PURPOSE))


def seal_backup(key: BackupKey, payload: bytes) -> bytes:
    if HEADER_SIZE + len(payload) + TAG_SIZE > MAX_FILE_SIZE:
        raise AuthenticatorError(f"too many accounts for one backup (more than {MAX_FILE_SIZE >> 20} MiB)")
    nonce = crypto.new_nonce()
    header = _HEADER.pack(
        MAGIC, VERSION, KDF_SCRYPT, key.kdf.log2_n, key.kdf.r, key.kdf.p,
        key.salt, key.keys.key_check, nonce, len(payload) + TAG_SIZE,
    )
    return header + crypto.seal(key.keys.encryption_key, nonce, payload, header)


def salt_of(blob: bytes):
    """The salt in a version-1 header (it identifies the ``backup --enable`` that wrote the file), else None."""
    if len(blob) < HEADER_SIZE or blob[: len(MAGIC)] != MAGIC:
        return None
    return _HEADER.unpack_from(blob)[6]


def open_backup(blob: bytes, recovery_secret: str) -> bytes:
    """Return the payload bytes, or raise the error that says what is wrong."""
    return _open(blob, lambda params, salt: crypto.derive_keys(recovery_secret, salt, params, PURPOSE))


def open_own_backup(blob: bytes, key: BackupKey) -> bytes:
    """``open_backup`` for a file this device wrote, with the key it kept (no recovery secret, no scrypt)."""
    return _open(blob, lambda params, salt: key.keys)


def _open(blob: bytes, keys_for) -> bytes:
    """The checks of ``open_backup``, in order; ``keys_for(params, salt)`` gives the derived keys."""
    if len(blob) < len(MAGIC):
        if MAGIC.startswith(blob):
            raise BackupTruncated("the backup is truncated (shorter than its header)")
        raise BackupTampered("the file is not an idp-authenticator backup")
    if blob[: len(MAGIC)] != MAGIC:
        raise BackupTampered("the file is not an idp-authenticator backup (wrong magic bytes)")
    if len(blob) < len(MAGIC) + 2:
        raise BackupTruncated("the backup is truncated (shorter than its header)")
    (version,) = struct.unpack_from(">H", blob, len(MAGIC))
    if version > VERSION:
        raise UnsupportedBackupVersion(
            f"the backup uses format version {version}, newer than this app supports ({VERSION}); update idp-authenticator"
        )
    if version != VERSION:
        raise UnsupportedBackupVersion(f"the backup uses unknown format version {version}")
    if len(blob) < HEADER_SIZE:
        raise BackupTruncated("the backup is truncated (shorter than its header)")
    _, _, kdf_id, log2_n, r, p, salt, key_check, nonce, length = _HEADER.unpack_from(blob)
    if len(blob) < HEADER_SIZE + length:
        raise BackupTruncated(
            f"the backup is truncated ({len(blob)} bytes, its header declares {HEADER_SIZE + length})"
        )
    if len(blob) > HEADER_SIZE + length or length < TAG_SIZE:
        raise BackupTampered("the backup was tampered with (its length does not match its header)")
    if kdf_id != KDF_SCRYPT or log2_n >= 63:
        raise BackupTampered("the backup was tampered with (unknown key derivation)")
    params = crypto.KdfParams(n=1 << log2_n, r=r, p=p)
    try:
        params.validate().ensure_not_weakened()
    except crypto.WeakKdfParams:
        raise BackupTampered("the backup was tampered with (its key derivation parameters are weaker than any "
                             f"backup this app writes; {crypto.WEAK_FILE_HINT})") from None
    except crypto.InvalidKdfParams:
        raise BackupTampered("the backup was tampered with (unusable key derivation parameters)") from None
    keys = keys_for(params, salt)
    if not keys.matches(key_check):
        raise WrongRecoverySecret("wrong recovery secret for this backup")
    header = blob[:HEADER_SIZE]
    try:
        return crypto.unseal(keys.encryption_key, nonce, blob[HEADER_SIZE:], header)
    except crypto.DecryptionFailed:
        raise BackupTampered("the backup was tampered with (authentication failed)") from None
