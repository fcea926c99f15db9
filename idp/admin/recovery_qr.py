"""Admin pages for recovery QR codes (issue 7): a user page's "Issue recovery QR code".

    GET  /admin/users/<id>/recovery-qr                 the form, and the user's codes that still work
    POST /admin/users/<id>/recovery-qr                 issue one: shown once (inline SVG, PNG download, secret)
    POST /admin/users/<id>/recovery-qr/<cid>/revoke    revoke one

Routes on the admin blueprint (imported at the bottom of views.py), behind the same
`org_admin_required` and the admin's recent full login (`recent_login_required`, as every
change of a user's factors: docs/policy.md); showing and issuing also want another user than
the admin and another than a peer admin (`member_only`: a code that enrols a factor hands the account over). The work (hashing, audit `recovery_qr.issued`/`revoked`) is the
factor's `issue`/`revoke`, which `idp recovery-qr` calls too. The page that shows a secret
is never cached, and nothing can show it again.
"""
from __future__ import annotations

import base64

from flask import abort, flash, g, make_response, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import SelectField, SubmitField

from idp.forms import Form
from idp.admin.access import member_only, org_admin_required, recent_login_required, user_in_org
from idp.admin.forms import ConfirmForm
from idp.db import MAX_ROW_ID
from idp.admin.views import bp
from idp.factors.directory import hold_enabled, user_ref
from idp.template_i18n import plural_text

FACTOR = "qr_recovery"
VALIDITY_CHOICES = [("3600", _l("1 hour")), ("86400", _l("24 hours")), ("259200", _l("3 days")),
                    ("604800", _l("7 days"))]


class IssueRecoveryQrForm(Form):
    expires_in = SelectField(_l("Valid for"), choices=VALIDITY_CHOICES, default="86400")
    submit = SubmitField(_l("Issue recovery QR code"))


def _validity_choices(settings) -> list[tuple[str, str]]:
    """What the admin may pick: the usual validities up to `max_ttl`, and the configured default
    (`default_ttl`, preselected) and longest (`max_ttl`) when they are none of those. Without them
    a server configured below an hour offered nothing to pick, and the preselected 24 hours was
    not the operator's default (docs/recovery.md: "default ... factors.qr_recovery.default_ttl")."""
    usual = dict(VALIDITY_CHOICES)
    seconds = {int(value) for value in usual if int(value) <= settings.max_ttl}
    seconds |= {settings.default_ttl, settings.max_ttl}
    return [(str(s), usual.get(str(s)) or _duration(s)) for s in sorted(seconds)]


def _duration(seconds: int) -> str:
    """A validity in the largest unit that divides it ("2 days", "90 minutes")."""
    if seconds % 86400 == 0:
        return plural_text("%(num)s day", "%(num)s days", seconds // 86400)
    if seconds % 3600 == 0:
        return plural_text("%(num)s hour", "%(num)s hours", seconds // 3600)
    if seconds % 60 == 0:
        return plural_text("%(num)s minute", "%(num)s minutes", seconds // 60)
    return plural_text("%(num)s second", "%(num)s seconds", seconds)


def _fresh_form(factor) -> IssueRecoveryQrForm:
    return IssueRecoveryQrForm(formdata=None, expires_in=str(factor.qr_settings.default_ttl))


def _factor():
    from idp.factors.registry import current_registry

    registry = current_registry()
    if FACTOR not in registry:
        abort(404)
    return registry.get(FACTOR)


def _page(target, form, issued=None, code: int = 200):
    factor = _factor()
    form.expires_in.choices = _validity_choices(factor.qr_settings)
    outstanding = [factor.describe(c) for c in factor.outstanding(user_ref(target))]
    view = None
    if issued is not None:
        view = {"svg": issued.svg(), "secret": issued.secret, "uri": issued.uri,
                "expires_at": issued.expires_at,
                "png_data": base64.b64encode(issued.png()).decode()}
    response = make_response(render_template("admin/recovery_qr.html", org=g.org, target=target, form=form,
                                             revoke_form=ConfirmForm(formdata=None), outstanding=outstanding,
                                             issued=view), code)
    if issued is not None:
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/users/<int:user_id>/recovery-qr")
@org_admin_required
@recent_login_required
def recovery_qr(user_id: int):
    target = user_in_org(user_id)
    refused = member_only(target, "recovery_qr")  # a code that enrols a factor: never to oneself or a peer
    return refused or _page(target, _fresh_form(_factor()))


@bp.post("/users/<int:user_id>/recovery-qr")
@org_admin_required
@recent_login_required
def issue_recovery_qr(user_id: int):
    target = user_in_org(user_id)
    refused = member_only(target, "recovery_qr_issue")
    if refused is not None:
        return refused
    factor = _factor()
    form = IssueRecoveryQrForm()
    # Any usual validity passes the form; one beyond max_ttl is the factor's to refuse, in words.
    offered = _validity_choices(factor.qr_settings)
    form.expires_in.choices = offered + [c for c in VALIDITY_CHOICES if c[0] not in dict(offered)]
    if not form.validate_on_submit():
        return _page(target, form, code=400)
    # (As `idp recovery-qr issue`): a disabled account gains no way back in. Asked under the
    # member's row lock (member_only took it), held to the commit: a disabling committed while
    # this waited is seen (`target` was read before it), rather than a code issued after the
    # disabling revoked the member's codes (tests/concurrency/test_disabled_meanwhile_races.py).
    if not hold_enabled(user_ref(target)):
        form.expires_in.errors = [_("This account is disabled: enable it before you issue a recovery QR code.")]
        return _page(target, form, code=400)
    try:
        issued = factor.issue(user_ref(target), actor=g.admin.email, actor_id=g.admin.id,
                              ttl=int(form.expires_in.data))
    except ValueError:
        form.expires_in.errors = [_("Choose a shorter validity.")]
        return _page(target, form, code=400)
    return _page(target, _fresh_form(factor), issued=issued)


@bp.post("/users/<int:user_id>/recovery-qr/<int:credential_id>/revoke")
@org_admin_required
@recent_login_required
def revoke_recovery_qr(user_id: int, credential_id: int):
    target = user_in_org(user_id)
    refused = member_only(target, "recovery_qr_revoke")  # their own on their security page; a peer's, the operator
    if refused is not None:
        return refused
    form = ConfirmForm()
    if not form.validate_on_submit():
        abort(400)
    if not 0 < credential_id <= MAX_ROW_ID:
        abort(404)
    factor = _factor()
    # A code of the user's that no longer works (a double click, a second tab, a page left open
    # while it was used or expired) goes back to the codes' page saying so, nothing audited again;
    # only a code that is not the user's, or none, is a 404.
    state = factor.state_of(user_ref(target), credential_id)
    if state == "valid":
        if factor.revoke(user_ref(target), credential_id, actor=g.admin.email, actor_id=g.admin.id) is not None:
            flash(_("The recovery QR code was revoked."), "success")
            return redirect(url_for("admin.recovery_qr", user_id=target.id))
        state = factor.state_of(user_ref(target), credential_id)  # used or revoked since it was read
    if state not in _NOTHING_TO_REVOKE:
        abort(404)
    flash(_NOTHING_TO_REVOKE[state](), "warning")
    return redirect(url_for("admin.recovery_qr", user_id=target.id))


# What an admin is told when the code they revoke no longer works (revoke_recovery_qr).
_NOTHING_TO_REVOKE = {
    "revoked": lambda: _("This recovery QR code was already revoked."),
    "used": lambda: _("This recovery QR code was already used: there is nothing to revoke."),
    "expired": lambda: _("This recovery QR code has expired: there is nothing to revoke."),
}
