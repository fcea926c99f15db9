"""Plain DBAPI connections for statements that need no session transaction.

The token endpoint's hot writes (a token's INSERT, a code's claim, a refresh token's
rotation) and the reads that come before any write (`read_first`, `read_all`: what a page
that only reads needs). Through the session, SQLAlchemy's execution machinery (events, the
BEGIN IMMEDIATE hook, result set-up, the session's bookkeeping, the pool's reset) and, on
PostgreSQL, a BEGIN and a COMMIT round trip cost more than those statements. Here they run as
SQL that SQLAlchemy compiled once per statement and dialect, with the columns' own bind and
result processors (so values and rows are what the ORM would give: JSON decoded, dates
parsed), each in a transaction of its own (autocommit) unless `begin()` opens one.

The connections wait in a small stack of idle ones: a thread takes one, or opens one when
none is idle, and puts it back when done; at most IDLE_MAX stay open, so a server with
hundreds of threads (gthread workers for push long-polls) does not hold hundreds of database
connections. SQLite: connections made by the engine (so with make_engine's pragmas, in
autocommit mode) and detached from its pool. (Borrowing the pool's own connection instead,
so that a thread's session and lone statements share one page cache, was measured: cheaper in
one process, dearer with several workers, whose writes empty every connection's cache
anyway, and the pool's checkout costs more than this stack.) PostgreSQL: autocommit
connections; an idle one the server closed meanwhile is replaced
(`postgresql_connection_alive`). A connection whose statement fails is closed rather than
kept.
"""
from __future__ import annotations

import json
import select
import threading
from collections import namedtuple
from typing import Any

from sqlalchemy import JSON, Table, Text, bindparam, cast, type_coerce
from sqlalchemy.types import TypeDecorator
from sqlalchemy.engine import Engine
from sqlalchemy.sql import ClauseElement, visitors
from sqlalchemy.sql.dml import UpdateBase

from idp.sqlite_wait import wait_for_write_lock


