"""Authlib's mixins over our rows: what the protocol code needs to know of a client, a code, a token."""
from __future__ import annotations

import time

from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, TokenMixin
from authlib.oauth2.rfc6749.util import scope_to_list

from dataclasses import dataclass
from datetime import datetime

from idp.db import utcnow
from idp.models import AuthorizationCode, Token
from idp.oidc.redirect_uris import matches_on_another_loopback_port
from idp.security.tokens import matches_hash


# The client authentication methods (RFC 7591 names) of the token, revocation and introspection
# endpoints; which one a client may use is its own (`OAuthClient.check_endpoint_auth_method`).
# Introspection and client_credentials are for confidential clients: no "none" there.
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none", "private_key_jwt")
CONFIDENTIAL_AUTH_METHODS = tuple(method for method in AUTH_METHODS if method != "none")


@dataclass(frozen=True)
class ClientRecord:
    """A registered client as the protocol code sees it: a read-only copy of its `clients` row."""

    id: int
    client_id: str
    secret_hash: str | None
    previous_secret_hash: str | None
    previous_secret_expires_at: datetime | None
    name: str
    redirect_uris: list
    post_logout_redirect_uris: list
    grant_types: list
    scope: str
    public: bool
    first_party: bool
    id_token_alg: str
    backchannel_logout_uri: str | None
    frontchannel_logout_uri: str | None
    jwks: dict | None
    jwks_uri: str | None
    require_pushed_authorization_requests: bool
    dpop_bound_access_tokens: bool
    created_at: datetime


class OAuthClient(ClientMixin):
    """A registered client. Secrets are compared as SHA-256 in constant time (they are 256-bit random)."""

    def __init__(self, row: ClientRecord) -> None:
        self.row = row
        self.client_id = row.client_id
        self.client_metadata = {"post_logout_redirect_uris": list(row.post_logout_redirect_uris or [])}
        self.id_token_signed_response_alg = row.id_token_alg
        self._assertion_keys = None

    def get_client_id(self):
        return self.row.client_id

    def get_default_redirect_uri(self):
        uris = self.row.redirect_uris
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope):
        if not scope:
            return ""
        allowed = set(self.row.scope.split())
        return " ".join(dict.fromkeys(s for s in scope_to_list(scope) if s in allowed))  # each once, in order

    def check_redirect_uri(self, redirect_uri):
        """Exact match, but for a loopback IP literal's port (RFC 8252 7.3)."""
        return redirect_uri in self.row.redirect_uris or matches_on_another_loopback_port(
            redirect_uri, self.row.redirect_uris)

    def check_client_secret(self, client_secret):
        """The secret, or the one before it while its grace period lasts (`rotate-secret --grace`);
        both compared in constant time."""
        if matches_hash(client_secret, self.row.secret_hash):
            return True
        row = self.row
        return (row.previous_secret_expires_at is not None and row.previous_secret_expires_at > utcnow()
                and matches_hash(client_secret, row.previous_secret_hash))

    def check_endpoint_auth_method(self, method, endpoint):
        if self.row.public:
            return method == "none"
        if self.has_keys():
            return method == "private_key_jwt"
        return method in ("client_secret_basic", "client_secret_post")

    def has_keys(self) -> bool:
        """Whether this client signs with keys of its own (private_key_jwt, request objects):
        registered with it, or published at its jwks_uri."""
        return bool(self.row.jwks or self.row.jwks_uri)

    def assertion_keys(self, wanted_kid: str | None = None):
        """The public keys this client signs with (a joserfc KeySet), or None when it has none:
        registered with it (parsed once per cached copy of the client), or published at its
        jwks_uri (idp.oidc.client_jwks: kept a while, fetched again for a `wanted_kid` they lack;
        KeysUnavailable when none can be had)."""
        if self.row.jwks_uri:
            from idp.oidc import client_jwks

            return client_jwks.key_set(self.row.jwks_uri, wanted_kid=wanted_kid)
        if not self.row.jwks:
            return None
        if self._assertion_keys is None:
            from idp.oidc.client_assertion import key_set

            self._assertion_keys = key_set(self.row.jwks)
        return self._assertion_keys

    def check_response_type(self, response_type):
        return response_type == "code" and "authorization_code" in self.row.grant_types

    def check_grant_type(self, grant_type):
        return grant_type in self.row.grant_types


class OAuthCode(AuthorizationCodeMixin):
    def __init__(self, row: AuthorizationCode) -> None:
        self.row = row
        self.code_challenge = row.code_challenge
        self.code_challenge_method = row.code_challenge_method

    def get_redirect_uri(self):
        """What the token request must repeat: None when the authorization request sent no
        redirect_uri (RFC 6749 4.1.3: then the token request need not either)."""
        return None if self.row.redirect_uri_implied else self.row.redirect_uri

    def get_scope(self):
        return self.row.scope

    def get_nonce(self):
        return self.row.nonce

    def get_auth_time(self):
        return self.row.auth_time

    def get_acr(self):
        return self.row.acr

    def get_amr(self):
        return list(self.row.amr or [])


class OAuthToken(TokenMixin):
    def __init__(self, row: Token, client: OAuthClient | None = None, user=None) -> None:
        self.row = row
        self._client = client
        self._user = user
        self.scope = row.scope

    def check_client(self, client):
        return client.get_client_id() == self.row.client_id

    def get_scope(self):
        return self.row.scope

    def get_expires_in(self):
        return self.row.access_expires_at - self.row.issued_at

    def is_expired(self):
        return self.row.access_expires_at < time.time()

    def is_refresh_token_expired(self):
        return self.row.refresh_expires_at is not None and self.row.refresh_expires_at < time.time()

    def is_revoked(self):
        return self.row.revoked_at is not None

    def get_user(self):
        return self._user

    def get_client(self):
        return self._client


class PresentedToken(OAuthToken):
    """A token found by the string a client presented to revocation or introspection. Which of
    the pair it is decides what its expiry is, and a refresh token spent by rotation is no
    longer active (its successor is)."""

    def __init__(self, row: Token, client: OAuthClient | None, user, refresh: bool) -> None:
        super().__init__(row, client, user)
        self.refresh = refresh

    def is_expired(self):
        return self.is_refresh_token_expired() if self.refresh else super().is_expired()

    def is_revoked(self):
        return super().is_revoked() or (self.refresh and self.row.rotated_at is not None)
