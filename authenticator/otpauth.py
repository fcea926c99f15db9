"""Parse ``otpauth://totp/...`` URIs (the Key Uri Format used by TOTP QR codes).

Format: ``otpauth://totp/[ISSUER:]NAME?secret=BASE32[&issuer=ISSUER]
[&algorithm=SHA1|SHA256|SHA512][&digits=6|8][&period=SECONDS]``.
Everything is validated here so that a bad QR code fails at ``add`` with one
clear line instead of producing wrong codes later.
"""

import base64
import binascii
from urllib.parse import unquote

from authenticator import uris
from authenticator.accounts import ALGORITHMS, DIGITS, TOTP, Account, TotpParams, check_label_part
from authenticator.errors import AuthenticatorError

MAX_PERIOD = 3600
# The longest secret taken, in base32 characters (640 bytes): HMAC hashes a key longer than its block
# (at most 128 bytes, SHA-512) down anyway, and a QR code or a backup must not store megabytes.
MAX_SECRET_LENGTH = 1024
# The shortest secret taken: RFC 4226 section 4 requires 128 bits and recommends 160; 80 bits (16
# base32 characters) is what many services still issue. A one-byte secret has 256 possible code
# sequences: whoever saw one code could compute the rest.
MIN_SECRET_BYTES = 10


class InvalidOtpauthUri(AuthenticatorError):
    """The URI is not a usable TOTP account."""


def parse_totp_uri(uri: str) -> Account:
    """Return an :class:`Account` (without id) for a ``otpauth://totp/`` URI."""
    parts = uris.split(uri, InvalidOtpauthUri, "otpauth URI")
    if parts.scheme.lower() != "otpauth" or parts.netloc.lower() != "totp":
        raise InvalidOtpauthUri("not an otpauth://totp/ URI")
    try:  # (strict: unquote would make %FF a U+FFFD, silently)
        label = unquote(parts.path.lstrip("/"), errors="strict")
    except UnicodeDecodeError:
        raise InvalidOtpauthUri("the otpauth label is not UTF-8 text (percent-encoded bytes such as %FF)") from None
    issuer_in_label, name = _split_label(label)
    query = uris.single_valued(parts.query, InvalidOtpauthUri, "otpauth URI")
    # An empty `issuer=` (some generators always write the parameter) says nothing: the label's issuer
    # stays, rather than the account losing the name it is shown and found by.
    issuer = check_label_part(query.get("issuer", "").strip() or issuer_in_label, "otpauth issuer",
                              InvalidOtpauthUri)
    check_label_part(name, "otpauth account name", InvalidOtpauthUri)
    params = TotpParams(
        secret=normalised_secret(query.get("secret")),
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


def normalised_secret(raw) -> str:
    """A TOTP secret as `add` keeps it (base32, upper case, no padding, spaces or dashes) and as it
    refuses it (empty, not base32, under MIN_SECRET_BYTES, over MAX_SECRET_LENGTH): also what a
    restored backup is held to."""
    if not raw:
        raise InvalidOtpauthUri("otpauth URI has no secret")
    secret = raw.replace(" ", "").replace("-", "").upper().rstrip("=")
    if len(secret) > MAX_SECRET_LENGTH:
        raise InvalidOtpauthUri(f"otpauth secret is longer than {MAX_SECRET_LENGTH} characters")
    try:
        decoded = base64.b32decode(secret + "=" * (-len(secret) % 8))
    except (binascii.Error, ValueError):
        raise InvalidOtpauthUri("otpauth secret is not valid base32") from None
    if not decoded:
        raise InvalidOtpauthUri("otpauth secret is empty")
    if len(decoded) < MIN_SECRET_BYTES:
        raise InvalidOtpauthUri(f"otpauth secret is too short ({len(decoded) * 8} bits; at least "
                                f"{MIN_SECRET_BYTES * 8} are needed)")
    return secret


def _algorithm(raw: str) -> str:
    algorithm = raw.upper()
    if algorithm not in ALGORITHMS:
        raise InvalidOtpauthUri(f"unsupported otpauth algorithm {raw!r} (use SHA1, SHA256 or SHA512)")
    return algorithm


def _int_in(raw: str, what: str, allowed) -> int:
    value = _small_number(raw)
    if value is None or value not in allowed:
        raise InvalidOtpauthUri(f"unsupported otpauth {what} {raw!r}")
    return value


def _period(raw: str) -> int:
    value = _small_number(raw)
    if value is None or not 1 <= value <= MAX_PERIOD:
        raise InvalidOtpauthUri(f"unsupported otpauth period {raw!r}")
    return value


# Longer than any value accepted here, leading zeros allowed for: the text is checked before int(),
# which refuses (ValueError) more than 4300 digits and is slow on long ones.
MAX_NUMBER_LENGTH = 10


def _small_number(raw: str):
    """``raw`` as an int if it is a short run of ASCII digits, else None."""
    if not (len(raw) <= MAX_NUMBER_LENGTH and raw.isascii() and raw.isdigit()):
        return None
    return int(raw)