def postgresql_connection_alive(connection) -> bool:
    """Whether an idle psycopg connection is still usable, told without a round trip.

    The client's own state must say open and idle, and the socket must have nothing to read: a
    healthy idle connection receives nothing unasked, while a server that ends a connection
    sends its FATAL message and closes the socket, both of which make it readable. (A host that
    vanished without closing anything is not detected here; the statement then fails, as it
    would after a ping that waited for the same TCP timeout.)
    """
    if connection.closed or connection.broken:
        return False
    if connection.info.transaction_status != connection.info.transaction_status.IDLE:
        return False
    try:
        readable, _, _ = select.select([connection.fileno()], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


class _Lone:
    """One DBAPI connection, with the `synchronous_commit` it was last given (PostgreSQL).

    On PostgreSQL its statements run on one cursor kept with it: psycopg's `Connection.execute`
    makes a cursor per call, a fifth of a short statement's client CPU. (Not on SQLite, where a
    cursor left on a read would keep its snapshot open, and with it the WAL, until reused.)
    """

    __slots__ = ("connection", "keep", "synchronous", "cursor")

    def __init__(self, connection, keep=None, cursor=None) -> None:
        self.connection, self.keep, self.synchronous = connection, keep, True
        self.cursor = cursor

    def execute(self, sql: str, parameters=None):
        """Run one statement; the cursor to read its rows from. (On SQLite, waiting its turn
        for the write lock: idp.sqlite_wait.)"""
        if self.cursor is not None:
            return self.cursor.execute(sql) if parameters is None else self.cursor.execute(sql, parameters)
        connection = self.connection
        if parameters is None:
            return wait_for_write_lock(lambda: connection.execute(sql))
        return wait_for_write_lock(lambda: connection.execute(sql, parameters))


#: The execution option that marks a join repeating one side's columns on every row of the other
#: (`Prepared.rows`): idp.factors.store.with_live_credentials sets it.
REPEATS = "idp_repeats"


class _JSONText(TypeDecorator):
    """JSON read as text and decoded by the statement's own reader (`repeated_json`)."""

    impl = Text
    cache_ok = True

    def process_result_value(self, value, dialect):
        return None if value is None else json.loads(value)


def repeated_json(columns) -> list:
    """`columns` for the repeated side of a REPEATS join, its JSON ones read as text and decoded by
    our own reader, which `Prepared.rows` then runs once per distinct value: psycopg decodes a
    json column itself, on every row, before any reader sees it. (Same name, same Python value.)"""
    return [type_coerce(cast(column, Text), _JSONText()).label(column.key) if isinstance(column.type, JSON)
            else column for column in columns]


def tables_of(statement: ClauseElement) -> frozenset[str]:
    """The names of the tables a statement reads or writes, its subqueries' included."""
    names = set()
    for element in visitors.iterate(statement):
        for table in (element, getattr(element, "table", None)):
            if isinstance(table, Table):
                names.add(table.name)
    return frozenset(names)


class Prepared:
    """A statement compiled for one dialect: its SQL, how to order its parameters, and the
    bind and result processors of its types."""

    __slots__ = ("sql", "positions", "binders", "readers", "names", "row_type", "defaults", "prefetch", "tables",
                 "writes", "repeats")

    def __init__(self, statement: ClauseElement, dialect, column_keys: list[str] | None = None) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=column_keys)
        self.sql = str(compiled)
        self.positions = compiled.positiontup  # None for named parameters (psycopg's %(name)s)
        self.binders = {}
        # Literals the statement carries as parameters (`.values(failures=1)`, `.limit(1)`), and
        # the Python-side column defaults an INSERT computes at execution (`default=utcnow`).
        self.defaults = {name: bind.value for name, bind in compiled.binds.items()
                         if not bind.required and bind.value is not None}
        self.prefetch = [(column.key, column.default) for column in getattr(compiled, "insert_prefetch", ())]
        for name, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self.binders[name] = processor
        returned = list(getattr(statement, "exported_columns", None) or [])
        self.names = tuple(column.key for column in returned)
        self.readers = tuple(column.type.dialect_impl(dialect).result_processor(dialect, None) for column in returned)
        self.row_type = namedtuple("LoneRow", self.names, rename=True) if returned else None
        # The tables it reads or writes, and whether it writes (INSERT, UPDATE, DELETE): whether
        # the session's deferred inserts may ride along with it (idp.deferred_writes).
        self.tables = tables_of(statement)
        self.writes = isinstance(statement, UpdateBase)
        self.repeats = bool(statement.get_execution_options().get(REPEATS)) \
            if hasattr(statement, "get_execution_options") else False

    def parameters(self, values: dict[str, Any]):
        if self.defaults or self.prefetch:
            merged = dict(self.defaults)
            for key, default in self.prefetch:
                if key not in values:
                    merged[key] = default.arg if default.is_scalar else default.arg(None)
            merged.update(values)
            values = merged
        if self.binders:
            values = {name: (self.binders[name](value) if name in self.binders and value is not None else value)
                      for name, value in values.items()}
        return [values[name] for name in self.positions] if self.positions else values

    def row(self, raw):
        """The row as a named tuple (attribute access, like SQLAlchemy's rows), values processed."""
        if raw is None:
            return None
        return self.row_type(*[reader(value) if reader is not None else value
                               for reader, value in zip(self.readers, raw, strict=True)])

    def rows(self, raws: list) -> list:
        """Every row (`row`). For a statement marked REPEATS (a join that repeats one side's
        columns on every row of the other: the login's row beside each of the user's
        credentials, of which recovery codes alone are ten), a value is processed only when it
        differs from the same column's in the row before: the repeated JSON and dates are
        decoded once, not once per credential. Its rows may then share one processed value (a
        dict): its callers read the repeated side from the first row only."""
        row = self.row
        if not self.repeats or len(raws) < 2:
            return [row(raw) for raw in raws]
        readers, make = self.readers, self.row_type
        before, processed = raws[0], list(row(raws[0]))
        out = [make(*processed)]
        for raw in raws[1:]:
            processed = [value if reader is None else (done if value == previous else reader(value))
                         for reader, value, previous, done in zip(readers, raw, before, processed, strict=True)]
            out.append(make(*processed))
            before = raw
        return out


