"""What an independent certified client (openid-client) found off the specs, kept fixed: bearer
challenges (RFC 6750), client_credentials scopes (RFC 6749 3.3), hints (RFC 7009/7662), the
authorization request's unsupported parameters (OIDC Core 3.1.2), RFC 8414 metadata."""
from __future__ import annotations

from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import requests

from fixtures.oidc import FormBrowser, id_token_from_another_browser, password_login


def metadata(live_server) -> dict:
    return requests.get(f"{live_server.url}/.well-known/openid-configuration", timeout=5).json()


def service_client(live_server, scope: str) -> tuple[str, str]:
    from idp.db import db
    from idp.models import Client
    from idp.security.tokens import random_token, sha256_hex

    with live_server.context():
        secret, client_id = random_token(32), f"svc-{random_token(6)}"
        db.session.add(Client(client_id=client_id, secret_hash=sha256_hex(secret), name="Service", redirect_uris=[],
                              grant_types=["client_credentials"], scope=scope))
        db.session.commit()
    return client_id, secret


def test_a_client_credentials_token_carries_no_user_scope_and_says_what_it_got(live_server):
    doc = metadata(live_server)
    client = service_client(live_server, "openid profile api")
    granted = requests.post(doc["token_endpoint"], auth=client, timeout=5,
                            data={"grant_type": "client_credentials", "scope": "openid profile api"}).json()
    assert granted["scope"] == "api"  # differs from the request: said (RFC 6749 5.1)
    nothing = requests.post(doc["token_endpoint"], auth=client, timeout=5,
                            data={"grant_type": "client_credentials", "scope": "bogus"}).json()
    assert nothing["scope"] == ""
    plain = requests.post(doc["token_endpoint"], auth=client, timeout=5, data={"grant_type": "client_credentials"})
    assert "scope" not in plain.json()  # nothing asked, nothing to report
    userinfo = requests.get(doc["userinfo_endpoint"], headers={"Authorization": f"Bearer {granted['access_token']}"},
                            timeout=5)
    assert userinfo.status_code == 403 and 'error="insufficient_scope"' in userinfo.headers["WWW-Authenticate"]


def test_userinfo_refuses_a_token_without_a_user(live_server):
    """Forced into the database: a token with openid but no user (no grant issues one now) is
    refused as invalid, not a 500."""
    import time

    from idp.db import db
    from idp.models import Token
    from idp.security.tokens import random_token, sha256_hex

    access = random_token(32)
    with live_server.context():
        db.session.add(Token(access_token_hash=sha256_hex(access), client_id="x", scope="openid profile",
                             issued_at=int(time.time()), access_expires_at=int(time.time()) + 600))
        db.session.commit()
    answer = requests.get(metadata(live_server)["userinfo_endpoint"], headers={"Authorization": f"Bearer {access}"},
                          timeout=5)
    assert answer.status_code == 401 and 'error="invalid_token"' in answer.headers["WWW-Authenticate"]


def test_userinfo_challenges_follow_rfc_6750(seeded, web, rp_factory, live_server):
    url = metadata(live_server)["userinfo_endpoint"]
    none = requests.get(url, timeout=5)
    assert none.status_code == 401 and none.headers["WWW-Authenticate"] == 'Bearer realm="idp"'  # no error code
    basic = requests.get(url, headers={"Authorization": "Basic abc"}, timeout=5)
    assert basic.status_code == 400 and 'error="invalid_request"' in basic.headers["WWW-Authenticate"]
    rp = rp_factory(seeded.first_party)
    password_login(web, rp, seeded.user_email, seeded.password, scope="openid email")
    token = rp.exchange(web.last_redirect)["access_token"]
    assert rp.userinfo(token).status_code == 200


def test_an_unknown_token_type_hint_is_only_a_hint(seeded, web, rp_factory, live_server):
    rp = rp_factory(seeded.first_party)
    password_login(web, rp, seeded.user_email, seeded.password)
    token = rp.exchange(web.last_redirect)["access_token"]
    auth = (rp.client["client_id"], rp.client["client_secret"])
    doc = metadata(live_server)
    seen = requests.post(doc["introspection_endpoint"], auth=auth, timeout=5,
                         data={"token": token, "token_type_hint": "foo"})
    assert seen.status_code == 200 and seen.json()["active"] is True
    revoked = requests.post(doc["revocation_endpoint"], auth=auth, timeout=5,
                            data={"token": token, "token_type_hint": "foo"})
    assert revoked.status_code == 200 and rp.userinfo(token).status_code == 401


