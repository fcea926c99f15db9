"""private_key_jwt (RFC 7523, OIDC Core 9; idp.oidc.client_assertion): a client registered with
public keys authenticates at the token, revocation and introspection endpoints with assertions
it signs, and has no secret. The code flow is driven by Authlib's requests client with its own
PrivateKeyJWT signer (an independent client library); the refusals are assertions made by hand
with joserfc, each spoiled in one way, and each changes nothing."""
from __future__ import annotations

import json

import pytest
import requests
from sqlalchemy import func, select

from fixtures.cli import ok, refused
from fixtures.client_assertion import ASSERTION_TYPE, assertion, assertion_form, new_key, public_set, register_client
from fixtures.oidc import FormBrowser


def metadata(server) -> dict:
    return requests.get(f"{server.url}/.well-known/openid-configuration", timeout=10).json()


def counts(server) -> tuple[int, int]:
    """(tokens, spent assertions) in the database."""
    from idp.db import db
    from idp.models import ClientAssertion, Token

    with server.context():
        found = (db.session.scalar(select(func.count()).select_from(Token)),
                 db.session.scalar(select(func.count()).select_from(ClientAssertion)))
        db.session.rollback()
        return found


def client_credentials(server, form: dict, **kwargs) -> requests.Response:
    return requests.post(f"{server.url}/oauth/token", data={"grant_type": "client_credentials", **form},
                         timeout=10, **kwargs)


def test_discovery_offers_private_key_jwt_with_its_algorithms(live_server):
    document = metadata(live_server)
    for endpoint in ("token", "revocation", "introspection"):
        assert "private_key_jwt" in document[f"{endpoint}_endpoint_auth_methods_supported"]
        algorithms = document[f"{endpoint}_endpoint_auth_signing_alg_values_supported"]
        assert {"ES256", "RS256", "PS256", "Ed25519"} <= set(algorithms)
        assert not any(alg.startswith("HS") or alg == "none" for alg in algorithms)


def test_code_flow_refresh_introspection_and_revocation_with_an_independent_client(live_server, seeded):
    from authlib.integrations.requests_client import OAuth2Session
    from authlib.oauth2.rfc7523 import PrivateKeyJWT

    key = new_key("EC")
    redirect_uri = "http://127.0.0.1:9/cb"
    client_id = register_client(live_server, key, redirect_uri=redirect_uri)
    document = metadata(live_server)
    session = OAuth2Session(client_id, key, redirect_uri=redirect_uri,
                            scope="openid email offline_access", code_challenge_method="S256",
                            token_endpoint_auth_method=PrivateKeyJWT(document["token_endpoint"], alg="ES256"),
                            revocation_endpoint_auth_method=PrivateKeyJWT(document["revocation_endpoint"],
                                                                          alg="ES256"))
    verifier = "v" * 48
    url, _state = session.create_authorization_url(document["authorization_endpoint"], code_verifier=verifier,
                                                   nonce="n-" + client_id)
    browser = FormBrowser(live_server.url)
    browser.get(url)
    browser.login(seeded.user_email, seeded.password)
    tokens = session.fetch_token(document["token_endpoint"], authorization_response=browser.last_redirect,
                                 code_verifier=verifier)
    assert tokens["id_token"] and tokens["refresh_token"]

    refreshed = session.refresh_token(document["token_endpoint"], refresh_token=tokens["refresh_token"])
    assert refreshed["access_token"] != tokens["access_token"]

    signer = session.client_auth(PrivateKeyJWT(document["introspection_endpoint"], alg="ES256"))
    active = session.introspect_token(document["introspection_endpoint"], refreshed["access_token"], auth=signer)
    assert active.json()["active"] is True and active.json()["client_id"] == client_id

    revoked = session.revoke_token(document["revocation_endpoint"], refreshed["refresh_token"],
                                   token_type_hint="refresh_token")
    assert revoked.status_code == 200, revoked.text
    with pytest.raises(Exception, match="invalid_grant"):  # the revoked refresh token no longer works
        session.refresh_token(document["token_endpoint"], refresh_token=refreshed["refresh_token"])


@pytest.mark.parametrize("kind, alg", [("RSA", "PS256"), ("RSA", "RS256"), ("OKP", "Ed25519"), ("OKP", "EdDSA")])
def test_client_credentials_with_each_kind_of_key(live_server, kind, alg):
    key = new_key(kind)
    client_id = register_client(live_server, key, grant_types=("client_credentials",))
    response = client_credentials(live_server, assertion_form(key, client_id, f"{live_server.url}/oauth/token",
                                                              alg=alg))
    assert response.status_code == 200, response.text
    assert response.json()["token_type"].lower() == "bearer"


