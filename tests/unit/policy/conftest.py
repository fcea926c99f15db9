"""Fixtures for idp.policy: an app on a real database (SQLite always, PostgreSQL when
IDP_TEST_DATABASE_URL is set), the schema created from the models, and helpers to add
organizations and users.

On PostgreSQL each test module gets a private schema (tests/fixtures/database.py,
`module_database`), so nothing is left behind in the shared database. Between tests the
rows are deleted (cheaper than recreating the schema).
"""
from __future__ import annotations

import secrets

import pytest

from fixtures.database import backends, module_database
from idp.db import Base, db
from policy_testkit import NOW

@pytest.fixture(scope="module", params=backends())
def policy_app(request, tmp_path_factory):
    from idp.app import create_app

    with module_database(request, tmp_path_factory, "policy") as url:
        app = create_app({"server.database_url": url, "server.json_logs": False,
                          "security.argon2_memory_cost": 1024, "security.argon2_time_cost": 1})
        app.config["WTF_CSRF_ENABLED"] = False
        with app.app_context():
            Base.metadata.create_all(db.engine)
            db.session.remove()
        try:
            yield app
        finally:
            with app.app_context():
                db.session.remove()
                db.engine.dispose()


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
