"""Pushed authorization requests (RFC 9126; idp.oidc.pushed_requests): the client posts its
authorization request to /oauth/par with its credentials, and the browser carries only the
request_uri it got back. The requests are made by Authlib's client (RelyingParty), pushed as a
client would push them, and the login runs through the real pages."""
from __future__ import annotations

import base64
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from sqlalchemy import func, select, update

from fixtures.client_assertion import assertion_form, new_key, register_client
from fixtures.oidc import FormBrowser
from idp.oidc.server import clients as cache
from test_request_objects import REDIRECT_URI, logins_in_progress, request_object

PREFIX = "urn:ietf:params:oauth:request_uri:"


def par_url(server) -> str:
    return f"{server.url}/oauth/par"


def push(server, client: dict, params: dict, **extra) -> requests.Response:
    """POST the authorization request as `client` does: HTTP Basic with its secret, or its
    client_id alone when it is public."""
    auth = (client["client_id"], client["client_secret"]) if client.get("client_secret") else None
    body = dict(params, **extra)
    if auth is None:
        body.setdefault("client_id", client["client_id"])
    return requests.post(par_url(server), data=body, auth=auth, timeout=10)


def authorization_params(rp, **params) -> dict:
    """The parameters Authlib's client puts in its authorization URL (state, nonce, PKCE challenge)."""
    return {name: values[0] for name, values in parse_qs(urlsplit(rp.authorization_url(**params)).query).items()}


def by_reference(server, client_id: str, request_uri: str, **query) -> str:
    return f"{server.url}/authorize?{urlencode({'client_id': client_id, 'request_uri': request_uri, **query})}"


def stored_requests(server) -> int:
    from idp.db import db
    from idp.models import PushedRequest

    with server.context():
        count = db.session.scalar(select(func.count()).select_from(PushedRequest))
        db.session.rollback()
        return count


def test_discovery_names_the_endpoint(live_server):
    document = requests.get(f"{live_server.url}/.well-known/openid-configuration", timeout=10).json()
    assert document["pushed_authorization_request_endpoint"] == par_url(live_server)
    assert document["require_pushed_authorization_requests"] is False
    # Requests are not fetched from a client's own URL: only a pushed request's reference works.
    assert document["request_uri_parameter_supported"] is False


@pytest.mark.parametrize("kind", ["third_party", "public"])
def test_a_pushed_request_signs_the_user_in_and_the_query_beside_it_is_ignored(live_server, seeded, rp_factory,
                                                                               kind):
    client = getattr(seeded, kind)
    rp = rp_factory(client)
    params = authorization_params(rp, scope="openid email")
    pushed = push(live_server, client, params)
    assert pushed.status_code == 201, pushed.text
    assert pushed.headers["Cache-Control"] == "no-store"
    answer = pushed.json()
    assert answer["request_uri"].startswith(PREFIX) and answer["expires_in"] == 90
    assert len(answer["request_uri"]) > len(PREFIX) + 40

    browser = FormBrowser(live_server.url)
    # Beside the reference, the query asks for another state and no user interaction: both ignored.
    browser.get(by_reference(live_server, client["client_id"], answer["request_uri"], state="query-state",
                             prompt="none"))
    browser.login(seeded.user_email, seeded.password)
    if browser.last_redirect is None:
        browser.consent("allow")
    callback = browser.callback_params()
    assert callback["state"] == params["state"] and callback["iss"] == live_server.url
    tokens = rp.exchange(browser.last_redirect)
    claims = rp.validate_id_token(tokens["id_token"])  # the pushed nonce, our signature, audience, issuer
    assert claims["email"] == seeded.user_email
    assert tokens["scope"] == "openid email"
    assert stored_requests(live_server) == 0  # used: gone


def test_a_browser_already_signed_in_is_answered_by_its_session(live_server, seeded, rp_factory):
    """A pushed request brought by a browser signed in here (its session read before the
    reference is spent) is answered by that session, as a request in the query is: no login
    page, a code for the client (it was a 500)."""
    client = seeded.first_party
    rp = rp_factory(client)
    browser = FormBrowser(live_server.url)
    browser.get(rp.authorization_url())
    browser.login(seeded.user_email, seeded.password)
    assert "code" in browser.callback_params()

    params = authorization_params(rp, scope="openid email")
    request_uri = push(live_server, client, params).json()["request_uri"]
    browser.get(by_reference(live_server, client["client_id"], request_uri))
    callback = browser.callback_params()
    assert callback["state"] == params["state"], callback
    claims = rp.validate_id_token(rp.exchange(browser.last_redirect)["id_token"])
    assert claims["email"] == seeded.user_email
    assert stored_requests(live_server) == 0


