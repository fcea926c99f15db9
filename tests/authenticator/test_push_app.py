"""The companion app against a live server: `add` with a push activation URI, `pending`, `approve`,
`deny`, `watch`, and the messages for an expired code, an unreachable server and a revoked device.

The server runs in a thread (werkzeug `make_server`, threaded) on 127.0.0.1; the app runs as a
real subprocess, exactly as a user or script would run it.
"""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from werkzeug.serving import make_server

from authenticator_testkit import REPO, one_line_error
from fixtures import servers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveIdp:
    """The identity provider in a thread, and helpers that act as its login pipeline."""

    def __init__(self, tmp_path, issuer_port: int | None = None):
        """`issuer_port`: the port of the issuer's URL when it is not the server's own (a proxy
        listens there: tests/authenticator/test_push_answer_retry.py)."""
        from idp.factors import testing
        from idp.factors.registry import current_registry
        from idp_plugins.push.factor import PushFactor

        self.port = _free_port()
        self.issuer = f"http://127.0.0.1:{issuer_port or self.port}"
        self.app = testing.make_app(testing.database_url_for_tests(tmp_path), {"server.issuer": self.issuer})
        self.app.config["SERVER_NAME"] = None
        with self.app.app_context():
            testing.create_schema()
            registry = current_registry()
            self.factor = registry.get("push") if "push" in registry else registry.register(PushFactor)
            self.user = testing.make_user("alice@example.com")
        self.server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self.thread = servers.serve_in_background(self.server)

    def context(self, txn="txn-1", **overrides):
        from idp.factors.registry import current_registry
        from idp.factors.testing import waiting_login

        waiting_login(txn, self.factor.name)  # the login the request belongs to, waiting on push
        values = dict(transaction_id=txn, client_name="Payroll", remote_addr="203.0.113.7", user_agent="Firefox")
        values.update(overrides)
        return current_registry().context(self.factor, **values)

    def activation_uri(self, minutes_ago: int = 0) -> str:
        with self.app.app_context():
            ctx = self.context()
            return self.factor.issue_activation(self.user, self.issuer, ctx.now - timedelta(minutes=minutes_ago)).uri

    def start_login(self, txn="txn-1"):
        with self.app.app_context():
            ctx = self.context(txn)
            step = self.factor.begin_challenge(self.user, ctx)
            return step

    def outcome(self, step, txn="txn-1"):
        with self.app.app_context():
            return self.factor.verify(self.user, step.state, {}, self.context(txn))

    def revoke_all(self):
        from idp.factors import directory
        from idp.factors.registry import current_registry

        with self.app.app_context():
            for credential in self.factor.store.list(self.user):
                current_registry().remove_credential(self.user, credential.id)
            directory.commit()

    def close(self):
        servers.stop(self.server)
        self.thread.join(5)


@pytest.fixture
def live_idp(tmp_path):
    server = LiveIdp(tmp_path)
    yield server
    server.close()


@pytest.fixture
def phone(app, live_idp):
    """An app home holding one push account activated at the live server."""
    out = json.loads(app.ok("--json", "add", live_idp.activation_uri()))
    assert out["type"] == "push"
    return app


def test_add_push_account_registers_the_device(app, live_idp):
    out = app.ok("add", live_idp.activation_uri())
    assert "push" in out
    listed = json.loads(app.ok("--json", "list"))
    assert [(a["type"], a["name"], a["issuer"]) for a in listed] == [("push", "alice@example.com",
                                                                     f"127.0.0.1:{live_idp.port}")]
    with live_idp.app.app_context():
        devices = live_idp.factor.store.list(live_idp.user)
    assert len(devices) == 1 and devices[0].label.startswith("idp-authenticator on ")


