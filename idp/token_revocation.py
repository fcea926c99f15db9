"""Revoking tokens so that none escapes through a refresh in flight.

Every revocation of a set of tokens (a session's, an application's, a refresh token's family, a
reused code's) is an UPDATE of the rows still unrevoked. On PostgreSQL a refresh rotating one of
them at that instant spends the old row and stores its successor in one transaction of its own
(idp.oidc.grants.rotate). The UPDATE waits on the old row's lock, then finds it rotated and
revokes it; but the successor, committed meanwhile, was not in the UPDATE's snapshot, and would
stay live. So the UPDATE runs again until a pass revokes nothing: each pass takes a new snapshot
(READ COMMITTED), which holds the successors committed during the pass before. A refresh that
comes after a pass finds its token revoked and fails. On SQLite writers take turns, and the
second pass always finds nothing. tests/concurrency/test_application_access_race.py makes the
interleaving happen.
"""
from __future__ import annotations

import time

from sqlalchemy import update

from idp.db import db
from idp.models import Token


def revoke(*where) -> int:
    """Revoke the unrevoked tokens matching `where`, successors of refreshes in flight included
    (module docstring), in the caller's transaction. Returns how many were revoked."""
    revoked = 0
    while True:
        found = db.session.execute(update(Token).where(*where, Token.revoked_at.is_(None))
                                   .values(revoked_at=int(time.time()))).rowcount
        if not found:
            return revoked
        revoked += found
