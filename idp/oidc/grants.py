"""Authlib grants with our storage hooks.

Every "exactly once" here is one conditional UPDATE ... RETURNING, the idiom of
`db.claim` in statements built once: a code is claimed with `redeemed_at IS NULL`, a
refresh token with `rotated_at IS NULL`. Authlib's
stock code grant reads a code and deletes it later, so two parallel redemptions
would both succeed; claiming inside `query_authorization_code` closes that race.
"""
from __future__ import annotations

import re
import time

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError
from authlib.oauth2.rfc7636 import CodeChallenge
from flask import current_app
from dataclasses import dataclass
from datetime import date

from sqlalchemy import Boolean, Date, and_, bindparam, case, exists, false, literal_column, null, or_, select, update

from idp import audit, token_revocation
from idp.db import db, utcnow
from idp.models import AuthorizationCode, Organization, Token, User
from idp.oidc import adapters, backchannel, claims, parameters
from idp.oidc.adapters import CONFIDENTIAL_AUTH_METHODS, OAuthCode, OAuthToken
from idp.oidc.dpop import InvalidDPoPProof
from idp.ops import metrics
from idp.security.tokens import random_token, sha256_hex

AUTH_METHODS = list(adapters.AUTH_METHODS)


def _settings():
    return current_app.extensions["idp.settings"]


def revoke_if_replayed(token_hash: str) -> str | None:
    """A refresh token presented after it was rotated: assume it was stolen, revoke its family
    (audited, `token.replay_detected`, when that revoked anything: the admins' sign of a theft).
    The client the token was issued to when it was such a token (whoever presented it), else None."""
    stale = db.session.scalar(select(Token).where(Token.refresh_token_hash == token_hash))
    if stale is None or stale.rotated_at is None or stale.family_id is None:
        return None  # (a client_credentials token has no family, and `== None` would match them all)
    revoked = token_revocation.revoke(Token.family_id == stale.family_id)
    if revoked:
        audit.record_about_user("token.replay_detected", stale.user_id, actor=stale.client_id,
                                details={"client_id": stale.client_id, "tokens_revoked": revoked})
    db.session.commit()
    return stale.client_id


# ---- The grants' hot statements, built once. `db.claim` builds its statement per call and loads
# an ORM entity, which together cost more than the rest of a grant; these are the same
# conditional UPDATEs (the project's "exactly once" idiom), returning Core rows.

_TOKENS = Token.__table__
# A live refresh token with what the 2FA policy reads of its user (idp.policy.status.is_required),
# in one read that takes no lock: the token is spent only when its successor is stored (rotate).
_LIVE_REFRESH_TOKEN = (
    select(*_TOKENS.c, User.disabled, User.mfa_setting, User.exempt_until, Organization.require_2fa,
           Organization.allowed_factors)
    .select_from(_TOKENS.join(User, User.id == _TOKENS.c.user_id).join(Organization, Organization.id == User.org_id))
    .where(_TOKENS.c.refresh_token_hash == bindparam("token_hash"), _TOKENS.c.client_id == bindparam("for_client"),
           _TOKENS.c.rotated_at.is_(None), _TOKENS.c.revoked_at.is_(None),
           _TOKENS.c.refresh_expires_at > bindparam("now"),
           # not of a login older than the user's last sign-out everywhere (idp.users)
           or_(User.tokens_valid_after.is_(None), _TOKENS.c.auth_time >= User.tokens_valid_after))
)
_SPEND_REFRESH_TOKEN = (
    update(_TOKENS)
    .where(_TOKENS.c.id == bindparam("old_id"), _TOKENS.c.rotated_at.is_(None), _TOKENS.c.revoked_at.is_(None),
           _TOKENS.c.refresh_expires_at > bindparam("now"))
    .values(rotated_at=bindparam("now"))
    .returning(_TOKENS.c.id)
)
_SPEND_AND_STORE: dict[tuple[str, ...], object] = {}


