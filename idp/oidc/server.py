"""The Authlib authorization server: client lookup, token storage, grants and endpoints."""
from __future__ import annotations

import os
import time

from authlib.integrations.flask_oauth2 import AuthorizationServer as FlaskAuthorizationServer
from authlib.oauth2.rfc6749 import OAuth2Request
from flask import Flask, current_app
from sqlalchemy import select

from idp.config import Settings
from idp.db import db
from idp.models import Client, Token
from idp.oidc.adapters import OAuthClient
from idp.security.tokens import random_token, sha256_hex


class AuthorizationServer(FlaskAuthorizationServer):
    def create_oauth2_request(self, request):
        """The login pipeline finishes from a stored snapshot: pass an OAuth2Request through unchanged."""
        if isinstance(request, OAuth2Request):
            return request
        return super().create_oauth2_request(request)

    def generate_token(self, grant_type, client, user=None, scope=None, expires_in=None,
                       include_refresh_token=True):
        """Refresh tokens only when `offline_access` was granted (OIDC Core 11) and the client may refresh."""
        include = (include_refresh_token and "offline_access" in (scope or "").split()
                   and client.check_grant_type("refresh_token"))
        return super().generate_token(grant_type, client, user=user, scope=scope, expires_in=expires_in,
                                      include_refresh_token=include)


def query_client(client_id: str) -> OAuthClient | None:
    if not client_id or len(client_id) > 64:
        return None
    row = db.session.scalar(select(Client).where(Client.client_id == client_id))
    return OAuthClient(row) if row is not None else None


def save_token(token: dict, request) -> None:
    """Persist hashes of the issued tokens, with the family and code they descend from."""
    now = int(time.time())
    settings = current_app.extensions["idp.settings"]
    previous = getattr(request, "refresh_row", None)
    code_row = getattr(request, "code_row", None)
    refresh = token.get("refresh_token")
    user = request.user
    row = Token(
        access_token_hash=sha256_hex(token["access_token"]),
        refresh_token_hash=sha256_hex(refresh) if refresh else None,
        client_id=request.client.get_client_id(),
        user_id=user.id if user is not None else None,
        scope=token.get("scope", ""),
        family_id=previous.family_id if previous is not None else random_token(12),
        code_id=code_row.id if code_row is not None else (previous.code_id if previous is not None else None),
        auth_time=code_row.auth_time if code_row is not None else (previous.auth_time if previous else None),
        amr=list(code_row.amr) if code_row is not None else (previous.amr if previous else None),
        acr=code_row.acr if code_row is not None else (previous.acr if previous else None),
        issued_at=now,
        access_expires_at=now + int(token["expires_in"]),
        refresh_expires_at=(now + int(settings.get("tokens.refresh_token_ttl"))) if refresh else None,
    )
    db.session.add(row)
    db.session.commit()
    from idp.ops import metrics

    metrics.TOKEN_GRANTS.labels(grant_type=request.payload.grant_type).inc()


server = AuthorizationServer()


def init_app(app: Flask, settings: Settings) -> None:
    if not settings.production:
        # Authlib refuses plain http unless told; development issuers are http://127.0.0.1.
        os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")
    app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {
        "authorization_code": int(settings.get("tokens.access_token_ttl")),
        "refresh_token": int(settings.get("tokens.access_token_ttl")),
        "client_credentials": int(settings.get("tokens.access_token_ttl")),
    }
    app.config["OAUTH2_REFRESH_TOKEN_GENERATOR"] = True
    server.init_app(app, query_client=query_client, save_token=save_token)

    from idp.oidc import endpoints, grants, openid

    server.register_grant(grants.AuthorizationCodeGrant,
                          [grants.S256CodeChallenge(required=True), openid.OpenIDCode(require_nonce=False)])
    server.register_grant(grants.RefreshTokenGrant)
    server.register_grant(grants.ClientCredentialsGrant)
    for endpoint in endpoints.ENDPOINTS:
        server.register_endpoint(endpoint)
    app.extensions["idp.oauth_server"] = server

