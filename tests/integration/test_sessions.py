"""Where a user is signed in: the security page lists the live sessions, ends one (with the
tokens obtained through it) or all of them; the admin's user page lists them and signs the
user out everywhere; `idp user sign-out` does it from the command line (idp.sessions,
idp.users.sign_out).

Over HTTP against a live server, two browsers with User-Agents of their own, an independent
OIDC client for the tokens.
"""
from __future__ import annotations

import re
import time
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from fixtures.cli import Db, ok, refused
from fixtures.oidc import FormBrowser, password_login

FIREFOX_ON_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME_ON_WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                     "Chrome/126.0.0.0 Safari/537.36")


def signed_in(live_server, seeded, rp_factory, email: str, agent: str = FIREFOX_ON_LINUX):
    """A browser sending `agent`, signed in as `email` through the first-party client, and that
    login's tokens (with a refresh token)."""
    browser = FormBrowser(live_server.url)
    browser.http.headers["User-Agent"] = agent
    rp = rp_factory(seeded.first_party)
    password_login(browser, rp, email, seeded.password, scope="openid email profile offline_access")
    return browser, rp, rp.exchange(browser.last_redirect)


def sessions_on(page) -> dict[str, str]:
    """sid -> the row's HTML, for each session the page lists."""
    return dict(re.findall(r'<tr data-session="([^"]+)"(.*?)</tr>', page.text, re.S))


def events(live_server, name: str) -> list:
    from idp.db import db
    from idp.models import AuditEvent

    with live_server.context():
        return db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)).all()


