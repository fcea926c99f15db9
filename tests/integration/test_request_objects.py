"""Request objects (RFC 9101; idp.oidc.request_object): a client registered with keys sends its
authorization request as a JWT it signed, and only that JWT's parameters count. The objects are
made with joserfc as a client library would; the login runs through the real pages, and the code
is exchanged with a private_key_jwt assertion."""
from __future__ import annotations

import base64
import hashlib
import secrets
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from joserfc import jwt
from sqlalchemy import func, select

from fixtures.client_assertion import assertion_form, new_key, register_client
from fixtures.oidc import FormBrowser

REDIRECT_URI = "http://127.0.0.1:9/cb"


def request_object(key, client: str, issuer: str, *, alg: str = "ES256", lifetime: int = 300, **claims) -> str:
    """A signed request object of `client`; `claims` override or add to the usual ones (None drops one)."""
    now = int(time.time())
    payload = {"iss": client, "aud": issuer, "iat": now, "exp": now + lifetime, "client_id": client,
               "response_type": "code", "redirect_uri": REDIRECT_URI, "scope": "openid email",
               "state": "object-state", "nonce": secrets.token_urlsafe(8), **claims}
    payload = {name: value for name, value in payload.items() if value is not None}
    return jwt.encode({"alg": alg, "kid": key.kid}, payload, key, algorithms=[alg])


def authorize_url(server, client_id: str, **query) -> str:
    return f"{server.url}/authorize?{urlencode({'client_id': client_id, **query})}"


def logins_in_progress(server) -> int:
    from idp.db import db
    from idp.models import LoginTransaction

    with server.context():
        count = db.session.scalar(select(func.count()).select_from(LoginTransaction))
        db.session.rollback()
        return count


def test_discovery_says_request_objects_are_taken(live_server):
    document = requests.get(f"{live_server.url}/.well-known/openid-configuration", timeout=10).json()
    assert document["request_parameter_supported"] is True
    assert document["request_uri_parameter_supported"] is False  # (a pushed request's works: test_pushed_requests)
    assert "ES256" in document["request_object_signing_alg_values_supported"]
    assert "none" not in document["request_object_signing_alg_values_supported"]


