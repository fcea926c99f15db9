"""Clients whose keys are published at their own URL (`jwks_uri`; idp.oidc.client_jwks): the
provider fetches them, keeps them, follows the client's rotation, and is not made to fetch them
by junk. The client's key server is a real HTTP server on loopback; assertions and request
objects are made with joserfc as a client library would."""
from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from fixtures import servers
from fixtures.client_assertion import assertion_form, new_key, public_set
from fixtures.oidc import FormBrowser
from test_request_objects import REDIRECT_URI, authorize_url, request_object


class KeyServer:
    """The client's own web server, publishing its JWK Set: what it serves can change, and every
    GET is counted."""

    def __init__(self) -> None:
        self.document: bytes = b"{}"
        self.status = 200
        self.fetches = 0
        self.declared_length: int | None = None  # a Content-Length other than the document's (cut short)
        self.trickle: float = 0.0  # seconds between bytes: a server that never quite answers
        self.endless_headers = False  # its status line, then one header's bytes a few at a time, for ever
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                owner.fetches += 1
                if owner.endless_headers:
                    try:
                        self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                        while True:  # each byte well within any read timeout; the headers never end
                            self.wfile.write(b"a")
                            self.wfile.flush()
                            time.sleep(0.05)
                    except (BrokenPipeError, ConnectionResetError):
                        return  # the provider gave up, as it should
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(owner.declared_length or len(owner.document)))
                self.end_headers()
                if not owner.trickle:
                    self.wfile.write(owner.document)
                    return
                try:
                    for byte in owner.document:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(owner.trickle)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the provider gave up waiting, as it should

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        servers.serve_in_background(self.http)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/jwks.json"

    def publish(self, *keys, private: bool = False) -> None:
        self.document = json.dumps({"keys": [key.as_dict(private=private) for key in keys]}).encode()


@pytest.fixture
def key_server():
    from idp.oidc import client_jwks

    client_jwks.forget_all()
    server = KeyServer()
    yield server
    servers.stop(server.http)
    client_jwks.forget_all()


def register(server, jwks_uri: str, **registration) -> str:
    from idp import clients
    from idp.db import db

    with server.context():
        row, secret = clients.register(clients.Registration(
            name="Published", redirect_uris=(REDIRECT_URI,), first_party=True, jwks_uri=jwks_uri,
            grant_types=("authorization_code", "client_credentials"), **registration))
        db.session.commit()
        assert secret is None
        return row.client_id


def client_credentials(server, key, client_id: str, **claims) -> requests.Response:
    return requests.post(f"{server.url}/oauth/token", timeout=10, data={
        "grant_type": "client_credentials", **assertion_form(key, client_id, server.url, **claims)})


def test_the_keys_are_fetched_once_and_kept(live_server, key_server):
    key = new_key()
    key_server.publish(key)
    client_id = register(live_server, key_server.url)
    for _ in range(3):
        answer = client_credentials(live_server, key, client_id)
        assert answer.status_code == 200, answer.text
    assert key_server.fetches == 1


def test_a_new_key_of_the_client_works_at_once_and_the_old_one_stops(live_server, key_server, monkeypatch):
    from idp.oidc import client_jwks

    old, new = new_key(), new_key()
    key_server.publish(old)
    client_id = register(live_server, key_server.url)
    assert client_credentials(live_server, old, client_id).status_code == 200
    key_server.publish(new)  # the client rotated: only the new key is published
    monkeypatch.setattr(client_jwks, "MIN_INTERVAL", 0.0)  # (its last fetch was a moment ago)
    answer = client_credentials(live_server, new, client_id)
    assert answer.status_code == 200, answer.text
    assert key_server.fetches == 2
    monkeypatch.setattr(client_jwks, "MAX_AGE", 0.0)  # the kept set expires: the old key is gone from it
    assert client_credentials(live_server, old, client_id).status_code == 401


def test_made_up_kids_do_not_make_the_provider_fetch_again_and_again(live_server, key_server):
    key = new_key()
    key_server.publish(key)
    client_id = register(live_server, key_server.url)
    assert client_credentials(live_server, key, client_id).status_code == 200
    for number in range(5):
        stranger = new_key(kid=f"made-up-{number}")
        answer = client_credentials(live_server, stranger, client_id)
        assert (answer.status_code, answer.json()["error"]) == (401, "invalid_client")
    assert key_server.fetches == 1  # within MIN_INTERVAL of the last fetch: none again


@pytest.mark.parametrize("failure", ["a 500", "not JSON", "a private key", "too big", "cut short", "nested too deep",
                                     "a key that is no key", "trickled"])
