"""Enforcement on every path to a token: a user who becomes required mid-session gets no new token without a second factor."""
from __future__ import annotations

import pytest
from sqlalchemy import update

from fixtures.oidc import password_login


def _require(server, email: str) -> None:
    from idp.db import db
    from idp.models import User

    with server.context():
        db.session.execute(update(User).where(User.email == email).values(mfa_setting="required"))
        db.session.commit()


def test_sso_session_without_second_factor_is_not_reused_once_required(seeded, web, rp_factory, live_server):
    rp = rp_factory(seeded.first_party)
    password_login(web, rp, seeded.user_email, seeded.password)
    rp.exchange(web.last_redirect)
    _require(live_server, seeded.user_email)
    web.get(rp.authorization_url(prompt="none"))
    assert web.callback_params()["error"] == "interaction_required"
    page = web.get(rp.authorization_url())
    assert web.last_redirect is None, "no code without the second factor"
    page = web.login(seeded.user_email, seeded.password)
    assert web.last_redirect is None and "Set up two-factor authentication" in page.text


def test_a_session_proven_with_a_factor_no_longer_allowed_answers_nothing(seeded, web, rp_factory, live_server):
    """The organization accepts only security keys now: a session that proved an authenticator
    app's code answers no request (prompt=none: interaction_required); the login asks for the
    code again, then for a security key to be set up (must_switch), as without a session."""
    import time

    import pyotp

    from fixtures.totp import enrol_totp_during_login
    from idp.db import db
    from idp.models import Organization

    rp = rp_factory(seeded.first_party)
    secret, _codes = enrol_totp_during_login(web, rp, seeded)
    rp.exchange(web.last_redirect)
    with live_server.context():
        db.session.execute(update(Organization).where(Organization.id == seeded.org_id)
                           .values(require_2fa=True, allowed_factors=["webauthn"]))
        db.session.commit()
    web.get(rp.authorization_url(prompt="none"))
    assert web.callback_params()["error"] == "interaction_required"
    web.get(rp.authorization_url())
    assert web.last_redirect is None, "no code from that session"
    page = web.login(seeded.user_email, seeded.password)
    page = web.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).at(time.time() + 30)})
    assert web.last_redirect is None and "Security key" in page.text, page.text[:2000]


def test_remembered_consent_does_not_bypass_the_requirement(seeded, web, rp_factory, live_server):
    rp = rp_factory(seeded.third_party)
    password_login(web, rp, seeded.user_email, seeded.password)
    rp.exchange(web.last_redirect)
    _require(live_server, seeded.user_email)
    fresh = type(web)(web.base_url)
    fresh.get(rp.authorization_url())
    fresh.login(seeded.user_email, seeded.password)
    assert fresh.last_redirect is None, "remembered consent must not skip forced enrolment"
    assert "Set up two-factor authentication" in fresh.page.text


def test_refresh_token_from_a_password_only_login_stops_once_required(seeded, web, rp_factory, live_server):
    rp = rp_factory(seeded.first_party)
    password_login(web, rp, seeded.user_email, seeded.password, scope="openid offline_access")
    refresh = rp.exchange(web.last_redirect)["refresh_token"]
    _require(live_server, seeded.user_email)
    response = rp.token_request({"grant_type": "refresh_token", "refresh_token": refresh})
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_introspection_calls_inactive_the_refresh_token_the_grant_now_refuses(seeded, web, rp_factory, live_server):
    """A resource server asking about it must not accept what the refresh grant refuses (RFC 7662
    2.2); the access token of the pair is another matter: valid until it expires (docs)."""
    import requests

    rp = rp_factory(seeded.first_party)
    password_login(web, rp, seeded.user_email, seeded.password, scope="openid offline_access")
    tokens = rp.exchange(web.last_redirect)

    def active(token: str) -> bool:
        answer = requests.post(rp.metadata["introspection_endpoint"], data={"token": token}, timeout=10,
                               auth=(rp.client["client_id"], rp.client["client_secret"]))
        assert answer.status_code == 200, answer.text
        return answer.json()["active"]

    assert active(tokens["refresh_token"]) and active(tokens["access_token"])
    _require(live_server, seeded.user_email)
    assert not active(tokens["refresh_token"]) and active(tokens["access_token"])


