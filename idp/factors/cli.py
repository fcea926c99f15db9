"""Helpers for plugin CLI commands (`idp factor NAME ...`): an app context, one-line errors, and the
one way the `idp` command reads a validity (`--expires-in 24h`) and prints a time (ISO 8601 UTC)."""
from __future__ import annotations

import errno
import functools
import os
import re
import sys
from datetime import datetime, timezone
from typing import Callable

import click

from idp.db import MAX_ROW_ID

# A row id as an argument (`recovery-qr revoke ... ID`): ids are INTEGER columns, whose range
# PostgreSQL enforces. A larger number names no row, but asked for it PostgreSQL answered
# "integer out of range" where SQLite said "no such code": refused the same way on both.
ROW_ID = click.IntRange(1, MAX_ROW_ID)

# What a command that gives a user a second factor says when the user holds no recovery codes
# (idp.factors.directory.owe_recovery_codes): the user sees them at their next sign-in, never the operator.
RECOVERY_CODES_NOTE = "{email} holds no recovery codes: they will be shown a new set once, at their next sign-in"

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def with_app_context(fn: Callable) -> Callable:
    """Run `fn` inside an app context: the current one, the Flask CLI's, or a fresh `create_app()`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from flask import has_app_context

        if has_app_context():
            return fn(*args, **kwargs)
        app = None
        ctx = click.get_current_context(silent=True)
        info = ctx.find_object(__import__("flask.cli", fromlist=["ScriptInfo"]).ScriptInfo) if ctx else None
        if info is not None:
            app = info.load_app()
        if app is None:
            from idp.app import create_app

            app = create_app()
        with app.app_context():
            return fn(*args, **kwargs)

    return wrapper


def fail(message: str) -> None:
    """Exit non-zero with a one-line message on stderr."""
    raise click.ClickException(message)


def write_or_roll_back(path: str, data: bytes) -> None:
    """Write `data` (a code's QR image) to `path`; if that fails, roll back what the command has
    not committed yet and exit with one line: a code that was written nowhere is never issued.

    The image holds a live secret: the file is its owner's alone (0600, also when it existed
    before with a wider mode), and a symlink at `path` is refused rather than followed (another
    user's link in a shared directory would send the secret wherever it points)."""
    from idp.factors import directory

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0),
                     0o600)
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(fd, 0o600)  # (O_CREAT's mode applies to a new file only)
            handle.write(data)
    except OSError as exc:
        directory.rollback()
        reason = "a symbolic link (refused: the image holds a secret)" if exc.errno == errno.ELOOP \
            else exc.strerror or exc
        fail(f"cannot write {path}: {reason}; nothing was issued")


def show_before_commit(text: str, *, err_text: str | None = None, nothing: str = "nothing was issued") -> None:
    """Print `text` on stdout (and `err_text` on stderr), flushed, before the command commits what
    they show once (a secret, a one-time code): if stdout cannot take it (a full disk, a closed
    pipe, `>&-`), roll back and exit with one line. Committed first, the secret would be live
    and seen by nobody (a rotated client secret would also have killed the old one)."""
    from idp.factors import directory

    try:
        for line, err in ((text, False), (err_text, True)):
            if line is None:
                continue
            if (sys.stderr if err else sys.stdout) is None:  # closed: click.echo would print nothing, silently
                raise OSError(errno.EBADF, "the stream is closed")
            click.echo(line, err=err)  # (click.echo flushes)
    except OSError as exc:
        directory.rollback()
        fail(f"cannot write the output ({exc.strerror or exc}): {nothing}")


def parse_duration(text: str) -> int:
    """"10m", "90s", "24h", "7d" or plain seconds -> seconds; ValueError otherwise."""
    match = _DURATION.match(text or "")
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 10m, 24h, 7d)")
    return int(match.group(1)) * _UNIT_SECONDS.get(match.group(2), 1)


def format_duration(seconds: int) -> str:
    """`seconds` in the largest unit that divides it, as `--expires-in` takes it: 604800 -> "7d"."""
    for unit, size in _UNIT_SECONDS.items():
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return "0s"


def validity(text: str | None, *, default: int, maximum: int, minimum: int = 60,
             option: str = "--expires-in") -> int:
    """The seconds `text` asks for (`default` when not given), or a one-line failure naming the
    accepted range in the option's own units ("between 1m and 7d")."""
    if text is None:
        return default
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        fail(str(exc))
    if not minimum <= seconds <= maximum:
        fail(f"{option} must be between {format_duration(minimum)} and {format_duration(maximum)}")
    return seconds


def iso_utc(moment: datetime) -> str:
    """A naive UTC time as the `idp` command prints it in text and `--json` alike:
    ISO 8601 to the second, with "Z" ("2026-12-01T12:00:00Z")."""
    return moment.replace(tzinfo=timezone.utc, microsecond=0).isoformat().replace("+00:00", "Z")
