"""DPoP (RFC 9449; idp.oidc.dpop): tokens bound to the client's key. The login runs through the
real pages with Authlib's client making the authorization request; token requests and UserInfo
calls carry proofs made with joserfc as a client library makes them."""
from __future__ import annotations

import base64

import pytest
import requests
from joserfc import jwt
from sqlalchemy import func, select

from fixtures.client_assertion import new_key
from fixtures.dpop import proof
from fixtures.oidc import password_login


def token_url(server) -> str:
    return f"{server.url}/oauth/token"


def userinfo_url(server) -> str:
    return f"{server.url}/oauth/userinfo"


def stored_tokens(server) -> int:
    from idp.db import db
    from idp.models import Token

    with server.context():
        count = db.session.scalar(select(func.count()).select_from(Token))
        db.session.rollback()
        return count


def code_for(live_server, web, rp, seeded, **params) -> str:
    callback = password_login(web, rp, seeded.user_email, seeded.password, scope="openid email offline_access",
                              prompt="consent", **params)
    return callback["code"]


def exchange(server, rp, client: dict, code: str, dpop_proof: str | None) -> requests.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": client["redirect_uri"],
            "code_verifier": rp.verifier}
    auth = None
    if client["client_secret"]:
        auth = (client["client_id"], client["client_secret"])
    else:
        data["client_id"] = client["client_id"]
    headers = {"DPoP": dpop_proof} if dpop_proof else {}
    return requests.post(token_url(server), data=data, auth=auth, headers=headers, timeout=10)


def userinfo(server, access_token: str, key=None, scheme: str = "DPoP", **proof_claims) -> requests.Response:
    headers = {"Authorization": f"{scheme} {access_token}"}
    if key is not None:
        headers["DPoP"] = proof(key, "GET", userinfo_url(server), access_token=access_token, **proof_claims)
    return requests.get(userinfo_url(server), headers=headers, timeout=10)


def test_discovery_names_the_proof_algorithms(live_server):
    document = requests.get(f"{live_server.url}/.well-known/openid-configuration", timeout=10).json()
    assert "ES256" in document["dpop_signing_alg_values_supported"]
    assert not {"none", "HS256"} & set(document["dpop_signing_alg_values_supported"])


def test_a_public_clients_tokens_are_bound_to_its_key(live_server, seeded, rp_factory, web):
    client = seeded.public
    rp = rp_factory(client)
    key = new_key()
    code = code_for(live_server, web, rp, seeded)
    answer = exchange(live_server, rp, client, code, proof(key, "POST", token_url(live_server)))
    assert answer.status_code == 200, answer.text
    tokens = answer.json()
    assert tokens["token_type"] == "DPoP" and "refresh_token" in tokens
    access = tokens["access_token"]

    assert userinfo(live_server, access, key).json()["sub"]
    as_bearer = userinfo(live_server, access, scheme="Bearer")
    assert as_bearer.status_code == 401 and as_bearer.headers["WWW-Authenticate"].startswith("DPoP ")
    assert 'error="invalid_token"' in as_bearer.headers["WWW-Authenticate"]
    no_proof = userinfo(live_server, access)
    assert no_proof.status_code == 401 and 'error="invalid_dpop_proof"' in no_proof.headers["WWW-Authenticate"]
    with_user_info = userinfo_url(live_server).replace("://", "://evil@")  # RFC 9449 4.3: no user info
    for spoiled in (dict(key=new_key()), dict(htm="POST"), dict(htu=f"{live_server.url}/oauth/token"),
                    dict(htu=with_user_info), dict(ath="x" * 43)):
        signing_key = spoiled.pop("key", key)
        refused = userinfo(live_server, access, signing_key, **spoiled)
        assert refused.status_code == 401, spoiled
        assert 'error="invalid_dpop_proof"' in refused.headers["WWW-Authenticate"], spoiled
    once = {"Authorization": f"DPoP {access}",
            "DPoP": proof(key, "GET", userinfo_url(live_server), access_token=access)}
    assert requests.get(userinfo_url(live_server), headers=once, timeout=10).status_code == 200
    assert requests.get(userinfo_url(live_server), headers=once, timeout=10).status_code == 401  # replayed

    # The refresh token is bound too (RFC 9449 5): refreshing takes a proof by the same key.
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": client["client_id"]}
    for headers in ({}, {"DPoP": proof(new_key(), "POST", token_url(live_server))}):
        refused = requests.post(token_url(live_server), data=refresh, headers=headers, timeout=10)
        assert (refused.status_code, refused.json()["error"]) == (400, "invalid_dpop_proof")
    renewed = requests.post(token_url(live_server), data=refresh, timeout=10,
                            headers={"DPoP": proof(key, "POST", token_url(live_server))})
    assert renewed.status_code == 200 and renewed.json()["token_type"] == "DPoP", renewed.text
    assert userinfo(live_server, renewed.json()["access_token"], key).status_code == 200


