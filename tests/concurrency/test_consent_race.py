"""Consent answered at once, on PostgreSQL: two logins of one user to one client (two tabs), and
one consent form posted several times. No 500 (the grant's row is unique per user and client),
one grant, and one code per login."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from fixtures.database import postgres_base_url
from fixtures.oidc import FormBrowser, RelyingParty, seed
from fixtures.race import at_once, tabs_of
from test_factor_races import _pg_server

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")


@pytest.fixture
def pg_server(postgres_url):
    server = _pg_server(postgres_url, {})
    yield server
    server.stop()


def _grants(server, email: str) -> int:
    from idp.db import db
    from idp.models import ConsentGrant, User

    with server.context():
        user_id = db.session.scalar(select(User.id).where(User.email == email))
        return db.session.scalar(select(func.count()).select_from(ConsentGrant).where(ConsentGrant.user_id == user_id))


def _at_consent(browser: FormBrowser, rp, seeded) -> dict:
    browser.get(rp.authorization_url())
    page = browser.login(seeded.user_email, seeded.password)
    return page.form_with("action")


def test_two_logins_of_one_user_consenting_at_once_both_get_their_code(pg_server):
    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.third_party)
    tabs = [FormBrowser(pg_server.url) for _ in range(2)]
    forms = [_at_consent(tab, rp, seeded) for tab in tabs]
    pages = at_once(2, lambda i: tabs[i].submit(forms[i], button=("action", "allow")))
    assert all(page.status < 500 for page in pages), [page.status for page in pages]
    assert all(tab.callback_params().get("code") for tab in tabs)
    assert _grants(pg_server, seeded.user_email) == 1


def test_one_consent_form_posted_at_once_gives_one_code(pg_server):
    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.third_party)
    browser = FormBrowser(pg_server.url)
    form = _at_consent(browser, rp, seeded)
    clones = tabs_of(browser, 4)
    pages = at_once(4, lambda i: clones[i].submit(form, button=("action", "allow")))
    assert all(page.status < 500 for page in pages), [page.status for page in pages]
    codes = [clone.last_redirect for clone in clones if clone.last_redirect and "code=" in clone.last_redirect]
    assert len(codes) == 1
    assert _grants(pg_server, seeded.user_email) == 1
