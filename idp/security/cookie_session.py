"""Flask's signed-cookie session, with its signing serializer built once instead of per request,
and no session at all for the endpoints that OAuth clients call.

Flask's `SecureCookieSessionInterface` builds a new itsdangerous serializer in every
`open_session` and `save_session`, even for requests that carry no cookie at all (every token
grant): about a hundred Python calls, a visible share of a token grant. The serializer
depends only on the secret key and its fallbacks, so it is cached per key set; rotating
`SECRET_KEY` (a new app) builds a new one.

Token, UserInfo, revocation and introspection requests are authenticated by client credentials
or a bearer token, never by a user's cookie (idp.dispatch): they get an empty session that cannot
be written, whatever cookie came along, and the cookie is neither decoded nor sent back.

The cookie's signing and its JSON are done by `LeanSessionSerializer` for the sessions we keep
(a flat dict of strings, booleans and numbers): the same format as Flask's serializer
(itsdangerous' URL-safe timed tokens, HMAC-SHA1 under the "cookie-session" salt, Flask's tagged
JSON), which it hands anything else to. itsdangerous derives the signing key again and walks its
layers for every cookie; a login signs the cookie two or three times and reads it twice, about
0.1 ms each inside a request. And a session written anyway is given its CSRF token's secret
then (`save_session`): the login page that renders the token would otherwise write the cookie
again only to add it.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import struct
import time
import zlib

from flask import Flask
from flask import sessions as flask_sessions
from flask.json.tag import TaggedJSONSerializer
from flask.sessions import NullSession, SecureCookieSessionInterface
from itsdangerous import BadPayload, BadSignature, BadTimeSignature, SignatureExpired, URLSafeTimedSerializer

from idp.dispatch import client_endpoint_paths


class NoBrowserSession(NullSession):
    """The session of a client endpoint's request: empty, and writing to it is a programming error."""

    def _fail(self, *args, **kwargs):
        raise RuntimeError("client endpoints have no browser session (idp.security.cookie_session)")

    __setitem__ = __delitem__ = clear = pop = popitem = update = setdefault = _fail


_PLAIN = (str, bool, int, float, type(None))
_CSRF_FIELD = "csrf_token"  # Flask-WTF's session key (WTF_CSRF_FIELD_NAME's default)


def _b64encode(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _b64decode(data: bytes) -> bytes:
    """itsdangerous' base64_decode: padding restored; BadPayload-worthy input raises ValueError."""
    return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))


class LeanSessionSerializer:
    """Flask's session serializer (`URLSafeTimedSerializer`: HMAC-SHA1, "hmac" key derivation,
    Flask's tagged JSON), its tokens made and read directly for flat sessions of plain values.

    Its tokens are Flask's (JSON with sorted keys and compact separators, the timestamp, the
    signature by the newest key; any key, newest first, verifies; compressed payloads are read,
    none is written), each readable by the other, with the same errors (BadSignature and its
    kinds, which Flask's `open_session` answers with an empty session; BadPayload). A session holding
    anything else (tuples of flashed messages, bytes, dates, nested values) goes to Flask's
    serializer, `general`, whole."""

    def __init__(self, general: URLSafeTimedSerializer, tags) -> None:
        self.general = general
        self._tags = tags  # the tagged JSON's tag keys: a flat dict whose one key is one of them is tagged
        salt = general.salt
        derived = [hmac.new(key, salt, hashlib.sha1).digest() for key in general.secret_keys]
        self._signing_key = derived[-1]
        self._verifying_keys = derived[::-1]

    def _plain(self, obj) -> bool:
        return (type(obj) is dict and all(type(key) is str and type(value) in _PLAIN for key, value in obj.items())
                and not (len(obj) == 1 and next(iter(obj)) in self._tags))

    def dumps(self, obj) -> str:
        if not self._plain(obj):
            return self.general.dumps(obj)
        # Not compressed, where Flask's serializer tries zlib on every cookie (and keeps the result
        # when a byte or two shorter): zlib's set-up of its 256 KiB of state costs about 0.07 ms,
        # more than the rest of the cookie's signing, to save a few bytes of about 200.
        payload = _b64encode(json.dumps(obj, separators=(",", ":"), sort_keys=True).encode("utf-8"))
        value = payload + b"." + _b64encode(struct.pack(">Q", int(time.time())).lstrip(b"\x00"))
        return (value + b"." + _b64encode(hmac.new(self._signing_key, value, hashlib.sha1).digest())).decode("ascii")

    def loads(self, token, max_age: int | None = None):
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
            data = json.loads(text)
        except Exception as exc:  # (what itsdangerous says of any payload it cannot read)
            raise BadPayload("Could not load the payload") from exc
        if self._plain(data):
            return data
        return self.general.load_payload(payload)  # Flask's tagged JSON for the rest


class CachedSerializerSessionInterface(SecureCookieSessionInterface):
    def __init__(self) -> None:
        self._cached: tuple[tuple, object | None] | None = None

    def get_signing_serializer(self, app: Flask):
        keys = (app.secret_key, tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        cached = self._cached
        if cached is not None and cached[0] == keys:
            return cached[1]
        serializer = super().get_signing_serializer(app)
        if serializer is not None and self._lean_fits():
            serializer = LeanSessionSerializer(serializer, frozenset(self.serializer.tags))
        self._cached = (keys, serializer)
        return serializer

    def _lean_fits(self) -> bool:
        """Whether this interface signs as LeanSessionSerializer does (Flask's defaults)."""
        return (self.key_derivation == "hmac" and self.digest_method in (hashlib.sha1, flask_sessions._lazy_sha1)
                and isinstance(self.serializer, TaggedJSONSerializer))

    def save_session(self, app: Flask, session, response) -> None:
        if session and session.modified and _CSRF_FIELD not in session and app.config.get(
                "WTF_CSRF_FIELD_NAME", _CSRF_FIELD) == _CSRF_FIELD:
            # The secret behind the CSRF tokens of this browser's forms, as Flask-WTF's
            # generate_csrf makes it: the next page with a form finds it and leaves the cookie alone.
            session[_CSRF_FIELD] = hashlib.sha1(os.urandom(64)).hexdigest()
        super().save_session(app, session, response)

    def open_session(self, app: Flask, request):
        if request.path in client_endpoint_paths(app):
            return NoBrowserSession()
        # No cookie header at all (API calls, token grants): an empty session, without parsing
        # cookies or touching the serializer.
        if "HTTP_COOKIE" not in request.environ and app.secret_key:
            return self.session_class()
        return super().open_session(app, request)
