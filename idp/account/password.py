"""The signed-in user changes their own password (a link on the security page).

    GET/POST /account/password    the current password, then the new one typed twice

The current password is checked exactly as the login form checks one (idp.factors.directory.
check_password: the same per-account and per-address lockouts, whichever door the guesses
come through, the same argon2 cost, a failure audited as `password_change.password_failed`),
so a borrowed session is no way round the login's guessing limits. The change itself is
idp.users.set_password: audited (`user.password_changed`, by `self`), and every session and
token of the user ends, this browser's too (a thief's copy of its cookie would live on
otherwise): the user signs in again with the new password, second factor included.
"""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import PasswordField
from wtforms.validators import DataRequired, Length, ValidationError

from idp import users
from idp.account.views import bp
from idp.db import db
from idp.extensions import limiter, login_posts_per_ip
from idp.factors import directory
from idp.forms import NewPasswordForm
from idp.login import session as login_session
from idp.login.steps.base import wait_message


class ChangePasswordForm(NewPasswordForm):
    current = PasswordField(_l("Current password"), validators=[DataRequired(), Length(max=1024)],
                            render_kw={"autocomplete": "current-password"})

    def validate_password(self, field):
        # The current password again would change nothing, yet sign the user out everywhere and
        # mail them that their password changed: refused before any hash or count, like a typo.
        if field.data == self.current.data:
            raise ValidationError(_l("The new password must differ from the current one."))


@bp.route("/password", methods=["GET", "POST"])
@login_session.login_required
@limiter.limit(login_posts_per_ip, methods=["POST"])
def change_password():
    user = login_session.current_user()
    form = ChangePasswordForm()
    if request.method == "GET" or not form.validate_on_submit():
        return _page(form, 200 if request.method == "GET" else 400)
    try:
        checked = directory.check_password(user.email, form.current.data, remote_addr=request.remote_addr,
                                           purpose="password_change")
    except directory.TooManyAttempts as exc:
        form.current.errors = [wait_message(exc.retry_after)]
        return _page(form, 429)
    if checked is None or checked.id != user.id:
        form.current.errors = [_("That is not your current password.")]
        return _page(form, 401)
    try:
        users.set_password(user, form.password.data, actor_id=user.id, actor=user.email,
                           second_factor_proven=login_session.proved_second_factor())
    except users.PasswordRefused as exc:
        form.password.errors = [str(exc)]
        return _page(form, 400)
    db.session.commit()
    login_session.end_current()  # already ended with the others: this forgets it in the browser
    flash(_("Your password is changed and you were signed out everywhere: sign in with the new one."), "success")
    return redirect(url_for("account.security"))


def _page(form: ChangePasswordForm, status: int):
    return render_template("account/password.html", form=form, user=login_session.current_user()), status
