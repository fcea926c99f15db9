"""An address's password count lives while guesses from it fail, and no longer (idp.lockout).

Every guess is counted against its address before argon2 checks it, and a right password takes
its own count back. A right password must not also keep the address's earlier failures alive:
the count is dropped once the address has made no failed guess for a day (`idp maintenance`
on the database, the key's time to live on Redis), and people sharing an address (an office, a
carrier's NAT) sign in there every day. Kept alive by their logins, the typos of months added up
to the address's limit, and from then on each further typo locked everyone behind it out.
"""
from __future__ import annotations

import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from fixtures.oidc import FormBrowser, password_login, seed, start_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "concurrency"))
from test_password_reset_limit_race import redis_url  # noqa: E402,F401 - a fixture: a Redis of the test's own


@pytest.fixture(params=["database", "redis"])
def server(request, migrated_database_url):
    overrides = {}
    if request.param == "redis":
        overrides["server.redis_url"] = request.getfixturevalue("redis_url")
    live = start_server(migrated_database_url, overrides)
    live.backend = request.param
    live.redis_url = overrides.get("server.redis_url")
    yield live
    live.stop()


def _address_key(server) -> str:
    from idp import lockout

    with server.context():
        return lockout.PasswordGuess.of("", "127.0.0.1").address


def _wrong_password(server, rp_client) -> None:
    from fixtures.oidc import RelyingParty

    browser = FormBrowser(server.url)
    browser.get(RelyingParty(server.url, rp_client).authorization_url())
    assert browser.login(f"{uuid.uuid4().hex}@example.com", "not the password").status == 401


def _redis_of(server):
    """The server's Redis, where it keeps its counters there; None on the database."""
    if server.backend != "redis":
        return None
    import redis

    return redis.Redis.from_url(server.redis_url)


def _age_the_count(server, key: str, store) -> None:
    """A day and more goes by with no failed guess from the address: its count's time moved back
    (Redis: a minute left to live)."""
    if server.backend == "redis":
        store.expire(f"idp:fail:{key}", 60)
        return
    from idp.db import db, utcnow
    from idp.models import FailureCounter

    with server.context():
        db.session.execute(update(FailureCounter).where(FailureCounter.key == key)
                           .values(updated_at=utcnow() - timedelta(days=2)))
        db.session.commit()


def test_a_right_password_does_not_keep_the_addresss_failures_alive(server):
    from fixtures.oidc import RelyingParty

    seeded = seed(server)
    key = _address_key(server)
    store = _redis_of(server)
    _wrong_password(server, seeded.first_party)

    if server.backend == "redis":
        assert int(store.get(f"idp:fail:{key}")) == 1
    _age_the_count(server, key, store)

    # Someone behind the address signs in with the right password.
    assert password_login(FormBrowser(server.url), RelyingParty(server.url, seeded.first_party),
                          seeded.user_email, seeded.password).get("code")

    if server.backend == "redis":
        assert int(store.get(f"idp:fail:{key}")) == 1  # its own count taken back, the failure kept...
        assert 0 < store.ttl(f"idp:fail:{key}") <= 60  # ...for the time it had left
    else:
        from idp import maintenance
        from idp.db import db
        from idp.models import FailureCounter

        with server.context():
            assert db.session.scalar(select(FailureCounter.failures).where(FailureCounter.key == key)) == 1
            maintenance.purge()
            assert db.session.scalar(select(FailureCounter).where(FailureCounter.key == key)) is None


def test_a_wrong_password_keeps_them(server):
    """The other half: each failed guess from the address starts its day again."""
    seeded = seed(server)
    key = _address_key(server)
    store = _redis_of(server)
    _wrong_password(server, seeded.first_party)
    _age_the_count(server, key, store)
    _wrong_password(server, seeded.first_party)
    if server.backend == "redis":
        assert int(store.get(f"idp:fail:{key}")) == 2 and store.ttl(f"idp:fail:{key}") > 3600
    else:
        from idp import maintenance
        from idp.db import db
        from idp.models import FailureCounter

        with server.context():
            maintenance.purge()
            assert db.session.scalar(select(FailureCounter.failures).where(FailureCounter.key == key)) == 2


def _device_code_typed(server, client, typed: str | None = None) -> int:
    """A user code typed at /device (the client's own, or `typed`): the page's status."""
    from fixtures.device import ask_for_codes

    code = typed or ask_for_codes(server, client).json()["user_code"]
    browser = FormBrowser(server.url)
    return browser.submit(browser.get("/device").form_with("user_code"), {"user_code": code}).status


def test_a_right_device_code_does_not_keep_the_addresss_wrong_codes_alive(server):
    """The same for the user codes typed at /device from one address (counted before the look-up,
    a right code's count taken back): the office's TV signed in every morning kept its people's
    typos of months counting towards the address's limit."""
    from fixtures.device import allow_device_grant

    seeded = seed(server)
    allow_device_grant(server, seeded.first_party)
    key = "device:ip:127.0.0.1"
    store = _redis_of(server)
    assert _device_code_typed(server, seeded.first_party, "BCDF-GHJK") == 400  # a typo
    _age_the_count(server, key, store)
    assert _device_code_typed(server, seeded.first_party) == 200
    if server.backend == "redis":
        assert int(store.get(f"idp:fail:{key}")) == 1 and 0 < store.ttl(f"idp:fail:{key}") <= 60
    else:
        from idp import maintenance
        from idp.db import db
        from idp.models import FailureCounter

        with server.context():
            maintenance.purge()
            assert db.session.scalar(select(FailureCounter).where(FailureCounter.key == key)) is None
    # A wrong code keeps them, as a wrong password does.
    assert _device_code_typed(server, seeded.first_party, "BCDF-GHJK") == 400
    _age_the_count(server, key, store)
    assert _device_code_typed(server, seeded.first_party, "BCDF-GHJL") == 400
    if server.backend == "redis":
        assert store.ttl(f"idp:fail:{key}") > 3600
    else:
        with server.context():
            maintenance.purge()
            assert db.session.scalar(select(FailureCounter.failures).where(FailureCounter.key == key)) == 2
