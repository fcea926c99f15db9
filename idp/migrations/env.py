"""Alembic environment, driven from code by idp/schema.py (no alembic.ini at run time).

idp/schema.py builds the Alembic `Config` and hands over an open connection in
`config.attributes["connection"]`; this file only points Alembic at the models'
metadata. Batch mode on SQLite lets future migrations alter tables there.
"""
from __future__ import annotations

from alembic import context

import idp.models  # noqa: F401  (registers every table on Base.metadata)
from idp.db import Base

config = context.config
target_metadata = Base.metadata


def _add_imports(context_, revision, directives) -> None:
    # Autogenerate renders JSONB(astext_type=Text()) without importing Text.
    for script in directives:
        script.imports.add("from sqlalchemy import Text")


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # Batch operations let SQLite (no ALTER for most changes) follow later migrations;
        # always on, so a regenerated file does not depend on the database it was made against.
        render_as_batch=True,
        compare_type=True,
        process_revision_directives=_add_imports,
    )


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        # Called by the plain `alembic` command: build an engine from the configured URL.
        from idp.db import make_engine

        engine = make_engine(config.get_main_option("sqlalchemy.url"))
        with engine.connect() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
        engine.dispose()
        return
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `idp init`")
run_migrations_online()
