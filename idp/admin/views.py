"""Admin views (issue 5): users and their 2FA shields, a user's Security section,
Account > Security (the organization's rule, distribution, allowed factors, grace), the audit log.
Issue 6 adds push: a user's suspended push (after a fraud report) and "Resume push approvals",
and the recent fraud reports and denials on Account > Security.

The users list and the audit log each have a CSV download (/admin/users.csv, /admin/audit.csv:
the page's filters, parsed by the same function, without its paging; idp/admin/export.py).

Thin handlers: the rules and the audit events live in idp.policy (the same functions
the `idp policy` commands call); the reads are single SQL statements in
idp/admin/queries.py. Every view is behind `org_admin_required` (access.py).
"""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from idp import audit_labels, consents, invitations, password_reset
from idp import users as account_users
from idp.admin import export, queries
from idp.admin.access import (member_only, not_yourself, org_admin_required, peer_admin_refused,
                              recent_login_required, user_in_org)
from idp.admin.forms import (AllowedFactorsForm, BulkRequirementForm, ConfirmForm, GraceForm, RequireAllForm,
                             SelfPushRecoveryForm, UserSecurityForm)
from idp.db import MAX_ROW_ID, db, utcnow
from idp.factors.types import FactorKind
from idp.factors.directory import lock_user
from idp.models import User
from idp.policy import settings as policy_settings
from idp.policy.decide import grace_standing
from idp.policy.status import (
    ORDER, TwoFactorStatus, disabled_count, distribution, impact_of_requiring_all, is_exempt, is_required, status,
    today_utc,
)
from idp.sessions import end_proved_by, live as live_sessions
from idp.template_i18n import plural_text, utc_text

bp = Blueprint("admin", __name__, url_prefix="/admin")

# Short label (screen readers, filters) and the hover text of each shield, after the French original.
STATUS_TEXT = {
    TwoFactorStatus.NOT_ACTIVE: (_l("2FA not active"), _l("Two-factor authentication is not active.")),
    TwoFactorStatus.REQUIRED_NOT_SET_UP: (
        _l("2FA required, not set up"),
        _l("Two-factor authentication has been made mandatory for this user. "
           "The user must set it up at their next login.")),
    TwoFactorStatus.ACTIVE_VOLUNTARY: (
        _l("2FA active, set up voluntarily"),
        _l("Two-factor authentication is active. The user set it up themselves.")),
    TwoFactorStatus.ACTIVE_REQUIRED: (
        _l("2FA active and required"),
        _l("Two-factor authentication is active. It has been made mandatory.")),
}

# What the users list shows in words next to each shield (the column is headed "2FA"): the
# shields' colours are not the only difference between "on" and "on, required".
STATUS_SHORT = {
    TwoFactorStatus.NOT_ACTIVE: _l("off"),
    TwoFactorStatus.REQUIRED_NOT_SET_UP: _l("required, not set up"),
    TwoFactorStatus.ACTIVE_VOLUNTARY: _l("on"),
    TwoFactorStatus.ACTIVE_REQUIRED: _l("on, required"),
}


@bp.context_processor
def _status_helpers():
    return {"status_text": STATUS_TEXT, "status_short": STATUS_SHORT, "status_order": ORDER}


def _int_arg(name: str) -> int | None:
    value = request.args.get(name, "")
    if not value:
        return None
    # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
    if not (value.isascii() and value.isdigit()) or len(value) > 10 or int(value) > MAX_ROW_ID:  # ids, cursors
        abort(400)
    return int(value)


def _text_arg(name: str, limit: int) -> str:
    """A query-string text, trimmed, without NUL (PostgreSQL refuses it in any string)."""
    return request.args.get(name, "").replace("\x00", "").strip()[:limit]


def _actor() -> policy_settings.Actor:
    return policy_settings.Actor.admin(g.admin)


# --------------------------------------------------------------------------- users

@bp.get("/")
@org_admin_required
def index():
    return redirect(url_for("admin.users"))


