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


def push_suspended(user_id: int) -> bool:
    """Has a push fraud report suspended push for this user (until an admin clears it)?

    The push plugin's `is_configured_for` answers False while this holds, so the login
    offers the user's other factors instead.
    """
    from idp.models import User

    return db.session.scalar(select(User.push_suspended_at).where(User.id == user_id)) is not None


def recent_challenge_count(factor: str, user_id: int, since, *, kind: str | None = None) -> int:
    """How many challenges of `factor` (optionally with `payload_json["type"] == kind`) were
    created for this user at or after `since` -- answered or not (push fatigue limits)."""
    from idp.models import FactorChallenge

    stmt = select(FactorChallenge.payload_json).where(
        FactorChallenge.factor == factor, FactorChallenge.user_id == user_id, FactorChallenge.created_at >= since)
    rows = db.session.scalars(stmt).all()
    return sum(1 for payload in rows if kind is None or (payload or {}).get("type") == kind)


def commit() -> None:
    """Commit the current transaction. For plugin device endpoints, which run outside the
    pipeline and the account page (the usual committers)."""
    db.session.commit()


def rollback() -> None:
    """Roll back the current transaction (a failed device request; between long-poll checks,
    so that each check sees what other processes committed and holds no connection)."""
    db.session.rollback()


def suspend_push(user_id: int, when) -> bool:
    """Suspend push for this user after a fraud report (no-op if already suspended); the caller
    commits. True when this call suspended it."""
    from sqlalchemy import update

    from idp.models import User

    result = db.session.execute(update(User).where(User.id == user_id, User.push_suspended_at.is_(None))
                                .values(push_suspended_at=when), execution_options={"synchronize_session": False})
    return result.rowcount == 1


def commit() -> None:
    """Commit the current unit of work (a plugin CLI command's writes and its audit event)."""
    db.session.commit()
