"""Exactly once over HTTP, on PostgreSQL: one TOTP code and one recovery code posted by 10 browsers at once."""
from __future__ import annotations

import threading
import time

import pyotp
import pytest

from fixtures.database import postgres_base_url
from fixtures.oidc import FormBrowser, RelyingParty, seed, start_server
from fixtures.totp import enrol_totp_during_login

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")

RACERS = 10


@pytest.fixture
def pg_server(postgres_url):
    from sqlalchemy import create_engine

    from idp import schema

    engine = create_engine(postgres_url)
    schema.upgrade(engine)
    engine.dispose()
    server = start_server(postgres_url, {"ratelimit.factor_failures_before_lockout": 100})
    yield server
    server.stop()


def _on_code_page(server, rp, seeded, recovery: bool = False) -> FormBrowser:
    browser = FormBrowser(server.url)
    browser.get(rp.authorization_url())
    page = browser.login(seeded.user_email, seeded.password)
    if recovery:
        page = browser.submit([f for f in page.forms() if f["action"].endswith("/factor/recovery_codes")][0])
    assert page.form_with("code")
    return browser


def _race(browsers, code) -> int:
    barrier = threading.Barrier(len(browsers))
    winners = []

    def run(browser):
        form = browser.page.form_with("code")
        barrier.wait()
        browser.submit(form, {"code": code})
        if browser.last_redirect and "code=" in browser.last_redirect:
            winners.append(browser)

    threads = [threading.Thread(target=run, args=(b,)) for b in browsers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(winners)


def test_same_totp_code_from_ten_browsers_is_accepted_once(pg_server):
    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.first_party)
    secret, _codes = enrol_totp_during_login(FormBrowser(pg_server.url), rp, seeded)
    browsers = [_on_code_page(pg_server, rp, seeded) for _ in range(RACERS)]
    assert _race(browsers, pyotp.TOTP(secret).at(time.time() + 30)) == 1


def test_same_recovery_code_from_ten_browsers_is_accepted_once(pg_server):
    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.first_party)
    _secret, codes = enrol_totp_during_login(FormBrowser(pg_server.url), rp, seeded)
    browsers = [_on_code_page(pg_server, rp, seeded, recovery=True) for _ in range(RACERS)]
    assert _race(browsers, codes[0]) == 1
