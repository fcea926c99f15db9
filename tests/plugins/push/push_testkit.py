"""Helpers for the push tests: a simulated device speaking protocol v1 through the Flask test client
(signing with the app's own key code), and an AttemptContext maker."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from authenticator.push import keys
from idp.factors.registry import current_registry
from idp.factors.testing import waiting_login
from idp_plugins.push.factor import PushFactor

ISSUER = "http://localhost:5000"
BASE = ISSUER + "/factors/push/v1"


def push_factor():
    registry = current_registry()
    return registry.get("push") if "push" in registry else registry.register(PushFactor)


def context(factor, transaction_id="txn-1", **overrides):
    """As a login begins its push request: the login `transaction_id` (a row waiting on push, made
    here if missing: a phone lists and answers only the requests their login still waits on)."""
    if transaction_id:
        waiting_login(transaction_id, factor.name)  # (committed)
    values = dict(transaction_id=transaction_id, client_name="Payroll", remote_addr="203.0.113.7",
                  user_agent="Mozilla/5.0 (test)")
    values.update(overrides)
    return current_registry().context(factor, **values)


def enrolment_context(factor, **overrides):
    """As the security page begins an enrolment: no login (a login's activation lives only as
    long as that login wants it, and these tests have none)."""
    return context(factor, transaction_id=None, **overrides)


def activation_code(uri: str) -> str:
    return parse_qs(urlsplit(uri).query)["code"][0]


class Device:
    """A push device: its own P-256 key, registered through the HTTP protocol."""

    def __init__(self, client, key=None):
        self.client = client
        self.key = key or keys.new_private_key()
        self.id = keys.device_id(self.key)

    def register(self, code: str, name: str = "Test phone"):
        token = keys.registration_token(self.key, audience=BASE + "/register", code=code, name=name)
        return self.client.post("/factors/push/v1/register", json={"registration": token})

    def token(self, path: str, **extra) -> str:
        return keys.request_token(self.key, audience=BASE + path, extra=extra or None)

    def pending(self, wait: int = 0, token: str | None = None):
        token = token or self.token("/challenges")
        return self.client.get(f"/factors/push/v1/challenges?wait={wait}", headers={"Authorization": f"Bearer {token}"})

    def answer(self, challenge_id: str, decision: str = "approve", number: str | None = None,
               token: str | None = None, **extra):
        claims = {"challenge": challenge_id, "decision": decision, **extra}
        if number is not None:
            claims["number"] = number
        token = token or self.token(f"/challenges/{challenge_id}/answer", **claims)
        return self.client.post(f"/factors/push/v1/challenges/{challenge_id}/answer",
                                headers={"Authorization": f"Bearer {token}"})


def enrol_device(client, factor, user, name="Test phone") -> Device:
    step = factor.begin_enrolment(user, enrolment_context(factor))
    device = Device(client)
    response = device.register(activation_code(step.view["activation_uri"]), name)
    assert response.status_code == 201, response.get_json()
    return device


# --- live servers and the app as a separate process ---------------------------------------------


def enable_push(server):
    """Register push on a live server (before its first request); returns the server."""
    registry = server.app.extensions["idp.factors"]
    if "push" not in registry:
        registry.register(PushFactor)
    return server


def issue_activation_uri(server, email: str) -> str:
    from idp.factors import directory
    from idp_plugins.push.protocol import utc_now

    with server.context():
        user = directory.find_user_by_email(email)
        return server.app.extensions["idp.factors"].get("push").issue_activation(user, server.url, utc_now()).uri


def give_device(server, email: str):
    """A device registered over HTTP with the app's own client (in this process)."""
    from authenticator.push.client import PushClient

    uri = issue_activation_uri(server, email)
    client = PushClient(server.url + "/factors/push/v1", keys.new_private_key())
    client.register(activation_code(uri), "phone")
    return client


def recovery_codes_received(server, email: str) -> None:
    """The user's recovery codes made, as the security page's finished enrolment makes them (which
    also settles what the phone's registration left owed): a login then shows no codes page."""
    from sqlalchemy import select

    from idp.account import service
    from idp.db import db
    from idp.models import User

    with server.context():
        service.regenerate_recovery_codes(db.session.scalar(select(User).where(User.email == email)),
                                          audit_event=False)
        db.session.commit()


class AppProcess:
    """`idp-authenticator` as a separate process with its own home."""

    def __init__(self, home):
        self.home = home

    def run(self, *args):
        import os
        import subprocess
        import sys
        from pathlib import Path

        repo = Path(__file__).resolve().parents[3]
        env = dict(os.environ, PYTHONPATH=str(repo), IDP_AUTHENTICATOR_PASSPHRASE="browser test passphrase",
                   IDP_AUTHENTICATOR_SCRYPT_N="16")
        return subprocess.run([sys.executable, "-m", "authenticator", "--home", str(self.home), *args],
                              capture_output=True, text=True, env=env, cwd=repo, timeout=60)

    def ok(self, *args) -> str:
        result = self.run(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout
