"""idp.db.Database.run: prebuilt statements in the request's session transaction, on its DBAPI
connection (on PostgreSQL through one cursor kept for the transaction)."""
from __future__ import annotations

import psycopg
import pytest
from flask import Flask
from sqlalchemy import bindparam, select, update

from idp.db import Database
from idp.models import Token

_TOKENS = Token.__table__
_HASHES_OF_CLIENT = (select(_TOKENS.c.access_token_hash).where(_TOKENS.c.client_id == bindparam("client"))
                     .order_by(_TOKENS.c.access_token_hash))
_RENAME_CLIENT = update(_TOKENS).where(_TOKENS.c.client_id == bindparam("client")).values(client_id=bindparam("to"))


def _row(n: int, client: str = "svc") -> dict:
    return {"access_token_hash": f"{n:064x}", "client_id": client, "scope": "", "issued_at": 1,
            "access_expires_at": 2}


@pytest.fixture
def database(migrated_database_url):
    app = Flask(__name__)
    database = Database()
    database.init_app(app, migrated_database_url)
    with app.app_context():
        yield database
    database.engine.dispose()


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
