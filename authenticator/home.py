"""Where the app keeps its state: ``--home``, else the XDG data directory."""

import os
from pathlib import Path
from typing import Callable, Optional

from authenticator.errors import AuthenticatorError

APP_DIR = "idp-authenticator"


def expanded(path: str, error: Callable[[str], Exception]) -> Path:
    """``path`` with a leading ``~`` or ``~name`` expanded, as a shell would. pathlib raises RuntimeError
    for a ``~name`` naming no user here (or a ``~`` with neither $HOME nor a user database entry):
    ``error`` instead, with a message saying so (it was a traceback)."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        tilde = path.split("/", 1)[0]
        raise error(f"{path}: {tilde} names no user's home directory on this machine") from None


def resolve_home(explicit: Optional[str]) -> Path:
    if explicit:
        return expanded(explicit, lambda reason: AuthenticatorError(f"cannot use home directory {reason}"))
    data_home = os.environ.get("XDG_DATA_HOME")
    if data_home:
        return Path(data_home) / APP_DIR
    try:
        return Path.home() / ".local" / "share" / APP_DIR
    except RuntimeError:
        raise AuthenticatorError("no default app home: neither XDG_DATA_HOME nor HOME is set and this user has "
                                 "no home directory; give one with --home DIR") from None
