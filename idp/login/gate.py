"""Where the pipeline asks policy and the factor registry what a login still needs.

Policy decides (`idp.policy.decide`), plugins verify, the pipeline drives: this module
is the pipeline's one place that turns a `Decision` plus the steps already done into
the next state.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

from sqlalchemy import bindparam, null, select, update

from idp.factors.contract import Factor
from idp.factors.registry import current_registry
from idp.factors.types import FactorKind, UserRef
from idp.login.transaction import State
from idp.login.user import LoginUser, UserLike, note_held_enabled
from idp.models import Credential, User
from idp.policy import decide as policy

log = logging.getLogger(__name__)


def user_ref(user: UserLike) -> UserRef:
    return UserRef(id=user.id, org_id=user.org_id, username=user.email, display_name=user.name or user.email,
                   email=user.email, locale=user.locale)


def max_age_of(params: dict) -> int | None:
    """The request's max_age in seconds; None when absent or not ASCII digits (`str.isdigit` also
    accepts digits `int()` refuses, such as superscripts: /authorize refuses those requests)."""
    raw = params.get("max_age")
    return int(raw) if isinstance(raw, str) and raw.isascii() and raw.isdigit() else None


def request_facts(params: dict) -> policy.RequestFacts:
    return policy.RequestFacts(
        acr_values=tuple((params.get("acr_values") or "").split()),
        max_age=max_age_of(params),
        prompt=tuple((params.get("prompt") or "").split()),
        client_id=params.get("client_id"),
    )


def _held(user: UserLike) -> set[str]:
    """Factors the user holds a live credential of (the credential store reads the user's
    credentials once per request, and again after any change to them)."""
    return current_registry().store.factors_held(user.id)


def _usable(user: UserLike, factors) -> list:
    """The factors among `factors` the user can use now: held, then the plugin's own check
    (skipped for plugins that keep the contract's default, which holding already answers)."""
    held = _held(user)
    ref = user_ref(user)
    return [f for f in factors
            if f.name in held and (type(f).is_configured_for is Factor.is_configured_for or _configured(f, ref))]


def _configured(factor, ref: UserRef) -> bool:
    """The plugin's `is_configured_for`; a plugin that raises (a bug, a service it asks that is
    down) is not usable now, logged. It was a 500 on the password's POST and every page after
    it, for every user holding that factor, whatever else they held. Still held, it still
    counts as the user's second factor (`_held_factor_names`): the login asks for another."""
    try:
        return bool(factor.is_configured_for(ref))
    except Exception:
        log.exception("factor %r failed in is_configured_for()", factor.name)
        return False


def _held_factor_names(user: UserLike) -> list[str]:
    """Second factors the user holds a credential of, usable now or not (policy filters by what
    the org allows).

    Held, not usable: a factor the user set up but cannot use at the moment (push suspended by
    a fraud report) still means the user has 2FA. Counting it as none would let whoever
    triggered the report sign in with the password alone, or be asked to enrol a factor of
    their own; instead the login asks for a second factor and offers what is usable (recovery
    included), or says that none is available.
    """
    if not user.second_factor_count:  # kept by the credential store: no query for password-only users
        return []
    held = _held(user)
    return [f.name for f in current_registry().all(kind=FactorKind.SECOND_FACTOR) if f.name in held]


def _utc(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, timezone.utc).replace(tzinfo=None)


def decision_for(user: UserLike, params: dict, amr: tuple[str, ...] = (), auth_time: int | None = None):
    """The policy's decision for this user and request, given what has been proven so far (`amr`).

    Decided anew by each request, from the user's and organization's rows as that request read
    them: an administrator's change of policy (the organization's required or accepted factors,
    the user's setting) applies to a login in progress from its next request on. Not kept in the
    login's row (its `decision` column): a "not required", or a factor accepted, that an
    administrator has withdrawn since would let the login through on it. Within one request the
    same question is answered once (`_decided_in_request`): a wrong code's POST asks it to check
    the factor posted and again to show the page."""
    from idp.db import utcnow

    factors = _held_factor_names(user)
    if amr or not isinstance(user, LoginUser):  # (an ORM user is mutable: no memo of it)
        now = utcnow()
        session = policy.SessionFacts(auth_time=_utc(auth_time) if auth_time else now, amr=amr) if amr else None
        return policy.decide(user, user.org, request=request_facts(params), session=session, now=now,
                             factors=factors)
    return _decided_in_request(user, params, factors)


def _decided_in_request(user: LoginUser, params: dict, factors: list[str]):
    """`decision_for` without a session's facts, decided once per request for the same inputs: the
    same (frozen) user row, the same parameters and the same factors held (a check that suspended
    a credential, a WebAuthn key suspected cloned, changes those, and so the decision)."""
    from flask import g, has_app_context

    from idp.db import utcnow

    memo = g.get("_idp_decision") if has_app_context() else None
    if memo is not None and memo[0] is user and memo[1] == params and memo[2] == factors:
        return memo[3]
    decision = policy.decide(user, user.org, request=request_facts(params), session=None, now=utcnow(),
                             factors=factors)
    if has_app_context():
        g._idp_decision = (user, dict(params), list(factors), decision)
    return decision


def allowed_factors(user: UserLike, decision, kind: FactorKind = FactorKind.SECOND_FACTOR) -> list:
    """Installed factors of `kind` that the organization allows for this user (what may be enrolled)."""
    factors = current_registry().all(kind=kind)
    if decision.allowed_factors is not None and kind == FactorKind.SECOND_FACTOR:
        factors = [f for f in factors if f.name in decision.allowed_factors]
    return factors


def _askable_factors(user: UserLike, decision, kind: FactorKind) -> list:
    """Installed factors of `kind` a challenge may ask for: the allowed ones, or, for a user who
    holds none of those (`must_switch`), any second factor: the one proof the user has before
    enrolling an allowed one."""
    if decision.must_switch:
        return current_registry().all(kind=kind)
    return allowed_factors(user, decision, kind)


def configured_factors(user: UserLike, decision, kind: FactorKind = FactorKind.SECOND_FACTOR) -> list:
    """Factors of `kind` the login may ask this user for and the user can use now."""
    return _usable(user, _askable_factors(user, decision, kind))


def usable_factor(user: UserLike, decision, name: str):
    """The factor `name` if the login may ask for it and the user can use it now, else None
    (what `configured_factors` says of that one factor, asking no other plugin)."""
    for kind in (FactorKind.SECOND_FACTOR, FactorKind.RECOVERY):
        candidates = [f for f in _askable_factors(user, decision, kind) if f.name == name]
        if candidates:
            usable = _usable(user, candidates)
            return usable[0] if usable else None
    return None


def second_factor_done(steps_done: list[dict]) -> bool:
    return any(step.get("kind") in (FactorKind.SECOND_FACTOR.value, FactorKind.RECOVERY.value)
               for step in steps_done)


def recovered_only(steps_done: list[dict]) -> bool:
    """A recovery method proven, and no second factor (verified or enrolled) yet."""
    kinds = {step.get("kind") for step in steps_done}
    return FactorKind.RECOVERY.value in kinds and FactorKind.SECOND_FACTOR.value not in kinds


def postponed(steps_done: list[dict]) -> bool:
    return any(step.get("method") == "postponed_enrolment" for step in steps_done)


#: A login's parameter (never a client's: idp.login.snapshot keeps only known ones) marking a
#: re-authentication for the provider's own pages (pipeline.start_internal): a held factor
#: proven is all it asks, never an enrolment or a switch to a kind the organization accepts.
REAUTHENTICATION = "_reauthentication"


def pending_second_factor(user: UserLike, params: dict, steps_done: list[dict]) -> State | None:
    """ENROL or SECOND_FACTOR while the login still owes a second factor, else None."""
    if postponed(steps_done):
        return None
    if second_factor_done(steps_done) and params.get(REAUTHENTICATION):
        return None
    if second_factor_done(steps_done):
        # One of the user's factors was proven. A user who holds no second factor and proved a
        # recovery method (below) enrols one before the login ends (must_enrol); so does one
        # whose kinds the organization no longer accepts (must_switch).
        recovery_alone = recovered_only(steps_done)
        if user.org.allowed_factors is None and not recovery_alone:  # (the user's row: no decision, no query)
            return None
        decision = decision_for(user, params)
        return State.ENROL if decision.must_switch or (recovery_alone and decision.must_enrol) else None
    decision = decision_for(user, params)
    if decision.must_enrol or decision.may_postpone:
        # A user left with no second factor (an admin's reset after a lost phone) but a recovery
        # method (an admin's recovery QR code) proves it before enrolling a new factor
        # (docs/recovery.md 1.2): not an enrolment on the strength of the password alone, nor a
        # "set up later" (grace, which such a reset withdraws anyway: policy.settings.withdraw_grace).
        # The enrolment follows whichever recovery it was (above).
        return State.SECOND_FACTOR if configured_factors(user, decision, FactorKind.RECOVERY) else State.ENROL
    if not decision.second_factor_required:
        return None
    # The user holds a second factor (else must_enrol). When none is usable now (push suspended by
    # a fraud report), the step says so, or offers recovery: never an enrolment, which would let
    # whoever knows the password add a factor of their own.
    return State.SECOND_FACTOR


def may_postpone(user: UserLike, params: dict, decision=None, steps_done: list[dict] = ()) -> bool:
    """May this login's enrolment step offer "Set up later"? Not after a recovery method proven in
    it (`steps_done`): a user in a grace period who holds an admin's recovery QR code is asked for
    it first, and the recovery ends with a new factor (docs/recovery.md 1.2), not with the grace
    login it would otherwise spend."""
    decision = decision or decision_for(user, params)
    return decision.may_postpone and not decision.must_enrol and not recovered_only(steps_done)


def session_shortfall(user: UserLike, params: dict, sso) -> str | None:
    """Why this SSO session cannot answer the request as it is (a prompt=none error), or None.

    A session that proved a second factor of a kind the organization no longer accepts
    (`allowed_factors` narrowed since) answers no request that asks for one: a login asks for
    it again and has an accepted one set up (`must_switch`), as a login without a session would.
    """
    decision = decision_for(user, params, amr=tuple(sso.amr or ()), auth_time=sso.auth_time)
    error = decision.prompt_none_error()
    if (error is None and decision.allowed_factors is not None and decision.second_factor_required
            and not proved_an_allowed_factor(user.id, sso.credential_ids, decision.allowed_factors)):
        return "interaction_required"
    return error


def proved_factor_withdrawn(user_id: int, credential_ids, allowed) -> bool:
    """Whether a token family's login proved none of the second factors its organization accepts
    now (`allowed`, narrowed since the login): the refresh grant refuses such a family, and
    introspection calls its refresh token inactive, by this one rule (asked only where 2FA is
    required of the user). A family stored before its login's credentials were recorded has none
    to judge: not withdrawn."""
    return allowed is not None and bool(credential_ids) and not proved_an_allowed_factor(user_id, credential_ids,
                                                                                          allowed)


def proved_an_allowed_factor(user_id: int, credential_ids, allowed) -> bool:
    """Did a login of the user's that proved these credentials (a session's, a token family's)
    prove one of the `allowed` factors? Asked only of an organization that restricts them: one
    indexed read of the user's few credentials, prebuilt, in the request's transaction when it
    has one and outside any otherwise (the refresh grant's writes go alone)."""
    from idp.db import db

    ids = {int(i) for i in (credential_ids or ()) if isinstance(i, int)}
    if not ids:
        return False
    rows = db.read_all(_FACTORS_OF, {"user_id": user_id})
    proved = {row.factor for row in rows if row.id in ids}
    if not proved.isdisjoint(allowed):
        return True
    # A recovery method (a recovery code, an admin's recovery QR code) is of no kind the
    # organization lists: it stands in for the user's second factors. The login takes it from a
    # user who holds one of an allowed kind (else it has them switch, `must_switch`, and the
    # login then proved the new one), so it counts while the user still holds one.
    recovery = {factor.name for factor in current_registry().all(kind=FactorKind.RECOVERY)}
    return (not proved.isdisjoint(recovery)
            and any(row.factor in allowed and row.revoked_at is None for row in rows))


_FACTORS_OF = (select(Credential.__table__.c.id, Credential.__table__.c.factor, Credential.__table__.c.revoked_at)
               .where(Credential.__table__.c.user_id == bindparam("user_id")))
_STAMP_LOGIN = (update(User.__table__).where(User.__table__.c.id == bindparam("user_id"))
                .values(last_login_at=bindparam("at")))
_STAMP_SECOND_FACTOR_LOGIN = (update(User.__table__).where(User.__table__.c.id == bindparam("user_id"))
                              .values(last_login_at=bindparam("at"), password_reset_at=null()))


# The same stamps as the login's hold of the user's row (`record_login_holding`): an UPDATE
# locks the row as `SELECT ... FOR NO KEY UPDATE` does (no key column changes), and reads the
# row's newest version when it had to wait for it.
_HOLDING = User.__table__.c.disabled.is_(False)
# They return the user's sign-out stamp as held (idp.login.user.signed_out_since_password).
_HELD_COLUMNS = (User.__table__.c.id, User.__table__.c.tokens_valid_after)
_STAMP_LOGIN_HOLDING = _STAMP_LOGIN.where(_HOLDING).returning(*_HELD_COLUMNS)
_STAMP_SECOND_FACTOR_LOGIN_HOLDING = _STAMP_SECOND_FACTOR_LOGIN.where(_HOLDING).returning(*_HELD_COLUMNS)
_STAMPED = "idp_login_stamped"


def record_login(user: UserLike, outcome) -> None:
    """users.last_login_at, as one prebuilt UPDATE; a login that proved more than the password
    also ends what a reset link's password could not do alone (User.password_reset_at). Nothing
    when this transaction's hold of the user already wrote them (`record_login_holding`)."""
    from idp.db import db, utcnow

    if db.noted(_STAMPED) == user.id:
        return
    statement = _STAMP_SECOND_FACTOR_LOGIN if "mfa" in outcome.amr else _STAMP_LOGIN
    db.write_later(statement, {"user_id": user.id, "at": utcnow()})


def record_login_holding(user_id: int, amr) -> bool:
    """`record_login` (for a login proving `amr`) as the login's hold of the user's row
    (idp.login.user.hold_for_sign_in): one statement instead of two. False, writing nothing,
    when the user is disabled (or gone). Only for a login whose transaction, once the user is
    held, either signs the user in or rolls back (idp.login.pipeline.finish says which)."""
    from idp.db import db, utcnow

    statement = _STAMP_SECOND_FACTOR_LOGIN_HOLDING if "mfa" in amr else _STAMP_LOGIN_HOLDING
    held = db.run(statement, {"user_id": user_id, "at": utcnow()}).first()
    if held is None:
        return False
    db.note(_STAMPED, user_id)
    note_held_enabled(user_id, signed_out_stamp=held.tokens_valid_after)
    return True
