"""Parse ``otpauth://totp/...`` URIs (the Key Uri Format used by TOTP QR codes).

Format: ``otpauth://totp/[ISSUER:]NAME?secret=BASE32[&issuer=ISSUER]
[&algorithm=SHA1|SHA256|SHA512][&digits=6|8][&period=SECONDS]``.
Everything is validated here so that a bad QR code fails at ``add`` with one
clear line instead of producing wrong codes later.
"""

import base64
import binascii
from urllib.parse import parse_qsl, unquote, urlsplit

from authenticator.accounts import ALGORITHMS, DIGITS, TOTP, Account, TotpParams
from authenticator.errors import AuthenticatorError

MAX_PERIOD = 3600


class InvalidOtpauthUri(AuthenticatorError):
    """The URI is not a usable TOTP account."""


def parse_totp_uri(uri: str) -> Account:
    """Return an :class:`Account` (without id) for a ``otpauth://totp/`` URI."""
    parts = urlsplit(uri)
    if parts.scheme.lower() != "otpauth" or parts.netloc.lower() != "totp":
        raise InvalidOtpauthUri("not an otpauth://totp/ URI")
    issuer_in_label, name = _split_label(unquote(parts.path.lstrip("/")))
    query = _single_valued(parts.query)
    issuer = query.get("issuer", issuer_in_label).strip()
    params = TotpParams(
        secret=_secret(query.get("secret")),
        algorithm=_algorithm(query.get("algorithm", "SHA1")),
        digits=_int_in(query.get("digits", "6"), "digits", DIGITS),
        period=_period(query.get("period", "30")),
    )
    return Account(id="", type=TOTP, issuer=issuer, name=name, totp=params)


def _split_label(label: str) -> tuple[str, str]:
    issuer, sep, name = label.partition(":")
    if not sep:
        issuer, name = "", label
    name = name.strip()
    if not name:
        raise InvalidOtpauthUri("otpauth URI has no account name")
    return issuer.strip(), name


def _single_valued(query: str) -> dict[str, str]:
    """Parameters by lower-cased name; one named twice, in any case (`secret=A&SECRET=B`), is refused."""
    values: dict[str, list[str]] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        values.setdefault(key.lower(), []).append(value)
    repeated = [key for key, items in values.items() if len(items) > 1]
    if repeated:
        raise InvalidOtpauthUri(f"otpauth URI repeats parameter {repeated[0]!r}")
    return {key: items[0] for key, items in values.items()}


def _secret(raw) -> str:
    if not raw:
        raise InvalidOtpauthUri("otpauth URI has no secret")
    secret = raw.replace(" ", "").replace("-", "").upper().rstrip("=")
    try:
        decoded = base64.b32decode(secret + "=" * (-len(secret) % 8))
    except (binascii.Error, ValueError):
        raise InvalidOtpauthUri("otpauth secret is not valid base32") from None
    if not decoded:
        raise InvalidOtpauthUri("otpauth secret is empty")
    return secret


def _algorithm(raw: str) -> str:
    algorithm = raw.upper()
    if algorithm not in ALGORITHMS:
        raise InvalidOtpauthUri(f"unsupported otpauth algorithm {raw!r} (use SHA1, SHA256 or SHA512)")
    return algorithm


def _int_in(raw: str, what: str, allowed) -> int:
    if not (raw.isascii() and raw.isdigit()) or int(raw) not in allowed:
        raise InvalidOtpauthUri(f"unsupported otpauth {what} {raw!r}")
    return int(raw)


def _period(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_PERIOD:
        raise InvalidOtpauthUri(f"unsupported otpauth period {raw!r}")
    return int(raw)
