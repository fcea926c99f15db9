"""`[factors.qr_recovery]` (config/default.toml), read once per app into plain values."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from idp.factors import FactorMisconfigured

DAY = 86400
YEAR = 365 * DAY


@dataclass(frozen=True)
class QrRecoverySettings:
    default_ttl: int = 86400       # seconds a new recovery QR code is valid
    max_ttl: int = 7 * 86400       # longest validity an issuer may ask for
    pepper: str = ""               # HMAC pepper; empty: derived from server.secret_key
    personal_recovery: bool = True  # password + e-mailed code recovery of push accounts
    code_ttl: int = 600            # seconds an e-mailed code is valid
    code_tries: int = 5            # guesses per e-mailed code
    codes_per_hour: int = 5        # e-mailed codes per user per hour

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "QrRecoverySettings":
        known = {name: values[name] for name in cls.__dataclass_fields__ if name in values}
        try:
            settings = cls(**known)
            numbers = (settings.default_ttl, settings.max_ttl, settings.code_ttl, settings.code_tries,
                       settings.codes_per_hour)
            if not all(isinstance(n, int) and n > 0 for n in numbers):
                raise ValueError("durations and counts must be positive integers")
            if not 60 <= settings.default_ttl <= settings.max_ttl:
                raise ValueError("default_ttl must be between 60 and max_ttl seconds")
            # A year at most: a code valid beyond the calendar Python counts in failed at its
            # issue with a traceback (an audit found it), and no recovery waits that long.
            if settings.max_ttl > YEAR or settings.code_ttl > DAY:
                raise ValueError(f"max_ttl must be at most {YEAR} seconds and code_ttl at most {DAY}")
        except (TypeError, ValueError) as exc:
            raise FactorMisconfigured(f"[factors.qr_recovery]: {exc}") from exc
        return settings
