"""idp.db.Database.run: prebuilt statements in the request's session transaction, on its DBAPI
connection (on PostgreSQL through one cursor kept for the transaction)."""
from __future__ import annotations

import sqlite3

import psycopg
import pytest
from flask import current_app
from sqlalchemy import bindparam, select, update

from idp.models import Token

_TOKENS = Token.__table__
_HASHES_OF_CLIENT = (select(_TOKENS.c.access_token_hash).where(_TOKENS.c.client_id == bindparam("client"))
                     .order_by(_TOKENS.c.access_token_hash))
_RENAME_CLIENT = update(_TOKENS).where(_TOKENS.c.client_id == bindparam("client")).values(client_id=bindparam("to"))


def _row(n: int, client: str = "svc") -> dict:
    return {"access_token_hash": f"{n:064x}", "client_id": client, "scope": "", "issued_at": 1,
            "access_expires_at": 2}


@pytest.fixture
def database(bare_database):
    return bare_database


def test_a_statements_rows_are_its_own_when_read_after_the_next_statement(database):
    """Callers may keep a statement's result and run another before reading it."""
    database.run_insert_many(_TOKENS, [_row(1), _row(2), _row(3), _row(4, client="web")])
    hashes = database.run(_HASHES_OF_CLIENT, {"client": "svc"})
    others = database.run(_HASHES_OF_CLIENT, {"client": "web"})
    nothing = database.run(_HASHES_OF_CLIENT, {"client": "none"})
    assert hashes.first().access_token_hash == f"{1:064x}"
    assert [row.access_token_hash for row in hashes.all()] == [f"{2:064x}", f"{3:064x}"]  # the rest, as a cursor
    assert hashes.first() is None
    assert others.scalar() == f"{4:064x}"
    assert nothing.all() == [] and nothing.scalar() is None
    assert database.run(_RENAME_CLIENT, {"client": "svc", "to": "other"}).rowcount == 3
    database.session.commit()
    assert database.run(_HASHES_OF_CLIENT, {"client": "other"}).scalar() == f"{1:064x}"
    database.session.rollback()


def test_a_transaction_after_a_rollback_sees_nothing_of_it(database):
    database.run_insert(_TOKENS, _row(1))
    database.session.rollback()
    assert database.run(_HASHES_OF_CLIENT, {"client": "svc"}).all() == []
    database.session.rollback()


def test_postgresql_statements_of_a_transaction_share_one_cursor(database, monkeypatch):
    """psycopg's Connection.execute makes a cursor per statement, a sizeable share of a short
    statement's client CPU; the session transaction's statements go through one kept cursor."""
    if database.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's connection runs statements itself")
    made = []
    cursor = psycopg.Connection.cursor

    def counted(connection, *args, **kwargs):
        made.append(connection)
        return cursor(connection, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "cursor", counted)
    database.run_insert(_TOKENS, _row(1))  # begins the transaction (SQLAlchemy's checkout may make cursors too)
    began = len(made)
    database.run_insert_many(_TOKENS, [_row(2), _row(3)])
    for _ in range(3):
        assert len(database.run(_HASHES_OF_CLIENT, {"client": "svc"}).all()) == 3
    assert database.run(_RENAME_CLIENT, {"client": "svc", "to": "other"}).rowcount == 3
    assert len(made) == began
    database.session.rollback()


def test_a_failed_statement_in_a_savepoint_leaves_the_transaction_and_its_statements_usable(database):
    """A factor's clean-up hook runs in a savepoint (idp.factors.registry._cleanup_hook): its
    failing statement, rolled back to the savepoint, neither breaks the shared cursor nor loses
    what the transaction wrote before it."""
    database.run_insert(_TOKENS, _row(1))
    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.UniqueViolation)):  # (the driver's own)
        with database.session.begin_nested():
            database.run_insert(_TOKENS, _row(2))
            database.run_insert(_TOKENS, _row(1))  # the same hash again: a unique violation
    assert [r.access_token_hash for r in database.run(_HASHES_OF_CLIENT, {"client": "svc"}).all()] == [f"{1:064x}"]
    with database.session.begin_nested():
        database.run_insert(_TOKENS, _row(3))
    database.session.commit()
    assert len(database.run(_HASHES_OF_CLIENT, {"client": "svc"}).all()) == 2
    database.session.rollback()


