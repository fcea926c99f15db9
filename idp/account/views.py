"""The signed-in user's security page: their factors, adding and removing them, recovery codes,
where they are signed in (ending those sessions: idp/account/sessions.py), their account's
recent activity (idp/account/activity.py) and the applications with access to their account
(removing one: idp/account/applications.py).

Adding or removing a factor needs a recent full login (login.recent_login seconds):
otherwise the user confirms both steps again and comes back here.
"""
from __future__ import annotations

from functools import wraps

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _

from idp import consents, sessions
from idp.forms import Form
from idp.account import activity, service
from idp.account.service import AccountError, IssuedByAdmin
from idp.db import MAX_ROW_ID
from idp.extensions import SUPPORTED_LOCALES
from idp.factors.registry import RECOVERY_CODES, current_registry
from idp.factors.types import FactorKind
from idp.login import session as login_session
from idp.policy import status as policy_status
from idp.template_i18n import N_, isolated_text

bp = Blueprint("account", __name__, url_prefix="/account")

# A credential id in a URL: out of range (idp.db.MAX_ROW_ID), the route does not match (404).
CREDENTIAL_ID = f"<int(min=1, max={MAX_ROW_ID}):credential_id>"


def _checked_form() -> bool:
    return Form().validate_on_submit()


def sensitive_change(view):
    """A change to the user's factors: CSRF-checked, and only shortly after a full login
    (otherwise both steps run again and the user comes back here)."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if not _checked_form():
            return redirect(url_for(".security"))
        again = login_session.require_recent_login()
        if again is not None:
            return again
        return view(*args, **kwargs)

    return login_session.login_required(wrapper)


@bp.get("/security")
@login_session.login_required
def security(refused_rename: int | None = None):
    user = login_session.current_user()
    rows = service.credentials(user)
    return render_template("account/security.html", user=user, rows=rows, enrollable=service.enrollable(user),
                           status=policy_status.status(user, user.org), form=Form(),
                           required=policy_status.is_required(user, user.org),
                           issued_by_admin=service.issued_by_admin, issued_by_admin_note=service.ISSUED_BY_ADMIN,
                           sessions=sessions.live(user.id), this_sid=login_session.current_session().sid,
                           applications=consents.of_user(user), activity=activity.recent(user),
                           refused_rename=refused_rename)


def _refused(error: AccountError, status: int = 403, *, rename: int | None = None):
    """The security page again with the refusal and a 4xx: 403 when the change is not the user's
    to make, 400 for a name that cannot be used (`rename`: the method whose name field takes the
    focus, marked invalid and described by the refusal, rather than the top of a long page)."""
    if isinstance(error, service.AccountGone):  # deleted or disabled meanwhile: no page of theirs to show
        return _gone(error)
    flash(_(str(error)), "error")
    return security(refused_rename=rename), status


def _gone(error: service.AccountGone):
    """Back to the security page, which signs in again: the account's sessions have ended."""
    if str(error):
        flash(_(str(error)), "error")
    return redirect(url_for(".security"))


@bp.post("/security/add/<name>")
@sensitive_change
def add(name: str):
    try:
        pending_id = service.begin(login_session.current_user(), name)
    except AccountError as error:
        flash(_(str(error)), "error")
        return redirect(url_for(".security"))
    return redirect(url_for(".enrol", pending_id=pending_id))


@bp.route("/security/enrol/<pending_id>", methods=["GET", "POST"])
@login_session.login_required
def enrol(pending_id: str):
    # The login must still be recent here too, for the page as for its form: the pending enrolment
    # outlives the window, and some factors are added from the page itself (a push device
    # registers with the activation code the page shows).
    again = login_session.require_recent_login()
    if again is not None:
        return again
    user = login_session.current_user()
    try:
        info = service.pending(user, pending_id)
    except AccountError as error:
        flash(_(str(error)), "error")
        return redirect(url_for(".security"))
    error = None
    if request.method == "POST" and _checked_form():
        response = {k: v for k, v in request.form.items() if k not in ("csrf_token", "version", "submit")}
        try:
            _credential, codes = service.finish(user, pending_id, response)
        except AccountError as failure:
            error = _(str(failure))
            if isinstance(failure, service.AccountGone):  # its session ended too: this page is no more
                return _gone(failure)
            if failure.renewed:  # the refused answer spent the enrolment: the page shows its replacement
                pending_id, info = failure.renewed, service.pending(user, failure.renewed)
            elif failure.spent:  # spent, and no replacement could begin: its form would answer nothing
                flash(error, "error")
                flash(_("This enrolment expired. Start again."), "error")
                return redirect(url_for(".security"))
        else:
            factor = current_registry().get(info.payload["factor"])
            flash(_("%(method)s added.", method=factor.label), "success")
            if codes:
                return render_template("account/recovery_codes.html", codes=codes, form=Form())
            return redirect(url_for(".security"))
    factor = current_registry().get(info.payload["factor"])
    templates = [f"factors/{factor.name}/enrol.html", "login/enrol_generic.html"]
    # (`refused`: the error is always this page's own answer refused, its field marked invalid.)
    return render_template(templates, view=service.pending_view(user, info), factor=factor, error=error,
                           refused=bool(error), version=0,
                           action=url_for(".enrol", pending_id=pending_id), client_name="", handle=None,
                           enrolling=True), (400 if error else 200)


