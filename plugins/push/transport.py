"""How a new challenge reaches a device: the `PushTransport` interface and the built-in transports.

The server never needs to reach a device: with `LongPollTransport` (the default) the device's
long-poll is simply woken. A transport that calls out (a webhook relaying to a mobile push
gateway, Web Push) implements `notify` too and should only say "look now" -- the device fetches
the challenge over the authenticated long-poll, so the relay carries no context and no number.
"""
from __future__ import annotations

import logging
import threading
from typing import Protocol

from idp.factors import CredentialInfo

from idp_plugins.push.protocol import unix
from idp_plugins.push.wake import Waker, user_channel

log = logging.getLogger(__name__)


class PushTransport(Protocol):
    def notify(self, device: CredentialInfo, challenge) -> None:
        """Tell `device` that `challenge` (an `idp.factors.challenges.ChallengeInfo`) waits for it.
        Must not raise and must not block the login page for long."""


class LongPollTransport:
    """Wakes the long-polls waiting for the challenge's user (this process and, with Redis, others)."""

    def __init__(self, waker: Waker) -> None:
        self.waker = waker

    def notify(self, device: CredentialInfo, challenge) -> None:
        self.waker.notify(user_channel(challenge.user_id))


class WebhookTransport(LongPollTransport):
    """Long-poll wake-up plus a POST of `{"device_id", "challenge_id", "expires_at"}` to a relay URL,
    sent from a background thread with a short timeout (a failing relay only delays)."""

    def __init__(self, waker: Waker, url: str, timeout: float = 3.0) -> None:
        super().__init__(waker)
        self.url = url
        self.timeout = timeout

    def notify(self, device: CredentialInfo, challenge) -> None:
        super().notify(device, challenge)
        body = {"device_id": device.lookup_key, "challenge_id": challenge.id,
                "expires_at": unix(challenge.expires_at)}
        threading.Thread(target=self._post, args=(body,), daemon=True).start()

    def _post(self, body: dict) -> None:
        import requests

        try:
            requests.post(self.url, json=body, timeout=self.timeout).raise_for_status()
        except requests.RequestException as exc:
            log.warning("push webhook %s failed: %s", self.url, exc)


def build_transport(settings, waker: Waker) -> PushTransport:
    if settings.transport == "webhook":
        return WebhookTransport(waker, settings.webhook_url)
    return LongPollTransport(waker)
