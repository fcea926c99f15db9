"""An organization that stops accepting a factor: its holders prove it once more, then switch.

Over HTTP, with a real TOTP enrolment and a software security key: a user whose only second
factor is of a kind the organization no longer allows is neither let in with the password alone
nor sent to enrol with the password alone (whoever knows it would add a key of their own).
"""
from __future__ import annotations

import html
import json
import time
from urllib.parse import urlsplit

import pyotp
from sqlalchemy import func, select, update

from fixtures.oidc import FormBrowser
from fixtures.totp import enrol_totp_during_login
from soft_authenticator import SoftAuthenticator

SWITCH_TEXT = "no longer accepts the sign-in methods you have"


def _allow_only(server, org_id: int, names: list[str], *, require: bool) -> None:
    from idp.db import db
    from idp.models import Organization

    with server.context():
        db.session.execute(update(Organization).where(Organization.id == org_id)
                           .values(allowed_factors=names, require_2fa=require))
        db.session.commit()


def _keys_of(server, email: str) -> int:
    from idp.db import db
    from idp.models import Credential, User

    with server.context():
        return db.session.scalar(select(func.count()).select_from(Credential).join(User, User.id == Credential.user_id)
                                 .where(User.email == email, Credential.factor == "webauthn",
                                        Credential.revoked_at.is_(None)))


def _password_step(server, rp, seeded):
    browser = FormBrowser(server.url)
    browser.get(rp.authorization_url())
    return browser, browser.login(seeded.user_email, seeded.password)


def test_the_held_factor_is_asked_for_then_an_allowed_one_is_set_up(seeded, web, rp_factory, live_server):
    rp = rp_factory(seeded.first_party)
    secret, _codes = enrol_totp_during_login(web, rp, seeded)
    rp.exchange(web.last_redirect)
    _allow_only(live_server, seeded.org_id, ["webauthn"], require=False)  # the user's 2FA was voluntary

    browser, page = _password_step(live_server, rp, seeded)
    assert browser.last_redirect is None, "no code for the password alone"
    assert 'data-mode="create"' not in page.text and "postpone" not in page.text
    page = browser.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).at(int(time.time()) + 30)})
    assert browser.last_redirect is None and SWITCH_TEXT in page.text and "postpone" not in page.text

    options = json.loads(html.unescape(page.find(
        r'<script type="application/json" id="webauthn-options" data-mode="create">(.*?)</script>')))
    key = SoftAuthenticator(urlsplit(live_server.url).hostname, live_server.url)
    enrolment = [f for f in page.forms() if "response" in f["fields"]][0]
    page = browser.submit(enrolment, {"response": json.dumps(key.create(options)), "label": "Key"})
    claims = rp.validate_id_token(rp.exchange(browser.last_redirect)["id_token"])
    assert claims["acr"] == "urn:idp:acr:mfa" and "otp" in claims["amr"] and "hwk" in claims["amr"]
    assert _keys_of(live_server, seeded.user_email) == 1


def test_the_password_alone_enrols_nothing_even_without_grace(seeded, web, rp_factory, live_server):
    """Required, no grace: before, the login went straight to enrolling a security key."""
    rp = rp_factory(seeded.first_party)
    enrol_totp_during_login(web, rp, seeded)
    rp.exchange(web.last_redirect)
    _allow_only(live_server, seeded.org_id, ["webauthn"], require=True)

    browser, page = _password_step(live_server, rp, seeded)
    assert browser.last_redirect is None
    assert 'data-mode="create"' not in page.text and page.form_with("code")
    # Asking for the security key by name (the choice form's URL) gets the code page again.
    code_form = page.form_with("code")
    choose = dict(code_form, action=code_form["action"].rstrip("/") + "/factor/webauthn")
    page = browser.submit(choose)
    assert 'data-mode="create"' not in page.text and page.form_with("code")
    assert _keys_of(live_server, seeded.user_email) == 0


def test_refresh_tokens_of_a_login_with_a_factor_no_longer_allowed_are_refused(seeded, web, rp_factory, live_server):
    """The token side of the switch: a required user's refresh token from a login that proved
    only a factor the organization no longer accepts is invalid_grant, as its browser session
    answers no request (both the login's own tokens and those of a code its session answered)."""
    rp = rp_factory(seeded.first_party)
    rp.session.scope = "openid email profile offline_access"
    enrol_totp_during_login(web, rp, seeded)
    first = rp.exchange(web.last_redirect)
    web.get(rp.authorization_url())  # answered by the session
    by_sso = rp.exchange(web.last_redirect)
    assert first.get("refresh_token") and by_sso.get("refresh_token")

    def refresh(tokens):
        answer = rp.token_request({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
        if answer.status_code == 200:
            tokens["refresh_token"] = answer.json()["refresh_token"]
        return answer

    _allow_only(live_server, seeded.org_id, ["totp"], require=True)
    assert refresh(first).status_code == 200 and refresh(by_sso).status_code == 200
    _allow_only(live_server, seeded.org_id, ["webauthn"], require=False)  # voluntary: the login asked for nothing
    assert refresh(first).status_code == 200
    _allow_only(live_server, seeded.org_id, ["webauthn"], require=True)
    for tokens in (first, by_sso):
        answer = refresh(tokens)
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant", answer.text
        assert "no longer accepts" in answer.json()["error_description"]
    _allow_only(live_server, seeded.org_id, None, require=True)  # every factor again: the family lives on
    assert refresh(first).status_code == 200
