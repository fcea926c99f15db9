"""Flask-Limiter, with the limits decorated on a view checked without its general resolution.

A view decorated with `limiter.limit(...)` asks Flask-Limiter, on every request, to work out
which limits apply: the decorated ones, but also the default, application, blueprint and meta
limits, exemption scopes and endpoint hints, each limit string parsed again and its runtime
limits built anew. We use none of those others (idp.extensions: no default or application
limits, no blueprint limits, no meta limits, no breach callbacks, no request filters), and the
resolution cost about 0.15-0.2 ms of /authorize and of every login form's POST (measured inside
requests: the whole check 0.2-0.25 ms, the storage's hit 0.02 ms of it).

`LeanLimiter` checks a decorated view's limits itself while the set-up is that plain: the
decorated limits of the view (none when the view is exempt), their runtime limits kept per
limit string (the string is still asked for on every request: settings differ between apps),
then the same evaluation as Flask-Limiter's: the same storage keys and scopes, hits, exemptions,
log line, `RateLimitExceeded` on a breach and the request's limits for the X-RateLimit headers.
Anything else (default, application, blueprint or meta limits, breach callbacks, request
filters, `deduct_when`, a storage that failed) goes through Flask-Limiter's own path, and so do
its storage errors: the in-memory fallback, swallowed errors or the exception, as configured.
tests/unit/test_lean_limiter.py runs both paths side by side.
"""
from __future__ import annotations

import flask
from flask_limiter import Limiter, RequestLimit
from flask_limiter.errors import RateLimitExceeded


class LeanLimiter(Limiter):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # (id of a decorated limit group, its limit string) -> its runtime limits, sorted as
        # Flask-Limiter evaluates them; None for a group the lean path leaves to Flask-Limiter.
        self._runtime_limits: dict[tuple[int, str], tuple | None] = {}

    def _check_request_limit(self, callable_name: str | None = None, in_middleware: bool = True) -> None:
        limits = None if in_middleware or not callable_name else self._plain_decorated_limits(callable_name)
        if limits is None:
            super()._check_request_limit(callable_name=callable_name, in_middleware=in_middleware)
            return
        try:
            self._evaluate(limits)
        except RateLimitExceeded:
            raise
        except Exception:
            # The storage failed: Flask-Limiter's own handling, as if it had met the error itself
            # (its in-memory fallback checks again on that storage; else swallowed, or raised).
            if self._in_memory_fallback_enabled and not self._storage_dead:
                self.logger.warning("Rate limit storage unreachable - falling back to in-memory storage")
                self._storage_dead = True
                self.context.seen_limits.clear()
                super()._check_request_limit(callable_name=callable_name, in_middleware=in_middleware)
            elif self._swallow_errors:
                self.logger.exception("Failed to rate limit. Swallowing error")
            else:
                raise

    def _plain_decorated_limits(self, name: str) -> tuple | None:
        """The runtime limits decorated on callable `name`, sorted, when nothing but them applies
        to this request; None when Flask-Limiter must resolve the request's limits itself."""
        manager = self.limit_manager
        if (not (self.enabled and self.initialized) or self._request_filters or self._storage_dead
                or self._meta_limits or self._on_breach or manager._application_limits
                or manager._default_limits or manager._blueprint_limits):
            return None
        endpoint = self.identify_request()
        if not endpoint or endpoint.split(".")[-1] == "static" or manager._route_exemptions.get(name):
            return ()  # what Flask-Limiter finds for them: no limit at all
        found: list = []
        for group in manager._decorated_limits.get(name, ()):
            provider = group.limit_provider
            key = (id(group), provider() if callable(provider) else provider)
            if key not in self._runtime_limits:
                self._runtime_limits[key] = self._lean_group(group)
            limits = self._runtime_limits[key]
            if limits is None:
                return None
            found.extend(limits)
        return tuple(sorted(found, key=lambda runtime: runtime.limit))

    @staticmethod
    def _lean_group(group) -> tuple | None:
        try:
            limits = tuple(group)
        except ValueError:  # a limit string that does not parse: Flask-Limiter logs and skips it
            return None
        if any(limit.deduct_when or limit.meta_limits or limit.on_breach for limit in limits):
            return None
        return limits

    def _evaluate(self, limits: tuple) -> None:
        """Flask-Limiter's evaluation of decorated limits (`Limiter.__evaluate_limits`) for limits
        without meta limits, `deduct_when` or breach callbacks."""
        endpoint = self.identify_request()
        method = flask.request.method
        view_limits: list[RequestLimit] = []
        failed = breached = None
        for limit in limits:
            if limit.is_exempt or limit.method_exempt:
                continue
            scope = limit.scope_for(endpoint, method)
            key = limit.key_func()
            args = [key, scope]
            if not all(args):
                self.logger.error(f"Skipping limit: {limit.limit}. Empty value found in parameters.")
                continue
            if self._key_prefix:
                args = [self._key_prefix, *args]
            request_limit = RequestLimit(self, limit.limit, args, False, limit.shared)
            view_limits.append(request_limit)
            if not self.limiter.hit(limit.limit, *args, cost=limit.deduction_amount):
                self.logger.info("ratelimit %s (%s) exceeded at endpoint: %s", limit.limit, key, scope)
                request_limit.breached = True
                breached = request_limit  # the headers' limit: the last breached
                if failed is None:  # the exception's: the smallest breached, `limits` being sorted
                    failed = limit
                if self._fail_on_first_breach:
                    break
        context = self.context
        if breached is not None:
            context.view_rate_limit = breached
        elif view_limits:
            # Flask-Limiter's hint for the headers: a limit of this route's own over a shared one.
            context.view_rate_limit = next((limit for limit in view_limits if not limit.shared), view_limits[0])
        else:
            context.view_rate_limit = None
        context.view_rate_limits = view_limits
        if failed is not None:
            raise RateLimitExceeded(failed)
