"""The database: one engine per app, one SQLAlchemy session per request.

SQLite (WAL; writers wait their turn, idp.sqlite_wait) is the embedded default; PostgreSQL is for real
deployments. Code that needs "exactly once" uses a single conditional UPDATE
(see `claim`), which both databases execute atomically.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import Table, create_engine, event, exc, update
from sqlalchemy.engine import Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import String
from sqlalchemy.orm import DeclarativeBase, Session, scoped_session, sessionmaker

from idp.deferred_writes import DeferredWrites
from idp.lone import LoneConnections, postgresql_connection_alive
from idp.sqlite_wait import wait_for_write_lock


log = logging.getLogger(__name__)
_DBAPI = "idp_dbapi_connection"
_CURSOR = "idp_dbapi_cursor"  # PostgreSQL: the one cursor of the session transaction's statements (Database._execute)
_NOTES = "idp_transaction_notes"  # what the session's transaction has established (Database.note)
_DEFERRED = "idp_deferred_writes"  # PostgreSQL: the session transaction's writes not sent yet (idp.deferred_writes)
# The largest row id: ids are INTEGER columns, and PostgreSQL's ends here. An id from a URL or a
# form beyond it names no row, and asking for it would be a driver error (a 500), not a miss.
MAX_ROW_ID = 2**31 - 1


class Base(DeclarativeBase):
    pass


def utcnow() -> datetime:
    """Naive UTC, the one time representation stored in every column."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


# A foreign key's refusal: PostgreSQL's SQLSTATE (psycopg's `sqlstate`), SQLite's extended code
# SQLITE_CONSTRAINT_FOREIGNKEY (sqlite3's `sqlite_errorcode`).
_FOREIGN_KEY_SQLSTATE, _SQLITE_CONSTRAINT_FOREIGNKEY = "23503", 787


def foreign_key_refused(error: Exception) -> bool:
    """Whether a driver's IntegrityError (from `db.run`, unwrapped) is a foreign key's refusal:
    a write naming a user deleted meanwhile (idp.users.delete), caught where that race is
    expected. Any other integrity error (a NOT NULL, a CHECK, a unique key) is not."""
    return (getattr(error, "sqlstate", None) == _FOREIGN_KEY_SQLSTATE
            or getattr(error, "sqlite_errorcode", None) == _SQLITE_CONSTRAINT_FOREIGNKEY)


class unicode_lower(FunctionElement):
    """lower() of a text column, for every letter: SQLite's own lower() changes ASCII letters only,
    so a search lower-cased in Python ("émile") never met "Émile" stored (idp.admin.queries). On
    SQLite a function of ours (registered on every connection, below); PostgreSQL's lower()
    already follows the database's character type."""

    type = String()
    inherit_cache = True
    name = "unicode_lower"


@compiles(unicode_lower)
def _lower(element, compiler, **kw):
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(unicode_lower, "sqlite")
def _sqlite_lower(element, compiler, **kw):
    return f"idp_lower({compiler.process(element.clauses, **kw)})"


def _python_lower(value):
    return value.lower() if isinstance(value, str) else value


@dataclass(frozen=True)
class PoolSettings:
    """PostgreSQL's connection pool per process (`server.database_pool_*`; SQLite has none to size)."""

    size: int = 10
    max_overflow: int = 20
    timeout: int = 30

    @classmethod
    def from_settings(cls, settings) -> "PoolSettings":
        return cls(size=int(settings.get("server.database_pool_size", cls.size)),
                   max_overflow=int(settings.get("server.database_max_overflow", cls.max_overflow)),
                   timeout=int(settings.get("server.database_pool_timeout", cls.timeout)))