@bp.post(f"/security/credentials/{CREDENTIAL_ID}/rename")
@login_session.login_required
def rename(credential_id: int):
    if _checked_form():
        try:
            service.rename(login_session.current_user(), credential_id, request.form.get("label", ""))
            flash(_("Renamed."), "success")
        except IssuedByAdmin as error:
            return _refused(error)
        except AccountError as error:
            return _refused(error, 400, rename=credential_id)
    return redirect(url_for(".security"))


@bp.get(f"/security/credentials/{CREDENTIAL_ID}/confirm-removal")
@login_session.login_required
def confirm_remove(credential_id: int):
    """Ask before removing: a removed method cannot be brought back, only added again."""
    user = login_session.current_user()
    row = next((r for r in service.credentials(user) if r.description.id == credential_id), None)
    if row is None or row.factor.name == RECOVERY_CODES:
        abort(404)
    if service.issued_by_admin(row.factor):
        return _refused(IssuedByAdmin())
    if service.keeps_last_factor(user, row.factor.name):
        return _refused(AccountError(service.LAST_FACTOR_REQUIRED))
    lines = [_("You will no longer be able to sign in with it.")]
    if row.factor.kind == FactorKind.SECOND_FACTOR and user.second_factor_count <= 1:
        lines.append(_("It is your last second factor: two-factor authentication will be off, and your "
                       "recovery codes will stop working."))
    # A credential the user did not name carries its method's label: named once, not twice
    # ("Remove Authenticator app “Authenticator app”?").
    if row.description.label and row.description.label != str(row.factor.label):
        title = isolated_text(N_("Remove %(method)s “%(name)s”?"), method=row.factor.label,
                              name=row.description.label)
    else:
        title = _("Remove %(method)s?", method=row.factor.label)
    return render_template("account/confirm.html", lines=lines, confirm=_("Remove"), title=title,
                           action=url_for(".remove", credential_id=credential_id))


@bp.post(f"/security/credentials/{CREDENTIAL_ID}/remove")
@sensitive_change
def remove(credential_id: int):
    try:
        removed = service.remove(login_session.current_user(), credential_id)
        flash(_("%(method)s removed.", method=removed), "success")
    except IssuedByAdmin as error:
        return _refused(error)
    except service.AccountGone as error:
        return _gone(error)
    except AccountError as error:
        flash(_(str(error)), "error")
        return redirect(url_for(".security"))
    return redirect(url_for(".security"))


@bp.get("/security/recovery-codes")
@login_session.login_required
def confirm_regenerate():
    return render_template("account/confirm.html", title=_("Generate new recovery codes?"),
                           lines=[_("Your current recovery codes will stop working at once; the new ones are "
                                    "shown once.")],
                           confirm=_("Generate new codes"), action=url_for(".regenerate"))


@bp.post("/security/recovery-codes")
@sensitive_change
def regenerate():
    try:
        codes = service.replace_recovery_codes(login_session.current_user())
    except AccountError as error:
        return _refused(error)
    if not codes:
        return redirect(url_for(".security"))
    return render_template("account/recovery_codes.html", codes=codes, form=Form())


@bp.post("/locale")
def locale():
    """The language form: this browser's choice, and the signed-in user's (their e-mails use it: User.locale)."""
    if _checked_form() and request.form.get("locale") in SUPPORTED_LOCALES:
        session["locale"] = request.form["locale"]
        user = login_session.current_user()
        if user is not None and user.locale != session["locale"]:
            from idp.db import db

            user.locale = session["locale"]
            db.session.commit()
    return redirect(_referring_page() or url_for("login.home"))


def _referring_page() -> str | None:
    """The path (and query) of the page the form was sent from, when that page is one of ours.

    Ours is the issuer's origin, not the request's Host: behind a proxy that passes nginx's
    `$host`, the Host lacks the issuer's port, and the form would always land on the home page.
    A path the browser could read as another host's (`//evil.example`, `/\\evil.example`) is not."""
    from urllib.parse import urlsplit

    try:
        referrer = urlsplit(request.referrer or "")
    except ValueError:  # a header no browser sends ("http://[::1"): no page of ours
        return None
    issuer = urlsplit(current_app.extensions["idp.settings"].issuer)
    if (referrer.scheme, referrer.netloc) != (issuer.scheme, issuer.netloc):
        return None
    path = referrer.path or "/"
    if not path.startswith("/") or path[1:2] in ("/", "\\"):
        return None
    return f"{path}?{referrer.query}" if referrer.query else path
