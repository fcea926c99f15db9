"""A device's approval is redeemed once, on PostgreSQL (idp.oidc.device_flow): the person has
signed the device in, and twenty polls with its device code arrive at the same moment. One gets
tokens; the others are refused `invalid_grant` (a device code used twice was stolen), and the
tokens the first one got are revoked, as for a code presented twice."""
from __future__ import annotations

import pytest
import requests
from sqlalchemy import create_engine, func, select

from fixtures.database import postgres_base_url
from fixtures.oidc import seed
from fixtures.race import at_once
from fixtures.device import GRANT, approved_device

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")

RACERS = 20


def test_twenty_simultaneous_polls_of_an_approved_device_get_tokens_once(pg_server):
    from idp.models import Token

    seeded = seed(pg_server)
    client = seeded.first_party
    codes = approved_device(pg_server, seeded, client)

    url = f"{pg_server.url}/oauth/token"
    data = {"grant_type": GRANT, "device_code": codes["device_code"]}
    responses = at_once(RACERS, lambda _: requests.post(url, data=data, timeout=30,
                                                        auth=(client["client_id"], client["client_secret"])))
    granted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 400 and r.json()["error"] == "invalid_grant"]
    assert (len(granted), len(refused)) == (1, RACERS - 1), sorted(r.text for r in responses)
    engine = create_engine(pg_server.database_url)
    try:
        with engine.connect() as conn:
            # One token row, revoked: stored revoked if the replays were marked first, or revoked by them.
            assert conn.scalar(select(func.count()).select_from(Token)) == 1
            assert conn.scalar(select(func.count()).select_from(Token).where(Token.revoked_at.is_(None))) == 0
    finally:
        engine.dispose()
