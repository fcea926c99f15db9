"""consent: a third-party client asks for scopes; the answer is remembered per user, client and scopes."""
from __future__ import annotations

import time
from dataclasses import replace

from authlib.oauth2.rfc6749.util import scope_to_list
from flask import redirect, request, url_for
from sqlalchemy import select

from idp import audit
from idp.db import db
from idp.factors.directory import lock_user
from idp.login import gate, pipeline, transaction
from idp.login.forms import ConsentForm
from idp.login.steps.base import StepContext
from idp.login.transaction import State
from idp.login.user import LoginUser
from idp.models import ConsentGrant


def show(ctx: StepContext, form: ConsentForm | None = None, status: int = 200):
    scopes = scope_to_list(ctx.params.get("scope") or "") or []
    user = ctx.transaction_user()
    # Whose account the client gets, named: on a shared computer, a session answered this login
    # with no page of its own, for whoever used the browser last (who may be someone else).
    return ctx.render("login/consent.html", status=status, form=form or ConsentForm(formdata=None), scopes=scopes,
                      signed_in_as=user.email if user is not None else None, by_session=_answered_by_session(ctx))


def _answered_by_session(ctx: StepContext) -> bool:
    steps = ctx.row.steps_done
    return bool(steps) and steps[0].get("method") == "sso"


def submit(ctx: StepContext):
    form = ConsentForm()
    if form.posted_version() != ctx.row.version:  # a page from before the login moved on: show where it is
        return pipeline.redirect_to(ctx.handle)
    if not form.validate_on_submit():
        return show(ctx, form, 400)
    user = ctx.transaction_user()
    action = request.form.get("action")
    if action == "deny":
        if not transaction.advance(ctx.row, State.CONSENT, form.posted_version(), State.CANCELLED):
            return pipeline.redirect_to(ctx.handle)
        return _access_denied(ctx)
    if action == "another_account" and _answered_by_session(ctx):
        # Not this account: the same request from the password page (a new transaction; this
        # one ends here). Whoever signs in there replaces this browser's session (rotated at login).
        if not transaction.advance(ctx.row, State.CONSENT, form.posted_version(), State.CANCELLED):
            return pipeline.redirect_to(ctx.handle)
        return pipeline.restart_from_password(ctx.row.authz_request)
    if action != "allow":
        return show(ctx, form, 400)
    owed = _owed_now(ctx, user)
    if owed is not None:
        if transaction.advance(ctx.row, State.CONSENT, form.posted_version(), owed) and owed == State.CANCELLED:
            return redirect(url_for("login.expired"))
        return pipeline.redirect_to(ctx.handle)
    # The user's row first (the order pipeline.finish and a sign-out everywhere lock in), so
    # that two logins of one user consenting to one client at once remember it one after the
    # other (the second finds the first's grant); then the step is claimed (uncommitted: a
    # second post of this form waits, then matches nothing). The grant commits with the login's
    # end (pipeline.finish), or not at all.
    lock_user(user.id)
    if not transaction.update_in_place(ctx.row, form.posted_version(), commit=False):
        return pipeline.redirect_to(ctx.handle)
    _remember(user, ctx.params)
    return pipeline.finish(ctx.row, expected=State.CONSENT, user=user)


def _owed_now(ctx: StepContext, user: LoginUser) -> State | None:
    """The policy asked again, for a login that waited on this page (up to the transaction's
    lifetime): an admin may have required 2FA meanwhile, and a requirement applies to every new
    token (docs/policy.md). The second-factor step the login now owes, or CANCELLED for one an
    SSO session answered that no longer suffices (the application starts a new login, which
    asks for what is missing); None when nothing changed."""
    steps = ctx.row.steps_done
    if steps and steps[0].get("method") == "sso":
        auth_time = ctx.row.authz_request.get("auth_time")
        max_age = gate.max_age_of(ctx.params)
        if max_age is not None and auth_time is not None and auth_time + max_age < time.time():
            return State.CANCELLED  # the session's login grew older than the client allows while it waited here
        decision = gate.decision_for(user, ctx.params, amr=tuple(steps[0]["amr"]), auth_time=auth_time)
        return State.CANCELLED if decision.second_factor_required and not decision.satisfied else None
    if gate.postponed(steps):
        # Postponed at this login's enrolment step: still allowed? Judged as when it was
        # postponed (this login's own postponement not counted against the grace logins).
        unspent = replace(user, logins_since_required=max((user.logins_since_required or 0) - 1, 0))
        if gate.may_postpone(unspent, ctx.params):
            return None
        return gate.pending_second_factor(unspent, ctx.params,
                                          [step for step in steps if not gate.postponed([step])])
    return gate.pending_second_factor(user, ctx.params, steps)


def _remember(user: LoginUser, params: dict) -> None:
    """The consent, remembered for the next logins (pipeline.consent_needed). Not a first-party
    client's: its page (a native app answered by the browser's session, RFC 8252 8.6) is the
    interaction that login needed, asked again at every such login, and nothing reads a consent
    for it; remembered, it kept the application under "Applications with access" (idp.consents)
    long after its tokens ended, as allowed by the user, with a consent.granted event."""
    client = pipeline.login_client(params)  # (None: removed meanwhile, which `finish` ends)
    if client is not None and client.first_party:
        return
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
