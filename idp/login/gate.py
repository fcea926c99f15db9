"""Where the pipeline asks policy and the factor registry what a login still needs.

Policy decides (`idp.policy.decide`), plugins verify, the pipeline drives: this module
is the pipeline's one place that turns a `Decision` plus the steps already done into
the next state.
"""
from __future__ import annotations

from flask import current_app

from idp.db import db, utcnow
from idp.factors.registry import current_registry
from idp.factors.types import FactorKind, UserRef
from idp.login.transaction import State
from idp.models import User
from idp.policy import decide as policy


def user_ref(user: User) -> UserRef:
    return UserRef(id=user.id, org_id=user.org_id, username=user.email, display_name=user.name or user.email,
                   email=user.email, locale=user.locale)


def request_facts(params: dict) -> "policy.RequestFacts":
    max_age = params.get("max_age")
    return policy.RequestFacts(
        acr_values=tuple((params.get("acr_values") or "").split()),
        max_age=int(max_age) if max_age and str(max_age).isdigit() else None,
        prompt=tuple((params.get("prompt") or "").split()),
        client_id=params.get("client_id"),
    )


def decision_for(user: User, params: dict) -> "policy.Decision":
    return policy.decide(user, user.org, request=request_facts(params), session=None, now=utcnow())


def allowed_factors(user: User, decision, kind: FactorKind = FactorKind.SECOND_FACTOR) -> list:
    """Installed factors of `kind` that the organization allows for this user."""
    factors = current_registry().all(kind=kind)
    if decision.allowed_factors is not None and kind == FactorKind.SECOND_FACTOR:
        factors = [f for f in factors if f.name in decision.allowed_factors]
    return factors


def configured_factors(user: User, decision, kind: FactorKind = FactorKind.SECOND_FACTOR) -> list:
    ref = user_ref(user)
    return [f for f in allowed_factors(user, decision, kind) if f.is_configured_for(ref)]


def second_factor_done(steps_done: list[dict]) -> bool:
    return any(step.get("kind") in (FactorKind.SECOND_FACTOR.value, FactorKind.RECOVERY.value)
               for step in steps_done)


def pending_second_factor(user: User, params: dict, steps_done: list[dict]) -> State | None:
    """ENROL or SECOND_FACTOR while the login still owes a second factor, else None."""
    if second_factor_done(steps_done):
        return None
    decision = decision_for(user, params)
    if decision.must_enrol:
        return State.ENROL
    if not decision.second_factor_required:
        return None
    if configured_factors(user, decision) or configured_factors(user, decision, FactorKind.RECOVERY):
        return State.SECOND_FACTOR
    return State.ENROL


def second_factor_missing_from_session(user: User, sso) -> bool:
    """A session from before 2FA became required for this user cannot be reused without one."""
    if "mfa" in (sso.amr or []):
        return False
    decision = policy.decide(user, user.org, request=policy.RequestFacts(), session=None, now=utcnow())
    return decision.second_factor_required or decision.must_enrol


def record_login(user: User, outcome) -> None:
    """Bookkeeping the policy's grace period counts on."""
    user.last_login_at = utcnow()
    if user.required_since is not None and "mfa" not in outcome.amr:
        user.logins_since_required = (user.logins_since_required or 0) + 1
    db.session.add(user)


def settings():
    return current_app.extensions["idp.settings"]
