"""idp.security.limiter_storage: Flask-Limiter's in-memory storage without a timer thread per hit."""
from __future__ import annotations

import time

from limits import RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from idp.security.limiter_storage import SweepingMemoryStorage


def test_the_scheme_is_registered_with_limits():
    assert isinstance(storage_from_string("idp-memory://"), SweepingMemoryStorage)


def test_hits_start_no_thread_and_limits_still_hold():
    storage = SweepingMemoryStorage()
    first_timer = storage.timer  # the one MemoryStorage starts when it is made
    limiter = MovingWindowRateLimiter(storage)
    limit = RateLimitItemPerMinute(3)
    assert [limiter.hit(limit, "ip", "1.2.3.4") for _ in range(5)] == [True, True, True, False, False]
    assert limiter.hit(limit, "ip", "5.6.7.8")  # another key has its own window
    assert storage.timer is first_timer  # limits would have scheduled a new Timer on each hit


def test_expired_entries_are_swept_inline():
    storage = SweepingMemoryStorage()
    storage.SWEEP_EVERY = 0.0  # sweep on every hit
    limiter = MovingWindowRateLimiter(storage)
    limiter.hit(RateLimitItemPerSecond(5), "ip", "1.2.3.4")
    assert storage.events
    time.sleep(1.05)
    limiter.hit(RateLimitItemPerSecond(5), "ip", "5.6.7.8")  # sweeps before it records
    assert all(not entries for key, entries in storage.events.items() if "1.2.3.4" in key)
