"""The security page's "Where you're signed in": ending another session, signing out everywhere.

    POST     /account/security/sessions/<sid>/end     end one session and what was obtained through it
    GET/POST /account/security/sign-out-everywhere    confirm, then end every session and token

The list itself is on the security page (idp.account.views.security, from idp.sessions.live).
Ending one session revokes the tokens issued through it (idp.sessions explains how they are
tied); signing out everywhere is idp.users.sign_out, this browser included, which then shows
the signed-out page.

No recent-login check here, unlike adding or removing a factor: these only take access away,
so a borrowed or stolen session gains nothing by them, and asking for both login steps again
would stop the very person who needs them most, one whose phone (the second factor) went with
the laptop. The CSRF token is checked before any POST reaches a view (idp.forms).
"""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _

from idp import sessions, users
from idp.account.views import bp
from idp.db import db
from idp.login import session as login_session


@bp.post("/security/sessions/<sid>/end")
@login_session.login_required
def end_session(sid: str):
    user = login_session.current_user()
    this_browser = login_session.holds(sid)
    if sessions.end(user, sid, actor_id=user.id, actor=user.email, by="self") is None:
        abort(404)  # not a live session of this user's: another user's, ended already, made up
    db.session.commit()
    if this_browser:  # (the page offers no button for it, but the form can name it)
        return _signed_out_here()
    flash(_("That browser is signed out, and the applications it signed you in to must sign you in again."),
          "success")
    return redirect(url_for(".security"))


@bp.route("/security/sign-out-everywhere", methods=["GET", "POST"])
@login_session.login_required
def sign_out_everywhere():
    """GET asks first (every application signs the user in again); POST does it."""
    if request.method == "GET":
        return render_template("account/confirm.html", title=_("Sign out everywhere?"),
                               lines=[_("Every browser signed in to your account is signed out, this one "
                                        "included, and every application you signed in to must sign you in "
                                        "again. Your password and your sign-in methods stay as they are.")],
                               confirm=_("Sign out everywhere"), action=url_for(".sign_out_everywhere"))
    user = login_session.current_user()
    users.sign_out(user, actor_id=user.id, actor=user.email)
    db.session.commit()
    return _signed_out_here(_("You were signed out everywhere."))


def _signed_out_here(message: str | None = None):
    """This browser's session was just ended: forget it in the browser, and say so. The
    signed-out page is rendered here rather than redirected to: /logout would clear the
    browser's session again, and the message with it."""
    login_session.end_current()  # no second event: the row is revoked already
    if message:
        flash(message, "success")
    return render_template("login/logged_out.html")