def test_pending_and_approve(phone, live_idp):
    from idp.factors import Verified

    assert json.loads(phone.ok("--json", "pending")) == []
    assert "no pending requests" in phone.ok("pending")
    step = live_idp.start_login()
    pending = json.loads(phone.ok("--json", "pending"))
    assert len(pending) == 1
    assert pending[0]["id"] == step.state["challenge_id"]
    assert pending[0]["context"]["application"] == "Payroll" and pending[0]["context"]["ip"] == "203.0.113.7"
    assert pending[0]["expires_at"] > time.time()
    human = phone.ok("pending")
    assert "Payroll" in human and "203.0.113.7" in human
    out = phone.ok("approve", "--number", step.view["number"], "--", pending[0]["id"][:8])
    assert out.startswith("approved")
    assert isinstance(live_idp.outcome(step), Verified)
    # Answered once: a second approval finds nothing pending.
    again = phone.run("approve", "--number", step.view["number"], "--", pending[0]["id"])
    assert "no pending request" in one_line_error(again)


def test_an_id_prefix_too_short_says_so(phone, live_idp):
    """A prefix shorter than 6 characters names no request: the app says so, and the minimum (it
    said "no pending request", as if the request were gone), asks no server and answers nothing."""
    from idp.factors import Pending

    step = live_idp.start_login()
    full_id = step.state["challenge_id"]
    result = phone.run("approve", "--number", step.view["number"], "--", full_id[:5])
    assert result.returncode == 1
    assert one_line_error(result) == (f"idp-authenticator: '{full_id[:5]}' is too short to name a request: give "
                                      "its id, or at least 6 characters of it (see pending)")
    assert isinstance(live_idp.outcome(step), Pending)
    assert phone.ok("approve", "--number", step.view["number"], "--", full_id[:6]).startswith("approved")


def test_wrong_number_is_a_denial(phone, live_idp):
    """A failure like the others: one line on stderr, its own exit status (26); --json still prints the answer."""
    from idp.factors import Denied

    step = live_idp.start_login("t1")
    wrong = f"{(int(step.view['number']) + 1) % 100:02d}"
    result = phone.run("--json", "approve", "--number", wrong, "--", step.state["challenge_id"])
    assert result.returncode == 26
    assert json.loads(result.stdout)["reason"] == "wrong_number"
    assert "the number did not match" in one_line_error(result)
    assert live_idp.outcome(step, "t1") == Denied("wrong_number")

    step = live_idp.start_login("t2")
    wrong = f"{(int(step.view['number']) + 1) % 100:02d}"
    result = phone.run("approve", "--number", wrong, "--", step.state["challenge_id"])
    assert result.returncode == 26 and result.stdout == ""
    assert one_line_error(result) == (f"idp-authenticator: the number did not match: request "
                                      f"{step.state['challenge_id']} was refused and counts as a denial (that "
                                      "login sends no further push: start the sign-in again)")


def test_deny_and_report_fraud(phone, live_idp):
    from idp.factors import Denied

    step = live_idp.start_login("t1")
    assert phone.ok("deny", "--", step.state["challenge_id"]).startswith("denied")
    assert live_idp.outcome(step, "t1") == Denied("denied")
    step = live_idp.start_login("t2")
    assert "fraud" in phone.ok("deny", "--fraud", "--", step.state["challenge_id"])
    assert live_idp.outcome(step, "t2") == Denied("fraud", fraud=True)
    with live_idp.app.app_context():
        assert not live_idp.factor.is_configured_for(live_idp.user)


def test_watch_shows_the_request_and_approves_with_the_typed_number(phone, live_idp):
    import os

    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "authenticator", "--home", str(phone.home), "watch"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=REPO)
    try:
        assert proc.stdout.readline().startswith("watching")
        approve_what_watch_shows(proc, live_idp)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_expired_activation_code_says_so(app, live_idp):
    error = one_line_error(app.run("add", live_idp.activation_uri(minutes_ago=11)))
    assert "activation code has expired" in error
    assert not app.home.exists() or not any(app.home.glob("store*"))


def test_unreachable_server_says_so(app, live_idp):
    uri = live_idp.activation_uri()
    live_idp.close()
    assert "cannot reach the server" in one_line_error(app.run("add", uri))


