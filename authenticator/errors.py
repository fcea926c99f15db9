"""Every failure a user can cause, each with its own exit status.

The CLI prints one line (the exception's message) and exits with
``exit_code``; anything not derived from :class:`AuthenticatorError` is a bug
and is allowed to show a traceback. Keeping the table in one place keeps the
exit statuses distinct, which scripts and tests rely on (see
``docs/backup-format.md`` for the restore statuses). Status 2 is also argparse's,
for usage mistakes (one line too, see ``cli.OneLineErrorParser``); a secret that is
neither given nor askable (stdin is not a terminal) is a plain status-1 error.
"""


class AuthenticatorError(Exception):
    """A user-facing failure: one clear line, a non-zero exit status."""

    exit_code = 1


class OutputLost(AuthenticatorError):
    """The command did what it does for good (an account saved, an answer sent), then its stdout
    could not take the output (a full disk, a closed pipe): status 1, and a line saying what was
    done, so that nobody runs it again to a refusal ("already exists")."""


class NotAvailableYet(AuthenticatorError):
    """A command that is registered but not implemented yet."""

    exit_code = 2


class WrongPassphrase(AuthenticatorError):
    """The local passphrase does not open this store."""

    exit_code = 3


class StoreDamaged(AuthenticatorError):
    """The local store exists but cannot be read (edited, truncated, unknown version)."""

    exit_code = 4


class NoBackupFound(AuthenticatorError):
    """The storage location is reachable but holds no backup."""

    exit_code = 10


class WrongRecoverySecret(AuthenticatorError):
    """The recovery secret does not match the backup's key check."""

    exit_code = 11


class BackupTampered(AuthenticatorError):
    """The backup fails authentication (or is malformed) with the right secret."""

    exit_code = 12


class NotABackupFile(BackupTampered):
    """What is stored where the backup belongs cannot be one, as seen before reading it: not a regular
    file (a FIFO would block the reader forever, a device never end), or too large."""


class BackupTooLarge(NotABackupFile):
    """The stored file is larger than any backup can be: refused before it is read."""


class BackupTruncated(AuthenticatorError):
    """The backup is shorter than its own header says it is."""

    exit_code = 13


class UnsupportedBackupVersion(AuthenticatorError):
    """The backup was written in a format version this app does not know."""

    exit_code = 14


class StorageUnreachable(AuthenticatorError):
    """The storage location cannot be used (missing, not a directory, no permission)."""

    exit_code = 15


class DeviceNotEmpty(AuthenticatorError):
    """Restore refused: the device already holds accounts (restore onto a new home instead: removing
    them would rewrite the automatic backup, which may be the one to restore)."""

    exit_code = 16


class BackupExists(AuthenticatorError):
    """``backup --enable`` refused: the location holds a backup that is not this device's own."""

    exit_code = 17


class BackupUnrestorable(AuthenticatorError):
    """A backup was about to be written that the reader would refuse (an account holding data the
    format does not allow): nothing is written, the backup already there stays."""

    exit_code = 18


class BackupWouldEmpty(BackupExists):
    """An automatic backup found this device holding no accounts and the backup at the location holding
    some: it is left alone (a restore from it may be what comes next); ``backup --now`` empties it."""


class BackupEmpty(AuthenticatorError):
    """``restore``: the backup is readable but holds no accounts, so nothing is restored."""

    exit_code = 19


class BackupReplaced(BackupExists):
    """An automatic backup (or ``backup --now``) found that another device replaced this device's
    backup since it last wrote it: it is left alone (the device that replaced it may hold accounts
    this one lacks)."""
