"""The recovery secret: generating, normalising, hashing, and the recovery URI that carries it.

A secret is 25 characters of Crockford's base32 (125 random bits), shown in five groups
("7KQ2M-X9D4T-..."), typed at the login or scanned from the QR code. The server keeps
only `HMAC-SHA256(pepper, "qr-recovery|" + secret)`: the credential's lookup key, so
checking a secret is one indexed lookup, and a stolen table cannot be tried offline
without the pepper. A fast keyed hash is right for a random 125-bit secret (a slow hash
would add cost, not safety).
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U
LENGTH = 25
GROUP = 5
URI_SCHEME = "idp-recovery"
VERSION = 1
_LOOKALIKES = str.maketrans({"I": "1", "L": "1", "O": "0"})


def generate() -> str:
    """A new secret, formatted for display."""
    raw = "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
    return "-".join(raw[i:i + GROUP] for i in range(0, LENGTH, GROUP))


def normalise(typed: object) -> str | None:
    """The secret as typed (any case, spaces, dashes, I/L/O for 1/1/0), or None if it cannot be one."""
    if not isinstance(typed, str) or len(typed) > 100:
        return None
    cleaned = "".join(typed.split()).replace("-", "").upper().translate(_LOOKALIKES)
    if len(cleaned) != LENGTH or any(ch not in ALPHABET for ch in cleaned):
        return None
    return cleaned


def digest(pepper: bytes, normalised: str) -> str:
    """The stored form of a normalised secret (hex HMAC-SHA256)."""
    return hmac.new(pepper, f"qr-recovery|{normalised}".encode(), hashlib.sha256).hexdigest()


def derive_pepper(secret_key: str | bytes, configured: str = "") -> bytes:
    """`factors.qr_recovery.pepper` if set, else derived from the app's secret key (changing either
    invalidates outstanding recovery QR codes, which expire within a day anyway)."""
    if configured:
        return configured.encode()
    key = secret_key.encode() if isinstance(secret_key, str) else secret_key
    return hmac.new(key, b"idp qr-recovery pepper v1", hashlib.sha256).digest()


def endpoint_base(issuer: str) -> str:
    """Where a device sends the redemption (`ENDPOINT/redeem`) and personal recovery requests."""
    return issuer.rstrip("/") + "/factors/qr_recovery"


def recovery_uri(*, issuer: str, username: str, secret: str, expires_at: int) -> str:
    """`idp-recovery://redeem?v=1&issuer=...&endpoint=...&user=...&secret=...&expires=...` (docs/recovery.md)."""
    query = urlencode({"v": VERSION, "issuer": issuer, "endpoint": endpoint_base(issuer), "user": username,
                       "secret": secret, "expires": int(expires_at)})
    return f"{URI_SCHEME}://redeem?{query}"


def parse_uri(uri: str) -> dict:
    """The parameters of a recovery URI; ValueError when it is not one (tests, tools)."""
    parts = urlsplit(uri)
    if parts.scheme != URI_SCHEME or parts.netloc != "redeem":
        raise ValueError("not an idp-recovery://redeem URI")
    return {k: v[-1] for k, v in parse_qs(parts.query).items()}
