"""UserInfo, revocation (RFC 7009), introspection (RFC 7662) and RP-initiated logout endpoints."""
from __future__ import annotations

from authlib.integrations.flask_oauth2 import ResourceProtector, token_authenticated
from authlib.integrations.flask_oauth2.requests import FlaskJsonPayload, FlaskJsonRequest
from authlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error
from authlib.oauth2.rfc6749.requests import JsonRequest
from authlib.consts import default_json_headers
from authlib.oauth2.rfc6750 import BearerTokenValidator, InvalidTokenError
from authlib.oauth2.rfc7009 import RevocationEndpoint as _Revocation
from authlib.oauth2.rfc7662 import IntrospectionEndpoint as _Introspection
from authlib.oidc.core import UserInfoEndpoint as _UserInfo
from authlib.oidc.rpinitiated import EndSessionEndpoint as _EndSession
from flask import current_app, g
from flask import request as flask_request
from sqlalchemy import bindparam, or_, select

from idp import audit, token_revocation
from idp.db import db
from idp.models import Organization, Token, User
from idp.oidc import claims, dpop, keys, urls
from idp.oidc.adapters import AUTH_METHODS, CONFIDENTIAL_AUTH_METHODS, OAuthToken, PresentedToken
from idp.security.tokens import sha256_hex


def _token_param_only(request) -> None:
    """RFC 7009 2.1 and RFC 7662 2.1: `token` is required; `token_type_hint` is only a hint, and
    one this server does not know is ignored (Authlib answered it 401 unsupported_token_type)."""
    if not request.form.get("token"):
        raise InvalidRequestError("The token to look up is missing.")


def _find_token(token_string: str) -> PresentedToken | None:
    """The token a client presented, whichever of the pair it is. One lookup serves both, so
    `token_type_hint` is not needed (RFC 7009 2.1 and RFC 7662 2.1 make it only a hint): a
    client that sends the wrong hint still revokes, or learns about, the token it meant."""
    if not token_string or len(token_string) > 512:
        return None
    digest = sha256_hex(token_string)
    row = db.session.scalar(select(Token).where(or_(Token.access_token_hash == digest,
                                                    Token.refresh_token_hash == digest)))
    if row is None:
        return None
    from idp.oidc.server import query_client

    user = db.session.get(User, row.user_id) if row.user_id is not None else None
    return PresentedToken(row, query_client(row.client_id), user, refresh=row.refresh_token_hash == digest)


_TOKENS = Token.__table__
# A bearer token with its user and the user's organization, in one prebuilt statement: every
# UserInfo call makes it (an ORM load of the token, the user, then the organization made three).
_BEARER = (
    select(*_TOKENS.c, *[column for column in claims.CLAIM_COLUMNS if column.key != "user_id"], User.disabled,
           User.tokens_valid_after)
    .select_from(_TOKENS.outerjoin(User, User.id == _TOKENS.c.user_id)
                 .outerjoin(Organization, Organization.id == User.org_id))
    .where(_TOKENS.c.access_token_hash == bindparam("token_hash"))
)


REALM = "idp"


class BearerChallenge(OAuth2Error):
    """An RFC 6750 (section 3) answer from a bearer-protected endpoint: the status, and the
    WWW-Authenticate challenge it MUST carry. With no credentials at all the challenge names no
    error (3.1); otherwise one of the three registered codes (6.2), or RFC 9449's
    `invalid_dpop_proof`. A DPoP token's refusal challenges with the DPoP scheme (RFC 9449 7.1),
    naming the algorithms taken."""

    def __init__(self, error: str | None, status_code: int, description: str, scope: str | None = None,
                 scheme: str = "Bearer") -> None:
        super().__init__(description=description, status_code=status_code)
        self.error = error or "invalid_request"
        self.bare = error is None
        self.scope = scope
        self.scheme = scheme

    def get_body(self):
        return [("error_description", self.description)] if self.bare else super().get_body()

    def get_headers(self):
        attributes = [f'realm="{REALM}"']
        if not self.bare:
            attributes.append(f'error="{self.error}"')
        if self.scope:
            attributes.append(f'scope="{self.scope}"')
        if self.scheme == "DPoP":
            attributes.append(f'algs="{" ".join(dpop.ALGS)}"')
        return [*super().get_headers(), ("WWW-Authenticate", f"{self.scheme} " + ", ".join(attributes))]


