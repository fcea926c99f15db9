"""The applications a user has let into their account, and taking one's access away.

An application has access when the user consented to it (a third-party client's remembered
`ConsentGrant`, idp.login.steps.consent) or when it holds a live token of theirs (any client,
first-party ones included, which never ask). The user's security page and the admin's user
page list them (`of_user`), and "Remove access" (`withdraw`) forgets the consent, so that the
next login asks again, and ends what the application holds: its codes and its tokens are
revoked.

A refresh that rotates one of the application's tokens at that instant, or a code exchange
under way, cannot leave a live token behind (idp.token_revocation); nor can a login of the
application issuing its code at that instant (`withdraw` holds the user's row as the login
does: idp.login.pipeline.finish, which asks for the consent again once it holds it).

Everything happens in the caller's transaction; the caller commits.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import and_, delete, func, or_, select

from idp import audit, token_revocation
from idp.db import db
from idp.models import AuthorizationCode, Client, ConsentGrant, Token, User
from idp.oidc import backchannel

# A client id in a URL (idp.clients makes them with random_token; the demo's are words):
# anything else names no application, and is answered without a look-up.
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._~-]{1,64}$")


@dataclass(frozen=True)
class AppAccess:
    client_id: str
    name: str
    first_party: bool
    scopes: tuple[str, ...]  # what it was allowed (the consent), else what its live tokens carry
    allowed_at: datetime | None  # when the user consented; None for an application that never asked
    last_used_at: datetime | None  # its latest live token's issue (a login or a refresh), UTC; None: no live token
    offline: bool  # it holds a live refresh token: it can act while the user is away


def _live_tokens(user: User, now: int):
    """The user's tokens still usable now: not revoked, not from before their last sign-out
    everywhere, and either the access token or the refresh token unexpired."""
    valid_after = user.tokens_valid_after
    return (
        Token.user_id == user.id, Token.revoked_at.is_(None),
        or_(Token.access_expires_at > now, _live_refresh(now)),
        *(() if valid_after is None else (Token.auth_time >= valid_after,)),
    )


def _live_refresh(now: int):
    return and_(Token.refresh_token_hash.is_not(None), Token.rotated_at.is_(None), Token.refresh_expires_at > now)


# The scopes in the order the consent page asks for them (Authlib keeps the request's order),
# whatever order they were remembered in; others after, by name.
_SCOPE_ORDER = {"openid": 0, "profile": 1, "email": 2, "offline_access": 3}


def _scope_order(scope: str) -> tuple[int, str]:
    return _SCOPE_ORDER.get(scope, len(_SCOPE_ORDER)), scope


def of_user(user: User) -> list[AppAccess]:
    """The applications with access to `user`'s account, by name."""
    now = int(time.time())
    consents = {row.client_id: row for row in db.session.scalars(
        select(ConsentGrant).where(ConsentGrant.user_id == user.id))}
    tokens: dict[str, tuple[set[str], int, bool]] = {}
    for client_id, scope, issued_at, offline in db.session.execute(
            select(Token.client_id, Token.scope, Token.issued_at, _live_refresh(now))
            .where(*_live_tokens(user, now))):
        scopes, latest, any_offline = tokens.get(client_id, (set(), 0, False))
        tokens[client_id] = (scopes | set((scope or "").split()), max(latest, issued_at), any_offline or bool(offline))
    if not consents and not tokens:
        return []
    clients = {row.client_id: row for row in db.session.execute(
        select(Client.client_id, Client.name, Client.first_party).where(
            Client.client_id.in_(sorted(consents.keys() | tokens.keys()))))}
    found = []
    for client_id, client in clients.items():
        consent = consents.get(client_id)
        token_scopes, latest, offline = tokens.get(client_id, (set(), 0, False))
        scopes = sorted(consent.scope.split() if consent else token_scopes, key=_scope_order)
        found.append(AppAccess(
            client_id=client_id, name=client.name, first_party=client.first_party, scopes=tuple(scopes),
            allowed_at=consent.created_at if consent else None,
            last_used_at=datetime.fromtimestamp(latest, timezone.utc).replace(tzinfo=None) if latest else None,
            offline=offline))
    return sorted(found, key=lambda app: (app.name.casefold(), app.client_id))


def withdraw(user: User, client_id: str, *, actor_id: int, actor: str, by: str) -> int | None:
    """Take `client_id`'s access to `user`'s account away (module docstring), audited as
    `consent.withdrawn` (`by`: `self` or `admin`). Returns how many tokens were revoked, or None
    when the application has no access to take (no consent and no live token: never had any,
    withdrawn already, another user's, made up): then nothing changes."""
    if not _CLIENT_ID.fullmatch(client_id or ""):
        return None
    # The user's row first, as a login issuing its code holds it (idp.login.pipeline.finish):
    # a login of this application finishing at this moment either committed its code before,
    # and it is revoked below, or finds the consent gone (or, first-party, signs in afresh).
    # FOR NO KEY UPDATE, as that login's: a refresh storing a token (a key share of the row)
    # is not waited for here, but by the revocation below (idp.token_revocation).
    db.session.execute(select(User.id).where(User.id == user.id).with_for_update(key_share=True))
    now = int(time.time())
    has_tokens = db.session.scalar(select(func.count()).select_from(Token).where(
        *_live_tokens(user, now), Token.client_id == client_id))
    consent = db.session.execute(delete(ConsentGrant).where(
        ConsentGrant.user_id == user.id, ConsentGrant.client_id == client_id).returning(ConsentGrant.scope)).first()
    if consent is None and not has_tokens:
        return None
    token_revocation.revoke_codes(AuthorizationCode.user_id == user.id, AuthorizationCode.client_id == client_id)
    revoked = token_revocation.revoke(Token.user_id == user.id, Token.client_id == client_id)
    backchannel.client_access_ended(user.id, client_id)
    audit.record("consent.withdrawn", org_id=user.org_id, actor_id=actor_id, actor=actor, subject_id=user.id,
                 details={"by": by, "client_id": client_id, "scope": consent.scope if consent else None,
                          "tokens_revoked": revoked})
    return revoked