def test_a_reference_is_good_for_one_authorization_request(live_server, seeded, rp_factory):
    client = seeded.first_party
    rp = rp_factory(client)
    request_uri = push(live_server, client, authorization_params(rp)).json()["request_uri"]
    first = requests.get(by_reference(live_server, client["client_id"], request_uri), allow_redirects=False,
                         timeout=10)
    assert first.status_code == 302 and "/login/" in first.headers["Location"]
    before = logins_in_progress(live_server)
    again = requests.get(by_reference(live_server, client["client_id"], request_uri), allow_redirects=False,
                         timeout=10)
    assert again.status_code == 400 and "Location" not in again.headers
    assert logins_in_progress(live_server) == before


def test_a_reference_is_its_own_clients_only_and_a_stranger_does_not_spend_it(live_server, seeded, rp_factory):
    client, other = seeded.first_party, seeded.third_party
    request_uri = push(live_server, client, authorization_params(rp_factory(client))).json()["request_uri"]
    # Another client naming it, with its own registered redirect URI: told so there, nothing started.
    stolen = requests.get(by_reference(live_server, other["client_id"], request_uri,
                                       redirect_uri=other["redirect_uri"], state="s"),
                          allow_redirects=False, timeout=10)
    sent = parse_qs(urlsplit(stolen.headers["Location"]).query)
    assert sent["error"] == ["invalid_request_uri"] and sent["state"] == ["s"]
    mine = requests.get(by_reference(live_server, client["client_id"], request_uri), allow_redirects=False,
                        timeout=10)
    assert mine.status_code == 302 and "/login/" in mine.headers["Location"]


def test_the_query_sends_the_reference_and_the_client_once(live_server, seeded, rp_factory):
    """RFC 6749 3.1: no parameter twice, the query's own included. Beside a reference, the rest of
    the query is ignored, and a second request_uri or client_id was too: the first was used."""
    client = seeded.first_party
    request_uri = push(live_server, client, authorization_params(rp_factory(client))).json()["request_uri"]
    query = {"client_id": client["client_id"], "request_uri": request_uri, "redirect_uri": client["redirect_uri"],
             "state": "s"}
    before = logins_in_progress(live_server)
    without_reference = [(name, value) for name, value in query.items() if name != "request_uri"]
    for twice in (list(query.items()) + [("request_uri", f"{PREFIX}other")],
                  without_reference + [("request", "a.b.c"), ("request", "x.y.z")]):
        answer = requests.get(f"{live_server.url}/authorize?{urlencode(twice)}", allow_redirects=False, timeout=10)
        sent = parse_qs(urlsplit(answer.headers["Location"]).query)
        assert sent["error"] == ["invalid_request"] and "more than once" in sent["error_description"][0], sent
        assert sent["state"] == ["s"] and sent["iss"] == [live_server.url]
    two_clients = list(query.items()) + [("client_id", client["client_id"])]
    page = requests.get(f"{live_server.url}/authorize?{urlencode(two_clients)}", allow_redirects=False, timeout=10)
    assert page.status_code == 400 and "Location" not in page.headers and "invalid_request" in page.text
    assert logins_in_progress(live_server) == before
    # None of these spent the reference.
    once = requests.get(f"{live_server.url}/authorize?{urlencode(query)}", allow_redirects=False, timeout=10)
    assert once.status_code == 302 and "/login/" in once.headers["Location"]


def test_an_expired_reference_is_refused(live_server, seeded, rp_factory):
    from idp.db import db
    from idp.maintenance import purge
    from idp.models import PushedRequest

    client = seeded.first_party
    request_uri = push(live_server, client, authorization_params(rp_factory(client))).json()["request_uri"]
    with live_server.context():
        db.session.execute(update(PushedRequest).values(expires_at=PushedRequest.expires_at - timedelta(seconds=91)))
        db.session.commit()
    answer = requests.get(by_reference(live_server, client["client_id"], request_uri,
                                       redirect_uri=client["redirect_uri"]), allow_redirects=False, timeout=10)
    assert parse_qs(urlsplit(answer.headers["Location"]).query)["error"] == ["invalid_request_uri"]
    with live_server.context():
        assert purge()["pushed_requests"] == 1
    assert stored_requests(live_server) == 0


def test_a_request_uri_from_elsewhere_is_not_fetched(live_server, seeded):
    client = seeded.first_party
    for query, error in (({"request_uri": "https://client.example/request.jwt"}, "request_uri_not_supported"),
                         ({"request_uri": f"{PREFIX}x", "request": "x.y.z"}, "invalid_request")):
        answer = requests.get(f"{live_server.url}/authorize?" + urlencode(
            {"client_id": client["client_id"], "redirect_uri": client["redirect_uri"], "state": "s", **query}),
            allow_redirects=False, timeout=10)
        assert parse_qs(urlsplit(answer.headers["Location"]).query)["error"] == [error], query


