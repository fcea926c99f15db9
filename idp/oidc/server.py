"""The Authlib authorization server: client lookup, token storage, grants and endpoints."""
from __future__ import annotations

import os
import time
from functools import cached_property
from urllib.parse import parse_qs, urlencode, urlsplit

from authlib.integrations.flask_oauth2 import AuthorizationServer as FlaskAuthorizationServer
from authlib.integrations.flask_oauth2.requests import FlaskOAuth2Payload, FlaskOAuth2Request
from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc6749.errors import (InsecureTransportError, InvalidClientError, InvalidGrantError,
                                           InvalidRequestError)
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from flask import Flask, current_app, jsonify
from flask import request as flask_request
from sqlalchemy import bindparam, select

from idp.config import Settings
from idp.db import db
from idp.models import Client, Token
from idp.oidc.adapters import ClientRecord, OAuthClient
from idp.oidc import client_assertion, dpop, parameters, response_mode, urls
from idp.oidc.grants import revoke_if_replayed, rotate, rotation_synchronous, store_exchanged_tokens
from idp.ops import metrics
from idp.security.text import storable
from idp.security.tokens import random_token, sha256_hex


class QueryPayload(FlaskOAuth2Payload):
    """Authlib's payload of a request other than a POST (`request.values`), looked up once:
    Authlib reads it a dozen to two dozen times per request (each parameter through `data`), and
    each read went through werkzeug's cached property on the request. A GET's `values` are its
    query alone (werkzeug reads no form for a GET): the query itself, then, rather than a
    CombinedMultiDict that looks each parameter up through it."""

    @cached_property
    def data(self):
        request = self._request
        return request.args if request.method == "GET" else request.values


class FormBodyPayload(FlaskOAuth2Payload):
    """A POST's parameters: its form-encoded body, never its query string (looked up once, as
    QueryPayload's).

    The token, revocation and introspection requests (RFC 6749 3.2 and 4.1.3, RFC 7009 2.1,
    RFC 7662 2.1) and an RP-initiated logout by POST send their parameters in the body.
    Authlib's payload reads `request.values`, the body and the query string together: a code,
    a refresh token or a client_id put in the URL (where proxies and browsers log it) was
    accepted, and a parameter in both places was two values of it.
    """

    @cached_property
    def data(self):
        return self._request.form


class LeanFlaskOAuth2Request(FlaskOAuth2Request):
    """Authlib's Flask request adapter, minus two costs it pays on every grant, and with a POST's
    parameters read from its body only (FormBodyPayload).

    It holds Flask's `request` proxy, so each of the grant's dozens of reads of the payload
    goes through a context-variable lookup: this one holds the request object itself. And it
    computes `request.url` (IRI decoding, host validation) for a `uri` that Authlib only reads
    to refuse plain http outside development: the scheme, host and path from the WSGI environ
    (where idp.ops.proxy already applied trusted X-Forwarded-* headers) serve that check.
    """

    def __init__(self, request) -> None:
        OAuth2Request.__init__(self, method=request.method, uri=urls.environ_uri(request.environ), headers=request.headers)
        self._request = request
        self.payload = (FormBodyPayload if request.method == "POST" else QueryPayload)(request)


def _named_client_id(request) -> str | None:
    """The client_id a client request authenticates with: its Basic credentials', its body's, or
    (unverified: only to know which cached client to read again) its assertion's subject."""
    basic_id, _secret = extract_basic_authorization(request.headers)
    return basic_id or request.payload.data.get("client_id") or client_assertion.subject(request.payload.data)


