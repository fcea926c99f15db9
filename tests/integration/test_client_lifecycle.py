"""What a rotated secret and a removed client still open, over real HTTP against a live server,
with the `idp` command run as an operator runs it (a subprocess on the server's database).

The server keeps clients it read for `tokens.client_cache_ttl` seconds (idp.oidc.server):
these tests keep its default, so what they show holds while a worker has the client cached.
"""
from __future__ import annotations

import json

import pytest
import requests
from sqlalchemy import create_engine, text

from fixtures.cli import run_idp
from fixtures.oidc import FormBrowser, RelyingParty, password_login, seed, start_server


def idp(live_server, *args: str):
    result = run_idp(*args, database_url=live_server.database_url)
    assert result.returncode == 0, result
    return result


def client_credentials(live_server, client_id: str, secret: str) -> requests.Response:
    return requests.post(f"{live_server.url}/oauth/token", data={"grant_type": "client_credentials", "scope": "api"},
                         auth=(client_id, secret), timeout=10)


def test_after_rotate_secret_the_new_secret_works_and_the_old_one_is_refused(live_server, idp_client_credentials):
    client_id, old_secret = idp_client_credentials
    assert client_credentials(live_server, client_id, old_secret).status_code == 200  # the worker caches the client

    rotated = json.loads(idp(live_server, "client", "rotate-secret", client_id).stdout)
    assert rotated["client_id"] == client_id and rotated["client_secret"] != old_secret

    # At once, though the worker's cached copy still has the old secret: a refusal reads the client again.
    assert client_credentials(live_server, client_id, rotated["client_secret"]).status_code == 200
    refused = client_credentials(live_server, client_id, old_secret)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"


