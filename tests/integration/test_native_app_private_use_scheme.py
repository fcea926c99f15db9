"""RFC 8252 7.1: a native app's private-use URI scheme redirect URI, `com.example.app:/cb`.

Registration takes one from a public client only, and only a reverse domain name in lower case
followed by one slash and a path (idp.oidc.private_use_schemes); the rest is refused in one line,
nothing written. Over HTTP: the code flow ends in a 302 to the app's scheme with `code`, `state`
and `iss`, the code is exchanged with PKCE by Authlib's client, errors go there too, form_post
(which no app can receive) is refused, and a remembered consent lets nothing through silently
(any app on the device may claim the scheme: RFC 8252 8.6). In Chromium: test_form_action.py.
"""
from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from fixtures.cli import ok, refused
from fixtures.oidc import FormBrowser, RelyingParty, password_login

from idp.models import Client

APP_URI = "com.example.app:/cb"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"  # RFC 7636 appendix B's


# ---------------------------------------------------------------- registration (`idp client add`)

@pytest.mark.parametrize("uri", ["com.example.app:/oauth2redirect", "com.example.app:/", "io.github.my-app2:/cb",
                                 "com.example.app:/cb?from=app&x=%20", "org.xn--bcher-kva.app:/cb"])
def test_a_public_client_registers_a_reverse_domain_private_use_scheme(sqlite_only_url, idp, db, uri):
    ok(idp("client", "add", "--name", "App", "--public", "--redirect-uri", uri,
           "--post-logout-redirect-uri", uri, database_url=sqlite_only_url))
    row = db.rows(Client)[0]
    assert (row["redirect_uris"], row["post_logout_redirect_uris"]) == ([uri], [uri])


@pytest.mark.parametrize(("uri", "why"), [
    ("myapp:/cb", "domain name of the app's, reversed"),                 # no period
    ("Com.Example.App:/cb", "lower case"),                               # matched exactly, as the app sends it
    ("com.example.app://cb", "no authority"),                            # RFC 8252 7.1: one slash
    ("com.example.app:cb", "path must begin with a slash"),
    ("com.example.app:/cb#x", "fragment"),
    ("com.example.app:/cb#", "fragment"),
    ("com..app:/cb", "reversed"),
    ("com.-app:/cb", "reversed"),
    ("x-apple.systempreferences:/x", "reversed"),                       # macOS opens its settings
    ("c0m.example:/cb", "reversed"),                                     # the first label is a top-level domain
    ("com.example+app:/cb", "reversed"),
    ("com.example.app:/c%zz", "unescaped"),
    ("com.example.app:/c<b>", "unescaped"),
    ("com.example.app:/c\u00e9", "unescaped"),
    ("javascript:alert(1)", "browsers handle themselves"),
    ("JavaScript:alert(1)", "browsers handle themselves"),
    ("data:text/html,x", "browsers handle themselves"),
    ("file:///etc/passwd", "browsers handle themselves"),
    ("vbscript:msgbox", "browsers handle themselves"),
    ("blob:/x", "browsers handle themselves"),
    ("about:blank", "browsers handle themselves"),
    ("ws://app.example/cb", "browsers handle themselves"),
    ("ftp://app.example/cb", "browsers handle themselves"),
    ("mailto:a@example.com", "browsers handle themselves"),
    ("intent://cb#Intent;scheme=x;end", "browsers handle themselves"),
    ("com.example.app:/c b", "spaces"),
    ("com.example.app:/c\x1b]0;x", "control characters"),
])
def test_registration_refuses_other_private_use_uris_in_one_line(sqlite_only_url, idp, db, uri, why):
    before = db.counts()
    for option in ("--redirect-uri", "--post-logout-redirect-uri"):
        args = ("--redirect-uri", uri) if option == "--redirect-uri" else (
            "--redirect-uri", APP_URI, "--post-logout-redirect-uri", uri)
        refused(idp("client", "add", "--name", "App", "--public", *args, database_url=sqlite_only_url), why)
    assert db.counts() == before


def test_a_confidential_client_registers_no_private_use_scheme(sqlite_only_url, idp, db):
    before = db.counts()
    refused(idp("client", "add", "--name", "App", "--redirect-uri", APP_URI, database_url=sqlite_only_url),
            "http(s)", "--public")
    refused(idp("client", "add", "--name", "App", "--redirect-uri", "https://app.example/cb",
                "--post-logout-redirect-uri", APP_URI, database_url=sqlite_only_url), "--public")
    # The URIs only a server answers stay http(s), whatever the client.
    refused(idp("client", "add", "--name", "App", "--public", "--redirect-uri", APP_URI,
                "--frontchannel-logout-uri", APP_URI, database_url=sqlite_only_url), "http(s)")
    assert db.counts() == before


