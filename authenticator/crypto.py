"""Key derivation and authenticated encryption, shared by the store and backups.

Both the local store (under the device passphrase) and a backup (under the
recovery secret) use the same recipe, so it is written once:

* scrypt(secret, salt, n, r, p) -> 32-byte master key. The secret is
  Unicode-NFC-normalised and UTF-8 encoded, so the same words typed on any
  platform give the same key.
* HKDF-SHA256(master, info=<purpose> + b" encryption") -> the AES-256-GCM key.
* HKDF-SHA256(master, info=<purpose> + b" key-check") -> a key that MACs a
  constant. The MAC is stored beside the salt, so a wrong secret is reported
  as such *before* decryption; without it, a wrong secret and a tampered
  ciphertext would both be a bare GCM authentication failure.

The scrypt cost is recorded with every salt, so a file is always opened with
the parameters it was written with. ``IDP_AUTHENTICATOR_SCRYPT_N`` lowers the
cost for new files; it exists for the test suite only, and the app says so on
stderr whenever it uses it (leaked into a real environment, it would make every
new store and backup cheap to attack, for good).
"""

import functools
import hmac
import os
import secrets
import unicodedata
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from authenticator.errors import AuthenticatorError
from authenticator.terminal import warn

SCRYPT_N_ENV = "IDP_AUTHENTICATOR_SCRYPT_N"
DEFAULT_N = 2**15
# The local store is unlocked by every command, so its cost is OWASP's scrypt row for N = 2**15
# (32 MiB): p = 3, the work of N = 2**17 in a quarter of the memory. (Stores made with p = 1
# before keep opening: the parameters travel with each salt.)
STORE_P = 3
# A backup travels to storage others may read (a synced folder, a cloud drive) and its key is
# derived once per `backup --enable` and per restore, not per command: it can afford OWASP's
# scrypt cost (N = 2**17, 128 MiB) against offline guessing of the recovery secret.
BACKUP_N = 2**17
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
NONCE_BYTES = 12
KEY_CHECK_CONSTANT = b"idp-authenticator key check v1"

# Refuse parameters a hostile file could use to exhaust memory or time. Each bound alone is not
# enough: N = 2**20 with r = 8 needs 1 GiB, and p = 16 multiplies the time by 16. scrypt's time grows
# with N*r*p and its memory (128*N*r bytes) with N*r, so one cap on N*r*p bounds both: four times
# the most this app ever writes (a backup: N = 2**17, r = 8, p = 1), i.e. at most 512 MiB and
# about four times a backup's derivation.
MAX_LOG2_N = 20
MAX_R = 32
MAX_P = 16
MAX_SCRYPT_WORK = 4 * BACKUP_N * DEFAULT_R * DEFAULT_P


# And the least a file may ask for: 32 MiB (scrypt's 128*N*r bytes), what every store and backup this app
# ever wrote used (N = 2**15, r = 8; backups N = 2**17 since). Parameters lowered in a file's header
# are then refused as damage before any key is derived with them, not run and reported as a wrong
# secret (which sends the user looking for a typo), and a file made quick to guess, even with the
# right secret, is not opened. The test-only cost lowers this floor to itself.
MIN_SCRYPT_MEMORY_WORK = DEFAULT_N * DEFAULT_R


class InvalidKdfParams(ValueError):
    """Parameters outside what this app is willing to run."""


class WeakKdfParams(InvalidKdfParams):
    """Parameters below what this app ever writes: lowered in the file, or not made by this app."""


# Said with a refusal for weak parameters: a device that once ran with the test-only cost leaked into
# its environment (warned of whenever it makes a store or a backup key) made such files, and opens
# them with it set again.
WEAK_FILE_HINT = f"only a run with {SCRYPT_N_ENV} set, for tests, makes such a file"


class NotEnoughMemory(AuthenticatorError):
    """scrypt could not allocate its memory: the user's one-line error, not a traceback."""


class DecryptionFailed(Exception):
    """AES-GCM authentication failed: wrong key or altered data."""


