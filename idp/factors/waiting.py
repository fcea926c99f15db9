"""Long-polls, one at a time per thing waited for, in each process.

A long-poll holds a worker thread while it waits (up to 20-25 s): the phone's wait for a login
to approve (plugins/push, `GET /v1/challenges?wait=`), the login page's wait for the phone's
answer (`GET /login/<id>/poll?wait=`). One device, or one login page, needs one such wait;
more are a way to hold every thread of the server (signed tokens are cheap to mint for one's
own device). So a second wait on the same key, while one is under way in this process, is
answered at once, as a plain poll. Across processes each worker holds at most one per key.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Hashable, Iterator

_waiting: set = set()
_guard = threading.Lock()


@contextmanager
def one_wait_per(key: Hashable) -> Iterator[bool]:
    """True when this request may wait (no other wait on `key` is under way here), else False:
    answer at once."""
    with _guard:
        first = key not in _waiting
        if first:
            _waiting.add(key)
    try:
        yield first
    finally:
        if first:
            with _guard:
                _waiting.discard(key)
