"""The device authorization grant (RFC 8628): signing in on a device with no usable browser.

    device ── POST /oauth/device_authorization ──> device_code, user_code, verification_uri
    person ── /device: types the user_code, confirms, signs in (password, second factor, consent)
    device ── POST /oauth/token grant_type=urn:ietf:params:oauth:grant-type:device_code, polling
             authorization_pending | slow_down ... then the tokens (once), or access_denied,
             or expired_token

A `device_authorizations` row is the pending sign-in: the SHA-256 of its device code (the
device's secret), its user code (what the person types: 8 consonants, RFC 8628 6.1, shown as
XXXX-XXXX), the client and scope, and where it stands (`pending`, then `approved` or
`denied`). The person's side is an ordinary login of the pipeline (idp.login.pipeline), which
ends by approving the device rather than by issuing a code, so the second factor, the 2FA
policy, `acr` and consent are what they are for any login.

Approval writes what a code exchange needs as an `authorization_codes` row (the login's user,
auth_time, amr, acr, session), under a hash of the device code kept apart from any code's
(`approval_hash`: a device code is never redeemable as a code), and the poll that finds it
approved redeems that row as the code grant redeems a code: claimed by one conditional UPDATE,
so that of simultaneous polls exactly one gets tokens, a poll after that is `invalid_grant` and
revokes what the first one got (a device code used twice was stolen), and the tokens are
revoked with the session that approved them (idp.token_revocation). Approval is itself
conditional (`status = 'pending'`): two browsers confirming one user code approve it once.

Polling faster than the interval is answered `slow_down`, and the interval grows by 5 seconds
for every later poll (RFC 8628 3.5), counted in the row: a conditional UPDATE per poll.
"""
from __future__ import annotations

import secrets
import time
import unicodedata
from dataclasses import dataclass
from datetime import timedelta

from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749.errors import (AccessDeniedError, InvalidGrantError, InvalidRequestError,
                                           UnauthorizedClientError)
from authlib.oauth2.rfc6749 import grants as oauth_grants
from authlib.oauth2.rfc6749.hooks import hooked
from authlib.oauth2.rfc8628 import DEVICE_CODE_GRANT_TYPE, AuthorizationPendingError, ExpiredTokenError, SlowDownError
from flask import current_app
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from idp import audit
from idp.db import db, foreign_key_refused, utcnow
from idp.models import AuthorizationCode, DeviceAuthorization
from idp.oidc import backchannel, claims, urls
from idp.oidc.adapters import AUTH_METHODS, OAuthCode
from idp.security.tokens import random_token, sha256_hex

GRANT_TYPE = DEVICE_CODE_GRANT_TYPE
ENDPOINT_NAME = "device_authorization"
# RFC 8628 6.1: no vowels (no words spelt by chance), no digits (no 0/O, 1/I to confuse);
# 8 of 20 letters is 34 bits, against guesses limited per address (idp.login.device_pages).
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
# RFC 8628 3.5: what a slow_down adds to the device's interval.
SLOW_DOWN_STEP = 5

_DEVICES = DeviceAuthorization.__table__
_CODES = AuthorizationCode.__table__


def _settings():
    return current_app.extensions["idp.settings"]


def lifetime() -> int:
    return int(_settings().get("tokens.device_code_ttl", 600))


def poll_interval() -> int:
    return int(_settings().get("tokens.device_poll_interval", 5))


def new_user_code() -> str:
    return "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))


def normalised_user_code(typed: str) -> str | None:
    """What a person typed, as stored: upper case, without the dash, spaces or other separators
    people add; None when it cannot be a user code (so no look-up is made for it). NFKC first:
    a keyboard in full-width mode (a Japanese or Chinese input method) types ＢＣＤＦ－ＧＨＪＫ,
    the same letters to the person (RFC 8628 6.1: be lenient with what is typed)."""
    letters = "".join(ch for ch in unicodedata.normalize("NFKC", typed or "").upper() if ch.isalnum())
    if len(letters) != USER_CODE_LENGTH or any(ch not in USER_CODE_ALPHABET for ch in letters):
        return None
    return letters


