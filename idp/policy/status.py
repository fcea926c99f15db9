"""Where every user stands with 2FA: the four statuses, computed in ONE place.

The rule exists twice on purpose, side by side, so that a change to one is a
visible change to the other (tests/unit/policy/test_status.py checks on SQLite
and PostgreSQL that both agree on every combination of inputs):

* `status_of(...)`    the Python predicate, for one user in hand;
* `status_expr(...)`  the same rule as one SQL ``CASE`` expression, for lists,
                      filters and counts over 100,000 users without a Python loop.

The inputs, and what they mean
------------------------------
``second_factor_count``  usable second-factor credentials (kept by the factor store).
``org.require_2fa``      the organization requires 2FA for everyone.
``mfa_setting``          the user's own setting: ``follow`` (the organization decides),
                         ``required`` (always), ``exempt`` (2FA waived).
``exempt_until``         last day (inclusive, UTC) of a temporary exemption; NULL = for good.

Derived facts
-------------
exempt    = mfa_setting = 'exempt' AND (exempt_until IS NULL OR exempt_until >= today)
required  = mfa_setting = 'required'
            OR (mfa_setting = 'exempt' AND exempt_until < today)     -- an exemption that has
                                                                     -- passed: required again,
                                                                     -- whatever the org says
            OR (mfa_setting NOT IN ('required', 'exempt') AND org.require_2fa)

An exemption waives a requirement, so when a temporary one ends the user is
required again without anyone acting (they need not have been required through
the organization). Any unknown ``mfa_setting`` value counts as ``follow``.

The table (first matching row wins)
-----------------------------------
=========  ========  =============  ======================  ====================
exempt     required  factor set up  status                  shield
=========  ========  =============  ======================  ====================
yes        -         -              NOT_ACTIVE              red
no         yes       yes            ACTIVE_REQUIRED         green + check
no         yes       no             REQUIRED_NOT_SET_UP     orange + exclamation
no         no        yes            ACTIVE_VOLUNTARY        orange + check
no         no        no             NOT_ACTIVE              red
=========  ========  =============  ======================  ====================

An exempt user with a factor set up is NOT_ACTIVE: the login does not ask them for
it (the French original: waiving 2FA for a user unticks "Activer
l'authentification à 2 facteurs"), and the status shows what the login does.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import and_, case, false, func, literal, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from idp.db import db, utcnow
from idp.models import Organization, User

FOLLOW, REQUIRED, EXEMPT = "follow", "required", "exempt"
MFA_SETTINGS = (FOLLOW, REQUIRED, EXEMPT)


class TwoFactorStatus(str, enum.Enum):
    """The four statuses. The value is what SQL returns and what URLs/JSON carry."""

    NOT_ACTIVE = "not_active"
    REQUIRED_NOT_SET_UP = "required_not_set_up"
    ACTIVE_VOLUNTARY = "active_voluntary"
    ACTIVE_REQUIRED = "active_required"

    @property
    def color(self) -> str:
        return _LOOK[self][0]

    @property
    def mark(self) -> str | None:
        """``"check"``, ``"exclamation"`` or None (the plain red shield)."""
        return _LOOK[self][1]

    @property
    def is_required(self) -> bool:
        """Made mandatory (set up or not): the shield has its own outline, not only its colour."""
        return self in (TwoFactorStatus.REQUIRED_NOT_SET_UP, TwoFactorStatus.ACTIVE_REQUIRED)

    @property
    def is_active(self) -> bool:
        return self in (TwoFactorStatus.ACTIVE_VOLUNTARY, TwoFactorStatus.ACTIVE_REQUIRED)


_LOOK = {
    TwoFactorStatus.NOT_ACTIVE: ("red", None),
    TwoFactorStatus.REQUIRED_NOT_SET_UP: ("orange", "exclamation"),
    TwoFactorStatus.ACTIVE_VOLUNTARY: ("orange", "check"),
    TwoFactorStatus.ACTIVE_REQUIRED: ("green", "check"),
}

# Display order (the admin pages and `idp policy show` list the statuses this way).
ORDER = (TwoFactorStatus.NOT_ACTIVE, TwoFactorStatus.REQUIRED_NOT_SET_UP,
         TwoFactorStatus.ACTIVE_VOLUNTARY, TwoFactorStatus.ACTIVE_REQUIRED)


def today_utc() -> date:
    return utcnow().date()


# --------------------------------------------------------------------------------------------
# The rule in Python
# --------------------------------------------------------------------------------------------

def _exempt(mfa_setting: str, exempt_until: date | None, today: date) -> bool:
    return mfa_setting == EXEMPT and (exempt_until is None or exempt_until >= today)


def _required(mfa_setting: str, exempt_until: date | None, org_require: bool, today: date) -> bool:
    return (mfa_setting == REQUIRED
            or (mfa_setting == EXEMPT and exempt_until is not None and exempt_until < today)
            or (mfa_setting not in (REQUIRED, EXEMPT) and bool(org_require)))


def status_of(*, second_factor_count: int, org_require: bool, mfa_setting: str,
              exempt_until: date | None, today: date) -> TwoFactorStatus:
    """The status from plain values (the SQL twin is `status_expr`)."""
    if _exempt(mfa_setting, exempt_until, today):
        return TwoFactorStatus.NOT_ACTIVE
    required = _required(mfa_setting, exempt_until, org_require, today)
    has_factor = (second_factor_count or 0) > 0
    if required and has_factor:
        return TwoFactorStatus.ACTIVE_REQUIRED
    if required:
        return TwoFactorStatus.REQUIRED_NOT_SET_UP
    if has_factor:
        return TwoFactorStatus.ACTIVE_VOLUNTARY
    return TwoFactorStatus.NOT_ACTIVE


# --------------------------------------------------------------------------------------------
# The same rule in SQL
# --------------------------------------------------------------------------------------------

def _org_require_clause(org_require: Any) -> ColumnElement:
    if org_require is None:
        return Organization.require_2fa.is_(True)
    if isinstance(org_require, bool):
        return true() if org_require else false()
    return org_require  # a column or expression supplied by the caller


def exempt_expr(today: date, columns=User) -> ColumnElement:
    c = columns
    return and_(c.mfa_setting == EXEMPT, or_(c.exempt_until.is_(None), c.exempt_until >= today))


def required_expr(today: date, org_require: Any = None, columns=User) -> ColumnElement:
    c = columns
    return or_(
        c.mfa_setting == REQUIRED,
        and_(c.mfa_setting == EXEMPT, c.exempt_until.is_not(None), c.exempt_until < today),
        and_(c.mfa_setting.not_in((REQUIRED, EXEMPT)), _org_require_clause(org_require)),
    )


def status_expr(today: date, org_require: Any = None, columns=User) -> ColumnElement:
    """`status_of` as one SQL CASE over `users` (and `organizations`).

    ``org_require`` None reads ``organizations.require_2fa`` (the query must join
    organizations); a bool inlines a known value (one organization's list), which
    also lets the planner drop a branch. ``columns`` is where ``mfa_setting``,
    ``exempt_until`` and ``second_factor_count`` come from: the User model, or a
    subquery's ``.c`` carrying the same names (see `distribution`).
    """
    has_factor = columns.second_factor_count > 0
    required = required_expr(today, org_require, columns)
    return case(
        (exempt_expr(today, columns), literal(TwoFactorStatus.NOT_ACTIVE.value)),
        (and_(required, has_factor), literal(TwoFactorStatus.ACTIVE_REQUIRED.value)),
        (required, literal(TwoFactorStatus.REQUIRED_NOT_SET_UP.value)),
        (has_factor, literal(TwoFactorStatus.ACTIVE_VOLUNTARY.value)),
        else_=literal(TwoFactorStatus.NOT_ACTIVE.value),
    )


def _inputs_of_org(org_id: int):
    """The org's enabled users grouped by the three inputs of the status: a handful of rows.

    Counting over this instead of over the users themselves evaluates the CASE once
    per distinct (setting, end date, factor count) rather than once per user, and
    the grouping reads only the covering index ix_users_org_policy.

    Disabled accounts are left out: they sign in with nothing, so they are neither protected
    nor at risk, and counting them as "not active" made an organization look less safe than
    it is (and "Require 2FA for everyone" promised enrolments nobody would make). They are
    counted apart: `disabled_count`.
    """
    return (select(User.mfa_setting, User.exempt_until, User.second_factor_count, func.count().label("n"))
            .where(User.org_id == org_id, User.disabled.is_(False))
            .group_by(User.mfa_setting, User.exempt_until, User.second_factor_count)
            .subquery("inputs"))


# --------------------------------------------------------------------------------------------
# Questions asked of one user, and of a whole organization
# --------------------------------------------------------------------------------------------

def status(user, org, today: date | None = None) -> TwoFactorStatus:
    """The status of a User (or any object with the same attributes) in its Organization."""
    return status_of(second_factor_count=user.second_factor_count, org_require=org.require_2fa,
                     mfa_setting=user.mfa_setting, exempt_until=user.exempt_until,
                     today=today or today_utc())


def is_exempt(user, today: date | None = None) -> bool:
    return _exempt(user.mfa_setting, user.exempt_until, today or today_utc())


def is_required(user, org, today: date | None = None) -> bool:
    """Must this user use a second factor (by the org's or an admin's decision)?"""
    today = today or today_utc()
    return (not _exempt(user.mfa_setting, user.exempt_until, today)
            and _required(user.mfa_setting, user.exempt_until, org.require_2fa, today))


def disabled_count(org_id: int) -> int:
    """The organization's disabled accounts: those `distribution` and `impact_of_requiring_all`
    leave out (the pages say how many: "N disabled accounts are not counted")."""
    return int(db.session.scalar(select(func.count()).select_from(User).where(
        User.org_id == org_id, User.disabled.is_(True))) or 0)


def distribution(org_id: int, today: date | None = None) -> dict[TwoFactorStatus, int]:
    """Enabled users of the organization per status (disabled ones: `disabled_count`): one
    statement, GROUP BY the CASE; all four keys present."""
    inputs = _inputs_of_org(org_id)
    expr = status_expr(today or today_utc(), columns=inputs.c)
    rows = db.session.execute(
        select(expr.label("status"), func.sum(inputs.c.n))
        .select_from(inputs).join(Organization, Organization.id == org_id)
        .group_by(expr)
    ).all()
    counts = {s: 0 for s in ORDER}
    for value, count in rows:
        counts[TwoFactorStatus(value)] = int(count or 0)
    return counts


@dataclass(frozen=True)
class Impact:
    """What "Require 2FA for everyone" would do now."""

    must_enrol: int       # would have to set up a factor at their next login (grace may delay it)
    exempt: int           # waived: not affected
    already_set_up: int   # already have a second factor: asked for it from now on
    total: int

    def as_dict(self) -> dict[str, int]:
        return {"must_enrol": self.must_enrol, "exempt": self.exempt,
                "already_set_up": self.already_set_up, "total": self.total}


def impact_of_requiring_all(org_id: int, today: date | None = None) -> Impact:
    """Counts in one aggregate, with the organization's requirement taken as on (enabled users only,
    as `distribution`: a disabled account enrols nothing)."""
    today = today or today_utc()
    inputs = _inputs_of_org(org_id)
    exempt = exempt_expr(today, inputs.c)
    expr = status_expr(today, org_require=True, columns=inputs.c)
    row = db.session.execute(
        select(
            func.sum(inputs.c.n),
            func.sum(case((exempt, inputs.c.n), else_=0)),
            func.sum(case((expr == TwoFactorStatus.REQUIRED_NOT_SET_UP.value, inputs.c.n), else_=0)),
            func.sum(case((expr == TwoFactorStatus.ACTIVE_REQUIRED.value, inputs.c.n), else_=0)),
        ).select_from(inputs)
    ).one()
    total, n_exempt, must_enrol, set_up = (int(v or 0) for v in row)
    return Impact(must_enrol=must_enrol, exempt=n_exempt, already_set_up=set_up, total=total)
