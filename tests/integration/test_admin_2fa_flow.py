"""Issue 5 end to end over HTTP, driven from the admin pages: "Require 2FA for everyone", the user
is forced through enrolment, the shield moves, the admin exempts the user and the login stops
asking for a second factor.

Browserless (the FormBrowser posts the server-rendered forms as a browser would); the Chromium
version with screenshots is tests/browser/test_admin_2fa_browser.py, and the other paths to a
token (session, consent, refresh) are in test_policy_enforcement.py.
"""
from __future__ import annotations

import re

import pyotp

from fixtures.oidc import FormBrowser, password_login

SHIELD = re.compile(r'data-user-id="(\d+)">.*?data-status="([a-z_]+)"', re.S)


def sign_in_admin(live_server, seeded, rp_factory) -> FormBrowser:
    """An admin session: a password login through the first-party client (2FA not required yet)."""
    admin = FormBrowser(live_server.url)
    rp = rp_factory(seeded.first_party)
    password_login(admin, rp, seeded.admin_email, seeded.password)
    assert admin.callback_params().get("code")
    return admin


def shield_of(admin: FormBrowser, email: str) -> str:
    page = admin.get(f"/admin/users?q={email}")
    assert page.status == 200, page.text[:500]
    found = SHIELD.findall(page.text)
    assert len(found) == 1, found
    return found[0][1]


def require_all(admin: FormBrowser, on: bool) -> str:
    page = admin.get("/admin/security")
    form = next(f for f in page.forms() if f["action"].endswith("/admin/security/require-all"))
    assert form["fields"]["on"] == ("on" if on else "off")
    page = admin.submit(form)
    assert page.status == 200 and "flash-success" in page.text
    return page.text


def set_user(admin: FormBrowser, user_id: int, values: dict) -> None:
    page = admin.get(f"/admin/users/{user_id}")
    form = page.form_with("exempt_reason")
    fields = {k: v for k, v in form["fields"].items() if k not in ("require_2fa", "exempt")}
    page = admin.submit(dict(form, fields=fields), values)
    assert page.status == 200 and "flash-success" in page.text, page.text[:1500]


def user_id_of(live_server, email: str) -> int:
    from sqlalchemy import select

    from idp.db import db
    from idp.models import User

    with live_server.context():
        return db.session.scalar(select(User.id).where(User.email == email))


def test_require_all_forces_enrolment_and_the_shield_moves(live_server, seeded, rp_factory):
    admin = sign_in_admin(live_server, seeded, rp_factory)
    assert shield_of(admin, seeded.user_email) == "not_active"

    page = require_all(admin, True)
    assert "Make 2FA optional for everyone" in page
    assert shield_of(admin, seeded.user_email) == "required_not_set_up"

    # alice signs in: after the password, enrolment comes before anything else
    alice = FormBrowser(live_server.url)
    rp = rp_factory(seeded.first_party)
    alice.get(rp.authorization_url())
    page = alice.login(seeded.user_email, seeded.password)
    assert alice.last_redirect is None, "no code without a second factor"
    choose = [f for f in page.forms() if f["action"].endswith("/factor/totp")]
    if choose:
        page = alice.submit(choose[0])
    key = page.find(r'<code>([A-Z2-7 ]+)</code>')
    assert key, page.text[:2000]
    page = alice.submit(page.form_with("code"), {"code": pyotp.TOTP(key.replace(" ", "")).now(), "label": "Phone"})
    if alice.last_redirect is None:  # recovery codes shown once
        alice.submit(page.forms()[0])
    claims = rp.validate_id_token(rp.exchange(alice.last_redirect)["id_token"])
    assert "mfa" in claims["amr"]
    assert shield_of(admin, seeded.user_email) == "active_required"

    # the admin exempts alice: the login no longer asks for a second factor
    set_user(admin, user_id_of(live_server, seeded.user_email),
             {"exempt": "y", "exempt_reason": "travelling without phone"})
    assert shield_of(admin, seeded.user_email) == "not_active"
    fresh = FormBrowser(live_server.url)
    params = password_login(fresh, rp, seeded.user_email, seeded.password)
    claims = rp.validate_id_token(rp.exchange(fresh.last_redirect)["id_token"])
    assert params.get("code") and claims["amr"] == ["pwd"]


def test_the_exempt_are_counted_and_listed_apart(live_server, seeded, rp_factory):
    """An exemption hides among the "2FA not active": the Security page counts the exempt and links
    to a users list of them alone (enabled accounts whose exemption still runs), the filter kept
    across pages, so that an admin who requires 2FA for everyone can review the exceptions."""
    from datetime import date, timedelta

    from sqlalchemy import update

    from idp.db import db
    from idp.models import Organization, User
    from idp.security.tokens import random_token

    with live_server.context():
        passwords = live_server.app.extensions["idp.passwords"]
        hashed = passwords.hash("x" * 12)
        for i in range(130):  # half of them exempt: more than a page of them (idp.admin.queries.PAGE_SIZE)
            db.session.add(User(public_id=random_token(16), org_id=seeded.org_id, email=f"m{i:03d}@acme.test",
                                name=f"Member {i:03d}", role="user", password_hash=hashed,
                                mfa_setting="exempt" if i % 2 else "follow"))
        # Not exempt any more (the end date passed: required again), a disabled account (not counted),
        # another organization's exempt member (never listed here).
        db.session.execute(update(User).where(User.email == "m001@acme.test").values(
            exempt_until=date.today() - timedelta(days=2)))
        db.session.execute(update(User).where(User.email == "m003@acme.test").values(disabled=True))
        other = Organization(name="Other")
        db.session.add(other)
        db.session.flush()
        db.session.add(User(public_id=random_token(16), org_id=other.id, email="x@other.test", role="user",
                            password_hash=passwords.hash("x" * 12), mfa_setting="exempt"))
        db.session.commit()
    exempt = {f"m{i:03d}@acme.test" for i in range(130) if i % 2} - {"m001@acme.test", "m003@acme.test"}
    admin = sign_in_admin(live_server, seeded, rp_factory)
    alice = user_id_of(live_server, seeded.user_email)
    set_user(admin, alice, {"exempt": "y", "exempt_until": (date.today() + timedelta(days=30)).isoformat()})
    exempt.add(seeded.user_email)

    for on in (False, True):  # the count is shown whether the organization requires 2FA or not
        if on:
            require_all(admin, True)
        page = admin.get("/admin/security")
        link = re.search(r'<a href="([^"]+)" data-exempt-count="(\d+)">([^<]+)</a>', page.text)
        assert link and link.group(2) == str(len(exempt)) and f"{len(exempt)} users are exempt." == link.group(3)

    listed, pages, url = [], 0, link.group(1)
    while url:
        pages += 1
        page = admin.get(url.replace("&amp;", "&"))
        assert page.status == 200 and 'name="exempt" value="1" checked' in page.text
        assert f"Exempt from 2FA only ({len(exempt)})" in page.text
        listed += re.findall(r'<td data-label="E-mail"><bdi>([^<]+)</bdi>', page.text)
        url = page.find(r'rel="next" href="([^"]+)"')
    assert sorted(listed) == sorted(exempt) and pages == 2
    page = admin.get("/admin/users?exempt=1&q=m00")  # with a search
    assert sorted(re.findall(r'<bdi>(m00\d@acme\.test)</bdi>', page.text)) == sorted(
        e for e in exempt if e.startswith("m00"))
    for bad in ("0", "yes", "%00"):
        assert admin.http.get(f"{live_server.url}/admin/users?exempt={bad}").status_code == 400
