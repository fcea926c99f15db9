"""Security headers on every response, added to the WSGI header list as the response starts.

`apply` runs in idp.ops's WSGI middleware for every response the app produces, error pages
included, on the plain list of (name, value) pairs: werkzeug's `Headers.setdefault` costs a
dozen Python calls per header, which added up to a tenth of a token grant. A header the view
already set is kept (setdefault semantics), except Cache-Control and Pragma on the OAuth
endpoints, which are always no-store (RFC 6749 5.1).
"""
from __future__ import annotations

from functools import lru_cache

from idp.security.origins import browser_origin

_SOURCES = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; object-src 'none'; base-uri 'none'; "
)
# Forms post to this site only.
CSP = _SOURCES + "form-action 'self'; frame-ancestors 'none'"
# A page whose form's answer may redirect to a client (every login step: the last one ends in
# the code or an error; the logout confirmation) has no form-action at all. Browsers check every
# redirect that follows a form's POST against it, the client's own redirects included: no list
# can be right for a client whose callback sends its user on to another origin (an
# authentication proxy at auth.example sending them to app.example), and Chromium stops that
# navigation; nor for a native app's private-use scheme (com.example.app:/cb, RFC 8252 7.1),
# which only a scheme-source would allow. These pages hold this site's forms and escaped values only.
CSP_FORMS_TO_A_CLIENT = _SOURCES + "frame-ancestors 'none'"
_NO_FRAMES = "frame-ancestors 'none'"


def csp_for_frames_of(uris: list[str]) -> str:
    """The page CSP for a page that frames `uris` (the clients' front-channel logout pages,
    idp.oidc.frontchannel): the default, plus those origins as the only frame sources. An IPv6
    host, which a CSP source cannot name, is left out rather than allowing its whole scheme."""
    origins = sorted({origin for origin in map(_origin, uris) if origin and not origin.endswith(":")})
    sources = " ".join(origins) or "'none'"
    return f"{CSP}; frame-src {sources}"


@lru_cache(maxsize=256)
def csp_for_form_post(uri: str) -> str | None:
    """The CSP of a form_post authorization response to `uri` (idp.oidc.response_mode): only that
    URI's origin may frame the page (a client renewing its session in a hidden iframe, as it
    would with a redirect); no form-action, as on the login's pages (CSP_FORMS_TO_A_CLIENT): its
    form's POST ends at the client, whose answer may send the browser on anywhere. None when
    `uri` has no such origin."""
    origin = _origin(uri)
    if origin is None:
        return None
    # A host CSP cannot name (IPv6) has only its scheme: no one may frame the page then (every
    # site of that scheme could).
    return _SOURCES + ("frame-ancestors 'none'" if origin.endswith(":") else f"frame-ancestors {origin}")


def _origin(uri: str | None) -> str | None:
    """The CSP source for `uri`'s origin, or None when the URI is not a plain http(s) URL (a
    registered URI always is). An IPv6 host, which a CSP host-source cannot name, gets its scheme."""
    origin = browser_origin(uri)
    if origin is None:
        return None
    scheme, _, host = origin.partition("://")
    if host.startswith("["):
        return f"{scheme}:"
    if not all(ch.isascii() and (ch.isalnum() or ch in ".-:") for ch in host):  # nothing that could end the source
        return None
    return origin


# Referrer: to our own pages only (the language switch and the "sign in again" step come back
# to the page they were posted from); never to another site, not even the client's.
_EVERY_RESPONSE = (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "same-origin"))
_HTML = (("Content-Security-Policy", CSP), ("X-Frame-Options", "DENY"), ("Cache-Control", "no-store"))
# A page whose own CSP lets one origin frame it (csp_for_form_post): X-Frame-Options cannot name
# an origin, and DENY would contradict the CSP for the browsers that still read it.
_HTML_FRAMED = (("Content-Security-Policy", CSP), ("Cache-Control", "no-store"))
_HSTS = (("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),)
_TOKEN_RESPONSE = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))


def is_token_path(path: str) -> bool:
    return path.startswith("/oauth/") or path == "/token"


def _frames_denied(headers: list[tuple[str, str]], present: set[str]) -> bool:
    """Whether the page may be framed by no one: the default CSP, or the view's own saying so."""
    if "content-security-policy" not in present:
        return True
    return any(name.lower() == "content-security-policy" and _NO_FRAMES in value for name, value in headers)


def apply(headers: list[tuple[str, str]], path: str, https: bool) -> None:
    """Add the security headers to `headers` in place."""
    present = {name.lower() for name, _ in headers}
    content_type = next((value for name, value in headers if name.lower() == "content-type"), "")
    wanted = _EVERY_RESPONSE
    if content_type.startswith("text/html"):
        wanted += _HTML if _frames_denied(headers, present) else _HTML_FRAMED
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
