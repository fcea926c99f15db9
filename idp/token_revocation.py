"""Revoking what logins obtained, so that nothing escapes through a grant in flight.

Tokens. Every revocation of a set of tokens (a session's, an application's, a refresh token's
family, a reused code's) is an UPDATE of the rows still unrevoked. On PostgreSQL a refresh
rotating one of them at that instant spends the old row and stores its successor in one
transaction of its own (idp.oidc.grants.rotate). The UPDATE waits on the old row's lock, then
finds it rotated and revokes it; but the successor, committed meanwhile, was not in the
UPDATE's snapshot, and would stay live. So the UPDATE runs again until a pass revokes nothing:
each pass takes a new snapshot (READ COMMITTED), which holds the successors committed during the
pass before. A refresh that comes after a pass finds its token revoked and fails. On SQLite
writers take turns, and the second pass always finds nothing.
tests/concurrency/test_application_access_race.py makes the interleaving happen.

Codes. A code exchange claims its code in a statement of its own (committed at once: a code is
spent by its first presentation), then stores its tokens in another. A revocation between the
two would find no token to revoke, and the tokens stored just after would live. So revoking
codes comes first (`revoke_codes`): it marks them `revoked_at`, redeemed or not, and the
exchange stores its tokens only while its code is unmarked, reading the code row `FOR SHARE`
in the INSERT itself (idp.oidc.grants.store_exchanged_tokens). Either the exchange holds that
lock first, and the mark waits for its tokens to be committed, which the token UPDATE after it
then sees and revokes; or the mark comes first, and the exchange waits for it, finds the code
revoked and stores nothing (`invalid_grant`). On SQLite both are one writer's turn each. A code
presented a second time is marked `reused_at` rather than revoked (idp.oidc.grants): the first
presentation's answer stands, and its tokens, if stored after the mark, are stored revoked.
tests/concurrency/test_code_exchange_race.py makes both orders happen on PostgreSQL,
tests/integration/test_code_revocation.py the revocation in between on both databases.
"""
from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import update

from idp.db import db, utcnow
from idp.models import AuthorizationCode, Token

# How long after a code's expiry its exchange may still be under way: a code is claimed before
# it expires, and the request that claimed it stores its tokens within the same request (far
# shorter than this, a worker's timeout included). Older codes are left unmarked: no exchange
# can follow, and their tokens are revoked as rows. (The purge keeps a redeemed code for as
# long as a token of it lives, so marking them all would rewrite a month of logins.)
EXCHANGE_IN_FLIGHT = timedelta(minutes=5)


def revoke(*where) -> int:
    """Revoke the unrevoked tokens matching `where`, successors of refreshes in flight included
    (module docstring), in the caller's transaction. Returns how many were revoked."""
    return until_none_left(update(Token).where(*where, Token.revoked_at.is_(None)).values(revoked_at=int(time.time())))


def until_none_left(statement) -> int:
    """Run `statement`, an UPDATE or DELETE of token rows, again and again in the caller's
    transaction until a pass matches nothing: each pass sees the successors that refreshes in
    flight committed during the one before (module docstring). Returns the rows matched in all."""
    matched = 0
    while True:
        found = db.session.execute(statement).rowcount
        if not found:
            return matched
        matched += found


def revoke_codes(*where) -> int:
    """Mark the codes matching `where` revoked, redeemed or not, in the caller's transaction,
    before it revokes their tokens (module docstring): none can be redeemed any more, and an
    exchange under way either stores its tokens before that revocation sees them, or none.
    Only codes that can still be redeemed or exchanged are marked (EXCHANGE_IN_FLIGHT).
    Returns how many codes were newly marked."""
    now = utcnow()
    return db.session.execute(update(AuthorizationCode).where(
        *where, AuthorizationCode.revoked_at.is_(None), AuthorizationCode.expires_at > now - EXCHANGE_IN_FLIGHT)
        .values(revoked_at=now)).rowcount
