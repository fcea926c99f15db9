"""Trust `X-Forwarded-*` only when the request really comes from one of our reverse proxies.

werkzeug's ProxyFix believes whatever headers it is given; applied unconditionally, any
client could choose its own address (and so dodge per-address rate limits) or claim HTTPS.
`TrustedProxies` checks the immediate peer (REMOTE_ADDR, which the WSGI server takes from
the socket) against `server.trusted_proxies` and only then lets ProxyFix rewrite the
environ; from anyone else the forwarded headers are ignored.

Each trusted proxy in front of us is expected to append one X-Forwarded-For entry, so
ProxyFix takes the last one (`x_for=1`): the address the proxy itself saw.

A proxy on the same host may talk to the WSGI server over a unix socket (nginx in front of
gunicorn's `-b unix:...`): such a peer has no address (gunicorn's REMOTE_ADDR is empty). The
entry "unix" trusts it; without it, every client of that proxy would be one address with no
name, and one of them could spend everyone's per-address limits.

A proxy left out of `server.trusted_proxies` fails quietly: HTTPS may still work (gunicorn
applies X-Forwarded-Proto from loopback on its own), while every client behind the proxy is
one address to the rate limits and the logs, so one client's failures lock out everyone. The
first X-Forwarded-For from a peer that is not trusted is therefore logged, once per peer and
for a few peers per process (a client on the internet may send the header too: the log must
not become its channel).
"""
from __future__ import annotations

import ipaddress
import logging
from functools import lru_cache
from typing import Iterable

from werkzeug.middleware.proxy_fix import ProxyFix


# The peer of a unix socket, which has no address (module docstring).
UNIX_SOCKET = "unix"

# How many untrusted peers sending X-Forwarded-For one process names in its log (module docstring).
WARNED_PEERS_MAX = 8

log = logging.getLogger(__name__)


def parse_networks(values: Iterable[str]) -> tuple:
    """Addresses or CIDR ranges -> ip_network objects, and "unix" as itself. A bad entry is a
    configuration error."""
    networks = []
    for value in values:
        text = str(value).strip()
        if text == UNIX_SOCKET:
            networks.append(UNIX_SOCKET)
            continue
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError as exc:
            raise ValueError(f"not an IP address, CIDR range or \"unix\": {value!r}") from exc
    return tuple(networks)


def every_address(networks: tuple) -> list[str]:
    """The entries of `networks` that together hold every address of their family (0.0.0.0/0,
    ::/0, or ranges that add up to one: 0.0.0.0/1 with 128.0.0.0/1): as proxies, they let any
    client that reaches the server choose the address it is counted under with one
    X-Forwarded-For (idp.config refuses them in production, `warn_of_everyone` says so in
    development)."""
    found = []
    for version in (4, 6):
        family = [network for network in networks if network != UNIX_SOCKET and network.version == version]
        if any(whole.prefixlen == 0 for whole in ipaddress.collapse_addresses(family)):
            # A /0 names itself; ranges that only add up to everything are named together.
            found += [str(network) for network in family if network.prefixlen == 0] or [str(n) for n in family]
    return found


def warn_of_everyone(networks: tuple) -> None:
    """At start: one warning when `server.trusted_proxies` trusts every address of a family."""
    everyone = every_address(networks)
    if everyone:
        log.warning(
            "server.trusted_proxies names %s, which is every address: any client that reaches the server "
            "chooses the address it is counted under (the per-address rate limits and lockouts, the logs and "
            "the audit events) and its scheme, with one X-Forwarded-For; name your proxies' own addresses or "
            "range instead (production refuses this)", ", ".join(everyone))


def address_in(networks: tuple, address: str | None) -> bool:
    if not address:  # a unix socket's peer
        return UNIX_SOCKET in networks
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(network != UNIX_SOCKET and ip in network for network in networks)


class TrustedProxies:
    """WSGI middleware: ProxyFix for requests from trusted peers, nothing for the others (and a
    warning for the first forwarded headers of an untrusted one). Installed with no trusted
    proxy too: forgetting the setting altogether is the likeliest way to get it wrong."""

    def __init__(self, app, networks: tuple, x_for: int = 1, x_proto: int = 1, x_host: int = 1,
                 x_port: int = 1, x_prefix: int = 0) -> None:
        self.app = app
        self.networks = networks
        self.fixed = ProxyFix(app, x_for=x_for, x_proto=x_proto, x_host=x_host, x_port=x_port, x_prefix=x_prefix)
        # One check per distinct peer address: a handful of proxies in practice.
        self.trusted = lru_cache(maxsize=1024)(lambda address: address_in(self.networks, address))
        self.warned: set = set()

    def __call__(self, environ, start_response):
        peer = environ.get("REMOTE_ADDR")
        if self.trusted(peer):
            return self.fixed(environ, start_response)
        if "HTTP_X_FORWARDED_FOR" in environ and len(self.warned) < WARNED_PEERS_MAX and peer not in self.warned:
            def start_and_warn(status, headers, exc_info=None):
                # Said as the response starts, inside the request (idp.ops.RequestContext, which
                # this middleware wraps, has settled its id by then): the line carries the
                # request id, as every line logged while a request is served does.
                self._warn_once(peer)
                return start_response(status, headers, exc_info)

            return self.app(environ, start_and_warn)
        return self.app(environ, start_response)

    def _warn_once(self, peer: str | None) -> None:
        if peer in self.warned:
            return
        self.warned.add(peer)  # (a race between two threads at worst logs one peer twice)
        log.warning(
            "ignored X-Forwarded-For from %s, which server.trusted_proxies does not name: if it is "
            "your reverse proxy, name it there (until then every client behind it is one address to "
            "the rate limits and the logs)%s", peer or "a unix socket (\"unix\")",
            "; no more such warnings from this process" if len(self.warned) == WARNED_PEERS_MAX else "")
