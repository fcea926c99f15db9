"""What the second-factor and enrolment steps share: the user, the factor context, the stored plugin state."""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import datetime
from typing import Any

from flask import current_app, request
from flask_babel import gettext as _

from idp.db import db
from idp.factors import challenges
from idp.factors.contract import amr_problem
from idp.factors.registry import current_registry
from idp.factors.sealed import open_view, seal_view
from idp.factors.types import Denied, Enrolled, FactorKind, Pending, Rejected, Step, Verified
from idp.login import gate, transaction
from idp.login.steps.base import StepContext
from idp.login.user import LoginUser
from idp.security.guess_keys import address_key

# Form fields the pipeline owns; everything else posted goes to the plugin as its response.
PIPELINE_FIELDS = {"csrf_token", "version", "submit"}
log = logging.getLogger(__name__)


class FactorUnavailable(Exception):
    """A plugin failed: it raised (an operator problem it reports, a FactorError such as a
    gateway that is down or a key gone from the ring, or a bug), or it answered outside the
    contract (not one of the call's outcomes; `amr` values no ID token may carry). Logged once
    where it happened."""


def call_plugin(factor, method: str, *args: Any, rollback: bool = True) -> Any:
    """`factor.<method>(*args)`, with the plugin's failure turned into `FactorUnavailable` and
    what it wrote rolled back (a code it spent stays unspent: `gates_commit_with_step`).

    A plugin is someone else's code: its failure must cost the user that one method, not the
    login. Let through, it was a 500 on every load of the page that begins it, and the page
    that offers the user's other methods (and recovery) was never shown again. `rollback=False`
    for a caller whose transaction holds writes of its own (a challenge begun quietly, which
    by contract writes nothing)."""
    try:
        outcome = getattr(factor, method)(*args)
    except Exception as exc:
        log.exception("factor %r failed in %s()", factor.name, method)
        if rollback:
            db.session.rollback()
        raise FactorUnavailable(factor.name) from exc
    problem = _outcome_problem(method, outcome)
    if problem:
        log.error("factor %r answered %s() outside the contract: %s", factor.name, method, problem)
        if rollback:
            db.session.rollback()
        raise FactorUnavailable(factor.name)
    return outcome


# What each call may answer (contract.py); anything else (a bare True, None) is the plugin's failure.
_OUTCOMES = {"begin_challenge": (Step,), "begin_enrolment": (Step,), "finish_enrolment": (Enrolled, Rejected),
             "verify": (Verified, Rejected, Pending, Denied), "poll": (Verified, Rejected, Pending, Denied),
             "wait": (Verified, Rejected, Pending, Denied)}


def _outcome_problem(method: str, outcome: Any) -> str | None:
    expected = _OUTCOMES.get(method)
    if expected is not None and not isinstance(outcome, expected):
        return f"{outcome!r} is not one of {', '.join(kind.__name__ for kind in expected)}"
    # What a login records goes into its ID token: a proof's amr (an enrolment's, when it gives one).
    if isinstance(outcome, Verified) or (isinstance(outcome, Enrolled) and outcome.amr is not None):
        return amr_problem(outcome.amr)
    return None


def unavailable_message(factor) -> str:
    return _("%(method)s cannot be used at the moment. Use another method, or try again later.",
             method=str(factor.label))


def user_of(ctx: StepContext) -> LoginUser:
    return ctx.transaction_user()


def attempt_context(ctx: StepContext, factor):
    return current_registry().context(factor, transaction_id=ctx.row.id, client_name=ctx.client_name,
                                      remote_addr=request.remote_addr, user_agent=request.user_agent.string)


def plugin_response() -> dict:
    return {key: value for key, value in request.form.items() if key not in PIPELINE_FIELDS}


