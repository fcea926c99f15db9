"""Fixtures for idp.policy: an app on a real database (SQLite always, PostgreSQL when
IDP_TEST_DATABASE_URL is set), the schema created from the models, and helpers to add
organizations and users.

On PostgreSQL each test module gets a private schema (search_path in the URL), created
and dropped here, so nothing is left behind in the shared database. Between tests the
rows are deleted (cheaper than recreating the schema).
"""
from __future__ import annotations

import os
import secrets
import time
import pytest
from flask import Flask
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from idp.db import Base, db
from policy_testkit import NOW

POSTGRES_ENV = "IDP_TEST_DATABASE_URL"


def _backends() -> list[str]:
    return ["sqlite", "postgresql"] if os.environ.get(POSTGRES_ENV) else ["sqlite"]


def build_app(database_url: str) -> Flask:
    """The app through create_app; a minimal Flask app while the rest is mid-change."""
    try:
        from idp.app import create_app

        return create_app({"server.database_url": database_url,
                           "server.json_logs": False, "security.argon2_memory_cost": 1024,
                           "security.argon2_time_cost": 1})
    except ImportError:
        from idp import extensions
        from idp.config import load_settings

        app = Flask("idp_policy_tests")
        settings = load_settings({"server.database_url": database_url}, environ={})
        app.config.update(SECRET_KEY=settings.secret_key, IDP_SETTINGS=settings, TESTING=True)
        app.extensions["idp.settings"] = settings
        db.init_app(app, settings.database_url)
        extensions.init_app(app, settings)
        return app


@pytest.fixture(scope="module", params=_backends())
def policy_app(request, tmp_path_factory):
    schema = None
    admin = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('policy') / 'idp.sqlite'}"
    else:
        base = os.environ[POSTGRES_ENV]
        schema = f"idp_test_{int(time.time())}_policy_{secrets.token_hex(4)}"
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False)
    app = build_app(url)
    app.config["WTF_CSRF_ENABLED"] = False
    try:
        with app.app_context():
            Base.metadata.create_all(db.engine)
            db.session.remove()
        yield app
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        if schema:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            admin.dispose()


@pytest.fixture
def app(policy_app):
    with policy_app.app_context():
        yield policy_app
        db.session.rollback()
        for table in reversed(Base.metadata.sorted_tables):
            db.session.execute(table.delete())
        db.session.commit()
        db.session.remove()


@pytest.fixture
def make_org(app):
    from idp.models import Organization

    def make(name: str = "Acme", **values) -> Organization:
        org = Organization(name=name, **values)
        db.session.add(org)
        db.session.commit()
        return org

    return make


@pytest.fixture
def make_user(app):
    from idp.models import User

    def make(org, email: str, **values) -> User:
        values.setdefault("created_at", NOW)
        user = User(org_id=org.id, email=email, public_id=secrets.token_hex(16), **values)
        db.session.add(user)
        db.session.commit()
        return user

    return make
