"""db.insert_alone (idp.db.LoneInserts): one INSERT, its own transaction, on a few kept connections."""
from __future__ import annotations

import sqlite3
import threading

import psycopg
import pytest
from sqlalchemy import text

from idp.db import LoneInserts, make_engine
from idp.models import Token


def _row(n: int) -> dict:
    return {"access_token_hash": f"{n:064x}", "client_id": "svc", "scope": "", "issued_at": 1,
            "access_expires_at": 2}


@pytest.fixture
def lone(migrated_database_url):
    engine = make_engine(migrated_database_url)
    yield LoneInserts(engine)
    engine.dispose()


def test_each_insert_is_committed_at_once(lone):
    lone.insert(Token.__table__, _row(1), synchronous=False)
    lone.insert(Token.__table__, _row(2), synchronous=True)
    with lone.engine.connect() as other:  # another connection sees both rows: nothing is left open
        assert other.execute(text("SELECT count(*) FROM tokens")).scalar_one() == 2


def test_many_threads_keep_only_a_few_connections(lone):
    barrier = threading.Barrier(12)

    def work(n: int) -> None:
        barrier.wait()
        for i in range(5):
            lone.insert(Token.__table__, _row(n * 100 + i), synchronous=False)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(lone.idle) <= LoneInserts.IDLE_MAX
    with lone.engine.connect() as other:
        assert other.execute(text("SELECT count(*) FROM tokens")).scalar_one() == 60


def test_a_failed_insert_changes_nothing_and_drops_its_connection(lone):
    lone.insert(Token.__table__, _row(7), synchronous=False)
    kept = list(lone.idle)
    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)):
        lone.insert(Token.__table__, _row(7), synchronous=False)  # the same access_token_hash: unique
    assert all(entry not in lone.idle for entry in kept)
    with lone.engine.connect() as other:
        assert other.execute(text("SELECT count(*) FROM tokens")).scalar_one() == 1


def test_only_plain_values(lone):
    with pytest.raises(TypeError):
        lone.insert(Token.__table__, dict(_row(9), amr=["pwd"]), synchronous=False)