def test_client_update_checks_a_private_use_scheme_as_add_does(url, idp, db):
    import json

    public = json.loads(ok(idp("client", "add", "--name", "App", "--public", "--redirect-uri",
                               "http://127.0.0.1/cb", database_url=url)).stdout)["client_id"]
    confidential = json.loads(ok(idp("client", "add", "--name", "Web", "--redirect-uri", "https://a.example/cb",
                                     database_url=url)).stdout)["client_id"]
    ok(idp("client", "update", public, "--redirect-uri", APP_URI, database_url=url))
    refused(idp("client", "update", public, "--redirect-uri", "com.example.app://cb", database_url=url),
            "no authority")
    refused(idp("client", "update", confidential, "--redirect-uri", APP_URI, database_url=url), "--public")
    uris = {row["client_id"]: row["redirect_uris"] for row in db.rows(Client)}
    assert uris == {public: [APP_URI], confidential: ["https://a.example/cb"]}


# ---------------------------------------------------------------- over HTTP

def _app_client(live_server, *registered: str, first_party: bool = False) -> str:
    """A public client registered as `idp client add --public` registers it."""
    from idp import clients
    from idp.db import db

    with live_server.context():
        row, _secret = clients.register(clients.Registration(
            name="Mobile App", redirect_uris=registered or (APP_URI,), post_logout_redirect_uris=(APP_URI,),
            public=True, first_party=first_party))
        db.session.commit()
        return row.client_id


def _rp(live_server, client_id: str, redirect_uri: str = APP_URI) -> RelyingParty:
    return RelyingParty(live_server.url, {"client_id": client_id, "client_secret": None, "redirect_uri": redirect_uri})


def _query(location: str) -> dict:
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


def test_the_code_goes_to_the_apps_scheme_and_is_exchanged_with_pkce(seeded, live_server):
    rp = _rp(live_server, _app_client(live_server))
    web = FormBrowser(live_server.url)
    params = password_login(web, rp, seeded.user_email, seeded.password)
    assert web.last_redirect.startswith(f"{APP_URI}?code=")
    assert params["state"] == rp.state and params["iss"] == live_server.url
    tokens = rp.exchange(web.last_redirect)  # Authlib's client: client_id in the body, code_verifier
    assert rp.validate_id_token(tokens["id_token"])["sub"]
    assert rp.userinfo(tokens["access_token"]).status_code == 200


def test_the_code_is_not_exchanged_without_its_verifier(seeded, live_server):
    rp = _rp(live_server, _app_client(live_server))
    web = FormBrowser(live_server.url)
    code = password_login(web, rp, seeded.user_email, seeded.password)["code"]
    answer = rp.token_request({"grant_type": "authorization_code", "code": code, "redirect_uri": APP_URI})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"


def _authorize(live_server, client_id: str, redirect_uri: str = APP_URI, **params) -> requests.Response:
    query = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": "openid",
             "state": "s1", "code_challenge": CHALLENGE, "code_challenge_method": "S256", **params}
    return requests.get(f"{live_server.url}/authorize", params={k: v for k, v in query.items() if v is not None},
                        allow_redirects=False, timeout=10)


@pytest.mark.parametrize(("params", "error"), [
    ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),  # PKCE required (public)
    ({"code_challenge_method": "plain", "code_challenge": "x" * 43}, "invalid_request"),  # S256 only
    ({"response_mode": "form_post"}, "invalid_request"),      # no POST reaches an app
    ({"response_mode": "fragment"}, "invalid_request"),       # not offered by this provider
    ({"prompt": "none"}, "login_required"),
])
def test_errors_are_redirected_to_the_apps_scheme(seeded, live_server, params, error):
    answer = _authorize(live_server, _app_client(live_server), **params)
    assert answer.status_code in (302, 303), answer.text[:500]
    location = answer.headers["Location"]
    assert location.startswith(f"{APP_URI}?") and _query(location)["error"] == error, location
    assert _query(location)["state"] == "s1" and _query(location)["iss"] == live_server.url


def test_form_post_names_why_it_cannot_reach_the_app(seeded, live_server):
    location = _authorize(live_server, _app_client(live_server), response_mode="form_post").headers["Location"]
    assert "form_post" in _query(location)["error_description"]
    # The same request pushed (RFC 9126) is refused at /oauth/par, as JSON.
    client_id = _app_client(live_server)
    answer = requests.post(f"{live_server.url}/oauth/par", timeout=10, data={
        "client_id": client_id, "response_type": "code", "redirect_uri": APP_URI, "scope": "openid",
        "code_challenge": CHALLENGE, "code_challenge_method": "S256", "response_mode": "form_post"})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request", answer.text
    assert "form_post" in answer.json()["error_description"]


def test_a_form_post_request_with_the_single_registered_uri_implied_is_refused_too(seeded, live_server):
    """No redirect_uri sent (OAuth 2.0 without openid): the one registered is the one used."""
    location = _authorize(live_server, _app_client(live_server), redirect_uri=None, scope="profile",
                          response_mode="form_post").headers["Location"]
    assert location.startswith(f"{APP_URI}?") and _query(location)["error"] == "invalid_request"


