"""Where backups are kept: a small interface, and a directory implementation.

A directory is the default because a folder synced by a cloud client is the
usual place for a phone backup. Another location (an object store, WebDAV)
implements :class:`BackupStorage` and gets an entry in ``STORAGE_KINDS``.
Storages deal in opaque bytes; they never see a key or a plaintext.
"""

import os
import stat
from pathlib import Path
from typing import Protocol

from authenticator.backup.format import MAX_FILE_SIZE
from authenticator.errors import BackupTooLarge, NoBackupFound, NotABackupFile, StorageUnreachable
from authenticator.files import write_atomically
from authenticator.home import expanded

BACKUP_FILE = "idp-authenticator-backup.bin"


class BackupStorage(Protocol):
    def describe(self) -> str:
        """A human-readable location for messages."""

    def write(self, blob: bytes) -> None:
        """Replace the stored backup atomically. Raises StorageUnreachable."""

    def read(self) -> bytes:
        """The stored backup. Raises NoBackupFound or StorageUnreachable, and NotABackupFile, without
        reading it, for anything but a regular file no larger than ``format.MAX_FILE_SIZE``."""


class DirectoryStorage:
    """One file, ``idp-authenticator-backup.bin``, in a directory that must already exist."""

    def __init__(self, directory: os.PathLike | str):
        self.directory = expanded(str(directory), lambda reason: StorageUnreachable(
            f"backup location {reason}"))

    @property
    def path(self) -> Path:
        return self.directory / BACKUP_FILE

    def describe(self) -> str:
        return str(self.directory)

    def create(self) -> None:
        """Make the directory (``backup --enable`` names a place the user wants used)."""
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise self._unreachable(exc.strerror or str(exc)) from None

    def write(self, blob: bytes) -> None:
        self._check_directory()
        try:
            write_atomically(self.path, blob)
        except OSError as exc:
            raise self._unreachable(exc.strerror or str(exc)) from None

    def read(self) -> bytes:
        self._check_directory()
        try:
            # Non-blocking, then checked with fstat (what was opened, not the name, which may change
            # meanwhile): opening a FIFO put there would otherwise wait for a writer forever. On a
            # regular file the flag changes nothing.
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            raise NoBackupFound(f"no backup at {self.directory} (no {BACKUP_FILE} there)") from None
        except OSError as exc:
            raise self._unreachable(exc.strerror or str(exc)) from None
        try:
            self._check_regular(os.fstat(fd))
            with open(fd, "rb", closefd=False) as handle:
                blob = handle.read(MAX_FILE_SIZE + 1)  # bounded, should it grow meanwhile
        except OSError as exc:
            raise self._unreachable(exc.strerror or str(exc)) from None
        finally:
            os.close(fd)
        self._check_size(len(blob))
        return blob

    def _check_regular(self, info: os.stat_result) -> None:
        if stat.S_ISDIR(info.st_mode):
            raise NoBackupFound(f"no backup at {self.directory} ({BACKUP_FILE} is not a file)")
        if not stat.S_ISREG(info.st_mode):
            raise NotABackupFile(f"{BACKUP_FILE} at {self.directory} is not a backup (not a regular file)")
        self._check_size(info.st_size)

    def _check_size(self, size: int) -> None:
        if size > MAX_FILE_SIZE:
            raise BackupTooLarge(f"{BACKUP_FILE} at {self.directory} is not a backup ({size} bytes, more than "
                                 f"any backup: {MAX_FILE_SIZE})")

    def _check_directory(self) -> None:
        if not self.directory.exists():
            raise self._unreachable("no such directory")
        if not self.directory.is_dir():
            if self.directory.name == BACKUP_FILE:  # the backup file itself, a likely slip: say what is wanted
                raise self._unreachable(f"not a directory (give the directory that holds {BACKUP_FILE}: "
                                        f"{self.directory.parent})")
            raise self._unreachable("not a directory")
        if not os.access(self.directory, os.R_OK | os.X_OK):
            raise self._unreachable("permission denied")

    def _unreachable(self, reason: str) -> StorageUnreachable:
        return StorageUnreachable(f"backup location {self.directory} is unreachable: {reason}")


STORAGE_KINDS = {"directory": DirectoryStorage}


def storage_for(kind: str, location: str) -> BackupStorage:
    return STORAGE_KINDS[kind](location)
