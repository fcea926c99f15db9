"""Helpers for plugin CLI commands (`idp factor NAME ...`): an app context, one-line errors."""
from __future__ import annotations

import functools
from typing import Callable

import click


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
    not committed yet and exit with one line: a code that was written nowhere is never issued."""
    from idp.factors import directory

    try:
        with open(path, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        directory.rollback()
        fail(f"cannot write {path}: {exc.strerror or exc}; nothing was issued")
