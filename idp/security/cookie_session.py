"""Flask's signed-cookie session, with its signing serializer built once instead of per request.

Flask's `SecureCookieSessionInterface` builds a new itsdangerous serializer in every
`open_session` and `save_session`, even for requests that carry no cookie at all (every token
grant): about a hundred Python calls, a visible share of a token grant. The serializer
depends only on the secret key and its fallbacks, so it is cached per key set; rotating
`SECRET_KEY` (a new app) builds a new one.
"""
from __future__ import annotations

from flask import Flask
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer


class CachedSerializerSessionInterface(SecureCookieSessionInterface):
    def __init__(self) -> None:
        self._cached: tuple[tuple, URLSafeTimedSerializer | None] | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        cached = self._cached
        if cached is not None and cached[0] == keys:
            return cached[1]
        serializer = super().get_signing_serializer(app)
        self._cached = (keys, serializer)
        return serializer

    def open_session(self, app: Flask, request):
        # No cookie header at all (API calls, token grants): an empty session, without parsing
        # cookies or touching the serializer.
        if "HTTP_COOKIE" not in request.environ and app.secret_key:
            return self.session_class()
        return super().open_session(app, request)