def test_what_the_provider_does_not_do_is_refused_not_ignored(seeded, web, rp_factory, live_server):
    rp = rp_factory(seeded.first_party)

    def error_for(url: str) -> str:
        web.get(url)
        params = web.callback_params()
        assert params["iss"] and params["state"] == rp.state, params
        return params["error"]

    base = rp.authorization_url()
    assert error_for(base.replace("response_type=code&", "")) == "invalid_request"
    assert error_for(rp.authorization_url(response_mode="fragment")) == "invalid_request"
    assert error_for(rp.authorization_url(request="eyJhbGciOiJub25lIn0.e30.")) == "request_not_supported"
    assert error_for(rp.authorization_url(request_uri="https://rp.example/r")) == "request_uri_not_supported"
    assert error_for(rp.authorization_url(prompt="bogus")) == "invalid_request"
    parts = urlsplit(rp.authorization_url())
    query = {k: v[0] for k, v in parse_qs(parts.query).items() if k != "redirect_uri"}
    no_redirect = requests.get(parts._replace(query=urlencode(query)).geturl(), timeout=5, allow_redirects=False)
    assert no_redirect.status_code == 400 and "Location" not in no_redirect.headers  # required by OIDC Core


def test_select_account_shows_the_login_form(seeded, web, rp_factory):
    rp = rp_factory(seeded.first_party)
    password_login(web, rp, seeded.user_email, seeded.password)
    page = web.get(rp.authorization_url(prompt="select_account"))
    assert page.form_with("password") and web.last_redirect is None


def test_a_failed_client_authentication_names_its_realm(live_server):
    answer = requests.post(metadata(live_server)["token_endpoint"], auth=("nobody", "wrong"), timeout=5,
                           data={"grant_type": "client_credentials"})
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith('Basic realm="idp", error="invalid_client"')
    assert "[" not in answer.json()["error_description"]


def test_rfc_8414_metadata_and_public_documents(live_server):
    oidc = requests.get(f"{live_server.url}/.well-known/openid-configuration", timeout=5)
    oauth = requests.get(f"{live_server.url}/.well-known/oauth-authorization-server", timeout=5)
    assert oauth.status_code == 200 and oauth.json() == oidc.json()
    jwks = requests.get(oidc.json()["jwks_uri"], timeout=5)
    for response in (oidc, oauth, jwks):
        assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_an_id_token_hint_for_someone_else_is_not_answered_by_this_session(seeded, web, rp_factory, live_server):
    """OIDC Core 3.1.2.1: the client expects the user the hint names; this browser's session is
    another's, so prompt=none answers login_required (and without prompt=none the login form)."""
    rp = rp_factory(seeded.first_party)
    admins = id_token_from_another_browser(live_server, rp, seeded.admin_email, seeded.password)
    password_login(web, rp, seeded.user_email, seeded.password)
    own = rp.exchange(web.last_redirect)["id_token"]

    web.get(rp.authorization_url(prompt="none", id_token_hint=admins))
    assert web.callback_params()["error"] == "login_required"
    web.get(rp.authorization_url(prompt="none", id_token_hint="not-a-token"))
    assert web.callback_params()["error"] == "login_required"
    web.get(rp.authorization_url(prompt="none", id_token_hint=own))
    assert "code" in web.callback_params()
    page = web.get(rp.authorization_url(id_token_hint=admins))
    assert page.form_with("password") and web.last_redirect is None
    # Signing in as someone else than the hint names: this browser is theirs now, and the client
    # is told its user is not signed in (OIDC Core 3.1.2.1), with its state and our issuer.
    web.login(seeded.user_email, seeded.password)
    answer = web.callback_params()
    assert answer["error"] == "login_required" and "code" not in answer and answer["iss"] == live_server.url
    assert answer["state"]
    web.get(rp.authorization_url(prompt="none", id_token_hint=own))
    assert "code" in web.callback_params()
    # Signing in as the one it names gives the code.
    fresh = FormBrowser(live_server.url)
    fresh.get(rp.authorization_url(id_token_hint=own))
    fresh.login(seeded.user_email, seeded.password)
    assert "code" in fresh.callback_params()


