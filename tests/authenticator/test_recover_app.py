"""`recover` without a server in reach: what the app checks itself, and its messages.

The full flows against a live server (admin-issued QR code, password plus e-mailed code) are in
tests/integration/test_recovery_qr_push.py and test_recovery_password_email.py.
"""
import socket
from urllib.parse import urlencode

import pytest

from authenticator_testkit import PASSPHRASE, TOTP_URI, one_line_error


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def restored(app):
    """A home holding one push account as a restore leaves it: no key, needs verification."""
    from authenticator.accounts import NEEDS_VERIFICATION, PUSH, Account, PushData
    from authenticator.store import Vault

    issuer = f"http://127.0.0.1:{closed_port()}"
    vault = Vault.create(app.home, PASSPHRASE)
    stored = vault.add(Account(id="", type=PUSH, issuer="acme", name="alice@example.com",
                               push=PushData(issuer_url=issuer, username="alice@example.com",
                                             status=NEEDS_VERIFICATION)))
    vault.save()
    return app, stored.id, issuer


def recovery_uri(issuer, user="alice@example.com", v="1", secret="7KQ2M-X9D4T-AAAAA-BBBBB-CCCCC"):
    return "idp-recovery://redeem?" + urlencode({"v": v, "issuer": issuer, "endpoint": issuer + "/factors/qr_recovery",
                                                 "user": user, "secret": secret, "expires": 2000000000})


def qr_png(tmp_path, text, name="code.png"):
    import segno

    path = tmp_path / name
    segno.make(text, error="m").save(str(path), kind="png", scale=5)
    return path


def test_unreachable_server_changes_nothing(restored, tmp_path):
    app, account, issuer = restored
    before = app.files()
    result = app.run("recover", account, "--qr", str(qr_png(tmp_path, recovery_uri(issuer))))
    assert result.returncode == 20 and "cannot reach the server" in one_line_error(result)
    result = app.run("recover", account, "--password", stdin="a password\n123456\n")
    assert result.returncode == 20 and "cannot reach the server" in one_line_error(result)
    assert app.files() == before


def test_a_code_for_another_server_or_user_is_refused_before_any_request(restored, tmp_path):
    app, account, issuer = restored
    other = app.run("recover", account, "--qr", recovery_uri("https://idp.other.test"))
    assert "is for https://idp.other.test" in one_line_error(other)
    bob = app.run("recover", account, "--qr", recovery_uri(issuer, user="bob@example.com"))
    assert "is for bob@example.com" in one_line_error(bob)


def test_not_a_recovery_code(restored, tmp_path):
    app, account, issuer = restored
    totp_png = qr_png(tmp_path, TOTP_URI)
    assert "not a recovery QR code" in one_line_error(app.run("recover", account, "--qr", str(totp_png)))
    newer = app.run("recover", account, "--qr", recovery_uri(issuer, v="2"))
    assert "version '2' is not supported" in one_line_error(newer)
    assert "no such file" in one_line_error(app.run("recover", account, "--qr", str(tmp_path / "missing.png")))


def test_a_qr_code_on_a_phone_without_the_account_points_to_add(app, tmp_path):
    """A new phone with no backup has no account to recover: the recovery QR code is added instead."""
    png = qr_png(tmp_path, recovery_uri("https://idp.example.test"))
    result = app.run("recover", "alice@example.com", "--qr", str(png))
    assert result.returncode == 1
    assert one_line_error(result) == ("idp-authenticator: no account matches 'alice@example.com': on a device holding "
                                      "no backup of the account, add the recovery QR code instead "
                                      f"(idp-authenticator --home {app.home} add IMAGE)")
    assert not app.home.exists() or not any(app.home.iterdir())


def test_only_push_accounts_are_recovered(app):
    app.ok("add", TOTP_URI)
    result = app.run("recover", "ACME:alice@example.com", "--password", stdin="pw\n")
    assert "is not a push account" in one_line_error(result)


def test_password_needs_stdin(restored):
    app, account, _issuer = restored
    result = app.run("recover", account, "--password", stdin="")
    assert "no password on stdin" in one_line_error(result)


def test_one_way_at_a_time(restored):
    app, account, _issuer = restored
    assert app.run("recover", account).returncode != 0
    assert app.run("recover", account, "--password", "--qr", "x.png").returncode != 0