def test_revoked_device_says_so_and_how_to_add_it_again(phone, live_idp):
    [account] = json.loads(phone.ok("--json", "list"))
    live_idp.start_login()
    live_idp.revoke_all()
    error = one_line_error(phone.run("pending"))
    assert error == ("idp-authenticator: the server no longer accepts this device (it was revoked, or the account "
                     f"removed): remove the account here (idp-authenticator --home {phone.home} remove "
                     f"{account['id']}), then add it again with a new activation code")
    # The advice works as written: `add` alone would refuse an account that is already here.
    assert "already exists" in one_line_error(phone.run("add", live_idp.activation_uri()))
    phone.ok("remove", account["id"])
    phone.ok("add", live_idp.activation_uri())
    assert phone.ok("pending").startswith("no pending requests")


def test_removing_a_push_account_says_the_device_stays_on_the_server(phone, live_idp):
    [account] = json.loads(phone.ok("--json", "list"))
    out = phone.ok("remove", account["id"])
    assert out.startswith(f"removed 127.0.0.1:{live_idp.port}:alice@example.com (id {account['id']}); the server "
                          f"at 127.0.0.1:{live_idp.port} keeps this device registered until it is revoked there")
    assert "security page" in out and out.count("\n") == 1
    with live_idp.app.app_context():
        assert len(live_idp.factor.store.list(live_idp.user)) == 1  # indeed


def test_pending_says_why_a_restored_account_receives_nothing(app):
    """Its only push account needs verification: not just "no pending requests" (and no request sent)."""
    from authenticator.accounts import NEEDS_VERIFICATION, PUSH, Account, PushData
    from authenticator.store import Vault
    from authenticator_testkit import PASSPHRASE

    vault = Vault.create(app.home, PASSPHRASE)
    stored = vault.add(Account(id="", type=PUSH, issuer="acme", name="alice@example.com",
                               push=PushData(issuer_url=f"http://127.0.0.1:{_free_port()}",
                                             username="alice@example.com", status=NEEDS_VERIFICATION)))
    vault.save()
    assert app.ok("pending") == ("no pending requests\n"
                                 f"acme:alice@example.com (id {stored.id}) cannot receive requests until it is "
                                 f"verified: run idp-authenticator --home {app.home} recover {stored.id}\n")
    assert json.loads(app.ok("--json", "pending")) == []


def test_pending_json_on_a_device_without_push_accounts_is_an_empty_array(app):
    """CONTRACT.md: `pending --json` prints a JSON array; it failed with status 1 when the device
    held no push account (none at all, or TOTP accounts only). The text form still says how to
    get one, as a one-line error."""
    from authenticator_testkit import TOTP_URI

    for add_first in (None, TOTP_URI):  # no store yet; then a TOTP account only
        if add_first:
            app.ok("add", add_first)
        result = app.run("--json", "pending")
        assert result.returncode == 0 and json.loads(result.stdout) == [] and result.stderr == "", result
    assert "no push accounts" in one_line_error(app.run("pending"))


def test_an_id_outside_the_protocol_is_not_listed(phone, live_idp):
    """Request ids are 64 lowercase hex characters (docs/push-protocol.md section 10): one the server
    lists in any other form (here starting with '-', which argparse would read as an option) is
    dropped, so it is never put into a URL."""
    from sqlalchemy import update

    from idp.db import db
    from idp.models import FactorChallenge

    step = live_idp.start_login()
    dashed = "-" + step.state["challenge_id"][1:]
    with live_idp.app.app_context():
        db.session.execute(update(FactorChallenge).where(FactorChallenge.id == step.state["challenge_id"])
                           .values(id=dashed))
        db.session.commit()
    assert json.loads(phone.ok("--json", "pending")) == []
    assert phone.run("approve", "--number", step.view["number"], "--", dashed).returncode == 23