def test_an_error_while_the_code_is_issued_names_the_issuer_once(seeded, web, rp_factory, live_server):
    """A nonce already used (a replay) is refused as the code is issued: one iss, not two (RFC 6749 3.1)."""
    rp = rp_factory(seeded.first_party)
    first, second = FormBrowser(live_server.url), FormBrowser(live_server.url)
    first.get(rp.authorization_url(nonce="same-nonce"))
    second.get(rp.authorization_url(nonce="same-nonce"))
    first.login(seeded.user_email, seeded.password)
    assert "code" in first.callback_params()
    second.login(seeded.user_email, seeded.password)
    query = parse_qs(urlsplit(second.last_redirect).query)
    assert query["error"] == ["invalid_request"] and len(query["iss"]) == 1, second.last_redirect


def test_a_browser_based_client_reads_the_answers_from_its_own_origin(seeded, web, rp_factory):
    """A single-page app (public client, PKCE) calls the token, UserInfo and revocation endpoints
    from the origin of its redirect URI: the answers name that origin, and no other."""
    from idp.security.origins import browser_origin

    rp = rp_factory(seeded.public)
    origin = browser_origin(rp.client["redirect_uri"])
    endpoint = rp.metadata["token_endpoint"]
    preflight = requests.options(endpoint, headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
                                 timeout=5)
    assert preflight.status_code == 204 and preflight.headers["Access-Control-Allow-Origin"] == origin
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]

    password_login(web, rp, seeded.user_email, seeded.password)
    code = web.callback_params()["code"]
    exchange = requests.post(endpoint, headers={"Origin": origin}, timeout=5, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": rp.client["redirect_uri"],
        "code_verifier": rp.verifier, "client_id": rp.client["client_id"]})
    assert exchange.status_code == 200 and exchange.headers["Access-Control-Allow-Origin"] == origin
    assert "Origin" in exchange.headers["Vary"] and "Access-Control-Allow-Credentials" not in exchange.headers
    access = exchange.json()["access_token"]
    info = requests.get(rp.metadata["userinfo_endpoint"], timeout=5,
                        headers={"Authorization": f"Bearer {access}", "Origin": origin})
    assert info.status_code == 200 and info.headers["Access-Control-Allow-Origin"] == origin
    foreign = requests.get(rp.metadata["userinfo_endpoint"], timeout=5,
                           headers={"Authorization": f"Bearer {access}", "Origin": "https://evil.example"})
    assert foreign.status_code == 200 and "Access-Control-Allow-Origin" not in foreign.headers
    plain = requests.get(rp.metadata["userinfo_endpoint"], headers={"Authorization": f"Bearer {access}"}, timeout=5)
    assert "Access-Control-Allow-Origin" not in plain.headers


def test_a_loopback_clients_pages_read_the_answers_on_any_port(seeded, web, rp_factory):
    """A redirect URI at a loopback IP literal matches on any port (RFC 8252 7.3), so the code of a
    single-page app served in development from another port than the registered URI's reaches it
    there; its token answer is readable there too. Not for `localhost`, another loopback IP or
    https, which match exactly."""
    from idp.security.origins import browser_origin

    rp = rp_factory(seeded.public)
    registered = urlsplit(rp.client["redirect_uri"])
    assert registered.hostname == "127.0.0.1"
    port = registered.port + 1 if registered.port < 65535 else registered.port - 1
    redirect_uri = registered._replace(netloc=f"127.0.0.1:{port}").geturl()
    origin = browser_origin(redirect_uri)
    rp.session.redirect_uri = redirect_uri
    password_login(web, rp, seeded.user_email, seeded.password)
    exchange = requests.post(rp.metadata["token_endpoint"], headers={"Origin": origin}, timeout=5, data={
        "grant_type": "authorization_code", "code": web.callback_params()["code"], "redirect_uri": redirect_uri,
        "code_verifier": rp.verifier, "client_id": rp.client["client_id"]})
    assert exchange.status_code == 200 and exchange.headers["Access-Control-Allow-Origin"] == origin
    access = exchange.json()["access_token"]
    for elsewhere in (f"http://localhost:{port}", f"http://127.0.0.2:{port}", f"https://127.0.0.1:{port}",
                      f"{origin}/path", "null"):
        info = requests.get(rp.metadata["userinfo_endpoint"], timeout=5,
                            headers={"Authorization": f"Bearer {access}", "Origin": elsewhere})
        assert info.status_code == 200 and "Access-Control-Allow-Origin" not in info.headers, elsewhere
    info = requests.get(rp.metadata["userinfo_endpoint"], timeout=5,
                        headers={"Authorization": f"Bearer {access}", "Origin": origin})
    assert info.headers["Access-Control-Allow-Origin"] == origin


