"""Whose guesses these are, by address: the key that per-address limits count under.

An IPv4 address is one subscriber (or one office behind a NAT: which is why addresses have
higher limits than accounts, idp.lockout). An IPv6 subscriber gets a /64 at least, and a host in
it may take any address of it it likes (privacy addresses, RFC 8981): counted per address, one
machine would get 2^64 budgets. IPv6 addresses are counted per /64, then; an IPv4-mapped IPv6
address (::ffff:a.b.c.d, what a dual-stack socket reports for an IPv4 client) as its IPv4.
"""
from __future__ import annotations

import ipaddress
from functools import lru_cache


@lru_cache(maxsize=4096)
def address_key(address: str | None) -> str:
    """`address` as per-address limits count it: an IPv4 address itself, an IPv6 address's /64
    ("2001:db8:1:2::/64"); anything that is no address ("-" when none) as it is."""
    if not address:
        return "-"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)
