"""`pending`, `watch` and `recover` against a server that answers with hostile JSON.

A malicious server, or anyone in the middle of a plain-http connection, chooses every byte of the
answer. Python's json reads NaN and Infinity (and int() then fails on them), and nests as deep as the
recursion limit: each must end as the documented protocol error (24 for push, 38 for recovery), one
line on stderr, not a traceback.
"""

import base64
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from authenticator.backup.storage import BACKUP_FILE
from authenticator_testkit import PASSPHRASE, one_line_error

PROTOCOL_ERROR = 24
RECOVERY_REFUSED = 38


class Handler(BaseHTTPRequestHandler):
    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        request = self.rfile.read(length)
        self.server.requests.append((self.command, self.path))
        path = self.path.split("?")[0]
        status, body = self.server.answers.get(path, (404, b'{"error": "not_found"}'))
        if callable(body):  # an answer made from the request (one that names the registering key)
            body = body(request)
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
    server.requests = []  # (method, path) of every request, in order
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


CHALLENGE_ID = "c0ffee" * 10 + "abcd"  # 64 lowercase hex characters, as the protocol writes ids


def challenges(expires_at: str, context: str = "{}") -> bytes:
    return ('{"challenges": [{"id": "%s", "expires_at": %s, "context": %s}]}'
            % (CHALLENGE_ID, expires_at, context)).encode()


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


@pytest.mark.parametrize("path", ["/factors/qr_recovery/personal/start", "/factors/qr_recovery/redeem"])
@pytest.mark.parametrize("error", [b'["x"]', b'{"a": 1}'], ids=["list", "object"])
def test_an_error_that_is_not_text_is_one_line_and_changes_nothing(restored, hostile, path, error):
    """The refusal's `error` is looked up among the known ones: a list or an object raised a
    TypeError (a traceback, exit 1) until an audit saw it."""
    server, url = hostile
    app, account = restored
    server.answers[path] = (403, b'{"error": %s}' % error)
    before = app.files()
    if path.endswith("/redeem"):
        uri = (f"idp-recovery://redeem?v=1&issuer={url}&endpoint={url}/factors/qr_recovery"
               "&user=alice%40example.com&secret=AAAA-BBBB-CCCC")
        result = app.run("recover", account, "--qr", uri)
    else:
        result = app.run("recover", account, "--password", stdin="a password\n")
    assert result.returncode == RECOVERY_REFUSED
    assert "an error that is not text" in one_line_error(result)
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


def registered_as(user) -> callable:
    """A registration answer (201) for whatever key registers, naming it ``user``: the device id is the
    RFC 7638 thumbprint of the key in the registration token's header, as a real server computes it."""
    def answer(request: bytes) -> bytes:
        token = json.loads(request)["registration"]
        header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
        jwk = header["jwk"]
        canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
        device = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
        return json.dumps({"device_id": device, "user": user}).encode()
    return answer


@pytest.mark.parametrize("user", [42, 1.5, True, None, [], ["bob"], {}, {"name": "bob"}, "", "  "],
                         ids=repr)
def test_a_registration_naming_the_user_with_no_text_keeps_the_uri_s_user(app, hostile, make_app, tmp_path, user):
    """`"user": 42` used to become the account's name: every backup written from then on failed to
    restore (exit 12). Only a non-empty string names the user; else the URI's `user` does."""
    server, url = hostile
    server.answers["/push/register"] = (201, registered_as(user))
    app.ok("backup", "--enable", "--to", str(tmp_path / "cloud"))
    app.ok("add", f"idp-push://activate?v=1&issuer={url}&endpoint={url}/push&code=c0de&user=alice%40example.com")
    [account] = json.loads(app.ok("--json", "list"))
    assert account["name"] == "alice@example.com"
    restored = json.loads(make_app("new").ok("--json", "restore", "--from", str(tmp_path / "cloud")))
    assert [a["name"] for a in restored["accounts"]] == ["alice@example.com"]


def test_a_registration_naming_the_user_with_text_is_kept(app, hostile):
    server, url = hostile
    server.answers["/push/register"] = (201, registered_as("alice@work.example"))
    app.ok("add", f"idp-push://activate?v=1&issuer={url}&endpoint={url}/push&code=c0de&user=alice")
    assert [a["name"] for a in json.loads(app.ok("--json", "list"))] == ["alice@work.example"]


