"""Backup and restore as operations on the local store.

``enable`` derives the backup key once and remembers it (see
``settings.py``); ``write_backup`` runs after every change while enabled;
``read_backup`` turns a stored backup back into accounts. Restoring into the
store (and refusing when it is not empty) is :func:`restore_into`, so the
check and the write sit together.
"""

from datetime import datetime, timezone

from authenticator import clock, crypto
from authenticator.accounts import Account
from authenticator.backup import format as backup_format
from authenticator.backup.payload import decode_payload, encode_payload
from authenticator.backup.settings import DIRECTORY, BackupSettings
from authenticator.backup.storage import BackupStorage, DirectoryStorage, storage_for
from authenticator.errors import AuthenticatorError, BackupExists, DeviceNotEmpty


def enable(vault, location: str, recovery_secret: str, *, replace: bool = False) -> BackupSettings:
    """Remember ``location`` and a key for ``recovery_secret``, then write a first backup.

    A backup already at ``location`` is overwritten only when it is this device's own, or holds
    nothing this device lacks (it was restored from it), or ``replace`` says so: a new phone
    pointed at the folder holding the only backup must not replace it with an empty list.
    """
    check_recovery_secret(recovery_secret)
    storage = DirectoryStorage(location)
    storage.create()
    own = vault.backup is not None and vault.backup.location == str(storage.directory.resolve())
    if storage.path.exists() and not own and not replace and not _holds_nothing_new(storage, vault, recovery_secret):
        raise BackupExists(
            f"{storage.describe()} already holds a backup: restore it first (restore --from DIR), "
            "or overwrite it with this device's accounts (backup --enable --replace)"
        )
    key = backup_format.new_backup_key(recovery_secret)
    vault.backup = BackupSettings(
        location=str(storage.directory.resolve()), kdf=key.kdf, salt=key.salt,
        encryption_key=key.keys.encryption_key, key_check=key.keys.key_check, storage=DIRECTORY,
    )
    write_backup(vault)
    return vault.backup


MIN_RECOVERY_SECRET = 12


def check_recovery_secret(secret: str, passphrase: str | None = None) -> None:
    """A new recovery secret guards the backup wherever it is stored, against guessing offline:
    at least MIN_RECOVERY_SECRET characters, and not the device's own passphrase (the two
    protect different things: losing the phone must not hand over the backup)."""
    if len(secret) < MIN_RECOVERY_SECRET:
        raise AuthenticatorError(f"the recovery secret must be at least {MIN_RECOVERY_SECRET} characters "
                                 "(a few words you write down)")
    if passphrase is not None and secret == passphrase:
        raise AuthenticatorError("the recovery secret must differ from this device's passphrase")


def _holds_nothing_new(storage: BackupStorage, vault, recovery_secret: str) -> bool:
    """Whether every account of the backup in ``storage`` is on this device (False when it does
    not open with ``recovery_secret``: then it cannot be told, and is kept)."""
    try:
        backed_up = read_backup(storage, lambda: recovery_secret)
    except AuthenticatorError:
        return False
    here = {_identity(a) for a in vault.accounts}
    return all(_identity(a) in here for a in backed_up)


def _identity(account: Account) -> tuple:
    secret = account.totp.secret if account.totp is not None else None
    return account.type, account.issuer, account.name, secret


def write_backup(vault) -> BackupSettings:
    """Write the vault's accounts to its configured storage; updates ``last_backup_at``."""
    settings = vault.backup
    if settings is None:
        raise AuthenticatorError("backup is not enabled; run: idp-authenticator backup --enable --to DIR")
    key = backup_format.BackupKey(
        settings.kdf, settings.salt,
        crypto.DerivedKeys(settings.encryption_key, settings.key_check),
    )
    when = _timestamp()
    blob = backup_format.seal_backup(key, encode_payload(vault.accounts, when))
    storage_for(settings.storage, settings.location).write(blob)
    vault.backup = settings.with_last_backup(when)
    return vault.backup


def read_backup(storage: BackupStorage, recovery_secret_getter) -> list[Account]:
    """Fetch and open the backup; the secret is asked only once a backup was found."""
    blob = storage.read()
    return decode_payload(backup_format.open_backup(blob, recovery_secret_getter()))


def ensure_empty(vault) -> None:
    if vault is not None and vault.accounts:
        raise DeviceNotEmpty(
            f"this device already holds {len(vault.accounts)} account(s); remove them first "
            "so that an old backup never overwrites newer data"
        )


def restore_into(vault, accounts: list[Account]) -> list[Account]:
    ensure_empty(vault)
    return [vault.add(account) for account in accounts]


def _timestamp() -> str:
    return datetime.fromtimestamp(clock.now(), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
