"""An attacker's sweep of what decides where a browser goes and what the provider writes back.

Over real HTTP against a live server: the redirect URI is matched as an exact string (RFC 9700
2.1; RFC 6749 3.1.2.3), the loopback port of RFC 8252 7.3 being the one exception
(test_native_app_loopback.py); an unregistered one gets the 400 page, never a redirect, whatever
else the request says. What the request brings back to the client (`state`) is encoded in the
redirect and escaped in the form_post page, and no value anyone chooses (a client's name, a
user's, a factor's label, a login hint) reaches a page as markup.
"""
from __future__ import annotations

from urllib.parse import quote, urlencode

import pyotp
import pytest
import requests
from sqlalchemy import select, update

from fixtures.oidc import FormBrowser, RelyingParty, password_login, set_client, start_server

REGISTERED = "https://app.example/cb"
# Each is one character, one spelling or one trick away from REGISTERED, or plainly elsewhere.
LOOK_ALIKES = (
    "HTTPS://app.example/cb", "https://APP.example/cb", "https://app.example/CB", "https://app.example:443/cb",
    "https://app.example:8443/cb", "https://app.example/cb/", "https://app.example/cb?", "https://app.example/cb?x=1",
    "https://app.example/cb#", "https://app.example/cb#x", "https://app.example/x/../cb", "https://app.example/./cb",
    "https://app.example/%63b", "https://app.example%2Fcb", "https://app.example/cb%00", "https://app.example./cb",
    "https://app.example@evil.example/cb", "https://evil.example@app.example/cb", "https://app.example.evil.example/cb",
    "https://evil.example/https://app.example/cb", "http://app.example/cb", "htt\tps://app.example/cb",
    "https://app.example/c\nb", "https://app.example\\@evil.example/cb", "https://ａｐｐ.example/cb",
    "//evil.example/cb", "/\\evil.example/cb", "\\\\evil.example/cb", "https:evil.example/cb", "https:/evil.example",
    "javascript:alert(1)//https://app.example/cb", "data:text/html,<script>alert(1)</script>", "/cb",
    f"{REGISTERED}&redirect_uri=https://evil.example/",
)
HOSTILE = "\"'><script>alert(1)</script><img src=x onerror=alert(2)>"


@pytest.fixture
def live_server(migrated_database_url):
    # Some two hundred authorization requests from one address: beyond the anonymous logins' rate.
    server = start_server(migrated_database_url, {"ratelimit.login_posts_per_ip": "1000000 per minute"})
    yield server
    server.stop()


def _client(live_server) -> str:
    from idp.db import db
    from idp.models import Client
    from idp.security.tokens import random_token

    client_id = f"web-{random_token(6)}"
    with live_server.context():
        db.session.add(Client(client_id=client_id, secret_hash=None, name="Web", redirect_uris=[REGISTERED],
                              post_logout_redirect_uris=[f"{REGISTERED}/bye"],
                              grant_types=["authorization_code"], public=True))
        db.session.commit()
    return client_id


def _authorize(live_server, client_id: str, redirect_uri: str, **extra) -> requests.Response:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": "openid",
              "state": "st", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
              "code_challenge_method": "S256", **extra}
    return requests.get(f"{live_server.url}/authorize?{urlencode(params)}", allow_redirects=False, timeout=10)


def test_only_the_registered_redirect_uri_itself_is_ever_redirected_to(seeded, live_server):
    client_id = _client(live_server)
    assert _authorize(live_server, client_id, REGISTERED, prompt="none").headers["Location"].startswith(
        f"{REGISTERED}?error=login_required&state=st&iss=")
    # Whatever else the request asks for, and however it would have failed: the page, never the URI.
    for extra in ({}, {"prompt": "none"}, {"prompt": "none", "response_mode": "form_post"},
                  {"response_type": "token"}, {"request_uri": "urn:x"}, {"code_challenge_method": "plain"}):
        for redirect_uri in LOOK_ALIKES:
            answer = _authorize(live_server, client_id, redirect_uri, **extra)
            assert answer.status_code == 400 and "Location" not in answer.headers, (redirect_uri, extra)
            assert "evil.example" not in answer.text and "<script>alert" not in answer.text, (redirect_uri, extra)