def test_a_backup_restore_would_refuse_is_never_written(app, tmp_path):
    """A store poisoned before the fix (a push account named 42): `backup --enable` and `backup --now`
    fail loudly (18) and leave the good backup in place; an automatic backup warns, the change is kept."""
    from authenticator.accounts import PUSH, Account, PushData
    from authenticator.store import Vault

    cloud = tmp_path / "cloud"
    app.ok("add", "otpauth://totp/ACME:alice?secret=JBSWY3DPEHPK3PXP")
    app.ok("backup", "--enable", "--to", str(cloud))
    good = (cloud / BACKUP_FILE).read_bytes()
    vault = Vault.open(app.home, PASSPHRASE)
    poisoned = vault.add(Account(id="", type=PUSH, issuer="evil", name=42,
                                 push=PushData(issuer_url="http://127.0.0.1:9", username=42)))
    vault.save()

    result = app.run("backup", "--now")
    assert result.returncode == 18
    assert one_line_error(result) == (f"idp-authenticator: backup not written: account evil:42 (id {poisoned.id}) "
                                      "holds data that restore would refuse; remove it and add it again, then back "
                                      "up (backup --now)")
    assert (cloud / BACKUP_FILE).read_bytes() == good
    result = app.run("backup", "--enable", "--to", str(cloud), "--replace")
    assert result.returncode == 18 and (cloud / BACKUP_FILE).read_bytes() == good

    result = app.run("add", "otpauth://totp/Bank:bob?secret=JBSWY3DPEHPK3PXP")
    assert result.returncode == 0
    assert result.stderr.startswith("idp-authenticator: warning: automatic backup failed: backup not written: ")
    assert (cloud / BACKUP_FILE).read_bytes() == good
    app.ok("remove", poisoned.id)
    app.ok("backup", "--now")
    assert (cloud / BACKUP_FILE).read_bytes() != good


def test_a_backup_restore_would_refuse_as_a_whole_says_why(app, tmp_path):
    """Each account reads back alone, but not the two together (the same account twice, which the store
    never holds unless edited): the reader's own reason is given."""
    from authenticator.store import Vault

    cloud = tmp_path / "cloud"
    app.ok("add", "otpauth://totp/ACME:alice?secret=JBSWY3DPEHPK3PXP")
    app.ok("backup", "--enable", "--to", str(cloud))
    vault = Vault.open(app.home, PASSPHRASE)
    vault.accounts.append(vault.accounts[0].with_id("deadbeef"))
    vault.save()
    result = app.run("backup", "--now")
    assert result.returncode == 18
    assert one_line_error(result) == ("idp-authenticator: backup not written: restore would refuse it (the backup's "
                                      "contents are not valid (authenticated, but it holds totp account ACME:alice "
                                      "twice))")


@pytest.mark.parametrize("bad_id", [
    "../../register",  # made `approve` sign a POST to /register/answer
    "abcdef?x=1#frag",  # changed the answer's query
    "abcdef%2F..%2F..%2Fregister",
    CHALLENGE_ID.upper(),
    CHALLENGE_ID[:-1],
    CHALLENGE_ID + "0",
    CHALLENGE_ID + "\n",
    "-" + CHALLENGE_ID[1:],  # an argparse option on the command line
    "",
], ids=repr)
def test_a_request_id_outside_the_protocol_is_never_listed_nor_answered(phone, hostile, bad_id):
    """docs/push-protocol.md: ids are 64 lowercase hex characters. Any other id the server lists is
    dropped (the good one beside it is kept), so no typed id or prefix can reach it, and nothing but
    the challenge list is ever requested."""
    server, _url = hostile
    listed = [{"id": bad_id, "expires_at": 1700000100}, {"id": CHALLENGE_ID, "expires_at": 1700000100}]
    server.answers["/push/challenges"] = (200, json.dumps({"challenges": listed}).encode())
    server.answers["/push/register/answer"] = (200, b'{"status": "approved"}')
    assert [c["id"] for c in json.loads(phone.ok("--json", "pending"))] == [CHALLENGE_ID]
    typed = {bad_id, "../../register"} - {""} - {CHALLENGE_ID[:n] for n in range(65)}
    for command in [["deny", "--", t] for t in sorted(typed)] + [["approve", "--number", "12", "--", bad_id]]:
        if not command[-1] or CHALLENGE_ID.startswith(command[-1]):
            continue  # a prefix of the good id names the good request
        result = phone.run(*command)
        assert result.returncode == 23 and "no pending request" in one_line_error(result)
    assert {method for method, _path in server.requests} == {"GET"}
    assert all(path.startswith("/push/challenges?") for _method, path in server.requests)