def test_introspection_and_the_refresh_grant_agree_once_the_organization_stops_accepting_the_factor(
        seeded, web, rp_factory, live_server):
    """A family whose login proved only a factor the organization no longer accepts is refused by
    the refresh grant, and its refresh token is inactive to introspection: one rule for both
    (gate.proved_factor_withdrawn; an audit found introspection still answering active)."""
    import time

    import pyotp
    import requests

    from fixtures.oidc import FormBrowser
    from fixtures.totp import MFA, enrol_totp_during_login
    from idp.db import db
    from idp.models import Organization

    rp = rp_factory(seeded.first_party)
    secret, _codes = enrol_totp_during_login(web, rp, seeded)
    rp.exchange(web.last_redirect)
    browser = FormBrowser(live_server.url)
    browser.get(rp.authorization_url(acr_values=MFA, scope="openid offline_access"))
    page = browser.login(seeded.user_email, seeded.password)
    browser.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).at(time.time() + 30)})
    refresh = rp.exchange(browser.last_redirect)["refresh_token"]

    def introspected() -> dict:
        answer = requests.post(rp.metadata["introspection_endpoint"], data={"token": refresh}, timeout=10,
                               auth=(rp.client["client_id"], rp.client["client_secret"]))
        assert answer.status_code == 200, answer.text
        return answer.json()

    assert introspected()["active"] is True
    with live_server.context():
        db.session.execute(update(Organization).where(Organization.id == seeded.org_id)
                           .values(require_2fa=True, allowed_factors=["webauthn"]))
        db.session.commit()
    assert introspected() == {"active": False}
    refused = rp.token_request({"grant_type": "refresh_token", "refresh_token": refresh})
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant", refused.text


def test_a_login_waiting_at_consent_meets_a_requirement_made_meanwhile(seeded, web, rp_factory, live_server):
    """The consent page may wait for minutes: the policy is asked again when it is answered."""
    rp = rp_factory(seeded.third_party)
    web.get(rp.authorization_url())
    page = web.login(seeded.user_email, seeded.password)
    assert page.form_with("action"), "the consent page"
    _require(live_server, seeded.user_email)
    page = web.consent("allow")
    assert web.last_redirect is None, "no code without the second factor"
    assert "Set up two-factor authentication" in page.text


def test_an_sso_answer_waiting_at_consent_ends_once_it_no_longer_suffices(seeded, web, rp_factory, live_server):
    password_login(web, rp_factory(seeded.first_party), seeded.user_email, seeded.password)
    rp = rp_factory(seeded.third_party)
    page = web.get(rp.authorization_url())
    assert page.form_with("action"), "the SSO session answered: the consent page"
    _require(live_server, seeded.user_email)
    page = web.consent("allow")
    assert web.last_redirect is None and page.status == 400 and "/login/expired" in page.url


