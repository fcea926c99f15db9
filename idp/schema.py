"""The database schema: Alembic migrations run from code, for `idp init`, the tests and upgrades.

The migrations ship inside the package (idp/migrations/), and the Alembic
`Config` is built here rather than read from an alembic.ini, so an installed
wheel can migrate a database with nothing but `idp init`.

Until the first release the history is one revision, `0001_initial`, generated
from the models. Whoever changes a model regenerates it with `make migration`
(`python -m idp.schema regenerate`), commits it with the model change, and
`python -m idp.schema check URL` (or the test suite) confirms that a migrated
database matches the models on SQLite and PostgreSQL.
"""
from __future__ import annotations

import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
INITIAL_REVISION = "0001_initial"
# Any constant shared by every `idp init`: two of them started at once on
# PostgreSQL (say, two containers) migrate one after the other, not together.
_PG_LOCK_ID = 0x1D9_5C4E


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic Config pointing at the packaged migrations, optionally bound to a connection."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("file_template", "%%(rev)s")  # versions/0001_initial.py
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@contextmanager
def _engine(engine_or_url: Engine | str) -> Iterator[Engine]:
    if isinstance(engine_or_url, Engine):
        yield engine_or_url
        return
    from idp.db import make_engine

    engine = make_engine(str(engine_or_url))
    try:
        yield engine
    finally:
        engine.dispose()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine_or_url: Engine | str) -> str | None:
    """The revision the database is at, or None for a database never migrated."""
    with _engine(engine_or_url) as engine, engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def wait_for_other_inits(connection_or_session) -> None:
    """On PostgreSQL, wait until no other `idp init` is in a transaction holding the init lock,
    and hold it until this transaction ends: concurrent inits (containers started together)
    migrate, and create the first signing keys, one after the other. (SQLite: every transaction
    takes the database's write lock as it begins.)"""
    bind = connection_or_session.get_bind() if hasattr(connection_or_session, "get_bind") else connection_or_session
    if bind.dialect.name == "postgresql":
        connection_or_session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})


class UnknownRevision(Exception):
    """The database is at a revision this build's migrations do not have: a newer build made it
    (an upgrade rolled back), or another application's Alembic history is in that database."""

    def __init__(self, revision: str | None) -> None:
        super().__init__(revision)
        self.revision = revision


def upgrade(engine_or_url: Engine | str, revision: str = "head") -> str | None:
    """Migrate the database to `revision` (default: head). Idempotent; returns the new revision.
    Raises UnknownRevision, changing nothing, when the database is at a revision unknown here.

    On PostgreSQL the whole upgrade is one transaction (DDL is transactional there)
    under an advisory lock, so concurrent callers wait and then find nothing to do.
    """
    with _engine(engine_or_url) as engine:
        with engine.begin() as connection:
            wait_for_other_inits(connection)
            _refuse_unknown_revision(connection)
            command.upgrade(alembic_config(connection), revision)
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()


def _refuse_unknown_revision(connection: Connection) -> None:
    """UnknownRevision rather than Alembic's CommandError (a traceback out of `idp init`)."""
    current = MigrationContext.configure(connection).get_current_revision()
    if current is None:
        return
    try:
        known = ScriptDirectory.from_config(alembic_config()).get_revision(current)
    except (CommandError, RevisionError):  # names no revision of ours
        known = None
    if known is None:
        raise UnknownRevision(current)


def differences(engine_or_url: Engine | str) -> list:
    """What separates the database's schema from the models (empty when they match)."""
    import idp.models  # noqa: F401  (registers every table)
    from idp.db import Base

    with _engine(engine_or_url) as engine, engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return ([diff for diff in compare_metadata(context, Base.metadata) if not _ignored(diff)]
                + _sqlite_autoincrement_differences(connection, Base.metadata))


