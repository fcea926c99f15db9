"""idp.lone: single INSERTs and short transactions on a few kept DBAPI connections, outside the session."""
from __future__ import annotations

import sqlite3
import threading

import psycopg
import pytest
from sqlalchemy import bindparam, text, update

from idp.db import make_engine
from idp.lone import LoneConnections
from idp.models import Token

_TOKENS = Token.__table__
# A conditional claim returning the whole row (the shape of the grants' exactly-once statements).
_CLAIM_REFRESH_TOKEN = (
    update(_TOKENS)
    .where(_TOKENS.c.refresh_token_hash == bindparam("token_hash"), _TOKENS.c.client_id == bindparam("for_client"),
           _TOKENS.c.rotated_at.is_(None), _TOKENS.c.revoked_at.is_(None),
           _TOKENS.c.refresh_expires_at > bindparam("now"))
    .values(rotated_at=bindparam("now"))
    .returning(*_TOKENS.c)
)


def _row(n: int) -> dict:
    return {"access_token_hash": f"{n:064x}", "client_id": "svc", "scope": "", "issued_at": 1,
            "access_expires_at": 2}


@pytest.fixture
def lone(migrated_database_url):
    engine = make_engine(migrated_database_url)
    yield LoneConnections(engine)
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
    assert len(lone.idle) <= LoneConnections.IDLE_MAX
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


def _count(lone) -> int:
    with lone.engine.connect() as other:
        return other.execute(text("SELECT count(*) FROM tokens")).scalar_one()


def test_values_and_rows_go_through_the_column_types(lone):
    """JSON in, JSON out: the columns' own processors, as the ORM would apply them."""
    lone.insert(Token.__table__, dict(_row(9), amr=["pwd", "otp"], refresh_token_hash="r" * 64,
                                      refresh_expires_at=100), synchronous=True)
    alone = lone.begin()
    row = alone.first(_CLAIM_REFRESH_TOKEN, {"token_hash": "r" * 64, "for_client": "svc", "now": 50})
    alone.commit()
    assert row.amr == ["pwd", "otp"] and row.rotated_at == 50 and row.client_id == "svc"


def test_a_lone_statement_commits_before_it_returns(lone):
    """`first`: one conditional UPDATE ... RETURNING, committed at once (an authorization code's claim)."""
    lone.insert(Token.__table__, dict(_row(5), refresh_token_hash="c" * 64, refresh_expires_at=100),
                synchronous=True)
    claim = {"token_hash": "c" * 64, "for_client": "svc", "now": 50}
    assert lone.first(_CLAIM_REFRESH_TOKEN, claim).rotated_at == 50
    with lone.engine.connect() as other:  # visible elsewhere at once: nothing is left open
        assert other.execute(text("SELECT rotated_at FROM tokens")).scalar_one() == 50
    assert lone.first(_CLAIM_REFRESH_TOKEN, claim) is None  # claimed once, for good
    assert len(lone.idle) == 1


def test_a_transaction_commits_all_or_nothing(lone):
    lone.insert(Token.__table__, dict(_row(1), refresh_token_hash="a" * 64, refresh_expires_at=100),
                synchronous=True)
    claim = {"token_hash": "a" * 64, "for_client": "svc", "now": 50}
    alone = lone.begin()
    assert alone.first(_CLAIM_REFRESH_TOKEN, claim) is not None
    alone.insert(Token.__table__, _row(2))
    alone.close()  # not committed: the claim and the insert are undone
    assert _count(lone) == 1
    alone = lone.begin()
    assert alone.first(_CLAIM_REFRESH_TOKEN, claim) is not None  # still unclaimed
    alone.insert(Token.__table__, _row(2))
    alone.commit()
    assert _count(lone) == 2
    alone = lone.begin()
    assert alone.first(_CLAIM_REFRESH_TOKEN, claim) is None  # claimed once, for good
    alone.close()
    alone.close()  # closing twice is harmless


def test_a_failed_statement_ends_the_transaction_and_drops_its_connection(lone):
    lone.insert(Token.__table__, _row(3), synchronous=True)
    alone = lone.begin()
    alone.insert(Token.__table__, _row(4))
    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)):
        alone.insert(Token.__table__, _row(3))
    alone.close()  # nothing left to roll back: the connection was closed, and with it the transaction
    assert lone.idle == [] and _count(lone) == 1


def test_execute_reports_the_rows_a_statement_changed(lone):
    lone.insert(Token.__table__, dict(_row(6), refresh_token_hash="e" * 64, refresh_expires_at=100), synchronous=True)
    spend = (update(_TOKENS).where(_TOKENS.c.refresh_token_hash == bindparam("token_hash"), _TOKENS.c.rotated_at.is_(None))
             .values(rotated_at=bindparam("now")))
    assert lone.execute(spend, {"token_hash": "e" * 64, "now": 7}) == 1
    assert lone.execute(spend, {"token_hash": "e" * 64, "now": 8}) == 0  # spent once, for good