def test_the_issuer_is_an_audience_too(live_server):
    key = new_key()
    client_id = register_client(live_server, key, grant_types=("client_credentials",))
    assert client_credentials(live_server, assertion_form(key, client_id, live_server.url)).status_code == 200


SPOILED = {
    "another key": dict(key=lambda: new_key()),
    "expired": dict(lifetime=-120),
    "valid too long": dict(lifetime=3 * 3600),
    "another audience": dict(aud="https://other.example/token"),
    "another audience beside ours": dict(aud=["https://other.example/token", "ISSUER"]),  # audience injection
    "an audience that is no string": dict(aud=[{"iss": "x"}]),
    "iss is not sub": dict(iss="someone-else"),
    "no jti": dict(jti=None),
    "jti not a string": dict(jti=12345),
    "no exp": dict(exp=None),
    "not yet valid": dict(nbf=2_000_000_000),
    "an unknown client": dict(iss="nobody", sub="nobody"),
}


@pytest.mark.parametrize("spoiled", SPOILED, ids=list(SPOILED))
def test_a_spoiled_assertion_is_invalid_client_and_changes_nothing(live_server, spoiled):
    key = new_key()
    client_id = register_client(live_server, key, grant_types=("client_credentials",))
    options = dict(SPOILED[spoiled])
    signing_key = options.pop("key", lambda: key)()
    if isinstance(options.get("aud"), list):
        options["aud"] = [live_server.url if a == "ISSUER" else a for a in options["aud"]]
    if signing_key is not key:
        signing_key = new_key(kid=key.kid)  # the same kid, another key: the signature does not verify
    before = counts(live_server)
    response = client_credentials(live_server, assertion_form(signing_key, client_id,
                                                              f"{live_server.url}/oauth/token", **options))
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"
    assert response.headers["WWW-Authenticate"].startswith('Basic realm="idp"')
    assert counts(live_server) == before


def test_unsigned_and_hmac_assertions_are_refused(live_server):
    import base64

    key = new_key()
    client_id = register_client(live_server, key, grant_types=("client_credentials",))
    signed = assertion(key, client_id, f"{live_server.url}/oauth/token")
    header, payload, _signature = signed.split(".")

    def b64(document: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()

    unsigned = f"{b64({'alg': 'none'})}.{payload}."
    # HS256 keyed with the public key's JSON: the confusion a verifier that trusts the header falls for.
    from joserfc import jwt as jose_jwt
    from joserfc.jwk import OctKey

    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    hmac = jose_jwt.encode({"alg": "HS256", "kid": key.kid}, claims,
                           OctKey.import_key(json.dumps(key.as_dict(private=False))), algorithms=["HS256"])
    for forged in (unsigned, hmac, "not.a.jwt", "x" * 5000, f"{header}.{payload}"):
        response = client_credentials(live_server, {"client_assertion_type": ASSERTION_TYPE,
                                                    "client_assertion": forged})
        assert response.status_code == 401, (forged[:40], response.text)
        assert response.json()["error"] == "invalid_client"
    assert counts(live_server) == (0, 0)


def test_an_assertion_works_once(live_server):
    key = new_key()
    client_id = register_client(live_server, key, grant_types=("client_credentials",))
    form = assertion_form(key, client_id, f"{live_server.url}/oauth/token")
    assert client_credentials(live_server, form).status_code == 200
    replayed = client_credentials(live_server, form)
    assert replayed.status_code == 401 and replayed.json()["error"] == "invalid_client"
    assert counts(live_server) == (1, 1)


def test_one_way_of_authenticating_per_request(live_server, seeded):
    key = new_key()
    client_id = register_client(live_server, key, grant_types=("client_credentials",))
    token_url = f"{live_server.url}/oauth/token"
    # An assertion beside a secret: refused as malformed before anything is read or spent.
    both = client_credentials(live_server, {**assertion_form(key, client_id, token_url), "client_secret": "x"})
    assert both.status_code == 400 and both.json()["error"] == "invalid_request"
    basic = client_credentials(live_server, assertion_form(key, client_id, token_url), auth=(client_id, "x"))
    assert basic.status_code == 400 and basic.json()["error"] == "invalid_request"
    # A client_id sent along names another client than the assertion's.
    other = client_credentials(live_server, {**assertion_form(key, client_id, token_url),
                                             "client_id": seeded.third_party["client_id"]})
    assert other.status_code == 401 and other.json()["error"] == "invalid_client"
    # A client with keys has no secret to present, and a client with a secret signs nothing.
    assert client_credentials(live_server, {"client_id": client_id, "client_secret": "guess"}).status_code == 401
    secret_client = seeded.third_party["client_id"]
    signed_by_secret_client = client_credentials(live_server, assertion_form(key, secret_client, token_url))
    assert signed_by_secret_client.status_code == 401
    assert counts(live_server) == (0, 0)


def test_new_keys_work_at_once(live_server):
    """`idp client update --jwks` (clients.change) replaces the keys: a worker that still holds
    the client with its old keys reads it again when an assertion does not verify."""
    from idp import clients
    from idp.db import db

    old, new = new_key(), new_key()
    client_id = register_client(live_server, old, grant_types=("client_credentials",))
    token_url = f"{live_server.url}/oauth/token"
    assert client_credentials(live_server, assertion_form(old, client_id, token_url)).status_code == 200
    with live_server.context():
        clients.change(clients.find(client_id), jwks=public_set(new))
        db.session.commit()
    assert client_credentials(live_server, assertion_form(new, client_id, token_url)).status_code == 200


# ---------------------------------------------------------------------------- the `idp` command

def write_jwks(tmp_path, document, name: str = "jwks.json") -> str:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return str(path)


def test_the_idp_command_registers_shows_and_replaces_keys(url, idp, tmp_path):
    first, second = new_key("EC", kid="one"), new_key("RSA", kid="two")
    created = json.loads(ok(idp("client", "add", "--name", "Service", "--grant-type", "client_credentials",
                                "--jwks", write_jwks(tmp_path, public_set(first)), database_url=url)).stdout)
    assert set(created) == {"client_id"}  # no secret to print
    shown = json.loads(ok(idp("client", "show", created["client_id"], "--json", database_url=url)).stdout)
    assert shown["token_endpoint_auth_methods"] == ["private_key_jwt"]
    assert shown["jwk_thumbprints"] == [first.thumbprint()]
    assert f"{created['client_id']}  confidential (keys)  third-party" in ok(
        idp("client", "list", database_url=url)).stdout

    document = json.dumps(public_set(first, second))
    changed = ok(idp("client", "update", created["client_id"], "--jwks", "-", input=document, database_url=url))
    assert f"jwk_thumbprints: {first.thumbprint()} -> {first.thumbprint()}, {second.thumbprint()}" in changed.stdout
    third = new_key("RSA")  # one public key in PEM, as many tools export it
    changed = ok(idp("client", "update", created["client_id"], "--jwks", write_jwks(tmp_path, third.as_pem(
        private=False).decode(), "key.pem"), database_url=url))
    assert f"-> {third.thumbprint()}" in changed.stdout
    refused(idp("client", "rotate-secret", created["client_id"], database_url=url), "private_key_jwt")


def test_a_jwks_that_cannot_be_registered_is_refused_in_one_line(sqlite_only_url, idp, tmp_path, db):
    """Each reason is checked in tests/unit/test_client_jwks.py; here, how the command says one."""
    refused(idp("client", "add", "--name", "S", "--grant-type", "client_credentials",
                "--jwks", write_jwks(tmp_path, {"keys": [new_key().as_dict(private=True)]}),
                database_url=sqlite_only_url), "private or symmetric key")
    from idp.models import Client

    with db.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Client)) == 0


