"""A client assertion is spent once, on PostgreSQL: twenty token requests carrying the same
private_key_jwt assertion at the same moment, one is answered with a token, the others with
`invalid_client`, and one jti row and one token are stored (idp.oidc.client_assertion.spend)."""
from __future__ import annotations

import pytest
import requests
from sqlalchemy import create_engine, func, select

from fixtures.client_assertion import assertion_form, new_key, register_client
from fixtures.database import postgres_base_url
from fixtures.race import at_once

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")

RACERS = 20


def test_twenty_simultaneous_uses_of_one_assertion_one_succeeds(pg_server):
    from idp.models import ClientAssertion, Token

    key = new_key()
    client_id = register_client(pg_server, key, grant_types=("client_credentials",))
    form = {"grant_type": "client_credentials", **assertion_form(key, client_id, f"{pg_server.url}/oauth/token")}
    responses = at_once(RACERS, lambda _: requests.post(f"{pg_server.url}/oauth/token", data=form, timeout=30))

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [401] * (RACERS - 1), statuses
    assert all(r.json()["error"] == "invalid_client" for r in responses if r.status_code == 401)
    engine = create_engine(pg_server.database_url)
    try:
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(ClientAssertion)) == 1
            assert conn.scalar(select(func.count()).select_from(Token)) == 1
    finally:
        engine.dispose()
