"""second_factor: the user completes one of their factors (or a recovery factor).

GET begins a challenge with the factor used last (or keeps the one in progress);
POST asks the plugin to verify. Failures are limited per user and per address with
growing delays (idp.lockout); a locked user is told to wait, nothing more.
"""
from __future__ import annotations

import hmac
import logging
import math

from flask import jsonify, redirect, request, url_for
from flask_babel import gettext as _

from idp import audit, lockout
from idp.db import db, utcnow
from idp.factors.directory import suspend_push
from idp.factors.errors import SecretUnavailable
from idp.factors.registry import current_registry
from idp.factors.store import gates_commit_with_step
from idp.factors.types import Denied, FactorKind, Pending, Rejected, Verified
from idp.factors.waiting import one_wait_per
from idp.login import gate, pipeline, transaction
from idp.login.forms import CodeForm, PostedCode
from idp.login.steps import recovery_codes
from idp.login.steps.base import StepContext, wait_message
from idp.login.steps.factor_step import (FactorUnavailable, abandon_begun, attempt_context, begin_step, being_begun,
                                         being_begun_state, call_plugin, choices, kept_step, lockout_keys,
                                         lost_begun_step, plugin_response, put_back_step, remember_step,
                                         spend_step, step_mark, step_record, stored, unavailable_message,
                                         user_lockout_key, user_of)
from idp.login.transaction import State

log = logging.getLogger(__name__)

# The wording of the rejection reasons any factor may give. A reason only one factor gives is
# worded by that factor (`Rejected.message`): the core knows no plugin's internals.
REJECTION_MESSAGES = {
    "invalid_code": lambda: _("That code is not right. Try again."),
    "replayed": lambda: _("That code was already used. Wait for the next one."),
    "expired": lambda: _("That request expired. Start again."),
}


def message_for(outcome: Rejected | None = None) -> str:
    """What to tell the user about a rejected response (also used by the enrolment step and the
    account page): the factor's own message when it gave one, else the wording of its reason."""
    if outcome is not None and outcome.message:
        return str(outcome.message)
    reason = outcome.reason if outcome is not None else ""
    return REJECTION_MESSAGES.get(reason, lambda: _("That did not work. Try again."))()


def _begin(ctx: StepContext, user, factor) -> bool:
    """Begin `factor`'s challenge and keep it; False when the plugin failed (logged, rolled back).

    The step is claimed first (the login's version moves, the factor named with no step yet:
    `being_begun`), then begun, then kept. Two copies of one form (a double click on "send a push instead", a page
    loaded twice) both read the login at one version: begun and then kept, each began a
    challenge, the later begin cancelled the earlier one's (a login has one push request at a
    time), and only the earlier one was kept: the login waited on a cancelled request while the
    phone listed a live one. Claimed first, the copy that loses begins nothing and goes on with
    what the other kept (`ctx.row` read again, a True; `show` waits until it is kept).

    A factor that `begins_quietly` writes nothing: its claim commits with the kept step. Any
    other's commits before the plugin is called, which may commit or roll back itself (push
    commits its request before it wakes the phones, who then find the login waiting on no other
    method and list it at once; a refused push rolls its own writes back)."""
    before = (ctx.row.version, ctx.row.factor_name, ctx.row.factor_state)
    # Named, not cleared: a phone asking meanwhile finds the login waiting on push; the page of
    # another request of this login waits for the step kept (`show`) rather than begin its own.
    if not transaction.update_in_place(ctx.row, ctx.row.version, commit=not factor.begins_quietly,
                                       factor_name=factor.name, factor_state=None):
        transaction.read_step_again(ctx.row)  # (rolled back: another request of this login moved it first)
        return True
    try:
        step, created = begin_step(ctx, factor, "begin_challenge", user)
    except FactorUnavailable:  # (rolled back) the method in progress stays
        if factor.begins_quietly:  # the claim went with the rollback, which put the step back
            ctx.row.version, ctx.row.factor_name, ctx.row.factor_state = before
            if not being_begun_state(before[1], before[2]):
                return False
        put_back_step(ctx, before[1], before[2])  # (a half-started one as nothing begun)
        return False
    if not remember_step(ctx, factor.name, step):  # the login moved on meanwhile: its request closed
        abandon_begun(ctx, created)
    return True


def _begin_first(ctx: StepContext, user, candidates: list):
    """Begin the first of `candidates` whose plugin can begin now: a method that fails (an SMS
    gateway down) must leave the user their others. Returns the first that failed, or None."""
    failed = None
    for factor in candidates:
        if _begin(ctx, user, factor):
            break
        failed = failed or factor
    return failed


