"""The bypass suite: every way around the second factor is refused, and the database is unchanged."""
from __future__ import annotations

import pyotp
from sqlalchemy import func, select

from fixtures.oidc import FormBrowser
from fixtures.totp import enrol_totp_during_login

COUNTED = ("AuthorizationCode", "Token", "UserSession", "Credential", "ConsentGrant")


def _counts(server) -> dict:
    from idp import models
    from idp.db import db

    with server.context():
        return {name: db.session.scalar(select(func.count()).select_from(getattr(models, name))) for name in COUNTED}


def _half_logged_in(live_server, rp, seeded) -> FormBrowser:
    """A browser that passed the password step of a user with TOTP, and stands on the code page."""
    browser = FormBrowser(live_server.url)
    browser.get(rp.authorization_url())
    page = browser.login(seeded.user_email, seeded.password)
    assert page.form_with("code") and browser.last_redirect is None
    return browser


def _user_with_totp(web, rp, seeded) -> str:
    secret, _codes = enrol_totp_during_login(web, rp, seeded)
    rp.exchange(web.last_redirect)
    return secret


def test_consent_and_code_issuance_cannot_be_reached_without_the_second_factor(seeded, web, rp_factory, live_server):
    _user_with_totp(web, rp_factory(seeded.first_party), seeded)
    rp = rp_factory(seeded.third_party)
    browser = _half_logged_in(live_server, rp, seeded)
    before = _counts(live_server)
    csrf = browser.page.form_with("code")["fields"]
    url = browser.page.url
    for data in ({**csrf, "action": "allow"}, {**csrf, "version": "1", "action": "allow"},
                 {**csrf, "version": "999", "code": "123456"}, {**csrf, "postpone": "1"}):
        response = browser.http.post(url, data=data, allow_redirects=False)
        assert "code=" not in response.headers.get("Location", "")
    for suffix in ("/factor/consent", "/factor/nonexistent", "/factor/password"):
        browser.http.post(url + suffix, data=csrf, allow_redirects=False)
    browser.get(rp.authorization_url(prompt="none"))
    assert browser.callback_params()["error"] == "login_required"
    after = _counts(live_server)
    assert after == before, "nothing was written by the bypass attempts"


def test_enrolment_cannot_be_posted_without_a_finished_password_step(seeded, live_server, rp_factory):
    rp = rp_factory(seeded.first_party)
    browser = FormBrowser(live_server.url)
    page = browser.get(rp.authorization_url(acr_values="urn:idp:acr:mfa"))
    form = page.form_with("password")
    before = _counts(live_server)
    for name in ("totp", "webauthn", "push"):
        browser.http.post(f"{page.url}/factor/{name}", data={"csrf_token": form["fields"]["csrf_token"]},
                          allow_redirects=False)
    response = browser.http.post(page.url, data={**form["fields"], "code": "123456", "label": "x"},
                                 allow_redirects=False)
    assert response.status_code in (400, 401, 409)
    assert _counts(live_server) == before


def test_second_factor_form_posted_to_another_users_transaction_is_refused(seeded, web, rp_factory, live_server):
    rp = rp_factory(seeded.first_party)
    secret = _user_with_totp(web, rp, seeded)
    victim = _half_logged_in(live_server, rp, seeded)
    attacker = FormBrowser(live_server.url)
    attacker.get(rp.authorization_url())
    attacker_csrf = attacker.page.form_with("password")["fields"]
    before = _counts(live_server)
    import time

    code = pyotp.TOTP(secret).at(time.time() + 30)
    response = attacker.http.post(victim.page.url, data={**attacker_csrf, "version": "2", "code": code},
                                  allow_redirects=False)
    assert "code=" not in response.headers.get("Location", "")
    assert _counts(live_server) == before
    page = victim.submit(victim.page.form_with("code"), {"code": code})
    assert victim.callback_params()["code"], "the victim's own transaction was not disturbed"
    del page


def test_used_totp_code_and_used_recovery_code_are_refused(seeded, web, rp_factory, live_server):
    rp = rp_factory(seeded.first_party)
    secret, codes = enrol_totp_during_login(web, rp, seeded)
    rp.exchange(web.last_redirect)
    import time

    code = pyotp.TOTP(secret).at(time.time() + 30)
    first = _half_logged_in(live_server, rp, seeded)
    first.submit(first.page.form_with("code"), {"code": code})
    assert first.callback_params()["code"]
    second = _half_logged_in(live_server, rp, seeded)
    before = _counts(live_server)
    second.submit(second.page.form_with("code"), {"code": code})
    assert second.last_redirect is None
    assert _counts(live_server) == before


def test_a_factor_set_up_elsewhere_while_a_login_sits_at_enrolment_is_asked_for_not_added_to(seeded, rp_factory,
                                                                                              live_server):
    """Someone with the password stands at the enrolment step (the user had no factor yet); the
    user then sets up TOTP in their own browser. The other login's enrolment adds nothing: it
    asks for the factor now held, and its own secret is worth nothing."""
    from fixtures.totp import at_totp_enrolment

    rp = rp_factory(seeded.first_party)
    attacker = FormBrowser(live_server.url)
    page, attackers_secret = at_totp_enrolment(attacker, rp, seeded)
    enrolment = page.form_with("code")

    _user_with_totp(FormBrowser(live_server.url), rp, seeded)
    before = _counts(live_server)
    page = attacker.submit(enrolment, {"code": pyotp.TOTP(attackers_secret).now(), "label": "Not mine"})
    assert attacker.last_redirect is None and page.form_with("code")
    assert attackers_secret not in page.text  # the code page of the factor held, not the enrolment
    page = attacker.submit(page.form_with("code"), {"code": pyotp.TOTP(attackers_secret).now()})
    assert page.status == 401 and attacker.last_redirect is None
    assert _counts(live_server) == before
