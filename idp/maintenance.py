"""Housekeeping: delete server-side rows nobody can use any more (`idp purge`, docs/operations.md).

Login transactions, sessions, codes, tokens, factor challenges and failure counters
are written on every login and never deleted by the request path (it only marks
them spent, revoked or expired). Left alone they pile up and slow the lookups.
`purge()` deletes, per table, with bulk DELETEs whose WHERE says exactly when a
row can no longer matter:

- login_transactions: past `expires_at` (a login must finish within the TTL).
- user_sessions: past `expires_at`, unused for `session.idle_timeout` when it is set
  (idp.session_idle: refused as an expired one), or revoked (a revoked session is refused
  exactly like a missing one).
- authorization_codes: expired and never redeemed (nothing can use them); redeemed
  ones are kept while reuse detection may still need them: presenting a redeemed
  code again revokes every token issued from it (`Token.code_id`), so a redeemed
  code goes only once it expired more than the refresh-token lifetime ago AND no
  unrevoked token with its `code_id` is still valid (refresh rotation can keep a
  family alive longer than one refresh lifetime).
- tokens: the access token expired and the refresh token expired or absent, or
  revoked more than a day ago.
- factor_challenges: expired more than a day ago, or answered more than a day ago
  and expired. Push replay guards (`jti` rows) expire with the token they guard
  (60 s), so a day of margin is plenty.
- failure_counters: no lock running and not updated for a day (a counter's window
  is far shorter; a lockout in force is never lifted by housekeeping).
- password_resets: expired (used and killed links are expired too) and created more than an
  hour ago: the links of the last hour are what the per-account limit counts
  (idp.password_reset), so a purge must not hand out a fresh allowance.
- client_assertions: expired more than a minute ago (the clock leeway an assertion's `exp` is
  checked with): an expired assertion is refused before its `jti` is looked at.
- dpop_proofs: expired (a proof is refused once its iat is older than idp.oidc.dpop.MAX_AGE;
  the row's expiry already counts the clock leeway).
- pushed_requests: expired (a pushed authorization request's request_uri is refused once
  expired; a used one is deleted by its use).
- device_authorizations: expired more than a day ago (until then a device still polling is told
  `expired_token`, RFC 8628 3.5, rather than that its code is unknown); an approved one only once
  it expired more than the refresh-token lifetime ago, as a redeemed code: its device code
  presented again must still find it, so that its approval's tokens are revoked (the approval is
  an authorization code, which goes with the codes).

- audit_events: only when `ops.audit_retention_days` is set (0, the default, keeps every
  event): those older than that many days. Unlike the rows above, these are the record of what
  people did, so the purge says what it deleted in an `audit.purged` event of its own.

- signing_keys: never deleted (`idp keys list` shows every key the provider ever had, and its
  public JWK and dates say what an old ID token was signed with), but a key past `remove_after`
  (out of the JWKS: it signs nothing and no token it signed verifies any more; that status
  never ends, idp.oidc.keys.key_status) has its sealed private key wiped (`private_ciphertext`
  emptied, idp.oidc.keys.WIPED): a database leaked with the encryption keys must not yield a
  key that forges tokens. Counted as `signing_key_secrets`.

session_clients (whom a session's end is told to) has no rule of its own: its rows go with their
session (ON DELETE CASCADE). Tables not named here are never purged (docs/operations.md lists
them and what ends their rows).

Every statement is also valid as a COUNT for `dry_run`. The rows go in batches of BATCH, each
DELETE committed on its own: a long purge (a backlog of millions of expired tokens) never holds
one big transaction, nor the locks of a whole table's rows that a request may be waiting for
(a sign-out revoking tokens, on PostgreSQL), nor SQLite's write lock for longer than a batch
(every login waits for it).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import and_, delete, exists, func, or_, select, update

from idp.db import db, utcnow
from idp.models import (AuditEvent, AuthorizationCode, ClientAssertion, DeviceAuthorization, DPoPProof, FactorChallenge,
                        FailureCounter, LoginTransaction, PasswordReset, PushedRequest, SigningKey, Token, UserSession)
from idp.oidc.client_assertion import LEEWAY
from idp.oidc.keys import WIPED

# How long spent-but-harmless rows (answered challenges, revoked tokens, idle counters) are kept.
GRACE = timedelta(days=1)
ASSERTION_LEEWAY = timedelta(seconds=LEEWAY)
DEFAULT_REFRESH_TTL = 2592000
BATCH = 5000


def _setting(dotted: str, default: int) -> int:
    from flask import current_app, has_app_context

    if has_app_context() and "idp.settings" in current_app.extensions:
        return int(current_app.extensions["idp.settings"].get(dotted) or default)
    return default


def _refresh_ttl() -> int:
    return _setting("tokens.refresh_token_ttl", DEFAULT_REFRESH_TTL)


def _audit_retention() -> timedelta | None:
    """How long audit events are kept (`ops.audit_retention_days`), or None: for ever."""
    days = _setting("ops.audit_retention_days", 0)
    return timedelta(days=days) if days > 0 else None


def _idle_sessions(now: datetime) -> tuple:
    """The sessions unused for `session.idle_timeout` at `now` (none when it is off): refused as
    expired ones are (idp.session_idle), and purged with them."""
    from idp import session_idle

    cutoff = session_idle.idle_since(now)
    return () if cutoff is None else (UserSession.last_used_at <= cutoff,)


def _epoch(moment: datetime) -> int:
    """Token times are Unix seconds; the other tables use naive UTC datetimes."""
    return int(moment.replace(tzinfo=timezone.utc).timestamp())


def conditions(now: datetime, refresh_ttl: int) -> list[tuple[str, Any, Any]]:
    """(table name, model, WHERE clause) for every table purged, in the order they are purged."""
    epoch = _epoch(now)
    old = now - GRACE
    live_token_from_code = exists().where(
        Token.code_id == AuthorizationCode.id,
        Token.revoked_at.is_(None),
        or_(Token.access_expires_at > epoch, Token.refresh_expires_at > epoch))
    return [
        ("login_transactions", LoginTransaction, LoginTransaction.expires_at < now),
        ("user_sessions", UserSession, or_(UserSession.expires_at < now, UserSession.revoked_at.is_not(None),
                                           *_idle_sessions(now))),
        ("authorization_codes", AuthorizationCode, or_(
            and_(AuthorizationCode.redeemed_at.is_(None), AuthorizationCode.expires_at < now),
            and_(AuthorizationCode.expires_at < now - timedelta(seconds=refresh_ttl), ~live_token_from_code))),
        ("tokens", Token, or_(
            and_(Token.access_expires_at <= epoch,
                 or_(Token.refresh_expires_at.is_(None), Token.refresh_expires_at <= epoch)),
            Token.revoked_at < _epoch(old))),
        ("factor_challenges", FactorChallenge, or_(
            FactorChallenge.expires_at < old,
            and_(FactorChallenge.answered_at < old, FactorChallenge.expires_at < now))),
        ("failure_counters", FailureCounter, and_(
            or_(FailureCounter.locked_until.is_(None), FailureCounter.locked_until < now),
            FailureCounter.updated_at < old)),
        ("password_resets", PasswordReset, and_(
            PasswordReset.expires_at < now, PasswordReset.created_at < now - timedelta(hours=1))),
        ("client_assertions", ClientAssertion, ClientAssertion.expires_at < now - ASSERTION_LEEWAY),
        ("pushed_requests", PushedRequest, PushedRequest.expires_at < now),
        ("dpop_proofs", DPoPProof, DPoPProof.expires_at < now),
        ("device_authorizations", DeviceAuthorization, and_(
            DeviceAuthorization.expires_at < old,
            or_(DeviceAuthorization.status != "approved",
                DeviceAuthorization.expires_at < now - timedelta(seconds=refresh_ttl)))),
    ]


def purge(now: datetime | None = None, dry_run: bool = False) -> dict[str, int]:
    """Delete (or, with dry_run, count) the rows that can no longer matter; returns counts per table.

    `now` is a naive UTC datetime (default: the current time). Needs an app context (db.session).
    """
    now = now or utcnow()
    session = db.session
    counts: dict[str, int] = {}
    for table, model, where in conditions(now, _refresh_ttl()):
        if dry_run:
            counts[table] = int(session.scalar(select(func.count()).select_from(model).where(where)) or 0)
            session.rollback()
            continue
        counts[table] = _delete_in_batches(model, where)
    counts["signing_key_secrets"] = _wipe_removed_private_keys(now, dry_run)
    retention = _audit_retention()
    if retention is not None:
        counts["audit_events"] = _purge_audit_events(now - retention, dry_run)
    return counts


def _wipe_removed_private_keys(now: datetime, dry_run: bool) -> int:
    """Wipe (or count) the private keys of the signing keys out of the JWKS; the rows stay.

    `remove_after <= now` is key_status's "removed", which nothing undoes (a withdrawal or a
    rotation only ever brings `remove_after` closer, and only for keys not removed yet): a key
    published, signing, or retired but still in the JWKS is never matched. One statement: there
    are a few keys per rotation, not millions."""
    where = and_(SigningKey.remove_after.is_not(None), SigningKey.remove_after <= now,
                 SigningKey.private_ciphertext != WIPED)
    if dry_run:
        count = int(db.session.scalar(select(func.count()).select_from(SigningKey).where(where)) or 0)
        db.session.rollback()
        return count
    return _committed(update(SigningKey).where(where).values(private_ciphertext=WIPED))


def _purge_audit_events(before: datetime, dry_run: bool) -> int:
    """Delete (or count) the audit events older than `before`; the deletion is itself audited."""
    from idp import audit

    where = AuditEvent.at < before
    if dry_run:
        count = int(db.session.scalar(select(func.count()).select_from(AuditEvent).where(where)) or 0)
        db.session.rollback()
        return count
    deleted = _delete_in_batches(AuditEvent, where)
    if deleted:
        audit.record("audit.purged", org_id=None, actor="cli",
                     details={"deleted": deleted, "before": before.replace(microsecond=0).isoformat() + "Z"})
        db.session.commit()
    return deleted


def _delete_in_batches(model, where) -> int:
    """DELETE the rows matching `where`, BATCH at a time, each batch committed; how many went.

    The batches walk the primary key upwards (`pk > last ORDER BY pk LIMIT n`): a batch chosen
    by `where` alone would scan again, each time, the rows already deleted (on PostgreSQL dead
    until vacuumed), quadratic in a backlog of millions."""
    keys = list(model.__table__.primary_key.columns)
    if len(keys) != 1:
        return _delete_expired_in_batches(model, where)
    [key] = keys
    deleted, last = 0, None
    while True:
        batch = select(key).where(where).order_by(key).limit(BATCH)
        if last is not None:
            batch = batch.where(key > last)
        chosen = list(db.session.scalars(batch))
        if not chosen:
            return deleted
        # The chosen rows by their key range, not a list of BATCH keys (which cost PostgreSQL
        # four times the DELETE itself to bind and plan); no other row in the range matched
        # `where` when they were chosen. `where` again: a row may have changed since, a token
        # refreshed, say.
        deleted += _committed(delete(model).where(key >= chosen[0], key <= chosen[-1], where))
        if len(chosen) < BATCH:
            return deleted
        last = chosen[-1]


def _delete_expired_in_batches(model, where) -> int:
    """`_delete_in_batches` for the tables keyed by several columns (client assertions, DPoP proofs),
    which walks their expiry instead.

    Their rows live minutes, but there is one per DPoP request or private_key_jwt authentication:
    a purge that did not run for a while (a week of a busy API) finds millions, and one DELETE of
    them all held SQLite's write lock, every login waiting, for as long. Their keys are random (a
    hash), so batches in key order would delete rows scattered over the whole table; in expiry
    order they are the oldest rows, side by side. A batch is the rows expiring up to the BATCH-th
    expiry after the last batch's (`expires_at` in a range: the rows sharing that second's expiry
    come along, as many as one second's requests), `where` checked again."""
    expiry = model.expires_at
    deleted, last = 0, None
    while True:
        pending = select(expiry).where(where).order_by(expiry)
        if last is not None:
            pending = pending.where(expiry > last)
        bound = db.session.scalar(pending.offset(BATCH - 1).limit(1))
        in_range = [expiry <= bound] if bound is not None else []
        if last is not None:
            in_range.append(expiry > last)
        deleted += _committed(delete(model).where(*in_range, where))
        if bound is None:
            return deleted
        last = bound


def _committed(statement) -> int:
    try:
        result = db.session.execute(statement, execution_options={"synchronize_session": False})
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    return int(result.rowcount or 0)
