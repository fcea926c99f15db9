"""Waking whoever waits for a push event: in this process at once, in other processes through Redis.

A long-poll subscribes (`listen`) *before* its first database check, so an event published
between the check and the wait is not lost. Without Redis, other processes' events are only
seen by re-reading the database, which the long-poll loop does every `fallback_interval`.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Iterable

log = logging.getLogger(__name__)


def user_channel(user_id: int) -> str:
    return f"idp:push:user:{user_id}"


def challenge_channel(challenge_id: str) -> str:
    return f"idp:push:challenge:{challenge_id}"


RELAY_PATTERN = "idp:push:*"
RELAY_RETRY_FIRST = 1.0   # seconds before the relay's first reconnection attempt
RELAY_RETRY_MAX = 30.0    # the longest wait between attempts while Redis stays down


class Waker:
    """Publish/subscribe on named channels. `redis` is a `redis.Redis` client or None.

    Waiters always sleep on one in-process condition. With Redis, one relay thread per process
    holds the process's only subscription (a pattern over every push channel) and turns each
    published event into a local wake-up: a thousand waiting long-polls cost one Redis
    connection, not a thousand. The relay starts on first use, in the process that serves
    (after gunicorn's fork), and reconnects after a failure; meanwhile waiters fall back to
    re-reading the database every `fallback_interval`.
    """

    def __init__(self, redis=None) -> None:
        self.redis = redis
        self._cond = threading.Condition()
        # Events counted per channel, only while someone listens on it (listeners per channel in
        # `_listening`): a counter per challenge ever answered would grow with every login.
        self._generation: dict[str, int] = {}
        self._listening: dict[str, int] = {}
        self._relay_pid: int | None = None
        self._relay_lock = threading.Lock()
        self._relay_ready = threading.Event()
        #: How long a listener sleeps between database checks when nothing wakes it (with Redis,
        #: the relay wakes it: the check is only a safety net while the relay reconnects).
        self.fallback_interval = 3.0 if redis is not None else 0.25

    def _bump(self, channel: str) -> None:
        with self._cond:
            if channel in self._listening:
                self._generation[channel] = self._generation.get(channel, 0) + 1
                self._cond.notify_all()

    def _subscribe(self, channels: list[str]) -> dict[str, int]:
        """Count a listener on `channels` (the caller holds `_cond`); their current generations."""
        for channel in channels:
            self._listening[channel] = self._listening.get(channel, 0) + 1
        return {c: self._generation.get(c, 0) for c in channels}

    def _unsubscribe(self, channels: list[str]) -> None:
        with self._cond:
            for channel in channels:
                left = self._listening.get(channel, 0) - 1
                if left > 0:
                    self._listening[channel] = left
                else:
                    self._listening.pop(channel, None)
                    self._generation.pop(channel, None)

    def notify(self, channel: str) -> None:
        self._bump(channel)  # waiters in this process, at once
        if self.redis is not None:
            try:
                self.redis.publish(channel, b"1")
            except Exception as exc:  # Redis down: waiters fall back to polling the database
                log.warning("push wake-up not published on Redis: %s", exc)

    def listen(self, channels: Iterable[str]) -> "Listener":
        self._ensure_relay()
        return Listener(self, list(channels))

    def _ensure_relay(self) -> None:
        if self.redis is None or self._relay_pid == os.getpid():
            return
        with self._relay_lock:
            if self._relay_pid != os.getpid():
                self._relay_ready.clear()
                threading.Thread(target=self._relay, name="push-wake-relay", daemon=True).start()
                self._relay_pid = os.getpid()
                # The first listener's event must not slip in before the subscription exists.
                self._relay_ready.wait(timeout=1.0)

    def _relay(self) -> None:
        delay = RELAY_RETRY_FIRST
        while True:
            try:
                pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                pubsub.psubscribe(RELAY_PATTERN)
                pubsub.get_message(timeout=1.0)  # the subscription's confirmation
                self._relay_ready.set()
                if delay > RELAY_RETRY_FIRST:
                    log.warning("push wake-up relay reconnected to Redis")
                delay = RELAY_RETRY_FIRST
                for message in pubsub.listen():
                    if message.get("type") == "pmessage":
                        channel = message["channel"]
                        self._bump(channel.decode() if isinstance(channel, bytes) else channel)
            except Exception as exc:  # reconnect; waiters re-read the database meanwhile
                # One warning per outage, then retries that back off to RELAY_RETRY_MAX: a Redis
                # that stays down must not fill the log (or the CPU) once a second forever.
                if delay == RELAY_RETRY_FIRST:
                    log.warning("push wake-up relay lost Redis, reconnecting: %s", exc)
                time.sleep(delay)
                delay = min(delay * 2, RELAY_RETRY_MAX)


class Listener:
    """A subscription held for the length of one long-poll; use as a context manager.

    Subscribed from construction (before the caller's first database check), so an event
    published between that check and `wait` is not lost.
    """

    def __init__(self, waker: Waker, channels: list[str]) -> None:
        self.waker = waker
        self.channels = channels
        with waker._cond:
            self._seen = waker._subscribe(channels)
        self._open = True

    def _changed(self) -> bool:
        return any(self.waker._generation.get(c, 0) != n for c, n in self._seen.items())

    def wait(self, timeout: float) -> bool:
        """Sleep until an event on one of the channels or `timeout`; True when woken by an event."""
        with self.waker._cond:
            woken = self.waker._cond.wait_for(self._changed, timeout=max(timeout, 0.0))
            self._seen = {c: self.waker._generation.get(c, 0) for c in self.channels}
        return bool(woken)

    def close(self) -> None:
        """Stop counting events for this listener (the process's one Redis subscription stays)."""
        if self._open:
            self._open = False
            self.waker._unsubscribe(self.channels)

    def __enter__(self) -> "Listener":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
