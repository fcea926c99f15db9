"""``add idp-push://activate?...``: make this device's key, register it, and return the account.

Registered in ``authenticator.intake.URI_HANDLERS[("idp-push", "activate")]``.
"""

import platform
from urllib.parse import parse_qs, urlsplit

from authenticator.accounts import PUSH, Account, PushData
from authenticator.errors import AuthenticatorError
from authenticator.push import keys
from authenticator.push.client import PushClient

SUPPORTED_VERSION = "1"


def parse_activation_uri(uri: str) -> dict:
    parts = urlsplit(uri)
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    version = query.get("v")
    if version != SUPPORTED_VERSION:
        raise AuthenticatorError(f"push activation version {version!r} is not supported (this app speaks v1)")
    for name in ("issuer", "endpoint", "code"):
        if not query.get(name):
            raise AuthenticatorError(f"push activation URI without {name!r}")
    if urlsplit(query["endpoint"]).scheme not in ("https", "http"):
        raise AuthenticatorError("push activation endpoint must be an http(s) URL")
    return query


def device_name() -> str:
    return f"idp-authenticator on {platform.node() or 'this device'}"[:100]


def activate_push_device(uri: str) -> Account:
    query = parse_activation_uri(uri)
    key = keys.new_private_key()
    answer = PushClient(query["endpoint"], key).register(query["code"], device_name())
    issuer = query["issuer"]
    username = answer.get("user") or query.get("user") or ""
    push = PushData(issuer_url=issuer, username=username, device_id=answer["device_id"],
                    device_private_key=keys.private_pem(key), extra={"endpoint": query["endpoint"]})
    display = urlsplit(issuer).netloc or issuer
    return Account(id="", type=PUSH, issuer=display, name=username, push=push)