class LeanFlaskJsonRequest(FlaskJsonRequest):
    """Authlib's request adapter for protected resources, with its `uri` (which the bearer and
    DPoP validators never read) from the WSGI environ rather than werkzeug's `request.url`: about
    a tenth of a UserInfo call. (As idp.oidc.server.LeanFlaskOAuth2Request for the grants.)"""

    def __init__(self, request) -> None:
        JsonRequest.__init__(self, request.method, urls.environ_uri(request.environ), request.headers)
        self.payload = FlaskJsonPayload(request)


class BearerResourceProtector(ResourceProtector):
    """Authlib's protector with RFC 6750's answers: its own used unregistered error codes
    (missing_authorization, unsupported_token_type) and sent insufficient_scope without a challenge."""

    def acquire_token(self, scopes=None, **kwargs):
        """Authlib's, on LeanFlaskJsonRequest."""
        kwargs["scopes"] = scopes
        for claim in kwargs:
            if isinstance(kwargs[claim], str):
                kwargs[claim] = [kwargs[claim]]
        token = self.validate_request(request=LeanFlaskJsonRequest(flask_request._get_current_object()), **kwargs)
        token_authenticated.send(self, token=token)
        g.authlib_server_oauth2_token = token
        return token

    def parse_request_authorization(self, request):
        header = request.headers.get("Authorization")
        if not header:
            raise BearerChallenge(None, 401, "An access token is required: Authorization: Bearer TOKEN.")
        scheme, _, token_string = header.partition(" ")
        scheme = scheme.lower()
        if scheme not in ("bearer", "dpop") or not token_string.strip():
            raise BearerChallenge("invalid_request", 400, "Send the access token as Authorization: Bearer TOKEN "
                                                          "(a DPoP-bound one as Authorization: DPoP TOKEN).")
        return self.get_token_validator(scheme), token_string.strip()


class AccessTokenValidator(BearerTokenValidator):
    SCHEME = "Bearer"  # of its challenges

    def validate_token(self, token, scopes, request):
        if not token or token.is_expired() or token.is_revoked():
            raise InvalidTokenError(realm=REALM)
        if token.row.dpop_jkt is not None:  # RFC 9449 7.2: a bound token is never taken as a bearer one
            raise BearerChallenge("invalid_token", 401, "This access token is bound to a DPoP key: send it as "
                                                        "Authorization: DPoP TOKEN, with a DPoP proof.", scheme="DPoP")
        self.check_scope(token, scopes)

    def check_scope(self, token, scopes):
        if self.scope_insufficient(token.get_scope(), scopes):
            raise BearerChallenge("insufficient_scope", 403, "This access token was not granted the scope needed.",
                                  scope=" ".join(scopes or ()), scheme=self.SCHEME)

    def authenticate_token(self, token_string):
        """The access token (with its client, and its user unless it has none), or None; a
        disabled user's tokens are refused, and those of a client since removed (its token rows
        went with it, but a grant answered from a worker's cached copy of the client may store
        one after: idp.clients.remove)."""
        if not token_string or len(token_string) > 512:
            return None
        # Outside any transaction: UserInfo only reads (no BEGIN and COMMIT round trips).
        row = db.read_first(_BEARER, {"token_hash": sha256_hex(token_string)})
        if row is None:
            return None
        # Whose token this is, accepted or not: a browser-based client reads the refusal from its
        # own origin too (idp.oidc.views), and must, to learn the DPoP nonce to use (RFC 9449 9)
        # or that its token expired.
        g.presented_token_client_id = row.client_id
        from idp.oidc.server import query_client

        user = None
        if row.user_id is not None:
            if row.disabled or not claims.valid_after_sign_out(row.auth_time, row.tokens_valid_after):
                return None
            user = claims.ClaimsUser.from_row(row)
        client = query_client(row.client_id)
        return OAuthToken(row, client, user) if client is not None else None


