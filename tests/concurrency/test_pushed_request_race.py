"""A pushed request's reference is used once, on PostgreSQL: twenty browsers bring the same
request_uri to /authorize at the same moment, one login begins, the others are refused, and the
pushed request is gone (idp.oidc.pushed_requests.take)."""
from __future__ import annotations

import pytest
import requests
from sqlalchemy import create_engine, func, select

from fixtures.database import postgres_base_url
from fixtures.race import at_once
from fixtures.oidc import seed

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")

RACERS = 20


def test_twenty_simultaneous_uses_of_one_request_uri_one_login_begins(pg_server):
    from idp.models import LoginTransaction, PushedRequest

    client = seed(pg_server).first_party
    pushed = requests.post(f"{pg_server.url}/oauth/par", auth=(client["client_id"], client["client_secret"]),
                           data={"response_type": "code", "redirect_uri": client["redirect_uri"], "scope": "openid",
                                 "state": "s", "code_challenge": "c" * 43, "code_challenge_method": "S256"},
                           timeout=30)
    assert pushed.status_code == 201, pushed.text
    url = f"{pg_server.url}/authorize"
    query = {"client_id": client["client_id"], "request_uri": pushed.json()["request_uri"]}
    responses = at_once(RACERS, lambda _: requests.get(url, params=query, allow_redirects=False, timeout=30))

    started = [r for r in responses if r.status_code == 302 and "/login/" in r.headers["Location"]]
    refused = [r for r in responses if r.status_code == 400 and "Location" not in r.headers]
    assert (len(started), len(refused)) == (1, RACERS - 1), sorted(r.status_code for r in responses)
    engine = create_engine(pg_server.database_url)
    try:
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(LoginTransaction)) == 1
            assert conn.scalar(select(func.count()).select_from(PushedRequest)) == 0
    finally:
        engine.dispose()