def test_password_from_stdin_still_works_without_a_terminal(restored):
    """Piped stdin is the documented non-interactive way (docs/recovery.md section 3): it is read, not refused."""
    app, account, issuer = restored
    result = app.run("recover", account, "--password", stdin="a password\n123456\n")
    assert result.returncode == 20 and "cannot reach the server" in one_line_error(result)


def test_recover_password_with_no_stdin_at_all_is_a_one_line_error(restored):
    app, account, issuer = restored
    before = app.files()
    result = app.run("recover", account, "--password", close_stdin=True)
    assert one_line_error(result).startswith("idp-authenticator: no password on stdin")
    assert result.returncode == 1 and app.files() == before


def test_recover_password_from_stdin_that_is_not_utf8_is_a_one_line_error(restored, tmp_path):
    app, account, issuer = restored
    lines = tmp_path / "stdin.bin"
    lines.write_bytes(b"pass\xffword\n123456\n")
    result = app.run("recover", account, "--password", stdin_file=lines, env={"PYTHONIOENCODING": "utf-8"})
    assert one_line_error(result) == "idp-authenticator: stdin is not UTF-8 text" and result.returncode == 1


def test_recover_password_from_a_surrogateescape_stdin_sends_nothing(restored, tmp_path):
    """Under a C.UTF-8 locale Python decodes stdin with surrogateescape: the bytes that are not
    UTF-8 arrive as lone surrogates, and were posted to the server as the password."""
    app, account, issuer = restored
    lines = tmp_path / "stdin.bin"
    lines.write_bytes(b"pass\xffword\n123456\n")
    before = app.files()
    result = app.run("recover", account, "--password", stdin_file=lines,
                     env={"PYTHONIOENCODING": "utf-8:surrogateescape"})
    # The server is not reachable: any request would have been exit 20.
    assert one_line_error(result) == "idp-authenticator: stdin is not UTF-8 text" and result.returncode == 1
    assert app.files() == before


def test_a_code_line_that_is_not_utf8_is_not_sent(monkeypatch):
    import io

    from authenticator import recover
    from authenticator.accounts import NEEDS_VERIFICATION, PUSH, Account, PushData
    from authenticator.errors import AuthenticatorError
    from authenticator.push import keys

    posted = []

    def post(url, body, session=None):
        posted.append(url)
        return 200, {"recovery_id": "r-1", "sent_to": "a***@example.com"}

    monkeypatch.setattr(recover, "_post", post)
    account = Account(id="a1", type=PUSH, issuer="acme", name="alice@example.com",
                      push=PushData(issuer_url="https://idp.example", username="alice@example.com",
                                    status=NEEDS_VERIFICATION))
    reader = recover.LineReader(io.StringIO("a password\n12\udcff34\n"), err=io.StringIO())
    with pytest.raises(AuthenticatorError, match="stdin is not UTF-8 text"):
        recover.recover_by_password(account, keys.new_private_key(), reader)
    assert posted == ["https://idp.example/factors/qr_recovery/personal/start"]  # never /personal/finish


@pytest.fixture
def active(app):
    """A home holding a push account with its own key, as `add` with an activation code leaves it."""
    from authenticator.accounts import PUSH, Account, PushData
    from authenticator.push import keys
    from authenticator.store import Vault

    issuer = f"http://127.0.0.1:{closed_port()}"
    key = keys.new_private_key()
    vault = Vault.create(app.home, PASSPHRASE)
    stored = vault.add(Account(id="", type=PUSH, issuer="acme", name="alice@example.com",
                               push=PushData(issuer_url=issuer, username="alice@example.com",
                                             device_id=keys.device_id(key), device_private_key=keys.private_pem(key))))
    vault.save()
    return app, stored.id, issuer


def test_an_account_with_its_own_key_is_not_recovered(active, tmp_path):
    """It would spend a code and leave the server with a live device whose key exists nowhere."""
    app, account, issuer = active
    before = app.files()
    for how in (["--password"], ["--qr", recovery_uri(issuer)]):
        result = app.run("recover", account, *how, stdin="a password\n123456\n")
        assert one_line_error(result) == ("idp-authenticator: acme:alice@example.com already has its own key on "
                                          "this device: recover is for accounts restored from a backup")
        assert result.returncode == 1  # not 20: nothing was sent to the (unreachable) server
    assert app.files() == before


