"""Backup and restore as operations on the local store.

``enable`` derives the backup key once and remembers it (see
``settings.py``); ``write_backup`` runs after every change while enabled;
``read_backup`` turns a stored backup back into accounts. Restoring into the
store (and refusing when it is not empty) is :func:`restore_into`, so the
check and the write sit together.

A backup location may be shared over time: a new phone restores from the
folder and then backs up to it. Two rules keep one device from silently
dropping the other's accounts: ``enable`` overwrites a backup only when it is
this device's own or holds nothing this device lacks (else ``--replace``), and
``write_backup`` overwrites only the file this device wrote last (its SHA-256 is
remembered in the settings); a file replaced since is left alone.

Remembering that SHA-256 must survive a crash between writing the file and
saving the store, or the device would take its own newest file for another
device's and stop backing up. So ``write_backup`` saves the new file's SHA-256
in the store as *pending* before it writes the file, and either SHA-256 (the
one written last, the pending one) counts as this device's own. The caller's
save afterwards records the file as written; should that save fail, the
pending mark still recognises the file at the next backup.
"""

import contextlib
import hashlib
import shlex
from datetime import datetime, timezone

from authenticator import clock, crypto
from authenticator.accounts import Account
from authenticator.backup import format as backup_format
from authenticator.backup.payload import CREATED_AT_FORMAT, BackupContents, decode_payload, encode_payload
from authenticator.backup.settings import DIRECTORY, BackupSettings
from authenticator.backup.storage import BackupStorage, DirectoryStorage, storage_for
from authenticator.errors import (
    AuthenticatorError,
    BackupEmpty,
    BackupExists,
    BackupReplaced,
    BackupTampered,
    BackupUnrestorable,
    BackupWouldEmpty,
    DeviceNotEmpty,
    NoBackupFound,
    NotABackupFile,
    WrongRecoverySecret,
)
from authenticator.terminal import command_line


def enable(vault, location: str, recovery_secret: str, *, replace: bool = False) -> BackupSettings:
    """Remember ``location`` and a key for ``recovery_secret``, then write a first backup.

    A backup already at ``location`` is overwritten only when it is this device's own (the file it
    wrote last there), or holds nothing this device lacks (it was restored from it), or ``replace``
    says so: a new phone pointed at the folder holding the only backup must not replace it with an
    empty list.
    """
    check_recovery_secret(recovery_secret)
    storage = DirectoryStorage(location)
    storage.create()
    directory = str(storage.directory.resolve())
    if not replace:
        _refuse_unless_replaceable(storage, vault, directory, recovery_secret)
    key = backup_format.new_backup_key(recovery_secret)
    own = vault.backup
    settings = BackupSettings(
        location=directory, kdf=key.kdf, salt=key.salt,
        encryption_key=key.keys.encryption_key, key_check=key.keys.key_check, storage=DIRECTORY,
        # Until the first write below is recorded, the file this device wrote there last is still its own.
        written_sha256=own.written_sha256 if own is not None and own.location == directory else None,
    )
    return write_backup(vault, settings=settings, take_over=True)


def _refuse_unless_replaceable(storage: DirectoryStorage, vault, directory: str, recovery_secret: str) -> None:
    """Raise BackupExists, saying which condition failed, unless the backup in ``storage`` (if any)
    may be replaced by this device's accounts."""
    where = storage.describe()
    # A new phone enabling backup before restoring holds nothing: "its accounts" would be none.
    overwrite = ("or overwrite it with this device's accounts (backup --enable --replace)" if vault.accounts else
                 "or empty it on purpose (this device holds no accounts: backup --enable --replace)")
    try:
        current = storage.read()
    except NoBackupFound:
        return
    except NotABackupFile as exc:
        raise _unreadable(where, exc, overwrite) from None
    own = vault.backup
    if own is not None and own.location == directory and _written_here(current, own):
        return
    try:
        backed_up = decode_payload(backup_format.open_backup(current, recovery_secret)).accounts
    except WrongRecoverySecret:
        raise BackupExists(f"{where} already holds a backup that does not open with this recovery secret "
                           f"(so whether this device holds all its accounts cannot be checked): give the secret "
                           f"it was made with, {overwrite}") from None
    except AuthenticatorError as exc:
        raise _unreadable(where, exc, overwrite) from None
    here = {_identity(a) for a in vault.accounts}
    missing = [a for a in backed_up if _identity(a) not in here]
    if missing:
        raise BackupExists(f"{where} already holds a backup with {len(missing)} account(s) this device lacks: "
                           f"restore it first (restore --from DIR), {overwrite}")


