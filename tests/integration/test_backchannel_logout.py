"""OpenID Connect Back-Channel Logout 1.0 (idp.oidc.backchannel): a client registered with a
back-channel logout URI receives a signed logout token when a session it signed in through
ends, by any door. A real HTTP receiver plays the client's back end; the tokens are checked
against the published JWKS with joserfc, as a client library would."""
from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
import requests
from sqlalchemy import select

from fixtures import servers
from fixtures.cli import ok, refused
from fixtures.threads import finished
from fixtures.oidc import free_port, set_client, signed_in

EVENT = "http://schemas.openid.net/event/backchannel-logout"


class Receiver:
    """The client's back-channel endpoint: keeps each logout token it is sent, and answers with
    `statuses` in turn (the last one from then on)."""

    def __init__(self, *statuses: int) -> None:
        self.tokens: list[str] = []
        self.arrived = threading.Condition()
        answers = list(statuses or (200,))
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                with receiver.arrived:
                    receiver.tokens.extend(parse_qs(body).get("logout_token", []))
                    receiver.arrived.notify_all()
                    status = answers.pop(0) if len(answers) > 1 else answers[0]
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        servers.serve_in_background(self.server)
        self.url = f"http://127.0.0.1:{self.server.server_port}/backchannel-logout"

    def wait_for(self, count: int, timeout: float = 15.0) -> list[str]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.tokens) < count:
                left = deadline - time.monotonic()
                assert left > 0, f"{len(self.tokens)} logout token(s) arrived, {count} expected"
                self.arrived.wait(left)
            return list(self.tokens)

    def stop(self) -> None:
        servers.stop(self.server)


@pytest.fixture
def receiver():
    found = Receiver()
    yield found
    found.stop()


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    """The retries' delays, shortened: the server runs in this process."""
    from idp.oidc import backchannel

    monkeypatch.setattr(backchannel, "RETRY_DELAYS", (0.05, 0.1))


def sent_out() -> None:
    """Every back-channel delivery started so far has finished."""
    finished("backchannel-logout")


def register(live_server, client: dict, uri: str | None) -> None:
    set_client(live_server, client, backchannel_logout_uri=uri)


def decoded(live_server, token: str) -> tuple[dict, dict]:
    """(header, claims) of a logout token whose signature the JWKS verifies."""
    from joserfc import jwt
    from joserfc.jwk import KeySet

    metadata = requests.get(f"{live_server.url}/.well-known/openid-configuration", timeout=10).json()
    keys = KeySet.import_key_set(requests.get(metadata["jwks_uri"], timeout=10).json())
    found = jwt.decode(token, keys, algorithms=["ES256", "RS256"])
    return found.header, found.claims


def id_token_claims(live_server, id_token: str) -> dict:
    return decoded(live_server, id_token)[1]


def test_discovery_says_so(live_server):
    metadata = requests.get(f"{live_server.url}/.well-known/openid-configuration", timeout=10).json()
    assert metadata["backchannel_logout_supported"] is True
    assert metadata["backchannel_logout_session_supported"] is True


def test_an_rp_initiated_logout_tells_each_client_that_asked(live_server, seeded, rp_factory, receiver):
    register(live_server, seeded.third_party, receiver.url)
    browser, third, third_tokens = signed_in(live_server, seeded, rp_factory, seeded.third_party)
    _, first, first_tokens = signed_in(live_server, seeded, rp_factory, seeded.first_party, browser)  # SSO: same session
    browser.get(f"{first.metadata['end_session_endpoint']}?id_token_hint={first_tokens['id_token']}"
                f"&post_logout_redirect_uri={first.client['post_logout_redirect_uri']}")
    assert browser.last_redirect == first.client["post_logout_redirect_uri"]
    [token] = receiver.wait_for(1)
    header, claims = decoded(live_server, token)
    id_token = id_token_claims(live_server, third_tokens["id_token"])
    assert header["typ"] == "logout+jwt" and header["kid"]
    assert claims["iss"] == live_server.url and claims["aud"] == seeded.third_party["client_id"]
    assert claims["sub"] == id_token["sub"] and claims["sid"] == id_token["sid"]
    assert claims["events"] == {EVENT: {}} and "nonce" not in claims
    assert 0 < claims["exp"] - claims["iat"] <= 120 and claims["jti"]
    sent_out()
    assert len(receiver.tokens) == 1                                        # the first-party client asked for none


