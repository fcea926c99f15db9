"""Helpers for the push tests: a simulated device speaking protocol v1 through the Flask test client
(signing with the app's own key code), and an AttemptContext maker."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from authenticator.push import keys
from idp.factors.registry import current_registry
from idp_plugins.push.factor import PushFactor

ISSUER = "http://localhost:5000"
BASE = ISSUER + "/factors/push/v1"


def push_factor():
    registry = current_registry()
    return registry.get("push") if "push" in registry else registry.register(PushFactor)


def context(factor, transaction_id="txn-1", **overrides):
    values = dict(transaction_id=transaction_id, client_name="Payroll", remote_addr="203.0.113.7",
                  user_agent="Mozilla/5.0 (test)")
    values.update(overrides)
    return current_registry().context(factor, **values)


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
    step = factor.begin_enrolment(user, context(factor))
    device = Device(client)
    response = device.register(activation_code(step.view["activation_uri"]), name)
    assert response.status_code == 201, response.get_json()
    return device
