"""identify: e-mail and password.

One generic error for an unknown account and a wrong password (and the same argon2
cost for both); rate limits per account and per address are applied in views.py.
"""
from __future__ import annotations

import time

from flask import current_app, request
from flask_babel import gettext as _

from idp import audit, lockout
from idp.db import db
from idp.login import pipeline, user as login_user
from idp.login.forms import PasswordLoginForm
from idp.login.steps.base import StepContext, wait_message
from idp.login.transaction import State
from idp.login.user import LoginUser


def show(ctx: StepContext, form: PasswordLoginForm | None = None, error: str | None = None, status: int = 200):
    hint = ctx.params.get("login_hint", "")
    if form is None and not hint:
        # The page every login begins with, the same for all but the login's own values: from its
        # stencil (idp.login.stencil), as the challenge page. A page showing an address (the one
        # typed before a wrong password, a login_hint) is rendered each time.
        key = {"step": "identify", "password_reset": bool(current_app.jinja_env.globals.get("password_reset_enabled"))}
        return ctx.render_from_stencil("login/identify.html", status, error, key,
                                       lambda _handle: {"form": PasswordLoginForm(formdata=None)})
    form = form or PasswordLoginForm(formdata=None, username=hint)
    return ctx.render("login/identify.html", status=status, form=form, error=error)


def _find_user(email: str) -> LoginUser | None:
    return login_user.find_signing_in(email.strip().lower())


def submit(ctx: StepContext):
    from idp.ops import metrics

    form = PasswordLoginForm()
    if not form.validate_on_submit():
        return show(ctx, form, _("Enter your e-mail and password."), 400)
    if form.posted_version() != ctx.row.version:
        return show(ctx, form, _("This form is out of date. Sign in again."), 409)
    guess = lockout.PasswordGuess.of(form.username.data, request.remote_addr)
    wait = guess.admit()
    if wait:
        metrics.LOGINS.labels(outcome="locked").inc()
        return show(ctx, form, wait_message(wait), 429)
    passwords = current_app.extensions["idp.passwords"]
    user = _find_user(form.username.data)
    # Hold no transaction through the hash: on SQLite every transaction holds the write lock
    # (BEGIN IMMEDIATE, see idp.db), and tens of milliseconds of argon2 under it would make
    # every other request of every worker wait. The guess's reservation committed alone (this
    # request had begun no transaction: idp.lockout's `_admit_on_database`), and the user was
    # read outside one; this ends whatever else began (nothing, on this page). The next writes
    # are version-guarded (idp.login.transaction).
    db.session.commit()
    valid = passwords.verify(user.password_hash if user else None, form.password.data)
    if not valid or user is None or user.disabled:
        locked = guess.failed(commit=False)
        metrics.LOGINS.labels(outcome="bad_password").inc()
        reason = "unknown_account" if user is None else "account_disabled" if valid else "wrong_password"
        _audit_failure(ctx, user, reason, locked)
        return show(ctx, form, _("Incorrect e-mail or password."), 401)
    events = _rehash_if_outdated(passwords, user, form.password.data)  # (its hash, too, before any transaction)
    guess.succeeded()
    # (With the user's sign-out stamp as read with the hash: login_user.signed_out_since_password.)
    steps = [login_user.password_step(user, int(time.time()))]
    return pipeline.proceed(ctx.row, ctx.handle, user, State.IDENTIFY, form.posted_version(), steps, events=events)


def _rehash_if_outdated(passwords, user: LoginUser, password: str) -> tuple[dict, ...]:
    """Store a new hash when the argon2 parameters changed since the password was set; the
    audit event that says so (it commits with the step, as the new hash does), if any."""
    if not passwords.needs_rehash(user.password_hash):
        return ()
    new_hash = passwords.hash(password)
    if not login_user.store_password_hash(user.id, new_hash, previous_hash=user.password_hash):
        return ()  # a new password was stored meanwhile: it stays (and this login ends at finish)
    return (dict(event="login.password_rehashed", org_id=user.org_id, actor_id=user.id, actor=user.email,
                 subject_id=user.id, details={"from": passwords.parameters(user.password_hash),
                                              "to": passwords.parameters(new_hash)}),)


def _audit_failure(ctx: StepContext, user: LoginUser | None, reason: str, locked: int) -> None:
    """A refused password, committed with the guess's counters. Whoever typed it is anonymous
    (the request's address and User-Agent say the rest): the account holder is the subject, not
    the actor. `reason`: `wrong_password`, `account_disabled` (the right password of a disabled
    account: the same answer on the page, but its admins should know), or `unknown_account`
    (an address no account has: recorded without an organization or a subject, the address not
    kept, since people type passwords into that field). Every refusal writes and commits alike,
    known account or not: a refusal that wrote less for an unknown address would answer sooner,
    and its timing would tell which addresses have accounts."""
    about = dict(org_id=user.org_id if user else None, subject_id=user.id if user else None,
                 actor=audit.ANONYMOUS)
    audit.record("login.password_failed", **about,
                 details={"reason": reason, "client_id": ctx.params.get("client_id")})
    if locked:  # this guess started a lockout: the admins see when guessing at an account stopped it
        audit.record("login.locked_out", **about, details={"step": "password", "seconds": locked})
    db.session.commit()
