"""What a withdrawn second factor proved is withdrawn too (idp.sessions.end_proved_by): the
browsers signed in with a factor an admin revoked or reset, or the user removed, are signed out
with the tokens they obtained, so a session made with a lost phone neither stays signed in nor
answers a login that asks for a second factor.

Over HTTP against a live server (FormBrowser, an independent OIDC client).
"""
from __future__ import annotations

import re
import time

import pyotp
from sqlalchemy import func, select

from fixtures.oidc import FormBrowser, admin_resets_factors, password_login
from fixtures.totp import MFA, enrol_totp_during_login


def sessions_ended(live_server) -> list:
    from idp.db import db
    from idp.models import AuditEvent

    with live_server.context():
        return db.session.scalars(select(AuditEvent).where(AuditEvent.event == "session.ended")
                                  .order_by(AuditEvent.id)).all()


def user_id_of(live_server, email: str) -> int:
    from idp.db import db
    from idp.models import User

    with live_server.context():
        return db.session.scalar(select(User.id).where(User.email == email))


def silent(browser: FormBrowser, rp, **params) -> dict:
    browser.get(rp.authorization_url(prompt="none", **params))
    return browser.callback_params()


def signed_in_with_totp(live_server, rp, seeded, secret: str) -> FormBrowser:
    """Another browser signing in with the password and the next step's code (the current one
    was spent by the enrolment: a code is accepted once)."""
    browser = FormBrowser(live_server.url)
    browser.get(rp.authorization_url())
    page = browser.login(seeded.user_email, seeded.password)
    browser.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).at(time.time() + 30)})
    assert browser.callback_params().get("code"), browser.page.text[:1500]
    return browser


def test_an_admins_reset_signs_out_the_browsers_that_proved_the_factors(live_server, seeded, rp_factory):
    rp = rp_factory(seeded.first_party)
    phone = FormBrowser(live_server.url)
    enrol_totp_during_login(phone, rp, seeded)
    tokens = rp.exchange(phone.last_redirect)
    assert rp.userinfo(tokens["access_token"]).status_code == 200

    admin = FormBrowser(live_server.url)
    password_login(admin, rp_factory(seeded.first_party), seeded.admin_email, seeded.password)
    target = user_id_of(live_server, seeded.user_email)
    confirm = admin.get(f"/admin/users/{target}/reset-factors")
    page = admin.submit(next(f for f in confirm.forms() if f["action"].endswith("/reset-factors")))
    assert page.status == 200 and "flash-success" in page.text, page.text[:1500]

    assert silent(phone, rp, acr_values=MFA)["error"] == "login_required"
    assert rp.userinfo(tokens["access_token"]).status_code == 401
    [ended] = sessions_ended(live_server)
    assert ended.actor == seeded.admin_email and ended.details["by"] == "factor_withdrawn"
    assert silent(admin, rp).get("code"), "the admin's own session stays"


def test_removing_a_factor_signs_out_the_other_browsers_that_proved_it(live_server, seeded, rp_factory):
    rp = rp_factory(seeded.first_party)
    elsewhere = FormBrowser(live_server.url)
    secret, _ = enrol_totp_during_login(elsewhere, rp, seeded)
    here = signed_in_with_totp(live_server, rp, seeded, secret)

    page = here.get("/account/security")
    href = re.search(r'data-remove="\d+"\s+href="([^"]+)"', page.text).group(1)
    page = here.submit([f for f in here.get(href).forms() if f["action"].endswith("/remove")][0])
    assert page.status == 200 and "flash-success" in page.text, page.text[:1500]

    assert silent(elsewhere, rp)["error"] == "login_required"
    assert silent(here, rp).get("code"), "the browser that removed it has just proved a recent login: it stays"
    [ended] = sessions_ended(live_server)
    assert ended.actor == seeded.user_email and ended.details["by"] == "factor_withdrawn"


