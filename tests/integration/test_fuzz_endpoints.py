"""Malformed and oversized input never yields a 500: hypothesis throws junk at every public endpoint,
on SQLite and, when IDP_TEST_DATABASE_URL is set, on PostgreSQL (which refuses NUL in text)."""
from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from fixtures.database import backends, module_database
from fixtures.oidc import FAST_ARGON2

junk = st.one_of(st.text(max_size=300), st.text(alphabet="%&=?#/\\\x00'\"<>", max_size=50),
                 st.binary(max_size=200).map(lambda b: b.decode("latin-1")), st.just("x" * 5000))
params = st.dictionaries(st.sampled_from(["client_id", "redirect_uri", "response_type", "scope", "state", "nonce",
                                          "prompt", "max_age", "code_challenge", "code_challenge_method", "acr_values",
                                          "login_hint", "ui_locales", "grant_type", "code", "refresh_token",
                                          "code_verifier", "token", "token_type_hint", "id_token_hint",
                                          "post_logout_redirect_uri", "username", "password", "version", "csrf_token",
                                          "action", "request", "request_uri", "device_code", "user_code"]),
                         junk, max_size=8)


@pytest.fixture(scope="module", params=backends())
def client(request, tmp_path_factory):
    from idp import schema
    from idp.app import create_app
    from idp.db import db
    from idp.models import Client
    from idp.oidc import keys
    from idp.security.tokens import sha256_hex

    with module_database(request, tmp_path_factory, "fuzz") as url:
        # Thousands of requests from one address: the per-address request rate (the login forms',
        # and new logins at /authorize) would refuse most of them before their input is read.
        app = create_app({"server.database_url": url, "server.json_logs": False,
                          "ratelimit.login_posts_per_ip": "1000000 per minute", **FAST_ARGON2})
        app.config["RATELIMIT_ENABLED"] = False
        with app.app_context():
            schema.upgrade(db.engine)
            keys.ensure_signing_key()
            db.session.add(Client(client_id="fuzz", secret_hash=sha256_hex("s"), name="Fuzz",
                                  redirect_uris=["http://127.0.0.1:59999/cb"],
                                  grant_types=["authorization_code", "refresh_token", DEVICE_CODE]))
            db.session.add(Client(client_id="fuzz-keys", name="Fuzz keys", redirect_uris=[],
                                  grant_types=["client_credentials"], jwks={"keys": [FUZZ_KEY]}))
            db.session.commit()
            db.session.remove()
        yield app.test_client()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# A P-256 public key (private_key_jwt): assertions below claim to be signed by it.
