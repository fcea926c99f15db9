"""The challenge store: out-of-band challenges in `factor_challenges` (push requests, e-mailed codes,
activation codes), one table for every factor as privacyIDEA keeps it.

A challenge is created `pending` with an expiry and answered exactly once by one
conditional statement (`UPDATE ... WHERE id = :id AND status = 'pending' AND
expires_at > :now`, through `db.claim`), so a late, duplicated or parallel answer
changes nothing. Plugins get a store bound to their factor name (`self.challenges`).

Ids and lookup keys come from URLs and device requests: one that no row can have (a NUL in it,
which PostgreSQL refuses to even compare: idp.security.text) finds nothing and changes nothing,
without a query.
"""
from __future__ import annotations

import hashlib
import secrets
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterator, Mapping

from sqlalchemy import exists, select, update

from idp.db import db, utcnow
from idp.factors.store import commits_with_step
from idp.factors.types import UserRef
from idp.models import FactorChallenge, LoginTransaction
from idp.security.text import storable

PENDING = "pending"
EXPIRED = "expired"
_FRESH = {"populate_existing": True}


@dataclass(frozen=True)
class ChallengeInfo:
    id: str
    factor: str
    user_id: int | None
    transaction_id: str | None
    credential_id: int | None
    lookup_key: str | None
    payload: dict
    status: str
    created_at: datetime
    expires_at: datetime
    answered_at: datetime | None


def _info(row: FactorChallenge) -> ChallengeInfo:
    return ChallengeInfo(id=row.id, factor=row.factor, user_id=row.user_id, transaction_id=row.transaction_id,
                         credential_id=row.credential_id, lookup_key=row.lookup_key,
                         payload=dict(row.payload_json or {}), status=row.status, created_at=row.created_at,
                         expires_at=row.expires_at, answered_at=row.answered_at)


#: A login waiting on a second factor is in this state (idp.login.transaction.State.SECOND_FACTOR:
#: this package must not import idp.login; a test holds the two equal).
LOGIN_AT_SECOND_FACTOR = "second_factor"


def _login_waits_on_it(now: datetime):
    """SQL: the challenge's login still waits on this challenge's factor: at its second-factor
    step, with this factor in progress (or none chosen yet: the page stores the factor it began
    only after the plugin's `begin_challenge` has committed the challenge and woken the phones),
    and not expired. A login that finished with another factor, switched to one or expired no
    longer does, and neither does a challenge of no login. Inside the push paths' own statements
    (the phone's list, its answer), so the login's own steps pay nothing for it."""
    login = LoginTransaction
    return exists().where(login.id == FactorChallenge.transaction_id, login.state == LOGIN_AT_SECOND_FACTOR,
                          login.factor_name.is_(None) | (login.factor_name == FactorChallenge.factor),
                          login.expires_at > now)


#: The security page's enrolments in progress (idp.account.service): finished only by a
#: signed-in session of the user, so a session that ends takes them with it.
ACCOUNT_ENROLMENT = "account_enrolment"


def expire_for_user(user_id: int, *, of_logins: list[str], now: datetime | None = None) -> int:
    """Expire the user's pending challenges, of every factor, that belong to no login (an
    activation code, a recovery by e-mail) or to one of the logins `of_logins`; those of other
    logins in progress stay, and so do the security page's enrolments (ACCOUNT_ENROLMENT: no
    one finishes them without a live session). For a withdrawn second factor
    (idp.sessions.end_proved_by). The caller commits; returns how many expired."""
    of_no_other_login = FactorChallenge.transaction_id.is_(None)
    if of_logins:
        of_no_other_login = of_no_other_login | FactorChallenge.transaction_id.in_(of_logins)
    result = db.session.execute(
        update(FactorChallenge).where(FactorChallenge.user_id == user_id, FactorChallenge.status == PENDING,
                                      FactorChallenge.factor != ACCOUNT_ENROLMENT, of_no_other_login)
        .values(status=EXPIRED, answered_at=now or utcnow()), execution_options={"synchronize_session": False})
    return result.rowcount


def expire_for_login(transaction_id: str, *, now: datetime | None = None) -> int:
    """Expire the pending challenges, of every factor, of one login that will not go on (cancelled
    at its page): a push request the phone still listed would be answered "approved" for a
    sign-in that no longer exists. The caller commits; returns how many expired."""
    result = db.session.execute(
        update(FactorChallenge).where(FactorChallenge.transaction_id == transaction_id,
                                      FactorChallenge.status == PENDING)
        .values(status=EXPIRED, answered_at=now or utcnow()), execution_options={"synchronize_session": False})
    return result.rowcount


# The ids of the challenges created inside `created_during` (this thread, this request): what a
# plugin's begin created, for the login to expire when it cannot keep the step begun.
_created: ContextVar[list[str] | None] = ContextVar("idp.factors.challenges.created", default=None)


