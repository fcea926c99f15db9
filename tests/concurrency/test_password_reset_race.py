"""One reset link posted ten times at once, on PostgreSQL: exactly one new password is set
(idp.password_reset.reset spends the link with one conditional UPDATE)."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from fixtures.database import postgres_base_url
from fixtures.oidc import FormBrowser, seed
from test_factor_races import _at_once

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")

POSTS = 10


def _mailed_link(server, email: str) -> str:
    """A link as the mail would carry it, made by the domain function (no mail server needed)."""
    from idp import password_reset

    with server.app.test_request_context():
        return password_reset.request_link(email, locale="en").link


def test_one_link_posted_at_once_sets_one_password(pg_server):
    from idp.db import db
    from idp.models import AuditEvent

    seeded = seed(pg_server)
    link = _mailed_link(pg_server, seeded.user_email)
    browsers = [FormBrowser(pg_server.url) for _ in range(POSTS)]
    for browser in browsers:
        assert browser.get(link).status == 200
    passwords = [f"new passphrase number {i}" for i in range(POSTS)]
    _at_once([(browser, browser.page.form_with("password"), {"password": password, "confirm": password})
              for browser, password in zip(browsers, passwords, strict=True)])
    statuses = sorted(b.page.status for b in browsers)
    winners = [p for b, p in zip(browsers, passwords, strict=True) if b.page.url.endswith("/password/changed")]
    assert len(winners) == 1 and statuses == [200] + [410] * (POSTS - 1), statuses
    with pg_server.context():
        resets = db.session.scalar(select(func.count()).where(AuditEvent.event == "user.password_reset"))
    assert resets == 1
    browser = FormBrowser(pg_server.url)
    browser.get("/account/security")
    browser.login(seeded.user_email, winners[0])
    assert browser.page.url.endswith("/account/security"), browser.page.url


def test_two_links_of_one_user_posted_at_once_set_one_password(pg_server):
    """Two live links of one account (asked for twice: the owner and someone reading the mailbox),
    posted together: each spends its own link, but the first new password kills every other live
    link (its sign-out everywhere), under the user's row lock that both posts take before their
    link's: the second finds its link dead. One password is set, and it is the one that works."""
    from idp.db import db, utcnow
    from idp.models import AuditEvent, PasswordReset

    seeded = seed(pg_server)
    links = [_mailed_link(pg_server, seeded.user_email) for _ in range(2)]
    browsers = [FormBrowser(pg_server.url) for _ in range(POSTS)]
    for i, browser in enumerate(browsers):
        assert browser.get(links[i % 2]).status == 200
    passwords = [f"new passphrase number {i}" for i in range(POSTS)]
    _at_once([(browser, browser.page.form_with("password"), {"password": password, "confirm": password})
              for browser, password in zip(browsers, passwords, strict=True)])
    winners = [p for b, p in zip(browsers, passwords, strict=True) if b.page.url.endswith("/password/changed")]
    assert len(winners) == 1, sorted(b.page.status for b in browsers)
    with pg_server.context():
        resets = db.session.scalar(select(func.count()).where(AuditEvent.event == "user.password_reset"))
        live = db.session.scalar(select(func.count()).select_from(PasswordReset).where(
            PasswordReset.used_at.is_(None), PasswordReset.expires_at > utcnow()))
    assert (resets, live) == (1, 0)
    browser = FormBrowser(pg_server.url)
    browser.get("/account/security")
    browser.login(seeded.user_email, winners[0])
    assert browser.page.url.endswith("/account/security"), browser.page.url


def test_links_asked_for_at_once_for_one_account_stop_at_its_hourly_limit(pg_server):
    """Requests for one account's link from many places at the same moment (a mailbox flood):
    each counts the account's links of the hour under the user's row lock, so no more than
    `password_reset.per_hour` are made, and the refusals are one audit event, not one each."""
    from fixtures.race import at_once
    from idp import password_reset
    from idp.db import db
    from idp.models import AuditEvent, PasswordReset

    seeded = seed(pg_server)
    with pg_server.app.app_context():
        per_hour = password_reset.current_settings().per_hour

    def ask(_):
        with pg_server.app.test_request_context():
            try:
                return password_reset.request_link(seeded.user_email, locale="en")
            finally:
                db.session.remove()

    made = [delivery for delivery in at_once(POSTS, ask) if delivery is not None]
    assert len(made) == per_hour < POSTS
    with pg_server.context():
        links = db.session.scalar(select(func.count()).select_from(PasswordReset))
        refused = db.session.scalars(select(AuditEvent.details).where(AuditEvent.event == "password_reset.refused")).all()
    assert links == per_hour and refused == [{"reason": "rate_limited"}], refused
