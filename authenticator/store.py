"""The encrypted local store: every account and setting, sealed under the passphrase.

Two files in the home directory:

* ``store-header.json`` (written once, at creation): format, version, scrypt
  parameters, salt and key check. It is readable without the passphrase
  because the key cannot be derived without it; the key check turns a wrong
  passphrase into the message "wrong passphrase" instead of a decryption error.
  The header fixes the passphrase, so it never stands alone: a first save whose
  data write fails removes it again, and a header left without ``store.bin`` (a
  crash in between) counts as no store at all, replaced by the next first save.
* ``store.bin``: a 12-byte nonce, then the AES-256-GCM ciphertext of the JSON
  contents. The header's exact bytes are the associated data, so a header
  swapped in from another store is detected.

Both are written atomically and 0600; the home directory is 0700. Commands
that change the store hold :func:`locked` so two invocations (say ``watch``
and ``add``) cannot lose each other's change.
"""

import base64
import contextlib
import json
import os
import stat
from pathlib import Path
from typing import Iterator, Optional

from authenticator import crypto
from authenticator.accounts import Account, new_account_id
from authenticator.backup.settings import BackupSettings
from authenticator.errors import AuthenticatorError, StoreDamaged, WrongPassphrase
from authenticator.files import write_atomically
from authenticator.terminal import warn

HEADER_FILE = "store-header.json"
DATA_FILE = "store.bin"
LOCK_FILE = ".lock"
FORMAT = "idp-authenticator-store"
VERSION = 1
PURPOSE = b"idp-authenticator store"


class Vault:
    """The decrypted contents of a home directory, saved back with :meth:`save`."""

    def __init__(self, home: Path, keys: crypto.DerivedKeys, header: bytes,
                 accounts: list[Account], backup: Optional[BackupSettings], new: bool = False):
        self.home = home
        self.accounts = accounts
        self.backup = backup
        self._keys = keys
        self._header = header
        self._new = new  # made by create(), never saved yet

    @property
    def on_disk(self) -> bool:
        """Whether this store has been saved at least once (one from create() is only in memory)."""
        return not self._new

    @staticmethod
    def exists(home: Path) -> bool:
        """Whether the home holds a store: its data file (a header alone held nothing, see above). A home
        that is a file is an error, not a device holding nothing (`list` said "no accounts", exit 0)."""
        if home.exists() and not home.is_dir():
            raise AuthenticatorError(f"cannot use home directory {home}: not a directory")
        return (home / DATA_FILE).exists()

    @classmethod
    def create(cls, home: Path, passphrase: str) -> "Vault":
        """A new, empty store; nothing is written until :meth:`save`."""
        params = crypto.KdfParams.for_new_file()
        salt = crypto.new_salt()
        keys = crypto.derive_keys(passphrase, salt, params, PURPOSE)
        header = json.dumps({
            "format": FORMAT,
            "version": VERSION,
            "kdf": {"name": "scrypt", "n": params.n, "r": params.r, "p": params.p},
            "salt": base64.b64encode(salt).decode("ascii"),
            "key_check": base64.b64encode(keys.key_check).decode("ascii"),
        }, indent=2).encode("utf-8") + b"\n"
        return cls(home, keys, header, [], None, new=True)

    @classmethod
    def open(cls, home: Path, passphrase: str) -> "Vault":
        header, params, salt, key_check = _read_header(home)
        keys = crypto.derive_keys(passphrase, salt, params, PURPOSE)
        if not keys.matches(key_check):
            raise WrongPassphrase("wrong passphrase")
        contents = _decrypt_contents(home, keys, header)
        try:
            accounts = [Account.from_dict(item) for item in contents["accounts"]]
            backup = BackupSettings.from_dict(contents["backup"]) if contents.get("backup") else None
        except (KeyError, TypeError, ValueError):
            raise StoreDamaged(f"local store in {home} has unexpected contents") from None
        return cls(home, keys, header, accounts, backup)

    def add(self, account: Account) -> Account:
        """Store ``account`` under a fresh id; refuse a second copy of the same account."""
        return self.add_all([account])[0]

    def add_all(self, accounts: list[Account]) -> list[Account]:
        """Store each of ``accounts`` under a fresh id, or none of them: a second copy of an account
        (here or in the batch) is refused. One set of identities and ids serves the whole batch: a
        scan of every account per account made a restore of 60,000 take ten minutes under the lock."""
        held = {_identity(a): a for a in self.accounts}
        taken = {a.id for a in self.accounts}
        stored = []
        for account in accounts:
            existing = held.get(_identity(account))
            if existing is not None:
                raise AuthenticatorError(f"account {account.label} already exists (id {existing.id}); remove it first")
            added = account.with_id(new_account_id(taken))
            taken.add(added.id)
            held[_identity(added)] = added
            stored.append(added)
        self.accounts.extend(stored)
        return stored

    def remove(self, account: Account) -> None:
        self.accounts = [a for a in self.accounts if a.id != account.id]

    def replace(self, account: Account) -> None:
        """Swap in an updated copy of an account (same id), e.g. after push recovery."""
        self.accounts = [account if a.id == account.id else a for a in self.accounts]

    def save(self) -> None:
        _ensure_home(self.home)
        contents = {
            "version": VERSION,
            "accounts": [a.to_dict() for a in self.accounts],
            "backup": self.backup.to_dict() if self.backup else None,
        }
        nonce = crypto.new_nonce()
        sealed = crypto.seal(self._keys.encryption_key, nonce, json.dumps(contents).encode("utf-8"), self._header)
        if not self._new:
            write_atomically(self.home / DATA_FILE, nonce + sealed)
            return
        # The first save: the header (replacing one a crash left alone), then the data. If the data
        # cannot be written (a full disk), the header goes too: it would fix the passphrase of a
        # store that holds nothing, and the next `add` with another passphrase would be refused.
        write_atomically(self.home / HEADER_FILE, self._header)
        try:
            write_atomically(self.home / DATA_FILE, nonce + sealed)
        except BaseException:
            with contextlib.suppress(OSError):
                (self.home / HEADER_FILE).unlink()
            raise
        self._new = False


