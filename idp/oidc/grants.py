"""Authlib grants with our storage hooks.

Every "exactly once" here is one conditional UPDATE (`db.claim`): a code is claimed
with `redeemed_at IS NULL`, a refresh token with `rotated_at IS NULL`. Authlib's
stock code grant reads a code and deletes it later, so two parallel redemptions
would both succeed; claiming inside `query_authorization_code` closes that race.
"""
from __future__ import annotations

import time

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError
from authlib.oauth2.rfc7636 import CodeChallenge
from flask import current_app
from sqlalchemy import select, update

from idp.db import db, utcnow
from idp.models import AuthorizationCode, Token, User
from idp.oidc.adapters import OAuthCode, OAuthToken
from idp.security.tokens import sha256_hex

AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]


def _settings():
    return current_app.extensions["idp.settings"]


def revoke_family(family_id: str) -> None:
    db.session.execute(update(Token).where(Token.family_id == family_id, Token.revoked_at.is_(None))
                       .values(revoked_at=int(time.time())))
    db.session.commit()


def _active_user(user_id: int | None) -> User | None:
    user = db.session.get(User, user_id) if user_id is not None else None
    return user if user is not None and not user.disabled else None


class S256CodeChallenge(CodeChallenge):
    """PKCE tightened: S256 only, and public clients must send a challenge."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def __call__(self, grant):
        super().__call__(grant)
        grant.register_hook("after_validate_authorization_request_payload", self.require_for_public_clients)

    def require_for_public_clients(self, grant, redirect_uri):
        data = grant.request.payload.data
        if data.get("code_challenge") and data.get("code_challenge_method", "plain") != "S256":
            raise InvalidRequestError("Only code_challenge_method=S256 is supported.", redirect_uri=redirect_uri)
        if grant.request.client.row.public and not data.get("code_challenge"):
            raise InvalidRequestError("Public clients must use PKCE (code_challenge with S256).",
                                      redirect_uri=redirect_uri)

    def get_authorization_code_challenge(self, authorization_code):
        return authorization_code.code_challenge

    def get_authorization_code_challenge_method(self, authorization_code):
        return authorization_code.code_challenge_method


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def save_authorization_code(self, code, request):
        """Store the code's hash with what the login proved (the login pipeline sets `request.login_outcome`)."""
        outcome = request.login_outcome
        data = request.payload.data
        row = AuthorizationCode(
            code_hash=sha256_hex(code),
            client_id=request.client.get_client_id(),
            user_id=request.user.id,
            redirect_uri=request.payload.redirect_uri or request.client.get_default_redirect_uri(),
            scope=request.payload.scope or "",
            nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method") and "S256",
            auth_time=outcome.auth_time,
            amr=list(outcome.amr),
            acr=outcome.acr,
            session_id=outcome.sid,
            expires_at=utcnow() + _code_ttl(),
        )
        db.session.add(row)
        db.session.flush()
        return row

    def query_authorization_code(self, code, client):
        """Claim the code atomically; a second presentation revokes what the first obtained."""
        code_hash = sha256_hex(code)
        now = utcnow()
        row = db.claim(AuthorizationCode,
                       where=[AuthorizationCode.code_hash == code_hash,
                              AuthorizationCode.client_id == client.get_client_id(),
                              AuthorizationCode.redeemed_at.is_(None),
                              AuthorizationCode.expires_at > now],
                       values={"redeemed_at": now})
        if row is None:
            reused = db.session.scalar(select(AuthorizationCode.id).where(
                AuthorizationCode.code_hash == code_hash, AuthorizationCode.redeemed_at.is_not(None)))
            if reused is not None:
                db.session.execute(update(Token).where(Token.code_id == reused, Token.revoked_at.is_(None))
                                   .values(revoked_at=int(time.time())))
                db.session.commit()
            return None
        self.request.code_row = row
        return OAuthCode(row)

    def delete_authorization_code(self, authorization_code):
        """Nothing to do: the code was claimed (and so spent) when it was queried."""

    def authenticate_user(self, authorization_code):
        return _active_user(authorization_code.row.user_id)


def _code_ttl():
    from datetime import timedelta

    return timedelta(seconds=min(60, int(_settings().get("tokens.authorization_code_ttl", 60))))


class RefreshTokenGrant(grants.RefreshTokenGrant):
    """Rotation on every use; presenting an already-rotated token revokes its whole family."""

    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token):
        token_hash = sha256_hex(refresh_token)
        now = int(time.time())
        row = db.claim(Token,
                       where=[Token.refresh_token_hash == token_hash,
                              Token.client_id == self.request.client.get_client_id(),
                              Token.rotated_at.is_(None), Token.revoked_at.is_(None),
                              Token.refresh_expires_at > now],
                       values={"rotated_at": now}, commit=False)  # commits with the new token (save_token)
        if row is None:
            db.session.rollback()
            stale = db.session.scalar(select(Token).where(Token.refresh_token_hash == token_hash))
            if stale is not None and stale.rotated_at is not None:
                revoke_family(stale.family_id)  # a replayed refresh token: assume it was stolen
            return None
        return OAuthToken(row)

    def authenticate_user(self, refresh_token):
        from idp.oidc import enforcement

        user = _active_user(refresh_token.row.user_id)
        if user is None:
            return None
        if not enforcement.refresh_allowed(user, refresh_token.row):
            raise InvalidGrantError("A second factor is now required: sign in again.")
        self.request.refresh_row = refresh_token.row
        return user

    def revoke_old_credential(self, refresh_token):
        """Nothing to do: the old token was marked rotated when it was claimed."""


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
