"""Admin pages for accounts: a new user, and a user page's "Account" section.

    GET/POST /admin/users/new             e-mail, name, role, and an invitation by e-mail (the default) or
                                          a first password typed twice
    GET/POST /admin/users/<id>/invite     confirm, then mail an invitation (idp.invitations): a user who
                                          never signed in, or has no password (imported without one)
    GET/POST /admin/users/<id>/disable    confirm, then disable: no login, every session and token ends
    GET/POST /admin/users/<id>/enable     confirm, then enable (the old sessions and tokens stay ended)
    GET/POST /admin/users/<id>/password   a new password typed twice; every session and token ends
    GET/POST /admin/users/<id>/role       make an administrator of the organization, or a user again
    GET/POST /admin/users/<id>/sign-out   confirm, then sign out everywhere: every session and token ends
    GET/POST /admin/users/<id>/delete     the user's e-mail typed to confirm, then delete the account and
                                          everything of it for good (idp.users.delete)
    GET/POST /admin/users/<id>/applications/<client_id>/remove
                                          confirm, then take one application's access to the account away

Routes on the admin blueprint (imported at the bottom of views.py), behind the same
`org_admin_required` and a recent full login of the admin's (idp.admin.access). The
work and the audit events (`user.created`, `user.invited`, `user.disabled`, `user.enabled`,
`user.password_changed`, `user.role_changed`, `user.signed_out_everywhere`, `user.deleted`) are idp.users',
which the `idp user` commands call too; removing an application's access (`consent.withdrawn`)
is idp.consents', as on the user's own security page. An admin does none of this to their own
account here: disabling it would lock them out, and their own password changes on their
security page, where the current one is asked. Nor, but signing out and removing an
application, to another admin's account (`member_only`: idp.admin.access.peer_admin_refused);
those two take nothing over and give nothing back: they end sessions and tokens, which the
other admin gets again by signing in, and stay for an admin's lost laptop.
"""
from __future__ import annotations

from flask import abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _

from idp import audit, consents, invitations, lockout, password_reset, users
from idp.admin.access import member_only, not_yourself, org_admin_required, recent_login_required, user_in_org
from idp.admin.forms import FIRST_PASSWORD, INVITE, ConfirmForm, DeleteUserForm, NewUserForm
from idp.admin.views import bp
from idp.db import db
from idp.forms import NewPasswordForm
from idp.models import User
from idp.notify.base import lifetime_words
from idp.template_i18n import N_, isolated_text, plural_text, utc_text


@bp.route("/users/new", methods=["GET", "POST"])
@org_admin_required
@recent_login_required
def new_user():
    """A member of the admin's own organization, invited by e-mail to choose their password (the
    default), or with a first password the admin hands over."""
    form = NewUserForm()
    code = 200 if request.method == "GET" else 400
    # Posted without `how` (a script of before invitations): a password typed means a first password.
    how = request.form.get("how") or (FIRST_PASSWORD if form.password.data else INVITE)
    if request.method == "POST" and form.validate_on_submit() and _how_is_usable(form, how):
        budget = _taken_budget()
        # Counted before the address is looked up (lockout.reserve), and taken back unless it was
        # in use: requests posted at once cannot all pass a check made before any is counted.
        # Not `touch`ed: a user created takes its count back, and must not keep the earlier "in use"
        # answers alive too (an admin adding people every day); an "in use" answer keeps them.
        wait = lockout.reserve(budget, touch=False)
        db.session.commit()  # the reservation, before the hash (idp.lockout.reserve)
        if wait:
            form.email.errors = [plural_text("Too many of the addresses you tried are already in use: wait %(num)s "
                                             "second before you add a user.",
                                             "Too many of the addresses you tried are already in use: wait %(num)s "
                                             "seconds before you add a user.", wait)]
            page, _code = _new_user_page(form, how, 429)
            return page, 429, {"Retry-After": str(wait)}
        try:
            created = users.create(g.org.id, form.email.data, form.password.data if how == FIRST_PASSWORD else None,
                                   name=form.name.data or "", role="admin" if form.admin.data else "user",
                                   actor_id=g.admin.id, actor=g.admin.email)
            delivery = invitations.invite(created, actor_id=g.admin.id, actor=g.admin.email) if how == INVITE else None
        except users.EmailTaken:
            db.session.rollback()
            form.email.errors = [_("This e-mail address is already in use: it cannot be the address of a new "
                                   "account. If it belongs to a member of your organization, search for it in the "
                                   "users list.")]
            audit.record("user.create_refused", org_id=g.org.id, actor_id=g.admin.id, actor=g.admin.email,
                         details={"email": users.normalised_email(form.email.data), "reason": "email_taken"})
            lockout.keep(budget)
            db.session.commit()  # the reserved count stays: this was an "in use" answer
        except invitations.InviteRefused:  # (`_how_is_usable` checked it: nothing half-created stays all the same)
            db.session.rollback()
            form.email.errors = [_not_invitable()]
            lockout.release(budget)
            db.session.commit()
        except users.AccountRefused as exc:  # a bad password, name or address: it answers nothing of others
            db.session.rollback()
            (form.password if isinstance(exc, users.PasswordRefused) else form.email).errors = [str(exc)]
            lockout.release(budget)
            db.session.commit()
        else:
            lockout.release(budget)
            db.session.commit()
            if delivery is not None:
                _mail_invitation(created.email, delivery)
            else:
                flash(isolated_text(N_("%(email)s can sign in now: give them their password in person or by "
                                       "another channel than their e-mail."), email=created.email), "success")
            return redirect(url_for("admin.user", user_id=created.id))
    return _new_user_page(form, how, code)