def test_a_parameter_sent_twice_is_refused(seeded, web, rp_factory, live_server):
    """RFC 6749 3.1: no request parameter more than once. A repeated client_id or redirect_uri
    gets the error page (where would the error go?); any other recognized one goes back to the
    client once its redirect URI is known (4.1.2.1), where a repeated scope or state was the
    error page and a repeated nonce, prompt, max_age, login_hint or acr_values used the first.
    Parameters the provider does not know stay ignored, empty ones count as not sent."""
    rp = rp_factory(seeded.first_party)
    parts = urlsplit(rp.authorization_url())
    query = parse_qsl(parts.query)

    def with_also(*pairs) -> str:
        return parts._replace(query=urlencode(query + list(pairs))).geturl()

    for name, first, second in (("nonce", None, "other"), ("prompt", "login", "consent"), ("max_age", "5", "60"),
                                ("login_hint", "a@x", "b@x"), ("acr_values", "urn:idp:acr:pwd", "mfa"),
                                ("scope", None, "openid"), ("state", None, "other"), ("response_type", None, "code"),
                                ("code_challenge", None, "c" * 43)):
        pairs = [(name, second)] if first is None else [(name, first), (name, second)]
        web.get(with_also(*pairs))
        params = web.callback_params()
        assert params["error"] == "invalid_request" and name in params["error_description"], (name, params)
        assert params["state"] == rp.state and params["iss"] == live_server.url
    for name in ("client_id", "redirect_uri"):
        page = requests.get(with_also((name, dict(query)[name])), allow_redirects=False, timeout=5)
        assert page.status_code == 400 and "Location" not in page.headers and "invalid_request" in page.text
    page = web.get(with_also(("unknown", "1"), ("unknown", "2"), ("login_hint", ""), ("login_hint", "a@x")))
    assert page.form_with("password") and web.last_redirect is None


def test_a_parameter_sent_empty_counts_as_not_sent(seeded, web, rp_factory):
    """RFC 6749 3.1: a parameter without a value is treated as omitted. An empty max_age,
    response_mode, request or request_uri was refused as if it held an unsupported value."""
    rp = rp_factory(seeded.first_party)
    for name in ("max_age", "response_mode", "request", "request_uri", "prompt", "login_hint"):
        parts = urlsplit(rp.authorization_url())
        page = web.get(parts._replace(query=urlencode(parse_qsl(parts.query) + [(name, "")])).geturl())
        assert web.last_redirect is None and page.form_with("password"), (name, web.last_redirect)
    web.login(seeded.user_email, seeded.password)
    assert "code" in web.callback_params()


def test_the_client_endpoints_read_the_body_not_the_query_string(seeded, web, rp_factory, live_server):
    """RFC 6749 3.2 and 4.1.3, RFC 7009 2.1: the parameters are in the form-encoded body. A
    grant_type or a client_id put in the URL (which proxies log) was accepted."""
    rp = rp_factory(seeded.public)
    password_login(web, rp, seeded.user_email, seeded.password)
    code, client_id = web.callback_params()["code"], rp.client["client_id"]
    body = {"code": code, "redirect_uri": rp.client["redirect_uri"], "code_verifier": rp.verifier,
            "client_id": client_id}
    in_url = requests.post(f"{rp.metadata['token_endpoint']}?grant_type=authorization_code", data=body, timeout=5)
    assert in_url.status_code == 400 and "access_token" not in in_url.json()
    tokens = requests.post(rp.metadata["token_endpoint"], data={**body, "grant_type": "authorization_code"},
                           timeout=5)
    assert tokens.status_code == 200  # the code was not spent by the refused request
    access = tokens.json()["access_token"]

    revoke = requests.post(f"{rp.metadata['revocation_endpoint']}?client_id={client_id}", data={"token": access},
                           timeout=5)
    assert revoke.status_code == 401 and revoke.json()["error"] == "invalid_client"
    assert rp.userinfo(access).status_code == 200
    assert requests.post(rp.metadata["revocation_endpoint"], data={"token": access, "client_id": client_id},
                         timeout=5).status_code == 200
    assert rp.userinfo(access).status_code == 401