class DPoPTokenValidator(AccessTokenValidator):
    """`Authorization: DPoP TOKEN` (RFC 9449 7): a token bound to a key, with a proof by that key
    for this request and this token (idp.oidc.dpop). The protector guards UserInfo: the proof's
    `htu` is its URL as discovery gives it."""

    TOKEN_TYPE = "dpop"
    SCHEME = "DPoP"

    def authenticate_token(self, token_string):
        token = super().authenticate_token(token_string)
        if token is not None:
            token.presented = token_string  # the proof's `ath` is checked against it
        return token

    def validate_token(self, token, scopes, request):
        if not token or token.is_expired() or token.is_revoked():
            raise BearerChallenge("invalid_token", 401, "The access token is not valid.", scheme="DPoP")
        if token.row.dpop_jkt is None:
            raise BearerChallenge("invalid_token", 401, "This access token is not bound to a DPoP key: send it "
                                                        "as Authorization: Bearer TOKEN.", scheme="DPoP")
        try:
            proof = dpop.proof_of(request.headers, request.method, urls.of("userinfo_endpoint"),
                                  access_token=token.presented)
            if proof is None:
                raise dpop.InvalidDPoPProof("A DPoP proof is required with a DPoP-bound access token.")
            if proof.jkt != token.row.dpop_jkt:
                raise dpop.InvalidDPoPProof("The DPoP proof is signed by another key than the token is bound to.")
            dpop.spend(proof)
        except dpop.InvalidDPoPProof as refused:  # invalid_dpop_proof, or use_dpop_nonce (RFC 9449 9)
            raise BearerChallenge(refused.error, 401, refused.description, scheme="DPoP") from None
        self.check_scope(token, scopes)


resource_protector = BearerResourceProtector()
resource_protector.register_token_validator(AccessTokenValidator(realm=REALM))
resource_protector.register_token_validator(DPoPTokenValidator(realm=REALM))


class UserInfoEndpoint(_UserInfo):
    def __init__(self):
        super().__init__(resource_protector=resource_protector)

    def __call__(self, request):
        # A token without a user (client_credentials) has no one to describe: not a token for
        # this endpoint (OIDC Core 5.3.3), rather than a 500.
        token = self.resource_protector.acquire_token("openid")
        user = token.get_user()
        if user is None:
            raise InvalidTokenError(description="This access token was not issued to a user.", realm=REALM)
        # Plain JSON always: no client registers userinfo_signed_response_alg (discovery offers none).
        return 200, self.generate_user_info(user, token.scope), default_json_headers

    def generate_user_info(self, user, scope):
        return claims.generate_user_info(user, scope)


class RevocationEndpoint(_Revocation):
    """Revoking either token of a pair revokes the pair; revoking a refresh token revokes its family."""

    CLIENT_AUTH_METHODS = list(AUTH_METHODS)

    def query_token(self, token_string, token_type_hint):
        return _find_token(token_string)

    def check_params(self, request, client):
        _token_param_only(request)

    def revoke_token(self, token, request):
        row = token.row
        family = row.family_id if token.refresh else None
        revoked = token_revocation.revoke(Token.family_id == family if family is not None else Token.id == row.id)
        if revoked:  # (RFC 7009: revoking a token already dead answers 200 as well, and records nothing)
            audit.record_about_user("token.revoked", row.user_id, actor=row.client_id,
                                    details={"client_id": row.client_id, "refresh_token": bool(token.refresh),
                                             "tokens_revoked": revoked})
        db.session.commit()


