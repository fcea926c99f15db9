"""`session.idle_timeout` (idp.session_idle): a signed-in session unused that long ends as an
expired one does; a session in use lives on, up to `session.lifetime`; its last use is stamped
at most once a minute; off by default; refused out of range; purged like an expired session.

Over HTTP against a live server. Time passes by the provider's wall clock (fixtures.oidc's
`clock`: what `utcnow` reads, nothing else mocked); the purge, a command of its own process, is given rows
whose last use is moved back instead (as tests/integration/test_purge.py does).
"""
from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from fixtures.cli import ok, refused
from fixtures.oidc import FormBrowser, RelyingParty, password_login, seed, start_server

IDLE = 600  # seconds: the stamp is then written at most once a minute (min(60, IDLE / 10))
LIFETIME = 1800


@pytest.fixture
def idle_server(migrated_database_url):
    server = start_server(migrated_database_url, {"session.idle_timeout": IDLE, "session.lifetime": LIFETIME})
    yield server
    server.stop()


def signed_in(server, seeded) -> tuple[FormBrowser, RelyingParty]:
    browser = FormBrowser(server.url)
    rp = RelyingParty(server.url, seeded.first_party)
    password_login(browser, rp, seeded.user_email, seeded.password)
    return browser, rp


def silent_login(browser: FormBrowser, rp: RelyingParty) -> dict:
    """/authorize with prompt=none: the callback's parameters (a code, or an error)."""
    browser.get(rp.authorization_url(prompt="none"))
    return browser.callback_params()


def signed_in_page(browser: FormBrowser) -> bool:
    """Whether /account/security shows its page (True) or asks to sign in again (False)."""
    page = browser.get("/account/security")
    return "data-session=" in page.text and 'name="password"' not in page.text


def last_used(server) -> list:
    """Every session's stored last use, oldest session first."""
    from idp.db import db
    from idp.models import UserSession

    with server.context():
        return list(db.session.scalars(select(UserSession.last_used_at).order_by(UserSession.created_at)))


def test_an_idle_session_ends_as_an_expired_one(idle_server, clock):
    """Unused for the timeout, the session answers prompt=none with login_required and the
    account page asks for the password; just short of it, the session answers (and is used)."""
    seeded = seed(idle_server)
    browser, rp = signed_in(idle_server, seeded)
    clock(IDLE - 1)
    assert "code" in silent_login(browser, rp)
    clock(IDLE + 1)
    assert silent_login(browser, rp)["error"] == "login_required"
    assert not signed_in_page(browser)
    assert browser.page.form_with("password")  # signs in again
    browser.login(seeded.user_email, seeded.password)
    assert signed_in_page(browser)


def test_a_session_in_use_outlives_the_idle_timeout_but_not_its_lifetime(idle_server, clock):
    """Used every 500 s (the account page, a sign-in answered from the session), the session
    lives past three idle timeouts' worth of time, and ends at its lifetime all the same."""
    seeded = seed(idle_server)
    browser, rp = signed_in(idle_server, seeded)
    for use in range(3):
        clock(500)
        assert signed_in_page(browser) if use % 2 else "code" in silent_login(browser, rp)
    clock(LIFETIME - 1500 + 1)  # 100 s after the last use, just past the lifetime
    assert silent_login(browser, rp)["error"] == "login_required"
    assert not signed_in_page(browser)


def test_the_last_use_is_stamped_at_most_once_a_minute(idle_server, clock):
    """Requests within a minute of the stored last use write nothing; the first one after it
    writes its time. The page shows it ("Last active")."""
    seeded = seed(idle_server)
    browser, _rp = signed_in(idle_server, seeded)
    [at_login] = last_used(idle_server)
    for _ in range(3):
        clock(15)
        assert signed_in_page(browser)
    assert last_used(idle_server) == [at_login]  # 45 s later: untouched
    clock(16)
    assert signed_in_page(browser)
    [stamped] = last_used(idle_server)
    assert timedelta(seconds=61) <= stamped - at_login < timedelta(seconds=75)
    assert signed_in_page(browser)
    assert last_used(idle_server) == [stamped]
    shown = re.search(r"data-last-active>([^<]+)<", browser.page.text).group(1)
    assert f"{stamped.hour % 12 or 12}:{stamped:%M}" in shown  # "Dec 5, 2026, 6:13 PM UTC"


def test_the_sessions_list_leaves_out_an_idle_session(idle_server, clock):
    """Where you're signed in: the other browser, idle too long, is no longer listed (nor can
    it be ended: it has ended); the browser in use is."""
    seeded = seed(idle_server)
    other, _ = signed_in(idle_server, seeded)
    here, _ = signed_in(idle_server, seeded)
    assert signed_in_page(here) and len(re.findall(r"<tr data-session=", here.page.text)) == 2
    clock(IDLE - 100)
    assert signed_in_page(here)
    clock(200)
    assert signed_in_page(here) and len(re.findall(r"<tr data-session=", here.page.text)) == 1
    assert not signed_in_page(other)


