"""Generating, normalising and hashing recovery codes.

A code is 10 characters from a 31-letter alphabet without look-alikes (no 0/o,
1/l/i), about 49.5 bits, shown as "abcde-fghjk". Codes are stored only as
HMAC-SHA256 under a server pepper, keyed with the user id as well
(`HMAC(pepper, "user_id|code")`): the digest is the credential's `lookup_key`, so
checking a code is one indexed lookup, and two users' identical codes can never
collide. A fast keyed hash is right here (warehouse hashes, Sentry does not): the
codes are random, not chosen by people, so a slow hash would add cost, not safety,
and without the pepper a stolen table cannot even be tested offline.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets

ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
LENGTH = 10


def generate(count: int) -> list[str]:
    """`count` distinct codes, formatted for display."""
    codes: set[str] = set()
    while len(codes) < count:
        raw = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
        codes.add(f"{raw[:5]}-{raw[5:]}")
    return sorted(codes)


def normalise(code: object) -> str | None:
    """The code as typed, lowercased, spaces and dashes removed; None unless it could be a code."""
    if not isinstance(code, str) or len(code) > 64:
        return None
    cleaned = code.replace("-", "").replace(" ", "").strip().lower()
    if len(cleaned) != LENGTH or any(ch not in ALPHABET for ch in cleaned):
        return None
    return cleaned


def digest(pepper: bytes, user_id: int, code: str) -> str:
    """The stored form of a normalised code (hex HMAC-SHA256)."""
    return hmac.new(pepper, f"{user_id}|{code}".encode(), hashlib.sha256).hexdigest()


def derive_pepper(secret_key: str | bytes, configured: str = "") -> bytes:
    """The pepper: `factors.recovery_codes.pepper` if set, else derived from the app's secret key.

    Changing either invalidates every stored code; set `pepper` explicitly before rotating the
    secret key.
    """
    if configured:
        return configured.encode()
    key = secret_key.encode() if isinstance(secret_key, str) else secret_key
    return hmac.new(key, b"idp recovery-code pepper v1", hashlib.sha256).digest()