def _users_filters() -> tuple[str, TwoFactorStatus | None, bool]:
    """The users list's filters from the query string (the page's and its CSV download's): the
    search, the 2FA status, exempt only. A value the page never sends is a 400."""
    raw_status = request.args.get("status", "")
    try:
        wanted = TwoFactorStatus(raw_status) if raw_status else None
    except ValueError:
        abort(400)
    search = _text_arg("q", queries.MAX_QUERY)
    # The exempt (2FA waived) are "not active" among others: a filter of their own, so that an
    # admin who requires 2FA for everyone can review the exceptions (one granted for good and
    # forgotten) without paging through every member.
    exempt = request.args.get("exempt", "")
    if exempt not in ("", "1"):
        abort(400)
    return search, wanted, exempt == "1"


@bp.get("/users")
@org_admin_required
def users():
    return _render_users(BulkRequirementForm(formdata=None))


def _page_size() -> int:
    return int(current_app.extensions["idp.settings"].get("admin.page_size", queries.PAGE_SIZE))


def _render_users(bulk_form: BulkRequirementForm, selected: frozenset = frozenset(), code: int = 200):
    """The users list under the query string's filters and page, with its bulk form (`selected`:
    the ids whose boxes are ticked, on a refused bulk change shown again)."""
    search, wanted, exempt = _users_filters()
    today = today_utc()
    page = queries.users_page(g.org, today=today, search=search, status=wanted, exempt=exempt,
                              after=_int_arg("after"), before=_int_arg("before"), limit=_page_size())
    return render_template("admin/users.html", page=page, search=search, wanted=wanted, exempt=exempt,
                           counts=distribution(g.org.id, today), disabled=disabled_count(g.org.id), org=g.org,
                           exempt_count=impact_of_requiring_all(g.org.id, today).exempt, today=today,
                           bulk_form=bulk_form, form=bulk_form if bulk_form.errors else None, selected=selected,
                           requirement_version=policy_settings.requirement_version), code


def _selection() -> dict[int, str]:
    """The bulk form's ticked boxes: {user id: the `requirement_version` its row showed}. A value
    the page never sends (not `<id>.<16 hex digits>`, an id twice, more boxes than a page has
    rows) is a 400: nothing is changed for anyone."""
    values = request.form.getlist("user")
    if len(values) > _page_size():
        abort(400)
    selection: dict[int, str] = {}
    for value in values:
        user_id, dot, seen = value.partition(".")
        if (not dot or not (user_id.isascii() and user_id.isdigit()) or len(user_id) > 10 or len(seen) != 16
                or not all(c in "0123456789abcdef" for c in seen)):
            abort(400)
        user_id = int(user_id)
        if not 0 < user_id <= MAX_ROW_ID or user_id in selection:
            abort(400)
        selection[user_id] = seen
    return selection


def _users_list_url() -> str:
    """Back to the list as it was shown: its filters and page (the bulk form posts to its own URL)."""
    kept = {k: request.args[k] for k in ("q", "status", "exempt", "after", "before") if request.args.get(k)}
    return url_for("admin.users", **kept)


@bp.post("/users")
@org_admin_required
@recent_login_required
def users_requirement():
    """The users list's bulk change: "For the selected users: require 2FA | follow the organization's
    rule | waive 2FA (until, reason)", for the members ticked on this page, in one transaction
    (idp.policy.settings.set_users_requirement, each user as the user page's save would change
    them). A user another admin changed since the page was shown is skipped, not overwritten, and
    named in the result; an id that is not a member of the organization (another organization's,
    an admin's, the admin's own, one that does not exist) refuses the whole request."""
    form = BulkRequirementForm()
    valid = form.validate_on_submit()  # (the CSRF token was checked before: CSRFProtect, idp.forms)
    # The list's filters and page, kept for the way back: a value the list never sends is a 400 here too.
    _users_filters()
    _int_arg("after")
    _int_arg("before")
    selection = _selection()
    if not request.form.get("mode"):
        form.mode.errors = [_("Choose what to do for the selected users.")]  # not WTForms' "Not a valid choice"
        valid = False
    if not valid:
        return _render_users(form, frozenset(selection), 400)
    if not selection:
        form.mode.errors = [_("Select at least one user in the list.")]
        return _render_users(form, frozenset(), 400)
    mode = form.mode.data
    until, reason = ((form.exempt_until.data, form.exempt_reason.data or None) if mode == policy_settings.EXEMPT
                     else (None, None))
    if mode != policy_settings.EXEMPT and (form.exempt_until.data or (form.exempt_reason.data or "").strip()):
        form.exempt_until.errors = [_("An end date and a reason only apply to waiving two-factor authentication.")]
        return _render_users(form, frozenset(selection), 400)
    try:
        done = policy_settings.set_users_requirement(selection, mode, until, reason, _actor(), members_only=True)
    except policy_settings.NotSelectable as exc:
        # The page's own rows, deleted or made admins since it was shown (or ids it never offered).
        db.session.expire_all()
        form.mode.errors = [_("Not saved: %(error)s", error=(
            _("a selected user is an administrator, whose two-factor setting is changed by the operator: "
              "load the list again") if exc.why == "admin"
            else _("a selected user is no longer in the organization: load the list again")))]
        return _render_users(form, frozenset(selection), 400)
    except policy_settings.PolicyError as exc:  # the end date or the reason
        db.session.expire_all()
        form.exempt_until.errors = [_("Not saved: %(error)s", error=str(exc))]
        return _render_users(form, frozenset(selection), 400)
    _flash_bulk_result(done)
    return redirect(_users_list_url())