def test_a_bearer_token_is_not_taken_with_the_dpop_scheme(live_server, seeded, rp_factory, web):
    client = seeded.public
    rp = rp_factory(client)
    tokens = exchange(live_server, rp, client, code_for(live_server, web, rp, seeded), None).json()
    assert tokens["token_type"] == "Bearer"
    refused = userinfo(live_server, tokens["access_token"], new_key())
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("DPoP ")
    assert userinfo(live_server, tokens["access_token"], scheme="Bearer").status_code == 200


def test_introspection_tells_the_key_and_a_confidential_clients_refresh_is_not_bound(live_server, seeded, rp_factory,
                                                                                      web):
    client = seeded.third_party
    basic = (client["client_id"], client["client_secret"])
    rp = rp_factory(client)
    key = new_key()
    tokens = exchange(live_server, rp, client, code_for(live_server, web, rp, seeded),
                      proof(key, "POST", token_url(live_server))).json()
    assert tokens["token_type"] == "DPoP"
    about = requests.post(f"{live_server.url}/oauth/introspect", auth=basic, timeout=10,
                          data={"token": tokens["access_token"]}).json()
    assert about["active"] is True and about["token_type"] == "DPoP"
    assert about["cnf"] == {"jkt": key.thumbprint()}
    about_refresh = requests.post(f"{live_server.url}/oauth/introspect", auth=basic, timeout=10,
                                  data={"token": tokens["refresh_token"]}).json()
    assert "cnf" not in about_refresh

    # Its client authentication protects the refresh token; each access token is bound to the proof sent then.
    bearer = requests.post(token_url(live_server), auth=basic, timeout=10,
                           data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert bearer.status_code == 200 and bearer.json()["token_type"] == "Bearer", bearer.text
    other_key = new_key()
    bound = requests.post(token_url(live_server), auth=basic, timeout=10,
                          headers={"DPoP": proof(other_key, "POST", token_url(live_server))},
                          data={"grant_type": "refresh_token", "refresh_token": bearer.json()["refresh_token"]})
    assert bound.json()["token_type"] == "DPoP"
    assert userinfo(live_server, bound.json()["access_token"], other_key).status_code == 200


def _unsigned(key, url):
    header = base64.urlsafe_b64encode(b'{"typ":"dpop+jwt","alg":"none"}').rstrip(b"=").decode()
    return f"{header}.{proof(key, 'POST', url).split('.')[1]}."


def _hmac(key, url):
    from joserfc.jwk import OctKey

    secret = OctKey.generate_key(256)
    return jwt.encode({"typ": "dpop+jwt", "alg": "HS256", "jwk": secret.as_dict()}, {"jti": "j", "htm": "POST",
                      "htu": url, "iat": 1}, secret, algorithms=["HS256"])


def _small_rsa(url):
    from joserfc.jwk import RSAKey

    return proof(RSAKey.generate_key(1024, parameters={"kid": "small"}, private=True), "POST", url, alg="RS256")


SPOILED = {
    "another typ": lambda key, url: proof(key, "POST", url, header={"typ": "JWT"}),
    "no jwk": lambda key, url: proof(key, "POST", url, header={"jwk": None}),
    "a private jwk": lambda key, url: proof(key, "POST", url, header={"jwk": key.as_dict(private=True)}),
    "signed by another key": lambda key, url: proof(key, "POST", url, header={
        "jwk": new_key().as_dict(private=False)}),
    "unsigned": _unsigned,
    "HMAC": _hmac,
    "another method": lambda key, url: proof(key, "GET", url),
    "another URL": lambda key, url: proof(key, "POST", url.replace("/oauth/token", "/oauth/revoke")),
    "too old": lambda key, url: proof(key, "POST", url, iat=1_000_000_000),
    "from the future": lambda key, url: proof(key, "POST", url, iat=4_000_000_000),
    "no jti": lambda key, url: proof(key, "POST", url, jti=None),
    "a small RSA key": lambda key, url: _small_rsa(url),
    "not a JWT": lambda key, url: "not-a-jwt",
}


@pytest.mark.parametrize("spoiled", SPOILED, ids=list(SPOILED))
def test_a_proof_that_cannot_be_used_is_invalid_dpop_proof_and_nothing_is_issued(live_server, seeded, spoiled):
    from idp import clients
    from idp.db import db

    with live_server.context():
        row, secret = clients.register(clients.Registration(name="Service", grant_types=("client_credentials",)))
        db.session.commit()
        client_id = row.client_id
    before = stored_tokens(live_server)
    answer = requests.post(token_url(live_server), auth=(client_id, secret), data={"grant_type": "client_credentials"},
                           headers={"DPoP": SPOILED[spoiled](new_key(), token_url(live_server))}, timeout=10)
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_dpop_proof"), answer.text
    assert stored_tokens(live_server) == before


def test_client_credentials_with_a_proof_and_a_proof_used_twice(live_server):
    from idp import clients
    from idp.db import db

    with live_server.context():
        row, secret = clients.register(clients.Registration(name="Service", grant_types=("client_credentials",)))
        db.session.commit()
    key = new_key("RSA")
    signed = proof(key, "POST", token_url(live_server), alg="PS256")
    form = {"grant_type": "client_credentials"}
    first = requests.post(token_url(live_server), auth=(row.client_id, secret), data=form, headers={"DPoP": signed},
                          timeout=10)
    assert first.status_code == 200 and first.json()["token_type"] == "DPoP", first.text
    again = requests.post(token_url(live_server), auth=(row.client_id, secret), data=form, headers={"DPoP": signed},
                          timeout=10)
    assert (again.status_code, again.json()["error"]) == (400, "invalid_dpop_proof")
    about = requests.post(f"{live_server.url}/oauth/introspect", auth=(row.client_id, secret), timeout=10,
                          data={"token": first.json()["access_token"]}).json()
    assert about["cnf"] == {"jkt": key.thumbprint()}


def test_two_proofs_are_refused(live_server):
    import http.client
    from urllib.parse import urlsplit

    key = new_key()
    url = token_url(live_server)
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    body = "grant_type=client_credentials&client_id=nobody"
    connection.putrequest("POST", parts.path)
    for _ in range(2):
        connection.putheader("DPoP", proof(key, "POST", url))
    connection.putheader("Content-Type", "application/x-www-form-urlencoded")
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body.encode())
    answer = connection.getresponse()
    assert answer.status == 400 and b"invalid_dpop_proof" in answer.read()


