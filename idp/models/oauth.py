"""OAuth/OIDC state: clients, codes, tokens, consent and signing keys.

Secrets (client secrets, codes, tokens) are stored as SHA-256 hashes only: they
are high-entropy random values, so a fast hash is right and keeps the token
endpoint cheap (STYLE.md: no argon2 there).
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (Boolean, DateTime, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint,
                        text)
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base, utcnow
from idp.models.types import Json


class Client(Base):
    __tablename__ = "clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The secret before the last rotation, still accepted until `previous_secret_expires_at`
    # when the rotation gave it a grace period (`idp client rotate-secret --grace`): the
    # client's deployments can take the new one without a moment of refusals.
    previous_secret_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    name: Mapped[str] = mapped_column(String(200))
    redirect_uris: Mapped[list] = mapped_column(Json, default=list)
    post_logout_redirect_uris: Mapped[list] = mapped_column(Json, default=list)
    grant_types: Mapped[list] = mapped_column(Json, default=list)
    scope: Mapped[str] = mapped_column(Text, default="openid profile email offline_access")
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    first_party: Mapped[bool] = mapped_column(Boolean, default=False)
    id_token_alg: Mapped[str] = mapped_column(String(10), default="ES256")
    # OIDC Back-Channel Logout 1.0: where the client is told, server to server, that a session
    # it signed in through has ended (idp.oidc.backchannel). None: it is not told.
    backchannel_logout_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    # OIDC Front-Channel Logout 1.0: the page of the client's that the browser loads, in a hidden
    # frame of our signed-out page, when the user signs out here (idp.oidc.frontchannel). None:
    # no frame.
    frontchannel_logout_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    # RFC 7523 private_key_jwt: the public keys (a JWK Set) the client signs its assertions
    # with (idp.oidc.client_assertion). Such a client has no secret. None: it uses a secret (or
    # none at all, when public).
    jwks: Mapped[dict | None] = mapped_column(Json, nullable=True)
    # Or the URL where the client publishes those keys itself (idp.oidc.client_jwks): fetched,
    # kept for a while, fetched again when it rotates. At most one of `jwks` and `jwks_uri`.
    jwks_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    # RFC 9126 6: the client's authorization requests are accepted only as pushed requests
    # (idp.oidc.pushed_requests), so that nobody can send a browser to /authorize with a
    # request of their own making in its name.
    require_pushed_authorization_requests: Mapped[bool] = mapped_column(Boolean, default=False)
    # RFC 9449 5.2: the client's tokens are always DPoP-bound; a token request without a proof
    # is refused (idp.oidc.dpop).
    dpop_bound_access_tokens: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ClientAssertion(Base):
    """A client assertion (RFC 7523) that authenticated its client: its `jti` may not be used
    again while the assertion is valid (one INSERT decides, idp.oidc.client_assertion). Purged
    once expired."""

    __tablename__ = "client_assertions"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    jti_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the jti: any length fits
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class PushedRequest(Base):
    """An authorization request a client pushed (RFC 9126, idp.oidc.pushed_requests), waiting
    for the browser to bring its request_uri to /authorize: taken (deleted) by that one use,
    or purged once expired."""

    __tablename__ = "pushed_requests"

    request_uri_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the request_uri
    client_id: Mapped[str] = mapped_column(String(64))
    parameters: Mapped[dict] = mapped_column(Json)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class DeviceAuthorization(Base):
    """A device waiting to be signed in (RFC 8628, idp.oidc.device_flow): it polls with its device
    code while a person types the user code at /device and signs in there. Pending, then
    approved (the login's result is then an `authorization_codes` row the next poll redeems) or
    denied; purged once expired."""

    __tablename__ = "device_authorizations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_code_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 of the device code
    # What the person types, as stored: 8 letters without the dash (idp.oidc.device_flow).
    user_code: Mapped[str] = mapped_column(String(16), unique=True)
    client_id: Mapped[str] = mapped_column(String(64), index=True)
    scope: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # pending | approved | denied
    # Who approved or denied it (None: denied at the confirmation, before any login).
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # Seconds the device must wait between polls (grows with each slow_down), and its last poll
    # (Unix time, compared with it in SQL).
    interval: Mapped[int] = mapped_column(Integer)
    last_polled_at: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class DPoPProof(Base):
    """A DPoP proof (RFC 9449) that was accepted: its `jti` may not be used again by its key
    while the proof could be (idp.oidc.dpop.spend). Purged once expired."""

    __tablename__ = "dpop_proofs"

    jkt: Mapped[str] = mapped_column(String(64), primary_key=True)  # the key's RFC 7638 thumbprint
    jti_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the jti
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class SessionClient(Base):
    """A session signed this client in (a code was issued to it through the session): whom to
    tell when the session ends. Only for clients with a back-channel or front-channel logout URI
    (idp.oidc.backchannel, idp.oidc.frontchannel); gone with the session (the purge deletes
    ended sessions)."""

    __tablename__ = "session_clients"

    sid: Mapped[str] = mapped_column(ForeignKey("user_sessions.sid", ondelete="CASCADE"), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class AuthorizationCode(Base):
    __tablename__ = "authorization_codes"
    # (client_id, nonce): every authorization request checks that its nonce is new for the
    # client (idp.oidc.openid.exists_nonce); with client_id alone that was a scan of all the
    # client's codes, which grows with every login until the hourly purge.
    __table_args__ = (Index("ix_authorization_codes_client_nonce", "client_id", "nonce"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    nonce: Mapped[str | None] = mapped_column(Text, nullable=True)
    code_challenge: Mapped[str | None] = mapped_column(String(128), nullable=True)
    code_challenge_method: Mapped[str | None] = mapped_column(String(10), nullable=True)
    auth_time: Mapped[int] = mapped_column(Integer)
    amr: Mapped[list] = mapped_column(Json, default=list)
    acr: Mapped[str] = mapped_column(String(64))
    session_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    redeemed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # What the code opens was taken back (its session ended, the application's access was
    # withdrawn, the user signed out everywhere): it can no longer be redeemed, and a redemption
    # already under way stores no tokens. Set only on codes that could still be redeemed or
    # exchanged (idp.token_revocation.EXCHANGE_IN_FLIGHT).
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # Presented again after its redemption (a stolen code, assumed): the tokens of its first
    # redemption are revoked, and if that redemption is still under way, it stores them revoked.
    reused_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # DPoP (RFC 9449 10): the thumbprint of the key the code may be exchanged with only (the
    # authorization request's `dpop_jkt`, or the key of a DPoP proof sent with the pushed request).
    dpop_jkt: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # True when the authorization request sent no redirect_uri (a plain OAuth client with one
    # registered URI, which `redirect_uri` then holds): the token request need not send one
    # either (RFC 6749 4.1.3). NULL when it was sent: the usual INSERT leaves the column out.
    redirect_uri_implied: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    # The second-factor credentials the login proved (user_sessions.credential_ids), handed on to
    # the tokens: a refresh is refused once the organization no longer accepts any of their
    # factors (idp.oidc.grants.RefreshTokenGrant). NULL for a password-only login.
    credential_ids: Mapped[list | None] = mapped_column(Json, nullable=True)


class Token(Base):
    """An access token and, when granted, its refresh token.

    Refresh tokens rotate: using one marks its row `rotated_at` and issues a new row in
    the same `family_id`. Presenting a rotated refresh token revokes the whole family.
    Tokens of a login (code and refresh grants) have a family; client_credentials tokens,
    which can be neither refreshed nor replayed from a code, have none.
    """

    __tablename__ = "tokens"
    # Every index is written by every grant, so the token table keeps only those a query
    # needs, and the ones over nullable columns skip the rows without a value (partial
    # indexes): a client_credentials token has no user, no code and no refresh token.
    __table_args__ = (
        Index("uq_tokens_refresh_token_hash", "refresh_token_hash", unique=True,
              sqlite_where=text("refresh_token_hash IS NOT NULL"),
              postgresql_where=text("refresh_token_hash IS NOT NULL")),
        Index("ix_tokens_family", "family_id", sqlite_where=text("family_id IS NOT NULL"),
              postgresql_where=text("family_id IS NOT NULL")),
        Index("ix_tokens_code_id", "code_id", sqlite_where=text("code_id IS NOT NULL"),
              postgresql_where=text("code_id IS NOT NULL")),
        Index("ix_tokens_user_id", "user_id", sqlite_where=text("user_id IS NOT NULL"),
              postgresql_where=text("user_id IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    access_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    refresh_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    client_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=True)
    scope: Mapped[str] = mapped_column(Text, default="")
    family_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    code_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    auth_time: Mapped[int | None] = mapped_column(Integer, nullable=True)
    amr: Mapped[list | None] = mapped_column(Json, nullable=True)
    acr: Mapped[str | None] = mapped_column(String(64), nullable=True)
    issued_at: Mapped[int] = mapped_column(Integer)
    access_expires_at: Mapped[int] = mapped_column(Integer)
    refresh_expires_at: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rotated_at: Mapped[int | None] = mapped_column(Integer, nullable=True)
    revoked_at: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # DPoP (RFC 9449, idp.oidc.dpop): the thumbprint of the key the access token (and, for a
    # public client, the refresh token) is bound to. None: a bearer token.
    dpop_jkt: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The second-factor credentials the family's login proved (from its code): see
    # AuthorizationCode.credential_ids. NULL: none, or a token stored before the column existed.
    credential_ids: Mapped[list | None] = mapped_column(Json, nullable=True)


class ConsentGrant(Base):
    """A remembered consent: this user let this client have these scopes."""

    __tablename__ = "consent_grants"
    __table_args__ = (UniqueConstraint("user_id", "client_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SigningKey(Base):
    """An ID-token signing key. The private key is sealed with the secret key ring.

    Rotation: a new key is published (in JWKS) and used for signing; the old one is
    `retired_at` and stays in JWKS until `remove_after`, when no token it signed is valid.
    Past `remove_after` the row stays, but `idp purge` wipes its private key
    (`private_ciphertext` becomes idp.oidc.keys.WIPED, empty).
    """

    __tablename__ = "signing_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kid: Mapped[str] = mapped_column(String(64), unique=True)
    alg: Mapped[str] = mapped_column(String(10))
    private_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    secret_key_id: Mapped[str] = mapped_column(String(64))
    public_jwk: Mapped[dict] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Signs from this moment (a rotated-in key is published a while before it signs).
    activates_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    retired_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    remove_after: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