def _spend_and_store_statement(columns: tuple[str, ...]):
    """PostgreSQL: spend the old token and insert its successor in one statement (a data-modifying
    CTE feeding the INSERT: no row is inserted unless the UPDATE matched), built once per column set."""
    statement = _SPEND_AND_STORE.get(columns)
    if statement is None:
        spent = _SPEND_REFRESH_TOKEN.cte("spent")
        successor = select(*[bindparam(name, type_=_TOKENS.c[name].type) for name in columns]).select_from(spent)
        statement = _SPEND_AND_STORE[columns] = _TOKENS.insert().from_select(list(columns), successor)
    return statement


def rotation_synchronous(settings) -> bool:
    """Whether a refresh token's rotation waits for the disk (PostgreSQL's synchronous_commit):
    `tokens.refresh_synchronous_commit`. When it does not, a crash may forget the rotations of
    its last fraction of a second: their new tokens are unknown (they fail closed, the client
    signs in again) and the spent tokens live again, the very state before the grant. A
    revocation, a replay's family revocation, a code and a login always wait."""
    return bool(settings.get("tokens.refresh_synchronous_commit"))


def rotate(previous, successor: dict, now: int, *, synchronous: bool = True) -> bool:
    """Spend the refresh token `previous` and store `successor` (a `tokens` row) as one atomic step:
    both happen, or neither when `previous` was spent (or revoked, or expired) meanwhile.

    PostgreSQL: one autocommit statement, one round trip (no BEGIN and COMMIT of their own),
    committed as `synchronous` says (rotation_synchronous). SQLite: a transaction of its own on
    a lone connection, holding the write lock for the two statements only.
    """
    values = {"old_id": previous.id, "now": now}
    if db.lone().postgresql:
        return db.execute_alone(_spend_and_store_statement(tuple(successor)), {**successor, **values},
                                synchronous=synchronous) == 1
    alone = db.begin_alone()
    if alone.first(_SPEND_REFRESH_TOKEN, values) is None:
        alone.close()
        return False
    alone.insert(_TOKENS, successor)
    alone.commit()
    return True


# ---- The refresh grant in one statement (RefreshTokenGrant.validate_token_request): the token
# spent and its successor stored, when nothing the grant checks in Python could refuse it.
_SUCCESSOR_COPIES = ("client_id", "user_id", "scope", "family_id", "code_id", "auth_time", "amr", "acr",
                     "credential_ids")
_SUCCESSOR_GIVEN = ("access_token_hash", "refresh_token_hash", "issued_at", "access_expires_at", "dpop_jkt")
_FOLDED_REFRESH: dict[tuple, object] = {}


def _not_required(today):
    """NOT idp.policy.status.required_expr (no second factor required of the user), written
    without its NOT IN, whose expanding parameter a statement prepared once cannot hold."""
    from idp.policy.status import EXEMPT, REQUIRED

    return and_(User.mfa_setting != REQUIRED,
                or_(User.mfa_setting != EXEMPT, User.exempt_until.is_(None), User.exempt_until >= today),
                or_(User.mfa_setting == EXEMPT, Organization.require_2fa.is_not(True)))


def _foldable_refresh_token(bounded_life: bool):
    """The id of the live refresh token with this hash (the conditions of _LIVE_REFRESH_TOKEN),
    only if nothing RefreshTokenGrant.authenticate_user checks could refuse it and its successor
    gets a refresh token of the same scope: its user not disabled, no second factor required of
    them (the 2FA policy's rule in SQL: idp.policy.status.required_expr), no DPoP key bound to a
    public client's token (`dpop_free_`: the client is confidential), offline_access granted,
    and (`bounded_life`) the family's maximum lifetime not reached."""
    live = _TOKENS.alias("live")  # (not correlated with the UPDATE's own `tokens`)
    conditions = [
        live.c.refresh_token_hash == bindparam("token_hash"), live.c.client_id == bindparam("for_client"),
        live.c.rotated_at.is_(None), live.c.revoked_at.is_(None), live.c.refresh_expires_at > bindparam("now"),
        or_(User.tokens_valid_after.is_(None), live.c.auth_time >= User.tokens_valid_after),
        User.disabled == false(),
        _not_required(bindparam("today", type_=Date)),
        or_(live.c.dpop_jkt.is_(None), bindparam("dpop_free_", type_=Boolean)),
        # (literals, not parameters: SQLite prepares a statement again whenever a LIKE's
        # pattern is a parameter, about 20 us)
        (literal_column("' '") + live.c.scope + literal_column("' '")).like(literal_column("'% offline_access %'")),
    ]
    if bounded_life:
        conditions.append(or_(live.c.auth_time.is_(None), live.c.auth_time > bindparam("born_after_")))
    return (select(live.c.id)
            .select_from(live.join(User, User.id == live.c.user_id).join(Organization, Organization.id == User.org_id))
            .where(*conditions)
            .scalar_subquery())


