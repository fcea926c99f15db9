"""idp.lone: single INSERTs and short transactions on a few kept DBAPI connections, outside the session."""
from __future__ import annotations

import sqlite3
import threading

import psycopg
import pytest
from sqlalchemy import bindparam, func, select, text, update

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
    used = _next_connection(lone)
    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)):
        lone.insert(Token.__table__, _row(7), synchronous=False)  # the same access_token_hash: unique
    assert _next_connection(lone) is not used
    with lone.engine.connect() as other:
        assert other.execute(text("SELECT count(*) FROM tokens")).scalar_one() == 1


def _next_connection(lone):
    """The DBAPI connection the next statement would run on (taken and given back)."""
    taken = lone.take(synchronous=None)
    lone.give_back(taken)
    return taken.connection


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
    used = _next_connection(lone)
    alone = lone.begin()
    alone.insert(Token.__table__, _row(4))
    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)):
        alone.insert(Token.__table__, _row(3))
    alone.close()  # nothing left to roll back: the connection was closed, and with it the transaction
    assert _next_connection(lone) is not used and _count(lone) == 1


def test_execute_reports_the_rows_a_statement_changed(lone):
    lone.insert(Token.__table__, dict(_row(6), refresh_token_hash="e" * 64, refresh_expires_at=100), synchronous=True)
    spend = (update(_TOKENS).where(_TOKENS.c.refresh_token_hash == bindparam("token_hash"), _TOKENS.c.rotated_at.is_(None))
             .values(rotated_at=bindparam("now")))
    assert lone.execute(spend, {"token_hash": "e" * 64, "now": 7}) == 1
    assert lone.execute(spend, {"token_hash": "e" * 64, "now": 8}) == 0  # spent once, for good


def test_a_read_takes_no_lock_and_leaves_nothing_open(lone):
    """`read_first`: a SELECT outside any transaction. On SQLite it does not wait for a writer
    holding the write lock, and it leaves no read snapshot open on the connection it returns."""
    lone.insert(Token.__table__, dict(_row(8), refresh_token_hash="f" * 64, refresh_expires_at=100), synchronous=True)
    find = select(_TOKENS.c.access_token_hash, _TOKENS.c.rotated_at).where(
        _TOKENS.c.refresh_token_hash == bindparam("token_hash"))
    writer = lone.begin()  # holds SQLite's write lock until it ends
    writer.first(_CLAIM_REFRESH_TOKEN, {"token_hash": "f" * 64, "for_client": "svc", "now": 50})
    assert lone.read_first(find, {"token_hash": "f" * 64}).rotated_at is None  # the committed state
    writer.commit()
    assert lone.read_first(find, {"token_hash": "f" * 64}).rotated_at == 50  # a fresh snapshot each time
    assert lone.read_first(find, {"token_hash": "0" * 64}) is None