def displayed(user_code: str) -> str:
    """XXXX-XXXX: how the device shows it and the page repeats it."""
    half = USER_CODE_LENGTH // 2
    return f"{user_code[:half]}-{user_code[half:]}"


def approval_hash(device_code_hash: str) -> str:
    """The `authorization_codes.code_hash` of an approved device, from its device code's hash:
    apart from every code's (the SHA-256 of the code), so a device code presented as a code
    finds nothing. (Nor does this hash's own preimage: the code grant never claims a row without
    a redirect URI, which an approval is: idp.oidc.grants.claim_code.)"""
    return sha256_hex("device_code:" + device_code_hash)


# --------------------------------------------------------------------------- the device's request


class DeviceAuthorizationEndpoint:
    """`POST /oauth/device_authorization` (RFC 8628 3.1-3.2): the client authenticates as at the
    token endpoint (`none` for a public client), must be registered for the device code grant,
    and gets its codes. The scope is narrowed to what the client may have."""

    ENDPOINT_NAME = ENDPOINT_NAME
    CLIENT_AUTH_METHODS = list(AUTH_METHODS)

    def __init__(self, server) -> None:
        self.server = server

    def create_endpoint_request(self, request):
        return self.server.create_oauth2_request(request)

    def __call__(self, request):
        client = self.server.authenticate_client(request, self.CLIENT_AUTH_METHODS, ENDPOINT_NAME)
        if not client.check_grant_type(GRANT_TYPE):
            raise UnauthorizedClientError("This client is not registered for the device authorization grant.")
        data = request.payload.data
        if (data.get("client_id") or client.get_client_id()) != client.get_client_id():  # sent empty: not sent
            raise InvalidRequestError("client_id is not the authenticated client's.")
        scope = client.get_allowed_scope(data.get("scope") or "")
        device_code = random_token(32)
        user_code = _store(client.get_client_id(), scope, device_code)
        verification_uri = urls.of("device_verification_uri")
        body = {
            "device_code": device_code,
            "user_code": displayed(user_code),
            "verification_uri": verification_uri,
            "verification_uri_complete": f"{verification_uri}?user_code={displayed(user_code)}",
            "expires_in": lifetime(),
            "interval": poll_interval(),
        }
        return 200, body, default_json_headers


def _store(client_id: str, scope: str, device_code: str) -> str:
    """Insert the pending authorization and commit it; its user code, drawn again in the rare
    case that a row not yet purged has it (the column is unique)."""
    now = utcnow()
    for _attempt in range(5):
        user_code = new_user_code()
        try:
            db.session.execute(insert(_DEVICES).values(
                device_code_hash=sha256_hex(device_code), user_code=user_code, client_id=client_id, scope=scope,
                status="pending", interval=poll_interval(), created_at=now,
                expires_at=now + timedelta(seconds=lifetime())))
            db.session.commit()
            return user_code
        except IntegrityError:
            db.session.rollback()
    raise RuntimeError("no free user code after 5 draws")  # 20^8 codes: only a full table gets here


# --------------------------------------------------------------------------- the person's side


@dataclass(frozen=True)
class PendingDevice:
    id: int
    user_code: str
    client_id: str
    scope: str


_PENDING_BY_USER_CODE = (
    select(_DEVICES.c.id, _DEVICES.c.user_code, _DEVICES.c.client_id, _DEVICES.c.scope)
    .where(_DEVICES.c.user_code == bindparam("user_code"), _DEVICES.c.status == "pending",
           _DEVICES.c.expires_at > bindparam("now"))
)


def pending(typed_user_code: str) -> PendingDevice | None:
    """The live, still pending authorization with this user code, else None."""
    user_code = normalised_user_code(typed_user_code)
    if user_code is None:
        return None
    row = db.read_first(_PENDING_BY_USER_CODE, {"user_code": user_code, "now": utcnow()})
    return PendingDevice(row.id, row.user_code, row.client_id, row.scope) if row is not None else None