def early_challenge(row, user) -> dict:
    """The challenge the page will show, begun as the login enters this step (`proceed`), when
    its factor `begins_quietly`: the factor name and state to store with that step's own write,
    so that the page's GET only reads. Empty otherwise: the GET begins it (`show`)."""
    ctx = StepContext(row, handle="")
    factors, recovery = choices(ctx, user)
    first = (factors or recovery or [None])[0]
    if first is None or not first.begins_quietly:
        return {}
    try:  # (it wrote nothing: nothing of the step being left is rolled back)
        step = call_plugin(first, "begin_challenge", gate.user_ref(user), attempt_context(ctx, first), rollback=False)
    except FactorUnavailable:
        return {}  # the page's GET begins one, or another method (`show`)
    return {"factor_name": first.name, "factor_state": {"state": step.state, "view": step.view}}


def show(ctx: StepContext, error: str | None = None, status: int = 200, *, refused_by: str | None = None):
    """The challenge page. (Its template writes its own fields and `login/step.html` the CSRF
    token: no form object is built for it.) From its stencil (`StepContext.render_from_stencil`):
    the page a wrong code shows again, and the one the password step leads to, are the same for
    every login with the same method but for the login's own values.

    `refused_by`: the method whose answer `error` refuses. Only when the page shows that method
    is its field marked invalid (the template's `refused`): a message about another one (it cannot
    begin, it was denied, it is no longer usable) is the page's, said in its alert, and the field
    of the method shown instead was not refused."""
    user = user_of(ctx)
    factors, recovery = choices(ctx, user)
    usable = {f.name: f for f in factors + recovery}
    name, state, view = kept_step(ctx)
    if name not in usable:
        if ctx.row.state != State.SECOND_FACTOR.value:  # moved on while another request began a step
            return redirect(url_for("login.step", handle=ctx.handle))
        if not factors and not recovery:
            return ctx.render("login/no_factor.html", status=403, error=error)
        failed = _begin_first(ctx, user, factors + recovery)
        name, state, view = kept_step(ctx)  # (another request's, when it claimed the step first)
        if failed is not None and error is None:  # (the page shows the next one: usable, a 200)
            error = unavailable_message(failed)
        if ctx.row.state != State.SECOND_FACTOR.value or (failed is None and name not in usable
                                                          and lost_begun_step(ctx, State.SECOND_FACTOR)):
            return redirect(url_for("login.step", handle=ctx.handle))
        if name not in usable:  # not one of them could begin
            return ctx.render("login/no_factor.html", status=503, error=error)
    factor = usable[name]
    templates = [f"factors/{name}/challenge.html", "login/challenge_generic.html"]
    alternatives = [f for f in factors if f.name != name]
    others = [f for f in recovery if f.name != name]

    refused = bool(error) and refused_by == name
    # The challenge this page shows, in its poll URL (`poll`: "restart" once the login holds another).
    mark = step_mark(name, state) if factor.supports_poll else None

    def values_for(handle: str) -> dict:
        return dict(view=view, factor=factor, alternatives=alternatives, recovery=others, refused=refused,
                    poll_url=url_for("login.poll", handle=handle, step=mark) if mark else None)

    key = {"factor": name, "view": view, "alternatives": [f.name for f in alternatives],
           "recovery": [f.name for f in others], "poll": mark or False, "refused": refused}
    return ctx.render_from_stencil(templates, status, error, key, values_for)


def choose(ctx: StepContext, name: str):
    """Switch factor: CSRF-checked POST; only factors this user holds and the org allows."""
    form = CodeForm()
    if not form.validate_on_submit():
        return redirect(url_for("login.step", handle=ctx.handle))
    if ctx.row.state == State.ENROL.value:
        from idp.login.steps import enrol

        return enrol.choose(ctx, name)
    if ctx.row.state != State.SECOND_FACTOR.value:
        return redirect(url_for("login.step", handle=ctx.handle))
    user = user_of(ctx)
    factors, recovery = choices(ctx, user)
    usable = {f.name: f for f in factors + recovery}
    if name not in usable:
        return redirect(url_for("login.step", handle=ctx.handle))
    if being_begun(ctx.row):
        # A challenge another request of this login is beginning (the first of a double click,
        # read after its claim): wait for it to be kept (`kept_step`). The one asked for: this
        # copy begins none, whose begin would cancel that one's as it is sent while that one's
        # keep then fails. None kept in time (a claim left by a worker that died): the method
        # asked for is begun, not ignored (the page would begin the one used last).
        kept, _state, _view = kept_step(ctx)
        if kept == name or ctx.row.state != State.SECOND_FACTOR.value:
            return redirect(url_for("login.step", handle=ctx.handle))
    if not _begin(ctx, user, usable[name]):
        return show(ctx, unavailable_message(usable[name]), 503)  # the method in progress stays
    return redirect(url_for("login.step", handle=ctx.handle))


