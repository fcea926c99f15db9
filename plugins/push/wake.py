"""Waking whoever waits for a push event: in this process at once, in other processes through Redis.

A long-poll subscribes (`listen`) *before* its first database check, so an event published
between the check and the wait is not lost. Without Redis, other processes' events are only
seen by re-reading the database, which the long-poll loop does every `fallback_interval`.
"""
from __future__ import annotations

import logging
import threading
from typing import Iterable

log = logging.getLogger(__name__)


def user_channel(user_id: int) -> str:
    return f"idp:push:user:{user_id}"


def challenge_channel(challenge_id: str) -> str:
    return f"idp:push:challenge:{challenge_id}"


class Waker:
    """Publish/subscribe on named channels. `redis` is a `redis.Redis` client or None."""

    def __init__(self, redis=None) -> None:
        self.redis = redis
        self._cond = threading.Condition()
        self._generation: dict[str, int] = {}
        #: How long a listener sleeps between database checks when nothing wakes it.
        self.fallback_interval = 1.0 if redis is not None else 0.25

    def notify(self, channel: str) -> None:
        with self._cond:
            self._generation[channel] = self._generation.get(channel, 0) + 1
            self._cond.notify_all()
        if self.redis is not None:
            try:
                self.redis.publish(channel, b"1")
            except Exception as exc:  # Redis down: waiters fall back to polling the database
                log.warning("push wake-up not published on Redis: %s", exc)

    def listen(self, channels: Iterable[str]) -> "Listener":
        return Listener(self, list(channels))


class Listener:
    """A subscription held for the length of one long-poll; use as a context manager."""

    def __init__(self, waker: Waker, channels: list[str]) -> None:
        self.waker = waker
        self.channels = channels
        with waker._cond:
            self._seen = {c: waker._generation.get(c, 0) for c in channels}
        self._pubsub = None
        if waker.redis is not None:
            try:
                self._pubsub = waker.redis.pubsub(ignore_subscribe_messages=True)
                self._pubsub.subscribe(*channels)
            except Exception as exc:
                log.warning("push long-poll cannot subscribe on Redis, polling the database: %s", exc)
                self._pubsub = None

    def _changed(self) -> bool:
        return any(self.waker._generation.get(c, 0) != n for c, n in self._seen.items())

    def wait(self, timeout: float) -> bool:
        """Sleep until an event on one of the channels or `timeout`; True when woken by an event."""
        if self._pubsub is not None:
            try:
                message = self._pubsub.get_message(timeout=max(timeout, 0.0))
                if message is not None:
                    return True
            except Exception as exc:
                log.warning("push long-poll lost Redis, polling the database: %s", exc)
                self._pubsub = None
            woken = False
        else:
            with self.waker._cond:
                woken = self.waker._cond.wait_for(self._changed, timeout=max(timeout, 0.0))
        with self.waker._cond:
            self._seen = {c: self.waker._generation.get(c, 0) for c in self.channels}
        return bool(woken)

    def close(self) -> None:
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:  # pragma: no cover - closing a dead connection
                pass

    def __enter__(self) -> "Listener":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
