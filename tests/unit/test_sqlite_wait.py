"""idp.sqlite_wait: SQLite writers wait their turn in fine steps, and give up as the busy timeout did."""
from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from sqlalchemy import text

from idp import sqlite_wait
from idp.db import make_engine


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'wait.sqlite'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (n INTEGER)"))
    yield engine
    engine.dispose()


def test_a_transaction_waits_for_anothers_write_and_then_writes(engine, tmp_path):
    holder = sqlite3.connect(tmp_path / "wait.sqlite", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")
    threading.Timer(0.05, holder.execute, args=("COMMIT",)).start()
    started = time.monotonic()
    with engine.begin() as connection:  # BEGIN IMMEDIATE through the engine's hook: it waits
        connection.execute(text("INSERT INTO t VALUES (2)"))
    assert time.monotonic() - started >= 0.04
    with engine.connect() as connection:
        assert connection.execute(text("SELECT n FROM t ORDER BY n")).scalars().all() == [1, 2]


def test_it_gives_up_after_the_timeout(engine, tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_wait, "TIMEOUT", 0.05)
    holder = sqlite3.connect(tmp_path / "wait.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(Exception, match="database is locked"):
            with engine.begin() as connection:
                connection.execute(text("INSERT INTO t VALUES (2)"))
    finally:
        holder.execute("ROLLBACK")


def test_other_errors_are_not_retried():
    calls = []

    def failing():
        calls.append(1)
        raise sqlite3.OperationalError("no such table: nowhere")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        sqlite_wait.wait_for_write_lock(failing)
    assert calls == [1]