def _flash_bulk_result(done: policy_settings.BulkResult) -> None:
    if not done.changed and not done.skipped:
        flash(_("Nothing to change: the selected users already had this setting."), "success")
        return
    text = plural_text("%(num)s user changed.", "%(num)s users changed.", len(done.changed))
    if done.unchanged:
        text += " " + plural_text("%(num)s already had this setting.", "%(num)s already had this setting.",
                                  len(done.unchanged))
    flash(text, "success")
    if done.skipped:
        emails = queries.emails_of(g.org.id, set(done.skipped))
        flash(plural_text("%(num)s skipped because another admin changed their setting meanwhile: %(users)s. "
                          "Check them and try again.",
                          "%(num)s skipped because another admin changed their setting meanwhile: %(users)s. "
                          "Check them and try again.", len(done.skipped),
                          users=", ".join(emails.get(i, str(i)) for i in done.skipped)), "warning")


@bp.get("/users.csv")
@org_admin_required
def users_csv():
    """The users list under the page's filters, every page of it, as a CSV download (idp.admin.export)."""
    search, wanted, exempt = _users_filters()
    filters = {"q": search, "status": wanted.value if wanted else "", "exempt": "1" if exempt else ""}
    rows = export.user_batches(export.OrgFacts.of(g.org), today=today_utc(), search=search, status=wanted,
                            exempt=exempt, registry=_registry())
    return export.csv_response("users", filters, rows, export.USER_COLUMNS)


@bp.get("/users/<int:user_id>")
@org_admin_required
def user(user_id: int):
    target = user_in_org(user_id)
    return _render_user(target, _security_form_of(target))


def _security_form_of(target: User, formdata=None) -> UserSecurityForm:
    """The Security section's form as the user's setting is now (`formdata` None: not the request's)."""
    return UserSecurityForm(
        formdata=formdata,
        require_2fa=target.mfa_setting == policy_settings.REQUIRED,
        exempt=target.mfa_setting == policy_settings.EXEMPT,
        exempt_until=target.exempt_until, exempt_reason=target.exempt_reason or "",
        seen=policy_settings.requirement_version(target))


def _render_user(target: User, form: UserSecurityForm, code: int = 200):
    now = utcnow()
    today = now.date()
    user_status = status(target, g.org, today)
    # Required without a factor: whether the next login must enrol, or may still put it off (and
    # till when), as the login counts it (the shield is the same for both).
    grace = grace_standing(target, g.org, now) if user_status == TwoFactorStatus.REQUIRED_NOT_SET_UP else None
    return render_template(
        "admin/user.html", target=target, form=form, org=g.org, yourself=target.id == g.admin.id,
        peer_admin=target.id != g.admin.id and target.role == "admin",  # its account is the operator's
        status=user_status, grace=grace, required=is_required(target, g.org, today),
        exempt=is_exempt(target, today), factor_names=_registry().names(), sessions=live_sessions(target.id),
        applications=consents.of_user(target), **_invitation_of(target), **_factor_rows(target)), code