def submit(ctx: StepContext):
    form = PostedCode()
    if form.posted_version() != ctx.row.version:  # a page from before the login moved on: show where it is
        return redirect(url_for("login.step", handle=ctx.handle))
    if not form.within_bounds():  # a code longer than any: the same form, a 400
        return show(ctx, message_for(), 400, refused_by=ctx.row.factor_name)
    user = user_of(ctx)
    name, state, _view = stored(ctx)
    # Only the factor in progress is checked here; the full list of choices (sorted by last
    # use, one more query) is built only when the page must be shown again.
    factor = gate.usable_factor(user, gate.decision_for(user, ctx.params), name)
    if factor is None and name:
        # The method in progress stopped being usable meanwhile: an admin's change, or the user's
        # own phone reporting this very request as fraud (which suspends push at once). Say so,
        # rather than silently showing another method.
        return show(ctx, _no_longer_usable(name), 403)
    if factor is None:
        return redirect(url_for("login.step", handle=ctx.handle))
    # One attempt per user at a time, from the lockout check to the counted failure: guesses
    # posted at once through several login transactions would otherwise all pass the check
    # (30 parallel guesses got 8 checked at a limit of 5). Released when the step commits.
    if not transaction.hold_user_at(ctx.row, form.posted_version()):
        db.session.rollback()  # this very form, posted twice: the other copy moved the login on
        return redirect(url_for("login.step", handle=ctx.handle))
    keys = lockout_keys(user)
    wait = lockout.check(keys)
    if wait:
        return show(ctx, wait_message(wait), 429, refused_by=factor.name)
    # What the check spends (a TOTP step, a recovery code) commits with the step's outcome below.
    try:
        with gates_commit_with_step():
            outcome = call_plugin(factor, "verify", gate.user_ref(user), state, plugin_response(),
                                  attempt_context(ctx, factor))
    except FactorUnavailable as exc:  # rolled back: nothing spent, nothing counted, the challenge kept
        if isinstance(exc.__cause__, SecretUnavailable):
            # The encryption key that sealed the user's secret (a TOTP seed) left
            # security.encryption_keys too early: the operator's mistake, not a guess of the user's.
            # The log says which key to put back.
            log.error("second factor %s of user %s cannot be checked: %s: put the encryption key that sealed it "
                      "back in security.encryption_keys (README, \"Rolling in a new encryption key\")",
                      factor.name, user.id, exc.__cause__)
            return show(ctx, _("This method cannot be checked at the moment. Use another method, or ask your "
                               "administrator."), 503)
        return show(ctx, unavailable_message(factor), 503)
    return _apply(ctx, user, factor, outcome, form.posted_version())


def _no_longer_usable(name: str) -> str:
    """Why the method in progress can no longer be used, as far as the core can tell: a recovery
    method (an administrator's code that expired or was revoked while the page was open, the last
    recovery code used elsewhere) is not a push suspension, and neither is a security key removed
    on the security page meanwhile (whose refusal used to speak of push)."""
    registry = current_registry()
    if name in registry and registry.get(name).kind == FactorKind.RECOVERY:
        return _("This recovery method can no longer be used to sign in: it was used, it expired or an "
                 "administrator revoked it. Use another method, or ask your administrator.")
    if name == "push":  # the one method the user's own phone can suspend, from this very login
        return _("This method can no longer be used to sign in (a request reported as not yours suspends push "
                 "approvals until an administrator looks into it). Use another method.")
    # A key or app removed (on the security page, by an admin) or suspended while the page was open.
    return _("This method can no longer be used to sign in: it was removed or suspended meanwhile. "
             "Use another method, or cancel and sign in again.")


