"""The rules for every URI the app is handed (an argument, a QR code), written once.

- A parameter named twice, in any case (``code=A&CODE=B``), is refused: which copy counts
  would be up to the parser, and a second one appended to a genuine URI would win silently.
- A URL that urllib cannot split (``http://[::1``, an unclosed IPv6 bracket) raises
  ValueError from deep inside a handler; here it becomes the user's one-line error.
- A server URL the app sends a secret to (an activation code, a recovery code, a password)
  is https, or plain http on this machine's loopback only (a test or demo server): on any
  other network whoever sits on the way would read the secret and register their own key.
  And a push or recovery endpoint is on its issuer's origin (docs/push-protocol.md:
  E = ISS + "/factors/push/v1"): a QR code that names the real issuer and another server's
  endpoint is refused, not trusted for the issuer's sake.

Callers pass the error class to raise (``otpauth`` has its own) and what to call the URI
in the message ("push activation URI").
"""

import ipaddress
import re
from typing import Callable
from urllib.parse import SplitResult, parse_qsl, urlsplit

ErrorClass = Callable[[str], Exception]


def single_valued(query: str, error: ErrorClass, what: str) -> dict[str, str]:
    """Parameters by lower-cased name; one named twice is refused with ``error``, and so is one whose
    percent-encoded bytes are not UTF-8 (``%FF``): parse_qsl would make them U+FFFD silently, and
    an account would be stored under a label its QR code never held."""
    values: dict[str, list[str]] = {}
    try:
        pairs = parse_qsl(query, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise error(f"{what} has a percent-encoded parameter that is not UTF-8 text") from None
    for key, value in pairs:
        values.setdefault(key.lower(), []).append(value)
    repeated = [key for key, items in values.items() if len(items) > 1]
    if repeated:
        raise error(f"{what} repeats parameter {repeated[0]!r}")
    return {key: items[0] for key, items in values.items()}


def split(url: str, error: ErrorClass, what: str) -> SplitResult:
    """``urlsplit(url)``, with a URL it cannot split refused with ``error`` ("malformed WHAT")."""
    try:
        return urlsplit(url)
    except ValueError:
        raise error(f"malformed {what}") from None


# What makes urllib's urlsplit (every check here) and urllib3 (what requests sends with) read another
# host in one URL: a backslash ends the authority for urllib3 and not for urlsplit, so in
# "https://evil.example\@idp.example/" urlsplit reads idp.example (the issuer, loopback for http)
# and requests connects to evil.example, in clear for http; urlsplit also drops tabs and newlines
# wherever they are, which urllib3 keeps. A user name ("x@host") is the older disguise, and no server
# URL of these protocols holds one.
_MISREAD = re.compile(r"[\\\s\x00-\x1f\x7f]")


def _one_reading(url: str, parts: SplitResult, error: ErrorClass, what: str) -> None:
    """``error`` unless ``url`` names the same server for urlsplit and for requests."""
    if "@" in parts.netloc or _MISREAD.search(url):
        raise error(f"the {what} must not hold a user name (user@), a backslash, spaces or control characters: "
                    "an HTTP client may read another server in it")


def server_url(url: str, error: ErrorClass, what: str) -> SplitResult:
    """``url`` split, when it is https, or http to a loopback host; else ``error``."""
    parts = split(url, error, what)
    _one_reading(url, parts, error, what)
    if parts.scheme == "https" and parts.hostname:
        return parts
    if parts.scheme == "http" and _loopback(parts.hostname):
        return parts
    raise error(f"the {what} must be an https URL (plain http only to this machine)")


def same_origin(endpoint: str, issuer: str, error: ErrorClass, what: str) -> None:
    """``endpoint`` is on ``issuer``'s origin (scheme, host and port), else ``error``."""
    a, b = split(endpoint, error, what), split(issuer, error, "issuer URL")
    _one_reading(endpoint, a, error, what)
    _one_reading(issuer, b, error, "issuer URL")
    try:
        same = (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)
    except ValueError:  # a port that is no number
        same = False
    if not same:
        raise error(f"the {what} is not on the issuer's server")


def _loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False
