"""The current time, with a test-only override.

Codes depend on the clock; a test comparing codes from two app homes (or two
processes) needs both to see the same instant. ``IDP_AUTHENTICATOR_NOW`` (Unix
seconds) pins it; nothing but the test suite should set it.
"""

import os
import time

NOW_ENV = "IDP_AUTHENTICATOR_NOW"


def now() -> float:
    pinned = os.environ.get(NOW_ENV)
    return float(pinned) if pinned else time.time()
