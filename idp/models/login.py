"""Login state kept on the server: transactions, signed-in sessions, failure counters.

The browser holds only opaque random ids (in the signed Flask session); the rows are
keyed by their SHA-256 so that a database leak does not hand out live sessions.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base, utcnow
from idp.models.types import Json
from idp.user_agent import MAX_LENGTH as USER_AGENT_MAX_LENGTH


class LoginTransaction(Base):
    """One login in progress: see STYLE.md section 6 and idp/login/transaction.py."""

    __tablename__ = "login_transactions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie value
    # sha256 of a random value in this browser's signed session cookie: a transaction's
    # forms only work from the browser that started it.
    browser_binding: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer, default=1)
    authz_request: Mapped[dict] = mapped_column(Json)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=True)
    steps_done: Mapped[list] = mapped_column(Json, default=list)
    decision: Mapped[dict | None] = mapped_column(Json, nullable=True)
    factor_name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    factor_state: Mapped[dict | None] = mapped_column(Json, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)


class UserSession(Base):
    """A signed-in browser session (SSO): what was proven, and when."""

    __tablename__ = "user_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie value
    # The OIDC `sid` claim: a public, opaque id for logout (never the cookie value).
    sid: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    auth_time: Mapped[int] = mapped_column(Integer)
    amr: Mapped[list] = mapped_column(Json, default=list)
    acr: Mapped[str] = mapped_column(String(64))
    # The credentials its login proved (second factors, a recovery code, one enrolled on the way):
    # a credential withdrawn later ends the sessions that stand on it (idp.sessions.end_proved_by).
    credential_ids: Mapped[list] = mapped_column(Json, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # When the login that made this session began (its first step, the password): recent-login
    # checks ask that every step was within their window, so they count from here, not from the
    # last step (which may come up to the login transaction's lifetime later).
    login_started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # When a request last relied on the session (its login, SSO, the account and admin pages), to
    # the minute: written only once the stored time is that old (idp.session_idle), so a busy
    # session does not write per request. `session.idle_timeout` counts from it.
    last_used_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # Where the session was made, for "Where you're signed in" (idp.sessions): the browser's
    # User-Agent as idp.user_agent.for_storage keeps it, and the client address as the
    # trusted-proxy handling left it (idp.ops.proxy). Both written by the login's one INSERT.
    user_agent: Mapped[str | None] = mapped_column(String(USER_AGENT_MAX_LENGTH), nullable=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)


class FailureCounter(Base):
    """Failed guesses for one key (e.g. "factor:user:42", "factor:ip:1.2.3.4") in the database.

    Used when Redis is not configured, so that lockouts hold across processes.
    """

    __tablename__ = "failure_counters"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