def test_keys_that_cannot_be_had_refuse_the_client_and_the_last_good_ones_are_kept(live_server, key_server,
                                                                                    monkeypatch, failure):
    from idp.oidc import client_jwks

    key = new_key()
    client_id = register(live_server, key_server.url)
    spoil = {
        "a 500": lambda: setattr(key_server, "status", 500),
        "not JSON": lambda: setattr(key_server, "document", b"<html>"),
        "a private key": lambda: key_server.publish(key, private=True),
        "too big": lambda: setattr(key_server, "document", b" " * (65 * 1024) + b"{}"),
        "cut short": lambda: setattr(key_server, "declared_length", len(key_server.document) + 100),
        "nested too deep": lambda: setattr(key_server, "document", b"[" * 100_000 + b"]" * 100_000),
        "a key that is no key": lambda: setattr(key_server, "document",
                                                b'{"keys": [{"kty": "RSA", "crv": [1], "alg": "RS256"}]}'),
        "trickled": lambda: (key_server.publish(key), setattr(key_server, "trickle", 0.1),
                             monkeypatch.setattr(client_jwks, "TIMEOUT", 0.5)),
    }
    mend = lambda: (setattr(key_server, "declared_length", None), setattr(key_server, "trickle", 0.0))  # noqa: E731
    spoil[failure]()
    answer = client_credentials(live_server, key, client_id)
    assert (answer.status_code, answer.json()["error"]) == (401, "invalid_client")
    fetched = key_server.fetches
    assert client_credentials(live_server, key, client_id).status_code == 401
    assert key_server.fetches == fetched  # a failure, however it came, waits MIN_INTERVAL too
    # Mended: fetched again once MIN_INTERVAL has passed.
    key_server.status = 200
    mend()
    key_server.publish(key)
    monkeypatch.setattr(client_jwks, "MIN_INTERVAL", 0.0)
    assert client_credentials(live_server, key, client_id).status_code == 200
    # Broken again, and the kept set is old: the last good keys still serve...
    spoil[failure]()
    monkeypatch.setattr(client_jwks, "MAX_AGE", 0.0)
    assert client_credentials(live_server, key, client_id).status_code == 200
    # ... for MAX_STALE seconds at most: a withdrawn key is not taken for ever.
    monkeypatch.setattr(client_jwks, "MAX_STALE", 0.0)
    assert client_credentials(live_server, key, client_id).status_code == 401


def test_a_server_that_never_ends_its_headers_is_cut_off_at_the_deadline(key_server, monkeypatch):
    """The deadline covers the whole fetch, the status line and headers included: requests' own
    timeout bounds each read, and a server sending a header a byte at a time would otherwise hold
    the worker for as long as it likes (an audit found it). The fetch ends, and says why."""
    from idp.oidc import client_jwks

    monkeypatch.setattr(client_jwks, "TIMEOUT", 0.5)
    key_server.endless_headers = True
    with pytest.raises(client_jwks.KeysUnavailable, match="no whole answer within 0.5 seconds"):
        client_jwks.key_set(key_server.url)


def test_a_request_object_is_verified_with_the_published_keys(live_server, key_server, seeded):
    key = new_key()
    key_server.publish(key)
    client_id = register(live_server, key_server.url)
    browser = FormBrowser(live_server.url)
    browser.get(authorize_url(live_server, client_id, request=request_object(
        key, client_id, live_server.url, code_challenge="c" * 43, code_challenge_method="S256")))
    browser.login(seeded.user_email, seeded.password)
    assert browser.callback_params()["state"] == "object-state"
    forged = request_object(new_key(kid=key.kid), client_id, live_server.url)
    answer = requests.get(authorize_url(live_server, client_id, request=forged, redirect_uri=REDIRECT_URI),
                          allow_redirects=False, timeout=10)
    assert parse_qs(urlsplit(answer.headers["Location"]).query)["error"] == ["invalid_request_object"]


def test_registration_takes_one_kind_of_keys(live_server, key_server):
    from idp import clients

    key = new_key()
    with live_server.context():
        for registration, message in (
                (dict(jwks=public_set(key), jwks_uri=key_server.url), "not both"),
                (dict(public=True, jwks_uri=key_server.url), "public client"),
                (dict(jwks_uri="ftp://keys.example/jwks"), "jwks_uri"),
                (dict(jwks_uri="https://keys.example/jwks#frag"), "fragment")):
            with pytest.raises(clients.ClientRefused, match=message):
                clients.register(clients.Registration(name="X", redirect_uris=(REDIRECT_URI,), **registration))


def test_the_idp_command_registers_a_jwks_uri_and_moves_between_the_two_kinds(sqlite_only_url, idp, tmp_path):
    from fixtures.cli import ok, refused

    created = json.loads(ok(idp("client", "add", "--name", "Service", "--grant-type", "client_credentials",
                                "--jwks-uri", "https://service.example/jwks.json",
                                database_url=sqlite_only_url)).stdout)
    assert set(created) == {"client_id"}  # no secret to print
    client_id = created["client_id"]
    shown = json.loads(ok(idp("client", "show", client_id, "--json", database_url=sqlite_only_url)).stdout)
    assert (shown["jwks_uri"], shown["jwk_thumbprints"], shown["token_endpoint_auth_methods"]) == (
        "https://service.example/jwks.json", [], ["private_key_jwt"])
    refused(idp("client", "rotate-secret", client_id, database_url=sqlite_only_url), "jwks_uri")

    key = new_key()
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(public_set(key)))
    changed = ok(idp("client", "update", client_id, "--jwks", str(path), database_url=sqlite_only_url)).stdout
    assert "jwks_uri: https://service.example/jwks.json -> -" in changed
    assert f"jwk_thumbprints: - -> {key.thumbprint()}" in changed
    changed = ok(idp("client", "update", client_id, "--jwks-uri", "https://service.example/v2/jwks.json",
                     database_url=sqlite_only_url)).stdout
    assert "jwks_uri: - -> https://service.example/v2/jwks.json" in changed

    secret_client = json.loads(ok(idp("client", "add", "--name", "S", "--grant-type", "client_credentials",
                                      database_url=sqlite_only_url)).stdout)
    refused(idp("client", "update", secret_client["client_id"], "--jwks-uri", "https://s.example/jwks",
                database_url=sqlite_only_url), "register a new client")
    refused(idp("client", "add", "--name", "S", "--grant-type", "client_credentials", "--jwks", str(path),
                "--jwks-uri", "https://s.example/jwks", database_url=sqlite_only_url), "not both")
