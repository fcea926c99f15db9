"""A per-process micro-cache for the few public documents every client fetches: discovery and JWKS.

Both are already pre-serialized by idp.oidc, but a trip through Flask (request context,
session, CSRF, rate limiter, translations, security headers) still costs several times the
bytes' worth. Relying parties and API gateways poll them constantly, and issue 3 measures
them against a bare baseline. So for a short list of paths, a plain `GET` without a query
string is answered from the last response Flask produced for it, for `ops.cached_documents_ttl`
seconds (default 5). The cached response is Flask's own, headers included (security headers,
Cache-Control), so nothing about it differs except the per-request X-Request-ID.

Only 200 responses without Set-Cookie are cached. A new signing key reaches the JWKS within
the TTL, well inside the publish delay that keys.py keeps between publishing and signing.
"""
from __future__ import annotations

import threading
import time

_UNCACHEABLE_HEADERS = frozenset({"set-cookie", "x-request-id", "content-length"})


class Entry:
    __slots__ = ("status", "headers", "body", "expires")

    def __init__(self, status: str, headers: list, body: bytes, expires: float) -> None:
        self.status, self.headers, self.body, self.expires = status, headers, body, expires


class DocumentCache:
    """Answers cached GETs; fills itself by letting one request through to the app."""

    def __init__(self, paths, ttl: float) -> None:
        self.paths = frozenset(paths)
        self.ttl = float(ttl)
        self.entries: dict[str, Entry] = {}
        self.lock = threading.Lock()

    def lookup(self, environ) -> Entry | None:
        """The fresh cached response for this request, or None (not a cached path, stale, or not a plain GET)."""
        if environ.get("REQUEST_METHOD") != "GET" or environ.get("QUERY_STRING"):
            return None
        entry = self.entries.get(environ.get("PATH_INFO"))
        if entry is not None and entry.expires > time.monotonic():
            return entry
        return None

    def wants(self, environ) -> bool:
        return (environ.get("PATH_INFO") in self.paths and environ.get("REQUEST_METHOD") == "GET"
                and not environ.get("QUERY_STRING"))

    def fill(self, app, environ, start_response):
        """Run the app for this request, remember a cacheable answer, pass the answer on."""
        captured: list = []

        def capture(status, headers, exc_info=None):
            # the outer start_response adds the security headers to this list: keep them
            written = start_response(status, headers, exc_info)
            captured[:] = [status, list(headers)]
            return written

        result = app(environ, capture)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if captured and captured[0].startswith("200") and not any(
                name.lower() == "set-cookie" for name, _ in captured[1]):
            headers = [(k, v) for k, v in captured[1] if k.lower() not in _UNCACHEABLE_HEADERS]
            headers.append(("Content-Length", str(len(body))))
            with self.lock:
                self.entries[environ["PATH_INFO"]] = Entry(captured[0], headers, body,
                                                           time.monotonic() + self.ttl)
        return [body]