def test_a_private_use_uri_is_matched_exactly(seeded, live_server):
    client_id = _app_client(live_server, APP_URI, "com.example.app:/cb?app=1")
    refused_uris = ("com.example.app:/cb/", "com.example.app:/CB", "COM.example.app:/cb", "com.example.app://cb",
                    "com.example.app:/cb?app=2", "com.example.app:/cb?x=1", "com.example.app.evil:/cb",
                    "com.example.app:cb", "com.example.app:/cb#x", "com.example.app:/c%62")
    for redirect_uri in refused_uris:
        answer = _authorize(live_server, client_id, redirect_uri=redirect_uri)
        assert answer.status_code == 400 and "Location" not in answer.headers, redirect_uri
    for redirect_uri in (APP_URI, "com.example.app:/cb?app=1"):
        answer = _authorize(live_server, client_id, redirect_uri=redirect_uri)
        assert answer.status_code in (302, 303) and answer.headers["Location"].startswith("/"), redirect_uri


def test_a_remembered_consent_never_lets_the_app_through_silently(seeded, live_server):
    """RFC 8252 8.6: any app may claim com.example.app: and start a request with this client_id."""
    rp = _rp(live_server, _app_client(live_server))
    web = FormBrowser(live_server.url)
    assert "code" in password_login(web, rp, seeded.user_email, seeded.password)  # consented once

    for _login in range(2):
        web.get(rp.authorization_url())
        assert web.last_redirect is None and web.page.status == 200
        assert web.page.form_with("action") and "data-signed-in-as" in web.page.text  # the consent page again
        web.consent("allow")
        assert web.last_redirect.startswith(f"{APP_URI}?code=")

    web.get(rp.authorization_url(prompt="none"))
    assert web.last_redirect.startswith(f"{APP_URI}?")
    assert web.callback_params()["error"] == "consent_required" and web.callback_params()["state"] == rp.state

    # No redirect_uri sent (OAuth 2.0 without openid): the one registered is where the code would go.
    implied = {"response_type": "code", "client_id": rp.client["client_id"], "scope": "profile", "state": "s2",
               "code_challenge": CHALLENGE, "code_challenge_method": "S256", "prompt": "none"}
    web.get(f"/authorize?{urlencode(implied)}")
    assert web.last_redirect.startswith(f"{APP_URI}?") and web.callback_params()["error"] == "consent_required"


def test_a_refusal_at_the_consent_page_goes_to_the_app(seeded, live_server):
    rp = _rp(live_server, _app_client(live_server))
    web = FormBrowser(live_server.url)
    web.get(rp.authorization_url())
    web.login(seeded.user_email, seeded.password)
    web.consent("deny")
    assert web.last_redirect.startswith(f"{APP_URI}?")
    params = web.callback_params()
    assert (params["error"], params["state"], params["iss"]) == ("access_denied", rp.state, live_server.url)


def test_rp_initiated_logout_returns_to_the_app(seeded, live_server):
    rp = _rp(live_server, _app_client(live_server))
    web = FormBrowser(live_server.url)
    password_login(web, rp, seeded.user_email, seeded.password)
    id_token = rp.exchange(web.last_redirect)["id_token"]
    web.get(f"{rp.metadata['end_session_endpoint']}?id_token_hint={id_token}"
            f"&post_logout_redirect_uri={APP_URI}&state=bye")
    assert web.last_redirect == f"{APP_URI}?state=bye"


@pytest.mark.parametrize("signed_in", [True, False])
def test_a_logout_without_id_token_hint_never_goes_to_the_apps_scheme(seeded, live_server, signed_in):
    """RP-Initiated Logout 1.0, section 3: without an id_token_hint the post-logout redirect is not
    made, the client's registered private-use URI included: anyone can write such a link (its
    client_id is public), and it would open whichever app claims the scheme. Signed in, the page
    asks first, and its confirmation ends on our page; signed out, our page at once."""
    client_id = _app_client(live_server)
    web = FormBrowser(live_server.url)
    if signed_in:
        password_login(web, _rp(live_server, client_id), seeded.user_email, seeded.password)
    query = urlencode({"client_id": client_id, "post_logout_redirect_uri": APP_URI, "state": "bye"})
    end_session = requests.get(f"{live_server.url}/.well-known/openid-configuration", timeout=5).json()[
        "end_session_endpoint"]
    web.get(f"{end_session}?{query}")
    assert web.last_redirect is None and web.page.status == 200
    if signed_in:
        web.submit(web.page.form_with("csrf_token"))
        assert web.last_redirect is None and web.page.status == 200
    assert APP_URI not in web.page.text  # (no link to it either)