def _invitation_of(target: User) -> dict:
    """`invitable`: the Account section offers "Send an invitation" (a member who never signed in,
    or has no password: idp.invitations.may_invite); `invitation_until`: when the one mailed last
    stops working, if it still works ("Send a new invitation" then)."""
    invitable = (target.id != g.admin.id and target.role != "admin" and password_reset.current_settings().enabled
                 and invitations.may_invite(target))
    return {"invitable": invitable, "invitation_until": invitations.pending(target.id) if invitable else None}


def _factor_rows(target: User) -> dict:
    """Second-factor credentials one per row (with the factor's label and the credential's, as
    shown: Factor.shown_label); recovery credentials
    (ten codes are ten rows in the store) summed up per factor."""
    registry = _registry()
    factors, recovery = [], {}
    for credential in _credentials_of(target):
        kind = registry.kind_of(credential.factor)
        if kind is not None and kind.value == "recovery":
            total, unused = recovery.get(credential.factor, (0, 0))
            recovery[credential.factor] = (total + 1, unused + (credential.used_at is None))
        else:
            factors.append((registry.label_of(credential.factor), credential, registry.credential_label(credential),
                            _unusable_status(registry, credential)))
    return {"factors": factors,
            "recovery": [(registry.label_of(name), total, unused) for name, (total, unused) in recovery.items()]}


def _unusable_status(registry, credential) -> str | None:
    """The factor's own word for a credential that signs no one in now (a security key suspended as a
    possible clone: its `describe` facts' "status"), or None. Such a credential still counts as the
    user's 2FA (the shield stays "active"): the row says why the user may be unable to sign in."""
    description = registry.describe(credential)
    status = description.facts.get("status") if description is not None else None
    return status if isinstance(status, str) and status.startswith("suspended") else None


def _credentials_of(target: User) -> list:
    """The user's live credentials, every factor, oldest first (the factor store's view)."""
    from idp.factors.store import CredentialStore

    return CredentialStore().list(target.id)


@bp.post("/users/<int:user_id>/security")
@org_admin_required
@recent_login_required
def user_security(user_id: int):
    target = user_in_org(user_id)
    refused = not_yourself(target)
    if refused is not None:
        return refused
    form = UserSecurityForm()
    if not form.validate_on_submit():
        return _render_user(target, form, 400)
    if form.require_2fa.data and form.exempt.data:
        form.exempt.errors = [_("A user cannot be both required and exempt: choose one.")]
        return _render_user(target, form, 400)
    if form.exempt.data:
        # An exempt admin signs in with their password alone, a second factor set up or not: a
        # peer's stolen session must not strip another admin of theirs (requiring 2FA, or following
        # the organization's rule, the admin may: the organization's rule is theirs to set anyway).
        refused = peer_admin_refused(target, "exempt")
        if refused is not None:
            return refused
        mode, until, reason = policy_settings.EXEMPT, form.exempt_until.data, form.exempt_reason.data or None
    else:
        mode = policy_settings.REQUIRED if form.require_2fa.data else policy_settings.FOLLOW
        until = reason = None
    try:
        changed = policy_settings.set_user_requirement(target.id, mode, until, reason, _actor(),
                                                       seen=form.seen.data or None)
    except policy_settings.PolicyChanged as exc:
        # Shown again as it is now (another admin's change), with the refusal: nothing was saved.
        db.session.expire_all()
        target = user_in_org(user_id)
        fresh = _security_form_of(target)
        fresh.require_2fa.errors = [_("Not saved: %(error)s", error=str(exc))]
        return _render_user(target, fresh, 409)
    except policy_settings.PolicyError as exc:
        form.exempt_until.errors = [_("Not saved: %(error)s", error=str(exc))]
        return _render_user(target, form, 400)
    flash(_("Saved.") if changed else _("Nothing to change."), "success")
    return redirect(url_for("admin.user", user_id=target.id))


# --------------------------------------------------------------------------- Account > Security

