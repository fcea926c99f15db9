"""The login form's per-address request rate, for a plugin's device endpoints that take guesses.

A device endpoint that checks a password or a code on behalf of someone not signed in (push
recovery's `/personal/start`) is limited exactly like the login form's POSTs: Flask-Limiter,
`ratelimit.login_posts_per_ip` per client address (as ProxyFix leaves it), in the same storage
(Redis when configured, else per process), and lifted by the same setting (the bench and the
tests raise it). Each endpoint has its own count. The growing lockouts (idp.lockout) still
count the guesses themselves; this caps the requests, whatever their outcome.
"""
from __future__ import annotations

import logging
import math
import time
from functools import lru_cache, wraps
from typing import Callable

from flask import jsonify
from flask_limiter.errors import RateLimitExceeded
from limits import RateLimitItem, parse

from idp.extensions import limiter, login_posts_per_ip, seconds_until_allowed

log = logging.getLogger(__name__)


def per_address_limit(view: Callable | None = None, *, exempt_when: Callable[[], bool] | None = None):
    """Limit a device endpoint's view to `ratelimit.login_posts_per_ip` requests per address
    (those for which `exempt_when()` is true aside).

    Beyond it the view is not called and the answer is the JSON refusal the device endpoints
    already use for lockouts: `429 {"error": "too_many_attempts", "retry_after": S}` with a
    `Retry-After` header::

        @bp.post("/personal/start")
        @per_address_limit
        def personal_start(): ...
    """
    if view is None:
        return lambda wrapped: per_address_limit(wrapped, exempt_when=exempt_when)
    checked = limiter.limit(login_posts_per_ip, exempt_when=exempt_when)(view)

    @wraps(view)
    def answer(*args, **kwargs):
        try:
            return checked(*args, **kwargs)
        except RateLimitExceeded:
            return too_many_attempts(seconds_until_allowed())

    return answer


def too_many_attempts(retry_after: int):
    """The device endpoints' 429: `{"error": "too_many_attempts", "retry_after": S}` and `Retry-After`."""
    response = jsonify({"error": "too_many_attempts", "retry_after": retry_after})
    response.status_code = 429
    response.headers["Retry-After"] = str(retry_after)
    return response



@lru_cache(maxsize=32)
def rate(limit: str) -> RateLimitItem:
    """A limit as settings spell it ("120 per minute"); ValueError when it does not parse."""
    return parse(limit)


def spend_request(limit: str, *key: str) -> int | None:
    """Count one request against `limit` for `key` (a verified identity, e.g. a device id): None
    while within it, else the seconds until the next one is allowed (for `too_many_attempts`).

    For endpoints whose callers authenticate by signature rather than by address (a phone moves
    between networks; many share one carrier NAT): the key is what the signature proved, so the
    limit binds the one device and no one else. Same storage and strategy as every limit here
    (Redis when configured, else per process). A storage that cannot be reached lets the request
    through: the limit bounds abuse by an enrolled device, it must not take push down with Redis."""
    item = rate(limit)
    try:
        strategy = limiter.limiter
        if strategy.hit(item, *key):
            return None
        reset_at, _left = strategy.get_window_stats(item, *key)
    except Exception as exc:  # noqa: BLE001 - the storage's own errors, whatever the backend
        log.warning("rate limit storage unavailable, request let through: %s", exc)
        return None
    return max(1, math.ceil(reset_at - time.time()))
