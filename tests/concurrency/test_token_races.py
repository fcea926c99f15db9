"""Exactly once under concurrency, on PostgreSQL: one code redemption, one refresh rotation.

These run only with IDP_TEST_DATABASE_URL (SQLite serialises writers, so a race there proves nothing).
"""
from __future__ import annotations


import pytest

from fixtures.database import postgres_base_url
from fixtures.oidc import FormBrowser, password_login, seed, start_server
from fixtures.race import at_once

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")

RACERS = 20


@pytest.fixture
def pg_server(postgres_url):
    from idp import schema
    from sqlalchemy import create_engine

    engine = create_engine(postgres_url)
    schema.upgrade(engine)
    engine.dispose()
    server = start_server(postgres_url)
    yield server
    server.stop()


def test_twenty_simultaneous_code_redemptions_one_succeeds(pg_server, rp_factory_pg):
    seeded = seed(pg_server)
    rp = rp_factory_pg(pg_server, seeded.first_party)
    web = FormBrowser(pg_server.url)
    params = password_login(web, rp, seeded.user_email, seeded.password)
    data = {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": rp.client["redirect_uri"],
            "code_verifier": rp.verifier}
    results = at_once(RACERS, lambda _: rp.token_request(data))
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(200) == 1, statuses
    assert all(r.json()["error"] == "invalid_grant" for r in results if r.status_code != 200)


def test_twenty_simultaneous_refreshes_one_succeeds(pg_server, rp_factory_pg):
    seeded = seed(pg_server)
    rp = rp_factory_pg(pg_server, seeded.first_party)
    web = FormBrowser(pg_server.url)
    password_login(web, rp, seeded.user_email, seeded.password, scope="openid offline_access")
    refresh = rp.exchange(web.last_redirect)["refresh_token"]
    results = at_once(RACERS, lambda _: rp.token_request({"grant_type": "refresh_token", "refresh_token": refresh}))
    assert sorted(r.status_code for r in results).count(200) == 1


@pytest.fixture
def rp_factory_pg():
    from fixtures.oidc import RelyingParty

    return lambda server, client: RelyingParty(server.url, client)