class AuthorizationServer(FlaskAuthorizationServer):
    def create_oauth2_request(self, request):
        """The login pipeline finishes from a stored snapshot: pass an OAuth2Request through unchanged."""
        if isinstance(request, OAuth2Request):
            return request
        return LeanFlaskOAuth2Request(flask_request._get_current_object())

    def create_token_response(self, request=None):
        """A token request without grant_type is malformed (RFC 6749 5.2 `invalid_request`), not a
        grant type this server lacks (Authlib answered `unsupported_grant_type`). A DPoP proof
        (idp.oidc.dpop) is checked and spent before the grant runs; the grant's tokens are bound
        to its key (save_token)."""
        request = self.create_oauth2_request(request)
        if not request.payload.grant_type:
            return self.handle_error_response(request, InvalidRequestError("grant_type is required."))
        request.dpop = None
        if dpop.HEADER in request.headers:  # a bearer grant pays this one look-up, nothing more
            try:
                request.dpop = dpop.proof_of(request.headers, "POST", urls.of("token_endpoint"))
                dpop.spend(request.dpop)
            except dpop.InvalidDPoPProof as error:
                return self.handle_error_response(request, error)
        return super().create_token_response(request)

    def authenticate_client(self, request, methods, endpoint="token"):
        """Where every client endpoint (token, revocation, introspection) begins: a malformed
        request is refused before its client is looked up (idp.oidc.parameters)."""
        problem = parameters.malformed_client_request(request)
        if problem is not None:
            raise InvalidRequestError(problem)
        try:
            client = super().authenticate_client(request, methods, endpoint)
        except InvalidClientError:
            # This worker's copy of the client may predate a new secret (`idp client rotate-secret`):
            # read it afresh, once, so that the new secret works at once. Only a refusal pays
            # for that read, as an unknown client_id does; a success costs nothing more.
            if not clients.forget(_named_client_id(request)):
                raise
            client = super().authenticate_client(request, methods, endpoint)
        if endpoint == "token" and client.row.dpop_bound_access_tokens and getattr(request, "dpop", None) is None:
            # RFC 9449 5.2, refused before the grant spends anything (a code, a refresh token).
            raise dpop.InvalidDPoPProof("This client's tokens are DPoP-bound only: send a DPoP proof.")
        return client

    def handle_error_response(self, request, error):
        """An authorization error sent back to the client names the issuer that answered, as the
        code does (RFC 9207 2: `iss` on successful and error responses alike); a client that failed
        to authenticate gets a Basic challenge with its realm."""
        if error.error == "invalid_client":
            # Authlib's text is a Python list of methods; its Basic challenge lacks the realm RFC 7617 requires.
            error.description = "Client authentication failed (unknown client, wrong secret, or a method it may not use)."
        status_code, payload, headers = error(self.get_error_uri(request, error))
        if status_code == 302:  # to the client's (trusted) redirect URI, in the response mode it asked for
            location = with_issuer(dict(headers)["Location"])
            return response_mode.to_client(location, error.redirect_uri, response_mode.of(request.payload.data))
        if status_code == 401 and error.error == "invalid_client":
            headers = [(name, value) for name, value in headers if name.lower() != "www-authenticate"]
            headers.append(("WWW-Authenticate", f'Basic realm="idp", error="invalid_client", '
                                                f'error_description="{error.description}"'))
        return self.handle_response(status_code, payload, headers)

    def generate_token(self, grant_type, client, user=None, scope=None, expires_in=None,
                       include_refresh_token=True):
        """Refresh tokens only when `offline_access` was granted (OIDC Core 11) and the client may refresh.

        A client_credentials token speaks for the client alone: the scopes that describe a user
        (openid, profile, email, offline_access) are not given to it. Whenever the scope issued
        differs from the one asked for, the response says so (RFC 6749 3.3 and 5.1), even when
        nothing was granted."""
        if grant_type == "client_credentials":
            asked = scope
            scope = " ".join(s for s in (scope or "").split() if s not in USER_SCOPES)
            token = super().generate_token(grant_type, client, user=None, scope=scope, expires_in=expires_in,
                                           include_refresh_token=False)
            if asked and token.get("scope", "") != asked:
                token["scope"] = token.get("scope", "")
            return token
        include = (include_refresh_token and "offline_access" in (scope or "").split()
                   and client.check_grant_type("refresh_token"))
        if not include:  # (a client not registered for the refresh grant): the scope says what was granted
            scope = without_offline_access(scope)
        return super().generate_token(grant_type, client, user=user, scope=scope, expires_in=expires_in,
                                      include_refresh_token=include)


def without_offline_access(scope: str | None) -> str | None:
    """`scope` less offline_access, for tokens issued without a refresh token: offline_access is
    the refresh token (OIDC Core 11), and the response, the stored row and introspection say
    what was granted (RFC 6749 3.3, 5.1)."""
    if scope is None or "offline_access" not in scope.split():
        return scope
    return " ".join(s for s in scope.split() if s != "offline_access")


# Scopes about a user, meaningless in a token issued to a client for itself.
USER_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})


def with_issuer(location: str) -> str:
    """An authorization response's redirect with this server's `iss` added (RFC 9207), once: an
    error raised while a code was being issued already has it (RFC 6749 3.1: no parameter twice)."""
    if "iss" in parse_qs(urlsplit(location).query):
        return location
    separator = "&" if "?" in location else "?"
    return f"{location}{separator}{urlencode({'iss': current_app.extensions['idp.settings'].issuer})}"