def test_a_token_from_a_postponed_enrolment_refreshes_while_the_grace_lasts(seeded, web, rp_factory, live_server):
    from idp.db import db
    from idp.models import Organization

    with live_server.context():
        org = db.session.get(Organization, seeded.org_id)
        org.require_2fa, org.grace_days = True, 7
        db.session.commit()
    rp = rp_factory(seeded.first_party)
    web.get(rp.authorization_url(scope="openid offline_access"))
    page = web.login(seeded.user_email, seeded.password)
    postpone = [f for f in page.forms() if "postpone" in page.text and f["action"].endswith(page.url.split("/")[-1])]
    web.submit(postpone[-1], button=("postpone", "1"))
    tokens = rp.exchange(web.last_redirect)
    assert rp.validate_id_token(tokens["id_token"])["amr"] == ["pwd"]
    refreshed = rp.token_request({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    with live_server.context():  # the grace ends: so does the token's
        db.session.get(Organization, seeded.org_id).grace_days = None
        db.session.commit()
    again = rp.token_request({"grant_type": "refresh_token", "refresh_token": refreshed.json()["refresh_token"]})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_a_postponed_enrolment_waiting_at_consent_meets_a_grace_ended_meanwhile(seeded, web, rp_factory, live_server):
    """Postponed at the enrolment step, then the consent page waits; the grace ends meanwhile. The
    login owes the enrolment now (its own postponement is not what ended the grace)."""
    from idp.db import db
    from idp.models import Organization

    with live_server.context():
        org = db.session.get(Organization, seeded.org_id)
        org.require_2fa, org.grace_logins = True, 1  # this login's postponement spends the only one
        db.session.commit()
    rp = rp_factory(seeded.third_party)
    web.get(rp.authorization_url())
    page = web.login(seeded.user_email, seeded.password)
    postpone = [f for f in page.forms() if "postpone" in page.text and f["action"].endswith(page.url.split("/")[-1])]
    page = web.submit(postpone[-1], button=("postpone", "1"))
    assert page.form_with("action"), "the consent page"
    page = web.consent("allow")  # the grace this login spent was its own: still a code
    assert web.callback_params()["code"]

    web.get(rp.authorization_url(prompt="login consent"))  # consent remembered: asked again all the same
    with live_server.context():
        db.session.get(Organization, seeded.org_id).grace_logins = 3
        db.session.commit()
    page = web.login(seeded.user_email, seeded.password)
    postpone = [f for f in page.forms() if "postpone" in page.text and f["action"].endswith(page.url.split("/")[-1])]
    web.submit(postpone[-1], button=("postpone", "1"))
    with live_server.context():  # the admin ends the grace while the consent page waits
        org = db.session.get(Organization, seeded.org_id)
        org.grace_logins = org.grace_days = None
        db.session.commit()
    page = web.consent("allow")
    assert web.last_redirect is None, "no code without the second factor"
    assert "Set up two-factor authentication" in page.text


def test_an_sso_answer_waiting_at_consent_ends_once_older_than_max_age(seeded, web, rp_factory, live_server):
    """max_age is the client's rule for the login's age when the code is issued: an SSO session
    that met it at /authorize but grew too old on the consent page answers nothing."""
    import time

    password_login(web, rp_factory(seeded.first_party), seeded.user_email, seeded.password)
    # (auth_time counts in whole seconds, and a loaded machine takes time between the login and
    # /authorize: a max_age of 1 s failed there now and then; 4 s leaves room, then the wait passes it)
    page = web.get(rp_factory(seeded.third_party).authorization_url(max_age="4"))
    assert page.form_with("action"), "the SSO session answered: the consent page"
    time.sleep(5.1)
    page = web.consent("allow")
    assert web.last_redirect is None and "/login/expired" in page.url


@pytest.mark.parametrize("version", ["99999999999999999999", "9223372036854775807", "-5", "2147483647"])
def test_a_version_no_login_can_have_is_a_stale_form(seeded, web, rp_factory, live_server, version):
    """Out of the column's range (SQLite refused it with an OverflowError: a 500): like any stale
    version, the page is shown again where the login is."""
    rp = rp_factory(seeded.third_party)
    web.get(rp.authorization_url())
    page = web.login(seeded.user_email, seeded.password)
    form = page.form_with("action")
    page = web.submit(form, {"version": version}, button=("action", "allow"))
    assert page.status == 200 and page.form_with("action") and web.last_redirect is None


def test_a_recovery_code_login_keeps_its_session_and_refresh_token_where_factors_are_restricted(
        seeded, web, rp_factory, live_server):
    """A recovery code is no factor "of a kind the organization no longer accepts": it stands in
    for the user's own (allowed) factor. The organization restricts its factors to the one the user
    holds; a login through a recovery code (the phone left at home) keeps its browser session for
    the next request and its refresh token, as a login through the authenticator app does."""
    from fixtures.oidc import FormBrowser
    from fixtures.totp import enrol_totp_during_login
    from idp.db import db
    from idp.models import Organization

    rp = rp_factory(seeded.first_party)
    _secret, codes = enrol_totp_during_login(web, rp, seeded)
    rp.exchange(web.last_redirect)
    with live_server.context():
        db.session.execute(update(Organization).where(Organization.id == seeded.org_id)
                           .values(require_2fa=True, allowed_factors=["totp"]))
        db.session.commit()
    browser = FormBrowser(live_server.url)
    browser.get(rp.authorization_url(scope="openid offline_access"))
    page = browser.login(seeded.user_email, seeded.password)
    page = browser.submit(next(f for f in page.forms() if f["action"].endswith("/factor/recovery_codes")))
    browser.submit(page.form_with("code"), {"code": codes[0]})
    browser.past_recovery_notice()
    assert browser.last_redirect is not None, browser.page.text[:2000]
    refresh = rp.exchange(browser.last_redirect)["refresh_token"]
    refreshed = rp.token_request({"grant_type": "refresh_token", "refresh_token": refresh})
    assert refreshed.status_code == 200, refreshed.text
    browser.get(rp.authorization_url(prompt="none"))
    assert "code" in browser.callback_params(), browser.callback_params()
    # The organization then stops accepting the one factor the user holds: the recovery code stood
    # in for it, and counts no more than it would (the next login has the user switch).
    with live_server.context():
        db.session.execute(update(Organization).where(Organization.id == seeded.org_id)
                           .values(allowed_factors=["webauthn"]))
        db.session.commit()
    refused = rp.token_request({"grant_type": "refresh_token", "refresh_token": refreshed.json()["refresh_token"]})
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant", refused.text
    browser.get(rp.authorization_url(prompt="none"))
    assert browser.callback_params()["error"] == "interaction_required"


def _exempt(server, email: str, until) -> None:
    from idp.db import db
    from idp.models import User

    with server.context():
        db.session.execute(update(User).where(User.email == email)
                           .values(mfa_setting="exempt", exempt_until=until, required_since=None))
        db.session.commit()


def test_an_exemption_that_ends_during_a_session_asks_for_the_factor_and_stops_its_refresh_tokens(
        seeded, web, rp_factory, live_server):
    """Exempt (a factor set up, not asked for), signed in with the password alone; the exemption's
    last day passes. The session answers no request (prompt=none: interaction_required), the next
    login asks for the factor the user holds (not an enrolment), and the refresh token of the
    password-only login is refused (docs/policy.md, "Refresh tokens")."""
    import time
    from datetime import timedelta

    import pyotp

    from fixtures.totp import enrol_totp_during_login
    from idp.db import utcnow

    rp = rp_factory(seeded.first_party)
    secret, _codes = enrol_totp_during_login(web, rp, seeded)
    rp.exchange(web.last_redirect)
    today = utcnow().date()
    _exempt(live_server, seeded.user_email, today)  # exempt today, this day included
    fresh = type(web)(web.base_url)
    password_login(fresh, rp, seeded.user_email, seeded.password, scope="openid offline_access")
    refresh = rp.exchange(fresh.last_redirect)["refresh_token"]
    _exempt(live_server, seeded.user_email, today - timedelta(days=1))  # ... and then that day is over
    fresh.get(rp.authorization_url(prompt="none"))
    assert fresh.callback_params()["error"] == "interaction_required"
    fresh.get(rp.authorization_url())
    assert fresh.last_redirect is None
    page = fresh.login(seeded.user_email, seeded.password)
    assert page.form_with("code") and "Set up two-factor authentication" not in page.text
    response = rp.token_request({"grant_type": "refresh_token", "refresh_token": refresh})
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"
    fresh.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).at(time.time() + 30)})
    assert "code=" in (fresh.last_redirect or "")


