"""Writes to the 2FA policy: who must use a second factor, which factors, how much grace,
whether members may restore push on a new phone by themselves, and lifting a push
suspension (after a fraud report) once an admin has looked into it.

Every function here is one unit of work shared by the admin pages and the
`idp policy` commands, so that both follow the same rules and leave the same
audit trail:

* input is validated first; bad input raises `PolicyError` (a clear, translatable
  message) and writes nothing;
* a change writes exactly one audit event (`idp.audit.record`) in the same
  transaction, then commits; a change to what is already there is a no-op that
  writes no event and returns False;
* the row being changed is read with ``SELECT ... FOR UPDATE`` (PostgreSQL), so two
  admins saving at once cannot both see "changed" for one change;
* a page's save carries the fingerprint of the setting it was shown with (``seen``:
  `requirement_version`, `org_setting_version`), compared under that lock: a save from a page
  shown before another admin's change of that setting raises `PolicyChanged` and writes
  nothing, rather than undo the change unseen (the commands pass none: an operator's
  command says the whole value it sets);
* an `Actor` scoped to an organization (an admin) can only touch that
  organization: anything else is "not found", the same answer as a missing row.

When a user becomes required, ``User.required_since`` is set to now and
``logins_since_required`` reset: grace periods count from there (see decide.py).
When a user stops being required both are cleared, so a later requirement starts
a fresh grace period. A user whose second factors an admin withdrew has no grace
(`withdraw_grace`).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Iterable

from flask import has_request_context
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select, update

from idp import audit
from idp.db import db, utcnow
from idp.models import Organization, User
from idp.policy.status import EXEMPT, FOLLOW, MFA_SETTINGS, REQUIRED, is_required
from idp.template_i18n import utc_text

MAX_REASON = 500
MAX_GRACE_DAYS = 365
MAX_GRACE_LOGINS = 100
_FACTOR_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

EVENT_ORG_REQUIREMENT = "policy.org_requirement_changed"
EVENT_USER_REQUIREMENT = "policy.user_requirement_changed"
EVENT_BULK_CHANGE = "policy.bulk_change"
EVENT_ALLOWED_FACTORS = "policy.allowed_factors_changed"
EVENT_GRACE = "policy.grace_changed"
EVENT_SELF_PUSH_RECOVERY = "policy.self_push_recovery_changed"
EVENT_PUSH_SUSPENSION_CLEARED = "policy.push_suspension_cleared"


class PolicyError(ValueError):
    """Bad input to a policy change. The message is meant for the person who typed it."""


class PolicyChanged(PolicyError):
    """The setting changed since the page that asks for this change was shown."""


class NotSelectable(PolicyError):
    """A bulk change (`set_users_requirement`) names a user it may not change: ``why`` is
    "not_found" (no such user, or not in the actor's organization) or "admin" (with
    ``members_only``)."""

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why


def _fingerprint(*values: str) -> str:
    return hashlib.sha256("\x1f".join(values).encode()).hexdigest()[:16]


def requirement_version(user) -> str:
    """A short fingerprint of a user's own 2FA setting (mode, end date, reason): the admin page
    carries the one it was shown with, so that a save made from it after another admin's change
    is refused (`set_user_requirement(..., seen=...)`) instead of undoing that change unseen."""
    until = user.exempt_until.isoformat() if user.exempt_until else ""
    return _fingerprint(user.mfa_setting or "", until, user.exempt_reason or "")


# The organization's settings that Account > Security saves each with a form of its own, and the
# fingerprint of each, as `requirement_version` is the user's: the form carries the one it was
# shown with, and its save (`seen=`) is refused when another admin changed that setting since.
# One per form, not one for the row: a save of the grace period is not refused for a change of
# the allowed factors, which it does not touch. (The "Require 2FA for everyone" button needs
# none: it posts the one value it turns the rule to, so a stale click finds it there already.)
ORG_SETTINGS = ("allowed_factors", "grace", "self_push_recovery")


def org_setting_version(org, setting: str) -> str:
    """The fingerprint of one of the organization's `ORG_SETTINGS`, as it is in `org`."""
    if setting == "allowed_factors":
        allowed = org.allowed_factors
        return _fingerprint("*" if allowed is None else ",".join(sorted(allowed)))
    if setting == "grace":
        return _fingerprint(str(org.grace_days or ""), str(org.grace_logins or ""))
    if setting == "self_push_recovery":
        return _fingerprint(str(bool(org.self_push_recovery)))
    raise ValueError(setting)


