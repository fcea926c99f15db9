"""Password + TOTP logins end to end: forced enrolment, recovery codes, replay, amr in the ID token."""
from __future__ import annotations

import re
import time

import pyotp
from sqlalchemy import select

from fixtures.oidc import FormBrowser
from fixtures.totp import ENROLMENT_CODES, MFA, enrol_totp_during_login


def test_acr_values_mfa_enrols_then_issues_mfa_token(seeded, web, rp_factory, live_server):
    from idp.db import db
    from idp.models import AuditEvent

    rp = rp_factory(seeded.first_party)
    secret, codes = enrol_totp_during_login(web, rp, seeded)
    assert len(codes) == 10
    claims = rp.validate_id_token(rp.exchange(web.last_redirect)["id_token"])
    assert claims["amr"] == ["pwd", "otp", "mfa"] and claims["acr"] == MFA
    with live_server.context():  # the set of codes now valid was created with it: the log says so
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "factor.enrolled")).one()
        assert event.details == {"factor": "totp", "credential_id": event.details["credential_id"],
                                 "during": "login", "recovery_codes_issued": 10}


def test_totp_login_and_replay_refused(seeded, web, rp_factory, live_server):
    rp = rp_factory(seeded.first_party)
    secret, _codes = enrol_totp_during_login(web, rp, seeded)
    rp.exchange(web.last_redirect)
    other = FormBrowser(live_server.url)
    other.get(rp.authorization_url())
    page = other.login(seeded.user_email, seeded.password)
    form = page.form_with("code")
    # The code used at enrolment is spent: the same time step is refused.
    used = ENROLMENT_CODES[secret]
    page = other.submit(form, {"code": used})
    assert other.last_redirect is None and page.status in (401, 200)
    next_step = pyotp.TOTP(secret).at(int(__import__("time").time()) + 30)
    other.submit(page.form_with("code"), {"code": next_step})
    claims = rp.validate_id_token(rp.exchange(other.last_redirect)["id_token"])
    assert claims["amr"] == ["pwd", "otp", "mfa"]


def test_recovery_code_login_once(seeded, web, rp_factory, live_server):
    rp = rp_factory(seeded.first_party)
    _secret, codes = enrol_totp_during_login(web, rp, seeded)
    rp.exchange(web.last_redirect)
    for attempt in range(2):
        browser = FormBrowser(live_server.url)
        browser.get(rp.authorization_url())
        page = browser.login(seeded.user_email, seeded.password)
        choose = [f for f in page.forms() if f["action"].endswith("/factor/recovery_codes")]
        assert choose, "recovery codes are offered as 'I can't use my usual method'"
        page = browser.submit(choose[0])
        page = browser.submit(page.form_with("code"), {"code": codes[0]})
        if attempt == 0:
            assert 'data-recovery-codes-remaining="9"' in page.text, page.text[:2000]
            browser.past_recovery_notice()
            claims = rp.validate_id_token(rp.exchange(browser.last_redirect)["id_token"])
            assert "mfa" in claims["amr"]
        else:
            assert browser.last_redirect is None, "a recovery code works once"


def test_wrong_codes_lock_out_with_growing_delay(seeded, web, rp_factory, live_server):
    from idp.db import db
    from idp.models import AuditEvent

    rp = rp_factory(seeded.first_party)
    enrol_totp_during_login(web, rp, seeded)
    rp.exchange(web.last_redirect)
    web.get(rp.authorization_url(prompt="login"))
    page = web.login(seeded.user_email, seeded.password)
    statuses = []
    for _ in range(7):
        page = web.submit(page.form_with("code"), {"code": "000000"})
        statuses.append(page.status)
    assert 429 in statuses and "Wait" in page.text
    assert web.last_redirect is None
    with live_server.context():  # the failure that started the lockout says so, once
        locked = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "login.locked_out")).all()
        assert [(e.details["step"], e.details["seconds"] > 0) for e in locked] == [("second_factor", True)]


