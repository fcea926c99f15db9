"""itsdangerous' URL-safe timed tokens, made and read directly, for the two kinds a browser
request signs or checks: the session cookie (idp.security.cookie_session) and Flask-WTF's CSRF
tokens (`install_csrf_serializer`).

itsdangerous builds a signer and derives its key again for every token, and walks several
layers (want_bytes, base64 helpers, the signer's and the serializer's classes) to make or read
one; Flask-WTF builds a whole serializer for each CSRF token it makes or checks. Inside a
request each of those was 0.05-0.1 ms, and a login makes or reads five or six of them. Here the
keys are derived once and a token is a few C calls. The format is itsdangerous': payload,
timestamp and signature, base64url without padding and joined by dots, the payload prefixed
with a dot when zlib-compressed (read, never written: zlib's set-up costs more than the rest of
a token, to save a few bytes), HMAC-SHA1 signatures by the newest key, any key verifying. The
errors are its errors too (BadSignature, BadTimeSignature, SignatureExpired, BadPayload), so the
callers' handling is unchanged.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
import time
import zlib

from itsdangerous import BadPayload, BadSignature, BadTimeSignature, SignatureExpired


def _b64encode(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _b64decode(data: bytes) -> bytes:
    """itsdangerous' base64_decode (padding restored); ValueError for what it calls bad data."""
    return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))


def _derive(secret_key: bytes, salt: bytes, key_derivation: str) -> bytes:
    """itsdangerous' Signer.derive_key with SHA-1."""
    if key_derivation == "hmac":
        return hmac.new(secret_key, salt, hashlib.sha1).digest()
    if key_derivation == "django-concat":
        return hashlib.sha1(salt + b"signer" + secret_key).digest()
    raise ValueError(f"unsupported key derivation {key_derivation!r}")


class TimedTokens:
    """Signs and checks itsdangerous' URL-safe timed tokens under `secret_keys` (oldest first, as
    itsdangerous takes them) and `salt`."""

    def __init__(self, secret_keys, salt, key_derivation: str) -> None:
        keys = [key.encode("utf-8") if isinstance(key, str) else key for key in secret_keys]
        salt = salt.encode("utf-8") if isinstance(salt, str) else salt
        derived = [_derive(key, salt, key_derivation) for key in keys]
        self._signing_key = derived[-1]
        self._verifying_keys = derived[::-1]

    def sign(self, text: str) -> str:
        """The token of JSON `text`."""
        value = (_b64encode(text.encode("utf-8")) + b"."
                 + _b64encode(struct.pack(">Q", int(time.time())).lstrip(b"\x00")))
        return (value + b"." + _b64encode(hmac.new(self._signing_key, value, hashlib.sha1).digest())).decode("ascii")

    def unsign(self, token, max_age: int | None = None) -> tuple[bytes, str]:
        """(the payload as signed, its JSON text) of a token signed by one of the keys, at most
        `max_age` seconds old; itsdangerous' errors otherwise."""
        raw = token.encode("utf-8") if isinstance(token, str) else token
        value, separator, signature = raw.rpartition(b".")
        if not separator:
            raise BadSignature("No '.' found in value")
        try:
            signature = _b64decode(signature)
        except ValueError:
            signature = None
        if signature is None or not any(hmac.compare_digest(signature, hmac.new(key, value, hashlib.sha1).digest())
                                        for key in self._verifying_keys):
            raise BadSignature("Signature does not match")
        payload, separator, stamp = value.rpartition(b".")
        if not separator:
            raise BadTimeSignature("timestamp missing")
        try:
            stamped = struct.unpack(">Q", _b64decode(stamp).rjust(8, b"\x00"))[0]
        except (ValueError, struct.error):
            raise BadTimeSignature("Malformed timestamp") from None
        if max_age is not None:
            age = int(time.time()) - stamped
            if age > max_age:
                raise SignatureExpired(f"Signature age {age} > {max_age} seconds")
            if age < 0:
                raise SignatureExpired(f"Signature age {age} < 0 seconds")
        try:
            text = (zlib.decompress(_b64decode(payload[1:])) if payload.startswith(b".")
                    else _b64decode(payload)).decode("utf-8")
        except Exception as exc:  # (what itsdangerous says of any payload it cannot read)
            raise BadPayload("Could not load the payload") from exc
        return payload, text


class CsrfSerializer:
    """What Flask-WTF's `URLSafeTimedSerializer(secret_key, salt="wtf-csrf-token")` does with a
    CSRF token (`dumps` of the session's secret, `loads` of a posted token), on TimedTokens:
    itsdangerous' default key derivation ("django-concat") and its compact JSON."""

    def __init__(self, secret_key, salt) -> None:
        self._tokens = TimedTokens([secret_key], salt, "django-concat")

    def dumps(self, obj) -> str:
        return self._tokens.sign(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))

    def loads(self, token, max_age: int | None = None):
        _payload, text = self._tokens.unsign(token, max_age)
        try:
            return json.loads(text)
        except ValueError as exc:
            raise BadPayload("Could not load the payload") from exc


_CSRF_SALT = "wtf-csrf-token"


def install_csrf_serializer() -> None:
    """Have Flask-WTF's generate_csrf and validate_csrf use a CsrfSerializer kept per secret key.

    They name `URLSafeTimedSerializer` in their module and build one for every token, always as
    `URLSafeTimedSerializer(secret_key, salt="wtf-csrf-token")`; that name is given a factory
    that answers that call from a cache, and any other call with itsdangerous' own class
    (tests/unit/test_timed_tokens.py fails should a Flask-WTF release stop calling it so)."""
    from flask_wtf import csrf
    from itsdangerous import URLSafeTimedSerializer

    if getattr(csrf.URLSafeTimedSerializer, "idp_cached", False):
        return
    cache: dict = {}

    def serializer(secret_key, salt=None, *args, **kwargs):
        if salt != _CSRF_SALT or args or kwargs:
            return URLSafeTimedSerializer(secret_key, salt, *args, **kwargs)
        found = cache.get(secret_key)
        if found is None:
            if len(cache) > 16:  # (apps made with many keys, in tests: no unbounded growth)
                cache.clear()
            found = cache[secret_key] = CsrfSerializer(secret_key, salt)
        return found

    serializer.idp_cached = True
    csrf.URLSafeTimedSerializer = serializer