_CLIENT_BY_ID = select(*Client.__table__.columns).where(Client.client_id == bindparam("client_id"))
# Inserted as a table row, not an ORM entity: the ORM's bulk-insert path costs about as much as
# the rest of a client_credentials grant.
_TOKENS = Token.__table__


class ClientCache:
    """Registered clients, kept per process for `ttl` seconds after they were read.

    Every token request authenticates its client, and on the token endpoint the client lookup
    was a quarter of the work (with SQLite, it also opened the write transaction early).
    A cached copy is stale once `idp client update | rotate-secret | remove` changed the client
    (in another process): the TTL bounds that window (`tokens.client_cache_ttl`, 0 turns the
    cache off), and a refused secret drops the copy and reads the client again (`forget`), so a
    new secret works at once. Unknown ids are not cached: a new client works at once, and
    made-up ids cannot fill the memory.
    """

    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self.entries: dict[str, tuple[float, OAuthClient]] = {}

    def get(self, client_id: str, ttl: float) -> OAuthClient | None:
        now = time.monotonic()
        entry = self.entries.get(client_id)
        if entry is not None and entry[0] > now:
            return entry[1]
        # Read in a statement of its own on a lone connection, not through the session: a
        # session read would leave a transaction open (on SQLite, holding the write lock) that
        # the grant's own claim or insert on a lone connection would then wait for.
        row = db.lone().read_first(_CLIENT_BY_ID, {"client_id": client_id})
        if row is None:
            self.entries.pop(client_id, None)
            return None
        client = OAuthClient(ClientRecord(**row._asdict()))
        if ttl > 0:
            if len(self.entries) >= self.MAX_ENTRIES:
                self.entries.clear()
            self.entries[client_id] = (now + ttl, client)
        return client

    def forget(self, client_id: str | None) -> bool:
        """Drop the cached copy of this client; whether there was one."""
        return client_id is not None and self.entries.pop(client_id, None) is not None


clients = ClientCache()


def query_client(client_id: str) -> OAuthClient | None:
    """The client with this id (a read-only record), from the per-process cache or one Core statement.
    An id no client can have (too long, a NUL) is unknown without a look-up: `invalid_client`, or
    /authorize's error page."""
    if not client_id or len(client_id) > 64 or not storable(client_id):
        return None
    return clients.get(client_id, float(current_app.extensions["idp.settings"].get("tokens.client_cache_ttl", 5)))


def client_record(client_id: str) -> ClientRecord | None:
    """The registered client's record (`query_client`'s, cached), for the login pages."""
    client = query_client(client_id)
    return client.row if client is not None else None


def opaque_token(*_args, **_kwargs) -> str:
    """256 random bits, URL-safe. (Authlib's default draws each character separately: ten times slower.)"""
    return random_token(32)


def _lineage(request) -> dict:
    """What a new token inherits: from the code it was exchanged for, or from the refresh token it rotates."""
    code, previous = getattr(request, "code_row", None), getattr(request, "refresh_row", None)
    if code is not None:
        source = code
        lineage = {"family_id": random_token(12), "code_id": code.id, "auth_time": code.auth_time,
                   "amr": list(code.amr), "acr": code.acr}
    elif previous is not None:
        source = previous
        lineage = {"family_id": previous.family_id, "code_id": previous.code_id, "auth_time": previous.auth_time,
                   "amr": previous.amr, "acr": previous.acr}
    else:
        return {}  # client_credentials: no family, nothing to revoke it with
    if source.credential_ids:  # (a column of its own only then: a password-only login's INSERT stays as it was)
        lineage["credential_ids"] = list(source.credential_ids)
    return lineage


def _refresh_expires_at(now: int, auth_time: int | None, settings) -> int:
    """A refresh token lives `refresh_token_ttl` from its issue, and never past its family's
    `refresh_token_max_lifetime` counted from the login (`auth_time`): rotation does not
    stretch a family's life beyond it."""
    end = now + int(settings.get("tokens.refresh_token_ttl"))
    most = int(settings.get("tokens.refresh_token_max_lifetime") or 0)
    return min(end, int(auth_time) + most) if most and auth_time is not None else end


