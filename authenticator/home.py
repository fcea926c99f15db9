"""Where the app keeps its state: ``--home``, else the XDG data directory."""

import os
from pathlib import Path
from typing import Optional

APP_DIR = "idp-authenticator"


def resolve_home(explicit: Optional[str]) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME")
    base = Path(data_home) if data_home else Path.home() / ".local" / "share"
    return base / APP_DIR