def _unreadable(where: str, exc: AuthenticatorError, overwrite: str) -> BackupExists:
    return BackupExists(f"{where} already holds a file this device cannot read as a backup ({exc}): "
                        f"move it away, {overwrite}")


MIN_RECOVERY_SECRET = 12


def check_recovery_secret(secret: str, passphrase: str | None = None) -> None:
    """A new recovery secret guards the backup wherever it is stored, against guessing offline:
    at least MIN_RECOVERY_SECRET characters, and not the device's own passphrase (the two
    protect different things: losing the phone must not hand over the backup)."""
    if len(secret) < MIN_RECOVERY_SECRET:
        raise AuthenticatorError(f"the recovery secret must be at least {MIN_RECOVERY_SECRET} characters "
                                 "(a few words you write down)")
    # Compared as key derivation sees them (NFC, crypto.normalise_secret): "café" typed as e + U+0301
    # and as U+00E9 are two strings but one key, so differing only in form is no difference.
    if passphrase is not None and crypto.normalise_secret(secret) == crypto.normalise_secret(passphrase):
        raise AuthenticatorError("the recovery secret must differ from this device's passphrase")


def _identity(account: Account) -> tuple:
    secret = account.totp.secret if account.totp is not None else None
    return account.type, account.issuer, account.name, secret


def write_backup(vault, *, settings: BackupSettings | None = None, take_over: bool = False,
                 automatic: bool = False) -> BackupSettings:
    """Write the vault's accounts with ``settings`` (default: the vault's own); they become the vault's
    settings, with ``last_backup_at`` and the file's SHA-256. The caller saves the vault afterwards.

    Only over the file this device wrote last (or none): a file that another device put there
    since raises :class:`BackupReplaced` and is left as it is, unless ``take_over`` (``enable``,
    which made its own checks). The new file's SHA-256 is saved in the store as pending before the
    file is written (see the module docstring); if the file cannot be written, the settings go back
    to what they were, in memory and (best effort) in the store.

    An ``automatic`` backup of a device holding no accounts never replaces a backup holding some
    (:class:`BackupWouldEmpty`): the user may have removed them to make room for a restore from
    that very backup. ``backup --now`` (and ``enable``) write what the device holds, whatever it is.
    """
    previous = vault.backup
    settings = settings or previous
    if settings is None:
        raise AuthenticatorError(f"backup is not enabled; run: {command_line('backup --enable --to DIR')}")
    storage = storage_for(settings.storage, settings.location)
    key = backup_format.BackupKey(
        settings.kdf, settings.salt,
        crypto.DerivedKeys(settings.encryption_key, settings.key_check),
    )
    if not take_over:
        current = _ensure_still_ours(storage, settings)
        if automatic and not vault.accounts and current is not None:
            _ensure_not_emptying(current, key, storage)
    when = _timestamp()
    blob = backup_format.seal_backup(key, _restorable_payload(vault.accounts, when))
    fingerprint = _fingerprint(blob)
    _save_settings(vault, settings.expecting(fingerprint), previous)
    try:
        storage.write(blob)
    except BaseException:
        with contextlib.suppress(OSError, AuthenticatorError):
            _save_settings(vault, previous, previous)
        raise
    vault.backup = settings.after_write(when, fingerprint)
    return vault.backup


def _restorable_payload(accounts: list[Account], created_at: str) -> bytes:
    """The payload of ``accounts``, once the reader's own decoder has read it back: a backup that
    ``restore`` would refuse is never written (it would replace a good one, and the user would learn
    only on the new phone). Raises BackupUnrestorable, naming the account at fault when one is."""
    payload = encode_payload(accounts, created_at)
    try:
        decode_payload(payload)
    except BackupTampered as exc:
        culprit = next((a for a in accounts if not _reads_back(a, created_at)), None)
        if culprit is None:  # each account alone reads back: what is refused is the whole (a duplicate)
            raise BackupUnrestorable(f"backup not written: restore would refuse it ({exc})") from None
        raise BackupUnrestorable(f"backup not written: account {culprit.label} (id {culprit.id}) holds data that "
                                 "restore would refuse; remove it and add it again, then back up (backup --now)"
                                 ) from None
    return payload


def _reads_back(account: Account, created_at: str) -> bool:
    try:
        decode_payload(encode_payload([account], created_at))
    except BackupTampered:
        return False
    return True