def test_prompt_none_is_answered_when_the_browser_comes(live_server, seeded, rp_factory):
    client = seeded.first_party
    rp = rp_factory(client)
    params = authorization_params(rp, prompt="none")
    request_uri = push(live_server, client, params).json()["request_uri"]
    answer = requests.get(by_reference(live_server, client["client_id"], request_uri), allow_redirects=False,
                          timeout=10)
    sent = parse_qs(urlsplit(answer.headers["Location"]).query)
    assert sent["error"] == ["login_required"] and sent["state"] == [params["state"]]


def test_a_client_with_keys_pushes_with_an_assertion_and_may_push_a_request_object(live_server, seeded):
    key = new_key()
    client_id = register_client(live_server, key, redirect_uri=REDIRECT_URI)
    signed = request_object(key, client_id, live_server.url, code_challenge="c" * 43, code_challenge_method="S256",
                            state="object-state")
    for body in ({"request": signed}, {"response_type": "code", "redirect_uri": REDIRECT_URI, "scope": "openid",
                                       "state": "plain", "code_challenge": "c" * 43,
                                       "code_challenge_method": "S256"}):
        pushed = requests.post(par_url(live_server), timeout=10, data={
            "client_id": client_id, **body, **assertion_form(key, client_id, live_server.url)})
        assert pushed.status_code == 201, pushed.text
        browser = FormBrowser(live_server.url)
        browser.get(by_reference(live_server, client_id, pushed.json()["request_uri"]))
        browser.login(seeded.user_email, seeded.password)
        assert browser.callback_params()["state"] == body.get("state", "object-state")


def _spoiled(client: dict, params: dict) -> dict:
    """Pushes that must be refused: (HTTP status, error, body, credentials)."""
    basic = (client["client_id"], client["client_secret"])
    return {
        "no client authentication": (401, "invalid_client", params, None),
        "a wrong secret": (401, "invalid_client", params, (client["client_id"], "wrong")),
        "an unregistered redirect URI": (400, "invalid_request", dict(params, redirect_uri="https://evil.example/cb"),
                                         basic),
        "no redirect URI": (400, "invalid_request", {k: v for k, v in params.items() if k != "redirect_uri"}, basic),
        "another response type": (400, "unsupported_response_type", dict(params, response_type="token"), basic),
        "no response type": (400, "invalid_request", {k: v for k, v in params.items() if k != "response_type"},
                             basic),
        "a plain PKCE challenge": (400, "invalid_request", dict(params, code_challenge_method="plain"), basic),
        "an unknown prompt": (400, "invalid_request", dict(params, prompt="sometimes"), basic),
        "max_age not a number": (400, "invalid_request", dict(params, max_age="soon"), basic),
        "a request_uri": (400, "invalid_request", dict(params, request_uri=f"{PREFIX}x"), basic),
        "another client_id": (400, "invalid_request", dict(params, client_id="someone-else"), basic),
        "a NUL": (400, "invalid_request", dict(params, state="a\x00b"), basic),
        "more than 16 KiB": (400, "invalid_request", dict(params, state="s" * 17000), basic),
        "a request object from a client without keys": (400, "request_not_supported",
                                                         dict(params, request="x.y.z"), basic),
    }


def test_a_request_that_authorize_would_refuse_is_refused_as_json_and_nothing_is_kept(live_server, seeded,
                                                                                       rp_factory):
    client = seeded.third_party
    params = authorization_params(rp_factory(client))
    for name, (status, error, body, auth) in _spoiled(client, params).items():
        answer = requests.post(par_url(live_server), data=body, auth=auth, allow_redirects=False, timeout=10)
        assert (answer.status_code, answer.json().get("error")) == (status, error), (name, answer.text)
        assert "Location" not in answer.headers, name
    repeated = requests.post(par_url(live_server), data=[*params.items(), ("scope", "openid")],
                             auth=(client["client_id"], client["client_secret"]), timeout=10)
    assert repeated.status_code == 400 and repeated.json()["error"] == "invalid_request"
    assert stored_requests(live_server) == 0


def test_a_request_object_that_cannot_be_used_is_refused_at_the_push(live_server):
    key = new_key()
    client_id = register_client(live_server, key, redirect_uri=REDIRECT_URI)
    expired = request_object(key, client_id, live_server.url, lifetime=-300)
    answer = requests.post(par_url(live_server), timeout=10, data={
        "client_id": client_id, "request": expired, **assertion_form(key, client_id, par_url(live_server))})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request_object"
    assert stored_requests(live_server) == 0


