"""Random identifiers and hashes of high-entropy secrets (codes, tokens, client secrets).

These values carry 256 bits of randomness, so SHA-256 is the right hash: slow hashes
protect low-entropy passwords and would only cap the token endpoint.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets


def random_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def sha256_hex(value: str | bytes) -> str:
    if isinstance(value, str):
        value = value.encode()
    return hashlib.sha256(value).hexdigest()


def matches_hash(value: str, expected_hex: str | None) -> bool:
    """Constant-time comparison of a presented secret with its stored hash."""
    if not expected_hex:
        return False
    return hmac.compare_digest(sha256_hex(value), expected_hex)
