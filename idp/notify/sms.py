"""The phone slot: a `Notifier` that hands codes to an SMS gateway.

No gateway ships with the provider (each operator has their own contract). To add one,
implement `SmsGateway.send(number, text)` -- an HTTP call to the vendor, typically --
and build `SmsNotifier(YourGateway(...))`; it formats the same messages as e-mail, in
one short text. `channel = "phone"` tells callers to pass a phone number, not an
address. Nothing in the provider selects it from configuration yet: the user model
has no verified phone number, so e-mail is the only channel wired to users today.
"""
from __future__ import annotations

import abc

from idp.notify.base import Notifier, NotifyError, compose


class SmsGateway(abc.ABC):
    @abc.abstractmethod
    def send(self, number: str, text: str) -> None:
        """Deliver `text` (at most 160 GSM characters is wise) to `number` (E.164). Raise on failure."""


class SmsNotifier(Notifier):
    channel = "phone"

    def __init__(self, gateway: SmsGateway) -> None:
        self.gateway = gateway

    def send_code(self, to: str, code: str, purpose: str, locale: str | None = None, *, minutes: int = 10,
                  **fields: str) -> None:
        message = compose(to, code, purpose, locale, minutes=minutes, **fields)
        try:
            self.gateway.send(to, f"{message.subject}: {code}")
        except NotifyError:
            raise
        except Exception as exc:
            raise NotifyError(f"the SMS gateway failed: {type(exc).__name__}") from exc
