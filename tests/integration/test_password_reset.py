""""Forgot your password?": a link by e-mail, a new password, and nothing more (idp/password_reset.py).

Over real HTTP against a live server whose `[mail]` is a real SMTP server (aiosmtpd,
fixtures/mail.py), with an independent OIDC client for the tokens. On SQLite and, when
IDP_TEST_DATABASE_URL is set, PostgreSQL; the race is tests/concurrency/test_password_reset_race.py.
"""
from __future__ import annotations

import re
import time
from datetime import timedelta

import pyotp
import pytest
import requests
from sqlalchemy import select, update

from fixtures.threads import finished
from fixtures.oidc import FormBrowser, password_login, start_server
from fixtures.totp import enrol_totp_during_login

NEW_PASSWORD = "a brand new passphrase"
PER_HOUR = 2
LINK = re.compile(r"(http://\S+/password/reset/[A-Za-z0-9_-]{43})\s")


@pytest.fixture
def live_server(migrated_database_url, inbox):
    _handler, port = inbox
    server = start_server(migrated_database_url, {"mail.host": "127.0.0.1", "mail.port": port,
                                                  "mail.sender": "idp@acme.test", "password_reset.per_hour": PER_HOUR})
    yield server
    server.stop()


@pytest.fixture
def mail(inbox):
    return inbox[0]


def ask_for_link(browser: FormBrowser, email: str, start: str = "/password/forgot"):
    page = browser.get(start)
    return browser.submit(page.form_with("username"), {"username": email})


def requests_handled() -> None:
    """Every request for a link made so far has been handled: the form answers at once, and its
    work (look-up, checks, writes, mail) is done on a thread (idp.password_reset.request_in_background)."""
    finished("password-reset-request")


def link_in(message) -> str:
    return LINK.search(message.get_body(("plain",)).get_content()).group(1)


def mailed_link(mail, count: int) -> str:
    return link_in(mail.wait_for(count)[count - 1][1])


def events(server, name: str) -> list:
    from idp.db import db
    from idp.models import AuditEvent

    requests_handled()
    with server.context():
        return db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)).all()


def at_the_code_page(server, rp, email: str, password: str) -> FormBrowser:
    browser = FormBrowser(server.url)
    browser.get(rp.authorization_url())
    browser.login(email, password)
    return browser


