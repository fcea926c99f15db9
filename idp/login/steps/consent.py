"""consent: a third-party client asks for scopes; the answer is remembered per user, client and scopes."""
from __future__ import annotations

from authlib.oauth2.rfc6749.util import scope_to_list
from flask import redirect, request, url_for
from sqlalchemy import select

from idp import audit
from idp.db import db
from idp.login import gate, pipeline, transaction
from idp.login.forms import ConsentForm
from idp.login.steps.base import StepContext
from idp.login.transaction import State
from idp.login.user import LoginUser
from idp.models import ConsentGrant


def show(ctx: StepContext, form: ConsentForm | None = None, status: int = 200):
    scopes = scope_to_list(ctx.params.get("scope") or "") or []
    return ctx.render("login/consent.html", status=status, form=form or ConsentForm(formdata=None), scopes=scopes)


def submit(ctx: StepContext):
    form = ConsentForm()
    if not form.validate_on_submit():
        return show(ctx, form, 400)
    user = ctx.transaction_user()
    action = request.form.get("action")
    if action == "deny":
        if not transaction.advance(ctx.row, State.CONSENT, form.posted_version(), State.CANCELLED):
            return pipeline.redirect_to(ctx.handle)
        return _access_denied(ctx)
    if action != "allow":
        return show(ctx, form, 400)
    owed = _owed_now(ctx, user)
    if owed is not None:
        if transaction.advance(ctx.row, State.CONSENT, form.posted_version(), owed) and owed == State.CANCELLED:
            return redirect(url_for("login.expired"))
        return pipeline.redirect_to(ctx.handle)
    _remember(user, ctx.params)
    db.session.commit()
    if not transaction.update_in_place(ctx.row, form.posted_version()):
        return pipeline.redirect_to(ctx.handle)
    return pipeline.finish(ctx.row, expected=State.CONSENT, user=user)


def _owed_now(ctx: StepContext, user: LoginUser) -> State | None:
    """The policy asked again, for a login that waited on this page (up to the transaction's
    lifetime): an admin may have required 2FA meanwhile, and a requirement applies to every new
    token (docs/policy.md). The second-factor step the login now owes, or CANCELLED for one an
    SSO session answered that no longer suffices (the application starts a new login, which
    asks for what is missing); None when nothing changed."""
    steps = ctx.row.steps_done
    if steps and steps[0].get("method") == "sso":
        decision = gate.decision_for(user, ctx.params, amr=tuple(steps[0]["amr"]),
                                     auth_time=ctx.row.authz_request.get("auth_time"))
        return State.CANCELLED if decision.second_factor_required and not decision.satisfied else None
    return gate.pending_second_factor(user, ctx.params, steps)


def _remember(user: LoginUser, params: dict) -> None:
    scopes = set(scope_to_list(params.get("scope") or "") or [])
    grant = db.session.scalar(select(ConsentGrant).where(ConsentGrant.user_id == user.id,
                                                         ConsentGrant.client_id == params["client_id"]))
    if grant is None:
        grant = ConsentGrant(user_id=user.id, client_id=params["client_id"], scope="")
        db.session.add(grant)
    remembered = " ".join(sorted(scopes | set(grant.scope.split())))
    if remembered == grant.scope:
        return  # (prompt=consent asked again for what was granted already: nothing changes, no event)
    grant.scope = remembered
    audit.record("consent.granted", org_id=user.org_id, actor_id=user.id, actor=user.email, subject_id=user.id,
                 details={"client_id": params["client_id"], "scope": grant.scope})


def _access_denied(ctx: StepContext):
    device_id = ctx.row.authz_request.get("device")
    if device_id is not None:  # a device's login (idp.oidc.device_flow): its next poll is access_denied
        from idp.oidc import device_flow

        denied = device_flow.deny(device_id, user_id=ctx.row.user_id)  # False: decided in another browser
        db.session.commit()
        return redirect(url_for("device.denied" if denied else "login.expired"))
    return pipeline.error_to_client(ctx.row.authz_request, "access_denied", "The user denied the request.")
