"""DPoP server nonces (RFC 9449 8 and 9; idp.oidc.dpop, `tokens.dpop_require_nonce`): with
them required, a proof must carry a nonce the server gave out in its DPoP-Nonce header lately;
without one, or with an old or foreign one, the answer is use_dpop_nonce with the nonce to use.
Proofs made with joserfc as a client library makes them, over real HTTP."""
from __future__ import annotations

import base64
import time

import pytest
import requests

from fixtures.client_assertion import new_key
from fixtures.dpop import proof
from fixtures.oidc import FormBrowser, RelyingParty, password_login, seed, start_server


@pytest.fixture
def nonce_server(migrated_database_url):
    server = start_server(migrated_database_url, {"tokens.dpop_require_nonce": True})
    yield server
    server.stop()


def service(server) -> tuple[str, str]:
    from idp import clients
    from idp.db import db

    with server.context():
        row, secret = clients.register(clients.Registration(name="Service", grant_types=("client_credentials",)))
        db.session.commit()
        return row.client_id, secret


def grant(server, credentials, dpop_proof: str) -> requests.Response:
    return requests.post(f"{server.url}/oauth/token", auth=credentials, data={"grant_type": "client_credentials"},
                         headers={"DPoP": dpop_proof}, timeout=10)


def test_a_proof_without_the_servers_nonce_is_answered_with_one_to_use(nonce_server):
    credentials, key = service(nonce_server), new_key("EC")
    url = f"{nonce_server.url}/oauth/token"
    refused = grant(nonce_server, credentials, proof(key, "POST", url, jti="the-same-jti"))
    assert (refused.status_code, refused.json()["error"]) == (400, "use_dpop_nonce"), refused.text
    nonce = refused.headers["DPoP-Nonce"]
    # The refused proof was not spent: its jti may come again, now with the nonce.
    issued = grant(nonce_server, credentials, proof(key, "POST", url, jti="the-same-jti", nonce=nonce))
    assert issued.status_code == 200 and issued.json()["token_type"] == "DPoP", issued.text
    assert issued.headers["DPoP-Nonce"]                                    # the next proof's, offered
    again = grant(nonce_server, credentials, proof(key, "POST", url, nonce=issued.headers["DPoP-Nonce"]))
    assert again.status_code == 200


def test_an_old_or_foreign_nonce_is_not_taken(nonce_server):
    from idp.oidc import dpop

    credentials, key = service(nonce_server), new_key("EC")
    url = f"{nonce_server.url}/oauth/token"
    with nonce_server.context():
        old = dpop.current_nonce(now=time.time() - 2 * dpop.NONCE_STEP)
        current = dpop.current_nonce()
    step = base64.urlsafe_b64decode(current + "==")[:8]
    foreign = base64.urlsafe_b64encode(step + b"\0" * 16).rstrip(b"=").decode()  # this step, another key's
    for nonce in (old, foreign, "not a nonce", current[:-1]):
        answer = grant(nonce_server, credentials, proof(key, "POST", url, nonce=nonce))
        assert (answer.status_code, answer.json()["error"]) == (400, "use_dpop_nonce"), nonce
        assert answer.headers["DPoP-Nonce"] not in (old, foreign)


def test_a_users_login_with_nonces_token_and_userinfo(nonce_server):
    """A public client's whole DPoP login: each proof asked for the nonce once, then used it;
    UserInfo refuses with a DPoP challenge naming use_dpop_nonce (RFC 9449 9)."""
    seeded = seed(nonce_server)
    client, rp, key = seeded.public, RelyingParty(nonce_server.url, seeded.public), new_key("EC")
    token_url, userinfo_url = f"{nonce_server.url}/oauth/token", f"{nonce_server.url}/oauth/userinfo"
    code = password_login(FormBrowser(nonce_server.url), rp, seeded.user_email, seeded.password)["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": client["redirect_uri"],
            "code_verifier": rp.verifier, "client_id": client["client_id"]}
    refused = requests.post(token_url, data=form, headers={"DPoP": proof(key, "POST", token_url)}, timeout=10)
    assert (refused.status_code, refused.json()["error"]) == (400, "use_dpop_nonce")   # the code not spent
    nonce = refused.headers["DPoP-Nonce"]
    tokens = requests.post(token_url, data=form, timeout=10,
                           headers={"DPoP": proof(key, "POST", token_url, nonce=nonce)}).json()
    assert tokens["token_type"] == "DPoP", tokens
    access = tokens["access_token"]

    def userinfo(**claims):
        return requests.get(userinfo_url, timeout=10, headers={
            "Authorization": f"DPoP {access}", "DPoP": proof(key, "GET", userinfo_url, access_token=access, **claims)})

    asked = userinfo()
    assert asked.status_code == 401 and asked.headers["WWW-Authenticate"].startswith("DPoP ")
    assert 'error="use_dpop_nonce"' in asked.headers["WWW-Authenticate"]
    answered = userinfo(nonce=asked.headers["DPoP-Nonce"])
    assert answered.status_code == 200 and answered.json()["sub"], answered.text
    assert answered.headers["DPoP-Nonce"]


