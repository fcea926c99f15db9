"""Turn what ``add`` was given (a URI or a QR image) into a new account.

URIs are dispatched on (scheme, host) through ``URI_HANDLERS`` so that a new
kind of account is one new entry, e.g. the push activation URI (and the recovery QR code's
``idp-recovery://redeem``, which registers a push device the same way)::

    URI_HANDLERS[("idp-push", "activate")] = read_activation

A handler takes the full URI string, checks it and sends nothing. It returns
either an :class:`Account` (whose id is left empty: the store assigns it), or a
:class:`PendingAccount` when making the account needs a network step that
changes the server (push activation registers a device and spends a one-time
code). ``add`` runs that step with :meth:`PendingAccount.complete` only once the
local store is unlocked, so a wrong passphrase changes nothing anywhere.
Handlers raise :class:`AuthenticatorError` subclasses for anything the user
should read.
"""

import os
import re
from pathlib import Path
from typing import Callable, Protocol, Union, runtime_checkable
from urllib.parse import urlsplit

from authenticator.accounts import Account
from authenticator.errors import AuthenticatorError
from authenticator.otpauth import parse_totp_uri
from authenticator.push.activation import read_activation
from authenticator.qr import decode_qr_image
from authenticator.recover import read_recovery
from authenticator.terminal import is_text


@runtime_checkable
class PendingAccount(Protocol):
    """An account that exists only after a network step (see the module docstring)."""

    type: str  # the account type it becomes (accounts.PUSH)
    issuer: str  # as the account will show it
    username: str  # may be empty until the server answers

    def complete(self) -> Account:
        """Do the network step and return the account; call it only with the local store open."""

    def not_saved(self, account: Account, reason: str) -> AuthenticatorError:
        """The error to raise when ``account`` (completed) could not be stored: what is left to undo."""


Found = Union[Account, PendingAccount]
UriHandler = Callable[[str], Found]

_URI_LIKE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _reject_hotp(uri: str) -> Account:
    raise AuthenticatorError("otpauth://hotp (counter-based) accounts are not supported; only otpauth://totp")


URI_HANDLERS: dict[tuple[str, str], UriHandler] = {
    ("otpauth", "totp"): parse_totp_uri,
    ("otpauth", "hotp"): _reject_hotp,
    ("idp-push", "activate"): read_activation,
    # A recovery QR code on a device without a backup of the account: it adds the push account
    # (a restored one is given its key by `recover ACCOUNT --qr` instead).
    ("idp-recovery", "redeem"): read_recovery,
}


def account_from_input(source: str) -> Found:
    """``source`` is a URI, or the path of an image holding one as a QR code.

    A URI pasted with a space or newline around it is still a URI (decided on the stripped
    text): taken as a file name, it would be echoed, secret and all, in "no such file"."""
    if not source.strip():  # (as a path, "" is the current directory: "cannot read image .")
        raise AuthenticatorError("nothing to add: give a URI (otpauth://, idp-push://) or a QR code image")
    if os.path.exists(source) or not _URI_LIKE.match(source.strip()):
        return account_from_uri(decode_qr_image(Path(source)))
    return account_from_uri(source)


def account_from_uri(uri: str) -> Found:
    uri = uri.strip()
    if not is_text(uri):  # else its label is stored, and every later list fails to print it
        raise AuthenticatorError("the URI is not UTF-8 text (non-ASCII characters must be percent-encoded)")
    try:
        parts = urlsplit(uri)
    except ValueError:
        raise AuthenticatorError("malformed URI") from None
    scheme, host = parts.scheme.lower(), parts.netloc.lower()
    handler = URI_HANDLERS.get((scheme, host))
    if handler is not None:
        return handler(uri)
    if any(known == scheme for known, _ in URI_HANDLERS):
        raise AuthenticatorError(f"unsupported {scheme}:// account type {host!r}")
    raise AuthenticatorError(f"unsupported URI scheme {scheme!r}" if scheme else "not a URI or image file")
