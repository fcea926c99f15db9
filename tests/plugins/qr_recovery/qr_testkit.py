"""Helpers for the recovery QR tests: both factors registered at run time, a device that signs
its recovery requests with its own new key (the app's key code), and a login context."""
from __future__ import annotations

from authenticator.push import keys
from idp.factors.registry import current_registry
from idp_plugins.push.factor import PushFactor
from idp_plugins.qr_recovery.factor import QrRecoveryFactor
from idp_plugins.qr_recovery.secret import parse_uri

ISSUER = "http://localhost:5000"
BASE = ISSUER + "/factors/qr_recovery"


def enable(registry=None):
    """(push, qr_recovery) on the current app, registered if needed (before its first request)."""
    registry = registry or current_registry()
    push = registry.get("push") if "push" in registry else registry.register(PushFactor)
    qr = registry.get("qr_recovery") if "qr_recovery" in registry else registry.register(QrRecoveryFactor)
    return push, qr


def context(factor, transaction_id="txn-1"):
    return current_registry().context(factor, transaction_id=transaction_id, client_name="Payroll",
                                      remote_addr="203.0.113.7", user_agent="pytest")


def secret_of(uri: str) -> str:
    return parse_uri(uri)["secret"]


class NewDevice:
    """A phone after a restore: a fresh P-256 key, talking to the recovery endpoints."""

    def __init__(self, client, key=None, base: str = BASE):
        self.client = client
        self.key = key or keys.new_private_key()
        self.id = keys.device_id(self.key)
        self.base = base

    def token(self, path: str, **claims) -> str:
        header = {"alg": "ES256", "typ": "JWT", "jwk": keys.public_jwk(self.key)}
        times = keys._times(None)
        return keys.sign_jwt(self.key, header, {"aud": self.base + path, **times, **claims})

    def redeem(self, secret: str, user: str | None = None, name: str = "New phone", token: str | None = None):
        claims = {"secret": secret, "name": name, **({"user": user} if user else {})}
        return self.client.post("/factors/qr_recovery/redeem", json={"request": token or self.token("/redeem", **claims)})

    def start(self, email: str, password: str):
        return self.client.post("/factors/qr_recovery/personal/start", json={"email": email, "password": password})

    def finish(self, recovery_id: str, code: str, name: str = "New phone"):
        token = self.token("/personal/finish", recovery_id=recovery_id, code=code, name=name)
        return self.client.post("/factors/qr_recovery/personal/finish", json={"request": token})