class Ran:
    """The cursor of a statement run by `Database.run`, read through the statement's processors."""

    __slots__ = ("cursor", "prepared")

    def __init__(self, cursor, prepared: Prepared) -> None:
        self.cursor, self.prepared = cursor, prepared

    @property
    def rowcount(self) -> int:
        return self.cursor.rowcount

    def first(self):
        return self.prepared.row(self.cursor.fetchone())

    def all(self) -> list:
        return self.prepared.rows(self.cursor.fetchall())

    def scalar(self):
        """The first column of the first row (processed), or None when there is no row."""
        first = self.first()
        return None if first is None else first[0]


class LoneTransaction:
    """Prepared statements in one transaction on a lone connection; `commit()` or `close()` (rolls back)."""

    def __init__(self, owner: "LoneConnections", lone: _Lone) -> None:
        self.owner, self.lone, self.open = owner, lone, True

    def first(self, statement: ClauseElement, values: dict[str, Any]):
        """Run `statement` and return its first row (a named tuple), or None when it returned none."""
        prepared = self.owner.prepared(statement)
        try:
            cursor = self.lone.execute(prepared.sql, prepared.parameters(values))
            return prepared.row(cursor.fetchone())
        except BaseException:
            self._abandon()
            raise

    def insert(self, table: Table, row: dict[str, Any]) -> None:
        prepared = self.owner.prepared_insert(table, row)
        try:
            self.lone.execute(prepared.sql, prepared.parameters(row))
        except BaseException:
            self._abandon()
            raise

    def commit(self) -> None:
        try:
            self.lone.execute("COMMIT")
        except BaseException:
            self._abandon()
            raise
        self.open = False
        self.owner.give_back(self.lone)

    def close(self) -> None:
        """Roll back whatever was not committed and give the connection back (idempotent)."""
        if not self.open:
            return
        self.open = False
        try:
            self.lone.execute("ROLLBACK")
        except BaseException:
            self.lone.connection.close()
            raise
        self.owner.give_back(self.lone)

    def _abandon(self) -> None:
        self.open = False
        self.lone.connection.close()