def test_only_post_is_answered(live_server):
    assert requests.get(par_url(live_server), timeout=10).status_code == 405


def test_a_client_that_must_push_is_refused_any_other_request(live_server, seeded, rp_factory):
    from idp import clients
    from idp.db import db

    client = seeded.first_party
    with live_server.context():
        clients.change(clients.find(client["client_id"]), require_pushed_authorization_requests=True)
        db.session.commit()
    cache.entries.clear()  # the server's copy of the client, read before the change (tokens.client_cache_ttl)
    rp = rp_factory(client)
    before = logins_in_progress(live_server)
    unpushed = requests.get(rp.authorization_url(), allow_redirects=False, timeout=10)
    sent = parse_qs(urlsplit(unpushed.headers["Location"]).query)
    assert sent["error"] == ["invalid_request"] and sent["state"] == [rp.state]
    assert "pushed" in sent["error_description"][0]
    by_value = requests.get(f"{live_server.url}/authorize?" + urlencode(
        {"client_id": client["client_id"], "request": "x.y.z"}), allow_redirects=False, timeout=10)
    assert by_value.status_code == 400 and "Location" not in by_value.headers
    assert logins_in_progress(live_server) == before

    request_uri = push(live_server, client, authorization_params(rp)).json()["request_uri"]
    browser = FormBrowser(live_server.url)
    browser.get(by_reference(live_server, client["client_id"], request_uri))
    browser.login(seeded.user_email, seeded.password)
    assert "code" in browser.callback_params()


@pytest.fixture
def strict_server(migrated_database_url):
    from fixtures.oidc import seed, start_server

    server = start_server(migrated_database_url, {"ratelimit.login_posts_per_ip": "3 per minute"})
    server.seeded = seed(server)
    yield server
    server.stop()


def test_a_public_clients_pushes_are_limited_per_address_a_confidential_clients_are_not(strict_server):
    """Each push is a stored row that a public client's id alone can ask for: limited as the login
    forms are. A confidential client's backend pushes all its users' logins from one address."""
    from fixtures.oidc import RelyingParty

    seeded = strict_server.seeded
    public, confidential = (RelyingParty(strict_server.url, c) for c in (seeded.public, seeded.first_party))
    answers = [push(strict_server, seeded.public, authorization_params(public)) for _ in range(4)]
    assert [a.status_code for a in answers] == [201, 201, 201, 429]
    assert answers[-1].json()["error"] == "too_many_attempts" and answers[-1].headers["Retry-After"]
    for _ in range(5):
        assert push(strict_server, seeded.first_party, authorization_params(confidential)).status_code == 201
    assert stored_requests(strict_server) == 8


@pytest.mark.parametrize("extra", ["bearer header", "basic with its own id", "client_assertion"])
def test_credentials_that_a_public_client_sends_along_do_not_lift_its_limit(strict_server, extra):
    """Whether a push is limited is decided by the client it names, not by what it carries: a
    public client authenticates by its id alone whatever else comes along (an audit pushed for
    one without end, an `Authorization` header or a junk `client_assertion` added to each)."""
    from fixtures.oidc import RelyingParty

    public = strict_server.seeded.public
    rp = RelyingParty(strict_server.url, public)
    headers, body = {}, {"client_id": public["client_id"]}
    if extra == "bearer header":
        headers["Authorization"] = "Bearer x"
    elif extra == "basic with its own id":
        headers["Authorization"] = "Basic " + base64.b64encode(f"{public['client_id']}:guess".encode()).decode()
    else:
        body["client_assertion"] = "x"
    statuses = [requests.post(par_url(strict_server), data=dict(authorization_params(rp), **body), headers=headers,
                              timeout=10).status_code for _ in range(5)]
    assert statuses == [201, 201, 201, 429, 429]
    assert stored_requests(strict_server) == 3


def test_a_client_named_by_its_assertion_alone_is_not_limited(strict_server):
    """private_key_jwt may leave `client_id` out (RFC 7523 3): the assertion's `sub` names the
    confidential client, whose pushes are not limited per address."""
    key = new_key()
    client_id = register_client(strict_server, key, redirect_uri=REDIRECT_URI)
    for _ in range(5):
        body = {"response_type": "code", "redirect_uri": REDIRECT_URI, "scope": "openid",
                "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256",
                **assertion_form(key, client_id, par_url(strict_server))}
        answer = requests.post(par_url(strict_server), data=body, timeout=10)
        assert answer.status_code == 201, answer.text
