"""Growing lockouts, on the database and on Redis (both shared across processes)."""
from __future__ import annotations

import socket
import uuid

import pytest


def _redis_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.fixture(params=["database", "redis"])
def app(request, migrated_database_url):
    from idp.app import create_app

    overrides = {"server.database_url": migrated_database_url, "ratelimit.factor_failures_before_lockout": 3,
                 "ratelimit.factor_lockout_seconds": 10}
    if request.param == "redis":
        if not _redis_up():
            pytest.skip("no Redis on 127.0.0.1:6379")
        overrides["server.redis_url"] = "redis://127.0.0.1:6379/15"
    return create_app(overrides)


def test_lockout_grows_and_clears(app):
    from idp import lockout

    key = [f"factor:user:{uuid.uuid4().hex}"]
    with app.app_context():
        assert lockout.check(key) == 0
        assert lockout.fail(key) == 0 and lockout.fail(key) == 0
        first = lockout.fail(key)
        assert first == 10 and 9 <= lockout.check(key) <= 11
        assert lockout.fail(key) == 20  # doubles
        lockout.succeed(key)
        assert lockout.check(key) == 0


def test_address_keys_have_their_own_higher_threshold(app):
    from idp import lockout

    key = [f"factor:ip:{uuid.uuid4().hex}"]
    with app.app_context():
        for _ in range(10):
            assert lockout.fail(key) == 0


def test_redis_failure_falls_back_to_the_database(migrated_database_url):
    """A dead Redis must not turn a login into a 500: the counters use the database meanwhile."""
    from idp import lockout
    from idp.app import create_app

    app = create_app({"server.database_url": migrated_database_url, "server.redis_url": "redis://127.0.0.1:1/0",
                      "ratelimit.factor_failures_before_lockout": 1, "ratelimit.factor_lockout_seconds": 10})
    key = [f"factor:user:{uuid.uuid4().hex}"]
    with app.app_context():
        assert lockout.check(key) == 0
        assert lockout.fail(key) == 10
        assert lockout.check(key) >= 9
        lockout.succeed(key)
        from idp.db import db

        db.session.commit()
        assert lockout.check(key) == 0