class IntrospectionEndpoint(_Introspection):
    """Confidential clients only; a client may introspect only the tokens issued to it."""

    CLIENT_AUTH_METHODS = list(CONFIDENTIAL_AUTH_METHODS)

    def query_token(self, token_string, token_type_hint):
        return _find_token(token_string)

    def check_params(self, request, client):
        _token_param_only(request)

    def check_permission(self, token, client, request):
        return token.check_client(client)

    def introspect_token(self, token):
        user = token.get_user()
        if user is not None and (user.disabled
                                 or not claims.valid_after_sign_out(token.row.auth_time, user.tokens_valid_after)
                                 or (token.refresh and not _refresh_allowed(user, token.row))):
            # Not active (RFC 7662 2.2): UserInfo and the refresh grant refuse it too, and a
            # resource server asking here must not accept what they refuse.
            return {"active": False}
        row = token.row
        settings = current_app.extensions["idp.settings"]
        payload = {
            "active": True,
            "client_id": row.client_id,
            "token_type": "refresh_token" if token.refresh else "Bearer",
            "scope": row.scope,
            "iss": settings.issuer,
            "exp": row.refresh_expires_at if token.refresh else row.access_expires_at,
            "iat": row.issued_at,
        }
        if payload["exp"] is None:  # a refresh token without an end of its own
            del payload["exp"]
        if user is not None:
            payload["sub"] = user.public_id
            if "email" in row.scope.split():  # as UserInfo: the address only where the user let it go
                payload["username"] = user.email
        if row.acr:
            payload["acr"] = row.acr
        client = token.get_client()
        if row.dpop_jkt is not None and (not token.refresh or (client is not None and client.row.public)):
            # RFC 9449 6.2: what the token is bound to (a confidential client's refresh token is not).
            payload["cnf"] = {"jkt": row.dpop_jkt}
            if not token.refresh:
                payload["token_type"] = "DPoP"
        return payload


class EndSessionEndpoint(_EndSession):
    def resolve_client_from_id_token_claims(self, id_token_claims):
        """Our ID tokens carry `aud` as a one-element list: that element is the client."""
        aud = id_token_claims.get("aud")
        if isinstance(aud, list) and len(aud) == 1:
            aud = aud[0]
        return self.server.query_client(aud) if isinstance(aud, str) else None

    def get_server_jwks(self):
        import json

        return json.loads(keys.snapshot().jwks_json)

    def _validate_id_token_hint(self, id_token_hint: str) -> dict:
        """Authlib checks the hint's signature (any JWT signed with our keys) and times; the hint
        must also be an ID token of ours (RP-Initiated Logout 2): a back-channel logout token,
        signed with the same keys and naming the same sub and sid, is not one (an application
        told of a withdrawn access could sign its user out with it, unasked).

        Authlib turns only joserfc's JoseError into invalid_request; a header joserfc cannot
        even read (`"crit": 1`) raises TypeError or ValueError, which is the same bad request
        (as keys.id_token_subject, at /authorize, treats it), not a 500."""
        try:
            claims = super()._validate_id_token_hint(id_token_hint)
        except (ValueError, TypeError):
            raise InvalidRequestError("The id_token_hint is not a JWT.") from None
        if "events" in claims or claims.get("iss") != current_app.extensions["idp.settings"].issuer:
            raise InvalidRequestError("The id_token_hint is not an ID token of this provider.")
        return claims

    def end_session(self, end_session_request):
        from idp.login import session as login_session

        login_session.end_current()


def _refresh_allowed(user: User, row: Token) -> bool:
    """The refresh grant's 2FA rules (grants.RefreshTokenGrant.authenticate_user), asked of the
    user's row introspection already holds: a second factor now required and not proved
    (idp.policy.decide.refresh_allowed), or proved only with factors the organization no longer
    accepts (gate.proved_factor_withdrawn)."""
    from idp.db import utcnow
    from idp.login import gate
    from idp.policy import decide, status

    if (status.is_required(user, user.org, status.today_utc())
            and gate.proved_factor_withdrawn(user.id, row.credential_ids, user.org.allowed_factors)):
        return False
    return decide.refresh_allowed(user, user.org, tuple(row.amr or ()), utcnow())


ENDPOINTS = (UserInfoEndpoint(), RevocationEndpoint, IntrospectionEndpoint, EndSessionEndpoint)
