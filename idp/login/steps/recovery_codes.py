"""recovery_codes: new recovery codes, shown once right after a first enrolment, or right after
the second factor of a user who was given one outside the login and the security page (`issue_owed`);
or, after a recovery code was accepted, how many the user has left (`notice`).

The codes are rendered straight from the enrolment POST and never stored in clear
(not even in the transaction): reloading this page shows a reminder instead; the
account page can generate a fresh set.
"""
from __future__ import annotations

from flask import redirect, url_for

from idp.factors import directory
from idp.factors.registry import current_registry
from idp.factors.store import read_credentials_again
from idp.factors.types import Enrolled, FactorKind
from idp.login import gate, pipeline
from idp.login.forms import StepForm
from idp.login.steps.base import StepContext
from idp.login.steps.factor_step import attempt_context, user_of
from idp.login.transaction import State


# The login state's key, in this step, for a recovery code's notice: how many codes were left.
REMAINING = "recovery_codes_remaining"


def _recovery_factor():
    return current_registry().recovery_codes()


def issue_if_first(ctx: StepContext, user) -> dict | None:
    """Generate the user's recovery codes if they have none; the view to show them, or None.

    Called with the user's row held (the enrolment's `lock_user`, the code page's
    `hold_user_at`): of two tabs finishing at once, the second finds the first one's set and
    shows none. Either way no set is owed any more (`owe_recovery_codes`): the mark is cleared
    with this transaction."""
    factor = _recovery_factor()
    if factor is None or factor.kind != FactorKind.RECOVERY:
        return None  # (a set still owed is shown once the factor is enabled again)
    ref = gate.user_ref(user)
    # Asked under that hold, of the database: the credentials this request read before it waited
    # still lack the set a parallel tab has just made (a push approval writes no credential to
    # drop them), and a second set would replace the one that tab showed. (`lock_user` forgets
    # them itself; the code page's hold, `hold_user_at`, does not: the TOTP check that follows it
    # on every login answers from them.)
    read_credentials_again()
    if factor.is_configured_for(ref):
        if user.recovery_codes_owed:  # set up on the security page meanwhile
            directory.recovery_codes_issued(user.id)
        return None
    step = factor.begin_enrolment(ref, attempt_context(ctx, factor))
    outcome = factor.finish_enrolment(ref, step.state, {"confirm": "1"}, attempt_context(ctx, factor))
    if not isinstance(outcome, Enrolled):
        return None
    directory.recovery_codes_issued(user.id)
    return {**step.view, **outcome.view}


def issue_owed(ctx: StepContext, user) -> dict | None:
    """The set owed to a user whose second factor came from outside the login and the security
    page (`idp.factors.directory.owe_recovery_codes`), right after that login proved a second
    factor: the view to show it once, or None (held by now, or the factor disabled).

    Asked only of a marked user (`LoginUser.recovery_codes_owed`, read with the login's row):
    everyone else's code POST runs no statement for it."""
    if not user.recovery_codes_owed:
        return None
    return issue_if_first(ctx, user)


def render_once(ctx: StepContext, view: dict):
    return ctx.render("login/recovery_codes.html", form=StepForm(formdata=None), view=view, shown=True)


def notice(ctx: StepContext, remaining: int, status: int = 200):
    """The page after a recovery code was accepted: how many are left, and where to make more."""
    return ctx.render("login/recovery_code_used.html", status=status, form=StepForm(formdata=None),
                      remaining=remaining)


def show(ctx: StepContext):
    remaining = (ctx.row.factor_state or {}).get(REMAINING)
    if isinstance(remaining, int):
        return notice(ctx, remaining)
    return ctx.render("login/recovery_codes.html", form=StepForm(formdata=None), view={}, shown=False)


def submit(ctx: StepContext):
    form = StepForm()
    if not form.validate_on_submit():
        return redirect(url_for("login.step", handle=ctx.handle))
    if form.posted_version() != ctx.row.version:
        # A form from before the login came here (the code form posted twice: its other copy
        # moved the login on): show where it stands, rather than let the move fail as "expired".
        return redirect(url_for("login.step", handle=ctx.handle))
    user = user_of(ctx)
    return pipeline.proceed(ctx.row, ctx.handle, user, State.RECOVERY_CODES, form.posted_version(),
                            list(ctx.row.steps_done))