@pytest.fixture
def two_servers(phone, live_idp):
    """The phone's account at the live server, and a second push account whose server is down."""
    from authenticator.accounts import PUSH, Account, PushData
    from authenticator.push import keys
    from authenticator.store import Vault
    from authenticator_testkit import PASSPHRASE

    down = f"http://127.0.0.1:{_free_port()}"
    key = keys.new_private_key()
    vault = Vault.open(phone.home, PASSPHRASE)
    dead = vault.add(Account(id="", type=PUSH, issuer="Down", name="alice@down.example",
                             push=PushData(issuer_url=down, username="alice@down.example",
                                           device_id=keys.device_id(key), device_private_key=keys.private_pem(key),
                                           extra={"endpoint": down + "/factors/push/v1"})))
    vault.save()
    return phone, dead, down.removeprefix("http://")


def test_one_server_down_does_not_hide_the_others_requests(two_servers, live_idp):
    """`pending` lists what the reachable server has (exit 0) and warns once, naming the server down;
    `approve` finds a request there; an unknown id says which server could not be asked."""
    phone, dead, host = two_servers
    step = live_idp.start_login()
    warning = (f"idp-authenticator: warning: skipped the server at {host} (Down:alice@down.example, id {dead.id}): "
               f"cannot reach the server at {host}: ConnectionError")
    result = phone.run("--json", "pending")
    assert result.returncode == 0 and result.stderr == warning + "\n"
    assert [c["id"] for c in json.loads(result.stdout)] == [step.state["challenge_id"]]
    result = phone.run("pending")
    assert result.returncode == 0 and "Payroll" in result.stdout and result.stderr == warning + "\n"

    missing = phone.run("deny", "--", "0" * 64)
    assert missing.returncode == 23
    assert one_line_error(missing) == (f"idp-authenticator: no pending request {'0' * 64} (already answered, "
                                       f"expired, or not for this device's accounts); the server(s) at {host} "
                                       "could not be asked")
    result = phone.run("approve", "--number", step.view["number"], "--", step.state["challenge_id"][:8])
    assert result.returncode == 0 and result.stdout.startswith("approved") and result.stderr == warning + "\n"


def test_no_server_answering_is_one_error_naming_each(two_servers, live_idp):
    phone, dead, host = two_servers
    live_idp.close()
    result = phone.run("pending")
    assert result.returncode == 20
    line = one_line_error(result)
    assert line.startswith(f"idp-authenticator: no push server answered: 127.0.0.1:{live_idp.port}: cannot reach")
    assert f"; {host}: cannot reach the server at {host}" in line
    assert phone.run("watch").returncode == 20


def test_watch_warns_about_a_server_down_and_answers_the_others(two_servers, live_idp):
    import os

    phone, dead, host = two_servers
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "authenticator", "--home", str(phone.home), "watch"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=REPO)
    try:
        assert proc.stdout.readline().startswith("watching 2 push account(s)")
        assert proc.stderr.readline() == (f"idp-authenticator: warning: skipped the server at {host} "
                                          f"(Down:alice@down.example, id {dead.id}): cannot reach the server at "
                                          f"{host}: ConnectionError; still watching\n")
        approve_what_watch_shows(proc, live_idp)
        assert "warning" not in proc.stderr.read()  # the same failure is not repeated every round
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def approve_what_watch_shows(proc, live_idp) -> None:
    """A login starts; the running `watch` shows it (the request, then where it came from), is
    typed the number, approves, and stops at Ctrl-C."""
    from idp.factors import Verified

    step = live_idp.start_login()
    shown = proc.stdout.readline()
    assert step.state["challenge_id"] in shown and "Payroll" in shown, proc.stderr.read() if not shown else shown
    assert "203.0.113.7" in proc.stdout.readline()
    proc.stdin.write(step.view["number"] + "\n")
    proc.stdin.flush()
    lines = []
    for _ in range(2):
        lines.append(proc.stdout.readline())
        if "approved" in lines[-1]:
            break
    assert "approved" in lines[-1], lines
    assert isinstance(live_idp.outcome(step), Verified)
    proc.send_signal(signal.SIGINT)  # watch runs until Ctrl-C
    assert proc.wait(timeout=30) == 130