def test_set_up_later_pressed_after_the_grace_ended_on_an_open_page_is_refused(seeded, web, rp_factory, live_server):
    """The enrolment page offered "Set up later" while the grace lasted; it ended while the page was
    open. The button is refused (the grace is judged when it is pressed): no code, no grace login
    spent, no postponement recorded; the page still offers the enrolment."""
    from datetime import timedelta

    from sqlalchemy import func, select

    from idp.db import db, utcnow
    from idp.models import AuditEvent, Organization, User

    with live_server.context():
        db.session.execute(update(Organization).where(Organization.id == seeded.org_id).values(grace_days=7))
        db.session.execute(update(User).where(User.email == seeded.user_email)
                           .values(mfa_setting="required", required_since=utcnow() - timedelta(days=6)))
        db.session.commit()
    rp = rp_factory(seeded.first_party)
    web.get(rp.authorization_url())
    page = web.login(seeded.user_email, seeded.password)
    later = page.form_with("postpone")
    assert later, page.text[:2000]
    with live_server.context():  # the seventh day ends while the page is open
        db.session.execute(update(User).where(User.email == seeded.user_email)
                           .values(required_since=utcnow() - timedelta(days=7, seconds=1)))
        db.session.commit()
    page = web.submit(later, {"postpone": "1"})
    assert web.last_redirect is None or "code=" not in web.last_redirect
    assert "requires you to set up a second factor now" in page.text
    with live_server.context():
        user = db.session.scalar(select(User).where(User.email == seeded.user_email))
        postponed = db.session.scalar(select(func.count()).select_from(AuditEvent)
                                      .where(AuditEvent.event == "login.enrolment_postponed"))
    assert (user.logins_since_required or 0) == 0 and postponed == 0