def _identity(account: Account) -> tuple:
    """What makes two accounts the same one, for :meth:`Vault.add_all`."""
    return account.issuer, account.name, account.type


@contextlib.contextmanager
def locked(home: Path) -> Iterator[None]:
    """Hold an exclusive lock on the home directory (advisory; POSIX only).

    A home this call had to create is removed again when the command fails with nothing in it but
    the lock file (a first ``add`` or ``restore`` that fails leaves a fresh device as it was)."""
    created = not home.exists()
    _ensure_home(home)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX platforms go unlocked
        yield
        return
    try:
        with os.fdopen(os.open(home / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600), "r+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    except BaseException:
        if created:
            _remove_if_unused(home)
        raise


def _remove_if_unused(home: Path) -> None:
    """Best effort: only a directory holding nothing but the lock file goes."""
    try:
        if {entry.name for entry in home.iterdir()} <= {LOCK_FILE}:
            (home / LOCK_FILE).unlink(missing_ok=True)
            home.rmdir()
    except OSError:
        pass


def _ensure_home(home: Path) -> None:
    """The home exists, is this user's, and is 0700. mkdir's mode applies only to a directory it makes:
    one that was there (made by hand, or by an older version, with the umask's 0755 or a 0777) kept
    its mode, and whoever can write into it can put an older store.bin back (a rollback the store's
    encryption cannot see: the old file is genuine) or swap the lock file."""
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not hasattr(os, "geteuid"):  # pragma: no cover - no POSIX owners to check
            return
        status = home.stat()
        if status.st_uid != os.geteuid():
            raise AuthenticatorError(f"cannot use home directory {home}: it belongs to another user (uid "
                                     f"{status.st_uid}), who could change the store")
        mode = stat.S_IMODE(status.st_mode)
        if mode & 0o077:
            os.chmod(home, 0o700)
            warn(f"home directory {home} was open to other users (mode {mode:04o}); it is 0700 now")
    except FileExistsError:  # a file, or a symbolic link to nothing ("File exists" said nothing useful)
        raise AuthenticatorError(f"cannot use home directory {home}: not a directory") from None
    except OSError as exc:
        raise AuthenticatorError(f"cannot use home directory {home}: {exc.strerror}") from None


def _read_header(home: Path):
    path = home / HEADER_FILE
    try:
        header = path.read_bytes()
    except FileNotFoundError:
        raise StoreDamaged(f"local store in {home} has lost its header file {HEADER_FILE}") from None
    except OSError as exc:
        raise AuthenticatorError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(header)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError
        if data["version"] > VERSION:
            raise StoreDamaged(f"local store in {home} was written by a newer version of idp-authenticator")
        kdf = data["kdf"]
        params = crypto.KdfParams(n=kdf["n"], r=kdf["r"], p=kdf["p"]).validate().ensure_not_weakened()
        salt = base64.b64decode(data["salt"], validate=True)
        key_check = base64.b64decode(data["key_check"], validate=True)
    except StoreDamaged:
        raise
    except crypto.WeakKdfParams:
        raise StoreDamaged(f"local store header {path} is damaged (its key derivation parameters are weaker than "
                           f"any store this app writes; {crypto.WEAK_FILE_HINT})") from None
    except (ValueError, KeyError, TypeError, crypto.InvalidKdfParams):
        raise StoreDamaged(f"local store header {path} is damaged") from None
    return header, params, salt, key_check


def _decrypt_contents(home: Path, keys: crypto.DerivedKeys, header: bytes) -> dict:
    path = home / DATA_FILE
    try:
        sealed = path.read_bytes()
    except FileNotFoundError:
        # Removed since Vault.exists looked (the header alone is no store): nothing was held.
        return {"version": VERSION, "accounts": [], "backup": None}
    except OSError as exc:
        raise AuthenticatorError(f"cannot read {path}: {exc.strerror}") from None
    nonce, ciphertext = sealed[: crypto.NONCE_BYTES], sealed[crypto.NONCE_BYTES:]
    try:
        return json.loads(crypto.unseal(keys.encryption_key, nonce, ciphertext, header))
    except (crypto.DecryptionFailed, ValueError):
        raise StoreDamaged(f"local store {path} is damaged or was altered") from None
