"""The little of the directory a plugin may see: users as `UserRef`, the audit log, and a few
questions about them (is this login or signed-in session still live, is push suspended, may this
factor be used) and services (a code mailed, an attempt counted).

Plugins must not import `idp.models` or `idp.audit` (STYLE.md's module map); their
CLI commands find users and record events through these functions instead.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from sqlalchemy import bindparam, func, select, update

from idp.db import db
from idp.extensions import request_locale
from idp.factors.types import UserRef
from idp.security.text import storable

_log = logging.getLogger(__name__)


def user_ref(user) -> UserRef:
    """A `UserRef` from a `User` row (the pipeline and the account page use this too)."""
    return UserRef(id=user.id, org_id=user.org_id, username=user.email, display_name=user.name or "",
                   email=user.email, locale=user.locale)


def find_user_by_email(email: str) -> UserRef | None:
    """The user with this e-mail (case-insensitive), or None (also for an address no user can
    have: a NUL in it, see idp.security.text)."""
    from idp.models import User

    email = (email or "").strip()
    if not email or not storable(email):
        return None
    # Exact match first (the unique index); then case-insensitively for addresses typed differently.
    row = db.session.scalars(select(User).where(User.email == email)).first() or db.session.scalars(
        select(User).where(func.lower(User.email) == email.lower())).first()
    return user_ref(row) if row else None


def is_disabled(user: UserRef) -> bool:
    """Whether an admin (or `idp user disable`) disabled the user: no way in, whatever the proof."""
    from idp.models import User

    return bool(db.session.scalar(select(User.disabled).where(User.id == user.id)))


def get_user(user_id: int) -> UserRef | None:
    from idp.models import User

    row = db.session.get(User, user_id)
    return user_ref(row) if row else None


def audit(event: str, user: UserRef, *, actor: str = "", actor_id: int | None = None,
          details: dict[str, Any] | None = None) -> None:
    """Record an audit event about `user` in the current transaction (the caller commits)."""
    from idp import audit as audit_log

    audit_log.record(event, org_id=user.org_id, actor_id=actor_id, actor=actor, subject_id=user.id,
                     details=details or {})


def end_sessions_proved_by(user: UserRef, credential_id: int, *, actor: str = "", actor_id: int | None = None) -> int:
    """Sign out the user's browsers whose login proved this credential, with what they obtained
    (a key suspected cloned: idp.sessions.end_proved_by), in the current transaction; how many."""
    from idp import sessions
    from idp.models import User

    row = db.session.get(User, user.id)
    return sessions.end_proved_by(row, [credential_id], actor_id=actor_id, actor=actor) if row is not None else 0


def factor_allowed(user: UserRef, factor: str) -> bool:
    """Does the user's organization accept the second factor `factor` (its allowed factors, all
    when it names none)? A recovery that registers a credential of that factor asks first."""
    from idp.models import Organization

    allowed = db.session.scalar(select(Organization.allowed_factors).where(Organization.id == user.org_id))
    return allowed is None or factor in allowed


def self_push_recovery_allowed(user: UserRef) -> bool:
    """May this user restore push on a new phone with their password and an e-mailed code?

    The organization's choice (`Organization.self_push_recovery`, set by its admins); when
    off, only an admin's recovery QR code gives a new phone push.
    """
    from idp.models import Organization

    return bool(db.session.scalar(select(Organization.self_push_recovery).where(Organization.id == user.org_id)))


def login_enrolment_open(transaction_id: str, user: UserRef) -> bool:
    """Does the login `transaction_id` (an `AttemptContext.transaction_id`) still want the
    enrolment it began for `user`: live, at its enrolment step, and still owing one? A login
    reached that step on the password alone; once the user holds a factor it has not proven (set
    up in another browser meanwhile), what it showed (a push activation) must not add another.
    The login pipeline answers (it registers `idp.login_enrolment_open`); without it, no."""
    from flask import current_app

    check = current_app.extensions.get("idp.login_enrolment_open")
    return bool(check is not None and check(transaction_id, user.id))


def session_live(session_id: str, user: UserRef, *, hold: bool = True) -> bool:
    """Is the user's signed-in session `session_id` (an `AttemptContext.session_id`) still live:
    neither signed out, ended (from a security page, by a withdrawn factor, by a sign-out
    everywhere) nor expired? Its row is then held FOR SHARE to the end of the transaction, so a
    sign-out of it either came first, and is seen, or waits for what this transaction creates
    in its name (as a login that a session answers holds it: idp.login.session.hold_live).
    `hold=False`: a plain read, for a page that only shows the answer."""
    from idp import sessions

    if not isinstance(session_id, str) or not storable(session_id):
        return False
    return sessions.is_live(session_id, user_id=user.id, hold=hold)


def password_only_proves_the_mailbox(user: UserRef) -> bool:
    """Was the password last set through an e-mailed reset link, with no login proving a second
    factor since? Then whoever holds the mailbox holds the password too: a recovery that asks
    for the password and a code sent to that mailbox would prove nothing more."""
    from idp.models import User

    return db.session.scalar(select(User.password_reset_at).where(User.id == user.id)) is not None


def recovery_codes_due(user: UserRef) -> bool:
    """Would a second factor given to `user` now owe them recovery codes (`owe_recovery_codes`):
    the recovery-codes factor is enabled and the user holds none left unused?"""
    from flask import current_app

    factor = current_app.extensions["idp.factors"].recovery_codes()
    return factor is not None and not factor.is_configured_for(user)


def owe_recovery_codes(user: UserRef) -> bool:
    """Call after giving `user` a second factor outside the login's enrolment and the security
    page (an operator's `idp factor totp import`, a phone registered with an activation code),
    in the same transaction: the user's next login that proves a second factor then shows a
    fresh set of recovery codes once (idp.login.steps.recovery_codes.issue_owed), as a first
    enrolment does, if they still hold none then. Only the user ever sees them: a command must
    never print them. True when codes are now owed (`recovery_codes_due`), for a command's output.

    A mark on the user's row, read by the login with the row it reads anyway, rather than codes
    made now: made here, they would be seen by whoever runs the command, or by nobody. A page
    that issues a set (a first enrolment: the login's, the security page's) clears it
    (`recovery_codes_issued`), so a phone registered from such a page owes nothing once it is
    finished, and one whose page was left unfinished still gets its codes."""
    from idp.models import User

    if not recovery_codes_due(user):
        return False
    db.session.execute(update(User).where(User.id == user.id).values(recovery_codes_owed=True),
                       execution_options={"synchronize_session": False})
    return True


def recovery_codes_issued(user_id: int) -> None:
    """The user was just given a set of recovery codes (a first enrolment, the security page's new
    set, the login's owed set): none is owed any more (`owe_recovery_codes`). One conditional
    UPDATE, in the caller's transaction, that writes only a marked row."""
    from idp.models import User

    db.session.execute(update(User).where(User.id == user_id, User.recovery_codes_owed.is_(True))
                       .values(recovery_codes_owed=False), execution_options={"synchronize_session": False})


def push_suspended(user_id: int) -> bool:
    """Has a push fraud report suspended push for this user (until an admin clears it)?

    The push plugin's `is_configured_for` answers False while this holds, so the login
    offers the user's other factors instead. Asked by every login page that offers push, so read
    outside any transaction when none is open (`db.read_first`): through the session it began
    one, which on SQLite takes the write lock, to read.
    """
    if not _PUSH_SUSPENDED:
        from idp.models import User

        _PUSH_SUSPENDED.append(select(User.push_suspended_at).where(User.id == bindparam("user_id")))
    row = db.read_first(_PUSH_SUSPENDED[0], {"user_id": user_id})
    return row is not None and row[0] is not None


_PUSH_SUSPENDED = []  # the statement, built once on first use (as _ADDRESS)


def recent_challenge_count(factor: str, user_id: int, since, *, kind: str | None = None) -> int:
    """How many challenges of `factor` (optionally with `payload_json["type"] == kind`) were
    created for this user at or after `since` -- answered or not (push fatigue limits)."""
    from idp.models import FactorChallenge

    stmt = select(FactorChallenge.payload_json).where(
        FactorChallenge.factor == factor, FactorChallenge.user_id == user_id, FactorChallenge.created_at >= since)
    rows = db.session.scalars(stmt).all()
    return sum(1 for payload in rows if kind is None or (payload or {}).get("type") == kind)


_LOCK_USER = []  # the statement, built once on first use (idp.models is imported late here)


def lock_user(user_id: int) -> None:
    """Hold the user's row until the next commit or rollback, so that what a plugin checks and then
    writes for one user (a limit, then a new challenge) runs one request at a time. (PostgreSQL:
    SELECT ... FOR NO KEY UPDATE; SQLite: every transaction already holds the write lock.)

    FOR NO KEY UPDATE, as a login's last step and a consent's withdrawal take it: a refresh or a
    code exchange storing a token (whose foreign key takes a key share of this row) is not waited
    for here. With FOR UPDATE it was, after the refresh had spent its old token's row: a
    withdrawn factor's revocation of that family (idp.sessions.end_proved_by) then waited for
    that row, and PostgreSQL found a deadlock (tests/concurrency/test_factor_withdrawal_race.py).

    A prebuilt statement through `db.run`: every second-factor answer at login takes this lock,
    and an ORM execute of a statement built per call cost it 0.1-0.15 ms more.

    What the request read of the user's credentials before it waited here is forgotten
    (idp.factors.store keeps them for the request): a check made under this lock must see what a
    parallel request committed meanwhile (another tab's recovery codes, a factor set up
    elsewhere), and a step whose answer writes no credential (push's) would not make the store
    read them again. Only a request that asks about them next pays the read."""
    db.run(_lock_user_statement(), {"user_id": user_id})
    from idp.factors.store import read_credentials_again  # (the store imports this module)

    read_credentials_again()


def hold_enabled(user: UserRef) -> bool:
    """`lock_user`, and whether the user is still enabled (False too for one deleted), read
    under that lock in the same statement: what a plugin asks before it gives an account a new
    way in (an imported key, an activation, a recovery code's device).

    Read under the lock, not before it: a disabling holds the row from its UPDATE to its commit,
    and a PostgreSQL statement that waited for a row's lock reads that row's newest version, so
    a disabling committed while this waited is seen (asked before the lock, the answer was the
    one from before the wait)."""
    found = db.run(_lock_user_statement(), {"user_id": user.id}).first()
    from idp.factors.store import read_credentials_again  # (as `lock_user`: the store imports this module)

    read_credentials_again()
    return found is not None and not found.disabled


def _lock_user_statement():
    if not _LOCK_USER:
        from idp.models import User

        users = User.__table__
        _LOCK_USER.append(select(users.c.id, users.c.disabled).where(users.c.id == bindparam("user_id"))
                          .with_for_update(key_share=True))
    return _LOCK_USER[0]


def commit() -> None:
    """Commit the current transaction. For plugin device endpoints and CLI commands, which run
    outside the pipeline and the account page (the usual committers)."""
    db.session.commit()


def rollback() -> None:
    """Roll back the current transaction (a failed device request; between long-poll checks,
    so that each check sees what other processes committed and holds no connection)."""
    db.session.rollback()


def suspend_push(user_id: int, when) -> bool:
    """Suspend push for this user after a fraud report (no-op if already suspended); the caller
    commits. True when this call suspended it."""
    from sqlalchemy import update

    from idp.models import User

    result = db.session.execute(update(User).where(User.id == user_id, User.push_suspended_at.is_(None))
                                .values(push_suspended_at=when), execution_options={"synchronize_session": False})
    return result.rowcount == 1


# --- recovery helpers: passwords and codes sent to the user (plugins do not import idp.login/notify) ---


class TooManyAttempts(Exception):
    """A growing lockout (idp.lockout) is in force; `retry_after` seconds remain."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many attempts; retry after {retry_after} s")
        self.retry_after = int(retry_after)


class CodeNotSent(Exception):
    """The user has no verified address, or the notifier could not deliver (message says which)."""


def check_password(email: str, password: str, *, remote_addr: str | None = None,
                   purpose: str = "recover") -> UserRef | None:
    """The user whose e-mail and password these are (enabled, with a password), or None.

    Same cost as the login form for unknown accounts (argon2 runs either way), and the login
    form's own growing lockouts (idp.lockout.PasswordGuess: one budget per submitted address,
    known or not, whichever door the guesses come through): raises `TooManyAttempts` while one
    is in force, before checking anything. A failure is audited (`PURPOSE.password_failed`;
    for an unknown address without an organization or a subject, as at the login form, so
    that it costs the same) and committed with the guess's counters.
    """
    from flask import current_app

    from idp import lockout
    from idp.models import User

    email = (email or "").strip()
    email_storable = storable(email)
    if not isinstance(password, str) or not password or len(password) > 1024 or len(email) > 320 \
            or not email_storable or not storable(password):
        # Wrong, like any password no account can have (a lone surrogate, which a JSON body may
        # spell, could not even be hashed): the same answer and cost, and the guess counts.
        row = None
        password = ""
    else:
        row = db.session.scalars(select(User).where(User.email == email.lower())).first() \
            or db.session.scalars(select(User).where(User.email == email)).first()
    guess = lockout.PasswordGuess.of(email if email_storable else "", remote_addr)
    wait = guess.admit()
    if wait:
        raise TooManyAttempts(wait)
    db.session.commit()  # the reservation, before the hash (see idp.lockout.reserve)
    passwords = current_app.extensions["idp.passwords"]
    valid = passwords.verify(row.password_hash if row is not None else None, password or "-")
    if not valid or row is None or row.disabled:
        from idp import audit as audit_log

        # Whoever typed it is anonymous; the account is the subject (as at login).
        reason = "unknown_account" if row is None else "account_disabled" if valid else "wrong_password"
        guess.failed(commit=False)
        audit_log.record(f"{purpose}.password_failed", org_id=row.org_id if row else None, actor=audit_log.ANONYMOUS,
                         subject_id=row.id if row else None, details={"ip": remote_addr, "reason": reason})
        db.session.commit()
        return None
    guess.succeeded()
    db.session.commit()
    return user_ref(row)


def send_code(user: UserRef, code: str, purpose: str, *, valid_seconds: int | None = None) -> str:
    """Send `code` to the user's verified e-mail address through the app's notifier ([mail]);
    `valid_seconds`: how long the code works, as the message says (in minutes, rounded up). In the
    user's language: their choice (User.locale), else the asking request's, else English.

    Returns the address, masked for display ("a***@example.com"). Raises `CodeNotSent` when the
    address is not verified or delivery failed.

    The address is read outside any transaction when none is open (`db.read_first`): on SQLite
    a transaction holds the database's write lock, which the relay's answer (up to its timeout)
    would keep from every other request. A caller with one open holds it through the sending:
    one that must send from inside a transaction (a `begin_challenge` at login, whose
    transaction the pipeline commits) uses `send_code_after_commit`.
    """
    from idp.notify import NotifyError

    mail = _code_mail(user, code, purpose, valid_seconds)
    try:
        mail.send()
    except NotifyError as exc:
        raise CodeNotSent(str(exc)) from exc
    return mail.masked


def send_code_after_commit(user: UserRef, code: str, purpose: str, *, valid_seconds: int | None = None) -> str:
    """`send_code`, sent once the current transaction commits (`after_commit`), and not at all if
    it rolls back: for a plugin that mails a code it stores in the same transaction (a
    `begin_challenge` at login), so that the code is stored before the user can read it and no
    transaction (on SQLite, the database's write lock) is held while the relay answers.

    Returns the masked address at once; raises `CodeNotSent` at once when the address is not
    verified. A delivery that fails after the commit cannot be answered any more: it is logged,
    and the user asks for another code (as for a mail lost on its way)."""
    from idp.notify import NotifyError

    mail = _code_mail(user, code, purpose, valid_seconds)

    def deliver() -> None:
        try:
            mail.send()
        except NotifyError as exc:
            _log.warning("the %s code for user %s was not sent: %s", purpose, user.id, str(exc)[:200])

    after_commit(deliver)
    return mail.masked


@dataclass(frozen=True, repr=False)  # (no repr: it holds the code)
class _CodeMail:
    """A code's mail to the user's verified address, ready to send (`_code_mail`)."""

    to: str
    code: str
    purpose: str
    locale: str | None
    minutes: int | None  # how long the code works, as the mail says (None: the notifier's default)

    @property
    def masked(self) -> str:
        return mask_email(self.to)

    def send(self) -> None:
        from idp.notify import current_notifier

        lifetime = {} if self.minutes is None else {"minutes": self.minutes}
        current_notifier().send_code(self.to, self.code, self.purpose, self.locale, **lifetime)


def _code_mail(user: UserRef, code: str, purpose: str, valid_seconds: int | None) -> _CodeMail:
    """The mail of `code` to the user's verified address (read now: in the session's transaction
    when one is open, else alone); `CodeNotSent` when there is none."""
    row = db.read_first(_address_statement(), {"user_id": user.id})
    if row is None or not row.email or not row.email_verified:
        raise CodeNotSent("the account has no verified e-mail address")
    minutes = None if valid_seconds is None else max(1, -(-valid_seconds // 60))
    return _CodeMail(row.email, code, purpose, row.locale or request_locale(), minutes)


def after_commit(callback: Callable[[], object]) -> None:
    """Call `callback()` (no arguments) once the current transaction commits, after it ended, and
    never if it rolls back (nor if the savepoint it was registered in rolls back): for what a
    plugin tells the outside world about what it writes (a mail, a text message, a webhook).

    At login the pipeline commits the step's transaction (a `begin_challenge`'s, a `verify`'s);
    a device endpoint or a command commits it itself (`commit`). The callback runs with no
    transaction open, so nothing is held while it waits (on SQLite every transaction holds the
    database's write lock): read what it needs before registering it; what it writes is not
    kept. What it raises is logged and goes no further: the step's answer stands
    (idp.after_commit)."""
    from idp.after_commit import after_commit as register

    register(callback)


_ADDRESS = []  # the statement, built once on first use (as _LOCK_USER)


def _address_statement():
    if not _ADDRESS:
        from idp.models import User

        _ADDRESS.append(select(User.email, User.email_verified, User.locale).where(User.id == bindparam("user_id")))
    return _ADDRESS[0]


def notify_user(user: UserRef, purpose: str, text: str) -> bool:
    """Tell the user something happened on their account (e.g. "new_device"), best effort:
    False when there is no verified address or delivery failed."""
    try:
        send_code(user, text, purpose)
    except CodeNotSent:
        return False
    return True


def mask_email(email: str) -> str:
    local, at, domain = email.partition("@")
    return (local[:1] + "***" + at + domain) if at else "***"


def count_attempt(key: str) -> int:
    """Count one attempt against `key` and return the count so far, in one statement (committed).

    For "at most N tries" on a one-time code: count first, then check, so parallel guesses
    cannot exceed N. Shares the `failure_counters` table with idp.lockout (keys differ).
    """
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    from idp.db import utcnow
    from idp.models import FailureCounter

    insert = pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert
    now = utcnow()
    stmt = insert(FailureCounter).values(key=key, failures=1, updated_at=now).on_conflict_do_update(
        index_elements=[FailureCounter.key], set_={"failures": FailureCounter.failures + 1, "updated_at": now})
    count = db.session.execute(stmt.returning(FailureCounter.failures)).scalar_one()
    db.session.commit()
    return int(count)


def any_challenge_status(factor: str, transaction_id: str, statuses: tuple[str, ...]) -> bool:
    """Whether a challenge of `factor` created for one login transaction ended in one of
    `statuses`. (Push: after a denial, the same login does not send another request.)"""
    from idp.models import FactorChallenge

    return db.session.scalars(
        select(FactorChallenge.id).where(FactorChallenge.factor == factor,
                                         FactorChallenge.transaction_id == transaction_id,
                                         FactorChallenge.status.in_(statuses)).limit(1)).first() is not None
