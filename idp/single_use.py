"""Values accepted once: a replay guard kept as a row whose primary key is the value (a client
assertion's jti, a DPoP proof's), written by one INSERT ... ON CONFLICT DO NOTHING on a
connection of its own and committed before the caller goes on. Of two requests presenting the
same value at the same moment, exactly one inserts the row (PostgreSQL's unique index or
SQLite's write lock decides); whatever the request does next, the value is spent."""
from __future__ import annotations

from sqlalchemy import Table, bindparam
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from idp.db import db

_STATEMENTS: dict[tuple, object] = {}


def record_once(table: Table, values: dict) -> bool:
    """Insert `values` into `table` unless a row with the same primary key is there: True when
    this call inserted it, False for a value seen before (a replay)."""
    dialect = db.engine.dialect.name
    key = (table.name, dialect, tuple(values))
    statement = _STATEMENTS.get(key)
    if statement is None:  # built once per table, dialect and column set
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        statement = _STATEMENTS[key] = insert(table).values(
            {name: bindparam(name) for name in values}).on_conflict_do_nothing()
    return db.execute_alone(statement, values) == 1
