"""Fixtures for the admin views: the app on a real database (SQLite; PostgreSQL too when
IDP_TEST_DATABASE_URL is set, in a private schema), organizations, users, and a browser
signed in as a given user through a real session row (as the login pipeline leaves it).
"""
from __future__ import annotations

import secrets
import time

import pytest

from fixtures.database import backends, emptied_after, module_app
from idp.db import db, utcnow

@pytest.fixture(scope="module", params=backends())
def admin_app(request, tmp_path_factory):
    with module_app(request, tmp_path_factory, "admin") as app:
        app.config["TESTING"] = True
        yield app


@pytest.fixture
def app(admin_app):
    admin_app.config["WTF_CSRF_ENABLED"] = False
    with emptied_after(admin_app):
        yield admin_app


@pytest.fixture
def make_org(app):
    from idp.models import Organization

    def make(name: str = "Acme", **values):
        org = Organization(name=name, **values)
        db.session.add(org)
        db.session.commit()
        return org

    return make


@pytest.fixture
def make_user(app):
    from idp.models import User

    def make(org, email: str, **values):
        user = User(org_id=org.id, email=email, public_id=secrets.token_hex(16), **values)
        db.session.add(user)
        db.session.commit()
        return user

    return make


@pytest.fixture
def world(make_org, make_user):
    """Two organizations, each with an admin, and users of every 2FA standing in the first."""
    acme, other = make_org("Acme"), make_org("Other")
    return {
        "acme": acme,
        "other": other,
        "admin": make_user(acme, "admin@acme.test", name="Ada Admin", role="admin", second_factor_count=1),
        "alice": make_user(acme, "alice@acme.test", name="Alice"),
        "bob": make_user(acme, "bob@acme.test", name="Bob", second_factor_count=1),
        "carol": make_user(acme, "carol@acme.test", name="Carol", mfa_setting="required"),
        "other_admin": make_user(other, "admin@other.test", role="admin"),
        "stranger": make_user(other, "stranger@other.test"),
    }


@pytest.fixture
def browser(app):
    """`browser(user)`: a test client signed in as `user` (None: anonymous)."""
    from datetime import timedelta

    from idp.models import UserSession
    from idp.security.tokens import random_token, sha256_hex

    from flask.testing import FlaskClient

    class FreshSessionClient(FlaskClient):
        """Each request starts with a fresh database session and signed-in session, as in production
        (the test's app context would otherwise keep one session, its stale objects, and the
        previous request's `g`, across requests and clients)."""

        def open(self, *args, **kwargs):
            from flask import g

            db.session.remove()
            # Requests share the test's app context, hence its `g`: forget the signed-in session
            # that the previous request (maybe another client's) left there.
            g.pop("idp_session_row", None)
            # ... and the language it chose (Flask-Babel's and idp.template_i18n's caches): each
            # request chooses its own, from its Accept-Language.
            g.pop("_flask_babel", None)
            g.pop("_idp_translations", None)
            try:
                return super().open(*args, **kwargs)
            finally:
                db.session.remove()

    def make(user=None):
        client = FreshSessionClient(app, app.response_class, use_cookies=True)
        if user is not None:
            token = random_token(32)
            db.session.add(UserSession(id=sha256_hex(token), sid=random_token(16), user_id=user.id,
                                       auth_time=int(time.time()), amr=["pwd", "otp", "mfa"],
                                       acr="urn:idp:acr:mfa", expires_at=utcnow() + timedelta(hours=1)))
            db.session.commit()
            with client.session_transaction() as session:
                session["sso"] = token
        return client

    return make
