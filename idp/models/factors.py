"""Second-factor data. Only idp/factors/store.py and challenges.py touch these tables."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from idp.db import Base, utcnow
from idp.models.types import Json


class Credential(Base):
    """One credential of one factor for one user (a TOTP seed, a WebAuthn key, a push device, a recovery code)."""

    __tablename__ = "credentials"
    __table_args__ = (
        UniqueConstraint("factor", "lookup_key"),
        Index("ix_credentials_user_factor", "user_id", "factor"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    factor: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(200), default="")
    public_json: Mapped[dict] = mapped_column(Json, default=dict)
    secret_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    secret_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lookup_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    counter: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    used_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class FactorChallenge(Base):
    """An out-of-band challenge (a push request, an e-mailed code, an activation code).

    Answered exactly once by `UPDATE ... WHERE status = 'pending' AND expires_at > now`.
    """

    __tablename__ = "factor_challenges"
    __table_args__ = (Index("ix_challenges_credential_status", "credential_id", "status"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    transaction_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=True,
                                                index=True)
    credential_id: Mapped[int | None] = mapped_column(ForeignKey("credentials.id", ondelete="CASCADE"),
                                                      nullable=True)
    factor: Mapped[str] = mapped_column(String(64))
    lookup_key: Mapped[str | None] = mapped_column(String(255), nullable=True, unique=True)
    payload_json: Mapped[dict] = mapped_column(Json, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    answered_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