def test_a_postgresql_connection_the_server_ended_is_replaced(postgres_url):
    """Pooled and lone connections are checked for life without a round trip (idp.lone.
    postgresql_connection_alive): one whose backend was terminated while idle is discarded and
    replaced, and the next statement succeeds."""
    engine = make_engine(postgres_url)
    lone = LoneConnections(engine)
    killer = psycopg.connect(postgres_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
    try:
        with engine.connect() as connection:
            pooled_pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        taken = lone.take(synchronous=None)
        lone_pid = taken.connection.execute("SELECT pg_backend_pid()").fetchone()[0]
        lone.give_back(taken)
        for pid in (pooled_pid, lone_pid):
            killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
        _wait_until_gone(killer, {pooled_pid, lone_pid})
        with engine.connect() as connection:
            assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() != pooled_pid
        assert lone.read_first(select(func.pg_backend_pid()), {})[0] != lone_pid
    finally:
        killer.close()
        engine.dispose()


def test_writes_of_both_kinds_in_turn_keep_a_connection_set_for_each(postgres_url, monkeypatch):
    """A worker that writes with and without waiting for the disk in turn (a client_credentials
    token, then a client assertion's jti) keeps one connection set each way, instead of sending
    `SET synchronous_commit` before nearly every write."""
    from idp import lone as lone_module
    from idp.schema import upgrade

    upgrade(postgres_url)
    engine = make_engine(postgres_url)
    lone = LoneConnections(engine)
    settings = []
    execute = lone_module._Lone.execute

    def counting(self, sql, parameters=None):
        if sql.startswith("SET synchronous_commit"):
            settings.append(sql)
        return execute(self, sql, parameters)

    monkeypatch.setattr(lone_module._Lone, "execute", counting)
    try:
        for n in range(6):
            lone.insert(Token.__table__, _row(2 * n), synchronous=False)
            lone.execute(update(_TOKENS).where(_TOKENS.c.id == bindparam("id_")).values(scope="x"), {"id_": n})
        assert settings == ["SET synchronous_commit TO off"]  # a new connection starts "on"
        assert sorted(idle.synchronous for idle in lone.idle) == [False, True]
    finally:
        engine.dispose()


def _wait_until_gone(connection, pids: set[int]) -> None:
    import time

    for _ in range(100):
        alive = connection.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (list(pids),)).fetchone()[0]
        if not alive:
            return
        time.sleep(0.02)
    raise AssertionError("the terminated backends did not go away")


def test_a_lone_write_is_refused_while_the_session_holds_a_transaction(migrated_database_url):
    """On SQLite the session's transaction holds the write lock: a lone write would wait for it
    until the busy timeout. Every lone write is refused at once instead (and a read is not)."""
    from flask import Flask

    from idp.db import Database

    database, app = Database(), Flask(__name__)
    database.init_app(app, migrated_database_url)
    with app.app_context():
        database.session.execute(text("SELECT 1"))  # the session's transaction begins
        with pytest.raises(RuntimeError, match="end the session's transaction"):
            database.insert_alone(Token.__table__, _row(12))
        with pytest.raises(RuntimeError, match="end the session's transaction"):
            database.begin_alone()
        assert database.read_first(select(func.count()).select_from(_TOKENS), {})[0] == 0
        database.session.commit()
        database.insert_alone(Token.__table__, _row(12))
        assert database.read_first(select(func.count()).select_from(_TOKENS), {})[0] == 1
        database.session.remove()
    for kept in database.lone().idle:
        kept.connection.close()
    database.engine.dispose()


def _synchronous_commit(lone, statement_runs_here) -> str:
    """PostgreSQL's synchronous_commit on the connection a statement ran on, read there."""
    statement_runs_here()
    taken = lone.take(synchronous=None)  # the connection just given back (the most recent)
    try:
        return taken.connection.execute("SHOW synchronous_commit").fetchone()[0]
    finally:
        lone.give_back(taken)


def test_a_statement_commits_without_waiting_for_the_disk_only_when_asked(lone, migrated_database_url):
    """A refresh token's rotation (`tokens.refresh_synchronous_commit` false) runs with
    synchronous_commit off; the next write that must wait gets a connection set back on."""
    if not migrated_database_url.startswith("postgresql"):
        pytest.skip("synchronous_commit is PostgreSQL's")
    lone.insert(Token.__table__, dict(_row(8), refresh_token_hash="s" * 64, refresh_expires_at=100),
                synchronous=True)
    claim = {"token_hash": "s" * 64, "for_client": "svc", "now": 50}
    assert _synchronous_commit(lone, lambda: lone.first(_CLAIM_REFRESH_TOKEN, claim, synchronous=False)) == "off"
    assert _synchronous_commit(lone, lambda: lone.execute(
        update(_TOKENS).values(revoked_at=60), {}, synchronous=True)) == "on"
    assert _synchronous_commit(lone, lambda: lone.execute(
        update(_TOKENS).values(revoked_at=70), {}, synchronous=False)) == "off"
