"""The one exception to exact redirect URI matching: a loopback IP literal's port.

Redirect URIs are compared as exact strings (RFC 9700 2.1). RFC 8252 7.3 makes one exception
a MUST: a native app receives the response on a local server at a loopback IP literal
(`http://127.0.0.1`, `http://[::1]`), on whatever port the operating system gives it at the
moment of the request, so a URI registered as `http://127.0.0.1/callback` matches
`http://127.0.0.1:53211/callback`. Everything but the port must still be identical (scheme, host,
path, query). `localhost` is not such a literal (RFC 8252 8.3: a name may resolve elsewhere, a
firewall may treat it otherwise): its URIs match exactly, like any other host's.
"""
from __future__ import annotations

from urllib.parse import urlsplit

LOOPBACK_IPS = ("127.0.0.1", "::1")


def matches_on_another_loopback_port(requested: str, registered) -> bool:
    """Whether `requested` is one of the `registered` loopback IP URIs on another port."""
    wanted = _all_but_the_port(requested)
    return wanted is not None and any(_all_but_the_port(uri) == wanted for uri in registered or ())


def _all_but_the_port(uri) -> tuple | None:
    """(host, path, query) of a plain http URI at a loopback IP literal, else None."""
    if not isinstance(uri, str) or not uri.startswith("http://") or not uri.isprintable() \
            or any(ch.isspace() for ch in uri):
        return None  # (urlsplit drops tabs and line breaks: a URI holding one is not the registered one)
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018  (raises ValueError on a malformed port)
    except ValueError:
        return None
    if parts.hostname not in LOOPBACK_IPS or "@" in parts.netloc or parts.fragment or uri.endswith("#"):
        return None
    # The host as written: "127.0.0.1" or "[::1]" (urlsplit's hostname is lower-cased and unbracketed).
    host = parts.netloc.rsplit(":", 1)[0] if parts.port is not None else parts.netloc
    return host, parts.path, parts.query
