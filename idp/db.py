"""The database: one engine per app, one SQLAlchemy session per request.

SQLite (WAL, busy timeout) is the embedded default; PostgreSQL is for real
deployments. Code that needs "exactly once" uses a single conditional UPDATE
(see `claim`), which both databases execute atomically.
"""
from __future__ import annotations

import threading
from datetime import datetime, timezone

from sqlalchemy import Table, create_engine, event, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, scoped_session, sessionmaker


class Base(DeclarativeBase):
    pass


def utcnow() -> datetime:
    """Naive UTC, the one time representation stored in every column."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        # Every transaction takes SQLite's write lock when it begins (BEGIN IMMEDIATE). With
        # the default deferred BEGIN, a transaction that read and then writes after another
        # process committed fails at once with "database is locked" (SQLITE_BUSY_SNAPSHOT),
        # whatever the busy timeout; taking the lock first makes it wait its turn instead.
        # Readers still never block (WAL); writers queue. PostgreSQL is for concurrency.
        @event.listens_for(engine, "connect")
        def _disable_pysqlite_begin(dbapi_conn, _record):  # pragma: no cover - trivial
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin_immediate(conn):  # pragma: no cover - trivial
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


class _Lone:
    """One DBAPI connection kept by LoneInserts, with the session setting it was last given."""

    __slots__ = ("connection", "keep", "synchronous")

    def __init__(self, connection, keep=None) -> None:
        self.connection, self.keep, self.synchronous = connection, keep, True


class LoneInserts:
    """Single-row INSERTs, each its own transaction, on plain DBAPI connections.

    The SQL is SQLAlchemy's, compiled once per table, dialect and column set; values must be
    plain (str, int, None) since no type processing happens. The connections live apart from
    the engine's pool (whose checkout, ping and reset would cost more than the INSERT), in a
    small stack of idle ones: a thread takes one, or opens one when none is idle, and puts it
    back after its INSERT; at most IDLE_MAX stay open, so a server with hundreds of threads
    (gthread workers for push long-polls) does not hold hundreds of database connections.
    SQLite: connections made by the engine (so with make_engine's pragmas, in autocommit mode)
    and detached from its pool: the INSERT is its own transaction and holds the write lock only
    while it runs. PostgreSQL: autocommit connections, so an INSERT is one round trip. A
    connection whose INSERT fails is closed rather than kept.
    """

    IDLE_MAX = 4

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sql: dict[tuple, tuple[str, list | None]] = {}
        self.idle: list[_Lone] = []
        self.lock = threading.Lock()

    def insert(self, table: Table, row: dict, synchronous: bool) -> None:
        if any(not isinstance(value, (str, int, type(None))) for value in row.values()):
            raise TypeError("insert_alone takes str, int and None values only")
        dialect = self.engine.dialect
        key = (table.name, tuple(row))
        compiled = self.sql.get(key)
        if compiled is None:
            statement = table.insert().compile(dialect=dialect, column_keys=list(row))
            compiled = self.sql[key] = (str(statement), statement.positiontup)
        sql, positions = compiled
        params = [row[name] for name in positions] if positions else row
        postgresql = dialect.name == "postgresql"
        with self.lock:
            lone = self.idle.pop() if self.idle else None
        if lone is None:
            lone = self._open_postgresql() if postgresql else self._open_sqlite()
        try:
            if postgresql and lone.synchronous != synchronous:
                lone.connection.execute("SET synchronous_commit TO " + ("on" if synchronous else "off"))
                lone.synchronous = synchronous
            lone.connection.execute(sql, params)  # autocommit: the INSERT is its own transaction
        except BaseException:
            lone.connection.close()
            raise
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
        return _Lone(psycopg.connect(url.render_as_string(hide_password=False), autocommit=True))


class Database:
    """Engine + request-scoped session. `db.session` is what the code uses."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.session = scoped_session(sessionmaker(expire_on_commit=False))
        self._lone: LoneInserts | None = None

    def init_app(self, app, url: str) -> None:
        self.engine = make_engine(url)
        self._lone = None
        self.session.configure(bind=self.engine)
        app.extensions["idp.db"] = self

        @app.teardown_appcontext
        def _remove_session(exc):
            if exc is not None:
                self.session.rollback()
            self.session.remove()

    def insert_alone(self, table: Table, row: dict, *, synchronous: bool = True) -> None:
        """INSERT one row in a transaction of its own, outside this request's session.

        For the hottest write (a client_credentials token), where SQLAlchemy's execution
        machinery (events, the BEGIN IMMEDIATE hook, result set-up, the session, the pool's
        ping and reset) cost more than the insert: see `LoneInserts`. With `synchronous=False`
        PostgreSQL acknowledges the commit before its WAL reaches the disk (a crash may forget
        the last fraction of a second of such rows); SQLite ignores it.
        """
        if self._lone is None:
            self._lone = LoneInserts(self.engine)
        self._lone.insert(table, row, synchronous)

    def in_transaction(self) -> bool:
        """Whether this request's session has begun a transaction (without creating a session to ask)."""
        return self.session.registry.has() and self.session().in_transaction()

    def claim(self, model, where, values, *, commit: bool = True) -> object | None:
        """Run `UPDATE model SET values WHERE where RETURNING *` in one statement (and commit).

        Returns the claimed row, or None when no row matched (already claimed, expired,
        raced). This is the project's one idiom for "exactly once". With `commit=False` the
        claim commits with whatever the caller writes next: the row stays locked until then
        (PostgreSQL row lock, SQLite's write lock), so a racing claim waits and then matches
        nothing.
        """
        stmt = update(model).where(*where).values(**values).returning(model)
        row = self.session.execute(stmt, execution_options={"synchronize_session": False}).scalar_one_or_none()
        if commit:
            self.session.commit()
        return row


db = Database()
