"""Exactly once over HTTP, on PostgreSQL: one admin's recovery QR code typed at several logins and
scanned by several new phones, all at the same moment (docs/recovery.md: "single use")."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import requests

from fixtures.database import postgres_base_url
from fixtures.oidc import FormBrowser, RelyingParty, seed
from fixtures.race import at_once

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from recovery_kit import admin_browser, enable_recovery  # noqa: E402

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")

BROWSERS = 6
PHONES = 4
MFA = "urn:idp:acr:mfa"


def _redeem_request(server, secret: str, user: str, number: int):
    from authenticator.push import keys
    from authenticator.recover import signed_request

    url = f"{server.url}/factors/qr_recovery/redeem"
    token = signed_request(keys.new_private_key(), url, {"secret": secret, "user": user, "name": f"phone {number}"})
    return lambda: requests.post(url, json={"request": token}, timeout=30).status_code


def test_one_code_typed_at_logins_and_scanned_by_phones_at_once_works_once(pg_server):
    from sqlalchemy import select

    from idp.db import db
    from idp.factors import directory
    from idp.models import AuditEvent, Credential

    enable_recovery(pg_server)
    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.first_party)
    with pg_server.context():
        user = directory.find_user_by_email(seeded.user_email)
        issued = pg_server.app.extensions["idp.factors"].get("qr_recovery").issue(user, actor="cli")

    browsers = []
    for _ in range(BROWSERS):  # a user with no factor, asked for one: the administrator's code is the way
        browser = FormBrowser(pg_server.url)
        browser.get(rp.authorization_url(acr_values=MFA))
        page = browser.login(seeded.user_email, seeded.password)
        assert "Use a recovery code from your administrator" in page.text, page.text[:2000]
        browsers.append(browser)
    phones = [_redeem_request(pg_server, issued.secret, seeded.user_email, i) for i in range(PHONES)]
    forms = [b.page.form_with("code") for b in browsers]

    def send(i: int):
        if i < BROWSERS:
            return browsers[i].submit(forms[i], {"code": issued.secret}).status
        return phones[i - BROWSERS]()

    statuses = at_once(BROWSERS + PHONES, send)
    with pg_server.context():
        events = [e.event for e in db.session.scalars(select(AuditEvent).where(
            AuditEvent.event.in_(("login.recovery_used", "recovery_qr.used", "push.device_registered"))))]
        row = db.session.scalars(select(Credential).where(Credential.id == issued.credential.id)).one()
    won_at_login = events.count("login.recovery_used")
    won_by_phone = events.count("recovery_qr.used")
    assert won_at_login + won_by_phone == 1, (statuses, events)
    assert events.count("push.device_registered") == won_by_phone
    assert statuses[BROWSERS:].count(201) == won_by_phone, statuses
    assert statuses[:BROWSERS].count(200) == won_at_login, statuses  # (the enrolment page; the others 401)
    assert row.used_at is not None and row.revoked_at is not None


def test_an_admins_reset_while_the_code_is_typed_at_a_login_neither_deadlocks_nor_fails(pg_server, monkeypatch):
    """The lost-phone runbook's "Reset second factors" (another admin's, a second click) as the user
    types the administrator's code. The login holds the user's row and then spends the code's row;
    the reset revoked that row first and then wanted the user's (to withdraw grace and sign the user
    out): PostgreSQL found a deadlock, and a second later one of the two requests was a 500. Both
    now take the user's row first: one waits for the other, and each answers."""
    import threading
    import time

    from sqlalchemy import select

    from idp.db import db
    from idp.factors import directory
    from idp.models import AuditEvent, Credential

    from idp_plugins.qr_recovery import issuing

    enable_recovery(pg_server)
    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.first_party)
    with pg_server.context():
        user = directory.find_user_by_email(seeded.user_email)
        issued = pg_server.app.extensions["idp.factors"].get("qr_recovery").issue(user, actor="cli")
    admin = admin_browser(pg_server, seeded)
    confirm = admin.get(f"/admin/users/{user.id}/reset-factors")
    reset_form = next(f for f in confirm.forms() if f["action"].endswith("/reset-factors"))
    browser = FormBrowser(pg_server.url)
    browser.get(rp.authorization_url(acr_values=MFA))
    code_form = browser.login(seeded.user_email, seeded.password).form_with("code")

    spending = threading.Event()
    consume = issuing.consume

    def slow_consume(store, credential, now):  # the login holds the user's row here: the reset comes now
        spending.set()
        time.sleep(1.0)
        return consume(store, credential, now)

    monkeypatch.setattr(issuing, "consume", slow_consume)

    def send(i: int):
        if i == 0:
            return browser.submit(code_form, {"code": issued.secret}).status
        spending.wait(10)
        return admin.submit(reset_form).status

    login_status, reset_status = at_once(2, send)
    assert 500 not in (login_status, reset_status), (login_status, reset_status)
    with pg_server.context():
        row = db.session.scalars(select(Credential).where(Credential.id == issued.credential.id)).one()
        used = [e for e in db.session.scalars(select(AuditEvent).where(AuditEvent.event == "login.recovery_used"))]
    assert row.revoked_at is not None
    assert (row.used_at is not None) == bool(used) == (login_status == 200)


