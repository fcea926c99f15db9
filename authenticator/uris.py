"""Two rules for every URI the app is handed (an argument, a QR code), written once.

- A parameter named twice, in any case (``code=A&CODE=B``), is refused: which copy counts
  would be up to the parser, and a second one appended to a genuine URI would win silently.
- A URL that urllib cannot split (``http://[::1``, an unclosed IPv6 bracket) raises
  ValueError from deep inside a handler; here it becomes the user's one-line error.

Callers pass the error class to raise (``otpauth`` has its own) and what to call the URI
in the message ("push activation URI").
"""

from typing import Callable
from urllib.parse import SplitResult, parse_qsl, urlsplit

ErrorClass = Callable[[str], Exception]


def single_valued(query: str, error: ErrorClass, what: str) -> dict[str, str]:
    """Parameters by lower-cased name; one named twice is refused with ``error``."""
    values: dict[str, list[str]] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
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
