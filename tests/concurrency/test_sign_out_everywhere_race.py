""""Sign out everywhere" (the security page) at the very moment a login finishes, on PostgreSQL:
one answered by the browser's session (prompt=none), and a fresh password login on another
browser. The two serialise on the user's row (idp.users.sign_out_everywhere, idp.login.pipeline
.finish): a login held back until the sign-out committed issues no code, and one that issued its
code first has it, and the session it made, withdrawn by the sign-out that waited for it."""
from __future__ import annotations

import threading

import pytest

from fixtures.database import postgres_base_url
from fixtures.oidc import FormBrowser, RelyingParty, password_login, seed
from fixtures.race import tabs_of

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")


def _held_until(reached: threading.Event, done: threading.Event):
    def hold(original):
        def wrapper(*args, **kwargs):
            reached.set()
            done.wait(timeout=2)  # the sign-out comes now, or, when it waits for this login, after it
            return original(*args, **kwargs)
        return wrapper
    return hold


def _sign_out_everywhere(tab, reached: threading.Event, done: threading.Event) -> threading.Thread:
    confirm = tab.get("/account/security/sign-out-everywhere")
    form = next(f for f in confirm.forms() if f["action"].endswith("/sign-out-everywhere"))

    def run():
        assert reached.wait(timeout=10)
        tab.submit(form)
        done.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _new_password(server, email: str, reached: threading.Event, done: threading.Event) -> threading.Thread:
    """The operator gives `email` a new password (its sign-out everywhere) once the login is held."""
    from sqlalchemy import select

    from idp import users
    from idp.db import db
    from idp.models import User

    def run():
        assert reached.wait(timeout=10)
        with server.context():
            user = db.session.scalar(select(User).where(User.email == email))
            users.set_password(user, "an entirely new passphrase 42", actor="cli")
            db.session.commit()
        done.set()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _redeemed(rp, code: str):
    return rp.token_request({"grant_type": "authorization_code", "code": code,
                             "redirect_uri": rp.client["redirect_uri"], "code_verifier": rp.verifier})


@pytest.mark.parametrize("when", ["before_the_hold", "as_the_code_is_issued"])
def test_sign_out_everywhere_as_the_session_answers_a_login_leaves_no_live_code(pg_server, monkeypatch, when):
    from idp.login import pipeline
    from idp.login import user as login_user

    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.first_party)
    browser = FormBrowser(pg_server.url)
    password_login(browser, rp, seeded.user_email, seeded.password)
    rp.exchange(browser.last_redirect)
    [other_tab] = tabs_of(browser, 1)
    reached, done = threading.Event(), threading.Event()
    hold = _held_until(reached, done)
    if when == "before_the_hold":
        monkeypatch.setattr(login_user, "hold_for_sign_in", hold(login_user.hold_for_sign_in))
    else:
        monkeypatch.setattr(pipeline, "issue_code", hold(pipeline.issue_code))
    thread = _sign_out_everywhere(other_tab, reached, done)
    browser.get(rp.authorization_url(prompt="none"))
    thread.join()
    callback = browser.callback_params()
    if when == "before_the_hold":
        assert callback["error"] == "login_required" and callback["state"] == rp.state, callback
    else:
        answer = _redeemed(rp, callback["code"])
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant", answer.text
    browser.get(rp.authorization_url(prompt="none"))
    assert browser.callback_params()["error"] == "login_required"


