"""The audit log: one row per security-relevant change."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base, utcnow
from idp.models.types import Json


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_org_at", "org_id", "at"),
        # Every event about a user is in that user's organization (`org_id` is theirs: the callers
        # of idp.audit.record pass the user's, and a user never changes organization); an event
        # of no organization names no user (a `client.*` event's subject is the client's row id).
        # So a user's events are read by (org_id, subject_id): the admin's audit page filtered by
        # people (idp.admin.queries.audit_page), each matching user's latest events about them
        # and by them, from these two alone (index-only: `event` is carried for the action
        # filter); the user's own activity (idp.account.activity) and password-reset refusals
        # (idp.password_reset), newest first.
        Index("ix_audit_org_subject", "org_id", "subject_id", "id", postgresql_include=["event"]),
        Index("ix_audit_org_actor", "org_id", "actor_id", "id", postgresql_include=["event"]),
        # ... and by action (`?action=`: an event name or its prefix, `event LIKE 'login.%'`),
        # within the organization, as the dashboard's security alerts (queries.security_alerts).
        # varchar_pattern_ops: PostgreSQL uses a b-tree for a LIKE prefix only in the C collation
        # otherwise; equality works with it too. No index on `event` alone, nor on `subject_id`
        # alone: every read names an organization (a user's, theirs), and each index is one more
        # b-tree that every event is written to (every login writes one or two).
        Index("ix_audit_org_event", "org_id", "event", "id", postgresql_ops={"event": "varchar_pattern_ops"}),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    org_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    event: Mapped[str] = mapped_column(String(64))
    # Who acted (a user id) or "system"/"cli" when nobody signed in did.
    actor_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    actor: Mapped[str] = mapped_column(String(320), default="")
    subject_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(Text, nullable=True)
    details: Mapped[dict] = mapped_column(Json, default=dict)