def test_revoking_the_last_factor_also_signs_out_a_browser_that_used_a_recovery_code(live_server, seeded,
                                                                                      rp_factory):
    """The recovery codes go with the last second factor (they stand in for it): so does what
    a login with one of them opened."""
    rp = rp_factory(seeded.first_party)
    phone = FormBrowser(live_server.url)
    _secret, codes = enrol_totp_during_login(phone, rp, seeded)
    by_code = FormBrowser(live_server.url)
    by_code.get(rp.authorization_url())
    page = by_code.login(seeded.user_email, seeded.password)
    page = by_code.submit(next(f for f in page.forms() if f["action"].endswith("/factor/recovery_codes")))
    by_code.submit(page.form_with("code"), {"code": codes[0]})
    by_code.past_recovery_notice()
    assert by_code.callback_params().get("code"), by_code.page.text[:1500]

    admin = FormBrowser(live_server.url)
    password_login(admin, rp_factory(seeded.first_party), seeded.admin_email, seeded.password)
    target = user_id_of(live_server, seeded.user_email)
    page = admin.get(f"/admin/users/{target}")
    revoke = re.search(rf'href="(/admin/users/{target}/factors/\d+/revoke)"', page.text).group(1)
    confirm = admin.get(revoke)
    admin.submit(next(f for f in confirm.forms() if f["action"].endswith("/revoke")))

    assert silent(by_code, rp)["error"] == "login_required"
    assert silent(phone, rp)["error"] == "login_required"
    assert len(sessions_ended(live_server)) == 2


def test_a_login_that_used_the_lost_factor_does_not_finish_after_the_reset(live_server, seeded, rp_factory):
    """Whoever holds the lost phone signed in with it and stopped at the consent page: the
    admin's reset ends that login too (it has no session yet to end), so its "Allow" gives no
    code and opens no session; a login that had not used the factor goes on."""
    from idp.db import db, utcnow
    from idp.models import LoginTransaction, UserSession

    secret, _ = enrol_totp_during_login(FormBrowser(live_server.url), rp_factory(seeded.first_party), seeded)
    thief = FormBrowser(live_server.url)
    thief.get(rp_factory(seeded.third_party).authorization_url())
    page = thief.login(seeded.user_email, seeded.password)
    consent = thief.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).at(time.time() + 30)})
    allow = consent.form_with("action")
    owner = FormBrowser(live_server.url)
    owner.get(rp_factory(seeded.first_party).authorization_url())
    assert owner.login(seeded.user_email, seeded.password).form_with("code")

    def live_logins() -> int:
        with live_server.context():
            return db.session.scalar(select(func.count()).select_from(LoginTransaction).where(
                LoginTransaction.expires_at > utcnow(), LoginTransaction.state.in_(("second_factor", "consent"))))

    def sessions() -> int:
        with live_server.context():
            return db.session.scalar(select(func.count()).select_from(UserSession))

    assert live_logins() == 2
    sessions_before = sessions()
    admin_resets_factors(live_server, seeded)
    assert live_logins() == 1  # the owner's, on the password alone so far

    page = thief.submit(allow, button=("action", "allow"))
    assert thief.last_redirect is None and page.status == 400, page.text[:1500]
    assert sessions() == sessions_before + 1  # the admin's own, nothing for the thief


OFFLINE = "openid email profile offline_access"


def refresh_error(rp, tokens: dict) -> str | None:
    """None when the refresh token still works (its successor then replaces it in `tokens`)."""
    answer = rp.token_request({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    if answer.status_code == 200:
        tokens.update(answer.json())
        return None
    return answer.json().get("error")


def second_totp(live_server, seeded) -> tuple[str, int]:
    """Another authenticator app for the user (as `idp factor totp import` adds one): (secret, id)."""
    from idp.db import db
    from idp.factors import directory

    secret = pyotp.random_base32()
    with live_server.context():
        user = directory.find_user_by_email(seeded.user_email)
        credential = live_server.app.extensions["idp.factors"].get("totp").store.create(
            user, label="Tablet", secret=pyotp.TOTP(secret).byte_secret(),
            public={"digits": 6, "algorithm": "SHA1", "period": 30})
        db.session.commit()
    return secret, credential.id


def offline_login(live_server, rp, seeded, secret: str, at: float = 30) -> tuple[FormBrowser, dict]:
    """A browser signing in with `secret`'s code (`at` seconds ahead: each code is accepted once)
    for tokens with offline access: the browser and the tokens."""
    browser = FormBrowser(live_server.url)
    browser.get(rp.authorization_url(scope=OFFLINE))
    page = browser.login(seeded.user_email, seeded.password)
    browser.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).at(time.time() + at)})
    tokens = rp.exchange(browser.last_redirect)
    assert "refresh_token" in tokens
    return browser, tokens


