"""Turn what ``add`` was given (a URI or a QR image) into a new account.

URIs are dispatched on (scheme, host) through ``URI_HANDLERS`` so that a new
kind of account is one new entry, e.g. the push activation URI::

    URI_HANDLERS[("idp-push", "activate")] = activate_push_device

A handler takes the full URI string and returns an :class:`Account` whose id
is left empty (the store assigns it). It may do network work (push
activation) and raises :class:`AuthenticatorError` subclasses for anything
the user should read.
"""

import os
import re
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from authenticator.accounts import Account
from authenticator.errors import AuthenticatorError
from authenticator.otpauth import parse_totp_uri
from authenticator.push.activation import activate_push_device
from authenticator.qr import decode_qr_image

UriHandler = Callable[[str], Account]

_URI_LIKE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _reject_hotp(uri: str) -> Account:
    raise AuthenticatorError("otpauth://hotp (counter-based) accounts are not supported; only otpauth://totp")


URI_HANDLERS: dict[tuple[str, str], UriHandler] = {
    ("otpauth", "totp"): parse_totp_uri,
    ("otpauth", "hotp"): _reject_hotp,
    ("idp-push", "activate"): activate_push_device,
}


def account_from_input(source: str) -> Account:
    """``source`` is a URI, or the path of an image holding one as a QR code."""
    if os.path.exists(source) or not _URI_LIKE.match(source):
        return account_from_uri(decode_qr_image(Path(source)))
    return account_from_uri(source)


def account_from_uri(uri: str) -> Account:
    uri = uri.strip()
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