def test_a_client_endpoint_refuses_a_parameter_sent_twice(seeded, web, rp_factory, live_server):
    """RFC 6749 3.2: no parameter more than once. The token endpoint took the first of two codes
    or grant types, revocation and introspection the first of two tokens; a request without
    grant_type was answered unsupported_grant_type where it is malformed (5.2)."""
    rp = rp_factory(seeded.first_party)
    password_login(web, rp, seeded.user_email, seeded.password)
    code = web.callback_params()["code"]
    auth = (rp.client["client_id"], rp.client["client_secret"])
    body = [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", rp.client["redirect_uri"]),
            ("code_verifier", rp.verifier)]

    def post(url: str, pairs: list) -> requests.Response:
        return requests.post(url, data=pairs, auth=auth, timeout=5)  # a list of pairs keeps the repeats

    for repeated in (("code", code), ("grant_type", "authorization_code")):
        answer = post(rp.metadata["token_endpoint"], [*body, repeated])
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_request", answer.text
        assert repeated[0] in answer.json()["error_description"]
    no_grant_type = post(rp.metadata["token_endpoint"], body[1:])
    assert no_grant_type.status_code == 400 and no_grant_type.json()["error"] == "invalid_request"
    access = post(rp.metadata["token_endpoint"], body).json()["access_token"]  # none of them spent the code

    for endpoint in ("introspection_endpoint", "revocation_endpoint"):
        answer = post(rp.metadata[endpoint], [("token", access), ("token", "another")])
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_request", (endpoint, answer.text)
    assert rp.userinfo(access).status_code == 200
    unknown_twice = post(rp.metadata["introspection_endpoint"], [("token", access), ("x", "1"), ("x", "2")])
    assert unknown_twice.json()["active"] is True  # parameters it does not know stay ignored


def test_a_client_authenticates_one_way_and_names_one_client(seeded, web, rp_factory):
    """RFC 6749 2.3: one authentication method per request. A wrong secret in the Authorization
    header with the right one in the body passed; a body naming another client than the header
    was answered for the header's client. Both are invalid_request now; a body that repeats the
    header's client_id is fine (3.2.1)."""
    rp = rp_factory(seeded.first_party)
    password_login(web, rp, seeded.user_email, seeded.password)
    client = rp.client
    body = {"grant_type": "authorization_code", "code": web.callback_params()["code"],
            "redirect_uri": client["redirect_uri"], "code_verifier": rp.verifier}
    endpoint = rp.metadata["token_endpoint"]

    both = requests.post(endpoint, auth=(client["client_id"], "wrong"), timeout=5,
                         data={**body, "client_id": client["client_id"], "client_secret": client["client_secret"]})
    assert both.status_code == 400 and both.json()["error"] == "invalid_request", both.text
    another = requests.post(endpoint, auth=(client["client_id"], client["client_secret"]), timeout=5,
                            data={**body, "client_id": seeded.third_party["client_id"]})
    assert another.status_code == 400 and another.json()["error"] == "invalid_request", another.text
    same = requests.post(endpoint, auth=(client["client_id"], client["client_secret"]), timeout=5,
                         data={**body, "client_id": client["client_id"]})
    assert same.status_code == 200 and same.json()["access_token"]


