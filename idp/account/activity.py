"""The security page's "Recent activity": what happened to the user's account lately.

The user's own view of the audit log: sign-ins, refused attempts, changes to their password,
sign-in methods, sessions and applications, each with when, from which browser and address,
and by an administrator when one did it. A wrong password from an unknown address, or a
method nobody remembers adding, is for the owner to notice here (and in their mailbox:
idp.security_notices).

Only events about the user (`subject_id`), of the kinds listed below, newest first; their
details stay in the log (the page names a sign-in method or an application, nothing else).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from idp import user_agent
from idp.db import db
from idp.factors.registry import current_registry
from idp.models import AuditEvent, Client, User

LIMIT = 20

# event -> what the page says of it (in the user's language)
SHOWN = {
    "login.succeeded": _l("Signed in"),
    "login.password_failed": _l("Sign-in refused: wrong password"),
    "login.locked_out": _l("Sign-in locked after too many attempts"),
    "login.second_factor_failed": _l("Sign-in refused at the second step"),
    "login.second_factor_denied": _l("Sign-in request denied on your phone"),
    "login.push_fraud_reported": _l("Sign-in request reported as not yours"),
    "login.recovery_used": _l("Signed in with a recovery method"),
    "password_reset.requested": _l("Password reset link sent"),
    "user.invited": _l("Invitation sent"),
    "user.password_changed": _l("Password changed"),
    "factor.enrolled": _l("Sign-in method added"),
    "factor.totp.imported": _l("Sign-in method added"),
    "webauthn.clone_suspected": _l("Security key suspended: it may have been cloned"),
    "push.device_registered": _l("Phone registered for push approvals"),
    "factor.removed": _l("Sign-in method removed"),
    "factor.revoked": _l("Sign-in method removed"),
    "factor.reset": _l("Second factors reset"),
    "recovery_codes.regenerated": _l("New recovery codes made"),
    "session.ended": _l("A browser was signed out"),
    "user.signed_out_everywhere": _l("Signed out everywhere"),
    "consent.granted": _l("Application allowed"),
    "consent.withdrawn": _l("Application's access removed"),
    "device.approved": _l("Device signed in"),
}


@dataclass(frozen=True)
class Activity:
    at: datetime
    what: str  # SHOWN's text, in the request's language
    about: str | None  # the sign-in method, else the application, it concerns
    by_admin: bool  # an administrator did it (not the user, nor someone at the sign-in page)
    browser: str | None  # "Firefox on Linux" (idp.user_agent.describe); None without a request
    ip: str | None


def recent(user: User, limit: int = LIMIT) -> list[Activity]:
    rows = db.session.execute(
        select(AuditEvent.event, AuditEvent.at, AuditEvent.actor_id, AuditEvent.details, AuditEvent.user_agent,
               AuditEvent.ip)
        # In the user's organization, where every event about them is (idp.models.audit):
        # ix_audit_org_subject, newest first.
        .where(AuditEvent.org_id == user.org_id, AuditEvent.subject_id == user.id, AuditEvent.event.in_(list(SHOWN)))
        .order_by(AuditEvent.id.desc()).limit(limit)).all()
    client_names = _client_names({(row.details or {}).get("client_id") for row in rows} - {None})
    admins = _admins_among({row.actor_id for row in rows} - {None, user.id})
    registry = current_registry()
    found = []
    for row in rows:
        details = row.details or {}
        factor = details.get("factor") if row.event.startswith(("factor.", "login.second_factor")) else None
        client = details.get("client_id")  # the application signed in to, allowed, removed
        found.append(Activity(
            at=row.at, what=str(SHOWN[row.event]),
            about=str(registry.label_of(factor)) if isinstance(factor, str) else (
                client_names.get(client, client) if client else None),
            by_admin=row.actor_id in admins,
            browser=user_agent.describe(row.user_agent) if row.user_agent else None, ip=row.ip))
    return found


def _client_names(client_ids: set[str]) -> dict[str, str]:
    if not client_ids:
        return {}
    return dict(db.session.execute(select(Client.client_id, Client.name).where(Client.client_id.in_(client_ids))).all())


def _admins_among(actor_ids: set[int]) -> set[int]:
    """The actors who were someone else than the user: administrators acting on the account."""
    if not actor_ids:
        return set()
    return set(db.session.scalars(select(User.id).where(User.id.in_(actor_ids), User.role == "admin")))