def _apply(ctx: StepContext, user, factor, outcome, version: int):
    if isinstance(outcome, Verified):
        # The user's counter only: the address keeps its history (as at the password step), or
        # one working account of an attacker's would wipe the guesses made at other accounts.
        lockout.succeed([user_lockout_key(user)])
        event = dict(event="login.recovery_used" if factor.kind == FactorKind.RECOVERY else "login.second_factor",
                     org_id=user.org_id, actor_id=user.id, actor=user.email, subject_id=user.id,
                     details={"factor": factor.name, "credential_id": outcome.credential_id, **outcome.facts})
        steps = list(ctx.row.steps_done) + [step_record(factor, outcome.amr, outcome.credential_id)]
        if outcome.facts.get("then_enrol"):
            # A recovery that lets the user back in must end with a new factor (e.g. an admin's recovery QR).
            if transaction.advance(ctx.row, State.SECOND_FACTOR, version, State.ENROL, commit=False, steps_done=steps,
                                   factor_name=None, factor_state=None):
                audit.record_now(**event)  # (a parallel submission won instead: all of this was rolled back)
                db.session.commit()
            return pipeline.redirect_to(ctx.handle)
        if factor.kind == FactorKind.RECOVERY and "remaining" in outcome.facts:
            return _with_recovery_notice(ctx, steps, event, version, outcome.facts["remaining"])
        # A flag of the user's row, read with the login's own (LoginUser): a user who owes no
        # recovery codes, nearly everyone, costs this POST no statement for the question.
        if factor.kind == FactorKind.SECOND_FACTOR and user.recovery_codes_owed:
            return _with_owed_recovery_codes(ctx, user, steps, event, version)
        return pipeline.proceed(ctx.row, ctx.handle, user, State.SECOND_FACTOR, version, steps, events=(event,))
    if isinstance(outcome, Pending):
        return show(ctx, _("Waiting for your approval."), 202)
    if isinstance(outcome, Denied):
        audit.record("login.push_fraud_reported" if outcome.fraud else "login.second_factor_denied",
                     org_id=user.org_id, actor_id=user.id, actor=user.email, subject_id=user.id,
                     details={"factor": factor.name, "reason": outcome.reason})
        if outcome.fraud:
            suspend_push(user.id, utcnow())
        db.session.commit()
        transaction.update_in_place(ctx.row, version)  # the denied challenge's page is stale now
        _switch_away_from(ctx, user, factor)
        return show(ctx, outcome.message or _("The request was denied. Use another method."), 403)
    assert isinstance(outcome, Rejected)
    if outcome.reason == "expired":  # the page begins a fresh challenge instead of showing the stale one
        transaction.update_in_place(ctx.row, version, factor_name=None, factor_state=None)
        return show(ctx, _("That request expired. A new one has been started."), 401)
    # One transaction for the lockout counters, the audit event and whatever the check wrote that
    # must stand although it failed (a WebAuthn key suspended as a possible clone): counted even
    # when a parallel post moved the login on (no version-guarded write here), nothing rolled back.
    # The event first: on PostgreSQL its INSERT then rides with the counters' upsert (idp.deferred_writes).
    audit.record_now("login.second_factor_failed", org_id=user.org_id, actor_id=user.id, actor=user.email,
                     subject_id=user.id, details={"factor": factor.name, "reason": outcome.reason})
    locked = lockout.fail(lockout_keys(user), commit=False) if outcome.counts_as_failure else 0
    if locked:  # this failure started a lockout
        audit.record_now("login.locked_out", org_id=user.org_id, actor_id=user.id, actor=user.email,
                         subject_id=user.id, details={"step": "second_factor", "seconds": locked})
    spent = spend_step(ctx, factor, version)  # (WebAuthn: the refused assertion's challenge goes with it)
    db.session.commit()
    if spent:
        _begin(ctx, user, factor)  # the new challenge the page shows
    return show(ctx, message_for(outcome), 401, refused_by=factor.name)  # a rejection changes no credential


def _with_owed_recovery_codes(ctx: StepContext, user, steps: list[dict], event: dict, version: int):
    """A second factor proven by a user owed recovery codes (a factor set up by an operator's
    command or registered with an admin's code: idp.factors.directory.owe_recovery_codes): the set,
    shown once on the next page (as after a first enrolment), made with the step's own commit.
    The user's row is held since `hold_user_at`: a second tab waits, then finds this set."""
    codes_view = recovery_codes.issue_owed(ctx, user)
    if codes_view is None:  # held by now (the security page), or the factor disabled
        return pipeline.proceed(ctx.row, ctx.handle, user, State.SECOND_FACTOR, version, steps, events=(event,))
    event["details"]["recovery_codes_issued"] = len(codes_view.get("codes") or ())
    if not _to_recovery_codes_page(ctx, steps, event, version):
        return pipeline.redirect_to(ctx.handle)
    return recovery_codes.render_once(ctx, codes_view)


