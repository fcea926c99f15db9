"""The current time, with a test-only override.

Codes depend on the clock; a test comparing codes from two app homes (or two
processes) needs both to see the same instant. ``IDP_AUTHENTICATOR_NOW`` (Unix
seconds) pins it; nothing but the test suite should set it.
"""

import math
import os
import time

from authenticator.errors import AuthenticatorError

NOW_ENV = "IDP_AUTHENTICATOR_NOW"
# The first second a backup's created_at (YYYY-...) cannot write: year 10000.
LATEST = 253_402_300_800


def now() -> float:
    pinned = os.environ.get(NOW_ENV)
    return _pinned(pinned) if pinned else time.time()


def _pinned(raw: str) -> float:
    """The pinned time, or one line saying why not (float() alone takes "nan", "inf" and "-5")."""
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value < LATEST):
        raise AuthenticatorError(f"{NOW_ENV}={raw!r} is not a time (Unix seconds, from 0 to {LATEST - 1}); "
                                 "it is for tests only: unset it")
    return value
