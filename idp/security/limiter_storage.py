"""Flask-Limiter's in-process storage (used when no Redis is configured), without a thread per hit.

limits' `MemoryStorage` drops expired entries from a timer thread that it schedules on every
hit (`threading.Timer(0.01, ...)`, started anew whenever the last one has finished): on the
login forms that is a new OS thread for nearly every POST, about 0.2 ms of CPU per POST that
no request's own time shows. Reads already ignore expired entries (counters check their
expiry, moving windows bisect by time), so the sweep only bounds memory; here it runs inline,
at most once a second. Registered with limits as the `idp-memory://` storage.
"""
from __future__ import annotations

import time

from limits.storage import MemoryStorage


class SweepingMemoryStorage(MemoryStorage):
    STORAGE_SCHEME = ["idp-memory"]
    SWEEP_EVERY = 1.0  # seconds

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options) -> None:
        self._next_sweep = 0.0
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)

    # limits calls `self.__schedule_expiry()` from its writes; the name is private to
    # MemoryStorage (mangled), so it is overridden by its mangled name. limits is pinned in
    # requirements.lock, and tests/unit/test_limiter_storage.py fails if a release renames it.
    def _MemoryStorage__schedule_expiry(self) -> None:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_EVERY
            self._MemoryStorage__expire_events()