def _spend_foldable_statement(bounded_life: bool):
    return (update(_TOKENS)
            .where(_TOKENS.c.id == _foldable_refresh_token(bounded_life), _TOKENS.c.rotated_at.is_(None),
                   _TOKENS.c.revoked_at.is_(None))
            .values(rotated_at=bindparam("now"))
            .returning(*_TOKENS.c))


def _successor_refresh_expires_at(auth_time, bounded_life: bool):
    """save_token's _refresh_expires_at in SQL: `refresh_end_`, or sooner the family's end."""
    end = bindparam("refresh_end_", type_=_TOKENS.c.refresh_expires_at.type)
    if not bounded_life:
        return end
    family_end = auth_time + bindparam("max_lifetime_", type_=_TOKENS.c.refresh_expires_at.type)
    return case((auth_time.is_not(None) & (family_end < end), family_end), else_=end)


def _folded_refresh_statement(postgresql: bool, bounded_life: bool):
    """PostgreSQL: the spend (an UPDATE ... RETURNING) feeding its successor's INSERT ... SELECT,
    one statement; RETURNING the successor's id and scope. SQLite (no UPDATE in a CTE): the spend
    alone, RETURNING the spent row (the successor is inserted in the same transaction)."""
    key = (postgresql, bounded_life)
    statement = _FOLDED_REFRESH.get(key)
    if statement is None:
        spend = _spend_foldable_statement(bounded_life)
        if postgresql:
            spent = spend.cte("spent")
            successor = select(
                *[spent.c[name] for name in _SUCCESSOR_COPIES],
                *[bindparam(name, type_=_TOKENS.c[name].type) for name in _SUCCESSOR_GIVEN],
                _successor_refresh_expires_at(spent.c.auth_time, bounded_life)).select_from(spent)
            statement = (_TOKENS.insert()
                         .from_select([*_SUCCESSOR_COPIES, *_SUCCESSOR_GIVEN, "refresh_expires_at"], successor)
                         .returning(_TOKENS.c.id, _TOKENS.c.scope))
        else:
            statement = spend
        _FOLDED_REFRESH[key] = statement
    return statement


_SET_SCOPE = update(_TOKENS).where(_TOKENS.c.id == bindparam("token_id")).values(scope=bindparam("scope_"))


def spend_and_issue(client, refresh_token: str, successor: dict, settings, now: int):
    """Spend the refresh token and store `successor` (the hashes, times and DPoP key of the new
    tokens) in one atomic step, the rest of its row copied from the spent one: the scope (as
    the client may still be granted it: Authlib's generate_token), the family, the login's
    times and factors. The successor's scope, or None when the token cannot be spent so (not
    live, spent meanwhile, or a check `_foldable_refresh_token` leaves to RefreshTokenGrant's
    own path: that path answers it, as before).

    PostgreSQL: one autocommit statement, one round trip, committed as rotation_synchronous
    says. SQLite: a transaction of its own on a lone connection (BEGIN IMMEDIATE, the spend, the
    INSERT, COMMIT)."""
    most = int(settings.get("tokens.refresh_token_max_lifetime") or 0)
    values = {"token_hash": sha256_hex(refresh_token), "for_client": client.get_client_id(), "now": now,
              "today": utcnow().date(), "dpop_free_": not client.row.public,
              "refresh_end_": now + int(settings.get("tokens.refresh_token_ttl"))}
    if most:
        values.update(born_after_=now - most, max_lifetime_=most)
    postgresql = db.lone().postgresql
    statement = _folded_refresh_statement(postgresql, bool(most))
    if not postgresql:
        alone = db.begin_alone()
        spent = alone.first(statement, values)
        if spent is None:
            alone.close()
            return None
        row = {name: getattr(spent, name) for name in _SUCCESSOR_COPIES if getattr(spent, name) is not None}
        row["scope"] = client.get_allowed_scope(spent.scope)  # as Authlib's generate_token grants it
        refresh_end = values["refresh_end_"]
        if most and spent.auth_time is not None:
            refresh_end = min(refresh_end, spent.auth_time + most)
        alone.insert(_TOKENS, {**row, **{name: value for name, value in successor.items() if value is not None},
                               "refresh_expires_at": refresh_end})
        alone.commit()
        return row["scope"]
    synchronous = rotation_synchronous(settings)
    stored = db.first_alone(statement, {**values, **successor}, synchronous=synchronous)
    if stored is None:
        return None
    scope = client.get_allowed_scope(stored.scope)  # as Authlib's generate_token grants it
    if scope != stored.scope:
        # The client's registered scope was narrowed since the login: the successor keeps what
        # the client may still have (rare: a second statement, before anyone has the token).
        db.execute_alone(_SET_SCOPE, {"token_id": stored.id, "scope_": scope}, synchronous=synchronous)
    return scope


