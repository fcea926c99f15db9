"""The login transaction: a server-side state machine with guarded transitions.

The browser knows a transaction by a random handle in the URL (`/login/<handle>`);
the row is keyed by the handle's SHA-256 and bound to the browser's session cookie,
so a handle alone is worthless. Every form carries the transaction's `version`:
`advance()` moves the state only when the state, the version and the expiry still
match, in one UPDATE. An old form, a double post or a race matches zero rows and
changes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from flask import current_app
from sqlalchemy import bindparam, select, update

from idp.extensions import use_login_ui_locales
from idp.db import db, foreign_key_refused, utcnow
from idp.factors import store
from idp.login import user as login_user
from idp.login.user import LoginUser
from idp.lone import repeated_json
from idp.models import LoginTransaction, Organization, User
from idp.security.tokens import random_token, sha256_hex


class State(str, Enum):
    IDENTIFY = "identify"
    ENROL = "enrol"
    SECOND_FACTOR = "second_factor"
    RECOVERY_CODES = "recovery_codes"  # new recovery codes shown once after a first enrolment
    CONSENT = "consent"
    DONE = "done"
    CANCELLED = "cancelled"


TERMINAL = {State.DONE.value, State.CANCELLED.value}


@dataclass(slots=True)
class TransactionRow:
    """A login transaction's row as this request read it: a plain copy, not an ORM entity (the
    pipeline only reads it, and `advance` mirrors what it writes), so loading it costs one
    prebuilt SELECT. Fields are the `login_transactions` columns."""

    id: str
    browser_binding: str
    state: str
    version: int
    authz_request: dict
    user_id: int | None
    steps_done: list
    decision: dict | None
    factor_name: str | None
    factor_state: dict | None
    created_at: datetime
    expires_at: datetime


_TABLE = LoginTransaction.__table__
_FIELDS = TransactionRow.__slots__
# The transaction with its user, if it names one yet: every step past the password needs both,
# and one statement is one round trip fewer on every such page and POST. At the second-factor
# step, the user's live credentials too (idp.factors.store, one row each): the code page and its
# POST ask about them next (the methods held, the policy's decision, the factor's check).
_LOAD = (store.with_live_credentials(
    select(*repeated_json(_TABLE.c), *login_user.JOINED_COLUMNS)
    .select_from(_TABLE.outerjoin(User, User.id == _TABLE.c.user_id)
                 .outerjoin(Organization, Organization.id == User.org_id)),
    User.id, only_if=_TABLE.c.state == State.SECOND_FACTOR.value)
    .where(_TABLE.c.id == bindparam("id_")))
_CREDENTIALS_FROM = len(_TABLE.c) + len(login_user.JOINED_COLUMNS)  # the credential columns' place in its rows


@dataclass(slots=True)
class Loaded:
    """A transaction as a request found it: its row, and its user as of the same read (None
    before the password step names one)."""

    row: TransactionRow
    user: LoginUser | None


@dataclass
class Handle:
    """A transaction as the browser names it: the raw handle plus the loaded row."""

    raw: str
    row: TransactionRow


def _ttl() -> timedelta:
    return timedelta(seconds=int(current_app.extensions["idp.settings"].get("login.transaction_ttl", 600)))


def begin(authz_request: dict, binding: str, *, state: State = State.IDENTIFY, user_id: int | None = None,
          steps_done: list | None = None) -> Handle:
    raw = random_token(24)
    now = utcnow()
    row = TransactionRow(id=sha256_hex(raw), browser_binding=binding, state=state.value, version=1,
                         authz_request=authz_request, user_id=user_id, steps_done=steps_done or [], decision=None,
                         factor_name=None, factor_state=None, created_at=now,
                         expires_at=now + _ttl())
    # Written alone: /authorize has nothing else to commit with it (what the session read is
    # committed first, so that on SQLite it holds no lock this insert would wait for). Nor
    # does it wait for the disk (PostgreSQL): a crash that forgets a login just begun sends
    # its browser back to the start ("this sign-in expired"), and the login's next write,
    # which waits, makes this one durable with it.
    db.session.commit()
    db.insert_alone(_TABLE, {name: getattr(row, name) for name in _FIELDS}, synchronous=False)
    return Handle(raw, row)


# The user's row and this login's locked, the user's first (the order of pipeline.finish), and
# the login's state and version read under the locks. Both rows, not the user's alone: a
# PostgreSQL statement that waited for a row lock reads that row's newest version, but the
# other rows it joins as its snapshot saw them (the version before the other post's commit).
# (SQLite, whose transactions hold the write lock, has no such clause and needs none.) FOR NO KEY
# UPDATE, as lock_user: a refresh storing a token of this user is not waited for (a key suspected
# cloned at this step revokes token families, which waits for that refresh's row: a deadlock).
_HOLD_USER = (select(_TABLE.c.state, _TABLE.c.version, User.__table__.c.disabled, User.__table__.c.tokens_valid_after)
              .select_from(User.__table__.join(_TABLE, _TABLE.c.user_id == User.__table__.c.id))
              .where(User.__table__.c.id == bindparam("user_id"), _TABLE.c.id == bindparam("id_"))
              .with_for_update(key_share=True))


def hold_user_at(row: TransactionRow, version: int) -> bool:
    """Lock the login's user until the step commits (one second-factor attempt per user at a
    time, as idp.factors.directory.lock_user) and say whether the login is still where the
    posted form left it (`row.state` at `version`), read under that lock: one statement.

    A form posted twice at once (a retry, a double click) has both copies pass the version
    check made when the request began; the second waits here for the first to commit, and
    without this second look it would then check the same answer again: a WebAuthn assertion
    whose count has just been stored would read as a cloned key."""
    found = db.run(_HOLD_USER, {"user_id": row.user_id, "id_": row.id}).first()
    if found is not None and not found.disabled:
        # Read under the lock, enabled: the login's last step need not lock and read it again
        # (login_user.hold_for_sign_in) if it comes in this transaction.
        # (Its sign-out stamp too: login_user.signed_out_since_password.)
        login_user.note_held_enabled(row.user_id, signed_out_stamp=found.tokens_valid_after)
    return found is not None and found.state == row.state and found.version == version


def expire_advanced_by(user_id: int, credential_ids: set[int]) -> list[str]:
    """Expire the user's logins in progress that a step with one of `credential_ids` advanced
    (a factor withdrawn: idp.sessions.end_proved_by); their ids. A login that has not used one
    goes on: it still has every step ahead of it. The caller commits."""
    now = utcnow()
    rows = db.session.execute(select(_TABLE.c.id, _TABLE.c.steps_done).where(
        _TABLE.c.user_id == user_id, _TABLE.c.expires_at > now, _TABLE.c.state.not_in(TERMINAL)))
    advanced = [id_ for id_, steps in rows
                if any(isinstance(step, dict) and step.get("credential_id") in credential_ids for step in steps or ())]
    if advanced:
        db.session.execute(update(_TABLE).where(_TABLE.c.id.in_(advanced)).values(expires_at=now))
    return advanced


def load_by_id(transaction_id: str) -> Loaded | None:
    """The live transaction stored under `transaction_id` (the handle's SHA-256, as factors see
    it: `AttemptContext.transaction_id`), with its user, whichever browser holds it: for checks
    made outside the login's own pages (a phone registering an activation it showed)."""
    if not transaction_id or len(transaction_id) > 64:
        return None
    rows = db.read_all(_LOAD, {"id_": transaction_id})
    if not rows or rows[0].expires_at <= utcnow():
        return None
    return _loaded(rows)