def save_token(token: dict, request) -> None:
    """Persist hashes of the issued tokens: one INSERT, the token endpoint's hot path.

    A refresh grant spends its old token as it stores the new one, in one atomic step
    (`idp.oidc.grants.rotate`): when a parallel grant spent it first, this one stores nothing
    and fails as a replay. The other grants' tokens are written alone, skipping the session's
    and the execution layer's bookkeeping: a code was spent, and committed, when it was
    presented, so its tokens' row has nothing to commit with; it is stored only if the code was
    not revoked meanwhile (`idp.oidc.grants.store_exchanged_tokens`, idp.token_revocation).
    """
    now = int(time.time())
    settings = current_app.extensions["idp.settings"]
    user = request.user
    lineage = _lineage(request)
    refresh = token.get("refresh_token")
    refresh_expires_at = _refresh_expires_at(now, lineage.get("auth_time"), settings) if refresh else None
    if refresh and refresh_expires_at <= now:
        # The family's maximum lifetime, counted from a login an SSO session answered long ago,
        # has passed: no refresh token rather than one born expired.
        del token["refresh_token"]
        refresh = refresh_expires_at = None
        if "scope" in token:
            token["scope"] = without_offline_access(token["scope"])
    row = dict(
        access_token_hash=sha256_hex(token["access_token"]),
        refresh_token_hash=sha256_hex(refresh) if refresh else None,
        client_id=request.client.get_client_id(),
        user_id=user.id if user is not None else None,
        scope=token.get("scope", ""),
        issued_at=now,
        access_expires_at=now + int(token["expires_in"]),
        refresh_expires_at=refresh_expires_at,
        **lineage,
    )
    proof = getattr(request, "dpop", None)
    if proof is not None:  # RFC 9449 5: bound to the proof's key, and said so
        row["dpop_jkt"] = proof.jkt
        token["token_type"] = "DPoP"
    grant_type = request.payload.grant_type
    previous = getattr(request, "refresh_row", None)
    if previous is not None:
        # Spent by a parallel grant first: this one is a replay.
        if not rotate(previous, row, now, synchronous=rotation_synchronous(settings)):
            revoke_if_replayed(previous.refresh_token_hash)
            raise InvalidGrantError("The refresh token was already used.")
    elif grant_type == "client_credentials":
        db.insert_alone(_TOKENS, row, synchronous=bool(
            settings.get("tokens.client_credentials_synchronous_commit", False)))
    elif not store_exchanged_tokens(row):  # its code was revoked since it was claimed
        raise InvalidGrantError("The authorization code was revoked.")
    metrics.count_grant(grant_type)


server = AuthorizationServer()


def init_app(app: Flask, settings: Settings) -> None:
    if not settings.production:
        # Authlib refuses plain http unless told; development issuers are http://127.0.0.1.
        os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")
    from idp.oidc import device_flow, endpoints, grants, openid, pushed_requests

    app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {
        grant_type: int(settings.get("tokens.access_token_ttl"))
        for grant_type in ("authorization_code", "refresh_token", "client_credentials", device_flow.GRANT_TYPE)
    }
    app.config["OAUTH2_ACCESS_TOKEN_GENERATOR"] = opaque_token
    app.config["OAUTH2_REFRESH_TOKEN_GENERATOR"] = opaque_token
    server.init_app(app, query_client=query_client, save_token=save_token)
    server.register_client_auth_method(client_assertion.METHOD, client_assertion.PrivateKeyJwt())

    server.register_grant(grants.AuthorizationCodeGrant,
                          [parameters.WellFormedParameters(), grants.S256CodeChallenge(required=True),
                           openid.OpenIDCode(require_nonce=False)])
    server.register_grant(grants.RefreshTokenGrant)
    server.register_grant(grants.ClientCredentialsGrant)
    server.register_grant(device_flow.DeviceCodeGrant, [openid.OpenIDCode(require_nonce=False)])
    for endpoint in endpoints.ENDPOINTS:
        server.register_endpoint(endpoint)
    server.register_endpoint(pushed_requests.PushedAuthorizationEndpoint)
    server.register_endpoint(device_flow.DeviceAuthorizationEndpoint)
    app.extensions["idp.oauth_server"] = server
    app.register_error_handler(InsecureTransportError, _over_plain_http)


def _over_plain_http(_error: InsecureTransportError):
    """Authlib refuses a client request that reached us over plain http (RFC 6749 1.6: TLS is a
    must) as it builds the request, outside its own error handling: a 500 until now. Usually a
    proxy left out of `server.trusted_proxies`, or one that sends no X-Forwarded-Proto: the
    client learns what it did, the operator reads the same in the log (docs/operations.md)."""
    import logging

    logging.getLogger(__name__).warning(
        "refused a client request over plain http: behind a proxy, name it in server.trusted_proxies "
        "and have it send X-Forwarded-Proto: https")
    response = jsonify(error="invalid_request", error_description="This endpoint must be reached over HTTPS.")
    response.status_code = 400
    response.headers["Cache-Control"] = "no-store"
    return response