def test_keys_go_only_with_a_confidential_client_that_was_registered_with_keys(sqlite_only_url, idp, tmp_path):
    path = write_jwks(tmp_path, public_set(new_key()))
    refused(idp("client", "add", "--name", "S", "--public", "--redirect-uri", "http://127.0.0.1:9/cb",
                "--jwks", path, database_url=sqlite_only_url), "public")
    refused(idp("client", "add", "--name", "S", "--grant-type", "client_credentials", "--jwks",
                str(tmp_path / "missing.json"), database_url=sqlite_only_url), "cannot read --jwks")
    secret_client = json.loads(ok(idp("client", "add", "--name", "S", "--grant-type", "client_credentials",
                                      database_url=sqlite_only_url)).stdout)
    refused(idp("client", "update", secret_client["client_id"], "--jwks", path, database_url=sqlite_only_url),
            "register a new client")


@pytest.fixture
def issuer_only_server(migrated_database_url):
    from fixtures.oidc import start_server

    server = start_server(migrated_database_url, {"tokens.client_assertion_audience": "issuer"})
    yield server
    server.stop()


def test_a_server_may_take_its_issuer_alone_as_the_audience(issuer_only_server):
    """Against audience injection (OpenID Foundation, 2025): an assertion another server got from
    the client, naming this server's token endpoint, is refused; so is an array of audiences."""
    server = issuer_only_server
    key = new_key()
    client_id = register_client(server, key, grant_types=("client_credentials",))
    assert client_credentials(server, assertion_form(key, client_id, server.url)).status_code == 200
    for audience in (f"{server.url}/oauth/token", [server.url], [server.url, "https://other.example"]):
        before = counts(server)
        answer = client_credentials(server, assertion_form(key, client_id, audience))
        assert (answer.status_code, answer.json()["error"]) == (401, "invalid_client"), audience
        assert counts(server) == before