def test_a_disabled_users_tokens_are_not_active(seeded, web, rp_factory, live_server):
    """RFC 7662 2.2: introspection called a disabled user's tokens active while UserInfo and the
    refresh grant refused them, so a resource server asking it accepted them. The refresh grant
    answered invalid_request ("There is no 'user'"); a grant no longer valid is invalid_grant (RFC
    6749 5.2)."""
    from sqlalchemy import update

    from idp.db import db
    from idp.models import User

    rp = rp_factory(seeded.first_party)
    password_login(web, rp, seeded.user_email, seeded.password, scope="openid offline_access")
    tokens = rp.exchange(web.last_redirect)
    auth = (rp.client["client_id"], rp.client["client_secret"])

    def introspect(token: str) -> dict:
        return requests.post(rp.metadata["introspection_endpoint"], auth=auth, data={"token": token}, timeout=5).json()

    assert introspect(tokens["access_token"])["active"] is True
    with live_server.context():
        db.session.execute(update(User).where(User.email == seeded.user_email).values(disabled=True))
        db.session.commit()
    assert introspect(tokens["access_token"]) == {"active": False}
    assert introspect(tokens["refresh_token"]) == {"active": False}
    assert rp.userinfo(tokens["access_token"]).status_code == 401
    refreshed = rp.token_request({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    # The browser's session (never ended: the flag was set in the database) answers no login.
    web.get(rp.authorization_url(prompt="none"))
    assert web.callback_params()["error"] == "login_required"
    page = web.get(rp.authorization_url())
    assert web.last_redirect is None and page.form_with("password")


def test_the_authorization_endpoint_takes_post(seeded, web, rp_factory, live_server):
    """OIDC Core 3.1.2.1: the authorization endpoint MUST support POST (form serialization); it
    answered 405. A POST is answered as the same GET (a 303), so a signed-in browser's session
    (its SameSite=Lax cookie, which a cross-site POST does not carry) answers prompt=none too."""
    rp = rp_factory(seeded.first_party)

    def post(url: str):
        parts = urlsplit(url)
        answer = web.http.post(parts._replace(query="").geturl(), data=parse_qsl(parts.query), allow_redirects=False,
                               timeout=5)
        assert answer.status_code == 303, answer.status_code
        return web.get(answer.headers["Location"])

    page = post(rp.authorization_url())
    assert page.form_with("password")
    web.login(seeded.user_email, seeded.password)
    assert rp.exchange(web.last_redirect)["id_token"]
    post(rp.authorization_url(prompt="none"))
    assert "code" in web.callback_params() and web.callback_params()["state"] == rp.state


def test_a_narrower_scope_on_refresh_keeps_the_refresh_token(seeded, web, rp_factory):
    """RFC 6749 6: the new refresh token has the scope of the one presented. Asking a refresh for
    `scope=openid` spent the refresh token and, offline_access being left out, issued none: the
    client lost offline access. The narrower request is accepted and ignored (3.3), the answer's
    `scope` saying what was granted (5.1); a wider one is still invalid_scope."""
    rp = rp_factory(seeded.first_party)
    password_login(web, rp, seeded.user_email, seeded.password, scope="openid email offline_access")
    tokens = rp.exchange(web.last_redirect)
    wider = rp.token_request({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
                              "scope": "openid email profile offline_access"})
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    narrowed = rp.token_request({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"],
                                 "scope": "openid"})
    assert narrowed.status_code == 200, narrowed.text
    body = narrowed.json()
    assert body.get("refresh_token") and set(body["scope"].split()) == {"openid", "email", "offline_access"}
    again = rp.token_request({"grant_type": "refresh_token", "refresh_token": body["refresh_token"]})
    assert again.status_code == 200 and again.json().get("refresh_token")


def test_a_method_not_allowed_says_which_are(live_server):
    """RFC 9110 15.5.6: a 405 carries Allow, on the JSON endpoints and the pages alike."""
    token = requests.get(metadata(live_server)["token_endpoint"], timeout=5)
    assert token.status_code == 405 and "POST" in token.headers["Allow"]
    logout = requests.put(f"{live_server.url}/logout", timeout=5)
    assert logout.status_code == 405 and set(logout.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_a_scope_named_twice_is_granted_once(live_server):
    client = service_client(live_server, "api other")
    granted = requests.post(metadata(live_server)["token_endpoint"], auth=client, timeout=5,
                            data={"grant_type": "client_credentials", "scope": "api api other api"}).json()
    assert granted["scope"] == "api other"