def load(raw: str, binding: str) -> Loaded | None:
    """The live transaction for this handle and this browser, with its user; None when unknown,
    foreign or expired.

    Read outside any transaction when none is open (a request's first statement): a page that
    only shows a form then opens none, and the password step's reads before the hash hold none.
    What a step then writes is version-guarded (`advance`), as it always was."""
    if not raw or len(raw) > 64:
        return None
    rows = db.read_all(_LOAD, {"id_": sha256_hex(raw)})
    found = rows[0] if rows else None
    if found is None or found.browser_binding != binding or found.expires_at <= utcnow():
        return None
    use_login_ui_locales((found.authz_request or {}).get("params", {}).get("ui_locales"))
    return _loaded(rows)


def _loaded(rows: list) -> Loaded:
    found = rows[0]
    user = login_user.from_row(found)
    if user is not None and found.state == State.SECOND_FACTOR.value:
        store.keep_live_rows(user.id, rows, _CREDENTIALS_FROM)
    return Loaded(TransactionRow(**{name: getattr(found, name) for name in _FIELDS}), user)


_ADVANCE: dict[tuple[str, ...], object] = {}


def _advance_statement(patched: tuple[str, ...]):
    """The guarded UPDATE for this set of patched columns, built once (a few sets exist)."""
    statement = _ADVANCE.get(patched)
    if statement is None:
        statement = _ADVANCE[patched] = (
            update(_TABLE)
            .where(_TABLE.c.id == bindparam("id_"), _TABLE.c.state == bindparam("expected_state"),
                   _TABLE.c.version == bindparam("expected_version"), _TABLE.c.expires_at > bindparam("now"))
            .values(state=bindparam("state"), version=bindparam("version"),
                    **{name: bindparam(name) for name in patched}))
    return statement