def test_off_by_default(live_server, clock):
    """Without `session.idle_timeout`, a session unused for most of its lifetime still answers."""
    from flask import current_app

    seeded = seed(live_server)
    browser, rp = signed_in(live_server, seeded)
    with live_server.context():
        settings = current_app.extensions["idp.settings"]
        assert settings.get("session.idle_timeout") == 0
        lifetime = settings.get("session.lifetime")
    clock(lifetime - 60)
    assert "code" in silent_login(browser, rp)
    assert signed_in_page(browser)


@pytest.mark.parametrize("value", ["30", "-1", "43201", "5m"])
def test_an_idle_timeout_out_of_range_is_refused(idp, migrated_database_url, value):
    """0 (off), or 60 s to the session's lifetime (43200 by default): anything else stops every
    command, and the server, with one line naming the setting."""
    result = refused(idp("purge", "--dry-run", database_url=migrated_database_url,
                         env={"IDP_SESSION__IDLE_TIMEOUT": value}), "IDP_SESSION__IDLE_TIMEOUT")
    if value != "5m":
        assert "must be 0 (off) or between 60 and session.lifetime" in result.stderr


def test_purge_deletes_sessions_idle_too_long(idp, live_server):
    """`idp purge` deletes a session unused for the idle timeout, as it deletes expired ones;
    with the timeout off, the same session stays."""
    from idp.db import db, utcnow
    from idp.models import UserSession

    seeded = seed(live_server)
    signed_in(live_server, seeded)
    signed_in(live_server, seeded)
    with live_server.context():
        first = db.session.scalars(select(UserSession.sid).order_by(UserSession.created_at)).first()
        db.session.execute(update(UserSession).where(UserSession.sid == first)
                           .values(last_used_at=utcnow() - timedelta(seconds=IDLE + 60)))
        db.session.commit()

    def purged(env: dict) -> int:
        result = ok(idp("purge", "--json", database_url=live_server.database_url, env=env))
        return json.loads(result.stdout)["counts"]["user_sessions"]

    assert purged({}) == 0
    assert purged({"IDP_SESSION__IDLE_TIMEOUT": str(IDLE)}) == 1
    with live_server.context():
        assert first not in db.session.scalars(select(UserSession.sid)).all()
        assert len(db.session.scalars(select(UserSession.sid)).all()) == 1


def test_the_timeout_applies_to_existing_sessions_at_once(live_server, clock):
    """The timeout is read at each use, never written into the session: a session signed in with
    it off is judged by whatever a server says now. Here two servers share the database, one with
    the timeout off and one with it set: the same cookie, unused for longer than the timeout, is
    refused by the latter and answered by the former, after which (used again) both answer."""
    seeded = seed(live_server)
    browser, _ = signed_in(live_server, seeded)
    strict = start_server(live_server.database_url, {"session.idle_timeout": IDLE})
    try:
        elsewhere = FormBrowser(strict.url)
        elsewhere.http.cookies.set("idp_session", browser.http.cookies.get("idp_session"))
        clock(IDLE + 60)
        assert not signed_in_page(elsewhere)
        assert signed_in_page(browser)                                  # off here: answered, and used
        elsewhere.http.cookies.clear()  # (the refusal began a login there, in a cookie of its own)
        elsewhere.http.cookies.set("idp_session", browser.http.cookies.get("idp_session"))
        assert signed_in_page(elsewhere)
    finally:
        strict.stop()


def test_a_sign_out_everywhere_ends_idle_sessions_too(live_server, clock):
    """A session idle too long is refused, but what ends sessions ends it all the same: the
    timeout is read at each use, so a session left unrevoked would come back to life the moment
    the timeout were raised or switched off. Two servers on one database, as above: the sign-out
    runs where the session is idle, and the server with the timeout off refuses the cookie after."""
    from idp import users
    from idp.db import db

    seeded = seed(live_server)
    browser, _ = signed_in(live_server, seeded)
    strict = start_server(live_server.database_url, {"session.idle_timeout": IDLE})
    try:
        clock(IDLE + 60)
        with strict.context():
            from idp.models import User

            user_id = db.session.scalar(select(User.id).where(User.email == seeded.user_email))
            ended = users.sign_out_everywhere(user_id)
            db.session.commit()
        assert ended.sessions == 0  # idle there: not counted as one that was signed in
        assert not signed_in_page(browser)  # and revoked: the server without the timeout refuses it too
    finally:
        strict.stop()