def test_a_code_requested_with_dpop_jkt_is_exchanged_only_with_that_key(live_server, seeded, rp_factory):
    """RFC 9449 10: the authorization request names the key's thumbprint; the code is bound to it."""
    from fixtures.oidc import FormBrowser

    client = seeded.public
    key = new_key()
    for presented, expected in ((None, 400), (new_key(), 400), (key, 200)):
        rp = rp_factory(client)
        browser = FormBrowser(live_server.url)
        code = password_login(browser, rp, seeded.user_email, seeded.password, dpop_jkt=key.thumbprint())["code"]
        signed = proof(presented, "POST", token_url(live_server)) if presented is not None else None
        answer = exchange(live_server, rp, client, code, signed)
        assert answer.status_code == expected, answer.text
        if expected == 400:
            assert answer.json()["error"] == "invalid_dpop_proof"
    assert answer.json()["token_type"] == "DPoP"


def test_a_malformed_dpop_jkt_goes_back_as_invalid_request(live_server, seeded, rp_factory):
    from urllib.parse import parse_qs, urlsplit

    rp = rp_factory(seeded.public)
    answer = requests.get(rp.authorization_url(dpop_jkt="not-a-thumbprint"), allow_redirects=False, timeout=10)
    sent = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert sent["error"] == ["invalid_request"] and "dpop_jkt" in sent["error_description"][0]


