"""The `[factors.push]` settings, read once into a typed value (config/default.toml documents them)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from idp.factors import FactorMisconfigured
from idp.factors.ratelimit import rate

MAX_LONG_POLL = 25
MAX_ACTIVATION_TTL = 7 * 86400  # seconds: the longest an activation code may stay valid
# Live devices per user: each one is a waiting long-poll (a thread) per process and a stream of
# signed requests; no one carries a hundred phones.
MAX_DEVICES = 100
MAX_WINDOW = 86400  # seconds over which requests are counted against max_challenges (and reports look back)


@dataclass(frozen=True)
class PushSettings:
    digits: int = 2
    challenge_ttl: int = 60
    activation_ttl: int = 600
    max_challenges: int = 5
    window: int = 600
    long_poll_max_wait: int = 20
    transport: str = "longpoll"
    webhook_url: str = ""
    max_devices: int = 10
    device_requests: str = "120 per minute"

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> "PushSettings":
        data = dict(data or {})
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        try:
            value = cls(**known)
            ints = [value.digits, value.challenge_ttl, value.activation_ttl, value.max_challenges, value.window,
                    value.long_poll_max_wait, value.max_devices]
            if any(isinstance(i, bool) or not isinstance(i, int) for i in ints):
                raise ValueError("numbers expected")
        except (TypeError, ValueError) as exc:
            raise FactorMisconfigured(f"factors.push: {exc}") from exc
        if not 2 <= value.digits <= 6:
            raise FactorMisconfigured("factors.push.digits must be between 2 and 6")
        if not 10 <= value.challenge_ttl <= 300:
            raise FactorMisconfigured("factors.push.challenge_ttl must be between 10 and 300 seconds")
        if not 60 <= value.activation_ttl <= MAX_ACTIVATION_TTL:
            raise FactorMisconfigured("factors.push.activation_ttl must be between 60 s and 7 days")
        if value.max_challenges < 1 or not 1 <= value.window <= MAX_WINDOW:
            raise FactorMisconfigured(f"factors.push.max_challenges must be positive and window between 1 and "
                                      f"{MAX_WINDOW} seconds")
        if not 0 <= value.long_poll_max_wait <= MAX_LONG_POLL:
            raise FactorMisconfigured(f"factors.push.long_poll_max_wait must be between 0 and {MAX_LONG_POLL}")
        if not 1 <= value.max_devices <= MAX_DEVICES:
            raise FactorMisconfigured(f"factors.push.max_devices must be between 1 and {MAX_DEVICES}")
        try:
            rate(value.device_requests)
        except (TypeError, ValueError) as exc:
            raise FactorMisconfigured("factors.push.device_requests must be a rate such as '120 per minute'") from exc
        if value.transport not in ("longpoll", "webhook"):
            raise FactorMisconfigured("factors.push.transport must be 'longpoll' or 'webhook'")
        if value.transport == "webhook" and not value.webhook_url.startswith(("https://", "http://")):
            raise FactorMisconfigured("factors.push.webhook_url must be an http(s) URL with transport 'webhook'")
        return value