def test_sign_out_everywhere_tells_the_client_of_each_session(live_server, seeded, rp_factory, receiver):
    register(live_server, seeded.third_party, receiver.url)
    here, _, here_tokens = signed_in(live_server, seeded, rp_factory, seeded.third_party)
    there, _, there_tokens = signed_in(live_server, seeded, rp_factory, seeded.third_party)
    confirm = here.get("/account/security/sign-out-everywhere")
    here.submit(next(f for f in confirm.forms() if f["action"].endswith("/sign-out-everywhere")))
    sids = {decoded(live_server, token)[1]["sid"] for token in receiver.wait_for(2)}
    assert sids == {id_token_claims(live_server, t["id_token"])["sid"] for t in (here_tokens, there_tokens)}


def test_a_session_replaced_by_a_new_sign_in_tells_the_client(live_server, seeded, rp_factory, receiver):
    """Someone else signs in on the same browser (a shared computer), or the user signs in again
    (prompt=login): the browser's session is replaced, which ends the old one as a sign-out does."""
    register(live_server, seeded.third_party, receiver.url)
    browser, third, first_tokens = signed_in(live_server, seeded, rp_factory, seeded.third_party)
    old_sid = id_token_claims(live_server, first_tokens["id_token"])["sid"]
    browser.get(third.authorization_url(prompt="login"))
    browser.login(seeded.admin_email, seeded.password)
    browser.consent("allow")  # (a third-party application: the admin has not allowed it yet)
    assert browser.callback_params()["code"]
    [token] = receiver.wait_for(1)
    assert decoded(live_server, token)[1]["sid"] == old_sid


def test_ending_one_session_and_removing_access_tell_the_client(live_server, seeded, rp_factory, receiver):
    register(live_server, seeded.third_party, receiver.url)
    here, _, _ = signed_in(live_server, seeded, rp_factory, seeded.third_party)
    _, _, there_tokens = signed_in(live_server, seeded, rp_factory, seeded.third_party)
    there_sid = id_token_claims(live_server, there_tokens["id_token"])["sid"]
    page = here.get("/account/security")
    page = here.submit(next(f for f in page.forms() if f["action"].endswith(f"/sessions/{there_sid}/end")))
    assert decoded(live_server, receiver.wait_for(1)[0])[1]["sid"] == there_sid

    here.submit(next(f for f in page.forms()
                     if f["action"].endswith(f"/applications/{seeded.third_party['client_id']}/remove")))
    removed_token = receiver.wait_for(2)[1]
    removed = decoded(live_server, removed_token)[1]
    assert removed["sid"] != there_sid and removed["aud"] == seeded.third_party["client_id"]
    # The application told its access ended cannot use that logout token as an id_token_hint to
    # sign the user out unasked: it is not an ID token (RP-Initiated Logout 2).
    answer = here.get(f"/logout?id_token_hint={removed_token}")
    assert answer.status == 400 and here.get("/account/security").url.endswith("/account/security")
    # The session ended before was told once, when it ended; and this one, told now, is not
    # told again when it ends.
    here.get(f"/logout?client_id={seeded.third_party['client_id']}")
    here.submit(here.page.forms()[0])
    sent_out()
    assert len(receiver.tokens) == 2


def test_an_unreachable_client_does_not_hold_up_the_logout(live_server, seeded, rp_factory):
    register(live_server, seeded.third_party, f"http://127.0.0.1:{free_port()}/nobody-listens")
    browser, third, tokens = signed_in(live_server, seeded, rp_factory, seeded.third_party)
    browser.get(f"{third.metadata['end_session_endpoint']}?id_token_hint={tokens['id_token']}"
                f"&post_logout_redirect_uri={third.client['post_logout_redirect_uri']}")
    assert browser.last_redirect == third.client["post_logout_redirect_uri"]
    sent_out()
    browser.get(third.authorization_url(prompt="none"))
    assert browser.callback_params()["error"] == "login_required"


def deliveries(live_server) -> dict[str, float]:
    """idp_backchannel_logouts_total by outcome, from /metrics."""
    text = requests.get(f"{live_server.url}/metrics", timeout=10).text
    return {outcome: float(value) for outcome, value in
            re.findall(r'^idp_backchannel_logouts_total\{outcome="(\w+)"\} (\S+)$', text, re.M)}


