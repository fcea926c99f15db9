"""`pending`, `watch` and `recover` against a server that answers with hostile JSON.

A malicious server, or anyone in the middle of a plain-http connection, chooses every byte of the
answer. Python's json reads NaN and Infinity (and int() then fails on them), and nests as deep as the
recursion limit: each must end as the documented protocol error (24 for push, 38 for recovery), one
line on stderr, not a traceback.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from authenticator_testkit import PASSPHRASE, one_line_error

PROTOCOL_ERROR = 24
RECOVERY_REFUSED = 38


class Handler(BaseHTTPRequestHandler):
    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        path = self.path.split("?")[0]
        status, body = self.server.answers.get(path, (404, b'{"error": "not_found"}'))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def hostile():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.answers = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def phone(app, hostile):
    """A push account with its own key, activated (as far as it knows) at the hostile server."""
    from authenticator.accounts import PUSH, Account, PushData
    from authenticator.push import keys
    from authenticator.store import Vault

    _server, url = hostile
    key = keys.new_private_key()
    vault = Vault.create(app.home, PASSPHRASE)
    vault.add(Account(id="", type=PUSH, issuer="evil", name="alice@example.com",
                      push=PushData(issuer_url=url, username="alice@example.com", device_id=keys.device_id(key),
                                    device_private_key=keys.private_pem(key), extra={"endpoint": url + "/push"})))
    vault.save()
    return app


def challenges(expires_at: str, context: str = "{}") -> bytes:
    return ('{"challenges": [{"id": "abcdefgh1234", "expires_at": %s, "context": %s}]}'
            % (expires_at, context)).encode()


DEEP = b"[" * 100_000 + b"]" * 100_000  # deeper than json.loads recurses
NESTED = b'{"a": ' + b"[" * 900 + b"]" * 900 + b"}"  # read by json.loads, but not printable again


@pytest.mark.parametrize("body", [
    challenges("Infinity"),
    challenges("-Infinity"),
    challenges("NaN"),
    challenges("1e999"),  # a float literal that Python reads as infinity
    b'{"challenges": ' + DEEP + b"}",
    DEEP,
    challenges("1700000100", NESTED.decode()),
], ids=["infinity", "minus-infinity", "nan", "1e999", "deep-list", "deep-answer", "deep-context"])
@pytest.mark.parametrize("command", [["pending"], ["--json", "pending"], ["watch"]])
def test_hostile_json_is_a_protocol_error(phone, hostile, body, command):
    server, _url = hostile
    server.answers["/push/challenges"] = (200, body)
    result = phone.run(*command)
    line = one_line_error(result)
    assert result.returncode == PROTOCOL_ERROR and "unexpected answer from the server (HTTP 200)" in line


def test_a_huge_integer_expiry_shows_the_request_as_expired(phone, hostile):
    """Valid JSON, and an int: but too large for a float, so `expires_at - time.time()` overflowed."""
    server, _url = hostile
    server.answers["/push/challenges"] = (200, challenges("1" + "0" * 400))
    assert "expires in 0s" in phone.ok("pending")
    assert json.loads(phone.ok("--json", "pending"))[0]["expires_at"] == 0


@pytest.fixture
def restored(app, hostile):
    from authenticator.accounts import NEEDS_VERIFICATION, PUSH, Account, PushData
    from authenticator.store import Vault

    _server, url = hostile
    vault = Vault.create(app.home, PASSPHRASE)
    stored = vault.add(Account(id="", type=PUSH, issuer="evil", name="alice@example.com",
                               push=PushData(issuer_url=url, username="alice@example.com",
                                             status=NEEDS_VERIFICATION)))
    vault.save()
    return app, stored.id


@pytest.mark.parametrize("step", ["start", "finish"])
@pytest.mark.parametrize("body", [DEEP, b'{"recovery_id": "r-1", "device_id": NaN}'], ids=["deep", "nan"])
def test_recover_against_hostile_json_is_refused_and_changes_nothing(restored, hostile, step, body):
    server, _url = hostile
    app, account = restored
    server.answers["/factors/qr_recovery/personal/start"] = (
        (200, body) if step == "start" else (200, b'{"recovery_id": "r-1", "sent_to": "a***@example.com"}'))
    server.answers["/factors/qr_recovery/personal/finish"] = (201, body)
    before = app.files()
    result = app.run("recover", account, "--password", stdin="a password\n123456\n")
    assert result.returncode == RECOVERY_REFUSED
    assert "Traceback" not in result.stderr and result.stderr.strip().splitlines()[-1].startswith(
        "idp-authenticator: ")
    assert app.files() == before


@pytest.mark.parametrize("retry_after", ["1e999", "[" + "1, " * 5000 + "1]", '"soon"', "1" + "0" * 400])
def test_a_hostile_retry_after_is_not_quoted(restored, hostile, retry_after):
    """Only a whole number of seconds is repeated in the message; anything else reads as the default."""
    server, _url = hostile
    app, account = restored
    server.answers["/factors/qr_recovery/personal/start"] = (
        429, b'{"error": "too_many_attempts", "retry_after": %s}' % retry_after.encode())
    result = app.run("recover", account, "--password", stdin="a password\n")
    assert one_line_error(result) == "idp-authenticator: too many attempts: wait 60 seconds and try again"
    assert result.returncode == 37
