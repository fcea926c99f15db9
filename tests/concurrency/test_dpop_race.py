"""A DPoP proof is accepted once, on PostgreSQL: twenty token requests carrying the same proof
at the same moment, one is answered with a token, the others with `invalid_dpop_proof`, and one
proof row and one token are stored (idp.oidc.dpop.spend)."""
from __future__ import annotations

import pytest
import requests
from sqlalchemy import create_engine, func, select

from fixtures.client_assertion import new_key
from fixtures.database import postgres_base_url
from fixtures.dpop import proof
from fixtures.race import at_once

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")

RACERS = 20


def test_twenty_simultaneous_uses_of_one_proof_one_succeeds(pg_server):
    from idp import clients
    from idp.db import db
    from idp.models import DPoPProof, Token

    with pg_server.context():
        row, secret = clients.register(clients.Registration(name="Service", grant_types=("client_credentials",)))
        db.session.commit()
        client_id = row.client_id
    url = f"{pg_server.url}/oauth/token"
    headers = {"DPoP": proof(new_key(), "POST", url)}
    responses = at_once(RACERS, lambda _: requests.post(url, auth=(client_id, secret), headers=headers, timeout=30,
                                                        data={"grant_type": "client_credentials"}))

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [400] * (RACERS - 1), statuses
    assert all(r.json()["error"] == "invalid_dpop_proof" for r in responses if r.status_code == 400)
    engine = create_engine(pg_server.database_url)
    try:
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(DPoPProof)) == 1
            assert conn.scalar(select(func.count()).select_from(Token)) == 1
    finally:
        engine.dispose()