_CODES = AuthorizationCode.__table__
_LIVE_CODE = (_CODES.c.code_hash == bindparam("code_hash_"), _CODES.c.client_id == bindparam("for_client"),
              _CODES.c.redeemed_at.is_(None), _CODES.c.revoked_at.is_(None), _CODES.c.expires_at > bindparam("now"))
# A device's approval (idp.oidc.device_flow) is a code row without a redirect URI: the code grant
# never takes one, the device grant takes nothing else (a code always has its redirect URI).
def _claim_statement(of_kind):
    return update(_CODES).where(*_LIVE_CODE, of_kind).values(redeemed_at=bindparam("now")).returning(*_CODES.c)


_CLAIM_CODE = _claim_statement(_CODES.c.redirect_uri != "")
_CLAIM_APPROVAL = _claim_statement(_CODES.c.redirect_uri == "")
# PostgreSQL: the code claimed and its user read in one statement (the claim's UPDATE as a
# data-modifying CTE, its row joined to the user's as the statement's snapshot saw it), so that
# the code exchange reads its user without a round trip of its own. The outer joins keep the
# claim whatever the user's row says: a code is spent by its first presentation. (SQLite's
# RETURNING cannot name another table, nor can it run an UPDATE in a CTE: there the user is
# read apart, claims.active_user.)
_CLAIMED = _CLAIM_CODE.cte("claimed")
_CLAIM_CODE_WITH_USER = (
    select(_CLAIMED, *claims.CLAIM_USER_COLUMNS)
    .select_from(_CLAIMED.outerjoin(User, User.id == _CLAIMED.c.user_id)
                 .outerjoin(Organization, Organization.id == User.org_id))
)
# A code presented again after it was redeemed: marked reused (once), so that the tokens of its
# first redemption are revoked, or stored revoked if that redemption is still under way.
_MARK_REUSED_CODE = (
    update(_CODES)
    .where(_CODES.c.code_hash == bindparam("code_hash_"), _CODES.c.redeemed_at.is_not(None),
           _CODES.c.reused_at.is_(None))
    .values(reused_at=bindparam("now"))
    .returning(_CODES.c.id, _CODES.c.user_id)
)
_STORE_UNLESS_CODE_REVOKED: dict[tuple[str, ...], object] = {}


