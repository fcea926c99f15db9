"""enrol: a user who must have a second factor (or whose client asked for one) sets one up now.

Enrolment proves possession, so it counts as the login's second factor. The first
second factor also brings recovery codes, shown once on the next page.
"""
from __future__ import annotations

import time

from flask import redirect, request, url_for
from flask_babel import gettext as _

from idp import audit
from idp.db import db
from idp.factors import enrolment
from idp.factors.registry import current_registry
from idp.factors.directory import lock_user
from idp.factors.types import Enrolled
from idp.login import gate, pipeline, transaction
from idp.login import user as login_user
from idp.login.forms import CodeForm
from idp.login.steps import recovery_codes
from idp.login.steps.second_factor import message_for
from idp.login.steps.base import StepContext
from idp.login.steps.factor_step import (BEGUN_AT, FactorUnavailable, abandon_begun, attempt_context, begin_step,
                                         being_begun, call_plugin, kept_step, lost_begun_step, plugin_response,
                                         put_back_step, remember_step, step_record, stored, unavailable_message,
                                         user_of)
from idp.login.transaction import State


def set_up_meanwhile(row, user, own: int | None = None) -> bool:
    """Has a credential appeared since this login began that it did not create itself (`own`)?

    A login at its enrolment step on the password alone (no factor or recovery method proven in
    it) chose enrolment because the user held nothing it could ask for. A factor set up in
    another browser since, or an admin's recovery QR code issued since, must be proven instead:
    an enrolment on the password's strength would let whoever knows it add a factor of their own.
    (A login that proved a factor or recovery method enrols on the strength of that.)"""
    if gate.second_factor_done(row.steps_done):
        return False
    return any(credential.created_at >= row.created_at and credential.id != own
               for credential in current_registry().store.list(gate.user_ref(user)))


def login_still_enrolling(transaction_id: str, user_id: int) -> bool:
    """For a push activation shown at a login's enrolment step (idp.factors.directory
    .login_enrolment_open): that login is live, at this step, for this user, and nothing was set
    up meanwhile (`set_up_meanwhile`)."""
    found = transaction.load_by_id(transaction_id)
    return (found is not None and found.row.state == State.ENROL.value and found.row.user_id == user_id
            and found.user is not None and not set_up_meanwhile(found.row, found.user))


def enrollable(ctx: StepContext, user, decision=None) -> list:
    decision = decision or gate.decision_for(user, ctx.params)
    return [f for f in gate.allowed_factors(user, decision) if f.user_enrollable]


def show(ctx: StepContext, error: str | None = None, status: int = 200, form: CodeForm | None = None, *,
         refused_by: str | None = None):
    """The enrolment page. `refused_by`: the method whose answer `error` refuses, whose field is
    marked invalid only on its own page (as on the challenge page: second_factor.show)."""
    user = user_of(ctx)
    decision = gate.decision_for(user, ctx.params)  # one decision for the whole page
    choices = enrollable(ctx, user, decision)
    postpone = gate.may_postpone(user, ctx.params, decision, ctx.row.steps_done)
    # After a factor (or recovery) of a user whose factors the organization no longer accepts
    # (must_switch, gate.pending_second_factor; not a recovery that asks for a new factor in
    # any case, an admin's recovery QR code): the page says why it asks for another.
    switching = gate.second_factor_done(ctx.row.steps_done) and decision.must_switch
    if not choices:
        return ctx.render("login/no_factor.html", status=403)
    name, _state, view = kept_step(ctx)  # (being begun by another request of this login: once kept)
    if ctx.row.state != State.ENROL.value:  # moved on meanwhile
        return redirect(url_for("login.step", handle=ctx.handle))
    if being_begun(ctx.row) and not transaction.update_in_place(ctx.row, ctx.row.version, factor_name=None,
                                                                factor_state=None):
        # None kept in time (a claim left by a worker that died): cleared, or every later load of
        # the choice of methods would wait for its keep again.
        transaction.read_step_again(ctx.row)
    usable = {f.name: f for f in choices}
    if name not in usable:
        begun = len(choices) == 1 and _begin(ctx, user, choices[0])
        if len(choices) == 1 and not begun and error is None:
            error, status = unavailable_message(choices[0]), 503
        name, _state, view = kept_step(ctx)
        if ctx.row.state != State.ENROL.value or (begun and name not in usable
                                                  and lost_begun_step(ctx, State.ENROL)):
            return redirect(url_for("login.step", handle=ctx.handle))  # (moved on while it was begun)
        if name not in usable:  # several to choose from, or the only one could not begin
            return ctx.render("login/enrol_choose.html", status=status, form=form or CodeForm(formdata=None),
                              choices=choices, error=error, may_postpone=postpone, switching=switching)
    factor = usable[name]
    templates = [f"factors/{name}/enrol.html", "login/enrol_generic.html"]
    return ctx.render(templates, status=status, form=form or CodeForm(formdata=None), view=view, factor=factor,
                      error=error, refused=bool(error) and refused_by == name,
                      alternatives=[f for f in choices if f.name != name], enrolling=True,
                      may_postpone=postpone, switching=switching)


