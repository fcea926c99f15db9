"""Where backups are kept: a small interface, and a directory implementation.

A directory is the default because a folder synced by a cloud client is the
usual place for a phone backup. Another location (an object store, WebDAV)
implements :class:`BackupStorage` and gets an entry in ``STORAGE_KINDS``.
Storages deal in opaque bytes; they never see a key or a plaintext.
"""

import os
from pathlib import Path
from typing import Protocol

from authenticator.backup.format import MAX_FILE_SIZE
from authenticator.errors import BackupTooLarge, NoBackupFound, StorageUnreachable
from authenticator.files import write_atomically

BACKUP_FILE = "idp-authenticator-backup.bin"


class BackupStorage(Protocol):
    def describe(self) -> str:
        """A human-readable location for messages."""

    def write(self, blob: bytes) -> None:
        """Replace the stored backup atomically. Raises StorageUnreachable."""

    def read(self) -> bytes:
        """The stored backup. Raises NoBackupFound or StorageUnreachable, and BackupTooLarge, without
        reading it, for a file larger than ``format.MAX_FILE_SIZE``."""


class DirectoryStorage:
    """One file, ``idp-authenticator-backup.bin``, in a directory that must already exist."""

    def __init__(self, directory: os.PathLike | str):
        self.directory = Path(directory).expanduser()

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
            with open(self.path, "rb") as handle:
                self._check_size(os.fstat(handle.fileno()).st_size)
                blob = handle.read(MAX_FILE_SIZE + 1)  # bounded, should it grow meanwhile
            self._check_size(len(blob))
            return blob
        except FileNotFoundError:
            raise NoBackupFound(f"no backup at {self.directory} (no {BACKUP_FILE} there)") from None
        except IsADirectoryError:
            raise NoBackupFound(f"no backup at {self.directory} ({BACKUP_FILE} is not a file)") from None
        except OSError as exc:
            raise self._unreachable(exc.strerror or str(exc)) from None

    def _check_size(self, size: int) -> None:
        if size > MAX_FILE_SIZE:
            raise BackupTooLarge(f"{BACKUP_FILE} at {self.directory} is not a backup ({size} bytes, more than "
                                 f"any backup: {MAX_FILE_SIZE})")

    def _check_directory(self) -> None:
        if not self.directory.exists():
            raise self._unreachable("no such directory")
        if not self.directory.is_dir():
            raise self._unreachable("not a directory")
        if not os.access(self.directory, os.R_OK | os.X_OK):
            raise self._unreachable("permission denied")

    def _unreachable(self, reason: str) -> StorageUnreachable:
        return StorageUnreachable(f"backup location {self.directory} is unreachable: {reason}")


STORAGE_KINDS = {"directory": DirectoryStorage}


def storage_for(kind: str, location: str) -> BackupStorage:
    return STORAGE_KINDS[kind](location)