def test_a_proof_sent_with_a_pushed_request_binds_its_code(live_server, seeded, rp_factory):
    """RFC 9449 10.1: a DPoP proof at the PAR endpoint does what dpop_jkt does."""
    from fixtures.oidc import FormBrowser
    from test_pushed_requests import authorization_params, by_reference, par_url, push

    client = seeded.public
    key = new_key()
    mismatched = push(live_server, client, authorization_params(rp_factory(client)),
                      dpop_jkt=new_key().thumbprint())
    assert mismatched.status_code == 201  # (no proof: dpop_jkt alone is taken as it is)
    wrong_url = requests.post(par_url(live_server), timeout=10, headers={"DPoP": proof(key, "POST", token_url(
        live_server))}, data={**authorization_params(rp_factory(client)), "client_id": client["client_id"]})
    assert (wrong_url.status_code, wrong_url.json()["error"]) == (400, "invalid_dpop_proof")
    other_jkt = requests.post(par_url(live_server), timeout=10, headers={"DPoP": proof(key, "POST", par_url(
        live_server))}, data={**authorization_params(rp_factory(client)), "client_id": client["client_id"],
                               "dpop_jkt": new_key().thumbprint()})
    assert (other_jkt.status_code, other_jkt.json()["error"]) == (400, "invalid_dpop_proof")

    for presented, expected in ((None, 400), (key, 200)):
        rp = rp_factory(client)
        pushed = requests.post(par_url(live_server), timeout=10,
                               headers={"DPoP": proof(key, "POST", par_url(live_server))},
                               data={**authorization_params(rp), "client_id": client["client_id"]})
        assert pushed.status_code == 201, pushed.text
        browser = FormBrowser(live_server.url)
        browser.get(by_reference(live_server, client["client_id"], pushed.json()["request_uri"]))
        browser.login(seeded.user_email, seeded.password)
        if browser.last_redirect is None:
            browser.consent("allow")
        signed = proof(presented, "POST", token_url(live_server)) if presented is not None else None
        answer = exchange(live_server, rp, client, browser.callback_params()["code"], signed)
        assert answer.status_code == expected, answer.text


def test_a_client_registered_for_dpop_gets_no_token_without_a_proof(live_server, seeded, rp_factory, web):
    from idp import clients
    from idp.db import db
    from idp.oidc.server import clients as cache

    with live_server.context():
        row, secret = clients.register(clients.Registration(name="Service", grant_types=("client_credentials",),
                                                            dpop_bound_access_tokens=True))
        clients.change(clients.find(seeded.public["client_id"]), dpop_bound_access_tokens=True)
        db.session.commit()
    cache.entries.clear()
    form = {"grant_type": "client_credentials"}
    bare = requests.post(token_url(live_server), auth=(row.client_id, secret), data=form, timeout=10)
    assert (bare.status_code, bare.json()["error"]) == (400, "invalid_dpop_proof")
    bound = requests.post(token_url(live_server), auth=(row.client_id, secret), data=form, timeout=10,
                          headers={"DPoP": proof(new_key(), "POST", token_url(live_server))})
    assert bound.status_code == 200 and bound.json()["token_type"] == "DPoP"

    # Refused before the grant runs: the code is not spent by the refusal.
    client = seeded.public
    rp = rp_factory(client)
    code = code_for(live_server, web, rp, seeded)
    assert exchange(live_server, rp, client, code, None).json()["error"] == "invalid_dpop_proof"
    answer = exchange(live_server, rp, client, code, proof(new_key(), "POST", token_url(live_server)))
    assert answer.status_code == 200 and answer.json()["token_type"] == "DPoP", answer.text
