"""The little of the directory a plugin may see: users as `UserRef`, and the audit log.

Plugins must not import `idp.models` or `idp.audit` (STYLE.md's module map); their
CLI commands find users and record events through these functions instead.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from idp.db import db
from idp.factors.types import UserRef


def user_ref(user) -> UserRef:
    """A `UserRef` from a `User` row (the pipeline and the account page use this too)."""
    return UserRef(id=user.id, org_id=user.org_id, username=user.email, display_name=user.name or "",
                   email=user.email, locale=user.locale)


def find_user_by_email(email: str) -> UserRef | None:
    """The user with this e-mail (case-insensitive), or None."""
    from idp.models import User

    email = (email or "").strip()
    if not email:
        return None
    # Exact match first (the unique index); then case-insensitively for addresses typed differently.
    row = db.session.scalars(select(User).where(User.email == email)).first() or db.session.scalars(
        select(User).where(func.lower(User.email) == email.lower())).first()
    return user_ref(row) if row else None


def get_user(user_id: int) -> UserRef | None:
    from idp.models import User

    row = db.session.get(User, user_id)
    return user_ref(row) if row else None


def audit(event: str, user: UserRef, *, actor: str = "", actor_id: int | None = None,
          details: dict[str, Any] | None = None) -> None:
    """Record an audit event about `user` in the current transaction (the caller commits)."""
    from idp import audit as audit_log

    audit_log.record(event, org_id=user.org_id, actor_id=actor_id, actor=actor, subject_id=user.id,
                     details=details or {})