def _factor_choices() -> list[tuple[str, str]]:
    try:
        from idp.factors.registry import current_registry
        from idp.factors.types import FactorKind

        return [(f.name, str(f.label)) for f in current_registry().all(kind=FactorKind.SECOND_FACTOR)]
    except Exception:  # noqa: BLE001 - no registry (plugins mid-change): no choice to offer
        return []


def _seen(form, setting: str):
    """`form` carrying the fingerprint of `setting` as it is now (the page shows it as it is now)."""
    form.seen.data = policy_settings.org_setting_version(g.org, setting)
    return form


def _security_forms(factors_form=None, grace_form=None, recovery_form=None):
    """The page's forms: a refused one as it was posted (with its errors and its `seen`), the
    others as the organization's settings are now."""
    choices = _factor_choices()
    if factors_form is None:
        allowed = g.org.allowed_factors
        factors_form = _seen(AllowedFactorsForm(formdata=None, all_factors=allowed is None,
                                                factors=list(allowed or [])), "allowed_factors")
    factors_form.factors.choices = choices
    if grace_form is None:
        grace_form = _seen(GraceForm(formdata=None, grace_days=g.org.grace_days, grace_logins=g.org.grace_logins),
                           "grace")
    if recovery_form is None and _push_installed():
        recovery_form = _seen(SelfPushRecoveryForm(formdata=None, allowed=bool(g.org.self_push_recovery)),
                              "self_push_recovery")
    return factors_form, grace_form, recovery_form


def _push_installed() -> bool:
    """Whether the push factor is installed: the push recovery setting means nothing without it."""
    try:
        from idp.factors.registry import current_registry

        return "push" in current_registry()
    except Exception:  # noqa: BLE001 - no registry (plugins mid-change): nothing to offer
        return False


def _render_security(factors_form=None, grace_form=None, recovery_form=None, code: int = 200):
    today = today_utc()
    counts = distribution(g.org.id, today)
    total = sum(counts.values())
    # The refused form is the page's `form`: its first invalid field takes the focus (admin/_macros.html's
    # input) and the title says "Error:" (base.html), as on the pages with one form. Without it, a keyboard
    # or screen reader user was left at the top of the page, told nothing, the error far below.
    refused = next((f for f in (factors_form, grace_form, recovery_form) if f is not None and f.errors), None)
    factors_form, grace_form, recovery_form = _security_forms(factors_form, grace_form, recovery_form)
    return render_template(
        "admin/security.html", org=g.org, counts=counts, total=total, disabled=disabled_count(g.org.id),
        impact=impact_of_requiring_all(g.org.id, today), require_form=RequireAllForm(),
        factors_form=factors_form, grace_form=grace_form, recovery_form=recovery_form, form=refused,
        alerts=queries.security_alerts(g.org.id, now=utcnow()), alert_days=queries.ALERT_DAYS), code


def _changed_meanwhile(exc: policy_settings.PolicyChanged, which: str, field: str):
    """Another admin changed the setting since this page was shown: nothing of this save was
    written (409). The page is shown again with the settings as they are now, the refused form
    included (its fresh `seen`: saved again from there, it saves), with the refusal on its field."""
    db.session.expire_all()  # (rolled back already: the organization's values as they are now)
    forms = dict(zip(("factors_form", "grace_form", "recovery_form"), _security_forms(), strict=True))
    forms[which][field].errors = [_("Not saved: %(error)s", error=str(exc))]
    return _render_security(code=409, **forms)


@bp.get("/security")
@org_admin_required
def security():
    return _render_security()