@pytest.mark.parametrize("change,message", [
    ({"endpoint": "http://[::1/factors/qr_recovery"}, "malformed endpoint URL in the recovery QR code"),
    ({"secret": ["A", "B"]}, "recovery QR code repeats parameter 'secret'"),
    # The issuer's own, not another server's that the code names (the secret would go there).
    ({"endpoint": "https://evil.example/factors/qr_recovery"},
     "the endpoint URL in the recovery QR code is not on the issuer's server"),
])
def test_a_malformed_recovery_code_is_a_one_line_error(restored, change, message):
    app, account, issuer = restored
    fields = {"v": "1", "issuer": issuer, "endpoint": issuer + "/factors/qr_recovery", "user": "alice@example.com",
              "secret": "7KQ2M-X9D4T-AAAAA-BBBBB-CCCCC", **change}
    uri = "idp-recovery://redeem?" + urlencode(fields, doseq=True)
    before = app.files()
    result = app.run("recover", account, "--qr", uri)
    assert one_line_error(result) == f"idp-authenticator: {message}" and result.returncode == 1
    assert app.files() == before


def test_a_mangled_recovery_uri_is_not_echoed(restored):
    app, account, issuer = restored
    result = app.run("recover", account, "--qr", recovery_uri(issuer).replace("://", ":/"))
    assert "7KQ2M" not in one_line_error(result) and "not repeated here" in result.stderr


@pytest.mark.parametrize("error, words", [("push_not_allowed", "no longer takes push"),
                                          ("account_disabled", "account is disabled"),
                                          ("push_suspended", "suspended")])
def test_the_servers_refusals_of_a_recovery_are_told_in_words(error, words):
    from authenticator.recover import _refused

    message = str(_refused(403, {"error": error}, "https://id.example/factors/qr_recovery/redeem"))
    assert words in message and "HTTP" not in message


def test_the_password_prompt_names_the_server_it_is_sent_to(monkeypatch):
    """The issuer URL comes from a backup: a bare "Password:" gave no chance to notice a stranger's."""
    import io

    from authenticator import recover

    prompts = []
    monkeypatch.setattr(recover, "is_terminal", lambda stream: True)
    monkeypatch.setattr(recover.getpass, "getpass", lambda prompt: prompts.append(prompt) or "secret")
    reader = recover.LineReader(stream=io.StringIO(), err=io.StringIO())
    assert reader.password("alice@example.com", "idp.example:8443") == "secret"
    assert prompts == ["Password for alice@example.com at idp.example:8443: "]


@pytest.mark.parametrize("how", ["qr", "password"])
def test_a_429_at_any_recovery_request_is_too_many_attempts(monkeypatch, how):
    """docs/recovery.md 3: exit 37 "too many attempts (wait the seconds in the message)". The server
    limits /redeem and /personal/finish per address like /personal/start; their 429 was exit 38,
    "the server refused the recovery (HTTP 429, too_many_attempts)", without the wait."""
    import io

    from authenticator import recover
    from authenticator.accounts import NEEDS_VERIFICATION, PUSH, Account, PushData
    from authenticator.push import keys

    def post(url, body, session=None):
        if url.endswith("/personal/start"):
            return 200, {"recovery_id": "r-1", "sent_to": "a***@example.com"}
        return 429, {"error": "too_many_attempts", "retry_after": 42}

    monkeypatch.setattr(recover, "_post", post)
    issuer = "https://idp.example"
    account = Account(id="a1", type=PUSH, issuer="acme", name="alice@example.com",
                      push=PushData(issuer_url=issuer, username="alice@example.com", status=NEEDS_VERIFICATION))
    with pytest.raises(recover.TooManyAttempts, match="wait 42 seconds") as refused:
        if how == "qr":
            recover.redeem_qr(account, recovery_uri(issuer), keys.new_private_key())
        else:
            reader = recover.LineReader(io.StringIO("a password\n123456\n"), err=io.StringIO())
            recover.recover_by_password(account, keys.new_private_key(), reader)
    assert refused.value.exit_code == 37