def test_a_reset_from_a_login_ends_everything_old_and_keeps_the_second_factor(live_server, seeded, rp_factory, mail):
    rp = rp_factory(seeded.first_party)
    # Alice has TOTP and a signed-in browser with tokens.
    before = FormBrowser(live_server.url)
    secret, _codes = enrol_totp_during_login(before, rp, seeded)
    rp.exchange(before.last_redirect)
    before.get(rp.authorization_url(scope="openid email offline_access"))  # signed in: straight back
    old_tokens = rp.exchange(before.last_redirect)

    # Another browser starts a login and forgets the password.
    browser = FormBrowser(live_server.url)
    login_page = browser.get(rp.authorization_url())
    forgot = login_page.find(r'href="(/login/[^"]+/forgot-password)"')
    assert forgot, login_page.text[:2000]
    sent = ask_for_link(browser, seeded.user_email, start=forgot)
    assert sent.status == 200 and sent.url.endswith("/password/forgot/sent")

    # One mail told Alice of her new authenticator app (idp.security_notices); the other is the link.
    by_subject = {message["Subject"]: (rcpt, message) for rcpt, message in mail.wait_for(2)}
    assert set(by_subject) == {"A sign-in method was added to your account", "Reset your password"}
    rcpt, message = by_subject["Reset your password"]
    assert rcpt == [seeded.user_email]
    link = link_in(message)
    assert link.startswith(f"{live_server.url}/password/reset/")
    opened = requests.get(link, timeout=10, cookies=browser.http.cookies)
    assert opened.status_code == 200 and opened.headers["Referrer-Policy"] == "no-referrer"

    form = browser.get(link).form_with("password")
    changed = browser.submit(form, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert changed.status == 200 and changed.url == f"{live_server.url}/password/changed"  # no token in it
    resume = changed.find(r'href="(/login/[^"/]+)"')
    assert resume and resume in forgot, changed.text[:2000]

    # Everything the old password opened is dead.
    refreshed = rp.token_request({"grant_type": "refresh_token", "refresh_token": old_tokens["refresh_token"]})
    assert refreshed.status_code == 400 and rp.userinfo(old_tokens["access_token"]).status_code == 401
    before.get(rp_factory(seeded.first_party).authorization_url(prompt="none"))
    assert before.callback_params()["error"] == "login_required"

    # Back to the login in progress: the old password is refused, the new one asks for the code.
    page = browser.get(resume)
    assert page.form_with("password")
    page = browser.login(seeded.user_email, seeded.password)
    assert page.status == 401 and browser.last_redirect is None
    page = browser.login(seeded.user_email, NEW_PASSWORD)
    assert browser.last_redirect is None, "a reset does not skip the second factor"
    browser.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).at(int(time.time()) + 30)})
    claims = rp.validate_id_token(rp.exchange(browser.last_redirect)["id_token"])
    assert claims["amr"] == ["pwd", "otp", "mfa"]

    [reset] = events(live_server, "user.password_reset")
    [changed_event] = events(live_server, "user.password_changed")
    assert reset.actor == changed_event.actor == "anonymous" and changed_event.details["by"] == "reset_link"
    assert changed_event.details["sessions_ended"] >= 1 and changed_event.details["tokens_revoked"] >= 1
    [requested] = events(live_server, "password_reset.requested")
    assert requested.ip == "127.0.0.1" and reset.details["reset_id"] == requested.details["reset_id"]
    # The link is spent.
    assert browser.get(link).status == 410


def test_unknown_and_disabled_addresses_get_the_same_answer_and_no_mail(live_server, seeded, mail):
    from idp import users
    from idp.db import db

    with live_server.context():
        bob = users.create(seeded.org_id, "bob@acme.test", seeded.password, actor="cli")
        users.set_disabled(bob, True, actor="cli")
        db.session.commit()
    answers = [ask_for_link(FormBrowser(live_server.url), email)
               for email in ("nobody@acme.test", "bob@acme.test", seeded.user_email.upper())]
    assert len({(page.status, page.url, page.text) for page in answers}) == 1
    [(rcpt, _message)] = mail.wait_for(1)
    assert rcpt == [seeded.user_email]  # the address as stored, whatever its case on the form
    requests_handled()
    assert len(mail.messages) == 1
    assert [e.details["reason"] for e in events(live_server, "password_reset.refused")] == ["account_disabled"]


def test_a_forged_host_header_does_not_change_the_link(live_server, seeded, mail):
    browser = FormBrowser(live_server.url)
    form = browser.get("/password/forgot").form_with("username")
    cookie = "; ".join(f"{name}={value}" for name, value in browser.http.cookies.items())
    answer = requests.post(form["action"], data=dict(form["fields"], username=seeded.user_email),
                           headers={"Host": "attacker.example", "Cookie": cookie}, allow_redirects=False, timeout=10)
    assert answer.status_code == 303, answer.text[:500]
    assert mailed_link(mail, 1).startswith(f"{live_server.url}/password/reset/")


def test_links_per_account_per_hour_are_limited_with_the_same_answer(live_server, seeded, mail):
    browser = FormBrowser(live_server.url)
    answers = [ask_for_link(browser, seeded.user_email) for _ in range(PER_HOUR + 3)]
    assert len({(page.status, page.text) for page in answers}) == 1
    mail.wait_for(PER_HOUR)
    # Three refused, one audit row: a flood of requests does not fill the log (once an hour per reason).
    assert [e.details["reason"] for e in events(live_server, "password_reset.refused")] == ["rate_limited"]
    assert len(mail.messages) == PER_HOUR