@contextmanager
def created_during() -> Iterator[list[str]]:
    """The ids of the challenges, of any factor, created inside the block (a list filled as they
    are). The login wraps a plugin's `begin_challenge` / `begin_enrolment` in it: when the login
    cannot keep the step begun (it moved on meanwhile), what that begin created (a push request
    sent, an activation code issued) is expired with `expire_created`, since no step of any login
    waits on it. No hook of the factor contract is needed for it: a plugin's out-of-band
    challenges are rows of this store."""
    created: list[str] = []
    token = _created.set(created)
    try:
        yield created
    finally:
        _created.reset(token)


def expire_created(challenge_ids: list[str], *, now: datetime | None = None) -> int:
    """Expire those of `challenge_ids` still pending (see `created_during`); the caller commits."""
    if not challenge_ids:
        return 0
    result = db.session.execute(
        update(FactorChallenge).where(FactorChallenge.id.in_(challenge_ids), FactorChallenge.status == PENDING)
        .values(status=EXPIRED, answered_at=now or utcnow()), execution_options={"synchronize_session": False})
    return result.rowcount


class ChallengeStore:
    """Challenge verbs bound to one factor."""

    def __init__(self, factor: str) -> None:
        self.factor = factor

    def create(self, user: UserRef | int | None, *, ttl: timedelta | float, transaction_id: str | None = None,
               credential_id: int | None = None, payload: Mapping[str, Any] | None = None,
               lookup_key: str | None = None, now: datetime | None = None) -> ChallengeInfo:
        """Insert a pending challenge (random 32-byte id) expiring after `ttl`; the caller commits."""
        stamp = now or utcnow()
        if not isinstance(ttl, timedelta):
            ttl = timedelta(seconds=float(ttl))
        user_id = user.id if isinstance(user, UserRef) else user
        row = FactorChallenge(id=secrets.token_hex(32),  # hex: ids never start with '-' on a command line
                               factor=self.factor, user_id=user_id,
                              transaction_id=transaction_id, credential_id=credential_id,
                              lookup_key=lookup_key, payload_json=dict(payload or {}), status=PENDING,
                              created_at=stamp, expires_at=stamp + ttl)
        db.session.add(row)
        db.session.flush()
        created = _created.get()
        if created is not None:
            created.append(row.id)
        return _info(row)

    def spend_once(self, signer: str, nonce: str, *, until: float, credential_id: int | None = None) -> bool:
        """Record that `signer` (a device key's id) sent `nonce` (a signed request's jti), committed
        at once and kept until `until` (Unix time: when the request could no longer be accepted
        anyway); False when it had already: a replay, refused whatever happens next. The row's
        unique (factor, lookup_key) decides, in every process."""
        from sqlalchemy.exc import IntegrityError

        digest = hashlib.sha256(f"{signer}|{nonce}".encode()).hexdigest()
        try:
            self.create(None, ttl=max(until - time.time(), 0.0), credential_id=credential_id,
                        lookup_key=f"jti:{digest}", payload={"type": "jti"})
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            return False
        return True

    def get(self, challenge_id: str) -> ChallengeInfo | None:
        if not storable(challenge_id):
            return None
        row = db.session.scalars(select(FactorChallenge).where(
            FactorChallenge.id == challenge_id, FactorChallenge.factor == self.factor),
            execution_options=_FRESH).first()
        return _info(row) if row else None

    def find(self, lookup_key: str) -> ChallengeInfo | None:
        if not storable(lookup_key):
            return None
        row = db.session.scalars(select(FactorChallenge).where(
            FactorChallenge.lookup_key == lookup_key, FactorChallenge.factor == self.factor),
            execution_options=_FRESH).first()
        return _info(row) if row else None

    def answer(self, challenge_id: str, status: str, *, payload: Mapping[str, Any] | None = None,
               now: datetime | None = None, commit: bool = True, awaited: bool = False) -> ChallengeInfo | None:
        """Answer a pending, unexpired challenge exactly once (committed). None: already answered,
        expired, unknown, or another request won the race.

        `awaited`: only while its login still waits on this factor (`_login_waits_on_it`; a push
        request answered from a phone), checked in the same conditional statement: a login
        that finished with another factor, switched to one or expired finds it closed.

        With `commit=False` the answer commits with what the caller writes next (the row stays
        locked until then, so a racing answer waits and then finds it answered), and a rollback
        undoes it: for an answer that is only worth spending together with what it buys (a
        device's credential). Called from `verify` at login, it commits with the login step's
        outcome, as the credential store's gates do (`gates_commit_with_step`): committed at
        once, it let go of the user the step holds, and a second copy of the same form found
        the code spent and moved the login before the copy that spent it could."""
        if status == PENDING:
            raise ValueError("a challenge cannot be answered with 'pending'")
        if not storable(challenge_id):
            return None
        stamp = now or utcnow()
        values: dict[str, Any] = {"status": status, "answered_at": stamp}
        if payload is not None:
            values["payload_json"] = dict(payload)
        where = [FactorChallenge.id == challenge_id, FactorChallenge.factor == self.factor,
                 FactorChallenge.status == PENDING, FactorChallenge.expires_at > stamp]
        if awaited:
            where.append(_login_waits_on_it(stamp))
        row = db.claim(FactorChallenge, where=where, values=values, commit=commit and not commits_with_step())
        return _info(row) if row else None

    def note(self, challenge_id: str, payload: Mapping[str, Any]) -> bool:
        """Replace the payload of a challenge whatever its status (a fact learnt after it closed: the
        devices that reported it as fraud); the caller commits, holding whatever lock orders its
        read of the payload before this write."""
        return self._replace_payload(challenge_id, payload)

    def keep(self, challenge_id: str, payload: Mapping[str, Any]) -> bool:
        """Give a pending challenge its payload, created before what it holds was known (a claim:
        the security page's enrolment, idp.account.service.begin); the caller commits."""
        return self._replace_payload(challenge_id, payload, FactorChallenge.status == PENDING)

    def _replace_payload(self, challenge_id: str, payload: Mapping[str, Any], *conditions) -> bool:
        if not storable(challenge_id):
            return False
        result = db.session.execute(
            update(FactorChallenge).where(FactorChallenge.id == challenge_id, FactorChallenge.factor == self.factor,
                                          *conditions)
            .values(payload_json=dict(payload)), execution_options={"synchronize_session": False})
        return result.rowcount == 1

    def expire(self, challenge_id: str, *, now: datetime | None = None, answered_as: str | None = None) -> bool:
        """Mark a pending challenge expired (cancelled, superseded); the caller commits.
        `answered_as`: also one answered so, the caller's own claim (`answer(commit=False)`) for a
        response then refused, which spends it all the same (the security page's WebAuthn
        enrolment: `Factor.one_answer_per_challenge`)."""
        if not storable(challenge_id):
            return False
        statuses = (PENDING,) if answered_as is None else (PENDING, answered_as)
        result = db.session.execute(
            update(FactorChallenge).where(FactorChallenge.id == challenge_id, FactorChallenge.factor == self.factor,
                                          FactorChallenge.status.in_(statuses))
            .values(status=EXPIRED, answered_at=now or utcnow()), execution_options={"synchronize_session": False})
        return result.rowcount == 1

    def expire_answered(self, *, user: UserRef | int, answered: str, since: datetime,
                        now: datetime | None = None) -> list[str]:
        """Expire the user's login challenges of this factor (`transaction_id` set) answered
        `answered` and created at `since` or later, as if never answered: a fraud report voids
        the approvals no login has used yet. The caller commits; returns their ids (for the
        pages waiting on them). A login that already moved on used its approval then; this
        changes nothing of it."""
        user_id = user.id if isinstance(user, UserRef) else user
        return list(db.session.scalars(
            update(FactorChallenge).where(FactorChallenge.user_id == user_id, FactorChallenge.factor == self.factor,
                                          FactorChallenge.status == answered,
                                          FactorChallenge.transaction_id.is_not(None),
                                          FactorChallenge.created_at >= since)
            .values(status=EXPIRED, answered_at=now or utcnow()).returning(FactorChallenge.id),
            execution_options={"synchronize_session": False}))

    def expire_for_credential(self, credential_id: int, *, now: datetime | None = None) -> int:
        """Expire every pending challenge of one credential (`Factor.on_removed`); the caller commits."""
        result = db.session.execute(
            update(FactorChallenge).where(FactorChallenge.credential_id == credential_id,
                                          FactorChallenge.factor == self.factor, FactorChallenge.status == PENDING)
            .values(status=EXPIRED, answered_at=now or utcnow()), execution_options={"synchronize_session": False})
        return result.rowcount

    def pending(self, *, user: UserRef | int | None = None, credential_id: int | None = None,
                now: datetime | None = None, awaited: bool = False) -> list[ChallengeInfo]:
        """Unexpired pending challenges of a user and/or credential, oldest first. `awaited`: only
        those whose login still waits on this factor (as `answer(awaited=True)`: what a phone lists)."""
        stamp = now or utcnow()
        stmt = select(FactorChallenge).where(FactorChallenge.factor == self.factor,
                                             FactorChallenge.status == PENDING,
                                             FactorChallenge.expires_at > stamp)
        if awaited:
            stmt = stmt.where(_login_waits_on_it(stamp))
        if user is not None:
            stmt = stmt.where(FactorChallenge.user_id == (user.id if isinstance(user, UserRef) else user))
        if credential_id is not None:
            stmt = stmt.where(FactorChallenge.credential_id == credential_id)
        return [_info(r) for r in db.session.scalars(stmt.order_by(FactorChallenge.created_at),
                                                     execution_options=_FRESH)]