def _new_user_page(form: NewUserForm, how: str, code: int):
    invitations_on = password_reset.current_settings().enabled
    return render_template("admin/new_user.html", org=g.org, form=form, invitations_on=invitations_on,
                           how=how if invitations_on else FIRST_PASSWORD,
                           invite_lifetime=_invite_lifetime()), code


def _how_is_usable(form: NewUserForm, how: str) -> bool:
    """Whether the way in the admin chose can be taken; if not, the form says why."""
    if how == INVITE and password_reset.current_settings().enabled:
        return True
    if how == INVITE:
        form.email.errors = [_("Invitations are off on this service (they need password reset links): set a first "
                               "password instead.")]
    elif how != FIRST_PASSWORD:
        form.email.errors = [_("Choose how the user gets in: an invitation or a first password.")]
    elif not form.password.data:
        form.password.errors = [_("Type a first password, or send an invitation instead.")]
    else:
        return True
    return False


def _mail_invitation(email: str, delivery: password_reset.Delivery) -> bool:
    """Mail the invitation committed meanwhile, and tell the admin how it went: in the request, as the
    admin named the person (no one to hide an account from), so that a relay that refused it is said
    at once (the link then dies: idp.password_reset.deliver)."""
    if password_reset.deliver(current_app._get_current_object(), delivery):
        flash(isolated_text(N_("An invitation was sent to %(email)s. They choose their password with its link, "
                               "which works once, until %(expires)s."), email=email,
                            expires=utc_text(invitations.expires_at(delivery))), "success")
        return True
    flash(isolated_text(N_("The invitation could not be e-mailed to %(email)s (the mail relay refused it or is "
                           "unreachable): send a new invitation from this page later."), email=email), "error")
    return False


@bp.route("/users/<int:user_id>/invite", methods=["GET", "POST"])
@org_admin_required
@recent_login_required
def invite_user(user_id: int):
    """GET asks for confirmation; POST mails an invitation (a new one kills the earlier one): for
    a member who never signed in or has no password (`invitations.may_invite`). Not the admin's
    own account, nor another admin's (`member_only`: an invitation sets a password)."""
    target = user_in_org(user_id)
    refused = member_only(target, "invite")
    if refused is not None:
        return refused
    if request.method == "GET" or not ConfirmForm().validate_on_submit():
        if not invitations.may_invite(target) or not password_reset.current_settings().enabled:
            flash(_not_invitable(), "warning")
            return redirect(url_for("admin.user", user_id=target.id))
        return _invite_confirm(target)
    try:
        delivery = invitations.invite(target, actor_id=g.admin.id, actor=g.admin.email)
    except invitations.InviteRefused as exc:
        db.session.rollback()
        if exc.reason == "rate_limited":  # the account's links for the hour (reset links included)
            flash(_("Too many links were sent to this user in the last hour: try again later."), "error")
            page, _code = _invite_confirm(target)
            return page, 429, {"Retry-After": "3600"}
        flash(_not_invitable(), "error")  # disabled, or signed in, since the page was shown
        return redirect(url_for("admin.user", user_id=target.id))
    db.session.commit()
    _mail_invitation(target.email, delivery)
    return redirect(url_for("admin.user", user_id=target.id))