_DECIDE = (
    update(_DEVICES)
    .where(_DEVICES.c.id == bindparam("device_id"), _DEVICES.c.status == "pending",
           _DEVICES.c.expires_at > bindparam("now"))
    .values(status=bindparam("status"), user_id=bindparam("user_id"), decided_at=bindparam("now"))
    .returning(_DEVICES.c.device_code_hash, _DEVICES.c.client_id, _DEVICES.c.scope, _DEVICES.c.expires_at)
)


def approve(device_id: int, user, outcome) -> bool:
    """The login for this device ended: record its approval, in the caller's transaction (the
    login's own, which commits it with the new session). False when the device is no longer
    pending (approved from another browser, denied, expired): nothing is written then."""
    from idp.oidc.server import query_client

    decided = db.run(_DECIDE, {"device_id": device_id, "status": "approved", "user_id": user.id,
                               "now": utcnow()}).first()
    client = query_client(decided.client_id) if decided is not None else None
    if client is None:  # (a client removed meanwhile took its devices with it)
        return False
    approval = dict(
        code_hash=approval_hash(decided.device_code_hash),
        client_id=decided.client_id, user_id=user.id, redirect_uri="", scope=decided.scope, nonce=None,
        auth_time=outcome.auth_time, amr=list(outcome.amr), acr=outcome.acr, session_id=outcome.sid,
        created_at=utcnow(), expires_at=decided.expires_at)
    if outcome.credential_ids:
        approval["credential_ids"] = list(outcome.credential_ids)
    db.run_insert(_CODES, approval)
    backchannel.remember(client, outcome.sid, user.id)  # whom to tell when the session ends
    audit.record("device.approved", org_id=user.org_id, actor_id=user.id, actor=user.email, subject_id=user.id,
                 details={"client_id": decided.client_id, "scope": decided.scope, "amr": list(outcome.amr)})
    return True


def deny(device_id: int, user_id: int | None) -> bool:
    """The person said no (at consent or by cancelling the login, as `user_id`; at the
    confirmation, as the browser's signed-in user or nobody): the device's next poll is
    `access_denied`. In the caller's transaction; False when it was no longer pending.

    Audited either way: a "no" at the confirmation is what a person sent someone else's code
    (RFC 8628 5.4, remote phishing) is meant to say. Nobody's is recorded without an
    organization (with the address and User-Agent, in the audit log's JSON lines)."""
    try:
        decided = db.run(_DECIDE, {"device_id": device_id, "status": "denied", "user_id": user_id,
                                   "now": utcnow()}).first()
    except db.engine.dialect.loaded_dbapi.IntegrityError as refused:
        if user_id is None or not foreign_key_refused(refused):
            raise
        # The browser's user was deleted as they said no (idp.users.delete): the "no" stands, as
        # nobody's. (Both callers committed what came before: the rollback undoes nothing else.)
        db.session.rollback()
        return deny(device_id, None)
    if decided is None:
        return False
    details = {"client_id": decided.client_id, "scope": decided.scope}
    if user_id is not None:
        audit.record_about_user("device.denied", user_id, actor_id=user_id, details=details)
    else:
        audit.record("device.denied", org_id=None, details=details)
    return True


# --------------------------------------------------------------------------- the device's polls

_BY_DEVICE_CODE = (
    select(_DEVICES.c.id, _DEVICES.c.status, _DEVICES.c.expires_at)
    .where(_DEVICES.c.device_code_hash == bindparam("device_code_hash"),
           _DEVICES.c.client_id == bindparam("client_id"))
)
# A poll at the pace asked: noted. No row: too soon, and the interval grows (SLOW_DOWN).
_POLL_IN_TIME = (
    update(_DEVICES)
    .where(_DEVICES.c.id == bindparam("device_id"),
           (_DEVICES.c.last_polled_at.is_(None))
           | (_DEVICES.c.last_polled_at + _DEVICES.c.interval <= bindparam("now")))
    .values(last_polled_at=bindparam("now"))
)
_SLOW_DOWN = (
    update(_DEVICES).where(_DEVICES.c.id == bindparam("device_id"))
    .values(last_polled_at=bindparam("now"), interval=_DEVICES.c.interval + SLOW_DOWN_STEP)
)