def test_an_id_is_quoted_in_the_answer_url_even_when_it_got_past_the_list():
    """Belt and braces: PushClient.answer itself refuses an id outside the protocol (before any
    request), and quotes the one it sends as a single path segment."""
    from authenticator.push.client import ChallengeUnavailable, PushClient

    class Refuse:
        def request(self, *args, **kwargs):
            raise AssertionError("no request may be sent for such an id")

    client = PushClient("http://127.0.0.1:9/push", key=None, session=Refuse())
    for bad in ("../../register", "a?x=1#f"):
        with pytest.raises(ChallengeUnavailable):
            client.answer(bad, "deny")


def _device_of(request: bytes) -> str:
    """The device id (RFC 7638 thumbprint) of the key in a recovery request's JWS header."""
    token = json.loads(request)["request"]
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    jwk = header["jwk"]
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def test_two_recover_runs_at_once_keep_one_key_and_name_the_other_device(restored, hostile):
    """Both runs passed the "already has a key" check before either saved: the server registered two
    devices. The run that saves second checks again under the lock, keeps the first key, and names
    its own device (status 25) so that it can be revoked."""
    from authenticator.store import Vault

    server, _url = hostile
    app, account = restored
    both_waiting = threading.Barrier(2, timeout=30)
    registered = []

    def finish(request: bytes) -> bytes:
        device = _device_of(request)
        registered.append(device)
        both_waiting.wait()  # neither run answers before the other has registered too
        return json.dumps({"device_id": device, "user": "alice@example.com"}).encode()

    server.answers["/factors/qr_recovery/personal/start"] = (
        200, b'{"recovery_id": "r-1", "sent_to": "a***@example.com"}')
    server.answers["/factors/qr_recovery/personal/finish"] = (201, finish)
    results = [None, None]

    def run(i):
        results[i] = app.run("recover", account, "--password", stdin="a password\n123456\n")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert sorted(r.returncode for r in results) == [0, 25], [r.stderr for r in results]
    loser = next(r for r in results if r.returncode == 25)
    [kept] = Vault.open(app.home, PASSPHRASE).accounts
    lost = next(d for d in registered if d != kept.push.device_id)
    assert kept.push.device_id in registered and kept.push.device_private_key
    line = loser.stderr.strip().splitlines()[-1]  # after the "a code was sent" note
    assert "Traceback" not in loser.stderr and f"(device id {lost})" in line and "must be revoked" in line
    assert f"another recover run gave this account its own key meanwhile (device {kept.push.device_id})" in line


