"""OpenID Connect Back-Channel Logout 1.0: telling applications, server to server, that a
session they signed in through has ended.

A client registered with a `backchannel_logout_uri` (`idp client add|update
--backchannel-logout-uri`) is remembered for each session that signed it in (`SessionClient`,
written when a code is issued to it: `remember`). When such a session ends, by any door (the
user's sign-out or an RP-initiated logout, a session ended on the security page, sign out
everywhere: a new password, a disabled account, an admin's or the CLI's), `sessions_ended`
queues one logout token per client and session; removing an application's access
(idp.consents) queues one per live session of that client (`client_access_ended`).

Tokens are signed in the transaction that ends the sessions (the signing keys may need a
read) and sent once it commits (nothing is sent for a change rolled back), POSTed on threads
of their own (`logout_token=...`, no redirects, 5 s for the whole answer): the user's answer
never waits for an application. One thread per back-channel logout URI, so that a client that
does not answer delays its own tokens only: sent one after the other, a sign-out everywhere's
tokens for the other clients would have waited 20 s behind each of the silent client's, and
arrived expired (a client must refuse a token past its `exp`). Only the answer's status is
read, never its body: a client's endless or trickling body neither fills the worker's memory
nor holds the thread. The 5 s bound the whole attempt, not each read (idp.oidc.outbound): a
client that trickled its status line and headers, each byte within a read timeout, held its
thread for as long as it liked, and that thread, no daemon, kept a worker or an `idp` command
from exiting. A client that cannot be reached, times out or answers 5xx (a restart, an
overloaded moment) is tried again after 1 s, then 4 s, with the same token (its `jti` lets the
client tell a repeat); a 4xx is its answer (section 2.8: the token was refused) and is not
repeated. Each delivery's outcome is counted (`idp_backchannel_logouts_total{outcome}`:
`delivered`, `refused`, `failed`); a refusal or a last failure is also logged as a warning
(logger `idp.oidc.backchannel`), nothing more: the session is over either way. The worst case,
three timeouts, keeps a delivery 20 s: within a gunicorn worker's graceful shutdown when a
client has a token or two to hear, and well within the token's lifetime.

The token (section 2.4): `iss`, `aud` (the client), `iat`, `exp` (2 minutes), `jti`, `sub` (the
ID token's), `sid` (the ID token's) and the back-channel logout event, no `nonce`; header
`typ: logout+jwt`, signed like the client's ID tokens.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import event as orm_event
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from idp import session_idle
from idp.db import db, utcnow
from idp.models import Client, SessionClient, User, UserSession
from idp.security.tokens import random_token

log = logging.getLogger(__name__)
EVENT = "http://schemas.openid.net/event/backchannel-logout"
TOKEN_LIFETIME = 120
TIMEOUT = 5.0
RETRY_DELAYS = (1.0, 4.0)  # seconds before the second and the third attempt
_PENDING = "idp.backchannel_pending"  # session.info: (_Logout, signed token) to send once committed


def remember(client, sid: str | None, user_id: int) -> None:
    """A code is being issued to `client` through session `sid`: note it, if the client wants to
    hear of the session's end. In the caller's transaction (the login's last commit)."""
    row = client.row
    if sid is None or not (getattr(row, "backchannel_logout_uri", None) or getattr(row, "frontchannel_logout_uri", None)):
        return  # nobody to tell, by either channel (idp.oidc.frontchannel reads these rows too)
    values = {"sid": sid, "client_id": client.get_client_id(), "user_id": user_id}
    insert = pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert
    db.session.execute(insert(SessionClient).values(**values).on_conflict_do_nothing())


@dataclass(frozen=True)
class _Logout:
    client_id: str
    uri: str
    alg: str
    sub: str
    sid: str


def sessions_ended(user_id: int, sids: list[str]) -> None:
    """The sessions `sids` of the user ended in this transaction: queue a logout token for each
    client each of them signed in that wants one."""
    if sids:
        _queue(SessionClient.user_id == user_id, SessionClient.sid.in_(sids))


def client_access_ended(user_id: int, client_id: str) -> None:
    """The client lost its access to the user's account: queue a logout token for each live
    session of the user's that signed it in, and forget that they did. A session ended before
    was told of already (its rows stay until the purge), and one that ends later has nothing
    more to tell this client: neither is told again."""
    of_this_client = (SessionClient.user_id == user_id, SessionClient.client_id == client_id)
    live = select(UserSession.sid).where(UserSession.user_id == user_id, *session_idle.live_where(utcnow()))
    _queue(*of_this_client, SessionClient.sid.in_(live))
    db.session.execute(delete(SessionClient).where(*of_this_client))


def _queue(*where) -> None:
    rows = db.session.execute(
        select(SessionClient.client_id, SessionClient.sid, Client.backchannel_logout_uri, Client.id_token_alg,
               User.public_id)
        .join(Client, Client.client_id == SessionClient.client_id)
        .join(User, User.id == SessionClient.user_id)
        .where(*where, Client.backchannel_logout_uri.is_not(None))).all()
    logouts = [_Logout(row.client_id, row.backchannel_logout_uri, row.id_token_alg, row.public_id, row.sid)
               for row in rows]
    db.session.info.setdefault(_PENDING, []).extend((logout, logout_token(logout)) for logout in logouts)


def logout_token(logout: _Logout) -> str:
    """The signed logout token (module docstring); in an app context."""
    from joserfc import jwt

    from idp.oidc import keys

    now = int(time.time())
    kid, key = keys.signing_key(logout.alg)
    claims = {"iss": current_app.extensions["idp.settings"].issuer, "aud": logout.client_id, "iat": now,
              "exp": now + TOKEN_LIFETIME, "jti": random_token(16), "sub": logout.sub, "sid": logout.sid,
              "events": {EVENT: {}}}
    return jwt.encode({"alg": logout.alg, "kid": kid, "typ": "logout+jwt"}, claims, key)


@orm_event.listens_for(db.session.session_factory, "after_commit")
def _committed(session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: the outer transaction may still roll back
    deliveries = session.info.pop(_PENDING, None)
    if not deliveries:
        return
    from idp.ops import logs

    for of_one_uri in _by_uri(deliveries):
        threading.Thread(target=logs.with_request_id(deliver), args=(of_one_uri,), name="backchannel-logout").start()


def _by_uri(deliveries: list[tuple[_Logout, str]]) -> list[list[tuple[_Logout, str]]]:
    """The deliveries grouped by the URI they go to (module docstring: one thread each), in order."""
    groups: dict[str, list[tuple[_Logout, str]]] = {}
    for delivery in deliveries:
        groups.setdefault(delivery[0].uri, []).append(delivery)
    return list(groups.values())


@orm_event.listens_for(db.session.session_factory, "after_transaction_end")
def _forget_uncommitted(session, transaction) -> None:
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


def deliver(deliveries: list[tuple[_Logout, str]]) -> None:
    """POST each token to its client (section 2.5), tried again on a transient failure (module
    docstring); nothing here may raise. Not a daemon thread: a worker or an `idp` command that
    exits gracefully delivers first."""
    from idp.ops import metrics

    for logout, token in deliveries:
        outcome, what = _send(logout, token)
        for delay in RETRY_DELAYS:
            if outcome != "failed":
                break
            time.sleep(delay)
            outcome, what = _send(logout, token)
        metrics.BACKCHANNEL_LOGOUTS.labels(outcome=outcome).inc()
        if outcome != "delivered":
            log.warning("back-channel logout to client %s %s: %s", logout.client_id, outcome, what)


def _send(logout: _Logout, token: str) -> tuple[str, str]:
    """One POST: its outcome, `delivered` (200 or 204), `refused` (another answer below 500, not
    repeated) or `failed` (no status line and headers within TIMEOUT, or a 5xx), and what
    happened, for the log."""
    from idp.oidc.outbound import Deadline, watched_session  # (requests: few processes ever send)

    deadline = Deadline(TIMEOUT)
    late = f"no answer within {TIMEOUT:g} seconds"
    try:
        # stream: the status line and headers only; the body is never read (closing drops the connection).
        with deadline, watched_session() as session, session.post(
                logout.uri, data={"logout_token": token}, timeout=TIMEOUT, stream=True, allow_redirects=False,
                headers={"Cache-Control": "no-store"}) as answer:
            # Headers the deadline cut short read as a whole answer: that one is no answer of the client's.
            status = None if deadline.expired else answer.status_code
    except Exception as exc:
        return "failed", late if deadline.expired else type(exc).__name__
    if status is None:
        return "failed", late
    if status in (200, 204):
        return "delivered", ""
    return ("failed" if status >= 500 else "refused"), f"answered {status}"
