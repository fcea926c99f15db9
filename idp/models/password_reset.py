"""Self-service password reset links and admins' invitations (idp/password_reset.py owns the rules).

A row is a link of one `kind`: "reset" (the user asked: "Forgot your password?") or "invite" (an
admin or the operator invited the person by e-mail: idp.password_reset.invite). Both choose a
password the same way, spend the same way and die the same way; an invitation lives longer
(`password_reset.invite_ttl`) and, used, proves the address too (User.email_verified) when it
was mailed (`mailed`), not printed for the operator to hand over.

Only the SHA-256 of a link's random token is stored: a database leak hands out no live link.
A link is spent by one conditional UPDATE of `used_at`; every other live link of the user dies
with the sign-out everywhere that a new password (or disabling) runs (idp.users).
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base, utcnow


KINDS = ("reset", "invite")


class PasswordReset(Base):
    __tablename__ = "password_resets"
    # The per-account hourly count (links created since an hour ago) reads only this index.
    __table_args__ = (Index("ix_password_resets_user_created", "user_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex of the link's token
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # "reset" | "invite" (KINDS): the page's and the mail's wording, the lifetime, what using it proves.
    kind: Mapped[str] = mapped_column(String(8), default="reset")
    # The relay refused its mail: the link is dead, and not counted against the hour's links.
    mail_failed_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    # The link goes to the person by mail (False: an invitation whose link the operator printed,
    # `idp user invite --print-link`, to hand over themselves): only a mailed invitation, used,
    # proves the address (User.email_verified).
    mailed: Mapped[bool] = mapped_column(Boolean, default=True)