def _sqlite_autoincrement_differences(connection: Connection, metadata) -> list:
    """The SQLite tables whose AUTOINCREMENT is not the model's `sqlite_autoincrement`, as
    ("modify_sqlite_autoincrement", table name, the model's): Alembic's comparison does not see
    it. Without it SQLite gives a deleted user's id, when it was the highest, to the next user,
    whom the audit log's events of the one who left would then name (idp.users.delete); a
    database made before the users table had it passed every check."""
    if connection.dialect.name != "sqlite":
        return []
    created = dict(connection.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'table'")).all())
    found = []
    for table in metadata.sorted_tables:
        wanted = bool(table.dialect_options["sqlite"]["autoincrement"])
        sql = created.get(table.name)
        if sql is not None and ("AUTOINCREMENT" in sql.upper()) != wanted:
            found.append(("modify_sqlite_autoincrement", table.name, wanted))
    return found


def _ignored(diff) -> bool:
    # Alembic's own bookkeeping table is not a model.
    return isinstance(diff, tuple) and diff[0] == "remove_table" and diff[1].name == "alembic_version"


def regenerate_initial() -> Path:
    """Delete every revision and autogenerate `0001_initial` from the models against a scratch SQLite DB."""
    versions = MIGRATIONS_DIR / "versions"
    for old in versions.glob("*.py"):
        if old.name != "__init__.py":
            old.unlink()
    with tempfile.TemporaryDirectory() as scratch:
        with _engine(f"sqlite:///{Path(scratch) / 'scratch.sqlite'}") as engine, engine.begin() as connection:
            command.revision(alembic_config(connection), message="initial schema", autogenerate=True,
                             rev_id=INITIAL_REVISION)
    (path,) = [p for p in versions.glob(f"{INITIAL_REVISION}.py")]
    return path


def verify() -> list[str]:
    """Migrate a scratch SQLite database, and a scratch PostgreSQL schema when IDP_TEST_DATABASE_URL
    is set, from nothing to head; return the problems found (empty: the migration matches the models)."""
    import os
    import secrets

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    problems: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'verify.sqlite'}"
        upgrade(url)
        problems += [f"sqlite: {diff}" for diff in differences(url)]
        print("sqlite: checked")
    base = os.environ.get("IDP_TEST_DATABASE_URL")
    if base:
        schema = f"idp_verify_{secrets.token_hex(4)}"
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
            url = url.render_as_string(hide_password=False)
            upgrade(url)
            problems += [f"postgresql: {diff}" for diff in differences(url)]
            print("postgresql: checked")
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
    else:
        print("postgresql: skipped (set IDP_TEST_DATABASE_URL to check it too)")
    return problems


def _check_or_upgrade(what: str, url: str) -> int:
    print(f"at revision {upgrade(url)}")
    if what == "check":
        found = differences(url)
        for diff in found:
            print(f"differs from the models: {diff}", file=sys.stderr)
        if found:
            # Either side may be behind: an operator's database made by an earlier build (the one
            # revision is rewritten until the first release), or a developer's models changed
            # without regenerating the revision.
            print("the database does not match this build's models: a database made by an earlier build "
                  "must be recreated (README, \"Database schema\"); in a checkout whose models changed, "
                  "the migration is stale: run `make migration`", file=sys.stderr)
            return 1
        print("schema matches the models")
    return 0


def main(argv: list[str]) -> int:
    """`python -m idp.schema regenerate | verify | check URL | upgrade URL`."""
    if argv[:1] == ["regenerate"] and len(argv) == 1:
        print(f"wrote {regenerate_initial()}")
        return 0
    if argv[:1] == ["verify"] and len(argv) == 1:
        problems = verify()
        for problem in problems:
            print(f"differs from the models: {problem}", file=sys.stderr)
        return 1 if problems else 0
    if argv[:1] in (["check"], ["upgrade"]) and len(argv) == 2:
        try:
            return _check_or_upgrade(argv[0], argv[1])
        except UnknownRevision as exc:
            print(f"error: the database is at revision {exc.revision!r}, which this build of idp does not know "
                  "(made by a newer version?): nothing changed", file=sys.stderr)
            return 1
        except SQLAlchemyError as exc:
            # An operator's command (README, "Database schema"): one line, never the URL (it may
            # hold a password), as `idp` prints a database error.
            detail = getattr(exc, "orig", None) or exc
            print(f"error: database: {str(detail).splitlines()[0] if str(detail) else type(detail).__name__}",
                  file=sys.stderr)
            return 1
    print(main.__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