@bp.post("/security/require-all")
@org_admin_required
@recent_login_required
def require_all():
    form = RequireAllForm()
    if not form.validate_on_submit() or form.on.data not in ("on", "off"):
        abort(400)
    on = form.on.data == "on"
    # No `seen` here: the button posts the one value it turns the rule to, so a click from a page
    # shown before another admin's finds it there already (below), and undoes nothing unseen.
    if not policy_settings.set_org_requirement(g.org.id, on, _actor()):  # another admin's click came first
        flash(_("Nothing to change."), "success")
        return redirect(url_for("admin.security"))
    # Say exactly what now holds: "everyone" has its exceptions, which the admin must not forget.
    today = today_utc()
    if on:
        exempt = impact_of_requiring_all(g.org.id, today).exempt
        flash(plural_text("Two-factor authentication is now required for everyone, except %(num)s exempt user.",
                          "Two-factor authentication is now required for everyone, except %(num)s exempt users.",
                          exempt) if exempt else _("Two-factor authentication is now required for everyone."),
              "success")
    else:
        counts = distribution(g.org.id, today)
        still = sum(counts[s] for s in counts if s.is_required)
        flash(plural_text("Two-factor authentication is now optional for everyone, except %(num)s user for whom "
                          "it is required individually.",
                          "Two-factor authentication is now optional for everyone, except %(num)s users for whom "
                          "it is required individually.", still) if still
              else _("Two-factor authentication is now optional for everyone."), "success")
    return redirect(url_for("admin.security"))


@bp.post("/security/factors")
@org_admin_required
@recent_login_required
def allowed_factors():
    form = AllowedFactorsForm()
    form.factors.choices = _factor_choices()
    if not form.validate_on_submit():
        return _render_security(factors_form=form, code=400)
    names = None if form.all_factors.data else list(form.factors.data or [])
    try:
        changed = policy_settings.set_allowed_factors(g.org.id, names, _actor(),
                                                      known=[name for name, _label in form.factors.choices],
                                                      seen=form.seen.data or None)
    except policy_settings.PolicyChanged as exc:
        return _changed_meanwhile(exc, "factors_form", "factors")
    except policy_settings.PolicyError as exc:
        form.factors.errors = [str(exc)]
        return _render_security(factors_form=form, code=400)
    flash(_("Allowed factors saved.") if changed else _("Nothing to change."), "success")
    return redirect(url_for("admin.security"))


@bp.post("/security/grace")
@org_admin_required
@recent_login_required
def grace():
    form = GraceForm()
    if not form.validate_on_submit():
        return _render_security(grace_form=form, code=400)
    try:
        changed = policy_settings.set_grace(g.org.id, form.grace_days.data, form.grace_logins.data, _actor(),
                                            seen=form.seen.data or None)
    except policy_settings.PolicyChanged as exc:
        return _changed_meanwhile(exc, "grace_form", "grace_days")
    except policy_settings.PolicyError as exc:
        form.grace_days.errors = [str(exc)]
        return _render_security(grace_form=form, code=400)
    flash(_("Grace period saved.") if changed else _("Nothing to change."), "success")
    return redirect(url_for("admin.security"))


@bp.post("/security/push-recovery")
@org_admin_required
@recent_login_required
def self_push_recovery():
    form = SelfPushRecoveryForm()
    if not form.validate_on_submit() or not _push_installed():
        abort(400)
    allowed = bool(form.allowed.data)
    try:
        changed = policy_settings.set_self_push_recovery(g.org.id, allowed, _actor(), seen=form.seen.data or None)
    except policy_settings.PolicyChanged as exc:
        return _changed_meanwhile(exc, "recovery_form", "allowed")
    if not changed:
        flash(_("Nothing to change."), "success")
    elif allowed:
        flash(_("Members may now restore push approvals on a new phone with their password and an e-mailed code."),
              "success")
    else:
        flash(_("Push approvals on a new phone now need a recovery QR code from an admin."), "success")
    return redirect(url_for("admin.security"))


# --------------------------------------------------------------------------- audit log

def _audit_filters() -> tuple[str, str, int | None, object]:
    """The audit log's filters from the query string (the page's and its CSV download's): who
    (as shown), the action prefix, the one user's id, and the people whose events are wanted
    (None: everyone's)."""
    who = _text_arg("user", 320)
    action = _text_arg("action", 64)
    subject_ids = None
    user_id = _int_arg("user_id")
    if user_id is not None:
        # One user exactly (the security alerts link here): a substring of an e-mail could match others.
        subject_ids = [user_id]
        who = (queries.emails_of(g.org.id, {user_id}).get(user_id)
               or queries.deleted_emails(g.org.id, {user_id}).get(user_id, ""))
    elif who:
        # Every matching user: their ids, or the query that finds them when they are many (a
        # list cut at some length hid the events of the rest).
        subject_ids = queries.people_matching(g.org.id, who)
    return who, action, user_id, subject_ids