def _begin(ctx: StepContext, user, factor) -> bool:
    """Begin `factor`'s enrolment and keep it; False when the plugin failed (logged, rolled back).

    Claimed first, as the second-factor step claims a challenge (second_factor._begin): the
    login's version moves, the factor named with no step yet (`being_begun`), committed before the
    plugin (which may commit itself: push's activation). Two copies of one click read the login
    at one version: each began an enrolment, a second activation code issued (and audited) and
    left live, shown nowhere. The copy that loses the claim begins nothing and goes on with what
    the other keeps (`ctx.row` read again, a True; the page waits until it is kept: `kept_step`)."""
    before = (ctx.row.factor_name, ctx.row.factor_state)
    if not transaction.update_in_place(ctx.row, ctx.row.version, factor_name=factor.name, factor_state=None):
        transaction.read_step_again(ctx.row)  # (rolled back: another request of this login moved it first)
        return True
    try:
        step, created = begin_step(ctx, factor, "begin_enrolment", user)
    except FactorUnavailable:  # (rolled back) the enrolment in progress stays, a half-started one does not
        put_back_step(ctx, *before)
        return False
    if not remember_step(ctx, factor.name, step, sealed=True):  # the login moved on: its code expired
        abandon_begun(ctx, created)
    return True


# A choice of the method whose enrolment was begun this recently is a second copy of the click
# that began it (a double click, the form posted again at once): it shows that one. Later, it is
# the user asking again (an activation code gone stale on a page left open), and begins anew.
ONE_CLICK_SECONDS = 10


def choose(ctx: StepContext, name: str):
    user = user_of(ctx)
    usable = {f.name: f for f in enrollable(ctx, user)}
    if name not in usable:
        return redirect(url_for("login.step", handle=ctx.handle))
    # Being begun by another copy of this click (read after its claim): wait for it to be kept.
    kept, _state, _view = kept_step(ctx)
    if ctx.row.state != State.ENROL.value:
        return redirect(url_for("login.step", handle=ctx.handle))
    if kept == name and time.time() - (ctx.row.factor_state or {}).get(BEGUN_AT, 0) < ONE_CLICK_SECONDS:
        return redirect(url_for("login.step", handle=ctx.handle))
    if not _begin(ctx, user, usable[name]):
        return show(ctx, unavailable_message(usable[name]), 503)
    return redirect(url_for("login.step", handle=ctx.handle))


