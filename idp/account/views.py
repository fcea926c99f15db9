"""The user's security page (issue 4): list, add, rename, remove factors; recovery codes."""
from flask import Blueprint, redirect, render_template, url_for

from idp.login import session as login_session

bp = Blueprint("account", __name__, url_prefix="/account")


@bp.get("/security")
def security():
    user = login_session.current_user()
    if user is None:
        return redirect(url_for("login.home"))
    return render_template("account/security.html", user=user)