def stored(ctx: StepContext) -> tuple[str | None, dict, dict]:
    """(factor name, plugin state, view) kept in the transaction by the last begin_* call."""
    data = ctx.row.factor_state or {}
    view = data.get("view") or {}
    if "sealed_view" in data:
        view = open_view(data["sealed_view"], _view_aad(ctx))
        if view is None:  # sealed with an encryption key since dropped: as if none had begun
            return None, {}, {}
    return ctx.row.factor_name, data.get("state") or {}, view


def step_mark(name: str | None, state: dict) -> str:
    """A short mark of the challenge a page shows (its factor and the plugin's state kept for it),
    carried in the page's poll URL: the poll answers "restart" once the login holds another one
    (another tab of the login replaced it), rather than follow the new one while the page still
    shows the old one's number. Keyed with the app's secret: a plugin's state may hold what the
    page must not learn, even hashed (a code's digest, which a plain hash would let one guess)."""
    secret = current_app.secret_key
    secret = secret.encode() if isinstance(secret, str) else secret
    shown = json.dumps([name, state], sort_keys=True, separators=(",", ":"), default=str)
    return hmac.new(secret, b"idp.login step|" + shown.encode(), hashlib.sha256).hexdigest()[:16]


def being_begun(row) -> bool:
    """A challenge (an enrolment) is being begun (the factor named, its step not kept yet): the
    login's step claimed by `second_factor._begin` (`enrol._begin`) until the plugin returns."""
    return being_begun_state(row.factor_name, row.factor_state)


def being_begun_state(factor_name: str | None, factor_state: dict | None) -> bool:
    """`being_begun`, of a step as it was read (the one a failed begin puts back)."""
    return factor_name is not None and factor_state is None


# The step's key for when an enrolment's step was kept (seconds since the epoch): a choice of
# the same method just after is a second copy of the click that began it (enrol.choose).
BEGUN_AT = "begun_at"


# How long a page waits for another request of its login to keep the step it is beginning
# (second_factor._begin, enrol._begin: push's begin sends its request in between, a few
# milliseconds; its relay is called from a thread of its own). Longer, that request failed on
# the way: this page begins one itself.
BEGUN_ELSEWHERE_WAIT = 3.0


def kept_step(ctx: StepContext) -> tuple[str | None, dict, dict]:
    """`stored(ctx)`, once the challenge another request of this login is beginning (a double
    click, the loser of `_begin`'s claim, a reload) is kept: the page shows that one rather than
    begin another, which would cancel it. No factor (None) when none was kept in time."""
    deadline = time.monotonic() + BEGUN_ELSEWHERE_WAIT
    while being_begun(ctx.row) and time.monotonic() < deadline:
        db.session.rollback()  # (a page's GET: nothing written; SQLite's write lock not held meanwhile)
        time.sleep(0.05)
        transaction.read_step_again(ctx.row)
    if being_begun(ctx.row):
        return None, {}, {}
    return stored(ctx)


def put_back_step(ctx: StepContext, factor_name: str | None, factor_state: dict | None) -> None:
    """After a plugin failed to begin the step a request claimed: the login's step as it was
    before the claim (version-guarded: read again when another request moved it), but a
    half-started one (a claim left by a worker that died before its keep) as nothing begun: put
    back, every later load of the page would wait for its keep again (`kept_step`)."""
    if being_begun_state(factor_name, factor_state):
        factor_name = factor_state = None
    if not transaction.update_in_place(ctx.row, ctx.row.version, factor_name=factor_name, factor_state=factor_state):
        transaction.read_step_again(ctx.row)


def remember_step(ctx: StepContext, name: str, step, *, sealed: bool = False) -> bool:
    """Keep the step a plugin began. `sealed`: an enrolment's view holds what the user is
    about to register (a TOTP seed in clear, its QR code, an activation URI): encrypted at rest
    like the secrets themselves, since an abandoned login leaves its row until maintenance."""
    if sealed:  # idp.factors.sealed
        factor_state = {"state": step.state, "sealed_view": seal_view(step.view, _view_aad(ctx)),
                        BEGUN_AT: int(time.time())}
    else:
        factor_state = {"state": step.state, "view": step.view}
    return transaction.update_in_place(ctx.row, ctx.row.version, factor_name=name, factor_state=factor_state)


