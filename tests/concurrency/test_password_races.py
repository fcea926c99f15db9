"""The password step's per-account limit over HTTP, on PostgreSQL: wrong passwords posted at the
same moment through many logins are checked up to the limit, no further."""
from __future__ import annotations

import pytest

from fixtures.database import postgres_base_url
from fixtures.oidc import FormBrowser, RelyingParty, seed
from test_factor_races import _at_once, _pg_server
from test_password_reset_limit_race import redis_url  # noqa: F401 - a fixture

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")

LIMIT = 4


@pytest.fixture
def pg_server(postgres_url):
    server = _pg_server(postgres_url, {"ratelimit.password_failures_before_lockout": LIMIT})
    yield server
    server.stop()


def _on_login_form(server, rp) -> FormBrowser:
    browser = FormBrowser(server.url)
    browser.get(rp.authorization_url())
    assert browser.page.form_with("password")
    return browser


@pytest.mark.parametrize("account", ["known", "unknown"])
def test_wrong_passwords_posted_at_once_are_checked_up_to_the_limit(pg_server, account):
    """argon2id runs outside any lock, so each guess is counted before it is checked (idp.lockout.
    reserve): the fifth and later wait, whether the account exists or not."""
    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.first_party)
    email = seeded.user_email if account == "known" else "nobody@example.com"
    browsers = [_on_login_form(pg_server, rp) for _ in range(12)]
    _at_once([(b, b.page.form_with("password"), {"username": email, "password": "wrong password"})
              for b in browsers])
    statuses = sorted(b.page.status for b in browsers)
    assert statuses.count(401) == LIMIT and statuses.count(429) == len(browsers) - LIMIT, statuses


@pytest.fixture(params=["database", "redis"])
def pg_server_by_address(request, postgres_url):
    """The address's limit below the account's: guesses at many accounts from one address, the
    counters in the database or in a Redis of the test's own."""
    overrides = {"ratelimit.password_ip_failures_before_lockout": LIMIT,
                 "ratelimit.password_failures_before_lockout": 100}
    if request.param == "redis":
        overrides["server.redis_url"] = request.getfixturevalue("redis_url")
    server = _pg_server(postgres_url, overrides)
    yield server
    server.stop()


def test_wrong_passwords_for_many_accounts_posted_at_once_from_one_address_are_checked_up_to_its_limit(
        pg_server_by_address):
    """Password spraying: one address, a dozen accounts, one guess each, all at the same moment.
    No account reaches its own limit, so only the address's can stop them: each guess is
    counted against the address before argon2 checks it, and the fifth and later wait."""
    server = pg_server_by_address
    seeded = seed(server)
    rp = RelyingParty(server.url, seeded.first_party)
    browsers = [_on_login_form(server, rp) for _ in range(12)]
    _at_once([(b, b.page.form_with("password"), {"username": f"nobody{i}@example.com", "password": "wrong"})
              for i, b in enumerate(browsers)])
    statuses = sorted(b.page.status for b in browsers)
    assert statuses.count(401) == LIMIT and statuses.count(429) == len(browsers) - LIMIT, statuses
