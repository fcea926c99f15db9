"""The development notifier: writes the message (code included) to the log, sends nothing.

`[mail] host = "console"` selects it, so a fresh checkout can go through every
e-mailed-code flow without a mail server. Never use it in production: the code is in
the log. `sent` keeps the last messages for tests in the same process.
"""
from __future__ import annotations

import logging
from collections import deque

from idp.notify.base import Message, Notifier, compose

log = logging.getLogger("idp.notify")


class ConsoleNotifier(Notifier):
    def __init__(self, keep: int = 50) -> None:
        self.sent: deque[Message] = deque(maxlen=keep)

    def send_code(self, to: str, code: str, purpose: str, locale: str | None = None, *, minutes: int = 10,
                  **fields: str) -> None:
        message = compose(to, code, purpose, locale, minutes=minutes, **fields)
        self.sent.append(message)
        log.warning("console notifier (development only): to %s: %s: %s", to, message.subject, code)