def begin_step(ctx: StepContext, factor, method: str, user):
    """`call_plugin(factor, method, ...)` for a begin (`begin_challenge`, `begin_enrolment`): the
    step it returns, and the ids of the challenges it created (`challenges.created_during`), for
    `abandon_begun` should the login not keep that step."""
    with challenges.created_during() as created:
        step = call_plugin(factor, method, gate.user_ref(user), attempt_context(ctx, factor))
    return step, created


def abandon_begun(ctx: StepContext, created: list[str]) -> None:
    """After `remember_step` found the login moved on (a begin slower than another request's wait
    for it, `BEGUN_ELSEWHERE_WAIT`, which then cleared the claim or began a step of its own; a
    submission, a cancel): what the begin created (a push request sent, an activation code issued)
    is attached to no step of the login, yet live: a phone listed the request, the code registered
    a phone. It is expired, and the login read again for the page (which shows what it holds)."""
    if created:
        challenges.expire_created(created)
        db.session.commit()
    transaction.read_step_again(ctx.row)


def lost_begun_step(ctx: StepContext, state) -> bool:
    """After a begin (`_begin` True) with no step of a usable method kept: the login, read again,
    holds no step at all at `state` (another request cleared it while the begin ran, see
    `abandon_begun`). The page is loaded again, to show what the login holds (or begin anew)."""
    return ctx.row.state == state.value and ctx.row.factor_name is None


def spend_step(ctx: StepContext, factor, version: int) -> bool:
    """After a refused answer to a factor whose challenge takes one (`one_answer_per_challenge`,
    WebAuthn): drop that challenge in the refusal's own transaction (the caller commits), so that
    a copy of the form waiting for the user's lock finds the login moved on rather than the
    challenge still there to answer. True when dropped: the caller then begins a new one for the
    page after the commit (should the plugin fail to, the page begins another method, as when
    none was stored). Only on a refusal of such a factor: TOTP's wrong code (a hot path) keeps
    its challenge and pays nothing for this."""
    return factor.one_answer_per_challenge and transaction.drop_step(ctx.row, version)


def _view_aad(ctx: StepContext) -> bytes:
    return f"enrolment-view|login|{ctx.row.id}".encode()


def step_record(factor, outcome_amr, credential_id) -> dict:
    kind = factor.kind.value if isinstance(factor.kind, FactorKind) else str(factor.kind)
    return {"method": factor.name, "factor": factor.name, "kind": kind, "amr": list(outcome_amr),
            "credential_id": credential_id, "at": int(time.time())}


def user_lockout_key(user: LoginUser) -> str:
    return f"factor:user:{user.id}"


def lockout_keys(user: LoginUser) -> list[str]:
    return [user_lockout_key(user), f"factor:ip:{address_key(request.remote_addr)}"]


def choices(ctx: StepContext, user: LoginUser) -> tuple[list, list]:
    """(second factors, recovery factors) the user can use now and the organization allows,
    the one used last first. One policy decision for both; the credential list and the gate's
    question of which factors the user holds share the store's one read of this request."""
    credentials = current_registry().store.list(gate.user_ref(user))
    decision = gate.decision_for(user, ctx.params)
    factors = gate.configured_factors(user, decision, FactorKind.SECOND_FACTOR)
    recovery = gate.configured_factors(user, decision, FactorKind.RECOVERY)
    last_used: dict[str, datetime] = {}
    for credential in credentials:
        stamp = credential.last_used_at or credential.created_at
        if stamp > last_used.get(credential.factor, datetime.min):
            last_used[credential.factor] = stamp
    newest_first = lambda f: last_used.get(f.name, datetime.min)  # noqa: E731
    return sorted(factors, key=newest_first, reverse=True), sorted(recovery, key=newest_first, reverse=True)
