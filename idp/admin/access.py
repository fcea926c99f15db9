"""Who may use the admin pages: the signed-in admins of an organization, for that organization only.

One decorator, so that no view can forget a check:

* nobody signed in         -> sign in, then back here (302);
* signed in, not an admin   -> 403;
* an admin                  -> the view runs with `g.admin` and `g.org` (the admin's own
                               organization); every lookup goes through `user_in_org`,
                               so another organization's user is a 404, the same answer
                               as a user that does not exist.

(A session is not judged again against a 2FA policy that changed after it began: requirements
apply at the next login, as on the user's own pages; docs/architecture.md.)

Two more rules for the pages that change an account, its factors or the 2FA policy:
`recent_login_required` (the admin's own full login, both steps, within login.recent_login)
and `not_yourself` (an admin's own account changes on their security page, under the rules
every user has there: never exempt from 2FA, a factor removed, a recovery QR code issued,
through the admin pages).

And one rule between admins, `peer_admin_refused`: an admin acts on the organization's members,
never on another admin's account (its password, second factors, recovery QR codes, whether it is
enabled, its role, an exemption from 2FA). Otherwise one admin's stolen session or password seized
every other admin's account without a trace the victim would see. The operator does these with the
`idp` command (docs/policy.md, "Admin pages"); a refusal is a 403 page, audited as
`admin.peer_action_refused`.
"""
from __future__ import annotations

import functools

from flask import abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from idp import audit
from idp.db import MAX_ROW_ID, db
from idp.factors.directory import lock_user
from idp.login import session as login_session
from idp.models import Organization, User


def org_admin_required(view):
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        user, sign_in = login_session.user_or_sign_in()
        if sign_in is not None:
            return sign_in
        if not user.is_admin:
            abort(403)
        g.admin = user
        g.org = db.session.get(Organization, user.org_id)
        return view(*args, **kwargs)

    return wrapper


def user_in_org(user_id: int) -> User:
    """The user with this id in the admin's organization, else 404."""
    if not 0 < user_id <= MAX_ROW_ID:
        abort(404)
    user = db.session.scalar(select(User).where(User.id == user_id, User.org_id == g.org.id))
    if user is None:
        abort(404)
    return user


def recent_login_required(view):
    """These pages hand over an account (a password, a role, a factor), end one, or lower the
    organization's 2FA requirements: like a user's own factor changes, they want the admin's
    full login (both steps) within login.recent_login, so that an admin's stolen or forgotten
    session cannot do them."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        again = login_session.require_recent_login()
        return again if again is not None else view(*args, **kwargs)

    return wrapper


def not_yourself(target: User):
    """None, or the answer when `target` is the admin: back to their user page, told where to go."""
    if target.id == g.admin.id:
        flash(_("Change your own account on your security page."), "warning")
        return redirect(url_for("admin.user", user_id=target.id))
    return None


def peer_admin_refused(target: User, action: str):
    """None, or the 403 page when `target` is another admin of the organization: `action` (its
    name in the audit event: `password`, `factors_reset`, `factor_revoke`, `recovery_qr`,
    `recovery_qr_issue`, `recovery_qr_revoke`, `disable`, `enable`, `role`, `exempt`, `delete`,
    `invite`) is the
    operator's to do, with the `idp` command.

    The role is read again, and on a POST under the target's row lock (FOR NO KEY UPDATE, as the
    change itself takes it, till the request commits): a member promoted by another admin while
    this request ran is an admin by the time anything is written, not after."""
    if target.id == g.admin.id:
        return None  # their own account: not_yourself's answer
    if request.method == "POST":
        lock_user(target.id)
    if db.session.scalar(select(User.role).where(User.id == target.id)) != "admin":
        return None
    audit.record("admin.peer_action_refused", org_id=g.org.id, actor_id=g.admin.id, actor=g.admin.email,
                 subject_id=target.id, details={"action": action})
    db.session.commit()
    return render_template("admin/peer_refused.html", org=g.org, target=target), 403


def member_only(target: User, action: str):
    """None when the admin may do `action` to `target` here, else the answer: their own account
    goes to their security page (`not_yourself`), another admin's to the operator
    (`peer_admin_refused`)."""
    refused = not_yourself(target)
    return refused if refused is not None else peer_admin_refused(target, action)