def _not_invitable() -> str:
    return _("This user cannot be invited: the account is disabled, has signed in with its password already "
             "(they can use \"Forgot your password?\"), or invitations are off on this service.")


def _invite_lifetime() -> str:
    """"7 days": how long an invitation works, in the request's language."""
    return lifetime_words(password_reset.current_settings().invite_ttl // 60, str(get_locale() or "en"))


def _invite_confirm(target: User):
    lifetime = _invite_lifetime()
    return _confirm(target, _("Send an invitation?"),
                    isolated_text(N_("%(email)s receives a link by e-mail to choose their password, which also "
                                     "confirms their address. It works once, for %(lifetime)s; an earlier "
                                     "invitation stops working."), email=target.email, lifetime=lifetime),
                    url_for("admin.invite_user", user_id=target.id))


def _taken_budget() -> str:
    """The lockout key counting this admin's "address already in use" answers.

    The e-mail address is the login name, unique across every organization (User.email; the
    login form asks for no organization), so an address taken anywhere cannot be added here,
    and refusing it tells the admin that much: that one bit is inherent to the model. Nothing
    more: the answer (words, status, the work done before it) is the same whichever
    organization holds the address, the admin's own included; each such answer is audited
    (`user.create_refused`), and from `ratelimit.factor_failures_before_lockout` of them on
    the form waits, longer each time (idp.lockout), so that it is no directory of the other
    organizations' members. A created user does not clear the count (docs/policy.md, "Admin pages")."""
    return f"factor:admin-taken-email:{g.admin.id}"


def _refused(target: User, refusal: users.AccountRefused):
    """Back to the user's page, saying why nothing changed."""
    db.session.rollback()
    flash(str(refusal), "error")
    return redirect(url_for("admin.user", user_id=target.id))


def _confirm(target: User, title: str, text: str, action: str, fields: dict | None = None):
    return render_template("admin/confirm.html", org=g.org, target=target, form=ConfirmForm(), title=title,
                           text=text, action=action, fields=fields or {}), 200 if request.method == "GET" else 400


@bp.route("/users/<int:user_id>/disable", methods=["GET", "POST"])
@org_admin_required
@recent_login_required
def disable_user(user_id: int):
    return _switch(user_id, disabled=True)


@bp.route("/users/<int:user_id>/enable", methods=["GET", "POST"])
@org_admin_required
@recent_login_required
def enable_user(user_id: int):
    return _switch(user_id, disabled=False)


def _switch(user_id: int, *, disabled: bool):
    """GET asks for confirmation; POST disables or enables (an admin's own account: neither)."""
    target = user_in_org(user_id)
    if disabled and request.method == "POST":
        users.lock_organization(g.org.id)  # before member_only's lock on the member (users.lock_organization)
    refused = member_only(target, "disable" if disabled else "enable")
    if refused is not None:
        return refused
    if request.method == "GET" or not ConfirmForm().validate_on_submit():
        if disabled:
            title = _("Disable this account?")
            text = isolated_text(N_("%(email)s will not be able to sign in, and is signed out at once: every session "
                                    "and every application's token of theirs ends, and their recovery QR codes not "
                                    "yet used are revoked. Enabling the account again lets them sign in again; it "
                                    "does not bring back what ended."), email=target.email)
        else:
            title = _("Enable this account?")
            text = isolated_text(N_("%(email)s will be able to sign in again."), email=target.email)
        return _confirm(target, title, text, url_for(request.endpoint, user_id=target.id))
    try:
        changed = users.set_disabled(target, disabled, actor_id=g.admin.id, actor=g.admin.email)
    except users.LastAdmin as exc:  # the organization's last other enabled admin (perhaps since the GET)
        return _refused(target, exc)
    db.session.commit()
    done = _("The account is disabled.") if disabled else _("The account is enabled.")
    flash(done if changed is not None else _("Nothing to change."), "success")
    return redirect(url_for("admin.user", user_id=target.id))


@bp.route("/users/<int:user_id>/role", methods=["GET", "POST"])
@org_admin_required
@recent_login_required
def change_role(user_id: int):
    """GET asks to confirm the other role; POST sets the role the form names (not "the other one":
    another admin may have changed it in between)."""
    target = user_in_org(user_id)
    refused = member_only(target, "role")  # a member made an admin, never an admin made a member
    if refused is not None:
        return refused
    if request.method == "GET" or not ConfirmForm().validate_on_submit() or request.form.get("role") not in users.ROLES:
        role = "user" if target.role == "admin" else "admin"
        if role == "admin":
            title = _("Make this user an administrator?")
            text = isolated_text(N_("%(email)s will administer %(org)s: its users, their second factors and "
                                    "passwords, its security settings and its audit log. Recovery QR codes that "
                                    "administrators issued to them and that are not yet used are revoked: an "
                                    "administrator's come from the operator."), email=target.email, org=g.org.name)
        else:
            title = _("Remove administrator rights?")
            text = isolated_text(N_("%(email)s will no longer administer %(org)s."), email=target.email,
                                 org=g.org.name)
        return _confirm(target, title, text, url_for("admin.change_role", user_id=target.id), fields={"role": role})
    try:
        changed = users.set_role(target, request.form["role"], actor_id=g.admin.id, actor=g.admin.email)
    except users.LastAdmin as exc:
        return _refused(target, exc)
    db.session.commit()
    flash(_("Saved.") if changed else _("Nothing to change."), "success")
    return redirect(url_for("admin.user", user_id=target.id))


@bp.route("/users/<int:user_id>/password", methods=["GET", "POST"])
@org_admin_required
@recent_login_required
def set_user_password(user_id: int):
    form = NewPasswordForm()
    submitted = request.method == "POST" and form.validate_on_submit()
    target = user_in_org(user_id)  # a 404 before any hash: argon2's CPU is no price of a made-up id
    hashed = _hashed_before_the_checks(form.password.data) if submitted and _may_get_one(target) else None
    refused = member_only(target, "password")
    if refused is not None:
        return refused
    if submitted:
        try:
            users.set_password(target, form.password.data, actor_id=g.admin.id, actor=g.admin.email, hashed=hashed)
        except users.PasswordRefused as exc:
            form.password.errors = [str(exc)]
        else:
            db.session.commit()
            flash(isolated_text(N_("The password is set. %(email)s was signed out everywhere."), email=target.email),
                  "success")
            return redirect(url_for("admin.user", user_id=target.id))
    return render_template("admin/password.html", org=g.org, target=target, form=form), (
        200 if request.method == "GET" else 400)


def _may_get_one(target: User) -> bool:
    """Whether `member_only` will let the admin set `target`'s password, as read now, without its
    row lock or its audited refusal: those come after the hash (`member_only`, which reads the
    role again under the lock), and only a member promoted in between costs a hash for nothing."""
    return target.id != g.admin.id and target.role != "admin"


def _hashed_before_the_checks(password: str) -> str | None:
    """`users.hashed_if_acceptable`, with the reads so far ended first: the access checks that
    follow begin the transaction that sets the password (the target's row held, the peer-admin
    check, the audit event), in which every other request would wait through the hash on SQLite.
    Only a member of the admin's organization gets here (`user_in_org`, `_may_get_one`)."""
    db.session.commit()  # the admin's own checks' and the target's reads (idp.admin.access)
    return users.hashed_if_acceptable(password)


@bp.route("/users/<int:user_id>/sign-out", methods=["GET", "POST"])
@org_admin_required
@recent_login_required
def sign_out_user(user_id: int):
    """GET asks for confirmation; POST signs the user out everywhere (a lost or stolen device),
    nothing else changed. The user page lists the sessions this ends (idp.sessions.live)."""
    target = user_in_org(user_id)
    refused = not_yourself(target)
    if refused is not None:
        return refused
    if request.method == "GET" or not ConfirmForm().validate_on_submit():
        return _confirm(target, _("Sign this user out everywhere?"),
                        isolated_text(N_("%(email)s is signed out of every browser, and every application's token "
                                         "of theirs ends. Their password and second factors stay: if whoever has the "
                                         "device may know them too, set a new password or reset the second factors "
                                         "as well."), email=target.email),
                        url_for("admin.sign_out_user", user_id=target.id))
    users.sign_out(target, actor_id=g.admin.id, actor=g.admin.email)
    db.session.commit()
    flash(isolated_text(N_("%(email)s was signed out everywhere."), email=target.email), "success")
    return redirect(url_for("admin.user", user_id=target.id))


@bp.route("/users/<int:user_id>/delete", methods=["GET", "POST"])
@org_admin_required
@recent_login_required
def delete_user(user_id: int):
    """GET shows what goes and what stays; POST deletes the user when the admin typed their
    e-mail address (anything else: the form again, 400, nothing changed). Not the admin's own
    account (it would lock them out, and an organization keeps an admin), nor another admin's:
    deleting one is more than disabling one, which is the operator's (`member_only`)."""
    target = user_in_org(user_id)
    if target.id == g.admin.id:
        flash(_("You cannot delete your own account: another administrator of your organization, or the operator "
                "with the idp command, can."), "error")
        return redirect(url_for("admin.user", user_id=target.id))
    if request.method == "POST":
        users.lock_organization(g.org.id)  # before member_only's lock on the member (users.lock_organization)
    refused = member_only(target, "delete")
    if refused is not None:
        return refused
    form = DeleteUserForm()
    if request.method == "GET" or not form.validate_on_submit():
        return _delete_page(target, form)
    if form.email.data.strip().lower() != target.email:
        form.email.errors = [isolated_text(N_("That is not the user's e-mail address: type %(email)s to delete "
                                              "this user."), email=target.email)]
        return _delete_page(target, form)
    email = target.email
    try:
        users.delete(target, actor_id=g.admin.id, actor=g.admin.email)
    except users.LastAdmin as exc:  # promoted by another admin since the page was shown
        return _refused(target, exc)
    except users.UserGone:  # deleted by another admin (or the operator) at the same moment
        db.session.rollback()
        abort(404)
    db.session.commit()
    flash(isolated_text(N_("%(email)s was deleted: their account, sign-in methods, sessions and applications' "
                           "access are gone. The audit log keeps its record of them."), email=email), "success")
    return redirect(url_for("admin.users"))


def _delete_page(target: User, form: DeleteUserForm):
    return render_template("admin/delete_user.html", org=g.org, target=target, form=form), (
        200 if request.method == "GET" else 400)


@bp.route("/users/<int:user_id>/applications/<client_id>/remove", methods=["GET", "POST"])
@org_admin_required
@recent_login_required
def remove_application(user_id: int, client_id: str):
    """GET asks for confirmation; POST takes the application's access to the user's account away
    (a malicious or compromised application): its consent, its codes and tokens (idp.consents)."""
    target = user_in_org(user_id)
    refused = not_yourself(target)
    if refused is not None:
        return refused
    application = next((app for app in consents.of_user(target) if app.client_id == client_id), None)
    if application is None:
        abort(404)  # no access to take: never had any, removed already, made up
    if request.method == "GET" or not ConfirmForm().validate_on_submit():
        return _confirm(target, _("Remove this application's access?"),
                        isolated_text(N_("%(application)s can no longer use the account of %(email)s: its tokens "
                                         "end, and it must sign them in again (and ask for their consent again, if "
                                         "it asks for it)."), application=application.name, email=target.email),
                        url_for("admin.remove_application", user_id=target.id, client_id=client_id))
    consents.withdraw(target, client_id, actor_id=g.admin.id, actor=g.admin.email, by="admin")
    db.session.commit()
    flash(isolated_text(N_("%(application)s can no longer use the account of %(email)s."),
                        application=application.name, email=target.email), "success")
    return redirect(url_for("admin.user", user_id=target.id))