def test_a_wrong_code_is_asked_again_on_a_terminal_until_the_tries_run_out(monkeypatch):
    """The tries the server leaves a code are used in the same run (a new run e-mails a new code):
    on a terminal the code is asked for again, each try a new signed request; none left ends it."""
    import io

    from authenticator import recover
    from authenticator.accounts import NEEDS_VERIFICATION, PUSH, Account, PushData
    from authenticator.push import keys

    tried, tries_left = [], iter([2, 1, 0])

    def post(url, body, session=None):
        if url.endswith("/personal/start"):
            return 200, {"recovery_id": "r-1", "sent_to": "a***@example.com"}
        tried.append(body["request"])
        return 401, {"error": "invalid_code", "tries_left": next(tries_left)}

    monkeypatch.setattr(recover, "_post", post)
    monkeypatch.setattr(recover, "is_terminal", lambda stream: True)
    monkeypatch.setattr(recover.getpass, "getpass", lambda prompt: "a password")
    account = Account(id="a1", type=PUSH, issuer="acme", name="alice@example.com",
                      push=PushData(issuer_url="https://idp.example", username="alice@example.com",
                                    status=NEEDS_VERIFICATION))
    err = io.StringIO()
    reader = recover.LineReader(io.StringIO("111111\n222222\n333333\n444444\n"), err=err)
    with pytest.raises(recover.WrongCode, match="^wrong code: no tries left, run recover again for a new code$"):
        recover.recover_by_password(account, keys.new_private_key(), reader)
    assert len(tried) == 3 and len(set(tried)) == 3  # three codes, three requests (each its own jti)
    assert err.getvalue() == ("Code sent to a***@example.com: Wrong code (2 tries left). Code: "
                              "Wrong code (1 try left). Code: ")


def test_adding_a_recovery_uri_without_user_sends_no_user_claim(monkeypatch):
    """`user` is optional in the redeem request (docs/recovery.md 1.3): absent, not "", when the URI has none."""
    import base64
    import json as jsonlib

    from authenticator import recover
    from authenticator.push import keys

    sent, made = [], []
    new_key = keys.new_private_key
    monkeypatch.setattr(keys, "new_private_key", lambda: made.append(new_key()) or made[-1])

    def post(url, body, session=None):
        payload = body["request"].split(".")[1]
        sent.append(jsonlib.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
        return 201, {"device_id": keys.device_id(made[0]), "user": "alice@example.com"}

    monkeypatch.setattr(recover, "_post", post)
    issuer = "https://idp.example"
    uri = "idp-recovery://redeem?" + urlencode({"v": "1", "issuer": issuer, "endpoint": issuer + "/factors/qr_recovery",
                                                "secret": "7KQ2M-X9D4T-AAAAA-BBBBB-CCCCC", "expires": 2000000000})
    account = recover.read_recovery(uri).complete()
    assert "user" not in sent[0] and sent[0]["secret"] == "7KQ2M-X9D4T-AAAAA-BBBBB-CCCCC"
    assert account.name == "alice@example.com" and account.push.device_id == keys.device_id(made[0])


def test_a_server_that_never_runs_out_of_tries_gets_a_bounded_number_of_codes(monkeypatch):
    import io

    from authenticator import recover
    from authenticator.accounts import NEEDS_VERIFICATION, PUSH, Account, PushData
    from authenticator.push import keys

    finishes = []

    def post(url, body, session=None):
        if url.endswith("/personal/start"):
            return 200, {"recovery_id": "r-1", "sent_to": "a***@example.com"}
        finishes.append(url)
        return 401, {"error": "invalid_code", "tries_left": 5}

    monkeypatch.setattr(recover, "_post", post)
    account = Account(id="a1", type=PUSH, issuer="acme", name="alice@example.com",
                      push=PushData(issuer_url="https://idp.example", username="alice@example.com",
                                    status=NEEDS_VERIFICATION))
    stdin = io.StringIO("a password\n" + "123456\n" * 50)
    with pytest.raises(recover.WrongCode, match=f"wrong code {recover.MAX_CODE_TRIES} times"):
        recover.recover_by_password(account, keys.new_private_key(), recover.LineReader(stdin, err=io.StringIO()))
    assert len(finishes) == recover.MAX_CODE_TRIES
    assert stdin.read().count("\n") == 50 - recover.MAX_CODE_TRIES  # no line read that is not sent