@pytest.fixture
def few_per_address(migrated_database_url, inbox):
    _handler, port = inbox
    server = start_server(migrated_database_url, {"mail.host": "127.0.0.1", "mail.port": port,
                                                  "mail.sender": "idp@acme.test", "password_reset.per_ip": "3 per hour"})
    yield server
    server.stop()


def test_requests_per_address_are_limited_whatever_the_account(few_per_address, seeded, mail):
    """One address asking for links of many accounts (each link mails a real person) is stopped at
    `password_reset.per_ip`: the same 429, with Retry-After, for a real account and for no account,
    and no mail past it. (`per_hour` counts per account: it let one address mail thousands.)"""
    from idp import users
    from idp.db import db

    with few_per_address.context():
        for name in ("bob", "carol", "dave"):
            users.create(seeded.org_id, f"{name}@acme.test", seeded.password, actor="cli")
        db.session.commit()
    browser = FormBrowser(few_per_address.url)
    sent = [ask_for_link(browser, f"{name}@acme.test") for name in ("bob", "carol", "dave")]
    assert {page.status for page in sent} == {200}
    mail.wait_for(3)
    form = browser.get("/password/forgot").form_with("username")
    refused = [browser.http.post(form["action"], data=dict(form["fields"], username=email), allow_redirects=False,
                                 timeout=10) for email in (seeded.user_email, "nobody@acme.test")]
    assert [answer.status_code for answer in refused] == [429, 429]
    # (The same page but for the minutes to wait, which may turn over between the two answers.)
    same_page = {re.sub(r"in \d+ minutes?", "in N minutes", answer.text) for answer in refused}
    assert len(same_page) == 1 and seeded.user_email not in refused[0].text
    assert all(int(answer.headers["Retry-After"]) > 0 for answer in refused)
    # When to try again, in words (the hour's limit: in minutes, rounded up), naming no account.
    minutes = -(-int(refused[0].headers["Retry-After"]) // 60)
    assert f"Try again in {minutes} minute" in refused[0].text, refused[0].text
    requests_handled()
    assert len(mail.messages) == 3 and len(events(few_per_address, "password_reset.requested")) == 3


def test_links_the_relay_did_not_take_do_not_spend_the_hours_allowance(live_server, seeded, mail):
    """The relay is down: each link dies unsent and is recorded with who asked. Once it is back
    the user just asks again (the failed links did not spend the account's links for the hour)."""
    browser = FormBrowser(live_server.url)
    mail.refusing = True
    for _ in range(PER_HOUR + 1):
        ask_for_link(browser, seeded.user_email)
        requests_handled()
    failed = events(live_server, "password_reset.mail_failed")
    assert len(failed) == PER_HOUR + 1 and {event.ip for event in failed} == {"127.0.0.1"}
    assert mail.messages == []
    mail.refusing = False
    ask_for_link(browser, seeded.user_email)
    assert browser.get(mailed_link(mail, 1)).form_with("password")
    assert not events(live_server, "password_reset.refused")


def test_sends_the_relay_did_not_take_are_bounded_per_account(live_server, seeded, mail):
    """Links whose mail failed do not spend the hour's allowance, but each is an SMTP attempt that
    anyone may ask for, with no password: at most ATTEMPTS_PER_LINK times `per_hour` an hour per
    account, then the account is refused like one past its links (audited once, nothing sent)."""
    from idp.password_reset import ATTEMPTS_PER_LINK

    browser = FormBrowser(live_server.url)
    mail.refusing = True
    for _ in range(ATTEMPTS_PER_LINK * PER_HOUR + 2):
        ask_for_link(browser, seeded.user_email)
        requests_handled()
    assert len(events(live_server, "password_reset.mail_failed")) == ATTEMPTS_PER_LINK * PER_HOUR
    assert [event.details for event in events(live_server, "password_reset.refused")] == [{"reason": "rate_limited"}]


def _dead(page) -> bool:
    return page.status == 410 and "/password/forgot" in page.text  # one page, with a way to ask again


def test_an_expired_link_is_refused_and_offers_another(live_server, seeded, mail):
    from idp.db import db, utcnow
    from idp.models import PasswordReset

    browser = FormBrowser(live_server.url)
    ask_for_link(browser, seeded.user_email)
    link = mailed_link(mail, 1)
    form = browser.get(link).form_with("password")
    with live_server.context():
        db.session.execute(update(PasswordReset).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert _dead(browser.get(link))
    assert _dead(browser.submit(form, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}))
    assert _dead(browser.get("/password/reset/" + "x" * 43))  # unknown: the same page


def test_a_used_link_is_refused_and_the_users_other_links_die(live_server, seeded, rp_factory, mail):
    browser = FormBrowser(live_server.url)
    ask_for_link(browser, seeded.user_email)
    ask_for_link(browser, seeded.user_email)
    first, second = mailed_link(mail, 1), mailed_link(mail, 2)
    form = browser.get(first).form_with("password")
    browser.submit(form, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert browser.page.url.endswith("/password/changed")
    assert _dead(browser.submit(form, {"password": "yet another passphrase", "confirm": "yet another passphrase"}))
    assert _dead(browser.get(second))
    assert password_login(FormBrowser(live_server.url), rp_factory(seeded.first_party), seeded.user_email,
                          NEW_PASSWORD).get("code")


@pytest.mark.parametrize("how", ["new_password", "disabled"])
def test_a_link_dies_when_the_password_changes_elsewhere_or_the_user_is_disabled(live_server, seeded, mail, how):
    from idp import users
    from idp.db import db
    from idp.models import User

    browser = FormBrowser(live_server.url)
    ask_for_link(browser, seeded.user_email)
    link = mailed_link(mail, 1)
    with live_server.context():
        alice = db.session.scalar(select(User).where(User.email == seeded.user_email))
        if how == "new_password":
            users.set_password(alice, "set by the admin", actor="cli")
        else:
            users.set_disabled(alice, True, actor="cli")
        db.session.commit()
    assert _dead(browser.get(link))


def test_the_form_needs_its_csrf_token(live_server, seeded, mail):
    browser = FormBrowser(live_server.url)
    ask_for_link(browser, seeded.user_email)
    link = mailed_link(mail, 1)
    browser.get(link)
    refused = browser.http.post(link, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}, allow_redirects=False)
    assert refused.status_code == 400
    assert browser.get(link).status == 200  # nothing spent
    asked = browser.http.post(f"{live_server.url}/password/forgot", data={"username": seeded.user_email})
    assert asked.status_code == 400


@pytest.mark.parametrize("values, message, in_error", [
    ({"password": "short", "confirm": "short"}, "at least 8 characters", "password"),
    ({"password": NEW_PASSWORD, "confirm": NEW_PASSWORD + "!"}, "The two passwords differ.", "confirm"),
])
def test_a_refused_password_shows_the_form_again_and_keeps_the_link(live_server, seeded, rp_factory, mail, values,
                                                                   message, in_error):
    from test_form_focus import focused

    browser = FormBrowser(live_server.url)
    ask_for_link(browser, seeded.user_email)
    link = mailed_link(mail, 1)
    page = browser.submit(browser.get(link).form_with("password"), values)
    assert page.status == 400 and message in page.text and page.form_with("password")
    assert focused(page) == [in_error]  # the field the message is about has the focus
    page = browser.submit(page.form_with("password"), {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert page.url.endswith("/password/changed")
    assert not events(live_server, "password_reset.refused")


def test_without_a_login_the_changed_page_offers_to_sign_in(live_server, seeded, mail):
    browser = FormBrowser(live_server.url)
    ask_for_link(browser, seeded.user_email)
    page = browser.submit(browser.get(mailed_link(mail, 1)).form_with("password"),
                          {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert 'href="/account/security"' in page.text and "/login/" not in page.text


def test_switched_off_there_is_no_link_and_no_page(seeded_off):
    server, rp = seeded_off
    browser = FormBrowser(server.url)
    page = browser.get(rp.authorization_url())
    assert page.form_with("password") and "forgot-password" not in page.text
    assert browser.get("/password/forgot").status == 404


@pytest.fixture
def seeded_off(migrated_database_url):
    from fixtures.oidc import RelyingParty, seed

    server = start_server(migrated_database_url, {"password_reset.enabled": False})
    yield server, RelyingParty(server.url, seed(server).first_party)
    server.stop()


def test_a_reset_lifts_the_lockout_that_guesses_put_on_the_account(live_server, seeded, rp_factory, mail):
    """Someone guessed until the account locked: its owner, with a new password from a reset link,
    signs in at once (and the lockout is an attacker's to start again, on a password unknown)."""
    rp = rp_factory(seeded.first_party)
    guesser = FormBrowser(live_server.url)
    guesser.get(rp.authorization_url())
    assert [guesser.login(seeded.user_email, f"guess {i}").status for i in range(11)][-1] == 429
    owner = FormBrowser(live_server.url)
    owner.get(rp.authorization_url())
    assert owner.login(seeded.user_email, seeded.password).status == 429          # locked out, right password and all
    ask_for_link(owner, seeded.user_email)
    owner.submit(owner.get(mailed_link(mail, 1)).form_with("password"),
                 {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert owner.page.url.endswith("/password/changed")
    assert password_login(FormBrowser(live_server.url), rp, seeded.user_email, NEW_PASSWORD).get("code")


def test_the_new_password_is_hashed_with_no_transaction_open(live_server, seeded, mail, monkeypatch):
    """The link is read outside any transaction, and the hash comes before the user's row is held:
    on SQLite that transaction holds the database's write lock, which every other request of
    every worker waited for through argon2."""
    from fixtures.database import writes_while_hashing

    browser = FormBrowser(live_server.url)
    ask_for_link(browser, seeded.user_email)
    page = browser.get(mailed_link(mail, 1))
    while_hashing = writes_while_hashing(live_server, monkeypatch)
    browser.submit(page.form_with("password"), {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert browser.page.url.endswith("/password/changed") and while_hashing == [True]


def test_requests_past_those_in_flight_are_dropped_with_the_same_answer(live_server, seeded, mail, monkeypatch):
    """A flood from many addresses does not pile up threads: past MAX_REQUESTS_IN_FLIGHT a request
    is dropped (logged); its asker sees the same answer; once they are done, requests go through."""
    import threading

    from idp import password_reset

    monkeypatch.setattr(password_reset, "_in_flight", threading.BoundedSemaphore(1))
    password_reset._in_flight.acquire()  # one request in flight, the most there may be
    browser = FormBrowser(live_server.url)
    dropped = ask_for_link(browser, seeded.user_email)
    requests_handled()
    assert not events(live_server, "password_reset.requested") and mail.messages == []
    password_reset._in_flight.release()
    answered = ask_for_link(browser, seeded.user_email)
    assert (dropped.status, dropped.url) == (answered.status, answered.url)
    assert mailed_link(mail, 1)
    requests_handled()


def test_the_lines_of_a_requests_work_name_that_request(live_server, seeded, mail, log_stream):
    """The look-up, the link and its mail happen on a thread after the answer: their lines (the
    audit events', a failed mail's warning) still carry the request id of the form's POST."""
    from fixtures.logs import json_lines

    browser = FormBrowser(live_server.url)
    mail.refusing = True
    browser.http.headers["X-Request-ID"] = "forgot-post-1"
    ask_for_link(browser, seeded.user_email)
    requests_handled()
    lines = json_lines(log_stream)
    work = [line for line in lines if line["logger"] in ("idp.audit", "idp.password_reset")]
    assert {line["message"] for line in work if line["logger"] == "idp.audit"} == {
        "password_reset.requested", "password_reset.mail_failed"}
    assert any(line["level"] == "WARNING" for line in work)
    assert {line.get("request_id") for line in work} == {"forgot-post-1"}, work


def test_the_account_is_looked_up_once_the_answer_is_sent(live_server, seeded, mail, monkeypatch):
    """The thread's work for a real account took the CPU from the answer and made it later than an
    unknown address's: it now starts once the server has sent the answer (WSGI's close()), or
    after ANSWER_WAIT should the server never say so."""
    import threading

    from werkzeug.test import EnvironBuilder

    from idp import password_reset

    looked_up = threading.Semaphore(0)
    real_request_link = password_reset.request_link

    def request_link(*args, **kwargs):
        looked_up.release()
        return real_request_link(*args, **kwargs)

    monkeypatch.setattr(password_reset, "request_link", request_link)
    live_server.app.config["WTF_CSRF_ENABLED"] = False  # the WSGI app is called directly, without a browser

    def post():
        environ = EnvironBuilder(path="/password/forgot", method="POST", data={"username": seeded.user_email},
                                 base_url=live_server.url).get_environ()
        statuses = []
        answer = live_server.app(environ, lambda status, headers, exc_info=None: statuses.append(status))
        assert b"".join(answer) is not None and statuses[0].startswith("303")
        return answer

    answer = post()
    assert not looked_up.acquire(timeout=password_reset.ANSWER_WAIT / 2), "the look-up ran beside the answer"
    answer.close()
    assert looked_up.acquire(timeout=5)
    post()  # a server that never closes the answer: the work starts all the same
    assert looked_up.acquire(timeout=password_reset.ANSWER_WAIT + 5)
    assert len(mail.wait_for(2)) == 2
    requests_handled()


def test_a_link_whose_mail_the_relay_refused_is_dead(live_server, seeded, mail):
    """The relay read the whole message, then answered a failure: should the mail arrive all the
    same (a relay that fails after queueing it), its link does not work, and the page says how to
    ask again; the failure is audited with the requester's address."""
    browser = FormBrowser(live_server.url)
    mail.refusing = True
    ask_for_link(browser, seeded.user_email)
    requests_handled()
    [(to, message)] = mail.refused
    assert to == [seeded.user_email]
    assert _dead(browser.get(link_in(message)))
    [failed] = events(live_server, "password_reset.mail_failed")
    assert failed.ip == "127.0.0.1" and "SMTPDataError" in failed.details["reason"]
    assert mail.messages == []


def test_the_mail_is_in_the_users_language_and_carries_the_link_alone(live_server, seeded, mail):
    """Asked from a French page, the mail is French (subject encoded for the wire, body in UTF-8);
    a user who chose English gets English whatever page they asked from. The link is the only
    secret in it and is built from the issuer."""
    from idp.db import db
    from idp.models import User

    browser = FormBrowser(live_server.url)
    browser.http.headers["Accept-Language"] = "fr-FR,fr;q=0.9"
    ask_for_link(browser, seeded.user_email)
    [(to, message)] = mail.wait_for(1)
    text = message.get_body(("plain",)).get_content()
    assert to == [seeded.user_email] and message["Subject"] == "Réinitialiser votre mot de passe"
    assert message.get_content_charset() == "utf-8" and "pendant 30 minutes" in text, text
    assert link_in(message).startswith(f"{live_server.url}/password/reset/")
    assert len(re.findall(r"[A-Za-z0-9_-]{20,}", text)) == 1  # no other token-like string rides along
    with live_server.context():
        db.session.execute(update(User).where(User.email == seeded.user_email).values(locale="en"))
        db.session.commit()
    ask_for_link(browser, seeded.user_email)
    assert mail.wait_for(2)[1][1]["Subject"] == "Reset your password"
