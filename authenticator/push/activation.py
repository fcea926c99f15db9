"""``add idp-push://activate?...``: read the URI, then (once the local store is open) register and return the account.

Registered in ``authenticator.intake.URI_HANDLERS[("idp-push", "activate")]``.

Reading the URI sends nothing: :func:`read_activation` only checks it and returns a
:class:`PushActivation`. The registration (which spends the one-time code and creates
a device on the server) is :meth:`PushActivation.complete`, which ``add`` calls only
after the local store is unlocked (or created), so that a wrong passphrase never leaves
the server with a device whose private key this device did not keep. If the store
cannot be saved after all, ``add`` raises :class:`DeviceNotSaved` naming the device id
to revoke.
"""

import platform
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import urlsplit

from authenticator import uris
from authenticator.accounts import MAX_LABEL_PART, PUSH, Account, PushData, check_label_part, is_text_field
from authenticator.errors import AuthenticatorError
from authenticator.push import keys
from authenticator.push.client import PushClient

SUPPORTED_VERSION = "1"


class DeviceNotSaved(AuthenticatorError):
    """Registered on the server, but the local store could not keep the account (and so the key)."""

    exit_code = 25


def parse_activation_uri(uri: str) -> dict:
    """The URI's parameters, checked: one of each, the version this app speaks, URLs urllib can split
    (so that no later ``urlsplit``, for a message or a request, raises ValueError)."""
    parts = uris.split(uri, AuthenticatorError, "push activation URI")
    query = uris.single_valued(parts.query, AuthenticatorError, "push activation URI")
    version = query.get("v")
    if version != SUPPORTED_VERSION:
        raise AuthenticatorError(f"push activation version {version!r} is not supported (this app speaks v1)")
    for name in ("issuer", "endpoint", "code"):
        if not query.get(name):
            raise AuthenticatorError(f"push activation URI without {name!r}")
    uris.server_url(query["issuer"], AuthenticatorError, "issuer URL in the push activation URI")
    uris.server_url(query["endpoint"], AuthenticatorError, "endpoint URL in the push activation URI")
    uris.same_origin(query["endpoint"], query["issuer"], AuthenticatorError, "endpoint URL in the push activation URI")
    # What the account's label is made of (the issuer's host, the user), as an otpauth label is capped.
    check_label_part(activation_issuer(query["issuer"]), "issuer in the push activation URI")
    check_label_part(query.get("user") or "", "user in the push activation URI")
    return query


def device_name() -> str:
    return f"idp-authenticator on {platform.node() or 'this device'}"[:100]


def activation_issuer(issuer: str) -> str:
    """The issuer as a push account shows it: the server's host (and port)."""
    return urlsplit(issuer).netloc or issuer


@dataclass(frozen=True)
class PushActivation:
    """A checked activation URI; nothing has been sent to the server yet."""

    query: dict
    type: ClassVar[str] = PUSH

    @property
    def issuer(self) -> str:
        return activation_issuer(self.query["issuer"])

    @property
    def username(self) -> str:
        """The user name the URI shows (display only: the server's answer decides)."""
        return self.query.get("user") or ""

    def complete(self) -> Account:
        """Make this device's key and register it, spending the activation code: the network step."""
        key = keys.new_private_key()
        answer = PushClient(self.query["endpoint"], key).register(self.query["code"], device_name())
        username = server_username(answer) or self.username
        push = PushData(issuer_url=self.query["issuer"], username=username, device_id=answer["device_id"],
                        device_private_key=keys.private_pem(key), extra={"endpoint": self.query["endpoint"]})
        return Account(id="", type=PUSH, issuer=self.issuer, name=username, push=push)

    @staticmethod
    def not_saved(account: Account, reason: str) -> DeviceNotSaved:
        """The error for a registration this device then failed to keep: the server-side device needs revoking."""
        return DeviceNotSaved(
            f"the device was registered at {account.issuer} (device id {account.push.device_id}) but could not be "
            f"saved here: {reason}; that device must be revoked (security page or administrator) before you "
            f"activate again with a new code")


def server_username(answer: dict) -> str:
    """The ``user`` the server's registration answer names, if it is usable text, else "" (the URI's
    ``user`` is used then). Anything else (a number, a list, a bool) would be stored as the account's
    name, and every backup written from then on would fail to restore."""
    user = answer.get("user")
    # (Too long a name is unusable too: refused here, after the registration, it would leave a
    # device on the server whose key this one did not keep.)
    return user if is_text_field(user) and user.strip() and len(user) <= MAX_LABEL_PART else ""


def read_activation(uri: str) -> PushActivation:
    """The ``URI_HANDLERS`` entry: check the URI, send nothing."""
    return PushActivation(parse_activation_uri(uri))