def store_exchanged_tokens(row: dict) -> bool:
    """Store the tokens a code was exchanged for (a `tokens` row carrying its `code_id`), alone,
    unless the code was revoked since it was claimed (its session ended, say): False then, and
    nothing is stored. If the code was presented again meanwhile, they are stored revoked: the
    first redemption keeps its answer, and what it obtained is dead, as the replay's revocation
    would have made it a moment later (idp.token_revocation, "Codes").

    One statement, built once per column set: INSERT ... SELECT the row's values FROM the code's
    row, still unrevoked, FOR SHARE (PostgreSQL): a revocation or a replay's mark waits for the
    tokens it guards, or they wait for it and are computed from the row it left. SQLite has no
    row locks (nor the clause): there the INSERT holds the database's write lock."""
    columns = tuple(row)
    statement = _STORE_UNLESS_CODE_REVOKED.get(columns)
    if statement is None:
        born_revoked = case((_CODES.c.reused_at.is_(None), null()),
                            else_=bindparam("issued_at_", type_=_TOKENS.c.revoked_at.type))
        values = (select(*[bindparam(name, type_=_TOKENS.c[name].type) for name in columns], born_revoked)
                  .where(_CODES.c.id == bindparam("live_code_id"), _CODES.c.revoked_at.is_(None))
                  .with_for_update(read=True))
        statement = _STORE_UNLESS_CODE_REVOKED[columns] = _TOKENS.insert().from_select(
            [*columns, "revoked_at"], values, include_defaults=False)
    return db.execute_alone(statement, {**row, "live_code_id": row["code_id"], "issued_at_": row["issued_at"]}) == 1


# RFC 7636 4.2: code-challenge = 43*128unreserved, the whole value.
_CODE_CHALLENGE = re.compile(r"[A-Za-z0-9._~-]{43,128}")


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
        if data.get("code_challenge") and not _CODE_CHALLENGE.fullmatch(data["code_challenge"]):
            # Authlib's pattern ends in `$`, which also matches before a final line feed: 128
            # characters and a "\n" passed, and the code's INSERT then failed on PostgreSQL's
            # 128-character column once the user had typed their password (RFC 7636 4.2).
            raise InvalidRequestError("Invalid 'code_challenge'", redirect_uri=redirect_uri)
        if grant.request.client.row.public and not data.get("code_challenge"):
            raise InvalidRequestError("Public clients must use PKCE (code_challenge with S256).",
                                      redirect_uri=redirect_uri)

    def get_authorization_code_challenge(self, authorization_code):
        return authorization_code.code_challenge

    def get_authorization_code_challenge_method(self, authorization_code):
        return authorization_code.code_challenge_method


# One of this client's codes already carries this nonce: a replay. Asked at /authorize
# (idp.oidc.openid.OpenIDCode.exists_nonce) and again by the INSERT of the code that ends a login.
NONCE_USED = select(_CODES.c.id).where(
    _CODES.c.client_id == bindparam("client_id"), _CODES.c.nonce == bindparam("nonce")).limit(1)
_CODE_INSERTS: dict[tuple, object] = {}


def code_insert_where(kind, columns: tuple[str, ...], conditions) -> object:
    """INSERT a code's row (`columns`) ... SELECT its values WHERE `conditions()`: a check and the
    insert in one statement, built once per `kind` of check and column set."""
    statement = _CODE_INSERTS.get((kind, columns))
    if statement is None:
        values = select(*[bindparam(name, type_=_CODES.c[name].type) for name in columns]).where(*conditions())
        statement = _CODE_INSERTS[(kind, columns)] = _CODES.insert().from_select(
            list(columns), values, include_defaults=False)
    return statement


def _insert_unless_nonce_used_statement(columns: tuple[str, ...]):
    """The code, unless NONCE_USED: OpenIDCode.exists_nonce's replay check and the INSERT in one
    statement (INSERT ... SELECT ... WHERE NOT EXISTS), for the code that ends a login."""
    return code_insert_where("unless_nonce_used", columns, lambda: [~exists(NONCE_USED)])