def test_the_kept_connection_and_cursor_end_with_their_transaction(database):
    """The connection goes back to the pool at the commit or the rollback: nothing of it stays in
    the session (another thread may hold it next), and the next transaction takes its own."""
    from idp import db as db_module

    database.run_insert(_TOKENS, _row(1))
    database.session.commit()
    assert db_module._DBAPI not in database.session.info and db_module._CURSOR not in database.session.info
    database.run(_HASHES_OF_CLIENT, {"client": "svc"}).all()
    database.session.rollback()
    assert db_module._DBAPI not in database.session.info and db_module._CURSOR not in database.session.info


def test_each_thread_runs_its_statements_on_its_own_connection(database):
    """Background threads (back-channel logout, mail) have sessions of their own (scoped per
    thread): their statements never share the request's connection or cursor. (PostgreSQL: on
    SQLite the thread's transaction would wait for the write lock this one holds.)"""
    import threading

    if database.engine.dialect.name != "postgresql":
        pytest.skip("SQLite's transactions take turns")

    database.run_insert(_TOKENS, _row(1))  # uncommitted: another connection does not see it
    seen: dict = {}
    app_context = current_app._get_current_object().app_context

    def elsewhere():
        with app_context():
            seen["rows"] = database.run(_HASHES_OF_CLIENT, {"client": "svc"}).all()
            seen["same"] = database._dbapi() is not None and database.session() is main_session
            database.session.rollback()

    main_session = database.session()
    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join(timeout=30)
    assert seen == {"rows": [], "same": False}
    database.session.rollback()


def test_a_note_lasts_as_long_as_the_transaction_and_is_not_taken_in_a_savepoint(database):
    """What a transaction established (the login's user locked and read enabled, which spares the
    login's last step its own lock: idp.login.user.hold_for_sign_in) is forgotten when it ends,
    committed or rolled back; and a savepoint, whose rollback releases its locks, notes nothing."""
    assert database.noted("held") is None  # no transaction
    database.run(_HASHES_OF_CLIENT, {"client": "svc"})
    database.note("held", 7)
    assert database.noted("held") == 7
    database.session.commit()
    assert database.noted("held") is None
    database.run(_HASHES_OF_CLIENT, {"client": "svc"})
    assert database.noted("held") is None  # (a new transaction)
    database.note("held", 8)
    database.session.rollback()
    database.run(_HASHES_OF_CLIENT, {"client": "svc"})
    assert database.noted("held") is None
    with database.session.begin_nested():
        database.run(_HASHES_OF_CLIENT, {"client": "svc"})
        database.note("held", 9)
        assert database.noted("held") is None
    database.session.rollback()


def test_a_commit_with_nothing_to_commit_begins_nothing(database):
    """idp.db.RequestSession: no transaction is begun (nor its commit listeners run) only to end it."""
    from sqlalchemy import event

    ended = []
    listener = lambda session, transaction: ended.append(transaction)  # noqa: E731
    event.listen(database.session.session_factory, "after_transaction_end", listener)
    try:
        database.session.commit()
        assert ended == [] and not database.in_transaction()
        database.run_insert(_TOKENS, _row(1))  # a statement of the session's transaction
        database.session.commit()
        assert len(ended) == 1
    finally:
        event.remove(database.session.session_factory, "after_transaction_end", listener)
    assert database.run(_HASHES_OF_CLIENT, {"client": "svc"}).scalar() == f"{1:064x}"
    database.session.rollback()


def test_a_commit_still_flushes_what_the_session_holds_outside_a_transaction(database):
    """Objects added, or changed after the transaction that loaded them ended, are flushed and committed."""
    database.session.add(Token(**_row(1)))
    database.session.commit()
    database.session.remove()
    changed = database.session.scalar(select(Token).where(Token.access_token_hash == f"{1:064x}"))
    database.session.commit()  # (its transaction ends: the object stays, loaded)
    changed.client_id = "web"
    database.session.commit()
    database.session.remove()
    assert database.run(_HASHES_OF_CLIENT, {"client": "web"}).scalar() == f"{1:064x}"
    database.session.rollback()