def test_a_removed_client_loses_its_tokens_and_its_logins_in_progress(live_server, seeded, rp_factory):
    rp = rp_factory(seeded.third_party)
    signed_in = FormBrowser(live_server.url)
    password_login(signed_in, rp, seeded.user_email, seeded.password, scope="openid email offline_access",
                   prompt="consent")
    tokens = rp.exchange(signed_in.last_redirect)
    assert "refresh_token" in tokens and rp.userinfo(tokens["access_token"]).status_code == 200
    # Another browser is half-way through a login for the same client: the login form is on screen.
    halfway = FormBrowser(live_server.url)
    halfway.get(rp_factory(seeded.third_party).authorization_url())
    login_form = halfway.page.form_with("password")

    removed = idp(live_server, "client", "remove", seeded.third_party["client_id"])
    assert "1 consent(s) deleted, 1 login(s) in progress ended" in removed.stdout

    refreshed = rp.token_request({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    # invalid_grant while the worker still has the client cached, invalid_client after
    assert refreshed.status_code in (400, 401) and refreshed.json()["error"] in ("invalid_grant", "invalid_client")
    assert rp.userinfo(tokens["access_token"]).status_code == 401
    other = seeded.first_party
    introspected = requests.post(rp.metadata["introspection_endpoint"], data={"token": tokens["access_token"]},
                                 auth=(other["client_id"], other["client_secret"]), timeout=10)
    assert introspected.status_code == 200 and introspected.json() == {"active": False}

    page = halfway.submit(login_form, {"username": seeded.user_email, "password": seeded.password})
    assert 400 <= page.status < 500, page
    assert halfway.last_redirect is None  # nothing reached the removed client's redirect URI


@pytest.fixture
def uncached_server(migrated_database_url):
    """Clients read from the database on every request: a login that outlives its client sees it gone."""
    server = start_server(migrated_database_url, {"tokens.client_cache_ttl": 0})
    yield server
    server.stop()


def drop_client_row(database_url: str, client_id: str) -> None:
    """The client's row only, as a worker's stale cached copy sees the world after `idp client remove`
    (which ends the logins it finds, but not one begun from such a copy)."""
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM clients WHERE client_id = :c"), {"c": client_id})
    engine.dispose()


@pytest.mark.parametrize("at", ["password", "consent"])
def test_a_login_whose_client_vanished_ends_on_the_expired_page(uncached_server, at):
    seeded = seed(uncached_server)
    rp = RelyingParty(uncached_server.url, seeded.third_party)
    browser = FormBrowser(uncached_server.url)
    browser.get(rp.authorization_url())
    form = browser.page.form_with("password")
    if at == "consent":
        page = browser.submit(form, {"username": seeded.user_email, "password": seeded.password})
        form = page.form_with("action")
        drop_client_row(uncached_server.database_url, seeded.third_party["client_id"])
        page = browser.submit(form, button=("action", "allow"))
    else:
        drop_client_row(uncached_server.database_url, seeded.third_party["client_id"])
        page = browser.submit(form, {"username": seeded.user_email, "password": seeded.password})
    assert 400 <= page.status < 500, page
    assert browser.last_redirect is None  # no code went anywhere


@pytest.fixture
def caching_server(migrated_database_url):
    """Clients kept for five minutes: whatever happens to a client meanwhile, the worker's copy is stale."""
    server = start_server(migrated_database_url, {"tokens.client_cache_ttl": 300})
    yield server
    server.stop()


def test_a_client_that_vanished_while_cached_gets_no_code(caching_server):
    """The code's INSERT asks the database whether its client still exists (idp.oidc.code_issuance):
    a worker's cached copy of a client removed meanwhile issued the code all the same."""
    seeded = seed(caching_server)
    rp = RelyingParty(caching_server.url, seeded.third_party)
    browser = FormBrowser(caching_server.url)
    browser.get(rp.authorization_url())  # the worker reads the client, and keeps it
    page = browser.submit(browser.page.form_with("password"),
                          {"username": seeded.user_email, "password": seeded.password})
    form = page.form_with("action")  # the consent page, from the cached copy
    drop_client_row(caching_server.database_url, seeded.third_party["client_id"])
    page = browser.submit(form, button=("action", "allow"))
    assert 400 <= page.status < 500, page
    assert browser.last_redirect is None  # no code went anywhere


def test_a_token_whose_client_is_gone_is_refused_at_userinfo(uncached_server):
    """A token row outliving its client (stored while `idp client remove` ran) opens nothing."""
    seeded = seed(uncached_server)
    rp = RelyingParty(uncached_server.url, seeded.first_party)
    browser = FormBrowser(uncached_server.url)
    password_login(browser, rp, seeded.user_email, seeded.password)
    tokens = rp.exchange(browser.last_redirect)
    assert rp.userinfo(tokens["access_token"]).status_code == 200
    drop_client_row(uncached_server.database_url, seeded.first_party["client_id"])
    assert rp.userinfo(tokens["access_token"]).status_code == 401


def test_removing_a_client_deletes_a_refresh_successor_committed_during_the_first_delete(live_server, seeded):
    """A refresh rotating one of the client's tokens as it is removed commits its successor in a
    transaction the first DELETE's snapshot cannot see (docs/architecture.md, "narrower
    revocations run until they find nothing"): removal deletes again until nothing is left. The
    successor appears here just as the first DELETE returns, as PostgreSQL would show it to the next."""
    from sqlalchemy import event

    from idp import clients
    from idp.db import db
    from idp.models import Token

    client_id = seeded.third_party["client_id"]

    def token(name: str) -> dict:
        return {"access_token_hash": f"{name:0>64}", "client_id": client_id, "scope": "openid", "family_id": "f",
                "issued_at": 1, "access_expires_at": 2 ** 31 - 1}

    passes = []

    def successor_after_the_first_pass(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("DELETE FROM tokens"):
            passes.append(cursor.rowcount)
            if len(passes) == 1:
                conn.execute(Token.__table__.insert().values(**token("successor")))

    with live_server.context():
        db.session.execute(Token.__table__.insert().values(**token("rotated")))
        db.session.commit()
        engine = db.engine
        event.listen(engine, "after_cursor_execute", successor_after_the_first_pass)
        try:
            ended = clients.remove(clients.find(client_id))
            db.session.commit()
        finally:
            event.remove(engine, "after_cursor_execute", successor_after_the_first_pass)
        assert passes == [1, 1, 0] and ended["tokens_deleted"] == 2
        assert db.session.query(Token).filter(Token.client_id == client_id).count() == 0