def claim_code(code_hash: str, client, *, approval: bool = False, with_user: bool = False):
    """The row of the live code with this hash, claimed for `client`; None when there is none.
    `approval`: a device's approval, which only the device grant redeems, is looked for instead.
    `with_user`: on PostgreSQL the row also carries its user's `claims.CLAIM_USER_COLUMNS`
    (`claims.active_user_of` reads them), in the same statement.

    Committed at once, in a statement of its own: a code is spent by its first presentation,
    even one that then fails (a wrong PKCE verifier, say), so it cannot be retried. A code
    presented again after its claim is assumed stolen (audited as such, the first time): its
    mark comes first, then its tokens are revoked (idp.token_revocation). Also the device
    grant's redemption of an approval (idp.oidc.device_flow)."""
    if approval:
        statement = _CLAIM_APPROVAL
    else:
        statement = _CLAIM_CODE_WITH_USER if with_user and db.lone().postgresql else _CLAIM_CODE
    row = db.first_alone(statement, {"code_hash_": code_hash, "for_client": client.get_client_id(), "now": utcnow()})
    if row is not None:
        return row
    reused = db.run(_MARK_REUSED_CODE, {"code_hash_": code_hash, "now": utcnow()}).first()
    if reused is not None:
        revoked = token_revocation.revoke(Token.code_id == reused.id)
        audit.record_about_user("code.reuse_detected", reused.user_id, actor=client.get_client_id(),
                                details={"client_id": client.get_client_id(), "tokens_revoked": revoked})
    db.session.commit()
    return None


def code_row(code: str, data, client, user_id: int, outcome) -> dict:
    """The `authorization_codes` row of a code issued at the end of a login: the request's
    parameters `data` (the stored, validated snapshot), its client, the user and what the login
    proved (a LoginOutcome). Columns that are usually empty are left out, so that the usual
    INSERT stays one statement."""
    now = utcnow()
    values = dict(
        code_hash=sha256_hex(code),
        client_id=client.get_client_id(),
        user_id=user_id,
        redirect_uri=data.get("redirect_uri") or client.get_default_redirect_uri(),
        scope=data.get("scope") or "",
        nonce=data.get("nonce"),
        code_challenge=data.get("code_challenge"),
        code_challenge_method=data.get("code_challenge_method") and "S256",
        auth_time=outcome.auth_time,
        amr=list(outcome.amr),
        acr=outcome.acr,
        session_id=outcome.sid,
        expires_at=now + _code_ttl(),
        created_at=now,
    )
    if data.get("dpop_jkt"):  # (a column of its own only then: the usual INSERT stays as it was)
        values["dpop_jkt"] = data["dpop_jkt"]
    if not data.get("redirect_uri"):  # (likewise)
        values["redirect_uri_implied"] = True
    if outcome.credential_ids:  # (likewise: a password-only login leaves it out)
        values["credential_ids"] = list(outcome.credential_ids)
    return values


def insert_code(values: dict) -> bool:
    """Insert a `code_row` in the session's transaction (committed with the login's other
    writes), unless its nonce is one of this client's codes' already: False then, nothing
    inserted (a replay: NONCE_USED)."""
    if values["nonce"] is None:
        db.run_insert(_CODES, values)
        return True
    return db.run(_insert_unless_nonce_used_statement(tuple(values)), values).rowcount == 1


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    @staticmethod
    def validate_no_multiple_request_parameter(request):
        """Only client_id and redirect_uri, repeated, are refused before the redirect URI is
        trusted (the error page: where would the error go?). Authlib's own check also answered a
        repeated scope, state or response_type with that page; every other parameter is checked
        once the redirect URI is known, and refused back to the client (idp.oidc.parameters)."""
        name = parameters.repeated_parameter(request.payload.datalist, parameters.WHERE_ERRORS_GO)
        if name is not None:
            raise InvalidRequestError(f"{name} must not be sent more than once.")

    def save_authorization_code(self, code, request):
        """Store the code's hash with what the login proved (the login pipeline sets `request.login_outcome`);
        one Core INSERT, committed with the login's other writes by the pipeline. (The login's
        usual path issues its code without this grant: idp.oidc.code_issuance; this one answers
        what that path leaves to Authlib.)"""
        values = code_row(code, request.payload.data, request.client, request.user.id, request.login_outcome)
        if not insert_code(values):
            # Authlib's answer to a reused nonce (OpenIDCode.exists_nonce), sent back to the client
            raise InvalidRequestError("Replay attack", redirect_uri=values["redirect_uri"])
        backchannel.remember(request.client, request.login_outcome.sid, request.user.id)  # whom to tell when the session ends

    def generate_authorization_code(self):
        """256 random bits, URL-safe (Authlib's default draws each of 48 characters separately)."""
        return random_token(32)

    def query_authorization_code(self, code, client):
        """Claim the code atomically; a second presentation revokes what the first obtained."""
        row = claim_code(sha256_hex(code), client, with_user=True)
        if row is None:
            return None
        self.request.code_row = row
        return OAuthCode(row)

    def delete_authorization_code(self, authorization_code):
        """Nothing to do: the code was claimed (and so spent) when it was queried."""

    def authenticate_user(self, authorization_code):
        row = authorization_code.row
        sent = self.request.payload.redirect_uri
        if row.redirect_uri_implied and sent and sent != row.redirect_uri:
            # Not required when the authorization request sent none (get_redirect_uri), but one
            # sent must still be the URI the code went to.
            raise InvalidGrantError("Invalid 'redirect_uri' in request.")
        if row.dpop_jkt is not None:
            # RFC 9449 10: a code bound to a key is exchanged only with a DPoP proof by that key.
            proof = getattr(self.request, "dpop", None)
            if proof is None or proof.jkt != row.dpop_jkt:
                raise InvalidDPoPProof("This code is bound to a DPoP key (dpop_jkt): send a proof signed with it.")
        if claims.carries_user(row):  # PostgreSQL: read with the claim (claim_code's with_user)
            return claims.active_user_of(row, authenticated_at=row.auth_time)
        return claims.active_user(row.user_id, authenticated_at=row.auth_time)


