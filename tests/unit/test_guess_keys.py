"""Per-address limits count an IPv6 address by its /64 (idp.security.guess_keys): a host may take
any address of its subscriber's /64, so counted one by one it would get 2^64 budgets."""
from __future__ import annotations

import pytest

from idp.security.guess_keys import address_key


@pytest.mark.parametrize("address, key", [
    ("203.0.113.9", "203.0.113.9"),
    ("2001:db8:1:2::a", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::a", "2001:db8:1:3::/64"),
    ("::ffff:198.51.100.7", "198.51.100.7"),  # a dual-stack socket's IPv4 client
    ("::1", "::/64"),
    (None, "-"),
    ("", "-"),
    ("unix:/run/socket", "unix:/run/socket"),
])
def test_the_key_an_address_is_counted_under(address, key):
    assert address_key(address) == key