@bp.get("/audit.csv")
@org_admin_required
def audit_csv():
    """The audit log under the page's filters, newest first, every page of it up to
    export.MAX_AUDIT_ROWS events, as a CSV download (idp.admin.export)."""
    who, action, user_id, subject_ids = _audit_filters()
    filters = {"user": "" if user_id is not None else who, "user_id": user_id, "action": action}
    rows = export.audit_batches(export.OrgFacts.of(g.org), subject_ids=subject_ids, action=action,
                             labels=export.event_labels())
    return export.csv_response("audit", filters, rows, export.AUDIT_COLUMNS)


@bp.get("/audit")
@org_admin_required
def audit():
    who, action, user_id, subject_ids = _audit_filters()
    page = queries.audit_page(g.org.id, subject_ids=subject_ids, action=action,
                              after=_int_arg("after"), before=_int_arg("before"))
    emails, deleted = queries.people_of_events(g.org.id, page.rows)  # deleted: marked "(deleted)"
    return render_template("admin/audit.html", page=page, who=who, action=action, user_id=user_id,
                           actions=queries.audit_actions(g.org.id), emails=emails, deleted=deleted,
                           label_of=audit_labels.label_of, org=g.org, max_rows=export.MAX_AUDIT_ROWS)


# --------------------------------------------------------------------------- a user's factors

def _registry():
    from idp.factors.registry import current_registry

    return current_registry()


def _credential_of(target: User, credential_id: int):
    if not 0 < credential_id <= MAX_ROW_ID:
        abort(404)
    for credential in _credentials_of(target):
        if credential.id == credential_id:
            return credential
    abort(404)


@bp.route("/users/<int:user_id>/factors/<int:credential_id>/revoke", methods=["GET", "POST"])
@org_admin_required
@recent_login_required
def revoke_factor(user_id: int, credential_id: int):
    """Revoke one credential (a lost device). GET asks for confirmation; POST does it."""
    target = user_in_org(user_id)
    refused = member_only(target, "factor_revoke")
    if refused is not None:
        return refused
    credential = _credential_of(target, credential_id)
    if _registry().kind_of(credential.factor) == FactorKind.RECOVERY:
        # Recovery codes go as a set (reset), a recovery QR code on its own page, with its own
        # event. A disabled factor's credential (no kind now) is listed with the second
        # factors, and can go like one: a lost device stays lost after its plugin is turned off.
        abort(404)
    form = ConfirmForm()
    if request.method == "GET" or not form.validate_on_submit():
        return render_template("admin/confirm.html", org=g.org, target=target, form=form,
                               title=_("Revoke this second factor?"),
                               text=_("%(factor)s “%(label)s” of %(email)s will stop working at once.",
                                      factor=_registry().label_of(credential.factor),
                                      label=_registry().credential_label(credential) or "—",
                                      email=target.email),
                               action=url_for("admin.revoke_factor", user_id=target.id,
                                              credential_id=credential.id)), (
            200 if request.method == "GET" else 400)
    registry = _registry()
    lock_user(target.id)  # before the credential's row: the order a login (and the user's own removal) takes them
    removed = registry.remove_credential(target.id, credential.id)
    if removed is None:
        abort(404)
    details = {"credential_id": removed.id, "factor": removed.factor, "label": removed.label, "by": "admin"}
    retired = registry.retire_recovery_codes_if_unprotected(target.id)
    if retired:
        details["recovery_codes_revoked"] = len(retired)
    if not registry.store.second_factors_held(target.id):
        policy_settings.withdraw_grace(target.id)
    audit_record("factor.revoked", target, details)
    end_proved_by(target, [removed.id, *retired], actor_id=g.admin.id, actor=g.admin.email)
    db.session.commit()
    flash(_("The second factor was revoked."), "success")
    return redirect(url_for("admin.user", user_id=target.id))