_APPROVAL_ENDED = (
    select(_CODES.c.id)
    .where(_CODES.c.code_hash == bindparam("code_hash"), _CODES.c.redeemed_at.is_(None),
           _CODES.c.revoked_at.is_not(None))
)


def _approval_ended(device_code_hash: str) -> bool:
    """Whether the device's approval was revoked before its first poll (the session that approved
    it ended, or the user signed out everywhere): no tokens, and not because of a second use."""
    return db.read_first(_APPROVAL_ENDED, {"code_hash": approval_hash(device_code_hash)}) is not None


class DeviceCodeGrant(oauth_grants.BaseGrant, oauth_grants.TokenEndpointMixin):
    """`grant_type=urn:ietf:params:oauth:grant-type:device_code` (RFC 8628 3.4-3.5).

    Authlib's DeviceCodeGrant reads the authorization and issues tokens without spending
    anything (two polls could both get tokens); this one redeems the approval as a code is
    redeemed (idp.oidc.grants.claim_code), and the tokens inherit the login's lineage, so they
    are revoked with its session and refreshed as a code's would be."""

    GRANT_TYPE = GRANT_TYPE
    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)

    def validate_token_request(self):
        from idp.oidc.grants import claim_code

        client = self.authenticate_token_endpoint_client()  # first: a wrong secret is invalid_client, whatever else
        device_code = self.request.payload.data.get("device_code")
        if not device_code:
            raise InvalidRequestError("device_code is required.")
        if not client.check_grant_type(GRANT_TYPE):
            raise UnauthorizedClientError("This client is not registered for the device authorization grant.")
        now = utcnow()
        device_code_hash = sha256_hex(device_code)
        device = db.read_first(_BY_DEVICE_CODE, {"device_code_hash": device_code_hash,
                                                 "client_id": client.get_client_id()})
        if device is None:
            raise InvalidGrantError("The device_code is unknown, or another client's.")
        if device.status == "denied":
            raise AccessDeniedError("The user denied the request.")
        if device.status == "pending":
            if device.expires_at <= now:
                raise ExpiredTokenError("The device_code has expired: start again.")
            values = {"device_id": device.id, "now": int(time.time())}
            if db.execute_alone(_POLL_IN_TIME, values) == 0:
                db.execute_alone(_SLOW_DOWN, values)
                raise SlowDownError()
            raise AuthorizationPendingError()
        # Approved: redeemed once, as a code (an expired approval is found by nothing: expired).
        row = claim_code(approval_hash(device_code_hash), client, approval=True)
        if row is None:
            if device.expires_at <= now:
                raise ExpiredTokenError("The device_code has expired: start again.")
            if _approval_ended(device_code_hash):
                raise AccessDeniedError("The sign-in that approved this device has ended: start again.")
            raise InvalidGrantError("The device_code was already used.")
        user = claims.active_user(row.user_id, authenticated_at=row.auth_time)
        if user is None:
            raise InvalidGrantError("The user of this device_code can no longer sign in.")
        self.request.client = client
        self.request.user = user
        self.request.code_row = row  # the tokens' lineage (idp.oidc.server._lineage)
        self.request.authorization_code = OAuthCode(row)  # auth_time, amr, acr, sid in the ID token

    @hooked
    def create_token_response(self):
        scope = self.request.code_row.scope
        token = self.generate_token(user=self.request.user, scope=scope,
                                    include_refresh_token=self.request.client.check_grant_type("refresh_token"))
        self.save_token(token)
        return 200, token, self.TOKEN_RESPONSE_HEADER
