"""pytest fixtures for factor tests (ours and third-party): import them into a conftest.py::

    from idp.factors.fixtures import factor_app, factor_user, pg_app  # noqa: F401

`factor_app` is an app on a fresh SQLite database with the schema created, inside an app
context; `factor_user` a committed user in it. `pg_app` is the same on PostgreSQL
(IDP_TEST_DATABASE_URL, in a private schema), skipped when the variable is unset.
"""
from __future__ import annotations

import os

import pytest

from idp.factors import testing


@pytest.fixture
def factor_app(tmp_path):
    app = testing.make_app(testing.database_url_for_tests(tmp_path))
    with app.app_context():
        testing.create_schema()
        yield app


@pytest.fixture
def factor_user(factor_app):
    return testing.make_user("alice@example.com")


@pytest.fixture
def pg_app():
    base = os.environ.get("IDP_TEST_DATABASE_URL")
    if not base:
        pytest.skip("IDP_TEST_DATABASE_URL is not set")
    from sqlalchemy import create_engine, text

    url, schema = testing.postgres_url_with_schema(base)
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        app = testing.make_app(url)
        with app.app_context():
            testing.create_schema()
            yield app
            from idp.db import db

            db.session.remove()
            db.engine.dispose()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