@pytest.mark.parametrize("statuses, attempts, outcome", [
    ((503, 502, 204), 3, "delivered"),  # a client restarting: the third attempt reaches it
    ((503,), 3, "failed"),              # down throughout: three attempts, then given up
    ((400,), 1, "refused"),             # the client's own answer: never repeated
])
def test_a_transient_failure_is_tried_again_with_the_same_token(live_server, seeded, rp_factory, statuses,
                                                               attempts, outcome):
    client = Receiver(*statuses)
    try:
        register(live_server, seeded.third_party, client.url)
        before = deliveries(live_server).get(outcome, 0)
        browser, third, tokens = signed_in(live_server, seeded, rp_factory, seeded.third_party)
        browser.get(f"{third.metadata['end_session_endpoint']}?id_token_hint={tokens['id_token']}")
        sent = client.wait_for(attempts)
        sent_out()
        assert len(client.tokens) == attempts and len(set(sent)) == 1
        assert deliveries(live_server)[outcome] == before + 1
    finally:
        client.stop()


def test_the_uri_is_registered_and_checked_by_the_idp_command(url, idp):
    created = json.loads(ok(idp("client", "add", "--name", "App", "--redirect-uri", "https://app.example/cb",
                                "--backchannel-logout-uri", "https://app.example/bc", database_url=url)).stdout)
    shown = json.loads(ok(idp("client", "show", created["client_id"], "--json", database_url=url)).stdout)
    assert shown["backchannel_logout_uri"] == "https://app.example/bc"
    refused(idp("client", "update", created["client_id"], "--backchannel-logout-uri", "not a uri", database_url=url),
            "back-channel logout URI")
    assert "backchannel_logout_uri: https://app.example/bc -> -" in ok(
        idp("client", "update", created["client_id"], "--backchannel-logout-uri", "", database_url=url)).stdout


def test_idp_user_sign_out_delivers_before_the_command_ends(live_server, seeded, rp_factory, receiver, idp):
    register(live_server, seeded.third_party, receiver.url)
    signed_in(live_server, seeded, rp_factory, seeded.third_party)
    ok(idp("user", "sign-out", "--email", seeded.user_email, database_url=live_server.database_url))
    assert len(receiver.tokens) == 1                                        # already there: no waiting
    assert decoded(live_server, receiver.tokens[0])[1]["aud"] == seeded.third_party["client_id"]


def test_nothing_is_sent_for_a_sign_out_rolled_back(live_server, seeded, rp_factory, receiver):
    from idp import users
    from idp.db import db
    from idp.models import User

    register(live_server, seeded.third_party, receiver.url)
    signed_in(live_server, seeded, rp_factory, seeded.third_party)
    with live_server.context():
        alice = db.session.scalar(select(User).where(User.email == seeded.user_email))
        users.sign_out_everywhere(alice.id)
        db.session.rollback()
        db.session.commit()                                                 # a later, empty transaction
    sent_out()
    assert receiver.tokens == []


def test_a_removed_client_is_forgotten_by_the_sessions_it_was_signed_in_through(live_server, seeded, rp_factory,
                                                                                  receiver):
    from idp import clients
    from idp.db import db
    from idp.models import SessionClient

    register(live_server, seeded.third_party, receiver.url)
    signed_in(live_server, seeded, rp_factory, seeded.third_party)
    signed_in(live_server, seeded, rp_factory, seeded.first_party)          # (asked for nothing: not noted)
    with live_server.context():
        assert db.session.scalars(select(SessionClient.client_id)).all() == [seeded.third_party["client_id"]]
        clients.remove(clients.find(seeded.third_party["client_id"]))
        db.session.commit()
        assert db.session.scalars(select(SessionClient.client_id)).all() == []


class Misbehaving:
    """A client's back-channel endpoint that never finishes its answer: `silent` reads the
    request and says nothing; `endless` answers 200 and then sends a body that never ends;
    `trickling` sends its status line, then one header a byte at a time, each well within any
    read timeout, for ever."""

    def __init__(self, how: str) -> None:
        import socket

        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/backchannel-logout"
        self.stopped = threading.Event()
        self.requests = 0
        self.bytes_sent = 0
        self.how = how
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.listener.settimeout(0.05)
        while not self.stopped.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                continue
            self.requests += 1
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection) -> None:
        with connection:
            connection.recv(65536)
            try:
                if self.how == "endless":
                    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
                    while not self.stopped.is_set():
                        self.bytes_sent += len(chunk := b"x" * 65536)
                        connection.sendall(chunk)
                elif self.how == "trickling":
                    connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                    while not self.stopped.wait(0.05):
                        connection.sendall(b"a")
                else:
                    self.stopped.wait()
            except OSError:
                pass  # the provider hung up: what it should do

    def stop(self) -> None:
        self.stopped.set()
        self.listener.close()