def _refuse_if_changed_since(org, setting: str, seen: str | None) -> None:
    """Under the organization's row lock, with the change not already what is asked (that is a
    no-op, as for a user's setting): a page shown before another admin's change of `setting` saves
    nothing of its own (`PolicyChanged`), rather than undo that change unseen."""
    if seen and seen != org_setting_version(org, setting):
        raise PolicyChanged(_l("another administrator changed this setting since this page was shown: "
                               "check it and save again"))


@dataclass(frozen=True)
class Actor:
    """Who makes a change, as the audit log records it.

    ``id`` is the acting user's id (None for the command line), ``display`` what the
    log shows, ``org_id`` the organization an admin may act on (None: any, the CLI).
    """

    id: int | None
    display: str
    org_id: int | None = None

    @classmethod
    def cli(cls) -> "Actor":
        return cls(id=None, display="cli", org_id=None)

    @classmethod
    def admin(cls, user) -> "Actor":
        return cls(id=user.id, display=user.email, org_id=user.org_id)


def _day(value: date) -> str:
    """A day in a refusal: in the page's language on a page ("31 déc. 2026"), as it was typed
    (ISO 8601) at the command line."""
    return utc_text(value, time=False) if has_request_context() else value.isoformat()


def _now(now: datetime | None) -> datetime:
    return now or utcnow()


# The organization's and the user's rows are locked FOR NO KEY UPDATE (PostgreSQL), as the rest of
# the code locks a user (idp.factors.directory.lock_user): a policy change never alters a key, and
# FOR UPDATE also conflicts with the FOR KEY SHARE that every insert referencing the row takes for
# its foreign key (a code, a token, a session, a challenge of the user's; a new user of the
# organization). A code exchange for the user then waited for an admin's policy change
# (tests/concurrency/test_policy_races.py), and one holding such a key share while it waited for
# a lock the change held could deadlock, as a factor's withdrawal did with a refresh
# (tests/concurrency/test_factor_withdrawal_race.py). Two policy changes still wait for each other.

def _org_for_update(org_id: int, actor: Actor) -> Organization:
    if actor.org_id is not None and actor.org_id != org_id:
        raise PolicyError("organization not found")
    org = db.session.execute(
        select(Organization).where(Organization.id == org_id).with_for_update(key_share=True)
        .execution_options(populate_existing=True)  # the locked row's values, not a stale copy
    ).scalar_one_or_none()
    if org is None:
        raise PolicyError("organization not found")
    return org