class Trickle(BaseHTTPRequestHandler):
    """Answers at the pace the test sets: ``server.mode`` "headers" trickles the status line, "body"
    a long body, one byte every ``server.pause`` seconds; "huge" announces (or sends) 50 MiB."""

    def _answer(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        mode, pause = self.server.mode, self.server.pause
        try:
            if mode == "headers":
                for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(pause)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            if mode == "huge-announced":
                self.send_header("Content-Length", str(50 << 20))
                self.end_headers()
                self.wfile.write(b'{"challenges": [')
                return
            if mode == "huge-unannounced":
                self.end_headers()
                self.wfile.write(b'{"challenges": ["' + b"x" * (50 << 20) + b'"]}')
                return
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(100000):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(pause)
        except OSError:  # the app hung up: what it should do
            pass

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def trickling():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    server.mode, server.pause = "body", 0.5
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _push_account(vault, url: str, issuer: str):
    from authenticator.accounts import PUSH, Account, PushData
    from authenticator.push import keys

    key = keys.new_private_key()
    return vault.add(Account(id="", type=PUSH, issuer=issuer, name="alice@example.com",
                             push=PushData(issuer_url=url, username="alice@example.com",
                                           device_id=keys.device_id(key), device_private_key=keys.private_pem(key),
                                           extra={"endpoint": url + "/push"})))


SHORT_DEADLINE = "import authenticator.push.client as c; c.DEADLINE = 2.0; c.TIMEOUT = 1.0"


@pytest.mark.parametrize("mode", ["headers", "body"])
def test_a_trickling_server_is_given_up_at_the_deadline(app, trickling, mode):
    """A byte every 0.5 s never trips a per-read timeout (here 1 s): the whole exchange has a deadline."""
    from authenticator.store import Vault

    server, url = trickling
    server.mode = mode
    vault = Vault.create(app.home, PASSPHRASE)
    _push_account(vault, url, "slow")
    vault.save()
    started = time.monotonic()
    result = app.run("pending", prelude=SHORT_DEADLINE)
    assert time.monotonic() - started < 15
    assert result.returncode == 20
    assert one_line_error(result).endswith(f"cannot reach the server at {url[7:]}: no whole answer within 2 s")


@pytest.mark.parametrize("mode", ["huge-announced", "huge-unannounced"])
def test_a_huge_answer_is_refused_without_reading_it_all(app, trickling, mode):
    from authenticator.store import Vault

    server, url = trickling
    server.mode = mode
    vault = Vault.create(app.home, PASSPHRASE)
    _push_account(vault, url, "huge")
    vault.save()
    result = app.run("pending", memory_limit_mib=1024)
    assert result.returncode == PROTOCOL_ERROR
    assert one_line_error(result).endswith(f"the server at {url[7:]} sent an answer larger than 1024 KiB")


def test_one_slow_server_does_not_hold_the_others(app, trickling, hostile):
    """push-protocol.md section 10: the servers are asked in parallel, so the answering one's request
    is listed once the slow one's deadline is over, not after it."""
    from authenticator.store import Vault

    slow, slow_url = trickling
    good, good_url = hostile
    good.answers["/push/challenges"] = (200, challenges("1700000100"))
    vault = Vault.create(app.home, PASSPHRASE)
    _push_account(vault, slow_url, "slow")
    _push_account(vault, good_url, "good")
    vault.save()
    result = app.run("--json", "pending", prelude=SHORT_DEADLINE)
    assert result.returncode == 0 and [c["id"] for c in json.loads(result.stdout)] == [CHALLENGE_ID]
    assert "no whole answer within 2 s" in result.stderr


@pytest.mark.parametrize("status, command", [("approved", ["approve", "--number", "12"]), ("denied", ["deny"])])
def test_the_server_s_answer_cannot_overwrite_the_app_s_id_and_account(phone, hostile, status, command):
    from authenticator.store import Vault

    server, _url = hostile
    [account] = Vault.open(phone.home, PASSPHRASE).accounts
    server.answers["/push/challenges"] = (200, challenges("1700000100"))
    server.answers[f"/push/challenges/{CHALLENGE_ID}/answer"] = (
        200, json.dumps({"status": status, "id": "0" * 64, "account": "someone-else"}).encode())
    document = json.loads(phone.ok("--json", *command, "--", CHALLENGE_ID[:8]))
    assert document == {"status": status, "id": CHALLENGE_ID, "account": account.id}


# --- a URL two parsers read differently ------------------------------------------------------------

def _behind_a_backslash(hostile_url: str, shown_host: str) -> str:
    """``http://127.0.0.1:PORT\\@SHOWN_HOST``: urllib's urlsplit (the app's checks) reads the host after
    the "@" (SHOWN_HOST); urllib3, which requests sends with, ends the authority at the backslash and
    connects to 127.0.0.1:PORT, the server that was not checked."""
    return hostile_url + "\\@" + shown_host


@pytest.mark.parametrize("what", ["activation", "recovery"])
def test_a_backslash_in_a_url_does_not_send_the_code_to_a_server_the_checks_never_saw(app, hostile, what):
    """The issuer is http://localhost:1 (nothing listens there); the endpoint names it after a
    backslash: the same origin for urlsplit, another server for requests. The one-time code (or the
    recovery QR code's secret) went to that server; nothing may be sent."""
    from urllib.parse import quote

    server, url = hostile
    server.answers["/factors/push/v1/register"] = (201, b"{}")
    issuer = "http://localhost:1"
    endpoint = quote(_behind_a_backslash(url, "localhost:1"), safe=":/@")
    if what == "activation":
        uri = f"idp-push://activate?v=1&issuer={issuer}&endpoint={endpoint}/factors/push/v1&code=one-time"
    else:
        uri = (f"idp-recovery://redeem?v=1&issuer={issuer}&endpoint={endpoint}/factors/qr_recovery"
               f"&user=alice&secret=7KQ2M-X9D4T-AAAAA-BBBBB-CCCCC")
    result = app.run("add", uri)
    line = one_line_error(result)
    assert "endpoint URL" in line and "must be an https URL" not in line, line
    assert server.requests == []
    assert app.files() == {}


def test_a_backslash_does_not_make_plain_http_to_another_machine_look_like_loopback():
    """http is allowed to this machine only: http://evil.example\\@127.0.0.1 is read as 127.0.0.1 by
    urlsplit, but requests would send the secret, in clear, to evil.example."""
    from authenticator.errors import AuthenticatorError
    from authenticator.uris import server_url

    for url in ("http://evil.example\\@127.0.0.1/", "https://evil.example\\@idp.example/",
                "http://evil.example@127.0.0.1/", "https://idp.example:443@evil.example/"):
        with pytest.raises(AuthenticatorError):
            server_url(url, AuthenticatorError, "issuer URL")
    server_url("https://idp.example:8443/", AuthenticatorError, "issuer URL")
    server_url("http://[::1]:8080", AuthenticatorError, "issuer URL")


@pytest.mark.parametrize("answered", ["approved", None, [], {"status": "approved\x1b[2J"}, {"status": 1},
                                      {"reason": "denied"}], ids=repr)
def test_an_earlier_answer_the_app_cannot_read_is_no_earlier_answer(phone, hostile, answered):
    """`answered` is what this device's first answer recorded (docs/push-protocol.md 5.3): only an
    object with a status of the protocol's is taken for one; anything else leaves the 409 what it
    was, "already answered or has expired" (23), with nothing of the server's value printed."""
    server, _url = hostile
    server.answers["/push/challenges"] = (200, challenges("1700000100"))
    server.answers[f"/push/challenges/{CHALLENGE_ID}/answer"] = (
        409, json.dumps({"error": "challenge_closed", "answered": answered}).encode())
    result = phone.run("approve", "--number", "12", "--", CHALLENGE_ID[:8])
    assert result.returncode == 23 and result.stdout == ""
    assert one_line_error(result) == f"idp-authenticator: request {CHALLENGE_ID} was already answered or has expired"


def test_an_earlier_answer_keeps_the_app_s_id_and_account_and_only_its_status_and_reason(phone, hostile):
    from authenticator.store import Vault

    server, _url = hostile
    [account] = Vault.open(phone.home, PASSPHRASE).accounts
    server.answers["/push/challenges"] = (200, challenges("1700000100"))
    server.answers[f"/push/challenges/{CHALLENGE_ID}/answer"] = (409, json.dumps(
        {"error": "challenge_closed", "answered": {"status": "denied", "reason": "denied", "id": "0" * 64}}).encode())
    document = json.loads(phone.ok("--json", "deny", "--", CHALLENGE_ID[:8]))
    assert document == {"status": "denied", "reason": "denied", "already_counted": True, "id": CHALLENGE_ID,
                        "account": account.id}


def test_an_earlier_answer_other_than_this_one_is_not_said_to_be_this_one(phone, hostile):
    """`deny` told that this device's answer that counted was an approval: not "denied"."""
    server, _url = hostile
    server.answers["/push/challenges"] = (200, challenges("1700000100"))
    server.answers[f"/push/challenges/{CHALLENGE_ID}/answer"] = (
        409, json.dumps({"error": "challenge_closed", "answered": {"status": "approved"}}).encode())
    result = phone.run("deny", "--", CHALLENGE_ID[:8])
    assert result.returncode == 23 and result.stdout == ""
    assert one_line_error(result) == (f"idp-authenticator: request {CHALLENGE_ID} was already answered from this "
                                      "device (approved): that answer counted")