def _disable_form(admin, target: int):
    page = admin.get(f"/admin/users/{target}/disable")
    return next(f for f in page.forms() if f["action"].endswith("/disable"))


@pytest.mark.parametrize("first", ["phone", "disable"])
def test_a_code_scanned_as_its_account_is_disabled_is_either_spent_or_revoked(pg_server, monkeypatch, first):
    """The admin disables the account (which revokes its recovery QR codes: on_account_disabled)
    as a new phone redeems the user's code. Both take the user's row first: `phone`, the phone's
    redemption holds it and the disabling waits, then finds the code spent (not counted revoked);
    `disable`, the disabling holds it and the phone waits, then finds the account disabled (403,
    no phone registered, the code revoked, unspent). Never both, never a deadlock."""
    import threading
    import time

    from sqlalchemy import select

    from idp import users as users_module
    from idp.db import db
    from idp.factors import directory
    from idp.models import AuditEvent, Credential

    from idp_plugins.qr_recovery import issuing

    enable_recovery(pg_server)
    seeded = seed(pg_server)
    with pg_server.context():
        user = directory.find_user_by_email(seeded.user_email)
        issued = pg_server.app.extensions["idp.factors"].get("qr_recovery").issue(user, actor="cli")
    admin = admin_browser(pg_server, seeded)
    disable_form = _disable_form(admin, user.id)
    phone = _redeem_request(pg_server, issued.secret, seeded.user_email, 0)

    holding = threading.Event()
    if first == "phone":
        consume = issuing.consume

        def slow(store, credential, now):  # the phone's request holds the user's row here
            holding.set()
            time.sleep(1.0)
            return consume(store, credential, now)

        monkeypatch.setattr(issuing, "consume", slow)
    else:
        sign_out_everywhere = users_module.sign_out_everywhere

        def slow(user_id):  # the disabling holds the user's row here (its UPDATE)
            holding.set()
            time.sleep(1.0)
            return sign_out_everywhere(user_id)

        monkeypatch.setattr(users_module, "sign_out_everywhere", slow)

    def send(i: int):  # 0: the phone, 1: the admin; the second waits until the first holds the row
        if (i == 0) != (first == "phone"):
            assert holding.wait(10)
        return phone() if i == 0 else admin.submit(disable_form).status

    phone_status, disable_status = statuses = at_once(2, send)
    assert 500 not in statuses and disable_status == 200, statuses
    with pg_server.context():
        row = db.session.scalars(select(Credential).where(Credential.id == issued.credential.id)).one()
        events = list(db.session.execute(select(AuditEvent.event, AuditEvent.details).where(
            AuditEvent.event.in_(("recovery_qr.used", "recovery_qr.revoked", "push.device_registered")))))
        disabled = directory.is_disabled(user)
    names = [name for name, _details in events]
    assert disabled and row.revoked_at is not None
    if first == "phone":
        assert phone_status == 201 and row.used_at is not None, (phone_status, events)
        assert names.count("recovery_qr.used") == 1 and "recovery_qr.revoked" not in names, events
    else:
        assert phone_status == 403 and row.used_at is None, (phone_status, events)
        assert "push.device_registered" not in names and "recovery_qr.used" not in names, events
        assert [d["reason"] for n, d in events if n == "recovery_qr.revoked"] == ["account_disabled"], events