def _user_for_update(user_id: int, actor: Actor) -> User:
    user = db.session.execute(
        select(User).where(User.id == user_id).with_for_update(of=User, key_share=True)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if user is None or (actor.org_id is not None and user.org_id != actor.org_id):
        raise PolicyError("user not found")
    return user


def _nothing_to_do(commit: bool) -> None:
    """A no-op: end the transaction (releasing the row lock) when we own it; write nothing."""
    if commit:
        db.session.commit()


def _finish(commit: bool) -> None:
    if commit:
        db.session.commit()
    else:
        db.session.flush()


# ------------------------------------------------------------------------------------------------

def set_org_requirement(org_id: int, on: bool, actor: Actor, *, now: datetime | None = None,
                        commit: bool = True) -> bool:
    """Require 2FA for everyone in the organization (``on``) or make it optional again.

    Users who follow the organization become required (or stop being required) with
    it; their ``required_since`` moves in the same transaction, in one UPDATE.
    Returns True when something changed.
    """
    if not isinstance(on, bool):
        raise PolicyError("the requirement must be on or off")
    now = _now(now)
    try:
        org = _org_for_update(org_id, actor)
        if bool(org.require_2fa) == on:
            _nothing_to_do(commit)
            return False
        org.require_2fa = on
        followers = update(User).where(User.org_id == org_id, User.mfa_setting == FOLLOW)
        if on:
            followers = followers.values(required_since=now, logins_since_required=0)
        else:
            followers = followers.values(required_since=None, logins_since_required=0)
        affected = db.session.execute(followers, execution_options={"synchronize_session": False}).rowcount
        audit.record(EVENT_ORG_REQUIREMENT, org_id=org_id, actor_id=actor.id, actor=actor.display,
                     details={"require_2fa": on, "users_following_org": int(affected or 0)})
        _finish(commit)
        return True
    except Exception:
        db.session.rollback()
        raise


def _checked_requirement(mode: str, until: date | None, reason: str | None) -> tuple[str, date | None, str | None]:
    """The user setting asked for, validated (before any row is read): `PolicyError` otherwise.
    Returns the reason as it is kept (its runs of white space made one space; empty: None)."""
    if mode not in MFA_SETTINGS:
        raise PolicyError(f"mode must be one of {', '.join(MFA_SETTINGS)}, not {mode!r}")
    if reason is not None:
        reason = " ".join(str(reason).split()) or None
    if mode != EXEMPT and (until is not None or reason is not None):
        raise PolicyError("an end date and a reason only apply to an exemption")
    if until is not None:
        if isinstance(until, datetime) or not isinstance(until, date):
            raise PolicyError("the end date must be a date (YYYY-MM-DD)")
    if reason is not None and len(reason) > MAX_REASON:
        raise PolicyError(f"the reason is too long (at most {MAX_REASON} characters)")
    # Not printable: C0 and C1 controls, bidi overrides, invisible format characters (shown on
    # the admin page and in `idp audit list`, they would reorder or hide what is around them).
    if reason is not None and not reason.isprintable():
        raise PolicyError(_l("the reason contains control characters"))
    return mode, until, reason


def _apply_requirement(user: User, org: Organization, mode: str, until: date | None, reason: str | None,
                       actor: Actor, now: datetime, seen: str | None) -> bool:
    """One user's setting changed, on its locked row, with its audit event (not committed):
    `set_user_requirement`'s and `set_users_requirement`'s common part, so that a change made to
    one user or to many follows the same rules and leaves the same `EVENT_USER_REQUIREMENT`.
    False: already what is asked. `PolicyChanged`: not as `seen` showed it (nothing written)."""
    today = now.date()
    before = {"mode": user.mfa_setting, "until": user.exempt_until, "reason": user.exempt_reason}
    after = {"mode": mode, "until": until, "reason": reason}
    if before == after:  # (an ended exemption's own date, sent back unchanged by the admin's form, included)
        return False
    if seen and seen != requirement_version(user):
        raise PolicyChanged(_l("the user's two-factor setting was changed since this page was shown: "
                               "check it and save again"))
    if until is not None and until < today:
        raise PolicyError(_l("the exemption end date %(date)s is in the past", date=_day(until)))
    was_required = is_required(user, org, today)
    lapsed_exemption = (before["mode"] == EXEMPT and before["until"] is not None and before["until"] < today)
    user.mfa_setting, user.exempt_until, user.exempt_reason = mode, until, reason
    now_required = is_required(user, org, today)
    if now_required and not was_required:
        user.required_since, user.logins_since_required = now, 0
    elif was_required and not now_required:
        user.required_since, user.logins_since_required = None, 0
    elif now_required and lapsed_exemption and user.required_since is None:
        # Required since the day after the exemption's end, without anyone acting: the grace
        # counted from there (decide._grace) stays, rather than restart from the account's
        # creation once the exemption is gone from the row.
        user.required_since = datetime.combine(before["until"] + timedelta(days=1), datetime.min.time())
    audit.record(EVENT_USER_REQUIREMENT, org_id=user.org_id, actor_id=actor.id, actor=actor.display,
                 subject_id=user.id,
                 details={"before": _jsonable(before), "after": _jsonable(after),
                          "required": now_required})
    return True


def set_user_requirement(user_id: int, mode: str, until: date | None, reason: str | None, actor: Actor,
                         *, now: datetime | None = None, commit: bool = True, seen: str | None = None) -> bool:
    """Set one user's 2FA: ``follow`` the organization, ``required`` always, or ``exempt``.

    An exemption may carry an end date (the last exempt day, inclusive; not in the
    past) and a reason (kept for the audit log and the admin page). ``until`` and
    ``reason`` are refused for the other modes. Returns True when something changed.
    ``seen``: the `requirement_version` the asking page was shown with; a change made since
    raises `PolicyChanged` (read under the row lock), unless it already is what is asked.
    """
    now = _now(now)
    mode, until, reason = _checked_requirement(mode, until, reason)
    try:
        user = _user_for_update(user_id, actor)
        org = db.session.get(Organization, user.org_id)
        if not _apply_requirement(user, org, mode, until, reason, actor, now, seen):
            _nothing_to_do(commit)
            return False
        _finish(commit)
        return True
    except Exception:
        db.session.rollback()
        raise


# At most this many users in one `set_users_requirement`: the admin page's bulk form sends one page
# of the users list (admin.page_size, at most 500), the command line a file of addresses.
MAX_BULK = 10_000


@dataclass(frozen=True)
class BulkResult:
    """What `set_users_requirement` did, by user id (ascending): ``changed`` (one
    `EVENT_USER_REQUIREMENT` each), ``unchanged`` (already what was asked), ``skipped`` (changed by
    someone else since the page that asked was shown: left as they are)."""

    changed: tuple[int, ...]
    unchanged: tuple[int, ...]
    skipped: tuple[int, ...]


def set_users_requirement(seen_by_id: dict[int, str | None], mode: str, until: date | None, reason: str | None,
                          actor: Actor, *, members_only: bool = False, now: datetime | None = None,
                          commit: bool = True) -> BulkResult:
    """`set_user_requirement` for several users at once, in one transaction: the admin page's
    bulk action ("For the selected users: ...") and `idp policy user` given several addresses.

    ``seen_by_id``: each user's id, and the `requirement_version` the asking page showed for it
    (None: none, as the command line passes). A user whose setting changed since is skipped, left
    as the other admin (or the operator) made it, and the others are changed all the same: the
    result says which. Everything else is all or nothing: bad input, an id that is not a user (of
    the actor's organization, for an admin), or, with ``members_only`` (the admin page), an admin
    of the organization (another admin's setting is the operator's; the admin's own is on their
    security page) raises `PolicyError` (`NotSelectable` for such a user) and writes nothing.

    Locks: the organization's row, then the users' rows in ascending id order, in one statement.
    The organization's first is the order of the other changes that hold several of these rows
    (a role change or a deletion, `idp.users._keep_an_admin` then the user's; the organization's
    requirement, `set_org_requirement`, then its followers' rows): taking the users' first could
    deadlock with them on PostgreSQL. A single user's change (`set_user_requirement`), a login's last
    step or a sign-out each hold one user's row and wait for no other: a bulk change waits for them
    or they for it, never both (tests/concurrency/test_bulk_requirement_race.py). Two bulk changes
    of one organization run one after the other. (The admin pages' disabling or deletion of a
    member take the organization's row first too, before their peer-admin check locks the member:
    idp.users.lock_organization.)

    Writes one `EVENT_USER_REQUIREMENT` per user changed (as a change of each user alone would),
    and, when any changed, one `EVENT_BULK_CHANGE` that ties them together: the request as a whole
    (mode, end date, reason, how many were selected) and who was skipped, the only trace of a
    skip, which changes nothing itself."""
    now = _now(now)
    mode, until, reason = _checked_requirement(mode, until, reason)
    if not seen_by_id:
        raise PolicyError("no user given")
    if len(seen_by_id) > MAX_BULK:
        raise PolicyError(f"too many users at once (at most {MAX_BULK})")
    if until is not None and until < now.date():  # refused for all, not found at the first user it would change
        raise PolicyError(_l("the exemption end date %(date)s is in the past", date=_day(until)))
    ids = sorted(seen_by_id)
    try:
        if actor.org_id is not None:
            org_ids = [actor.org_id]
        else:  # the command line: the organizations of the users named (an organization never changes)
            org_ids = sorted(set(db.session.scalars(select(User.org_id).where(User.id.in_(ids)))))
        orgs = {org_id: _org_for_update(org_id, actor) for org_id in org_ids}
        users = db.session.execute(
            select(User).where(User.id.in_(ids)).order_by(User.id).with_for_update(of=User, key_share=True)
            .execution_options(populate_existing=True)
        ).scalars().all()
        if len(users) != len(ids) or any(u.org_id not in orgs for u in users):
            raise NotSelectable("user not found", "not_found")
        if members_only and any(u.role == "admin" for u in users):
            raise NotSelectable("not a member: an administrator's two-factor setting is not changed here", "admin")
        changed, unchanged, skipped = [], [], []
        for user in users:
            try:
                applied = _apply_requirement(user, orgs[user.org_id], mode, until, reason, actor, now,
                                             seen_by_id[user.id])
            except PolicyChanged:
                skipped.append(user)
                continue
            (changed if applied else unchanged).append(user)
        for org_id in org_ids:  # one summary per organization, in that organization's log
            of_org = [u for u in changed if u.org_id == org_id]
            if of_org:
                audit.record(EVENT_BULK_CHANGE, org_id=org_id, actor_id=actor.id, actor=actor.display, details={
                    "mode": mode, "until": until.isoformat() if until else None, "reason": reason,
                    "selected": sum(1 for u in users if u.org_id == org_id), "changed": len(of_org),
                    "unchanged": sum(1 for u in unchanged if u.org_id == org_id),
                    "skipped": [u.id for u in skipped if u.org_id == org_id]})
        if changed:
            _finish(commit)
        else:
            _nothing_to_do(commit)
        return BulkResult(*(tuple(u.id for u in group) for group in (changed, unchanged, skipped)))
    except Exception:
        db.session.rollback()
        raise


def set_allowed_factors(org_id: int, names: Iterable[str] | None, actor: Actor, *,
                        known: Iterable[str] | None = None, commit: bool = True, seen: str | None = None) -> bool:
    """Restrict the second factors the organization accepts (None: every installed factor).

    ``known`` is the set of installed factor names (the caller asks the factor
    registry; policy does not import it): names outside it are refused.
    ``seen``: the `org_setting_version(org, "allowed_factors")` the asking page was shown with;
    a change made since raises `PolicyChanged`, unless it already is what is asked.
    """
    if names is not None:
        if isinstance(names, str):
            names = [n for n in re.split(r"[,\s]+", names) if n]
        cleaned = sorted({str(n).strip() for n in names})
        if not cleaned:
            raise PolicyError(_l("allow at least one factor, or every factor"))
        bad = [n for n in cleaned if not _FACTOR_NAME.fullmatch(n)]
        if bad:
            raise PolicyError(f"not a factor name: {bad[0]!r}")
        if known is not None:
            unknown = [n for n in cleaned if n not in set(known)]
            if unknown:
                raise PolicyError(f"unknown factor: {unknown[0]!r}")
        names = cleaned
    try:
        org = _org_for_update(org_id, actor)
        current = sorted(org.allowed_factors) if org.allowed_factors is not None else None
        if current == names:
            _nothing_to_do(commit)
            return False
        _refuse_if_changed_since(org, "allowed_factors", seen)
        org.allowed_factors = names
        audit.record(EVENT_ALLOWED_FACTORS, org_id=org_id, actor_id=actor.id, actor=actor.display,
                     details={"before": current, "after": names})
        _finish(commit)
        return True
    except Exception:
        db.session.rollback()
        raise


class _Keep:
    """`set_grace`'s "leave this measure as it is": `KEEP`."""

    def __repr__(self) -> str:
        return "KEEP"


# A measure of the grace period that a change leaves as it is: read under the organization's row
# lock, not by the caller before it (`idp policy grace --days N` alone, where a value read first
# and written back would undo an admin's change of the other measure made in between).
KEEP = _Keep()


def _grace_value(value, name: str, upper: int) -> int | None:
    if value is None or value is KEEP:
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise PolicyError(f"the grace {name} must be a whole number")
    if value == 0:
        return None
    if not 1 <= value <= upper:
        raise PolicyError(f"the grace {name} must be between 1 and {upper}")
    return value


def set_grace(org_id: int, days: int | None, logins: int | None, actor: Actor, *,
              commit: bool = True, seen: str | None = None) -> bool:
    """How long a newly required user may postpone enrolment: days, logins, both, or neither.

    0 and None both mean "no grace" by that measure. With both set, grace ends as
    soon as either runs out. `KEEP` for one of them: that measure as it is under the lock.
    ``seen``: as for `set_allowed_factors` (the "grace" setting).
    """
    days = _grace_value(days, "days", MAX_GRACE_DAYS)
    logins = _grace_value(logins, "logins", MAX_GRACE_LOGINS)
    try:
        org = _org_for_update(org_id, actor)
        before = {"days": org.grace_days, "logins": org.grace_logins}
        days = before["days"] if days is KEEP else days
        logins = before["logins"] if logins is KEEP else logins
        after = {"days": days, "logins": logins}
        if before == after:
            _nothing_to_do(commit)
            return False
        _refuse_if_changed_since(org, "grace", seen)
        org.grace_days, org.grace_logins = days, logins
        audit.record(EVENT_GRACE, org_id=org_id, actor_id=actor.id, actor=actor.display,
                     details={"before": before, "after": after})
        _finish(commit)
        return True
    except Exception:
        db.session.rollback()
        raise


def set_self_push_recovery(org_id: int, allowed: bool, actor: Actor, *, commit: bool = True,
                           seen: str | None = None) -> bool:
    """Whether the organization's members may restore push on a new phone with their password
    and a code e-mailed to them (docs/recovery.md, "Personal accounts"). Off, only a recovery QR
    code that an admin issues does it: the choice for work accounts, where the password and
    the mailbox are not proof enough of who holds the new phone. ``seen``: as for
    `set_allowed_factors` (the "self_push_recovery" setting): its form is a checkbox, saved
    whole, which a stale page would otherwise turn back."""
    if not isinstance(allowed, bool):
        raise PolicyError("self-service push recovery is on or off")
    try:
        org = _org_for_update(org_id, actor)
        if bool(org.self_push_recovery) == allowed:
            _nothing_to_do(commit)
            return False
        _refuse_if_changed_since(org, "self_push_recovery", seen)
        org.self_push_recovery = allowed
        audit.record(EVENT_SELF_PUSH_RECOVERY, org_id=org_id, actor_id=actor.id, actor=actor.display,
                     details={"before": not allowed, "after": allowed})
        _finish(commit)
        return True
    except Exception:
        db.session.rollback()
        raise


def clear_push_suspension(user_id: int, actor: Actor, *, now: datetime | None = None,
                          commit: bool = True) -> bool:
    """Let push approvals work again for a user whose push a fraud report suspended.

    A fraud report ("this login was not me", from the user's phone) sets
    ``User.push_suspended_at``; push then stays off for that user, whatever else
    changes, until an admin (or an operator, `idp policy user EMAIL --resume-push`)
    has looked into it and clears it here. The user's other factors keep working
    meanwhile. Returns True when a suspension was cleared; a user whose push is not
    suspended is a no-op (no event).

    The clear is a conditional UPDATE (``... AND push_suspended_at IS NOT NULL``) on
    the locked row, so two admins clearing at once write one event between them,
    on SQLite too (where FOR UPDATE does nothing).
    """
    now = _now(now)
    try:
        user = _user_for_update(user_id, actor)
        suspended_at = user.push_suspended_at
        if suspended_at is None:
            _nothing_to_do(commit)
            return False
        cleared = db.session.execute(
            update(User).where(User.id == user.id, User.push_suspended_at.is_not(None))
            .values(push_suspended_at=None),
            execution_options={"synchronize_session": False},
        ).rowcount
        if cleared != 1:  # another clear won the race: nothing left to do
            _nothing_to_do(commit)
            return False
        db.session.expire(user, ["push_suspended_at"])
        audit.record(EVENT_PUSH_SUSPENSION_CLEARED, org_id=user.org_id, actor_id=actor.id, actor=actor.display,
                     subject_id=user.id,
                     details={"suspended_at": suspended_at.isoformat(timespec="seconds"),
                              "suspended_for_seconds": max(int((now - suspended_at).total_seconds()), 0)})
        _finish(commit)
        return True
    except Exception:
        db.session.rollback()
        raise


def withdraw_grace(user_id: int) -> None:
    """The user's second factors were withdrawn (an admin's reset or revocation of the last one,
    after a lost phone): no grace period lets them sign in without one or enrol on the password
    alone (decide.GRACE_WITHDRAWN) until a change makes them required anew. In the caller's
    transaction, with the withdrawal and its audit event (which says what happened)."""
    from idp.policy.decide import GRACE_WITHDRAWN

    db.session.execute(update(User).where(User.id == user_id).values(logins_since_required=GRACE_WITHDRAWN),
                       execution_options={"synchronize_session": False})


def note_postponed_login(user_id: int, seen: int, *, commit: bool = True) -> bool:
    """The login pipeline calls this when a user in grace skips enrolment (counts grace logins).

    `seen` is the count the decision to allow it was made on: the count moves only from there,
    in one statement, so that logins postponing at the same moment cannot all spend the last
    grace login (False: another one moved it first; decide again). Not a policy change, so no
    audit event here (the login's own audit event says that enrolment was postponed).
    """
    counted = db.session.execute(
        update(User).where(User.id == user_id, func.coalesce(User.logins_since_required, 0) == seen)
        .values(logins_since_required=func.coalesce(User.logins_since_required, 0) + 1),
        execution_options={"synchronize_session": False},
    ).rowcount == 1
    _finish(commit)
    return counted


def _jsonable(values: dict) -> dict:
    return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in values.items()}


__all__ = [
    "Actor", "KEEP", "PolicyError", "PolicyChanged", "NotSelectable", "requirement_version", "ORG_SETTINGS", "org_setting_version",
    "set_org_requirement", "set_user_requirement", "set_users_requirement", "BulkResult", "EVENT_BULK_CHANGE",
    "set_allowed_factors", "set_grace", "set_self_push_recovery", "clear_push_suspension", "note_postponed_login", "EVENT_ORG_REQUIREMENT",
    "EVENT_USER_REQUIREMENT", "EVENT_ALLOWED_FACTORS", "EVENT_GRACE", "EVENT_SELF_PUSH_RECOVERY",
    "EVENT_PUSH_SUSPENSION_CLEARED", "REQUIRED", "EXEMPT", "FOLLOW",
]
