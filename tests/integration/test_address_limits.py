"""Per-address limits behind a trusted proxy, with IPv6 clients: one /64 is one budget
(idp.security.guess_keys), since a host may take any address of its /64."""
from __future__ import annotations

import pytest
import requests

from fixtures.oidc import RelyingParty, seed, start_server
from test_pushed_requests import authorization_params, par_url


@pytest.fixture
def proxied_server(migrated_database_url):
    server = start_server(migrated_database_url, {"ratelimit.login_posts_per_ip": "3 per minute",
                                                  "server.trusted_proxies": ["127.0.0.1"]})
    server.seeded = seed(server)
    yield server
    server.stop()


def test_the_addresses_of_one_ipv6_64_share_one_budget(proxied_server):
    client = proxied_server.seeded.public
    rp = RelyingParty(proxied_server.url, client)

    def push_from(address: str) -> int:
        return requests.post(par_url(proxied_server), data=dict(authorization_params(rp), client_id=client["client_id"]),
                             headers={"X-Forwarded-For": address}, timeout=10).status_code

    assert [push_from(f"2001:db8:1:2::{n}") for n in ("a", "b", "c", "d")] == [201, 201, 201, 429]
    assert push_from("2001:db8:1:3::a") == 201  # the next /64: someone else
    assert push_from("198.51.100.7") == 201
