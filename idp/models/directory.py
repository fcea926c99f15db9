"""Organizations and their users."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, DateTime, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from idp.db import Base, utcnow
from idp.models.types import Json


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # 2FA policy for everyone in the organization (idp.policy owns the meaning).
    require_2fa: Mapped[bool] = mapped_column(Boolean, default=False)
    # Factor names the organization allows; NULL means every installed factor.
    allowed_factors: Mapped[list | None] = mapped_column(Json, nullable=True)
    # A newly required user may postpone enrolment for this many days / logins.
    grace_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    grace_logins: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Whether members may restore push on a new phone with their password and an e-mailed code
    # (plugins/qr_recovery/personal.py); off, only an admin's recovery QR code does it.
    self_push_recovery: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    users: Mapped[list["User"]] = relationship(back_populates="org", lazy="raise")


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        Index("ix_users_org_email", "org_id", "email"),
        Index("ix_users_org_id_id", "org_id", "id"),
        # Covers the four-status CASE (idp/policy/status.py) for one organization, so the
        # distribution and the status filters read only this index at 100,000 users (`disabled`
        # too: a disabled account is counted apart, in none of the four statuses).
        Index("ix_users_org_policy", "org_id", "mfa_setting", "exempt_until", "second_factor_count", "disabled"),
        # A deleted user's id is never given to another user (idp.users.delete): the audit log
        # keeps naming people by id (subject_id, actor_id) after they are gone, and lockout
        # counters are keyed by it. PostgreSQL's sequence never reuses one; SQLite's rowid
        # reuses the highest id once its row is deleted, unless the table is AUTOINCREMENT.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The OIDC `sub`: opaque, stable, never the e-mail.
    public_id: Mapped[str] = mapped_column(String(64), unique=True)
    # (No index of its own: the three above begin with it.)
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    email_verified: Mapped[bool] = mapped_column(Boolean, default=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(16), default="user")  # user | admin
    password_hash: Mapped[str | None] = mapped_column(Text, nullable=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # Unix second of the last sign-out everywhere (a new password, disabling: idp.users). Tokens
    # and codes of a login authenticated before it are dead wherever they are presented, even
    # one a refresh racing the sign-out stored a moment after it revoked the others.
    tokens_valid_after: Mapped[int | None] = mapped_column(Integer, nullable=True)
    locale: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # Per-user 2FA setting: follow | required | exempt (idp.policy owns the meaning).
    mfa_setting: Mapped[str] = mapped_column(String(16), default="follow")
    exempt_until: Mapped[date | None] = mapped_column(Date, nullable=True)
    exempt_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Denormalised count of usable second-factor credentials, kept by the credential
    # store, so that the four statuses are one indexed SQL expression at any scale.
    second_factor_count: Mapped[int] = mapped_column(Integer, default=0)
    # When a requirement started applying (grace periods count from here).
    required_since: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    logins_since_required: Mapped[int] = mapped_column(Integer, default=0)
    # A push fraud report suspends push until an admin clears it.
    push_suspended_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # When an e-mailed reset link last set the password, until a login proves a second factor
    # (idp.login.gate.record_login clears it): the password then proves only the mailbox, and
    # push recovery by password + e-mailed code (plugins/qr_recovery) waits for that login.
    password_reset_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # A second factor reached the user outside the login and the security page (`idp factor totp
    # import`, a phone registered with an operator's activation or a recovery QR code), which issue
    # no recovery codes: the next login that proves a second factor shows a fresh set once, if the
    # user still holds none (idp.factors.directory.owe_recovery_codes). On the user's row because
    # the login reads that row anyway: the code page's POST pays nothing to ask.
    recovery_codes_owed: Mapped[bool] = mapped_column(Boolean, default=False)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    org: Mapped[Organization] = relationship(back_populates="users", lazy="joined")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"