def _code_ttl():
    from datetime import timedelta

    return timedelta(seconds=int(_settings().get("tokens.authorization_code_ttl", 60)))  # 1-60: idp.config_ranges


@dataclass(frozen=True)
class OrgStanding:
    require_2fa: bool


@dataclass(frozen=True)
class RefreshingUser:
    """The refresh grant's user: what save_token and the 2FA policy read, without an ORM load."""

    id: int
    mfa_setting: str
    exempt_until: date | None
    org: OrgStanding


class RefreshTokenGrant(grants.RefreshTokenGrant):
    """Rotation on every use; presenting an already-rotated token revokes its whole family."""

    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def validate_token_request(self):
        """Authlib's, but for the usual grant (no `scope` asked, nothing the checks below could
        refuse), which is answered here: the token spent and its successor stored by one
        statement (spend_and_issue), the answer made as Authlib makes it. Any other grant, and
        one that statement did not spend, takes Authlib's path: the token read, the checks of
        authenticate_user, then rotate."""
        client = self._validate_request_client()
        self.request.client = client
        self.request.folded = self._spend_and_issue(client)
        if self.request.folded is not None:
            return
        refresh_token = self._validate_request_token(client)
        self._validate_token_scope(refresh_token)
        self.request.refresh_token = refresh_token

    def _spend_and_issue(self, client) -> dict | None:
        """The token response of a grant spend_and_issue answered, or None."""
        from idp.oidc.server import opaque_token

        presented = self.request.payload.data.get("refresh_token")
        if not presented or self.request.payload.scope:
            return None
        now = int(time.time())
        expires_in = int(current_app.config["OAUTH2_TOKEN_EXPIRES_IN"][self.GRANT_TYPE])
        access_token, refresh_token = opaque_token(), opaque_token()
        proof = getattr(self.request, "dpop", None)  # RFC 9449 5: bound to the proof's key (save_token)
        scope = spend_and_issue(client, presented, {
            "access_token_hash": sha256_hex(access_token), "refresh_token_hash": sha256_hex(refresh_token),
            "issued_at": now, "access_expires_at": now + expires_in,
            "dpop_jkt": proof.jkt if proof is not None else None}, _settings(), now)
        if scope is None:
            return None
        # What Authlib's BearerTokenGenerator.generate and save_token make of it, in their order.
        token = {"token_type": "DPoP" if proof is not None else "Bearer", "access_token": access_token,
                 "expires_in": expires_in, "refresh_token": refresh_token}
        if scope:
            token["scope"] = scope
        return token

    def create_token_response(self):
        """Authlib's (with its hooks), or the answer validate_token_request already has."""
        token = getattr(self.request, "folded", None)
        if token is None:
            return super().create_token_response()
        self.execute_hook("before_create_token_response")
        metrics.count_grant(self.GRANT_TYPE)
        result = 200, token, self.TOKEN_RESPONSE_HEADER
        self.execute_hook("after_create_token_response", result)
        return result

    def _validate_request_token(self, client):
        """Authlib's, but its bare `invalid_grant` says why (RFC 6749 5.2's error_description):
        the client's developer otherwise cannot tell a replay from a token that simply ended."""
        presented = self.request.form.get("refresh_token")
        if presented is None:
            raise InvalidRequestError("Missing 'refresh_token' in request.")
        token = self.authenticate_refresh_token(presented)
        if token is None or not token.check_client(client):
            if getattr(self.request, "refresh_replayed", False):
                raise InvalidGrantError("The refresh token was already used: the tokens of its sign-in are revoked "
                                        "(use each refresh token once, the new one from each answer).")
            raise InvalidGrantError("The refresh token is unknown, expired, revoked or another client's: "
                                    "sign the user in again.")
        return token

    def authenticate_refresh_token(self, refresh_token):
        # A read, with the user's standing: the token is spent only when its successor is
        # stored (save_token -> rotate), in one atomic step; a grant that fails in between
        # spends nothing.
        token_hash = sha256_hex(refresh_token)
        row = db.read_first(_LIVE_REFRESH_TOKEN, {
            "token_hash": token_hash, "for_client": self.request.client.get_client_id(), "now": int(time.time())})
        if row is None:
            # Told as a replay to its own client only: another client presenting it learns
            # nothing of a token that is not its own (that it exists, or was spent).
            owner = revoke_if_replayed(token_hash)
            self.request.refresh_replayed = owner is not None and owner == self.request.client.get_client_id()
            return None
        return OAuthToken(row)

    def authenticate_user(self, refresh_token):
        from idp.login import gate
        from idp.policy import decide, status

        token = refresh_token.row
        if token.disabled:  # RFC 6749 5.2: a grant no longer valid (Authlib's answer was invalid_request)
            raise InvalidGrantError("The user of this refresh token can no longer sign in.")
        user = RefreshingUser(token.user_id, token.mfa_setting, token.exempt_until,
                              OrgStanding(bool(token.require_2fa)))
        amr = tuple(token.amr or ())
        required = status.is_required(user, user.org, status.today_utc())
        if required and gate.proved_factor_withdrawn(token.user_id, token.credential_ids, token.allowed_factors):
            # The organization narrowed its factors since the login: what it proved no longer
            # counts, as for the browser's session (idp.login.gate.session_shortfall).
            raise InvalidGrantError("The organization no longer accepts the second factor this sign-in used: "
                                    "sign in again.")
        if required and not decide.has_second_factor(amr):
            # Rarely here, so only here the user's whole row: the grace a required user without a
            # factor may still be in (decide.refresh_allowed; the token's read carries the rest).
            from idp.login import user as login_user

            whole = login_user.load(token.user_id)
            if whole is None or not decide.refresh_allowed(whole, whole.org, amr, utcnow()):
                raise InvalidGrantError("A second factor is now required: sign in again.")
        if token.dpop_jkt is not None and self.request.client.row.public:
            # RFC 9449 5: a public client's refresh token is bound to the key of its DPoP proofs.
            proof = getattr(self.request, "dpop", None)
            if proof is None or proof.jkt != token.dpop_jkt:
                raise InvalidDPoPProof("This refresh token is bound to a DPoP key: send a proof signed with it.")
        self.request.refresh_row = token
        return user

    def revoke_old_credential(self, refresh_token):
        """Nothing to do: the old token was spent when its successor was stored (rotate)."""

    def issue_token(self, user, refresh_token):
        """Always the presented token's scope (RFC 6749 6: the new refresh token's is identical).

        A token row holds one scope for the access token and its refresh token, so a narrower
        `scope` in the request (checked to be a subset) is accepted and ignored, as 3.3 allows;
        the answer's `scope` says what was granted (5.1). Issuing the narrower one spent the
        refresh token and, when offline_access was left out, gave none in its place."""
        return self.generate_token(user=user, scope=refresh_token.get_scope(),
                                   include_refresh_token=self.INCLUDE_NEW_REFRESH_TOKEN)


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = list(CONFIDENTIAL_AUTH_METHODS)
