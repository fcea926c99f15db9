"""What each audit event is called on the admin's audit page, in the admin's language.

The events are named for machines (`factor.enrolled`): operators search the log and write SIEM
rules by those names, and docs/operations.md ("The audit log") lists them. The page shows
this label first and the name beside it. Every event the provider or its plugins write has one
(tests/unit/test_audit_labels.py fails otherwise); an event with none (a third-party plugin's)
shows its name alone.
"""
from __future__ import annotations

from flask_babel import lazy_gettext as _l

LABELS = {
    # sign-in
    "login.succeeded": _l("Signed in"),
    "login.password_failed": _l("Sign-in refused: wrong password"),
    "login.second_factor": _l("Second factor accepted at sign-in"),
    "login.second_factor_failed": _l("Second factor refused at sign-in"),
    "login.second_factor_denied": _l("Push request denied at sign-in"),
    "login.push_fraud_reported": _l("Push request reported as fraud at sign-in"),
    "login.recovery_used": _l("Signed in with a recovery method"),
    "login.enrolment_postponed": _l("Second factor set-up postponed"),
    "login.locked_out": _l("Sign-in locked after too many attempts"),
    "login.password_rehashed": _l("Password hash renewed at sign-in"),
    "login.signed_out": _l("Signed out"),
    "session.ended": _l("Browser session ended"),
    "consent.granted": _l("Application allowed"),
    "consent.withdrawn": _l("Application's access removed"),
    "device.approved": _l("Device sign-in approved"),
    "device.denied": _l("Device sign-in denied"),
    # accounts
    "user.created": _l("User created"),
    "user.imported": _l("User imported from another system"),
    "user.create_refused": _l("User creation refused"),
    "user.password_changed": _l("Password changed"),
    "password_change.password_failed": _l("Password change refused: wrong current password"),
    "user.disabled": _l("Account disabled"),
    "user.enabled": _l("Account enabled"),
    "user.deleted": _l("User deleted"),
    "user.signed_out_everywhere": _l("Signed out everywhere"),
    "user.role_changed": _l("Role changed"),
    "admin.peer_action_refused": _l("Action on another admin refused"),
    "admin.exported": _l("List downloaded as CSV"),
    "password_reset.requested": _l("Password reset link sent"),
    "password_reset.refused": _l("Password reset link refused"),
    "password_reset.mail_failed": _l("Password reset e-mail failed"),
    "user.password_reset": _l("Password reset with an e-mailed link"),
    "user.invited": _l("Invitation sent"),
    "user.invitation_accepted": _l("Invitation accepted: password chosen"),
    # tokens
    "token.revoked": _l("Token revoked by the application"),
    "token.families_revoked": _l("Refresh tokens revoked"),
    "token.replay_detected": _l("Refresh token replayed"),
    "code.reuse_detected": _l("Authorization code reused"),
    # factors
    "factor.enrolled": _l("Second factor added"),
    "factor.renamed": _l("Second factor renamed"),
    "factor.removed": _l("Second factor removed"),
    "factor.revoked": _l("Second factor revoked by an administrator"),
    "factor.reset": _l("Second factors reset by an administrator"),
    "factor.totp.imported": _l("Authenticator app imported"),
    "recovery_codes.regenerated": _l("New recovery codes made"),
    "webauthn.clone_suspected": _l("Security key suspended: it may have been cloned"),
    # push
    "push.activation_issued": _l("Push activation code issued"),
    "push.device_registered": _l("Phone registered for push approvals"),
    "push.denied": _l("Push request denied on the phone"),
    "push.fraud_reported": _l("Push request reported as fraud on the phone"),
    # recovery
    "recovery_qr.issued": _l("Recovery QR code issued"),
    "recovery_qr.revoked": _l("Recovery QR code revoked"),
    "recovery_qr.used": _l("Recovery QR code used"),
    "recovery_qr.redeem_refused": _l("Recovery QR code refused"),
    "recover.password_failed": _l("Phone recovery refused: wrong password"),
    "recover.code_sent": _l("Phone recovery code e-mailed"),
    "recover.code_not_sent": _l("Phone recovery code not sent: the e-mail failed"),
    "recover.code_failed": _l("Phone recovery refused: wrong e-mailed code"),
    # policy
    "policy.org_requirement_changed": _l("Organization's 2FA requirement changed"),
    "policy.user_requirement_changed": _l("User's 2FA requirement changed"),
    "policy.bulk_change": _l("2FA requirement changed for several users"),
    "policy.allowed_factors_changed": _l("Allowed factor types changed"),
    "policy.grace_changed": _l("Grace period changed"),
    "policy.self_push_recovery_changed": _l("Push approvals on a new phone: setting changed"),
    "policy.push_suspension_cleared": _l("Push approvals resumed"),
    # operators
    "org.created": _l("Organization created"),
    "client.created": _l("Application registered"),
    "client.updated": _l("Application updated"),
    "client.secret_rotated": _l("Application secret rotated"),
    "client.removed": _l("Application removed"),
    "signing_key.created": _l("Signing key created"),
    "signing_key.rotated": _l("Signing key rotated"),
    "signing_key.withdrawn": _l("Signing key withdrawn"),
    "secrets.resealed": _l("Stored secrets re-encrypted"),
    "audit.purged": _l("Old audit events purged"),
}


def label_of(event: str) -> str | None:
    """The event's label in the request's language, or None for an event without one."""
    label = LABELS.get(event)
    return str(label) if label is not None else None