class LoneConnections:
    """The idle connections and the prepared statements of one engine (see the module's docstring)."""

    IDLE_MAX = 4

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.statements: dict[Any, Prepared] = {}
        self.idle: list[_Lone] = []
        self.lock = threading.Lock()

    @property
    def postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def prepared(self, statement: ClauseElement) -> Prepared:
        prepared = self.statements.get(statement)
        if prepared is None:
            prepared = self.statements[statement] = Prepared(statement, self.engine.dialect)
        return prepared

    def prepared_insert(self, table: Table, row: dict) -> Prepared:
        key = (table.name, tuple(row))
        prepared = self.statements.get(key)
        if prepared is None:
            prepared = self.statements[key] = Prepared(table.insert(), self.engine.dialect, column_keys=list(row))
        return prepared

    def prepared_insert_rows(self, table: Table, columns: tuple[str, ...], count: int) -> Prepared:
        """One INSERT of `count` rows with these columns, `INSERT ... VALUES (...), (...)`, each
        row's values named `<column>__<row number>` (as `db.run_insert_many` names them)."""
        key = (table.name, columns, count)
        prepared = self.statements.get(key)
        if prepared is None:
            rows = [{name: bindparam(f"{name}__{i}", type_=table.c[name].type) for name in columns}
                    for i in range(count)]
            prepared = self.statements[key] = Prepared(table.insert().values(rows), self.engine.dialect)
        return prepared

    def insert(self, table: Table, row: dict, synchronous: bool) -> None:
        """One INSERT, its own transaction (autocommit). `synchronous=False`: PostgreSQL
        acknowledges the commit before its WAL reaches the disk; SQLite ignores it."""
        prepared = self.prepared_insert(table, row)
        lone = self.take(synchronous)
        try:
            lone.execute(prepared.sql, prepared.parameters(row))
        except BaseException:
            lone.connection.close()
            raise
        self.give_back(lone)

    def first(self, statement: ClauseElement, values: dict[str, Any], synchronous: bool = True):
        """Run one statement in a transaction of its own (autocommit) and return its first row (a
        named tuple), or None. `synchronous=False`: PostgreSQL acknowledges the commit before its
        WAL reaches the disk; SQLite ignores it."""
        prepared = self.prepared(statement)
        return prepared.row(self._autocommit(prepared, values, lambda cursor: cursor.fetchone(), synchronous))

    def read_first(self, statement: ClauseElement, values: dict[str, Any]):
        """Run a SELECT outside any transaction and return its first row, or None: what a page
        that only reads needs (no BEGIN and COMMIT round trips on PostgreSQL, no write lock on
        SQLite)."""
        prepared = self.prepared(statement)
        return prepared.row(self._autocommit(prepared, values, lambda cursor: cursor.fetchone(), synchronous=None))

    def read_all(self, statement: ClauseElement, values: dict[str, Any]) -> list:
        """`read_first` for every row."""
        prepared = self.prepared(statement)
        return prepared.rows(self._autocommit(prepared, values, lambda cursor: cursor.fetchall(), synchronous=None))

    def execute(self, statement: ClauseElement, values: dict[str, Any], synchronous: bool = True) -> int:
        """`first` for a statement that returns no rows: the number of rows it changed."""
        return self._autocommit(self.prepared(statement), values, lambda cursor: cursor.rowcount, synchronous)

    def _autocommit(self, prepared: Prepared, values: dict[str, Any], read, synchronous: bool | None = True):
        lone = self.take(synchronous)
        try:
            result = read(lone.execute(prepared.sql, prepared.parameters(values)))
        except BaseException:
            lone.connection.close()
            raise
        self.give_back(lone)
        return result

    def begin(self) -> LoneTransaction:
        """A transaction of its own, committed synchronously. On SQLite it takes the write lock
        at once (BEGIN IMMEDIATE), like every transaction of the engine (see make_engine)."""
        lone = self.take(synchronous=True)
        try:
            lone.execute("BEGIN" if self.postgresql else "BEGIN IMMEDIATE")
        except BaseException:
            lone.connection.close()
            raise
        return LoneTransaction(self, lone)

    def take(self, synchronous: bool | None) -> _Lone:
        """An idle connection, or a new one. `synchronous` (PostgreSQL's synchronous_commit for
        what it writes) None: a read, which does not care.

        A write takes an idle connection already set as it needs, else a new one, rather than
        one set the other way: a worker that writes both ways in turn (client_credentials
        tokens without waiting for the disk, a client assertion's jti with) would otherwise
        spend a `SET synchronous_commit` round trip on nearly every write."""
        with self.lock:
            lone = self._pop_idle(synchronous)
        if lone is not None and self.postgresql and not postgresql_connection_alive(lone.connection):
            lone.connection.close()  # the server ended it while it was idle (a restart, a timeout)
            lone = None
        if lone is None:
            lone = self._open_postgresql() if self.postgresql else self._open_sqlite()
        if self.postgresql and synchronous is not None and lone.synchronous != synchronous:
            try:
                lone.execute("SET synchronous_commit TO " + ("on" if synchronous else "off"))
            except BaseException:
                lone.connection.close()
                raise
            lone.synchronous = synchronous
        return lone

    def _pop_idle(self, synchronous: bool | None) -> _Lone | None:
        """The most recently used idle connection that suits (under the lock)."""
        if not self.idle:
            return None
        if not self.postgresql or synchronous is None:
            return self.idle.pop()
        for index in range(len(self.idle) - 1, -1, -1):
            if self.idle[index].synchronous == synchronous:
                return self.idle.pop(index)
        # None is set so: open another, unless no room is left to keep it idle afterwards.
        return self.idle.pop() if len(self.idle) >= self.IDLE_MAX else None

    def give_back(self, lone: _Lone) -> None:
        with self.lock:
            if len(self.idle) < self.IDLE_MAX:
                self.idle.append(lone)
                return
        lone.connection.close()

    def _open_sqlite(self) -> _Lone:
        pooled = self.engine.raw_connection()
        connection = pooled.driver_connection
        pooled.detach()  # ours for good; the pool opens another in its place when it needs one
        return _Lone(connection, keep=pooled)

    def _open_postgresql(self) -> _Lone:
        import psycopg

        url = self.engine.url.set(drivername="postgresql")
        connection = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
        return _Lone(connection, cursor=connection.cursor())