def make_engine(url: str, pool: PoolSettings = PoolSettings()) -> Engine:
    """The engine for `url`. Both kinds hide statement parameters from their errors: SQLAlchemy
    writes them into the message by default, and the error line (idp.errors, with its traceback)
    would then carry a new password's argon2 hash, a device's user code or whatever else the failed
    statement held to the log. The SQL says enough."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               hide_parameters=True)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            # From here on, waiting for the write lock is ours, in finer steps than SQLite's
            # (idp.sqlite_wait): the engine's BEGIN IMMEDIATE and the lone statements wait there.
            cursor.execute("PRAGMA busy_timeout=0")
            cursor.close()
            dbapi_conn.create_function("idp_lower", 1, _python_lower, deterministic=True)  # unicode_lower

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
            # Straight on the DBAPI connection: SQLAlchemy's execution machinery around this one
            # statement cost a quarter of a short transaction.
            driver = conn.connection.driver_connection
            wait_for_write_lock(lambda: driver.execute("BEGIN IMMEDIATE"))

        return engine
    engine = create_engine(url, pool_size=pool.size, max_overflow=pool.max_overflow, pool_timeout=pool.timeout,
                           hide_parameters=True)

    # A pooled connection is checked for life as it leaves the pool, without SQLAlchemy's
    # pre-ping: that one is a round trip per transaction (a third of a short read's cost on
    # PostgreSQL, and login pages run several transactions). A connection the server closed
    # (a restart, an idle timeout, pg_terminate_backend) is discarded and replaced here.
    @event.listens_for(engine, "checkout")
    def _refuse_dead_connection(dbapi_conn, _record, _proxy):
        if not postgresql_connection_alive(dbapi_conn):
            raise exc.DisconnectionError("the server closed this connection")

    return engine


class RequestSession(Session):
    """The request's session; a commit with nothing to commit does nothing.

    Code that writes alone commits whatever the session may hold first, whether or not it holds
    anything (/authorize's login transaction, idp.login.transaction.begin). SQLAlchemy would begin
    a transaction for that commit, only to end it: its events and bookkeeping were about 0.1 ms
    of /authorize. Nothing is skipped that a commit would do: with no transaction begun, no
    pending, deleted or modified object to flush and nothing noted in `info` (the audit events
    and logouts waiting for a commit are noted there, and only inside a transaction), the
    commit would send nothing, and the listeners of commits would find nothing to do."""

    def commit(self) -> None:
        if (self.in_transaction() or self.info or self.new or self.deleted
                or self.identity_map.check_modified()):
            super().commit()


class Database:
    """Engine + request-scoped session. `db.session` is what the code uses."""

    def __init__(self) -> None:
        self.engine: Engine | None = None
        factory = sessionmaker(class_=RequestSession, expire_on_commit=False)
        self.session = scoped_session(factory)
        self._lone: LoneConnections | None = None
        self._on_rollback: list = []

        @event.listens_for(factory, "after_soft_rollback")
        def _forget_what_was_rolled_back(session, previous_transaction):
            # Every rollback, a savepoint's included (a factor's failed clean-up hook:
            # idp.factors.registry._cleanup_hook): what was read from rows it undid is stale.
            for forget in self._on_rollback:
                forget()

        @event.listens_for(factory, "after_transaction_end")
        def _forget_dbapi_connection(session, transaction):
            if transaction.parent is None:  # the outermost transaction ended: its connection is released
                session.info.pop(_DBAPI, None)
                # Dropped, not closed: its connection may be another thread's by now (back in the
                # pool), and a client-side cursor holds nothing on the server.
                session.info.pop(_CURSOR, None)
                session.info.pop(_NOTES, None)
                session.info.pop(_DEFERRED, None)  # (a commit sent them first; a rollback drops them)

        @event.listens_for(factory, "before_commit")
        def _send_deferred_writes(session):
            deferred = session.info.get(_DEFERRED)
            if deferred:
                deferred.send(session.info[_CURSOR])

    def forget_on_rollback(self, forget) -> None:
        """Call `forget()` after every rollback of the session's transaction or of a savepoint in
        it: a cache of rows read in the transaction (idp.factors.store's live credentials) must
        not outlive the writes it saw being undone."""
        if forget not in self._on_rollback:
            self._on_rollback.append(forget)

    def init_app(self, app, url: str, pool: PoolSettings = PoolSettings()) -> None:
        self.engine = make_engine(url, pool)
        self._lone = None
        if self.engine.dialect.name == "postgresql":
            event.listen(self.engine, "before_cursor_execute", self._send_deferred_first)
        self.session.configure(bind=self.engine)
        app.extensions["idp.db"] = self

        @app.teardown_appcontext
        def _remove_session(exc):
            from flask import g

            lone = g.pop("idp_lone_transaction", None)
            if lone is not None:
                lone.close()  # a grant that failed after its claim: the claim is undone
            if exc is not None:
                self.session.rollback()
            self.session.remove()
            for statement, values in g.pop("idp_alone_after_request", ()):
                try:
                    self.execute_alone(statement, values, synchronous=False)
                except Exception:  # the answer stands; what this wrote can wait for the next request
                    log.warning("a write after the request failed", exc_info=True)

    def _send_deferred_first(self, conn, _cursor, _statement, _parameters, _context, _executemany) -> None:
        """Any statement SQLAlchemy runs on the session transaction's connection (the ORM's, a
        SAVEPOINT) comes after the writes deferred so far (`_write`), as it would have.

        Their failure is not that statement's: raised as `DeferredWriteFailed` (a caller that
        expects an IntegrityError of its own statement, a flush in a savepoint, must not take it
        for one), except a value the database refuses (DataError), which idp.errors answers
        with a 400 wherever it is raised."""
        if not self.session.registry.has():
            return
        session = self.session()
        deferred = session.info.get(_DEFERRED)
        if deferred and conn.connection.driver_connection is session.info.get(_DBAPI):
            import psycopg

            try:
                deferred.send(session.info[_CURSOR])
            except psycopg.DataError:
                raise
            except psycopg.Error as error:
                raise DeferredWriteFailed(f"a deferred write failed: {type(error).__name__}") from error

    def lone(self) -> LoneConnections:
        if self._lone is None:
            self._lone = LoneConnections(self.engine)
        return self._lone

    def alone_after_request(self, statement, values: dict) -> None:
        """Run a prebuilt write (`execute_alone`) once this request has ended: after its session
        and its lone transaction (both rolled back unless they committed), when the app context
        is torn down. For a write that is no part of what the request does and must hold no lock
        through it: a session's last-use stamp (idp.login.session). PostgreSQL does not wait for
        the disk (`synchronous=False`); a failure is logged, never answered (the answer has been
        made). Outside a request (an app context of the CLI), it runs when that context ends."""
        from flask import g

        g.setdefault("idp_alone_after_request", []).append((statement, values))

    def insert_alone(self, table: Table, row: dict, *, synchronous: bool = True) -> None:
        """INSERT one row in a transaction of its own, outside this request's session.

        For a request's one write (a token, /authorize's login transaction), where SQLAlchemy's
        execution machinery (events, the BEGIN IMMEDIATE hook, result set-up, the session, the
        pool's reset) cost more than the insert: see `idp.lone`. With `synchronous=False`
        PostgreSQL acknowledges the commit before its WAL reaches the disk (a crash may forget
        the last fraction of a second of such rows); SQLite ignores it. On SQLite it takes the
        write lock: the session must hold no transaction (refused, as for `begin_alone`, rather
        than left to wait for it until the busy timeout).
        """
        self._refuse_inside_a_session_transaction()
        self.lone().insert(table, row, synchronous)

    def read_first(self, statement, values: dict):
        """The first row of a prebuilt SELECT (or None): in the session's transaction when one is
        open (its own writes visible, on its connection), otherwise alone, outside any
        transaction (`LoneConnections.read_first`): a request that only reads, or whose writes
        all go alone, then opens no transaction for it."""
        if self.in_transaction():
            return self.run(statement, values).first()
        return self.lone().read_first(statement, values)

    def read_all(self, statement, values: dict) -> list:
        """`read_first` for every row."""
        if self.in_transaction():
            return self.run(statement, values).all()
        return self.lone().read_all(statement, values)

    def first_alone(self, statement, values: dict, *, synchronous: bool = True):
        """One prebuilt statement in a transaction of its own, outside this request's session,
        committed before this returns; its first row or None. For a conditional UPDATE ...
        RETURNING that must hold whatever happens next (an authorization code is spent by its
        first presentation); reads use `read_first`. A write takes SQLite's write
        lock for that one statement: the session must hold no transaction (refused, as for
        `begin_alone`). `synchronous=False` as for `insert_alone`."""
        self._refuse_inside_a_session_transaction()
        return self.lone().first(statement, values, synchronous)

    def execute_alone(self, statement, values: dict, *, synchronous: bool = True) -> int:
        """`first_alone` for a statement that returns no rows: the number of rows it changed."""
        self._refuse_inside_a_session_transaction()
        return self.lone().execute(statement, values, synchronous)

    def _refuse_inside_a_session_transaction(self) -> None:
        if self.in_transaction():
            raise RuntimeError("end the session's transaction before running a lone statement")

    def begin_alone(self):
        """A transaction of its own outside this request's session (`idp.lone.LoneTransaction`),
        for a grant's few hot statements. It is this request's: whatever the request has not
        committed when it ends is rolled back. On SQLite it takes the write lock: the session
        must hold no transaction when it begins, nor begin one before it ends (either would
        wait for the other until the busy timeout). A session transaction still open here is
        refused at once rather than left to that wait."""
        from flask import g

        self._refuse_inside_a_session_transaction()
        transaction = self.lone().begin()
        g.idp_lone_transaction = transaction
        return transaction

    def run(self, statement, values: dict | None = None):
        """Execute a prebuilt Core statement in this request's session transaction, straight on
        its DBAPI connection (`idp.lone.Ran`: `first()`, `all()`, `scalar()`, `rowcount`).

        The SQL is compiled once per statement and dialect and values go through the columns'
        own processors (idp.lone.Prepared), as SQLAlchemy would do; what is skipped is its
        per-execution machinery (about 10 us per statement on SQLite, 20 on PostgreSQL), which
        the login's dozen statements per request add up. For statements built once at import,
        never per call (each distinct statement object is compiled and kept). Like any Core
        statement it does not autoflush pending ORM objects.
        """
        from idp.lone import Ran

        prepared = self.lone().prepared(statement)
        return Ran(self._execute(prepared, prepared.parameters(values or {})), prepared)

    def run_insert(self, table, row: dict) -> None:
        """`run` for one INSERT of `row` (its keys are the columns given; defaults fill the rest).

        On PostgreSQL it is sent with the transaction's next statement (`_write`): a round trip
        is most of an INSERT's cost."""
        prepared = self.lone().prepared_insert(table, row)
        self._write(prepared, prepared.parameters(row), reads=False)

    def write_later(self, statement, values: dict | None = None) -> None:
        """`run` for an UPDATE or DELETE whose outcome (rows, rowcount) the caller does not read:
        on PostgreSQL sent with the transaction's next statement, as `run_insert` is (`_write`).
        Everything that comes after it in the transaction sees what it did."""
        prepared = self.lone().prepared(statement)
        self._write(prepared, prepared.parameters(values or {}), reads=True)

    def run_insert_many(self, table, rows: list[dict]) -> None:
        """`run_insert` for several rows with the same keys: one executemany on SQLite (a single
        call); on PostgreSQL one INSERT of them all (`INSERT ... VALUES (...), (...)`, for the few
        rows a request writes: the login's two audit events), which costs psycopg less than an
        executemany, pipelined by it, of as many statements."""
        if len(rows) == 1:
            return self.run_insert(table, rows[0])
        lone = self.lone()
        if lone.postgresql:
            columns = tuple(rows[0])
            prepared = lone.prepared_insert_rows(table, columns, len(rows))
            self._write(prepared, prepared.parameters(
                {f"{name}__{i}": row[name] for i, row in enumerate(rows) for name in columns}), reads=False)
            return None
        prepared = lone.prepared_insert(table, rows[0])
        driver = self._dbapi()
        cursor = self.session().info.get(_CURSOR)
        target = cursor if cursor is not None else driver  # psycopg: on the kept cursor (`_execute`)
        target.executemany(prepared.sql, [prepared.parameters(row) for row in rows])

    def _execute(self, prepared, parameters):
        """One statement on the session transaction's DBAPI connection; what to read its rows from.

        On PostgreSQL through one cursor kept with the connection for the whole transaction:
        psycopg's `Connection.execute` makes a cursor per call, about 20 us of a short
        statement's client CPU out of 70 (a two-key SELECT in a loop; through `run`, 100 us
        became 87), and a login's code POST runs about ten statements here. The kept cursor is shared by the transaction's statements, so
        each one's rows are read at once (`_Fetched`): a caller may read an earlier statement's
        rows after running another. (Not on SQLite, whose `Connection.execute` is cheap and where
        a cursor left on a read would keep its snapshot open: idp.lone.)

        The writes deferred so far (`_write`) go first: in this statement itself when it writes
        and touches none of their tables, else on their own just before it."""
        driver = self._dbapi()
        session = self.session()
        cursor = session.info.get(_CURSOR)
        if cursor is None:
            return driver.execute(prepared.sql, parameters)
        sql = prepared.sql
        deferred = session.info.get(_DEFERRED)
        if deferred:
            if deferred.can_ride_with(prepared):
                sql, parameters = deferred.carried_by(sql, parameters)
            else:
                deferred.send(cursor)
        cursor.execute(sql, parameters)
        return _Fetched(cursor)

    def _write(self, prepared, parameters, *, reads: bool) -> None:
        """A write whose outcome nobody reads: on PostgreSQL deferred to the transaction's next
        statement (idp.deferred_writes), except in a savepoint (whose rollback must undo it) and
        when it `reads` (an UPDATE's or DELETE's WHERE) a table the writes deferred so far
        change (they go in one statement, where it would not see them: they are sent first); run
        at once on SQLite, where a statement is no round trip."""
        driver = self._dbapi()
        session = self.session()
        cursor = session.info.get(_CURSOR)
        if cursor is None:
            driver.execute(prepared.sql, parameters)
            return
        deferred = session.info.get(_DEFERRED)
        if session.in_nested_transaction() or (reads and deferred and deferred.touches(prepared)):
            self._execute(prepared, parameters)  # (which sends those deferred first)
            return
        if deferred is None:
            deferred = session.info[_DEFERRED] = DeferredWrites()
        deferred.add(prepared, parameters)

    def _dbapi(self):
        """The DBAPI connection of the session's transaction (beginning one if needed), kept in the
        session's `info` until that transaction ends: `session.connection()` costs more than the
        statements it serves."""
        session = self.session()
        driver = session.info.get(_DBAPI)
        if driver is None:
            driver = session.info[_DBAPI] = session.connection().connection.driver_connection
            if not hasattr(driver, "executemany"):  # psycopg (sqlite3's connection runs statements itself)
                session.info[_CURSOR] = driver.cursor()
        elif session.in_nested_transaction():
            # SQLAlchemy emits a savepoint's SAVEPOINT (begin_nested) only when a statement asks it
            # for the connection, which these statements do not: without this, those run first in
            # the savepoint (a factor's clean-up hook: idp.factors.registry._cleanup_hook) ran
            # outside it, kept when it was rolled back, and on PostgreSQL a failing one aborted
            # the whole transaction (the account's disabling with it). Once emitted, a dict look-up.
            session.connection()
        return driver

    def note(self, key: str, value) -> None:
        """Remember `value` under `key` until the session's transaction ends (committed or rolled
        back): what a statement of it established and holds (a row it locked), for a later step
        of the same transaction not to ask again (`noted`). Not inside a savepoint, whose rollback
        would release what it took."""
        session = self.session()
        if session.in_transaction() and not session.in_nested_transaction():
            session.info.setdefault(_NOTES, {})[key] = value

    def noted(self, key: str):
        """What `note` remembered under `key` in the session's current transaction, else None."""
        if not self.in_transaction():
            return None
        return self.session().info.get(_NOTES, {}).get(key)

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


class DeferredWriteFailed(RuntimeError):
    """A write deferred on PostgreSQL (idp.deferred_writes) failed when it was sent, with a
    statement that is not its own (the original error is its cause)."""


class _Fetched:
    """A statement's outcome read off a shared cursor at once: its rows (when it returns any)
    and its rowcount, read afterwards as from the cursor (`fetchone`, `fetchall`, `rowcount`)."""

    __slots__ = ("rows", "rowcount", "_next")

    def __init__(self, cursor) -> None:
        self.rowcount = cursor.rowcount
        self.rows = cursor.fetchall() if cursor.description is not None else []
        self._next = 0

    def fetchone(self):
        if self._next >= len(self.rows):
            return None
        self._next += 1
        return self.rows[self._next - 1]

    def fetchall(self) -> list:
        rest, self._next = self.rows[self._next:], len(self.rows)
        return rest


db = Database()