@pytest.mark.parametrize("silent_one", ["first_party", "third_party"])  # whichever the tokens are sent to first
def test_a_client_that_does_not_answer_delays_no_other_clients_logout(live_server, seeded, rp_factory, receiver,
                                                                      monkeypatch, silent_one):
    """Each URI is told on a thread of its own: sent one after the other, the silent client's
    timeouts and retries could come first (with 5 s timeouts and a few sessions ended at once,
    the waiting client's tokens arrived past their 2-minute `exp`)."""
    from idp.oidc import backchannel

    monkeypatch.setattr(backchannel, "TIMEOUT", 1.5)
    silent = Misbehaving("silent")
    waiting_one = "third_party" if silent_one == "first_party" else "first_party"
    try:
        register(live_server, getattr(seeded, silent_one), silent.url)
        register(live_server, getattr(seeded, waiting_one), receiver.url)
        browser, third, tokens = signed_in(live_server, seeded, rp_factory, seeded.third_party)
        signed_in(live_server, seeded, rp_factory, seeded.first_party, browser)
        ended_at = time.monotonic()
        browser.get(f"{third.metadata['end_session_endpoint']}?id_token_hint={tokens['id_token']}")
        receiver.wait_for(1, timeout=2.5)
        assert time.monotonic() - ended_at < 2.5
        sent_out()
        assert silent.requests == 3                              # three attempts, still
    finally:
        silent.stop()


def test_a_client_answering_an_endless_body_is_done_with_at_its_status(live_server, seeded, rp_factory):
    """Only the status is read: a body that never ends neither holds the thread nor fills memory."""
    endless = Misbehaving("endless")
    try:
        register(live_server, seeded.third_party, endless.url)
        before = deliveries(live_server).get("delivered", 0)
        browser, third, tokens = signed_in(live_server, seeded, rp_factory, seeded.third_party)
        browser.get(f"{third.metadata['end_session_endpoint']}?id_token_hint={tokens['id_token']}")
        finished("backchannel-logout", timeout=5)
        assert not any(thread.name == "backchannel-logout" for thread in threading.enumerate())
        assert deliveries(live_server)["delivered"] == before + 1 and endless.requests == 1
        assert endless.bytes_sent < 50 * 1024 * 1024
    finally:
        endless.stop()


def test_a_client_trickling_its_answer_is_cut_off_at_the_deadline(live_server, seeded, rp_factory, monkeypatch):
    """requests' timeout bounds each read, not the answer: headers sent a byte at a time, each
    within it, held the delivery's thread for as long as the client liked (a thread that is no
    daemon: a worker or an `idp` command could not exit while it lived). Each attempt has
    TIMEOUT seconds in all."""
    from idp.oidc import backchannel

    monkeypatch.setattr(backchannel, "TIMEOUT", 0.5)
    trickling = Misbehaving("trickling")
    try:
        register(live_server, seeded.third_party, trickling.url)
        before = deliveries(live_server).get("failed", 0)
        browser, third, tokens = signed_in(live_server, seeded, rp_factory, seeded.third_party)
        browser.get(f"{third.metadata['end_session_endpoint']}?id_token_hint={tokens['id_token']}")
        finished("backchannel-logout", timeout=5)
        assert not any(thread.name == "backchannel-logout" for thread in threading.enumerate())
        assert deliveries(live_server)["failed"] == before + 1 and trickling.requests == 3
    finally:
        trickling.stop()


def test_a_session_idle_too_long_is_told_of_as_an_expired_one_is(migrated_database_url, receiver, clock):
    """`session.idle_timeout` (idp.session_idle): a session ending by the timeout, as by its
    lifetime, tells no client at that moment, and a sign-out everywhere afterwards tells the
    client of the sessions that were still live only."""
    from fixtures.oidc import RelyingParty, seed, start_server

    server = start_server(migrated_database_url, {"session.idle_timeout": 600})
    try:
        seeded = seed(server)
        register(server, seeded.third_party, receiver.url)
        rp_factory = lambda client: RelyingParty(server.url, client)  # noqa: E731
        idle, _, _ = signed_in(server, seeded, rp_factory, seeded.third_party)
        here, _, here_tokens = signed_in(server, seeded, rp_factory, seeded.third_party)
        clock(500)
        here.get("/account/security")                  # used: lives on
        clock(200)
        assert 'name="password"' in idle.get("/account/security").text  # idle 700 s: signs in again
        sent_out()
        assert receiver.tokens == []
        confirm = here.get("/account/security/sign-out-everywhere")
        here.submit(next(f for f in confirm.forms() if f["action"].endswith("/sign-out-everywhere")))
        [token] = receiver.wait_for(1)
        assert decoded(server, token)[1]["sid"] == id_token_claims(server, here_tokens["id_token"])["sid"]
        sent_out()
        assert len(receiver.tokens) == 1
    finally:
        server.stop()