def submit(ctx: StepContext):
    form = CodeForm()
    if form.posted_version() != ctx.row.version:  # a page from before the login moved on: show where it is
        return redirect(url_for("login.step", handle=ctx.handle))
    if not form.validate_on_submit():  # a code longer than any: the same form, a 400
        return show(ctx, message_for(), 400, refused_by=ctx.row.factor_name)
    user = user_of(ctx)
    if request.form.get("postpone"):
        return _postpone(ctx, user, form.posted_version())
    name, state, _view = stored(ctx)
    usable = {f.name: f for f in enrollable(ctx, user)}
    if name not in usable or being_begun(ctx.row):  # (no page shows a step not kept yet)
        return redirect(url_for("login.step", handle=ctx.handle))
    factor = usable[name]
    # The user's row first (the order a sign-out everywhere locks in; a credential's creation
    # anywhere also takes it, so what was set up meanwhile is known for sure below). Then the
    # step is claimed (the version moves, uncommitted): a second submission of the same form
    # waits for this one, then matches nothing, so the credential, its recovery codes and the
    # move to the next step commit together or not at all (never two credentials from one seed).
    # (It forgets what this request read of the credentials before it waited, `enrollable`:
    # `set_up_meanwhile` below asks the database, and sees what another browser set up.)
    lock_user(user.id)
    if not transaction.update_in_place(ctx.row, form.posted_version(), commit=False):
        return pipeline.redirect_to(ctx.handle)
    ref = gate.user_ref(user)
    before = enrolment.credentials_before(ref)
    try:
        outcome = call_plugin(factor, "finish_enrolment", ref, state, plugin_response(), attempt_context(ctx, factor))
    except FactorUnavailable:  # rolled back, the claim too: the form may be posted again
        ctx.row.version = form.posted_version()
        return show(ctx, unavailable_message(factor), 503)
    if not isinstance(outcome, Enrolled):
        if factor.one_answer_per_challenge:
            # The refused answer spent the registration's challenge (WebAuthn): the claim commits,
            # with the challenge dropped (a rejection stores nothing else), so that a copy of the
            # form waiting for the user's lock finds the login moved on; a new one is begun.
            transaction.drop_step(ctx.row, ctx.row.version)
            db.session.commit()
            _begin(ctx, user, factor)  # (should it fail, the page offers the methods as when none began)
            return show(ctx, message_for(outcome), 400, refused_by=factor.name)
        db.session.rollback()  # the claim too: the form may be posted again
        ctx.row.version = form.posted_version()
        return show(ctx, message_for(outcome), 400, refused_by=factor.name)
    if set_up_meanwhile(ctx.row, user, own=outcome.credential.id):
        # Set up in another browser (or an admin's recovery QR code issued) while this login sat
        # here on the password alone: that must be proven, nothing is added on the password.
        db.session.rollback()
        ctx.row.version = form.posted_version()
        return pipeline.proceed(ctx.row, ctx.handle, login_user.load(user.id) or user, State.ENROL,
                                ctx.row.version, list(ctx.row.steps_done))
    codes_view = recovery_codes.issue_if_first(ctx, user)
    details = enrolment.enrolled_details(factor, outcome, before, "login")
    if codes_view is not None:  # the set now valid was created here: the log says when
        details["recovery_codes_issued"] = len(codes_view.get("codes") or ())
    audit.record("factor.enrolled", org_id=user.org_id, actor_id=user.id, actor=user.email, subject_id=user.id,
                 details=details)
    steps = list(ctx.row.steps_done) + [step_record(factor, outcome.amr or factor.amr, outcome.credential.id)]
    if codes_view is not None:
        if not transaction.advance(ctx.row, State.ENROL, ctx.row.version, State.RECOVERY_CODES,
                                   steps_done=steps, factor_name=None, factor_state=None):
            return pipeline.redirect_to(ctx.handle)  # expired meanwhile: all of it rolled back
        return recovery_codes.render_once(ctx, codes_view)
    return pipeline.proceed(ctx.row, ctx.handle, user, State.ENROL, ctx.row.version, steps)




def _postpone(ctx: StepContext, user, version: int):
    """A user still in the grace period skips enrolment this time (counted against the grace logins)."""
    from idp.policy import settings as policy_settings

    if not gate.may_postpone(user, ctx.params, steps_done=ctx.row.steps_done):
        return show(ctx, _("Your organization requires you to set up a second factor now."), 403)
    # The step claimed first (uncommitted, as an enrolment claims it): the same form posted twice
    # at once spends one grace login, the second copy waiting here and then matching nothing.
    # The count, its event and the move commit together, or not at all.
    lock_user(user.id)
    if not transaction.update_in_place(ctx.row, version, commit=False):
        return pipeline.redirect_to(ctx.handle)
    if not policy_settings.note_postponed_login(user.id, user.logins_since_required or 0, commit=False):
        db.session.rollback()
        ctx.row.version = version
        return pipeline.redirect_to(ctx.handle)  # another login postponed meanwhile: decide again
    steps = list(ctx.row.steps_done) + [{"method": "postponed_enrolment", "amr": [], "at": int(time.time())}]
    event = dict(event="login.enrolment_postponed", org_id=user.org_id, actor_id=user.id, actor=user.email,
                 subject_id=user.id)
    return pipeline.proceed(ctx.row, ctx.handle, user, State.ENROL, ctx.row.version, steps, events=(event,))