def families_revoked(live_server) -> list:
    from idp.db import db
    from idp.models import AuditEvent

    with live_server.context():
        return db.session.scalars(select(AuditEvent).where(AuditEvent.event == "token.families_revoked")).all()


def test_offline_tokens_of_ended_sessions_go_with_the_factor_their_login_proved(live_server, seeded, rp_factory):
    """Signed out (the refresh tokens stay: offline_access), then the factor that login proved is
    revoked by an admin (a lost phone, a fraud report): the application's refresh token stops
    working, as a live session's tokens do. A family that proved the user's other authenticator
    stays, and the other authenticator still held saves none that proved the lost one."""
    rp = rp_factory(seeded.first_party)
    phone_secret, _ = enrol_totp_during_login(FormBrowser(live_server.url), rp, seeded)
    tablet_secret, tablet_id = second_totp(live_server, seeded)
    by_phone, lost = offline_login(live_server, rp, seeded, phone_secret)
    by_tablet, kept = offline_login(live_server, rp, seeded, tablet_secret, at=0)
    for browser in (by_phone, by_tablet):
        browser.submit(browser.get("/logout").form_with("csrf_token"))
    assert refresh_error(rp, lost) is None and refresh_error(rp, kept) is None  # (signed out, still offline)

    admin = FormBrowser(live_server.url)
    password_login(admin, rp_factory(seeded.first_party), seeded.admin_email, seeded.password)
    target = user_id_of(live_server, seeded.user_email)
    page = admin.get(f"/admin/users/{target}")
    revoke = [href for href in re.findall(rf'href="(/admin/users/{target}/factors/(\d+)/revoke)"', page.text)
              if int(href[1]) != tablet_id]
    assert len(revoke) == 1, page.text[:3000]
    confirm = admin.get(revoke[0][0])
    admin.submit(next(f for f in confirm.forms() if f["action"].endswith("/revoke")))

    assert refresh_error(rp, lost) == "invalid_grant"
    assert rp.userinfo(lost["access_token"]).status_code == 401
    assert refresh_error(rp, kept) is None and rp.userinfo(kept["access_token"]).status_code == 200
    [event] = families_revoked(live_server)
    assert event.actor == seeded.admin_email and event.details["by"] == "factor_withdrawn"
    assert event.details["families"] == 1 and event.details["client_ids"] == [seeded.first_party["client_id"]]


def test_the_browser_that_removes_its_own_factor_keeps_its_offline_tokens(live_server, seeded, rp_factory):
    """The user removes the phone from the security page of a browser that signed in with it: that
    browser stays signed in, and so do its applications' tokens; the refresh token of another
    login with the phone, signed out since, is revoked."""
    rp = rp_factory(seeded.first_party)
    here = FormBrowser(live_server.url)
    phone_secret, _ = enrol_totp_during_login(here, rp, seeded)
    here.get(rp.authorization_url(scope=OFFLINE))  # (the session, which proved the phone, answers)
    mine = rp.exchange(here.last_redirect)
    second_totp(live_server, seeded)  # (a factor left: a required user may remove the phone)
    elsewhere, gone = offline_login(live_server, rp, seeded, phone_secret)
    elsewhere.submit(elsewhere.get("/logout").form_with("csrf_token"))

    page = here.get("/account/security")
    href = re.search(r'data-remove="\d+"\s+href="([^"]+)"', page.text).group(1)
    page = here.submit([f for f in here.get(href).forms() if f["action"].endswith("/remove")][0])
    assert page.status == 200 and "flash-success" in page.text, page.text[:1500]

    assert refresh_error(rp, gone) == "invalid_grant"
    assert refresh_error(rp, mine) is None
    [event] = families_revoked(live_server)
    assert event.actor == seeded.user_email and event.details["families"] == 1
