"""Security headers on every response, added to the WSGI header list as the response starts.

`apply` runs in idp.ops's WSGI middleware for every response the app produces, error pages
included, on the plain list of (name, value) pairs: werkzeug's `Headers.setdefault` costs a
dozen Python calls per header, which added up to a tenth of a token grant. A header the view
already set is kept (setdefault semantics), except Cache-Control and Pragma on the OAuth
endpoints, which are always no-store (RFC 6749 5.1).
"""
from __future__ import annotations

CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self' http: https:; "
    "frame-ancestors 'none'"
)

# Referrer: to our own pages only (the language switch and the "sign in again" step come back
# to the page they were posted from); never to another site, not even the client's.
_EVERY_RESPONSE = (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "same-origin"))
_HTML = (("Content-Security-Policy", CSP), ("X-Frame-Options", "DENY"), ("Cache-Control", "no-store"))
_HSTS = (("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),)
_TOKEN_RESPONSE = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))


def is_token_path(path: str) -> bool:
    return path.startswith("/oauth/") or path == "/token"


def apply(headers: list[tuple[str, str]], path: str, https: bool) -> None:
    """Add the security headers to `headers` in place."""
    present = {name.lower() for name, _ in headers}
    content_type = next((value for name, value in headers if name.lower() == "content-type"), "")
    wanted = _EVERY_RESPONSE
    if content_type.startswith("text/html"):
        wanted += _HTML
    if https:
        wanted += _HSTS
    if is_token_path(path):
        headers[:] = [(name, value) for name, value in headers if name.lower() not in ("cache-control", "pragma")]
        present.discard("cache-control")
        present.discard("pragma")
        wanted += _TOKEN_RESPONSE
    for name, value in wanted:
        lowered = name.lower()
        if lowered not in present:
            headers.append((name, value))
            present.add(lowered)