FUZZ_KEY = {"kty": "EC", "crv": "P-256", "kid": "k", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
claim_value = st.one_of(junk, st.integers(), st.floats(allow_nan=False), st.none(), st.booleans(),
                        st.lists(st.text(max_size=20), max_size=3), st.just("fuzz-keys"))
segment = st.one_of(
    st.dictionaries(st.sampled_from(["alg", "kid", "typ", "crit", "jku", "jwk"]), claim_value, max_size=4),
    st.dictionaries(st.sampled_from(["iss", "sub", "aud", "exp", "nbf", "iat", "jti"]), claim_value, max_size=7),
    junk,
).map(lambda part: _b64(json.dumps(part) if isinstance(part, dict) else part))


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8", "surrogatepass")).rstrip(b"=").decode()


@SETTINGS
@given(header=segment, payload=segment, signature=st.one_of(junk, segment),
       query=st.dictionaries(st.sampled_from(["redirect_uri", "state", "response_type"]), junk, max_size=2),
       client_id=st.sampled_from(["fuzz", "fuzz-keys"]))
def test_request_objects(client, header, payload, signature, query, client_id):
    response = client.get("/authorize", query_string={"client_id": client_id, **query,
                                                       "request": f"{header}.{payload}.{signature}"})
    assert response.status_code < 500, (query, response.status_code)


@SETTINGS
@given(header=segment, payload=segment, signature=st.one_of(junk, segment),
       path=st.sampled_from(["/oauth/token", "/oauth/revoke", "/oauth/introspect", "/oauth/par"]),
       extra=st.dictionaries(st.sampled_from(["client_id", "grant_type", "token", "client_assertion_type"]), junk,
                             max_size=2))
def test_client_assertions(client, header, payload, signature, path, extra):
    form = {"grant_type": "client_credentials", "token": "t",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": f"{header}.{payload}.{signature}", **extra}
    response = client.post(path, data=form)
    assert response.status_code < 500, (path, form, response.status_code)
    assert response.is_json


@SETTINGS
@given(header=segment, payload=segment, signature=st.one_of(junk, segment),
       path=st.sampled_from(["/oauth/token", "/oauth/userinfo"]), scheme=st.sampled_from(["DPoP", "Bearer"]))
def test_dpop_proofs(client, header, payload, signature, path, scheme):
    """Junk DPoP proofs (idp.oidc.dpop) beside a client_credentials request or an access token."""
    basic = base64.b64encode(b"fuzz:s").decode()
    authorization = f"Basic {basic}" if path == "/oauth/token" else f"{scheme} some-token"
    proof = f"{header}.{payload}.{signature}"
    assume(not any(ch in proof for ch in "\r\n\x00"))  # no HTTP client sends these in a header
    response = client.post(path, data={"grant_type": "client_credentials"},
                           headers={"Authorization": authorization, "DPoP": proof})
    assert response.status_code in (400, 401), (path, response.status_code, response.get_data(as_text=True))
    assert response.is_json


@SETTINGS
@given(form=params)
def test_pushed_requests_of_an_authenticated_client(client, form):
    """Past client authentication, the pushed request's own checks (idp.oidc.pushed_requests)."""
    basic = base64.b64encode(b"fuzz:s").decode()
    response = client.post("/oauth/par", data=form, headers={"Authorization": f"Basic {basic}"})
    assert response.status_code in (201, 400), (form, response.status_code, response.get_data(as_text=True))
    assert response.is_json


@SETTINGS
@given(form=params, path=st.sampled_from(["/oauth/device_authorization", "/oauth/token"]))
def test_device_requests_of_an_authenticated_client(client, form, path):
    """Past client authentication, the device grant's own checks (idp.oidc.device_flow)."""
    basic = base64.b64encode(b"fuzz:s").decode()
    if path == "/oauth/token":
        form = dict(form, grant_type=DEVICE_CODE)
    response = client.post(path, data=form, headers={"Authorization": f"Basic {basic}"})
    assert response.status_code in (200, 400), (form, response.status_code, response.get_data(as_text=True))
    assert response.is_json


@SETTINGS
@given(query=params, path=st.sampled_from(["/authorize", "/logout", "/oauth/userinfo", "/login/expired", "/device"]))
def test_get_endpoints(client, query, path):
    response = client.get(path, query_string=query)
    assert response.status_code < 500, (path, query, response.status_code)


@SETTINGS
@given(form=params, path=st.sampled_from(["/oauth/token", "/oauth/revoke", "/oauth/introspect", "/oauth/userinfo",
                                          "/oauth/par", "/oauth/device_authorization"]),
       auth=st.one_of(st.none(), st.text(max_size=80)))
def test_post_endpoints(client, form, path, auth):
    headers = {"Authorization": auth} if auth is not None and auth.isprintable() else {}
    response = client.post(path, data=form, headers=headers)
    assert response.status_code < 500, (path, form, response.status_code)
    assert response.is_json


@SETTINGS
@given(handle=st.text(min_size=1, max_size=100).filter(lambda s: "/" not in s and s.strip() not in ("", ".", "..")),
       form=params)
def test_login_pages(client, handle, form):
    assert client.get(f"/login/{handle}").status_code < 500
    assert client.post(f"/login/{handle}", data=form).status_code < 500


@SETTINGS
@given(form=params)
def test_the_device_page_with_its_csrf_token(client, form):
    """/device's form past its CSRF check: any code, any action (idp.login.device_pages)."""
    page = client.get("/device").get_data(as_text=True)
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    assert client.post("/device", data=dict(form, csrf_token=token)).status_code < 500


def test_oversized_body_is_413_not_500(client):
    response = client.post("/oauth/token", data={"grant_type": "x" * (300 * 1024)})
    assert response.status_code == 413


@pytest.mark.parametrize("path,query", [("/authorize", {"response_type": '"'}),
                                        ("/authorize", {"client_id": "fuzz", "response_type": '"\\'}),
                                        ("/oauth/token", {"grant_type": '"'})])
def test_quotes_that_authlib_cannot_describe(client, path, query):
    """Found by the fuzzer: Authlib raises ValueError on such values; they are 400s."""
    response = client.get(path, query_string=query) if path == "/authorize" else client.post(path, data=query)
    assert response.status_code == 400


@pytest.mark.parametrize("path", ["/", "/authorize", "/login/expired", "/device", "/no-such-page", "/oauth/token"])
def test_raw_bytes_in_the_query_string(client, path):
    """Found by a sweep of every route: a query string with a byte that is not UTF-8,
    sent as it is (werkzeug's server passes it on), raised UnicodeDecodeError wherever the query
    was read, the error page's language choice among them: the server's own 500. It is read as
    its percent-encoded spelling is (idp.dispatch.ProviderRequest)."""
    raw = client.get(path, environ_overrides={"QUERY_STRING": "client_id=\xff&ui_locales=\xfe&state=\xc3"})
    encoded = client.get(path, query_string="client_id=%ff&ui_locales=%fe&state=%c3")
    assert raw.status_code == encoded.status_code < 500