@pytest.mark.parametrize("when", ["before_the_hold", "as_the_code_is_issued"])
def test_sign_out_everywhere_as_a_password_login_finishes_leaves_it_nothing(pg_server, monkeypatch, when):
    from idp.login import gate, pipeline

    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.first_party)
    here = FormBrowser(pg_server.url)
    password_login(here, rp, seeded.user_email, seeded.password)
    rp.exchange(here.last_redirect)
    there = FormBrowser(pg_server.url)
    there.get(rp.authorization_url())                         # the password form, filled below
    reached, done = threading.Event(), threading.Event()
    hold = _held_until(reached, done)
    if when == "before_the_hold":
        monkeypatch.setattr(gate, "record_login_holding", hold(gate.record_login_holding))
    else:
        monkeypatch.setattr(pipeline, "issue_code", hold(pipeline.issue_code))
    thread = _sign_out_everywhere(here, reached, done)
    page = there.login(seeded.user_email, seeded.password)
    thread.join()
    if when == "before_the_hold":  # its transaction expired by the sign-out: no code, no session
        assert there.last_redirect is None and "/login/expired" in page.url, page.url
    else:
        answer = _redeemed(rp, there.callback_params()["code"])
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant", answer.text
    there.get(rp.authorization_url(prompt="none"))
    assert there.callback_params()["error"] == "login_required"


def test_the_old_password_checked_as_a_new_one_is_stored_signs_nobody_in(pg_server, monkeypatch):
    """The same moment with a new password (an admin's, a reset link's): the login checked the
    old one against the hash it read before the new one was stored, and must not sign in after it."""
    from idp.login import gate

    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.first_party)
    there = FormBrowser(pg_server.url)
    there.get(rp.authorization_url())
    reached, done = threading.Event(), threading.Event()
    monkeypatch.setattr(gate, "record_login_holding", _held_until(reached, done)(gate.record_login_holding))

    thread = _new_password(pg_server, seeded.user_email, reached, done)
    page = there.login(seeded.user_email, seeded.password)
    thread.join()
    assert there.last_redirect is None and "/login/expired" in page.url, page.url
    there.get(rp.authorization_url(prompt="none"))
    assert there.callback_params()["error"] == "login_required"


def test_the_old_password_checked_as_a_new_one_is_stored_leads_to_no_consent_page_sign_in(pg_server, monkeypatch):
    """The same moment, for a login whose password step is not its last (a third-party
    application's consent page follows): the login names its user only as the password step
    moves it on, after the new password's sign-out everywhere expired the user's logins, so
    nothing expired it, and the consent page's "Allow" signed in with the old password."""
    from idp.login import pipeline

    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.third_party)
    there = FormBrowser(pg_server.url)
    there.get(rp.authorization_url())
    reached, done = threading.Event(), threading.Event()
    # Between the password's check and the step's move (`proceed` asks where the login goes next).
    monkeypatch.setattr(pipeline, "next_state", _held_until(reached, done)(pipeline.next_state))

    thread = _new_password(pg_server, seeded.user_email, reached, done)
    page = there.login(seeded.user_email, seeded.password)
    thread.join()
    if there.last_redirect is None and page.form_with("action"):
        page = there.consent("allow")
    assert there.last_redirect is None and "/login/expired" in page.url, (there.last_redirect, page.url)
    there.get(rp.authorization_url(prompt="none"))
    assert there.callback_params()["error"] == "login_required"


def test_the_old_password_checked_as_a_new_one_is_stored_leads_to_no_second_factor_sign_in(pg_server, monkeypatch):
    """The same, with a second factor after the password: the right code from the app, posted on
    the page the old password led to, signed in."""
    import time

    import pyotp

    from fixtures.totp import enrol_totp_during_login
    from idp.login import pipeline

    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.first_party)
    secret, _codes = enrol_totp_during_login(FormBrowser(pg_server.url), rp, seeded)
    there = FormBrowser(pg_server.url)
    there.get(rp.authorization_url())
    reached, done = threading.Event(), threading.Event()
    monkeypatch.setattr(pipeline, "next_state", _held_until(reached, done)(pipeline.next_state))

    thread = _new_password(pg_server, seeded.user_email, reached, done)
    page = there.login(seeded.user_email, seeded.password)
    thread.join()
    monkeypatch.undo()
    assert page.form_with("code"), page.text[:2000]
    # (The next time step's code: the enrolment above spent this one's.)
    page = there.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).at(time.time() + 30)})
    assert there.last_redirect is None and "/login/expired" in page.url, (there.last_redirect, page.url)
    there.get(rp.authorization_url(prompt="none"))
    assert there.callback_params()["error"] == "login_required"