def test_a_signed_request_is_the_request_and_the_query_beside_it_is_ignored(live_server, seeded):
    key = new_key()
    client_id = register_client(live_server, key, redirect_uri=REDIRECT_URI)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    signed = request_object(key, client_id, live_server.url, code_challenge=challenge, code_challenge_method="S256",
                            nonce="object-nonce", max_age=600,
                            # a JSON object, as OIDC Core 5.5 has it: ignored (claims_parameter_supported false)
                            claims={"userinfo": {"email": {"essential": True}}})
    browser = FormBrowser(live_server.url)
    # Beside the object, the query asks for another state and no user interaction: both ignored.
    browser.get(authorize_url(live_server, client_id, request=signed, state="query-state", prompt="none",
                              scope="openid"))
    browser.login(seeded.user_email, seeded.password)
    callback = parse_qs(urlsplit(browser.last_redirect).query)
    assert callback["state"] == ["object-state"] and "code" in callback, callback
    tokens = requests.post(f"{live_server.url}/oauth/token", timeout=10, data={
        "grant_type": "authorization_code", "code": callback["code"][0], "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier, **assertion_form(key, client_id, f"{live_server.url}/oauth/token")})
    assert tokens.status_code == 200, tokens.text
    claims = jwt.decode(tokens.json()["id_token"], _jwks(live_server)).claims
    assert claims["nonce"] == "object-nonce" and client_id in claims["aud"]
    assert tokens.json()["scope"] == "openid email"  # the object's scope, not the query's


def _jwks(server):
    from joserfc.jwk import KeySet

    return KeySet.import_key_set(requests.get(f"{server.url}/jwks", timeout=10).json())


def _forged_unsigned(key, client_id, issuer):
    header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    body = request_object(key, client_id, issuer).split(".")[1]
    return f"{header}.{body}."


SPOILED = {
    "unsigned": lambda key, client_id, issuer: _forged_unsigned(key, client_id, issuer),
    "another key": lambda key, client_id, issuer: request_object(new_key(kid=key.kid), client_id, issuer),
    "another audience": lambda key, client_id, issuer: request_object(key, client_id, "https://other.example"),
    "another issuer": lambda key, client_id, issuer: request_object(key, client_id, issuer, iss="someone"),
    "expired": lambda key, client_id, issuer: request_object(key, client_id, issuer, lifetime=-300),
    "no exp": lambda key, client_id, issuer: request_object(key, client_id, issuer, exp=None),
    "valid too long": lambda key, client_id, issuer: request_object(key, client_id, issuer, lifetime=3 * 3600),
    "another client_id": lambda key, client_id, issuer: request_object(key, client_id, issuer, client_id="other"),
    "a request inside": lambda key, client_id, issuer: request_object(key, client_id, issuer, request="x.y.z"),
    "a value not text": lambda key, client_id, issuer: request_object(key, client_id, issuer, scope=["openid"]),
    "not a JWT": lambda key, client_id, issuer: "not-a-jwt",
}


@pytest.mark.parametrize("spoiled", SPOILED, ids=list(SPOILED))
def test_a_request_object_that_cannot_be_used_goes_back_as_invalid_request_object(live_server, spoiled):
    key = new_key()
    client_id = register_client(live_server, key, redirect_uri=REDIRECT_URI)
    before = logins_in_progress(live_server)
    answer = requests.get(authorize_url(live_server, client_id, request=SPOILED[spoiled](key, client_id,
                                                                                         live_server.url),
                                        redirect_uri=REDIRECT_URI, state="query-state"),
                          allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text[:300]
    location = urlsplit(answer.headers["Location"])
    sent = parse_qs(location.query)
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    assert sent["error"] == ["invalid_request_object"] and sent["state"] == ["query-state"]
    assert sent["iss"] == [live_server.url]
    assert logins_in_progress(live_server) == before


def test_with_no_registered_redirect_uri_to_trust_the_refusal_is_a_page(live_server):
    key = new_key()
    client_id = register_client(live_server, key, redirect_uri=REDIRECT_URI)
    unknown = requests.get(authorize_url(live_server, "nobody", request="x", redirect_uri=REDIRECT_URI),
                           allow_redirects=False, timeout=10)
    assert unknown.status_code == 400 and "not registered with this provider" in unknown.text
    for query in ({"request": "not-a-jwt"}, {"request": "not-a-jwt", "redirect_uri": "https://evil.example/cb"}):
        answer = requests.get(authorize_url(live_server, client_id, **query), allow_redirects=False, timeout=10)
        assert answer.status_code == 400 and "Location" not in answer.headers
    # A valid object naming a redirect URI the client never registered: the usual error page.
    signed = request_object(key, client_id, live_server.url, redirect_uri="https://evil.example/cb")
    answer = requests.get(authorize_url(live_server, client_id, request=signed, redirect_uri=REDIRECT_URI),
                          allow_redirects=False, timeout=10)
    assert answer.status_code == 400 and "Location" not in answer.headers


def test_a_client_without_keys_is_told_request_objects_are_not_for_it(live_server, seeded):
    key = new_key()
    client = seeded.first_party
    answer = requests.get(authorize_url(live_server, client["client_id"],
                                        request=request_object(key, client["client_id"], live_server.url),
                                        redirect_uri=client["redirect_uri"], state="s"),
                          allow_redirects=False, timeout=10)
    sent = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert sent["error"] == ["request_not_supported"] and sent["state"] == ["s"]


@pytest.mark.parametrize("typed", [False, True])
def test_a_request_object_is_no_client_assertion(live_server, seeded, typed):
    """Signed by the client's keys for this issuer, and seen by the browser: were it taken as an
    assertion (with a sub and a jti it has what one needs), whoever saw it could act as the
    client (RFC 9101 10.8). Typed as a request object, or holding a request's parameters: refused."""
    key = new_key()
    client_id = register_client(live_server, key, redirect_uri=REDIRECT_URI)
    header_typ = {"typ": "oauth-authz-req+jwt"} if typed else {}
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": live_server.url, "iat": now, "exp": now + 300,
              "jti": secrets.token_urlsafe(12)}
    if not typed:
        claims.update(response_type="code", redirect_uri=REDIRECT_URI, scope="openid", state="s", client_id=client_id)
    obj = jwt.encode({"alg": "ES256", "kid": key.kid, **header_typ}, claims, key, algorithms=["ES256"])
    answer = requests.post(f"{live_server.url}/oauth/token", timeout=10, data={
        "grant_type": "client_credentials", "client_assertion": obj,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"})
    assert (answer.status_code, answer.json()["error"]) == (401, "invalid_client")
    honest = requests.post(f"{live_server.url}/oauth/token", timeout=10, data={
        "grant_type": "client_credentials", **assertion_form(key, client_id, live_server.url)})
    assert honest.status_code == 200, honest.text
