"""Issuing, looking up, consuming and revoking recovery QR codes (credentials of this factor).

One credential row per issued code: `lookup_key` = the secret's HMAC (secret.py), and in
`public` the same digest (kept after revocation, so a revoked code is recognised as such),
the expiry (Unix seconds) and who issued it. No secret is stored: it is shown once.

Consuming is the credential store's one conditional UPDATE (`used_at IS NULL`), so two
racing redemptions of one code give one winner. A used code is then revoked, which takes it
off the account and admin lists; its row stays for the audit trail.
"""
from __future__ import annotations

import calendar
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from idp.factors import CredentialInfo, UserRef, directory
from idp.factors.cli import iso_utc as iso  # one time format for the CLI, the audit log and the pages

from idp_plugins.qr_recovery import secret as secrets_

VALID = "valid"
UNKNOWN = "unknown"
USED = "used"
EXPIRED = "expired"
REVOKED = "revoked"
LABEL = "Recovery QR code"
OPERATOR = "cli"  # the actor of the operator's commands (`idp recovery-qr issue`), its codes' `issued_by`


def unix(moment: datetime) -> int:
    return int(calendar.timegm(moment.utctimetuple()))


def expiry_of(credential: CredentialInfo) -> datetime:
    """When the code stops working (naive UTC), from the Unix seconds its row keeps."""
    return datetime.fromtimestamp(int(credential.public.get("expires_at") or 0), timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class Issued:
    """What the issuer shows once: the secret, the URI the QR code holds, when it expires."""

    credential: CredentialInfo
    secret: str
    uri: str
    expires_at: datetime

    def qr(self):
        import segno

        return segno.make(self.uri, error="m")

    def svg(self) -> str:
        """Inline SVG for the admin page."""
        return self.qr().svg_inline(scale=4, dark="#000", light="#fff", omitsize=True)

    def png(self, scale: int = 6) -> bytes:
        import io

        buffer = io.BytesIO()
        self.qr().save(buffer, kind="png", scale=scale)
        return buffer.getvalue()


def issue(store, user: UserRef, *, pepper: bytes, issuer: str, ttl: timedelta, now: datetime,
          actor: str, actor_id: int | None, commit: bool = True) -> Issued:
    """Create a code for `user`, audit it (`recovery_qr.issued`) and commit (or leave the commit to
    the caller). Expired codes of the user are revoked on the way (they can never work again; the
    lists stay short)."""
    for old in store.list(user):
        if old.used_at is None and int(old.public.get("expires_at") or 0) <= unix(now):
            store.revoke(user, old.id, now=now)
    shown = secrets_.generate()
    digest = secrets_.digest(pepper, secrets_.normalise(shown))
    expires_at = (now + ttl).replace(microsecond=0)
    credential = store.create(user, label=LABEL, lookup_key=digest, now=now,
                              public={"digest": digest, "expires_at": unix(expires_at), "issued_by": actor})
    directory.audit("recovery_qr.issued", user, actor=actor, actor_id=actor_id,
                    details={"credential_id": credential.id, "expires_at": iso(expires_at)})
    if commit:
        directory.commit()
    uri = secrets_.recovery_uri(issuer=issuer, username=user.username, secret=shown, expires_at=unix(expires_at))
    return Issued(credential=credential, secret=shown, uri=uri, expires_at=expires_at)


def lookup(store, pepper: bytes, typed: object, now: datetime,
           user: UserRef | None = None) -> tuple[str, CredentialInfo | None]:
    """(VALID | USED | EXPIRED | REVOKED | UNKNOWN, the credential) for a typed or scanned secret.

    Only someone holding the real secret learns more than UNKNOWN. With `user`, a code of
    another user is UNKNOWN, and used or revoked codes (whose lookup key is gone) are found
    among the user's rows by their digest.
    """
    normalised = secrets_.normalise(typed)
    if normalised is None:
        return UNKNOWN, None
    digest = secrets_.digest(pepper, normalised)
    found = store.find(digest)
    if found is not None:
        if user is not None and found.user_id != user.id:
            return UNKNOWN, None
        if found.used_at is not None:
            return USED, found
        if int(found.public.get("expires_at") or 0) <= unix(now):
            return EXPIRED, found
        return VALID, found
    if user is not None:
        for row in store.list(user, include_revoked=True):
            if hmac.compare_digest(str(row.public.get("digest") or ""), digest):
                return _why_gone(row), row
    return UNKNOWN, None


def state_of(row: CredentialInfo, now: datetime) -> str:
    """What became of one code of the user's, live or not: VALID, USED, EXPIRED or REVOKED (an
    admin's revocation page, told why there is nothing to revoke)."""
    if row.revoked_at is None and row.used_at is None:
        return EXPIRED if int(row.public.get("expires_at") or 0) <= unix(now) else VALID
    return _why_gone(row)


def _why_gone(row: CredentialInfo) -> str:
    """A code no longer live: used, or revoked -- by an admin, or by `issue` tidying it away after it
    had expired (then it reads as expired, which is what happened to it; no admin revoked it)."""
    if row.used_at is not None:
        return USED
    expired_at = int(row.public.get("expires_at") or 0)
    return EXPIRED if row.revoked_at is not None and unix(row.revoked_at) >= expired_at else REVOKED


def consume(store, credential: CredentialInfo, now: datetime) -> bool:
    """Use the code exactly once, then revoke it: the caller commits both with the device the code
    registers and its audit event, or rolls them back (the code stays usable)."""
    if not store.consume(credential.id, now=now, commit=False):
        return False
    store.revoke(credential.user_id, credential.id, now=now)
    return True


def revoke(store, user: UserRef, credential_id: int, *, now: datetime, actor: str,
           actor_id: int | None) -> CredentialInfo | None:
    """Revoke an unused code (admin page, CLI), audit `recovery_qr.revoked`, commit. None if not live."""
    revoked = store.revoke(user, credential_id, now=now)
    if revoked is None:
        directory.rollback()
        return None
    directory.audit("recovery_qr.revoked", user, actor=actor, actor_id=actor_id,
                    details={"credential_id": revoked.id})
    directory.commit()
    return revoked


def revoke_all(store, user: UserRef, *, now: datetime, actor: str, actor_id: int | None, reason: str,
               unless_issued_by: str | None = None) -> int:
    """Revoke every unused code of the user (expired ones too, tidied away), but those that
    `unless_issued_by` issued, each audited `recovery_qr.revoked` with `reason`, in the caller's
    transaction (no commit). How many were live."""
    revoked = 0
    for code in store.list(user):
        if unless_issued_by is not None and code.public.get("issued_by") == unless_issued_by:
            continue
        if code.used_at is not None or store.revoke(user, code.id, now=now) is None:
            continue
        if int(code.public.get("expires_at") or 0) > unix(now):
            revoked += 1
            directory.audit("recovery_qr.revoked", user, actor=actor, actor_id=actor_id,
                            details={"credential_id": code.id, "reason": reason})
    return revoked


def outstanding(store, user: UserRef, now: datetime) -> list[CredentialInfo]:
    """The user's codes that still work (unused, unrevoked, unexpired)."""
    return [c for c in store.list(user)
            if c.used_at is None and int(c.public.get("expires_at") or 0) > unix(now)]
