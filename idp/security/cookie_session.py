"""Flask's signed-cookie session, with its signing serializer built once instead of per request,
and no session at all for the endpoints that OAuth clients call.

Flask's `SecureCookieSessionInterface` builds a new itsdangerous serializer in every
`open_session` and `save_session`, even for requests that carry no cookie at all (every token
grant): about a hundred Python calls, a visible share of a token grant. The serializer
depends only on the secret key and its fallbacks, so it is cached per key set; rotating
`SECRET_KEY` (a new app) builds a new one.

A session written anyway is given the secret of its CSRF tokens then (`save_session`), rather
than by the next page with a form in a second write; Flask-WTF makes and checks the tokens.

Token, UserInfo, revocation and introspection requests are authenticated by client credentials
or a bearer token, never by a user's cookie (idp.dispatch): they get an empty session that cannot
be written, whatever cookie came along, and the cookie is neither decoded nor sent back.
"""
from __future__ import annotations

import secrets

from flask import Flask
from flask.sessions import NullSession, SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer

from idp.dispatch import client_endpoint_paths


class NoBrowserSession(NullSession):
    """The session of a client endpoint's request: empty, and writing to it is a programming error."""

    def _fail(self, *args, **kwargs):
        raise RuntimeError("client endpoints have no browser session (idp.security.cookie_session)")

    __setitem__ = __delitem__ = clear = pop = popitem = update = setdefault = _fail


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

    def save_session(self, app: Flask, session, response) -> None:
        field = app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token")
        if session and session.modified and field not in session:
            # Written anyway (the browser's binding at /authorize, a sign-in): given now the
            # secret behind its forms' CSRF tokens, so that the next page with a form finds it
            # and leaves the cookie alone (the login page would otherwise sign and send the whole
            # cookie again only to add it). Flask-WTF's generate_csrf makes the same: 40 random
            # hex digits, which its tokens sign and its check compares. (Not generate_csrf
            # itself: it writes to the request's session, which need not be this one, and keeps
            # a token in `g`.)
            session[field] = secrets.token_hex(20)
        super().save_session(app, session, response)

    def open_session(self, app: Flask, request):
        if request.path in client_endpoint_paths(app):
            return NoBrowserSession()
        # No cookie header at all (API calls, token grants): an empty session, without parsing
        # cookies or touching the serializer.
        if "HTTP_COOKIE" not in request.environ and app.secret_key:
            return self.session_class()
        return super().open_session(app, request)