def _save_settings(vault, settings: BackupSettings | None, previous: BackupSettings | None) -> None:
    """Make ``settings`` the vault's and save it, or leave ``previous`` in place and raise. A store never
    saved yet (``backup --enable`` on a new device) stays unsaved: a crash leaves no store behind to
    recognise anything, and a failed command must leave a new device as it was."""
    vault.backup = settings
    if not vault.on_disk:
        return
    try:
        vault.save()
    except BaseException:
        vault.backup = previous
        raise


def _ensure_still_ours(storage: BackupStorage, settings: BackupSettings) -> bytes | None:
    """The file at the location (None: there is none), if it is this device's own; else BackupReplaced."""
    try:
        current = storage.read()
        if _written_here(current, settings):
            return current
    except NoBackupFound:
        return None  # removed (or never written): nothing to lose
    except NotABackupFile:
        pass  # no backup this device writes is that large, or anything but a regular file
    where = storage.describe()
    raise BackupReplaced(
        f"the backup at {where} was replaced by another device since this one last wrote it, and is left "
        f"as it is; to make this device's accounts the backup there: "
        f"{command_line(f'backup --enable --to {shlex.quote(where)} --replace')} "
        f"(or stop: {command_line('backup --disable')})")


def _ensure_not_emptying(current: bytes, key: backup_format.BackupKey, storage: BackupStorage) -> None:
    """Raise BackupWouldEmpty unless ``current`` (this device's own file) holds no account either. A file
    that does not open with the device's key is taken as holding some: nothing is replaced unread."""
    try:
        held = len(decode_payload(backup_format.open_own_backup(current, key)).accounts)
    except AuthenticatorError:
        held = None
    if held == 0:
        return
    holding = f"still holds {held} account(s)" if held else "may hold accounts"
    raise BackupWouldEmpty(
        f"this device holds no accounts now, and the backup at {storage.describe()} {holding}: it is left "
        f"as it is (it may be the one to restore, onto a new app home: --home NEW_DIR restore --from DIR); "
        f"to empty it on purpose: {command_line('backup --now')}")


def _written_here(blob: bytes, settings: BackupSettings) -> bool:
    """Whether ``blob`` is the file this device wrote last, or the one it was writing when a crash
    kept the store from recording it (pending). Settings kept before the fingerprint was
    compare the header's salt: every ``backup --enable`` draws a new one, so another device's file
    has another salt (only a copy of this device's own store would share it)."""
    fingerprint = _fingerprint(blob)
    if settings.pending_sha256 is not None and fingerprint == settings.pending_sha256:
        return True
    if settings.written_sha256 is not None:
        return fingerprint == settings.written_sha256
    return backup_format.salt_of(blob) == settings.salt


def _fingerprint(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def read_backup(storage: BackupStorage, recovery_secret_getter) -> BackupContents:
    """Fetch and open the backup; the secret is asked only once a backup was found. One holding no
    accounts is refused (BackupEmpty)."""
    blob = storage.read()
    contents = decode_payload(backup_format.open_backup(blob, recovery_secret_getter()))
    ensure_accounts(contents, storage)
    return contents


def ensure_empty(vault) -> None:
    """Restore only onto a device without accounts, so that an old backup never overwrites newer data.
    The advice is a new home, not removing the accounts: every removal rewrites the automatic backup,
    which may be the very backup the user is about to restore."""
    if vault is not None and vault.accounts:
        raise DeviceNotEmpty(
            f"this device already holds {len(vault.accounts)} account(s) and restore never overwrites them "
            "(an old backup must not replace newer data): restore onto a new app home instead "
            "(idp-authenticator --home NEW_DIR restore --from DIR), rather than removing them here, as "
            "each removal rewrites this device's automatic backup"
        )


def ensure_accounts(contents: BackupContents, storage: BackupStorage) -> None:
    """A backup holding no account restores nothing: say so, rather than "restored 0 account(s)"."""
    if not contents.accounts:
        raise BackupEmpty(f"the backup at {storage.describe()} ({written_at(contents)}) holds no accounts: "
                          "nothing to restore")


def written_at(contents: BackupContents) -> str:
    """When the backup was written, as restore shows it: an older backup put back in the folder (by
    anyone who can write there, with the same key) restores like the newest, and only its time tells."""
    return f"written at {contents.created_at}" if contents.created_at else "written at an unknown time"


def restore_into(vault, accounts: list[Account]) -> list[Account]:
    ensure_empty(vault)
    return vault.add_all(accounts)


def _timestamp() -> str:
    return datetime.fromtimestamp(clock.now(), timezone.utc).strftime(CREATED_AT_FORMAT)
