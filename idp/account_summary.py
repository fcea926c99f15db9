"""One account at a glance, for `idp user show`: what support and incident response ask first.

The account (organization, role, enabled or not, the 2FA status the policy computes), its
sign-in methods (recovery codes summed up per factor, as on the admin's user page), where it is
signed in (idp.sessions) and which applications have access to it (idp.consents). Times are
the `idp` command's (ISO 8601 UTC with "Z"); nothing secret is in it.
"""
from __future__ import annotations

from typing import Any

from idp import consents, invitations, sessions
from idp.factors.cli import iso_utc
from idp.factors.registry import current_registry
from idp.factors.store import CredentialStore
from idp.factors.types import FactorKind
from idp.models import User
from idp.policy.status import status, today_utc


def summary(user: User) -> dict[str, Any]:
    registry = current_registry()
    methods, recovery = [], {}
    for credential in CredentialStore().list(user.id):
        if registry.kind_of(credential.factor) == FactorKind.RECOVERY:
            total, unused = recovery.get(credential.factor, (0, 0))
            recovery[credential.factor] = (total + 1, unused + (credential.used_at is None))
        else:
            methods.append({"factor": credential.factor, "label": credential.label,
                            "created_at": iso_utc(credential.created_at),
                            "last_used_at": iso_utc(credential.last_used_at) if credential.last_used_at else None})
    return {
        "email": user.email, "name": user.name, "org": user.org.name, "role": user.role, "disabled": user.disabled,
        "two_factor_status": status(user, user.org, today_utc()).value, "created_at": iso_utc(user.created_at),
        "methods": methods,
        "recovery": [{"factor": name, "unused": unused, "total": total} for name, (total, unused) in recovery.items()],
        # A second factor given outside the login and the security page owes a set, shown once
        # at the next sign-in (idp.factors.directory.owe_recovery_codes): what support answers
        # "where are my recovery codes?" with. Only while the user holds a second factor to prove:
        # after a reset, the set comes with the next enrolment (which clears the mark).
        "recovery_codes_at_next_sign_in": bool(user.recovery_codes_owed) and bool(methods),
        # An invitation mailed or printed and not used yet (idp.invitations): when it stops working.
        "invitation_expires_at": iso_utc(invited) if (invited := invitations.pending(user.id)) else None,
        "sessions": [{"sid": s.sid, "browser": s.browser, "ip": s.ip, "signed_in_at": iso_utc(s.signed_in_at),
                      "last_used_at": iso_utc(s.last_used_at)}
                     for s in sessions.live(user.id)],
        "applications": [{"client_id": app.client_id, "name": app.name, "first_party": app.first_party,
                          "scopes": list(app.scopes),
                          "allowed_at": iso_utc(app.allowed_at) if app.allowed_at else None,
                          "last_used_at": iso_utc(app.last_used_at) if app.last_used_at else None,
                          "offline": app.offline}
                         for app in consents.of_user(user)],
    }


def lines(document: dict[str, Any]) -> list[str]:
    """`summary` as text, one fact per line."""
    out = [f"{document['email']}  {document['name']}".rstrip(),
           f"  organization {document['org']}, {document['role']}, "
           f"{'disabled' if document['disabled'] else 'enabled'}, 2FA {document['two_factor_status']}, "
           f"created {document['created_at']}"]
    out.append(f"  sign-in methods: {len(document['methods']) or 'none'}")
    out += [f"    {m['factor']}  {m['label']!r}  added {m['created_at']}  last used {m['last_used_at'] or 'never'}"
            for m in document["methods"]]
    out += [f"    {r['factor']}  {r['unused']} of {r['total']} unused" for r in document["recovery"]]
    if document["recovery_codes_at_next_sign_in"]:
        out.append("    recovery codes: a new set, shown once at the next sign-in")
    if document["invitation_expires_at"]:
        out.append(f"  invited: the invitation works until {document['invitation_expires_at']}")
    out.append(f"  signed in: {len(document['sessions']) or 'nowhere'}")
    out += [f"    {s['browser']}  {s['ip'] or '-'}  since {s['signed_in_at']}  (sid {s['sid']})"
            for s in document["sessions"]]
    out.append(f"  applications with access: {len(document['applications']) or 'none'}")
    out += [f"    {a['name']}  ({a['client_id']})  "
            f"{'allowed ' + a['allowed_at'] if a['allowed_at'] else 'first-party' if a['first_party'] else 'not asked'}"
            f"  last used {a['last_used_at'] or '-'}{'  stays signed in' if a['offline'] else ''}"
            for a in document["applications"]]
    return out
