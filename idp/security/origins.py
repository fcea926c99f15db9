"""The origin a browser reports for a URL: what WebAuthn's clientDataJSON carries and what the
`Origin` header says. One normalisation for every comparison with one (WebAuthn, CORS) and for the
CSP sources built from registered URIs. Also what a host name is: loopback, an IP literal."""
from __future__ import annotations

import ipaddress
from functools import lru_cache
from urllib.parse import urlsplit


@lru_cache(maxsize=1024)
def browser_origin(url: str | None) -> str | None:
    """scheme://host[:port] as a browser sends it: scheme and host in lower case, the host in its
    IDNA (ASCII) form, an IPv6 host in brackets, the default port left out. None for anything
    that is not an http(s) URL with a host (or whose port or host cannot be read)."""
    try:
        parts = urlsplit(url or "")
        port = parts.port
        scheme, host = parts.scheme.lower(), parts.hostname
        if scheme not in ("http", "https") or not host:
            return None
        host = f"[{host}]" if ":" in host else host.encode("idna").decode("ascii")
    except ValueError:  # a port that is no number, or a host IDNA cannot encode (UnicodeError)
        return None
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


# The host names of this machine's loopback interface, as URL hosts spell them (urlsplit's
# `hostname`: lower case, an IPv6 address without brackets).
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def is_ip_address(host: str) -> bool:
    """Whether `host` is an IPv4 or IPv6 literal (without brackets), not a name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