def test_a_post_logout_redirect_uri_is_matched_exactly_too(seeded, live_server):
    client_id = _client(live_server)
    for uri in (f"{REGISTERED}/bye/", f"{REGISTERED}/BYE", f"{REGISTERED}/bye?x=1", "https://app.example:443/cb/bye",
                "https://app.example@evil.example/cb/bye", "//evil.example/", "javascript:alert(1)"):
        answer = requests.get(f"{live_server.url}/logout?" + urlencode(
            {"client_id": client_id, "post_logout_redirect_uri": uri, "state": "st"}), allow_redirects=False, timeout=10)
        assert answer.status_code == 400 and "Location" not in answer.headers, uri


def test_state_goes_back_encoded_and_escaped(seeded, live_server):
    client_id = _client(live_server)
    state = "a\r\nSet-Cookie: planted=1\r\n\r\n" + HOSTILE + "&iss=https://evil.example#x"
    answer = _authorize(live_server, client_id, REGISTERED, prompt="none", state=state)
    assert answer.status_code == 302 and "planted" not in answer.headers.get("Set-Cookie", "")
    location = answer.headers["Location"]
    assert location.startswith(f"{REGISTERED}?error=login_required&state=a%0D%0ASet-Cookie%3A+planted%3D1")
    assert location.endswith(f"&iss={quote(live_server.url, safe='')}") and location.count("&iss=") == 1
    page = _authorize(live_server, client_id, REGISTERED, prompt="none", response_mode="form_post", state=state)
    assert page.status_code == 200 and "<script>alert" not in page.text and "<img src" not in page.text
    assert 'value="a\r\nSet-Cookie: planted=1\r\n\r\n&#34;&#39;&gt;&lt;script&gt;alert(1)' in page.text


def test_names_anyone_chooses_are_shown_as_text(seeded, live_server):
    """A client's name (set by an operator), a user's (by an admin), a factor's label (by its
    user) and a login_hint (by whoever made the link) on the pages that show them."""
    from idp.db import db
    from idp.models import User

    with live_server.context():
        db.session.execute(update(User).values(name=HOSTILE))
        db.session.commit()
        user_id = db.session.scalar(select(User.id).where(User.email == seeded.user_email))
    set_client(live_server, seeded.third_party, name=HOSTILE)
    pages = []
    web = FormBrowser(live_server.url)
    pages.append(web.get(RelyingParty(live_server.url, seeded.third_party).authorization_url(login_hint=HOSTILE)))
    pages.append(web.login(seeded.user_email, seeded.password))  # the consent page, with the client's name
    assert "wants to access your account" in web.page.text
    web.consent("allow")
    security = web.get("/account/security")
    enrol = web.submit([form for form in security.forms() if form["action"].endswith("/add/totp")][0])
    secret = enrol.find(r"<code>([A-Z2-7 ]+)</code>").replace(" ", "")
    web.submit(enrol.form_with("code"), {"code": pyotp.TOTP(secret).now(), "label": HOSTILE})
    pages.append(web.get("/account/security"))
    assert "&lt;script&gt;alert(1)" in pages[-1].text  # the label is there, as text
    admin = FormBrowser(live_server.url)
    password_login(admin, RelyingParty(live_server.url, seeded.first_party), seeded.admin_email, seeded.password)
    for path in ("/admin/users", f"/admin/users?q={quote(HOSTILE)}", f"/admin/users/{user_id}", "/admin/audit",
                 f"/admin/users/{user_id}/password",
                 f"/admin/users/{user_id}/applications/{seeded.third_party['client_id']}/remove"):
        pages.append(admin.get(path))
    for page in pages:
        assert page.status == 200, (page.url, page.status)
        assert "<script>alert" not in page.text and "<img src=x" not in page.text, page.url