def test_a_pushed_request_with_a_proof_asks_for_the_nonce_too(nonce_server):
    from test_pushed_requests import authorization_params, par_url

    seeded = seed(nonce_server)
    client, key = seeded.public, new_key("EC")
    form = {**authorization_params(RelyingParty(nonce_server.url, client)), "client_id": client["client_id"]}
    refused = requests.post(par_url(nonce_server), data=form, timeout=10,
                            headers={"DPoP": proof(key, "POST", par_url(nonce_server))})
    assert (refused.status_code, refused.json()["error"]) == (400, "use_dpop_nonce")
    pushed = requests.post(par_url(nonce_server), data=form, timeout=10, headers={
        "DPoP": proof(key, "POST", par_url(nonce_server), nonce=refused.headers["DPoP-Nonce"])})
    assert pushed.status_code == 201 and pushed.headers["DPoP-Nonce"], pushed.text


def test_without_the_setting_no_nonce_is_asked_nor_offered(live_server):
    credentials, key = service(live_server), new_key("EC")
    answer = grant(live_server, credentials, proof(key, "POST", f"{live_server.url}/oauth/token"))
    assert answer.status_code == 200 and "DPoP-Nonce" not in answer.headers


def test_a_browser_based_client_reads_the_nonce_userinfo_asks_for(nonce_server):
    """A single-page app's UserInfo call that lacks the nonce is refused in a way its page can
    read (the origin named, DPoP-Nonce exposed): without that, the browser hid the refusal, and
    once the nonce it had from the token endpoint was old, the app could not learn the new one.
    A page of another origin still reads nothing."""
    from idp.security.origins import browser_origin

    seeded = seed(nonce_server)
    client, rp, key = seeded.public, RelyingParty(nonce_server.url, seeded.public), new_key("EC")
    origin = browser_origin(client["redirect_uri"])
    token_url, userinfo_url = f"{nonce_server.url}/oauth/token", f"{nonce_server.url}/oauth/userinfo"
    code = password_login(FormBrowser(nonce_server.url), rp, seeded.user_email, seeded.password)["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": client["redirect_uri"],
            "code_verifier": rp.verifier, "client_id": client["client_id"]}
    nonce = requests.post(token_url, data=form, headers={"DPoP": proof(key, "POST", token_url), "Origin": origin},
                          timeout=10).headers["DPoP-Nonce"]
    access = requests.post(token_url, data=form, timeout=10, headers={
        "DPoP": proof(key, "POST", token_url, nonce=nonce), "Origin": origin}).json()["access_token"]

    def userinfo(page_origin: str) -> requests.Response:
        return requests.get(userinfo_url, timeout=10, headers={
            "Origin": page_origin, "Authorization": f"DPoP {access}",
            "DPoP": proof(key, "GET", userinfo_url, access_token=access)})

    asked = userinfo(origin)
    assert asked.status_code == 401 and 'error="use_dpop_nonce"' in asked.headers["WWW-Authenticate"]
    assert asked.headers["Access-Control-Allow-Origin"] == origin
    assert "DPoP-Nonce" in asked.headers["Access-Control-Expose-Headers"] and asked.headers["DPoP-Nonce"]
    assert "Access-Control-Allow-Origin" not in userinfo("https://evil.example").headers