def _at_the_code_page(seeded, web, rp_factory, live_server):
    """A user who enrolled TOTP, then a fresh browser at the code page after the password:
    (the relying party, the browser, the page, the TOTP secret)."""
    rp = rp_factory(seeded.first_party)
    secret, _codes = enrol_totp_during_login(web, rp, seeded)
    rp.exchange(web.last_redirect)
    browser = FormBrowser(live_server.url)
    browser.get(rp.authorization_url())
    return rp, browser, browser.login(seeded.user_email, seeded.password), secret


def test_second_factor_is_not_skippable_by_calling_later_urls(seeded, web, rp_factory, live_server):
    rp, browser, page, _secret = _at_the_code_page(seeded, web, rp_factory, live_server)
    handle_url = page.url
    # Posting a consent or recovery-codes form to the second-factor state changes nothing.
    csrf = page.form_with("code")["fields"]
    browser.http.post(handle_url, data={**csrf, "action": "allow"}, allow_redirects=False)
    browser.http.post(handle_url, data={**csrf, "code": ""}, allow_redirects=False)
    # prompt=none from this half-authenticated browser has no session to use.
    browser.get(rp.authorization_url(prompt="none"))
    assert browser.callback_params()["error"] == "login_required"
    assert re.search("code", page.text)


def test_a_code_no_form_could_send_shows_the_form_again_with_a_400(seeded, web, rp_factory, live_server):
    """Not a silent redirect (CONTRACT: rejected input shows the same form with a message and a
    4xx), and not a counted guess: a code longer than any; and a form without its CSRF token is a 400."""
    rp, browser, page, secret = _at_the_code_page(seeded, web, rp_factory, live_server)
    form = page.form_with("code")
    before = _login_transactions(live_server.database_url)
    too_long = browser.submit(form, {"code": "1" * 10_000})
    assert too_long.status == 400 and too_long.form_with("code") and "Try again" in too_long.text
    without_csrf = browser.http.post(form["action"], data={**form["fields"], "csrf_token": "", "code": "123456"},
                                     allow_redirects=False)
    assert without_csrf.status_code == 400  # the app's CSRF page: "reload the page and try again"
    assert _login_transactions(live_server.database_url) == before
    browser.submit(too_long.form_with("code"), {"code": pyotp.TOTP(secret).at(time.time() + 30)})  # (now: spent enrolling)
    assert browser.last_redirect and "code=" in browser.last_redirect


def _login_transactions(url: str) -> set[tuple]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return set(connection.execute(text(
                "SELECT id, state, version, factor_name FROM login_transactions")).all())
    finally:
        engine.dispose()


def test_the_code_page_only_reads_when_its_factor_begins_quietly(seeded, web, rp_factory, live_server):
    """TOTP `begins_quietly`: the password POST stores the challenge with its own transition into
    the second-factor step, so the code page, shown and reloaded, writes nothing."""
    _rp, browser, page, _secret = _at_the_code_page(seeded, web, rp_factory, live_server)
    assert page.form_with("code")
    before = _login_transactions(live_server.database_url)
    assert any(state == "second_factor" and factor == "totp" for _id, state, _version, factor in before)
    for _ in range(2):
        assert browser.get(page.url).form_with("code")
    assert _login_transactions(live_server.database_url) == before


def test_a_right_code_clears_the_users_failures_not_the_addresss(seeded, web, rp_factory, live_server):
    """As at the password step: one account that works must not wipe the guesses an address made
    (at other accounts, say) before the code that worked."""
    from idp.db import db
    from idp.models import FailureCounter

    def failures() -> dict[str, int]:
        with live_server.context():
            return {row.key.split(":")[1]: row.failures for row in db.session.scalars(
                select(FailureCounter).where(FailureCounter.key.like("factor:%")))}

    _rp, browser, page, secret = _at_the_code_page(seeded, web, rp_factory, live_server)
    for _ in range(2):
        page = browser.submit(page.form_with("code"), {"code": "000000"})
    assert failures() == {"user": 2, "ip": 2}
    browser.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).at(int(time.time()) + 30)})
    assert browser.last_redirect
    assert failures() == {"ip": 2}


