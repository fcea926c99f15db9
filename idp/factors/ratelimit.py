"""The login form's per-address request rate, for a plugin's device endpoints that take guesses.

A device endpoint that checks a password or a code on behalf of someone not signed in (push
recovery's `/personal/start`) is limited exactly like the login form's POSTs: Flask-Limiter,
`ratelimit.login_posts_per_ip` per client address (as ProxyFix leaves it), in the same storage
(Redis when configured, else per process), and lifted by the same setting (the bench and the
tests raise it). Each endpoint has its own count. The growing lockouts (idp.lockout) still
count the guesses themselves; this caps the requests, whatever their outcome.
"""
from __future__ import annotations

from functools import wraps
from typing import Callable

from flask import jsonify
from flask_limiter.errors import RateLimitExceeded

from idp.extensions import limiter, login_posts_per_ip, seconds_until_allowed


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

