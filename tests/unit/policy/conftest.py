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

from fixtures.database import backends, emptied_after, module_app
from idp.db import db
from policy_testkit import NOW

@pytest.fixture(scope="module", params=backends())
def policy_app(request, tmp_path_factory):
    with module_app(request, tmp_path_factory, "policy",
                    {"security.argon2_memory_cost": 1024, "security.argon2_time_cost": 1}) as app:
        app.config["WTF_CSRF_ENABLED"] = False
        yield app


@pytest.fixture
def app(policy_app):
    with emptied_after(policy_app):
        yield policy_app


@pytest.fixture
def run(app):
    """`idp policy ...` in this process (click's runner); the session sees what it wrote."""
    from click.testing import CliRunner

    from idp.policy.cli import policy

    runner = CliRunner()

    def invoke(*args):
        result = runner.invoke(policy, list(args), catch_exceptions=False)
        db.session.expire_all()
        return result

    return invoke


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