def _with_recovery_notice(ctx: StepContext, steps: list[dict], event: dict, version: int, remaining: int):
    """A recovery code accepted: how many the user has left is shown on a page of its own before
    the login goes on (the page that shows new codes, `recovery_codes.notice`), not as a message
    the next page of ours would show: for a client that asks no consent, that page could be the
    next sign-in, days later. Reloading it shows it again: it holds no secret."""
    if not _to_recovery_codes_page(ctx, steps, event, version, {recovery_codes.REMAINING: int(remaining)}):
        return pipeline.redirect_to(ctx.handle)
    return recovery_codes.notice(ctx, int(remaining))


def _to_recovery_codes_page(ctx: StepContext, steps: list[dict], event: dict, version: int,
                            factor_state: dict | None = None) -> bool:
    """Move the login from this step to the recovery-codes page with the step's event, in one
    commit; False when a parallel submission moved it first (all of this rolled back)."""
    if not transaction.advance(ctx.row, State.SECOND_FACTOR, version, State.RECOVERY_CODES, commit=False,
                               steps_done=steps, factor_name=None, factor_state=factor_state):
        return False
    audit.record_now(**event)
    db.session.commit()
    return True


def _switch_away_from(ctx: StepContext, user, denied) -> None:
    """After a denial, offer another method first (the denied one stays available as an alternative)."""
    factors, recovery = choices(ctx, user)
    others = [f for f in factors + recovery if f.name != denied.name]
    if others:
        _begin_first(ctx, user, others)
    else:
        transaction.update_in_place(ctx.row, ctx.row.version, factor_name=None, factor_state=None)


def poll(ctx: StepContext):
    """Non-blocking status of an out-of-band challenge; the page then posts its form to finish.

    `?step=`: the mark of the challenge the page shows (`step_mark`, in the URL `show` gives it).
    Once the login holds another (another tab of it began a new one, or switched method), the
    answer is "restart": the page is to be loaded again, not follow a challenge whose number it
    does not show. (Without it, a page rendered before the mark existed: the login's challenge.)"""
    if ctx.row.state != State.SECOND_FACTOR.value:
        return jsonify({"status": "moved"})
    wait = request.args.get("wait", type=float)
    shown = request.args.get("step")
    with one_wait_per(("login", ctx.row.id)) as may_wait:  # another wait for this login: a plain poll
        long_poll = bool(wait and math.isfinite(wait) and may_wait)
        if being_begun(ctx.row):  # another request of this login is beginning a challenge
            if not long_poll:
                return jsonify({"status": "pending"})
            return _poll_once_kept(ctx, wait, shown)
        return _poll_stored(ctx, wait if long_poll else None, shown)


def _poll_once_kept(ctx: StepContext, wait: float, shown: str | None):
    """A long poll that found the step claimed by another request of this login: its status once
    that request keeps its challenge (`kept_step`, as a load of the page waits). None kept in that
    time, the claim was left by a worker that died before its keep: it said "pending" for ever, and
    only a reload (which begins a method after the same wait) got the user out. The claim is
    cleared as a reload finds it (`put_back_step`: nothing begun) and the page told to load again
    ("restart": its script posts its form, as on any answer, and the page that follows begins a
    method at once)."""
    kept_step(ctx)
    if ctx.row.state != State.SECOND_FACTOR.value:
        return jsonify({"status": "moved"})
    if being_begun(ctx.row):
        put_back_step(ctx, ctx.row.factor_name, ctx.row.factor_state)
        return jsonify({"status": "restart"})
    return _poll_stored(ctx, wait, shown)


def _poll_stored(ctx: StepContext, wait: float | None, shown: str | None = None):
    """The status of the challenge kept in the login: at once, or within `wait` seconds (a long
    poll, which answers as soon as the out-of-band answer arrives); "restart" when it is not the
    one the page shows (`shown`, see `poll`)."""
    name, state, _view = stored(ctx)
    if shown is not None and not hmac.compare_digest(shown.encode(), step_mark(name, state).encode()):
        return jsonify({"status": "restart"})
    registry = current_registry()
    if name not in registry or not registry.get(name).supports_poll:
        return jsonify({"status": "none"}), 404
    factor = registry.get(name)
    user = gate.user_ref(user_of(ctx))
    try:
        if wait is not None:
            db.session.rollback()  # hold no transaction (nor SQLite's lock) while waiting
            outcome = call_plugin(factor, "wait", user, state, attempt_context(ctx, factor),
                                  min(max(wait, 0.0), 25.0))
        else:
            outcome = call_plugin(factor, "poll", user, state, attempt_context(ctx, factor))
    except FactorUnavailable:  # the page posts its form, whose answer says so
        return jsonify({"status": "unavailable"})
    status = {Verified: "approved", Denied: "denied", Rejected: "rejected"}.get(type(outcome), "pending")
    return jsonify({"status": status})
