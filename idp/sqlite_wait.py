"""Waiting for SQLite's write lock in steps of a tenth of a millisecond, not SQLite's own.

SQLite lets one connection write at a time. With a busy timeout, a connection that finds the
lock taken sleeps in SQLite's own steps (1, 2, 5, 10 ms, then more) before trying again; the
login's and token endpoint's write transactions hold the lock for a tenth of a millisecond or
so, so two workers wanting it at once left one asleep for ten times longer than it had to
wait, and with two workers on two cores that idle time is throughput lost. Connections are
therefore opened with no busy timeout (idp.db.make_engine), and what takes the lock (a
transaction's `BEGIN IMMEDIATE`, a lone statement) goes through `wait_for_write_lock`, which
tries again after 0.1 ms, doubling up to 2 ms, for as long as the busy timeout allowed.
"""
from __future__ import annotations

import sqlite3
import time

TIMEOUT = 30.0  # seconds, as the busy timeout was
_FIRST_PAUSE, _LONGEST_PAUSE = 0.0001, 0.002


def _busy(error: sqlite3.OperationalError) -> bool:
    return (getattr(error, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY


def wait_for_write_lock(operation):
    """`operation()`, tried again while another connection holds the write lock (SQLITE_BUSY: the
    statement did nothing), until TIMEOUT; then its error is raised."""
    try:
        return operation()
    except sqlite3.OperationalError as error:
        if not _busy(error):
            raise
    deadline, pause = time.monotonic() + TIMEOUT, _FIRST_PAUSE
    while True:
        time.sleep(pause)
        try:
            return operation()
        except sqlite3.OperationalError as error:
            if not _busy(error) or time.monotonic() > deadline:
                raise
        pause = min(pause * 2, _LONGEST_PAUSE)