def _everything_stored(server) -> str:
    """Every row of the tables where a login or a security page keeps work in progress, as text."""
    from idp.db import db
    from idp.models import FactorChallenge, LoginTransaction

    with server.context():
        rows = [(r.factor_state, r.authz_request) for r in db.session.scalars(select(LoginTransaction))]
        rows += [r.payload_json for r in db.session.scalars(select(FactorChallenge))]
    return repr(rows)


def test_a_new_seed_is_not_kept_in_clear_while_the_user_types_the_code(seeded, web, rp_factory, live_server):
    """The enrolment page shows the seed, its QR code and otpauth URI; what waits in the database
    for the code (the login's row, the security page's pending enrolment) holds them sealed."""
    rp = rp_factory(seeded.first_party)
    web.get(rp.authorization_url(acr_values=MFA))
    page = web.login(seeded.user_email, seeded.password)
    choose = [f for f in page.forms() if f["action"].endswith("/factor/totp")]
    if choose:  # several factors may be enrolled: pick the authenticator app
        page = web.submit(choose[0])
    key = page.find(r'<code>([A-Z2-7 ]+)</code>').replace(" ", "")
    stored = _everything_stored(live_server)
    assert "sealed_view" in stored and key not in stored and "otpauth" not in stored
    web.submit(page.form_with("code"), {"code": pyotp.TOTP(key).now(), "label": "Phone"})
    assert "data-recovery-codes" in web.page.text  # the sealed view opened: the enrolment went through

    account = FormBrowser(live_server.url)
    account.get("/account/security")
    account.login(seeded.user_email, seeded.password)
    account.submit(account.page.form_with("code"), {"code": pyotp.TOTP(key).at(int(time.time()) + 30)})
    page = account.submit([f for f in account.page.forms() if f["action"].endswith("/add/totp")][0])
    second = page.find(r'<code>([A-Z2-7 ]+)</code>').replace(" ", "")
    stored = _everything_stored(live_server)
    assert second and second not in stored and "otpauth" not in stored


def _stamps(live_server, email):
    from idp.db import db
    from idp.models import User

    with live_server.context():
        user = db.session.scalars(select(User).where(User.email == email)).one()
        db.session.refresh(user)
        return user.last_login_at, user.password_reset_at


def test_a_login_stamps_the_user_and_a_second_factor_ends_the_reset_links_hold(seeded, web, rp_factory,
                                                                                live_server):
    """users.last_login_at is written by each completed login (a first-party client's: in the
    statement that holds the user's row, idp.login.pipeline._stamped_at_hold), and a login that
    proved a second factor clears password_reset_at; a login that stops at the code page writes
    neither."""
    from datetime import datetime

    from idp.db import db
    from idp.models import User

    rp = rp_factory(seeded.first_party)
    browser = FormBrowser(live_server.url)
    browser.get(rp.authorization_url())
    browser.login(seeded.user_email, seeded.password)  # password only: signed in
    assert browser.last_redirect is not None
    password_login, _ = _stamps(live_server, seeded.user_email)
    assert password_login is not None
    secret, _codes = enrol_totp_during_login(web, rp, seeded)
    rp.exchange(web.last_redirect)
    marked = datetime(2000, 1, 1)
    with live_server.context():
        user = db.session.scalars(select(User).where(User.email == seeded.user_email)).one()
        user.password_reset_at, user.last_login_at = marked, marked
        db.session.commit()
    halfway = FormBrowser(live_server.url)
    halfway.get(rp.authorization_url())
    page = halfway.login(seeded.user_email, seeded.password)
    assert page.form_with("code") is not None
    assert _stamps(live_server, seeded.user_email) == (marked, marked)  # not signed in yet
    code = pyotp.TOTP(secret).at(int(time.time()) + 30)
    halfway.submit(page.form_with("code"), {"code": code})
    assert halfway.last_redirect is not None
    last_login, reset = _stamps(live_server, seeded.user_email)
    assert last_login > marked and reset is None
