"""The login pipeline's user: one prebuilt row (with its organization's policy columns), not an ORM entity.

Every login POST and second-factor page reads the user its transaction names. Through the ORM
that is a get with the organization joined, about 150 us of a request; as one prebuilt
statement through `db.run`, about 15. The pipeline only reads its user (its two writes, a
rehashed password and a push suspension, are statements of their own), and the policy takes
any object with the models' attributes (idp.policy.decide), so a frozen copy serves. Pages
that edit users (account, admin) keep the ORM.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import bindparam, select, update

from idp.db import db
from idp.factors import store
from idp.models import Organization, User
from idp.security.text import storable


@dataclass(frozen=True)
class LoginOrg:
    """What the policy reads of the user's organization."""

    id: int
    name: str
    require_2fa: bool
    allowed_factors: list | None
    grace_days: int | None
    grace_logins: int | None


@dataclass(frozen=True)
class LoginUser:
    """A read-only copy of the `users` row, as of this request's read."""

    id: int
    public_id: str
    org_id: int
    email: str
    name: str | None
    locale: str | None
    disabled: bool
    password_hash: str | None
    mfa_setting: str
    exempt_until: date | None
    exempt_reason: str | None
    required_since: datetime | None
    logins_since_required: int
    second_factor_count: int
    recovery_codes_owed: bool
    created_at: datetime | None
    tokens_valid_after: int | None
    org: LoginOrg


# What the pipeline's shared functions (idp.login.gate, the policy) take: this copy, or the ORM
# user a signed-in session's page loaded.
UserLike = LoginUser | User

_USER_FIELDS = [name for name in LoginUser.__dataclass_fields__ if name != "org"]
_ORG_FIELDS = list(LoginOrg.__dataclass_fields__)
# The user's and organization's columns, labelled apart (`user__email`, `org__require_2fa`), so
# that a query may select them beside others: the login transaction is read with its user
# (idp.login.transaction.load) through the same columns and `from_row`.
JOINED_COLUMNS = ([getattr(User, name).label(f"user__{name}") for name in _USER_FIELDS]
                  + [getattr(Organization, name).label(f"org__{name}") for name in _ORG_FIELDS])
_SELECT = select(*JOINED_COLUMNS).join(Organization, Organization.id == User.org_id)
_BY_ID = _SELECT.where(User.id == bindparam("user_id"))
_BY_EMAIL = _SELECT.where(User.email == bindparam("email"))
# The password step's user, with their live credentials (idp.factors.store) when they hold a
# second factor: the step's policy decision and the challenge it begins ask about them after the
# hash, and a password-only user's login never does. Read with the row that counts them.
_BY_EMAIL_WITH_CREDENTIALS = store.with_live_credentials(
    _SELECT, User.id, only_if=User.second_factor_count > 0).where(User.email == bindparam("email"))
_CREDENTIALS_FROM = len(JOINED_COLUMNS)  # the credential columns' place in its rows
# Compare-and-set: a rehash computed from the hash read before argon2 never overwrites a new
# password an admin (or the user) stored in between.
_STORE_PASSWORD_HASH = (update(User.__table__).where(User.__table__.c.id == bindparam("user_id"),
                                                     User.__table__.c.password_hash == bindparam("previous_hash"))
                        .values(password_hash=bindparam("password_hash")))
# The user's row held until the login's last write commits, unless disabled: taken first, before
# the transaction's own row, in the order idp.users.sign_out_everywhere takes them.
_HOLD_FOR_SIGN_IN = (select(User.__table__.c.id, User.__table__.c.tokens_valid_after)
                     .where(User.__table__.c.id == bindparam("user_id"), User.__table__.c.disabled.is_(False))
                     .with_for_update(key_share=True))


_SIGNED_OUT_STAMP = select(User.__table__.c.tokens_valid_after).where(User.__table__.c.id == bindparam("user_id"))


# The key of the password step's record (idp.login.steps.password) that keeps the user's sign-out
# stamp (`tokens_valid_after`) as it was read with the hash the password was checked against.
PASSWORD_STAMP = "signed_out_stamp"


def password_step(user: UserLike, at: int) -> dict:
    """The login's record of a password checked against `user`'s hash (read with its stamp)."""
    return {"method": "password", "factor": "password", "amr": ["pwd"], "at": at,
            PASSWORD_STAMP: user.tokens_valid_after}