def advance(row: TransactionRow, expected_state: State, expected_version: int, new_state: State,
            *, commit: bool = True, **patch) -> bool:
    """Move from `expected_state` at `expected_version` to `new_state`, once. False: stale form or race.

    With `commit=False` the move commits with the caller's next writes (issuing a code): until
    then the row is locked, so a racing request waits and then matches nothing.
    """
    values = {"id_": row.id, "expected_state": expected_state.value, "expected_version": expected_version,
              "now": utcnow(), "state": new_state.value, "version": expected_version + 1, **patch}
    try:
        moved = db.run(_advance_statement(tuple(sorted(patch))), values).rowcount == 1
    except db.engine.dialect.loaded_dbapi.IntegrityError as refused:
        if "user_id" not in patch or not foreign_key_refused(refused):
            raise
        # The move names its user (the password step's), who was deleted since the step read
        # them (idp.users.delete): the foreign key refuses it, and the login goes no further,
        # as after a race lost. (Caught rather than asked for first: no statement more per login.)
        moved = False
    if not moved:
        db.session.rollback()
        return False
    if commit:
        db.session.commit()
    # Mirror the stored values on the loaded row without another SELECT.
    for key, value in dict(patch, state=new_state.value, version=expected_version + 1).items():
        setattr(row, key, value)
    return True


def update_in_place(row: TransactionRow, expected_version: int, *, commit: bool = True, **patch) -> bool:
    """Change fields without moving the state (a new challenge, a denied one), still version-guarded."""
    return advance(row, State(row.state), expected_version, State(row.state), commit=commit, **patch)


_READ_STEP = select(_TABLE.c.state, _TABLE.c.version, _TABLE.c.factor_name, _TABLE.c.factor_state) \
    .where(_TABLE.c.id == bindparam("id_"), _TABLE.c.expires_at > bindparam("now"))


def read_step_again(row: TransactionRow) -> None:
    """Bring `row`'s state, version and factor step up to date, after another request of the same
    login won a version-guarded write this one lost (`advance`, which rolled back: read outside
    any transaction, as `load` reads)."""
    found = db.read_all(_READ_STEP, {"id_": row.id, "now": utcnow()})
    if found:
        row.state, row.version, row.factor_name, row.factor_state = found[0]
    else:
        # Gone (deleted with its user: idp.users.delete) or expired (a disabling or a sign-out
        # everywhere expires it) while this request worked on it. Read as ended, so that the
        # caller, which finds it no longer at its step, leads to the step's URL, whose load shows
        # the expired page (a wait for a step to be kept, or a retry of the user's other
        # methods, ended on a 503 after seconds).
        row.state, row.factor_name, row.factor_state = State.CANCELLED.value, None, None


def drop_step(row: TransactionRow, expected_version: int) -> bool:
    """Drop the factor step in progress (a challenge a refused answer spent: no form of this
    version may answer it again), version-guarded, in the caller's transaction (which commits
    it). Unlike `advance`, a login that moved on meanwhile (zero rows) rolls nothing back: the
    caller's writes (a failure counted, a key suspended) stand all the same."""
    patch = {"factor_name": None, "factor_state": None}
    values = {"id_": row.id, "expected_state": row.state, "expected_version": expected_version, "now": utcnow(),
              "state": row.state, "version": expected_version + 1, **patch}
    if db.run(_advance_statement(tuple(sorted(patch))), values).rowcount != 1:
        return False
    for key, value in dict(patch, version=expected_version + 1).items():
        setattr(row, key, value)
    return True