@dataclass(frozen=True)
class KdfParams:
    """scrypt cost parameters, stored next to each salt."""

    n: int = DEFAULT_N
    r: int = DEFAULT_R
    p: int = DEFAULT_P

    @property
    def log2_n(self) -> int:
        return self.n.bit_length() - 1

    def validate(self) -> "KdfParams":
        if self.n < 2 or self.n & (self.n - 1) or self.log2_n > MAX_LOG2_N:
            raise InvalidKdfParams(f"scrypt n={self.n} is not a power of two in 2..2**{MAX_LOG2_N}")
        if not 1 <= self.r <= MAX_R or not 1 <= self.p <= MAX_P:
            raise InvalidKdfParams(f"scrypt r={self.r} p={self.p} out of range")
        if self.n * self.r * self.p > MAX_SCRYPT_WORK:
            raise InvalidKdfParams(f"scrypt n*r*p = {self.n * self.r * self.p} is more than this app runs "
                                   f"({MAX_SCRYPT_WORK})")
        return self

    def ensure_not_weakened(self) -> "KdfParams":
        """These parameters (read from a file) unless they ask for less than this app ever writes."""
        floor = MIN_SCRYPT_MEMORY_WORK
        raw = os.environ.get(SCRYPT_N_ENV)
        if raw and raw.isascii() and raw.isdigit():
            floor = min(floor, int(raw) * DEFAULT_R)
        if self.n * self.r < floor:
            raise WeakKdfParams(f"scrypt n={self.n} r={self.r} is weaker than any file this app writes")
        return self

    @property
    def memory_mib(self) -> int:
        """What scrypt allocates for these parameters (128*N*r bytes), in MiB."""
        return 128 * self.n * self.r >> 20

    @classmethod
    def for_new_file(cls, n: int = DEFAULT_N, p: int = STORE_P) -> "KdfParams":
        """The cost `n`, `p` (the local store's defaults), unless the test-only environment variable
        lowers `n`."""
        raw = os.environ.get(SCRYPT_N_ENV)
        if not raw:
            return cls(n=n, p=p)
        try:
            params = cls(n=int(raw), p=p).validate()
        except ValueError:  # InvalidKdfParams included
            raise AuthenticatorError(f"{SCRYPT_N_ENV}={raw!r} is not a usable scrypt n (a power of two up to "
                                     f"2**{MAX_LOG2_N}; for tests only: unset it)") from None
        _warn_cost_override(raw)
        return params


@functools.cache  # once per process and value: a command may make a store and a backup key
def _warn_cost_override(raw: str) -> None:
    warn(f"{SCRYPT_N_ENV}={raw} sets the scrypt cost of new stores and backups (for tests only: unset it; "
         "a low cost makes their passphrase or recovery secret fast to guess)")


@dataclass(frozen=True)
class DerivedKeys:
    """What one secret yields: the AES-GCM key and the stored key-check value."""

    encryption_key: bytes
    key_check: bytes

    def matches(self, stored_key_check: bytes) -> bool:
        return hmac.compare_digest(self.key_check, stored_key_check)


def new_salt() -> bytes:
    return secrets.token_bytes(SALT_BYTES)


def normalise_secret(secret: str) -> bytes:
    return unicodedata.normalize("NFC", secret).encode("utf-8")


def derive_keys(secret: str, salt: bytes, params: KdfParams, purpose: bytes) -> DerivedKeys:
    """Derive the encryption key and key check for ``purpose`` (e.g. b"idp-authenticator backup")."""
    params.validate()
    try:
        master = Scrypt(salt=salt, length=32, n=params.n, r=params.r, p=params.p).derive(
            normalise_secret(secret)
        )
    except MemoryError:
        # Within the bounds, but more than this process may allocate now (a small phone, a ulimit).
        raise NotEnoughMemory(f"not enough memory to derive the key (scrypt needs {params.memory_mib} MiB "
                              "for this file's parameters)") from None
    return keys_from_master(master, purpose)


def keys_from_master(master: bytes, purpose: bytes) -> DerivedKeys:
    encryption_key = _hkdf(master, purpose + b" encryption")
    check_key = _hkdf(master, purpose + b" key-check")
    key_check = hmac.new(check_key, KEY_CHECK_CONSTANT, "sha256").digest()
    return DerivedKeys(encryption_key=encryption_key, key_check=key_check)


def _hkdf(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)


def new_nonce() -> bytes:
    return secrets.token_bytes(NONCE_BYTES)


def seal(key: bytes, nonce: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """AES-256-GCM; returns ciphertext with the 16-byte tag appended."""
    return AESGCM(key).encrypt(nonce, plaintext, associated_data)


def unseal(key: bytes, nonce: bytes, ciphertext: bytes, associated_data: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, associated_data)
    except InvalidTag as exc:
        raise DecryptionFailed() from exc