def signed_out_since_password(steps_done, user_id: int) -> bool:
    """Whether the user was signed out everywhere (a new password, "Sign out everywhere") since
    the login's password was checked, asked once this transaction holds the user's row
    (`hold_for_sign_in`, or the login's stamp): a password checked against the hash read before a
    new one was stored must not sign in after it. A login whose transaction names its user is
    expired by the sign-out itself (idp.users.sign_out_everywhere), but the password step names
    it only as it moves the login on: a sign-out committed between the check and that move
    expired nothing of this login, whether the password step finishes it or a step after it
    does (a consent page, a second factor). So the stamp read with the hash is kept in the
    password step's record and compared here with the one read under the hold (`hold_for_sign_in`,
    gate.record_login_holding, transaction.hold_user_at: no statement of its own), else read now.
    A login without a password step (an SSO session's) or whose record predates the stamp: False."""
    step = next((s for s in steps_done or () if isinstance(s, dict) and s.get("method") == "password"
                 and PASSWORD_STAMP in s), None)
    if step is None:
        return False
    noted = db.noted(_HELD_STAMP)
    if noted is not None and noted[0] == user_id:
        return noted[1] != step[PASSWORD_STAMP]
    return db.run(_SIGNED_OUT_STAMP, {"user_id": user_id}).scalar() != step[PASSWORD_STAMP]


def from_row(row) -> LoginUser | None:
    """The user of a row selected with JOINED_COLUMNS; None for no row, or none outer-joined."""
    if row is None or row.user__id is None:
        return None
    org = LoginOrg(**{name: getattr(row, f"org__{name}") for name in _ORG_FIELDS})
    return LoginUser(**{name: getattr(row, f"user__{name}") for name in _USER_FIELDS}, org=org)


def load(user_id: int) -> LoginUser | None:
    return from_row(db.read_first(_BY_ID, {"user_id": user_id}))


def find(email: str) -> LoginUser | None:
    """The user with this e-mail address (stored lower-case), or None: also for an address no
    user can have (a NUL in it), without asking the database (idp.security.text)."""
    if not storable(email):
        return None
    return from_row(db.read_first(_BY_EMAIL, {"email": email}))


def find_signing_in(email: str) -> LoginUser | None:
    """`find` for the password step, the user's live credentials kept for the rest of the
    request when they hold a second factor (`_BY_EMAIL_WITH_CREDENTIALS`)."""
    if not storable(email):
        return None
    rows = db.read_all(_BY_EMAIL_WITH_CREDENTIALS, {"email": email})
    user = from_row(rows[0] if rows else None)
    if user is not None and user.second_factor_count > 0:
        store.keep_live_rows(user.id, rows, _CREDENTIALS_FROM)
    return user


def store_password_hash(user_id: int, password_hash: str, previous_hash: str) -> bool:
    """Replace `previous_hash` (False, changing nothing, when the stored hash is another one by
    now). In the session's transaction; the caller commits."""
    return db.run(_STORE_PASSWORD_HASH, {"user_id": user_id, "password_hash": password_hash,
                                         "previous_hash": previous_hash}).rowcount == 1


_HELD_ENABLED = "idp_login_user_held_enabled"
# (user id, tokens_valid_after) as the transaction's hold of the user's row read it.
_HELD_STAMP = "idp_login_user_held_stamp"
# `note_held_enabled` told no stamp (its hold did not read one).
_UNREAD = object()


def note_held_enabled(user_id: int, *, signed_out_stamp=_UNREAD) -> None:
    """This transaction has locked the user's row (FOR NO KEY UPDATE, or SQLite's write lock) and
    read it not disabled under that lock (idp.login.transaction.hold_user_at): `hold_for_sign_in`
    then has nothing to ask, nothing being able to disable the user before the commit.
    `signed_out_stamp`: the user's `tokens_valid_after` read under that lock, when it was
    (`signed_out_since_password` then asks nothing either)."""
    db.note(_HELD_ENABLED, user_id)
    if signed_out_stamp is not _UNREAD:
        db.note(_HELD_STAMP, (user_id, signed_out_stamp))


def hold_for_sign_in(user_id: int) -> bool:
    """Lock the user's row for the rest of this transaction (PostgreSQL; SQLite's write lock is
    already held); False when the user is disabled (or gone). A sign-out everywhere
    (idp.users) waits for a login holding it, or is waited for: the two never interleave.
    No statement when this transaction already holds it so (`note_held_enabled`)."""
    if db.noted(_HELD_ENABLED) == user_id:
        return True
    held = db.run(_HOLD_FOR_SIGN_IN, {"user_id": user_id}).first()
    if held is not None:
        db.note(_HELD_STAMP, (user_id, held.tokens_valid_after))
    return held is not None