def refresh_error(rp, tokens: dict) -> str | None:
    answer = rp.token_request({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    return answer.json().get("error") if answer.status_code == 400 else None


def silent_login(browser: FormBrowser, rp) -> dict:
    """/authorize with prompt=none: the callback's parameters (a code, or login_required)."""
    browser.get(rp.authorization_url(prompt="none"))
    return browser.callback_params()


def end_form(page, sid: str) -> dict:
    return next(f for f in page.forms() if f["action"].endswith(f"/sessions/{sid}/end"))


def user_id_of(live_server, email: str) -> int:
    from idp.db import db
    from idp.models import User

    with live_server.context():
        return db.session.scalar(select(User.id).where(User.email == email))


# ---------------------------------------------------------------- the user's own page

def test_a_user_sees_both_browsers_and_ends_the_other_one(live_server, seeded, rp_factory):
    here, rp, here_tokens = signed_in(live_server, seeded, rp_factory, seeded.user_email)
    there, _, there_tokens = signed_in(live_server, seeded, rp_factory, seeded.user_email, CHROME_ON_WINDOWS)
    page = here.get("/account/security")
    listed = sessions_on(page)
    assert len(listed) == 2, page.text
    [mine] = [sid for sid, row in listed.items() if "data-this-browser" in row]
    [other] = [sid for sid in listed if sid != mine]
    assert "Firefox on Linux" in listed[mine] and "this browser" in listed[mine]
    assert "Chrome on Windows" in listed[other] and "127.0.0.1" in listed[other]
    assert f"/sessions/{mine}/end" not in page.text          # this browser signs out with the usual link

    page = here.submit(end_form(page, other))
    assert page.status == 200 and "/account/security" in page.url and "That browser is signed out" in page.text
    assert list(sessions_on(page)) == [mine]
    assert silent_login(there, rp)["error"] == "login_required"                 # the other browser signs in again
    assert refresh_error(rp, there_tokens) == "invalid_grant" and rp.userinfo(there_tokens["access_token"]).status_code == 401
    assert "code" in silent_login(here, rp)                                      # this one stays signed in
    assert refresh_error(rp, here_tokens) is None
    [event] = events(live_server, "session.ended")
    user_id = user_id_of(live_server, seeded.user_email)
    assert event.actor == seeded.user_email and event.actor_id == event.subject_id == user_id
    assert event.details["by"] == "self" and event.details["sid"] == other and event.details["tokens_revoked"] == 1

    csrf = page.form_with("csrf_token")["fields"]["csrf_token"]
    again = here.http.post(f"{live_server.url}/account/security/sessions/{other}/end", data={"csrf_token": csrf},
                           allow_redirects=False)
    assert again.status_code == 404 and len(events(live_server, "session.ended")) == 1   # ended already


def test_a_form_naming_this_browsers_own_session_signs_it_out(live_server, seeded, rp_factory):
    here, rp, tokens = signed_in(live_server, seeded, rp_factory, seeded.user_email)
    page = here.get("/account/security")
    [mine] = sessions_on(page)
    csrf = page.form_with("csrf_token")["fields"]["csrf_token"]
    page = here.submit({"action": f"{live_server.url}/account/security/sessions/{mine}/end",
                        "fields": {"csrf_token": csrf}})
    assert page.status == 200 and "You are signed out" in page.text
    assert silent_login(here, rp)["error"] == "login_required" and refresh_error(rp, tokens) == "invalid_grant"
    assert len(events(live_server, "session.ended")) == 1 and events(live_server, "login.signed_out") == []


def test_signing_out_withdraws_the_sessions_codes_and_tokens_but_offline_access(live_server, seeded, rp_factory):
    """/logout: a code issued to this session and not yet redeemed can no longer be, a token
    without offline access stops working; the refresh token granted `offline_access` (access
    "even when the End-User is not logged in", OIDC Core 11) and the other browser's stay."""
    here, rp, offline = signed_in(live_server, seeded, rp_factory, seeded.user_email)
    there, _, elsewhere = signed_in(live_server, seeded, rp_factory, seeded.user_email, CHROME_ON_WINDOWS)
    online = rp.exchange(here.get(rp.authorization_url(prompt="none")) and here.last_redirect)
    assert "refresh_token" not in online
    pending = silent_login(here, rp)["code"]
    here.submit(here.get("/logout").form_with("csrf_token"))
    assert silent_login(here, rp)["error"] == "login_required"
    late = rp.token_request({"grant_type": "authorization_code", "code": pending, "code_verifier": rp.verifier,
                             "redirect_uri": rp.client["redirect_uri"]})
    assert (late.status_code, late.json()["error"]) == (400, "invalid_grant")
    assert rp.userinfo(online["access_token"]).status_code == 401
    # The access token issued beside the refresh token stays too, until it expires (docs/relying-parties.md).
    assert rp.userinfo(offline["access_token"]).status_code == 200
    assert refresh_error(rp, offline) is None
    assert rp.userinfo(elsewhere["access_token"]).status_code == 200 and refresh_error(rp, elsewhere) is None
    assert silent_login(there, rp).get("code")
    assert len(events(live_server, "login.signed_out")) == 1


def test_someone_else_signing_in_on_the_browser_withdraws_what_the_first_user_was_signed_in_for(
        live_server, seeded, rp_factory):
    """Another account signs in on this browser (prompt=login): the first user's session ends as
    at a sign-out, its code not yet redeemed and its online token with it; the same user signing
    in again keeps what their applications hold."""
    here, rp, offline = signed_in(live_server, seeded, rp_factory, seeded.user_email)
    before = rp.exchange(here.get(rp.authorization_url(prompt="none")) and here.last_redirect)
    here.get(rp.authorization_url(prompt="login"))  # the same user again: nothing withdrawn
    here.login(seeded.user_email, seeded.password)
    assert rp.userinfo(before["access_token"]).status_code == 200
    online = rp.exchange(here.get(rp.authorization_url(prompt="none")) and here.last_redirect)
    pending = silent_login(here, rp)["code"]
    password_login(here, rp, seeded.admin_email, seeded.password, prompt="login")
    late = rp.token_request({"grant_type": "authorization_code", "code": pending, "code_verifier": rp.verifier,
                             "redirect_uri": rp.client["redirect_uri"]})
    assert (late.status_code, late.json()["error"]) == (400, "invalid_grant")
    assert rp.userinfo(online["access_token"]).status_code == 401
    assert refresh_error(rp, offline) is None  # offline access outlives the session (OIDC Core 11)


def test_a_login_waiting_on_consent_ends_with_its_session(live_server, seeded, rp_factory):
    """The other browser had a third-party app's consent page open, answered by its session:
    ending the session leaves nothing to allow."""
    here, _, _ = signed_in(live_server, seeded, rp_factory, seeded.user_email)
    there, _, _ = signed_in(live_server, seeded, rp_factory, seeded.user_email, CHROME_ON_WINDOWS)
    third = rp_factory(seeded.third_party)
    assert there.get(third.authorization_url()).form_with("action")
    page = here.get("/account/security")
    [other] = [sid for sid, row in sessions_on(page).items() if "data-this-browser" not in row]
    here.submit(end_form(page, other))
    page = there.consent("allow")
    assert there.last_redirect is None and "/login/expired" in page.url


def test_sign_out_everywhere_ends_every_session_and_token(live_server, seeded, rp_factory):
    here, rp, here_tokens = signed_in(live_server, seeded, rp_factory, seeded.user_email)
    there, _, there_tokens = signed_in(live_server, seeded, rp_factory, seeded.user_email, CHROME_ON_WINDOWS)
    confirm = here.get("/account/security/sign-out-everywhere")
    assert confirm.status == 200
    page = here.submit(next(f for f in confirm.forms() if f["action"].endswith("/sign-out-everywhere")))
    assert page.status == 200 and "You are signed out" in page.text and "signed out everywhere" in page.text
    for browser in (here, there):
        assert silent_login(browser, rp)["error"] == "login_required"
    assert refresh_error(rp, here_tokens) == refresh_error(rp, there_tokens) == "invalid_grant"
    [event] = events(live_server, "user.signed_out_everywhere")
    assert event.actor == seeded.user_email and event.details == {
        "by": "self", "sessions_ended": 2, "tokens_revoked": 2}
    assert events(live_server, "login.signed_out") == []        # one event says it all


def test_another_users_session_cannot_be_ended(live_server, seeded, rp_factory):
    mallory, _, _ = signed_in(live_server, seeded, rp_factory, seeded.user_email)
    victim, rp, tokens = signed_in(live_server, seeded, rp_factory, seeded.admin_email)
    [victim_sid] = sessions_on(victim.get("/account/security"))
    csrf = mallory.get("/account/security").form_with("csrf_token")["fields"]["csrf_token"]
    for sid in (victim_sid, "made-up", "x" * 65, "a%00b", "..%2F..%2Fsecurity"):
        answer = mallory.http.post(f"{live_server.url}/account/security/sessions/{sid}/end",
                                   data={"csrf_token": csrf}, allow_redirects=False)
        assert answer.status_code == 404, (sid, answer.status_code)
    assert "code" in silent_login(victim, rp) and refresh_error(rp, tokens) is None
    assert events(live_server, "session.ended") == []


def test_ending_sessions_needs_a_csrf_token(live_server, seeded, rp_factory):
    here, _, _ = signed_in(live_server, seeded, rp_factory, seeded.user_email)
    there, rp, _ = signed_in(live_server, seeded, rp_factory, seeded.user_email, CHROME_ON_WINDOWS)
    page = here.get("/account/security")
    [other] = [sid for sid, row in sessions_on(page).items() if "data-this-browser" not in row]
    for path in (f"/account/security/sessions/{other}/end", "/account/security/sign-out-everywhere"):
        assert here.http.post(f"{live_server.url}{path}", allow_redirects=False).status_code == 400
    assert len(sessions_on(here.get("/account/security"))) == 2 and "code" in silent_login(there, rp)
    assert events(live_server, "session.ended") == events(live_server, "user.signed_out_everywhere") == []


def test_a_session_keeps_a_sane_description_of_any_user_agent(live_server, seeded, rp_factory):
    """A header is anyone's to write: control and format characters go, a long one is cut."""
    agent = "Evil\x1b[31m\x7fbrowser\t" + "x" * 5000
    browser, _, _ = signed_in(live_server, seeded, rp_factory, seeded.user_email, agent)
    page = browser.get("/account/security")
    assert page.status == 200 and "Evil[31mbrowser" in page.text
    from idp.db import db
    from idp.models import UserSession

    with live_server.context():
        stored = db.session.scalar(select(UserSession.user_agent))
    assert stored.startswith("Evil[31mbrowser x") and len(stored) == 255


# ---------------------------------------------------------------- the admin's user page

def test_an_admin_sees_a_users_sessions_and_signs_them_out_everywhere(live_server, seeded, rp_factory):
    admin, _, _ = signed_in(live_server, seeded, rp_factory, seeded.admin_email)
    victim, rp, tokens = signed_in(live_server, seeded, rp_factory, seeded.user_email, CHROME_ON_WINDOWS)
    user_id = user_id_of(live_server, seeded.user_email)
    page = admin.get(f"/admin/users/{user_id}")
    listed = sessions_on(page)
    assert len(listed) == 1 and "Chrome on Windows" in next(iter(listed.values()))
    confirm = admin.get(f"/admin/users/{user_id}/sign-out")
    assert confirm.status == 200 and seeded.user_email in confirm.text
    page = admin.submit(next(f for f in confirm.forms() if f["action"].endswith("/sign-out")))
    assert page.status == 200 and "signed out everywhere" in page.text and sessions_on(page) == {}
    assert silent_login(victim, rp)["error"] == "login_required" and refresh_error(rp, tokens) == "invalid_grant"
    assert "code" in silent_login(admin, rp)                     # the admin's own session stays
    [event] = events(live_server, "user.signed_out_everywhere")
    assert (event.actor, event.subject_id) == (seeded.admin_email, user_id)
    assert event.details == {"by": "admin", "sessions_ended": 1, "tokens_revoked": 1}


def test_an_admins_stale_login_signs_in_again_before_signing_anyone_out(live_server, seeded, rp_factory):
    from idp.db import db
    from idp.models import UserSession

    admin, _, _ = signed_in(live_server, seeded, rp_factory, seeded.admin_email)
    user_id = user_id_of(live_server, seeded.user_email)
    form = next(f for f in admin.get(f"/admin/users/{user_id}/sign-out").forms() if f["action"].endswith("/sign-out"))
    with live_server.context():
        for row in db.session.scalars(select(UserSession)).all():
            row.login_started_at -= timedelta(minutes=6)
        db.session.commit()
    page = admin.submit(form)
    assert "/login/" in page.url and page.form_with("password")
    assert events(live_server, "user.signed_out_everywhere") == []


def test_an_admin_of_another_organization_sees_and_ends_nothing(live_server, seeded, rp_factory):
    from idp.db import db
    from idp.models import Organization, User

    victim, rp, tokens = signed_in(live_server, seeded, rp_factory, seeded.user_email)
    with live_server.context():
        other = Organization(name="Other")
        db.session.add(other)
        db.session.flush()
        passwords = live_server.app.extensions["idp.passwords"]
        db.session.add(User(public_id="other-admin", org_id=other.id, email="boss@other.test", role="admin",
                            password_hash=passwords.hash(seeded.password)))
        db.session.commit()
    stranger, _, _ = signed_in(live_server, seeded, rp_factory, "boss@other.test")
    user_id = user_id_of(live_server, seeded.user_email)
    for path in (f"/admin/users/{user_id}", f"/admin/users/{user_id}/sign-out"):
        assert stranger.http.get(f"{live_server.url}{path}", allow_redirects=False).status_code == 404
    csrf = stranger.get("/account/security").form_with("csrf_token")["fields"]["csrf_token"]
    answer = stranger.http.post(f"{live_server.url}/admin/users/{user_id}/sign-out", allow_redirects=False,
                                data={"csrf_token": csrf, "confirm": "1"})
    assert answer.status_code == 404
    assert "code" in silent_login(victim, rp) and refresh_error(rp, tokens) is None
    assert events(live_server, "user.signed_out_everywhere") == []


# ---------------------------------------------------------------- idp user sign-out

def test_idp_user_sign_out(url, idp):
    from idp.db import utcnow
    from idp.models import Organization, User, UserSession

    ok(idp("org", "add", "Acme", database_url=url))
    ok(idp("user", "add", "--org", "Acme", "--email", "alice@example.com", "--password-stdin", database_url=url,
           input="correct horse battery\n"))
    db = Db(url)
    [alice] = db.rows(User)
    now = utcnow()
    with db.engine.begin() as conn:
        for n in range(2):
            conn.execute(UserSession.__table__.insert().values(
                id=uuid.uuid4().hex, sid=f"sid-{n}", user_id=alice["id"], auth_time=0, amr=["pwd"], acr="0",
                created_at=now, login_started_at=now, expires_at=now + timedelta(hours=1)))
    result = ok(idp("user", "sign-out", "--email", " Alice@Example.com ", database_url=url))
    assert "alice@example.com is signed out everywhere; 2 session(s) ended, 0 token(s) revoked" in result.stdout
    assert all(row["revoked_at"] is not None for row in db.rows(UserSession))
    [event] = db.events("user.signed_out_everywhere")
    assert event["actor"] == "cli" and event["details"] == {"by": "cli", "sessions_ended": 2, "tokens_revoked": 0}
    assert [org["name"] for org in db.rows(Organization)] == ["Acme"]


@pytest.mark.parametrize("email, message", [("nobody@example.com", "no user"), ("not an address", "e-mail")])
def test_idp_user_sign_out_refuses_bad_input(sqlite_only_url, idp, email, message):
    refused(idp("user", "sign-out", "--email", email, database_url=sqlite_only_url), message)
    assert Db(sqlite_only_url).events("user.signed_out_everywhere") == []


def test_with_an_https_issuer_the_session_cookie_is_secure_and_bound_to_the_host(migrated_database_url):
    """`__Host-`: a browser keeps the cookie only over HTTPS, for this host alone (Path=/, no
    Domain), so a sibling subdomain cannot plant a session of its choosing (cookie tossing)."""
    import hashlib
    from base64 import urlsafe_b64encode
    from urllib.parse import urlencode

    import requests

    from fixtures.oidc import seed, start_server

    server = start_server(migrated_database_url, {"server.issuer": "https://id.example.test"})
    try:
        client = seed(server).first_party
        verifier = "v" * 48
        challenge = urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        query = urlencode({"response_type": "code", "client_id": client["client_id"], "scope": "openid",
                           "redirect_uri": client["redirect_uri"], "state": "s", "nonce": "n",
                           "code_challenge": challenge, "code_challenge_method": "S256"})
        response = requests.get(f"http://127.0.0.1:{server._server.server_address[1]}/authorize?{query}",
                                allow_redirects=False, timeout=10)
        cookie = response.headers["Set-Cookie"]
        assert cookie.startswith("__Host-idp_session=")
        attributes = [part.strip().lower() for part in cookie.split(";")[1:]]
        assert {"secure", "httponly", "path=/", "samesite=lax"} <= set(attributes)
        assert not any(part.startswith("domain") for part in attributes)
    finally:
        server.stop()


@pytest.mark.parametrize("configured", ["__Secure-idp", "__secure-idp"])
def test_a_configured_secure_prefix_still_binds_the_cookie_to_the_host(migrated_database_url, configured):
    """A `__Secure-` name may be set with a Domain by a sibling subdomain over HTTPS (cookie
    tossing): with an https issuer the provider's cookie is `__Host-` whatever the configured
    prefix (docs/operations.md)."""
    import requests

    from fixtures.oidc import start_server

    server = start_server(migrated_database_url, {"server.issuer": "https://id.example.test",
                                                  "session.cookie_name": configured})
    try:
        with server.context():
            from flask import current_app

            name = current_app.config["SESSION_COOKIE_NAME"]
        assert name == "__Host-idp"
        response = requests.get(f"http://127.0.0.1:{server._server.server_address[1]}/login/expired",
                                allow_redirects=False, timeout=10)
        assert "__Secure-" not in response.headers.get("Set-Cookie", "")
    finally:
        server.stop()


def test_a_session_lasts_its_configured_lifetime_and_no_longer(live_server, seeded, rp_factory):
    """`session.lifetime` (config/default.toml; no idle timeout): the row ends that long after the
    login, the cookie is kept as long, and past its end the session answers nothing."""
    from sqlalchemy import update

    from idp.db import db, utcnow
    from idp.models import UserSession

    browser, rp, _ = signed_in(live_server, seeded, rp_factory, seeded.user_email)
    with live_server.context():
        from flask import current_app

        lifetime = int(current_app.extensions["idp.settings"].get("session.lifetime", 43200))
        [row] = db.session.scalars(select(UserSession)).all()
        assert abs((row.expires_at - row.created_at).total_seconds() - lifetime) < 2
    cookie = next(c for c in browser.http.cookies if c.name == "idp_session")
    assert cookie.expires is not None and abs(cookie.expires - (time.time() + lifetime)) < 60
    assert "code" in silent_login(browser, rp)
    with live_server.context():
        db.session.execute(update(UserSession).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    assert silent_login(browser, rp)["error"] == "login_required"
    assert browser.get("/account/security").form_with("password")  # signs in again


def test_a_step_up_rotates_the_session_and_the_cookie(live_server, seeded, rp_factory):
    """Signed in on the password alone, the user is asked for more (acr_values): a session that
    is not enough answers no step (the login starts over, password first) and the login adds a
    second factor. That login is a new session, with a new cookie value and sid; the cookie
    captured before answers nothing any more."""
    import html

    import pyotp

    from fixtures.totp import MFA

    browser, rp, tokens = signed_in(live_server, seeded, rp_factory, seeded.user_email)
    before_sid = rp.validate_id_token(tokens["id_token"])["sid"]
    captured = browser.http.cookies.get("idp_session")
    browser.get(rp.authorization_url(acr_values=MFA))
    page = browser.login(seeded.user_email, seeded.password)
    choose = [f for f in page.forms() if f["action"].endswith("/factor/totp")]
    if choose:
        page = browser.submit(choose[0])
    secret = page.find(r'<code>([A-Z2-7 ]+)</code>').replace(" ", "")
    page = browser.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).now(), "label": "Phone"})
    assert html.unescape(page.find(r"<pre class=\"codes\" data-recovery-codes>([^<]+)</pre>") or "")
    browser.submit(page.forms()[0])
    stepped_up = rp.exchange(browser.last_redirect)
    claims = rp.validate_id_token(stepped_up["id_token"])
    assert claims["acr"] == MFA and claims["sid"] != before_sid
    assert browser.http.cookies.get("idp_session") != captured
    thief = FormBrowser(live_server.url)
    thief.http.cookies.set("idp_session", captured)
    assert silent_login(thief, rp)["error"] == "login_required"
    assert "code" in silent_login(browser, rp)
