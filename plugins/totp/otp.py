"""RFC 6238 TOTP arithmetic, kept apart from the factor so it can be tested against the RFC.

Why our own 30 lines instead of `pyotp.TOTP.verify`:

- pyotp's `verify(valid_window=1)` says *whether* a code matches, not *which* time
  step matched. Replay protection needs the step: the credential's counter stores
  the last accepted step and `store.advance_counter(id, step)` accepts a step once
  (STYLE.md section 0: pyotp alone accepts a code again within its window).
- A wrong code must cost what a right one costs: every candidate step of the window
  is computed and compared (in constant time) before deciding, with no early exit.

pyotp is still what builds `otpauth://` URIs (in the factor) and what the tests
compare against.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import struct
from datetime import datetime, timezone

PERIOD = 30
DIGITS = (6, 8)
ALGORITHMS = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}
# RFC 4226 section 4 asks for a shared secret as long as the HMAC output; 80 bits is the floor we import.
SECRET_BYTES = {"SHA1": 20, "SHA256": 32, "SHA512": 64}
MIN_IMPORT_BYTES = 10
# ... and 512 bits (SHA-512's output) the ceiling: a longer key is hashed down by HMAC anyway, so
# more would only be bytes to seal and store.
MAX_IMPORT_BYTES = 64


def time_step(now: datetime | float, period: int = PERIOD) -> int:
    """The RFC 6238 counter T = floor((unix time - T0) / X) with T0 = 0. Naive datetimes are UTC."""
    if isinstance(now, datetime):
        if now.tzinfo is None:
            now = now.replace(tzinfo=timezone.utc)
        now = now.timestamp()
    return int(now // period)


def hotp(secret: bytes, counter: int, digits: int = 6, algorithm: str = "SHA1") -> str:
    """RFC 4226 HOTP value for `counter` (dynamic truncation, then the last `digits` decimal digits)."""
    mac = hmac.new(secret, struct.pack(">Q", counter), ALGORITHMS[algorithm]).digest()
    offset = mac[-1] & 0x0F
    binary = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(binary % (10 ** digits)).zfill(digits)


def normalise(code: object, digits: int) -> str | None:
    """The code as typed, spaces and dashes removed; None unless it is exactly `digits` ASCII digits."""
    if not isinstance(code, str):
        return None
    code = code.replace(" ", "").replace("-", "").strip()
    if len(code) != digits or not (code.isascii() and code.isdigit()):
        return None
    return code


def verify_totp(secret: bytes, code: object, now: datetime | float, last_step: int, digits: int = 6,
                algorithm: str = "SHA1", drift: int = 1) -> int | None:
    """The time step whose code equals `code`, within `drift` steps of `now` (one step each way by
    default: a phone clock 30 s off, or a code typed just as it rolled over); None if none matches.

    When two steps of the window produce the same code (one chance in a million), a step after
    `last_step` wins, so an honest code is not mistaken for a replay. A returned step that is
    `<= last_step` means the code was already used: the caller reports a replay. The caller must
    still advance the counter with one conditional UPDATE: this function only reads.
    """
    typed = normalise(code, digits)
    current = time_step(now)
    matches = []
    for step in range(current - drift, current + drift + 1):  # every candidate, no early exit
        expected = hotp(secret, step, digits, algorithm)
        if hmac.compare_digest(expected, typed or "x" * digits) and typed is not None:
            matches.append(step)
    if not matches:
        return None
    fresh = [step for step in matches if step > last_step]
    return max(fresh) if fresh else max(matches)


def parse_secret(text: str, *, empty: str = "no secret on standard input") -> bytes:
    """Base32 as authenticator apps show it: case, spaces, dashes and padding do not matter.
    ValueError (`empty` when there is nothing) for anything else, and for a secret shorter than
    MIN_IMPORT_BYTES or longer than MAX_IMPORT_BYTES."""
    cleaned = "".join(text.split()).replace("-", "").upper().rstrip("=")
    if not cleaned:
        raise ValueError(empty)
    try:
        secret = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except (binascii.Error, ValueError):
        raise ValueError("the secret is not valid base32") from None
    if len(secret) < MIN_IMPORT_BYTES:
        raise ValueError(f"the secret is too short ({len(secret) * 8} bits; at least {MIN_IMPORT_BYTES * 8})")
    if len(secret) > MAX_IMPORT_BYTES:
        raise ValueError(f"the secret is too long ({len(secret) * 8} bits; at most {MAX_IMPORT_BYTES * 8})")
    return secret
