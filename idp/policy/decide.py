"""What must this login still do? `decide(...)` answers; the login pipeline acts on it.

Policy is asked, never told (STYLE.md section 6): the pipeline passes what it knows
(the user and organization, the authorization request, what has been proven so far)
and gets a `Decision`: whether a second factor is needed, whether the user must
enrol one first or may postpone, which factors are allowed, and the named checks
that are not met yet, each with a reason (for audit events, tests and `prompt=none`
errors). Nothing here touches Flask, the session or the database.

The rules
---------
"Needs 2FA" below means: this login must end with a second factor (verified, or
enrolled: enrolment proves possession and counts as the second factor).

======================================  =====================================================
situation                               outcome
======================================  =====================================================
exempt (exemption running)              no second factor asked, even if one is set up
                                        (``user_exempt``: the waiver is what "exempt"
                                        means), unless the client asks for MFA through
                                        acr_values
exemption whose end date has passed     required again (check ``user_requires_2fa``), with
                                        grace counted from the day after the end date
org requires 2FA, user follows the org  needs 2FA (``org_requires_2fa``)
user set to "required"                  needs 2FA (``user_requires_2fa``), whatever the org
user set up 2FA voluntarily             needs 2FA (``second_factor_set_up``): "active" means
                                        the login asks for it
client acr_values ask for MFA           needs 2FA (``acr_values_request_mfa``), also for
                                        exempt users and without grace
needs 2FA, usable factor set up         second_factor_required
needs 2FA, none set up, in grace        may_postpone (``grace_period`` met) (the login may finish without one;
                                        the pipeline offers enrolment with "later" and calls
                                        settings.note_postponed_login)
needs 2FA, none set up, no grace left   must_enrol (and second_factor_required)
org allows only some factors            only those are offered and enrolled
                                        (``allowed_factors``); a user whose factors are all
                                        outside the list still has 2FA: the login asks for
                                        one of them, then must_switch: enrol an allowed one
                                        before it finishes (never a password-only enrolment,
                                        which would let whoever knows the password add a
                                        factor of their own, and never grace)
max_age given and the session is older  ``max_age`` unmet: the password again
no session at all (session=None)        ``no_session`` unmet (not in STYLE.md's list: added
                                        so that "nothing proven yet" has a name)
======================================  =====================================================

Grace (``grace_period``): the organization's ``grace_days`` and/or ``grace_logins``;
it starts at ``User.required_since`` (set by settings.py when the user becomes
required), else the day after a passed exemption, else the user's creation. With
both set, grace ends when either runs out. ``logins_since_required`` counts the
logins already postponed: with ``grace_logins = 3`` three logins may skip enrolment.
Grace is for users newly required, who never had a second factor: one whose factors an
admin withdrew (a reset after a lost phone) has none (``GRACE_WITHDRAWN``, set by
settings.withdraw_grace), so that whoever holds the password cannot sign in on it alone,
nor enrol a factor of their own past the admin's recovery QR code (docs/recovery.md 1.2).
A later change that makes the user required anew starts a fresh grace period.

What has been proven so far is ``session``: the existing SSO session at
``/authorize``, or the current login transaction after its steps (after the
password: ``SessionFacts(auth_time=now, amr=("pwd",))``). A check that needs a
second factor is met when ``session.amr`` already holds one (``mfa`` or a
second-factor method). ``prompt=login`` is the pipeline's business: it simply does
not pass the old session.

``prompt=none``: ``Decision.prompt_none_error()`` maps the unmet checks to
``login_required`` (no session, max_age), ``unmet_authentication_requirements``
(the client's acr_values cannot be met without interaction) or
``interaction_required`` (a second factor or an enrolment is needed); None when
the session may be used as it is.

Inputs: ``user`` and ``org`` are the User/Organization models or any objects with
the same attributes (user: ``second_factor_count, mfa_setting, exempt_until,
exempt_reason, required_since, logins_since_required, created_at``; org:
``require_2fa, allowed_factors, grace_days, grace_logins``). ``factors``
(optional) names the factors the user holds usable second-factor credentials for;
without it, ``second_factor_count > 0`` is trusted.

Refresh tokens (every path to a token): `refresh_allowed` keeps a refresh grant
working only if the user is not required now, or the token's recorded ``amr``
includes a second factor, or the user (holding none) is still in a grace counted in
days; otherwise the grant answers ``invalid_grant`` and the user signs in again (and
meets the requirement). A remembered consent or an SSO
session is covered by `decide` itself: a pwd-only session no longer satisfies it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Callable, Iterable

from idp.policy.status import EXEMPT, FOLLOW, REQUIRED, is_required

# ------------------------------------------------------------------------------------------------
# acr and amr vocabulary
# ------------------------------------------------------------------------------------------------

#: The acr our ID tokens carry after a password alone / after a password and a second factor.
ACR_PWD = "urn:idp:acr:pwd"
ACR_MFA = "urn:idp:acr:mfa"

#: acr_values that count as asking for multi-factor authentication: ours, plus the common
#: ones relying parties already send (OpenID PAPE, REFEDS MFA profile, plain "mfa").
MFA_ACR_VALUES = frozenset({
    ACR_MFA,
    "mfa",
    "http://schemas.openid.net/pape/policies/2007/06/multi-factor",
    "http://schemas.openid.net/pape/policies/2007/06/multi-factor-physical",
    "https://refeds.org/profile/mfa",
})

#: RFC 8176 methods that prove a second factor when they appear next to "pwd".
SECOND_FACTOR_AMR = frozenset({"mfa", "otp", "hwk", "swk", "sms", "tel", "sc", "face", "fpt",
                               "iris", "retina", "vbm"})


def has_second_factor(amr: Iterable[str] | None) -> bool:
    """Does an ``amr`` list show a second factor? (``mfa``, or a second-factor method)."""
    return bool(amr) and not SECOND_FACTOR_AMR.isdisjoint(amr)


def acr_for(amr: Iterable[str] | None) -> str:
    """The acr to put in an ID token for what was done."""
    return ACR_MFA if has_second_factor(amr) else ACR_PWD


def requests_mfa(acr_values: Iterable[str]) -> bool:
    return not MFA_ACR_VALUES.isdisjoint(acr_values or ())


# ------------------------------------------------------------------------------------------------
# Inputs and output
# ------------------------------------------------------------------------------------------------

def _as_tuple(value) -> tuple:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(value.split())
    return tuple(value)


@dataclass(frozen=True)
class RequestFacts:
    """The parts of the authorization request that policy reads (space-separated strings accepted)."""

    acr_values: tuple = ()
    max_age: int | None = None
    prompt: tuple = ()
    client_id: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "acr_values", _as_tuple(self.acr_values))
        object.__setattr__(self, "prompt", _as_tuple(self.prompt))


@dataclass(frozen=True)
class SessionFacts:
    """What has been proven so far: when the password was checked, and the amr values."""

    auth_time: datetime
    amr: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "amr", _as_tuple(self.amr))


@dataclass(frozen=True)
class CheckResult:
    name: str
    met: bool
    reason: str


LOGIN_REQUIRED = "login_required"
INTERACTION_REQUIRED = "interaction_required"
UNMET_AUTHN = "unmet_authentication_requirements"
_ERROR_PRIORITY = (LOGIN_REQUIRED, UNMET_AUTHN, INTERACTION_REQUIRED)


@dataclass(frozen=True)
class Decision:
    """What this login must still do. See the module docstring for the rules."""

    second_factor_required: bool
    must_enrol: bool
    may_postpone: bool
    allowed_factors: tuple[str, ...] | None
    unmet: tuple[str, ...]
    #: The user holds second factors, none of a kind the organization allows: one of them first,
    #: then an allowed one is enrolled in the same login.
    must_switch: bool = False
    reasons: tuple[CheckResult, ...] = field(default=())

    @property
    def satisfied(self) -> bool:
        """True when what has been proven (the session) is enough: the login may finish."""
        return not self.unmet

    def reason(self, name: str) -> str | None:
        for result in self.reasons:
            if result.name == name:
                return result.reason
        return None

    def prompt_none_error(self) -> str | None:
        """The OAuth error for a ``prompt=none`` request, or None when it may proceed."""
        errors = {CHECKS_BY_NAME[name].error for name in self.unmet}
        for error in _ERROR_PRIORITY:
            if error in errors:
                return error
        return None

    def as_dict(self) -> dict:
        """JSON-ready (for the login transaction's ``decision`` column and audit details)."""
        return {
            "second_factor_required": self.second_factor_required,
            "must_enrol": self.must_enrol,
            "may_postpone": self.may_postpone,
            "must_switch": self.must_switch,
            "allowed_factors": list(self.allowed_factors) if self.allowed_factors is not None else None,
            "unmet": list(self.unmet),
            "reasons": {r.name: r.reason for r in self.reasons},
        }


# ------------------------------------------------------------------------------------------------
# The facts every check reads, computed once
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Facts:
    now: datetime
    request: RequestFacts
    session: SessionFacts | None
    session_mfa: bool
    mode: str
    exempt: bool
    exempt_until: date | None
    exempt_reason: str | None
    exemption_ended: bool
    org_rule: bool
    user_rule: bool
    voluntary: bool
    acr_mfa: bool
    allowed: tuple[str, ...] | None
    holds_factor: bool
    usable_factor: bool
    grace_configured: bool
    in_grace: bool
    grace_text: str
    second_factor_required: bool
    must_enrol: bool
    may_postpone: bool
    must_switch: bool

    @property
    def policy_required(self) -> bool:
        return self.org_rule or self.user_rule


#: `User.logins_since_required` of a user whose second factors an admin withdrew: no grace.
GRACE_WITHDRAWN = 2**31 - 1


@dataclass(frozen=True)
class GraceStanding:
    """Where a user stands with the organization's grace period (whether they need it or not: the
    caller asks for a required user without a second factor). ``ends_at`` (naive UTC) when it is
    counted in days, ``logins_left`` when in logins; ``withdrawn``: an admin withdrew the user's
    factors, no grace (`GRACE_WITHDRAWN`)."""

    configured: bool
    running: bool
    withdrawn: bool = False
    ends_at: datetime | None = None
    logins: int | None = None
    logins_left: int | None = None


def grace_standing(user, org, now: datetime) -> GraceStanding:
    """The user's grace period as `decide` counts it (for the admin's user page, and `_grace`)."""
    today = now.date()
    exemption_ended = user.mfa_setting == EXEMPT and user.exempt_until is not None and user.exempt_until < today
    days, logins = org.grace_days or None, org.grace_logins or None
    if not days and not logins:
        return GraceStanding(configured=False, running=False)
    if (user.logins_since_required or 0) >= GRACE_WITHDRAWN:
        return GraceStanding(configured=True, running=False, withdrawn=True)
    if user.required_since is not None:
        start = user.required_since
    elif exemption_ended:
        start = datetime.combine(user.exempt_until + timedelta(days=1), datetime.min.time())
    else:
        start = user.created_at or now
    ok, end, left = True, None, None
    if days:
        end = start + timedelta(days=days)
        ok = ok and now < end
    if logins:
        used = user.logins_since_required or 0
        left = max(logins - used, 0)
        ok = ok and used < logins
    return GraceStanding(configured=True, running=ok, ends_at=end, logins=logins, logins_left=left)


def _grace(user, org, now: datetime) -> tuple[bool, bool, str]:
    standing = grace_standing(user, org, now)
    if not standing.configured:
        return False, False, "no grace period"
    if standing.withdrawn:
        return True, False, "no grace: the second factors were withdrawn by an administrator"
    parts = []
    if standing.ends_at is not None:
        parts.append(f"until {standing.ends_at.isoformat(timespec='minutes')}")
    if standing.logins is not None:
        parts.append(f"{standing.logins_left} of {standing.logins} logins left")
    return True, standing.running, ("in grace: " if standing.running else "grace period over: ") + ", ".join(parts)


def _facts(user, org, request: RequestFacts, session: SessionFacts | None, now: datetime,
           factors: Iterable[str] | None) -> _Facts:
    today = now.date()
    mode = user.mfa_setting if user.mfa_setting in (FOLLOW, REQUIRED, EXEMPT) else FOLLOW
    exemption_ended = mode == EXEMPT and user.exempt_until is not None and user.exempt_until < today
    exempt = mode == EXEMPT and not exemption_ended
    org_rule = mode == FOLLOW and bool(org.require_2fa)
    user_rule = mode == REQUIRED or exemption_ended
    allowed = tuple(org.allowed_factors) if org.allowed_factors is not None else None
    holds = usable = (user.second_factor_count or 0) > 0
    if holds and factors is not None:
        held = set(factors)
        holds = bool(held)
        usable = holds and (allowed is None or not held.isdisjoint(allowed))
    acr_mfa = requests_mfa(request.acr_values)
    # Held, allowed or not: a user whose factor the organization stopped accepting still has 2FA
    # (asked for it, then to switch), neither password-only nor back in grace.
    voluntary = not exempt and not (org_rule or user_rule) and holds
    session_mfa = session is not None and has_second_factor(session.amr)
    grace_configured, in_grace, grace_text = _grace(user, org, now)

    needs_2fa = acr_mfa or (not exempt and (org_rule or user_rule or voluntary))
    may_postpone = (needs_2fa and not holds and not acr_mfa and in_grace and not session_mfa)
    second_factor_required = needs_2fa and not may_postpone
    must_enrol = second_factor_required and not holds and not session_mfa
    must_switch = second_factor_required and holds and not usable and not session_mfa
    return _Facts(now=now, request=request, session=session, session_mfa=session_mfa, mode=mode,
                  exempt=exempt, exempt_until=user.exempt_until, exempt_reason=user.exempt_reason,
                  exemption_ended=exemption_ended, org_rule=org_rule, user_rule=user_rule,
                  voluntary=voluntary, acr_mfa=acr_mfa, allowed=allowed, holds_factor=holds, usable_factor=usable,
                  grace_configured=grace_configured, in_grace=in_grace, grace_text=grace_text,
                  second_factor_required=second_factor_required, must_enrol=must_enrol,
                  may_postpone=may_postpone, must_switch=must_switch)


# ------------------------------------------------------------------------------------------------
# The named checks (node-oidc-provider's Check(reason, description, fn))
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    """One named rule. ``fn(facts)`` returns None when the rule does not apply, else (met, reason)."""

    name: str
    description: str
    error: str  # the prompt=none error when unmet
    fn: Callable[[_Facts], tuple[bool, str] | None]


def _second_factor_met(f: _Facts, what: str) -> tuple[bool, str]:
    if f.session_mfa:
        return True, f"{what}; a second factor was used"
    if f.may_postpone:
        return True, f"{what}; enrolment postponed ({f.grace_text})"
    if f.must_enrol:
        return False, f"{what}; no usable second factor set up: must enrol one now"
    if f.must_switch:
        return False, f"{what}; a second factor is needed, then one of a kind the organization allows"
    return False, f"{what}; a second factor is needed"


def _no_session(f: _Facts):
    return None if f.session is not None else (False, "no authenticated session")


def _max_age(f: _Facts):
    if f.request.max_age is None or f.session is None:
        return None
    age = (f.now - f.session.auth_time).total_seconds()
    if age > f.request.max_age:
        return False, f"authenticated {int(age)} s ago, max_age is {f.request.max_age} s"
    return True, f"authenticated {int(age)} s ago, within max_age {f.request.max_age} s"


def _user_exempt(f: _Facts):
    if not f.exempt:
        return None
    until = f"until {f.exempt_until.isoformat()}" if f.exempt_until else "with no end date"
    why = f" ({f.exempt_reason})" if f.exempt_reason else ""
    return True, f"2FA waived for this user {until}{why}"


def _org_requires(f: _Facts):
    return _second_factor_met(f, "the organization requires 2FA") if f.org_rule else None


def _user_requires(f: _Facts):
    if not f.user_rule:
        return None
    what = (f"the user's exemption ended on {f.exempt_until.isoformat()}: 2FA is required again"
            if f.exemption_ended else "2FA is required for this user")
    return _second_factor_met(f, what)


def _voluntary(f: _Facts):
    return _second_factor_met(f, "the user set up 2FA") if f.voluntary else None


def _acr(f: _Facts):
    if not f.acr_mfa:
        return None
    asked = " ".join(v for v in f.request.acr_values if v in MFA_ACR_VALUES)
    if f.session_mfa:
        return True, f"the client asked for MFA ({asked}); a second factor was used"
    return False, f"the client asked for MFA ({asked})"


def _grace_period(f: _Facts):
    if not (f.grace_configured and f.policy_required and not f.holds_factor and not f.session_mfa):
        return None
    if f.acr_mfa:
        return False, f"{f.grace_text}; but the client asked for MFA, which grace does not postpone"
    return f.in_grace, f.grace_text


def _allowed_factors(f: _Facts):
    if f.allowed is None:
        return None
    listed = ", ".join(f.allowed) or "(none)"
    if f.must_enrol:
        return False, f"the organization allows only {listed}; the user has none of them set up"
    if f.must_switch:
        return False, (f"the organization allows only {listed}; the user holds none of them: after one of "
                       "their own factors, they must set up an allowed one")
    return True, f"the organization allows only {listed}"


CHECKS: tuple[Check, ...] = (
    Check("no_session", "there is no authenticated session to use", LOGIN_REQUIRED, _no_session),
    Check("max_age", "the session is older than the request's max_age", LOGIN_REQUIRED, _max_age),
    Check("user_exempt", "an admin waived 2FA for this user (optionally until a date)",
          INTERACTION_REQUIRED, _user_exempt),
    Check("org_requires_2fa", "the organization requires 2FA for everyone who follows it",
          INTERACTION_REQUIRED, _org_requires),
    Check("user_requires_2fa", "2FA is required for this user (or an exemption ended)",
          INTERACTION_REQUIRED, _user_requires),
    Check("second_factor_set_up", "the user set up 2FA voluntarily, so the login asks for it",
          INTERACTION_REQUIRED, _voluntary),
    Check("acr_values_request_mfa", "the client's acr_values ask for multi-factor authentication",
          UNMET_AUTHN, _acr),
    Check("grace_period", "a newly required user may postpone enrolment for some days or logins",
          INTERACTION_REQUIRED, _grace_period),
    Check("allowed_factors", "the organization accepts only some factor types",
          INTERACTION_REQUIRED, _allowed_factors),
)
CHECKS_BY_NAME = {check.name: check for check in CHECKS}


def decide(user, org, *, request: RequestFacts, session: SessionFacts | None, now: datetime,
           factors: Iterable[str] | None = None) -> Decision:
    """Evaluate every check in order; see the module docstring for the rules and the inputs."""
    facts = _facts(user, org, request, session, now, factors)
    results = []
    for check in CHECKS:
        outcome = check.fn(facts)
        if outcome is not None:
            results.append(CheckResult(check.name, outcome[0], outcome[1]))
    return Decision(
        second_factor_required=facts.second_factor_required,
        must_enrol=facts.must_enrol,
        may_postpone=facts.may_postpone,
        allowed_factors=facts.allowed,
        unmet=tuple(r.name for r in results if not r.met),
        must_switch=facts.must_switch,
        reasons=tuple(results),
    )


# ------------------------------------------------------------------------------------------------
# Other paths: removing a factor, refreshing a token
# ------------------------------------------------------------------------------------------------

def can_remove_factor(user, org, remaining_second_factors: int, today: date) -> tuple[bool, str]:
    """May the user remove a second factor, leaving ``remaining_second_factors`` of them?

    Required users cannot switch 2FA off: they keep at least one. Everyone else may.
    """
    if remaining_second_factors >= 1:
        return True, "other second factors remain"
    if is_required(user, org, today):
        return False, "2FA is required for this account: the last second factor cannot be removed"
    return True, "2FA is not required for this account"


def refresh_allowed(user, org, token_amr: Iterable[str] | None, now: datetime) -> bool:
    """May a refresh grant issue new tokens? (The refresh grant answers invalid_grant when not.)

    Yes if the user is not required to use 2FA today, or if the login that created the
    token family used a second factor (its recorded ``amr``), or if the user may still
    postpone enrolment, for a grace counted in days (a required user without a factor, in
    grace: the login that gave the token was let through the same way, and a token failing at
    its first refresh would only spend a grace login on signing in again). Otherwise, a user who became required after
    signing in with a password alone must sign in again.

    ``user`` needs what `decide` reads of it; ``org`` its requirement and grace settings.
    """
    today = now.date()
    if not is_required(user, org, today) or has_second_factor(token_amr):
        return True
    if user.second_factor_count:  # holds a factor: the login asks for it, never postpones it
        return False
    if not org.grace_days:
        # Grace counted in logins alone: refreshes are no logins, and a token family would keep
        # a user postponing for ever; its next login spends one of them instead.
        return False
    return _grace(user, org, now)[1]