@bp.route("/users/<int:user_id>/reset-factors", methods=["GET", "POST"])
@org_admin_required
@recent_login_required
def reset_factors(user_id: int):
    """Revoke every credential of the user (lost device). GET asks for confirmation; POST does it.

    A required user then has to enrol again at the next login (decide: must_enrol).
    """
    target = user_in_org(user_id)
    refused = member_only(target, "factors_reset")
    if refused is not None:
        return refused
    form = ConfirmForm()
    if request.method == "GET" or not form.validate_on_submit():
        return render_template("admin/confirm.html", org=g.org, target=target, form=form,
                               title=_("Reset second factors?"),
                               text=_("Every second factor and recovery code of %(email)s will be revoked. "
                                      "If two-factor authentication is required for them, they will have to "
                                      "set it up again at their next login.", email=target.email),
                               action=url_for("admin.reset_factors", user_id=target.id)), (
            200 if request.method == "GET" else 400)
    revoked = account_users.reset_factors(target, actor_id=g.admin.id, actor=g.admin.email)
    if not revoked:  # nothing left (another admin's reset a moment ago): no change, no event
        db.session.rollback()
        flash(_("Nothing to reset: no second factor or recovery code was left."), "warning")
        return redirect(url_for("admin.user", user_id=target.id))
    db.session.commit()
    flash(plural_text("Second factors reset: %(num)s revoked.", "Second factors reset: %(num)s revoked.", len(revoked)),
          "success")
    return redirect(url_for("admin.user", user_id=target.id))


@bp.route("/users/<int:user_id>/resume-push", methods=["GET", "POST"])
@org_admin_required
@recent_login_required
def resume_push(user_id: int):
    """Clear a push suspension left by a fraud report. GET asks for confirmation; POST does it.

    The rules and the audit event are idp.policy.settings.clear_push_suspension's (the
    `idp policy user EMAIL --resume-push` command calls the same). Not for the admin's own
    account: a fraud report against it is for another admin (or the operator) to clear.
    """
    target = user_in_org(user_id)
    refused = not_yourself(target)
    if refused is not None:
        return refused
    form = ConfirmForm()
    if target.push_suspended_at is None and request.method == "GET":
        flash(_("Push approvals are not suspended for this user."), "success")
        return redirect(url_for("admin.user", user_id=target.id))
    # The confirmation is given in view of the reports made until the page was shown: one made
    # since (the suspension's date stays that of the first) is asked about again, not cleared unseen.
    # A POST reads it under the member's row lock, held to the clear's commit: a report is recorded
    # under that lock (the phone's answer, the login page's), so one being recorded now is either
    # seen here or made after the clear (and suspends push again), never cleared unseen.
    if request.method == "POST":
        lock_user(target.id)
    newest = queries.latest_fraud_report(g.org.id, target.id)
    seen = request.form.get("reports_seen", default=0, type=int) if request.method == "POST" else newest
    newer = newest > seen
    if request.method == "GET" or not form.validate_on_submit() or newer:
        text = _("Push approvals of %(email)s were suspended on %(when)s after a fraud report. Resume them only "
                 "once you know that the reported login was not an attack, or that the account is safe again: "
                 "%(email)s will be able to approve logins on their phone at once.",
                 email=target.email, when=utc_text(target.push_suspended_at) or "—")
        if request.method == "POST" and newer:
            text = _("Another fraud report about %(email)s came in after this page was shown: look at the "
                     "security alerts first.", email=target.email) + " " + text
        return render_template("admin/confirm.html", org=g.org, target=target, form=form,
                               title=_("Resume push approvals?"), text=text, fields={"reports_seen": newest},
                               action=url_for("admin.resume_push", user_id=target.id)), (
            200 if request.method == "GET" else 409 if newer else 400)
    try:
        changed = policy_settings.clear_push_suspension(target.id, _actor())
    except policy_settings.PolicyError:
        abort(404)
    flash(_("Push approvals resumed.") if changed else _("Nothing to change."), "success")
    return redirect(url_for("admin.user", user_id=target.id))


def audit_record(event: str, target: User, details: dict) -> None:
    from idp import audit as audit_log

    audit_log.record(event, org_id=target.org_id, actor_id=g.admin.id, actor=g.admin.email,
                     subject_id=target.id, details=details)


# Recovery QR codes (issue 7) and the account's own pages add their routes to this blueprint.
from idp.admin import accounts, recovery_qr  # noqa: E402,F401
