"""Exactly once under concurrency: one code redemption, one refresh rotation. The others are
replays (a code or a refresh token presented again is taken for stolen): what the one that
succeeded obtained is revoked with them, and the audit log says so.

On PostgreSQL and on SQLite, the default: SQLite lets one connection write at a time, but
these grants read before they write (the refresh token outside any transaction) and take
SQLite paths of their own (the rotation's spend and its successor's INSERT in a lone
transaction), so "exactly once" must hold there too.
"""
from __future__ import annotations


import pytest

from fixtures.oidc import FormBrowser, password_login, seed, start_server
from fixtures.race import at_once

RACERS = 20


@pytest.fixture
def server(migrated_database_url):
    server = start_server(migrated_database_url)
    yield server
    server.stop()


def test_twenty_simultaneous_code_redemptions_one_succeeds(server, rp_of):
    seeded = seed(server)
    rp = rp_of(server, seeded.first_party)
    web = FormBrowser(server.url)
    params = password_login(web, rp, seeded.user_email, seeded.password)
    data = {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": rp.client["redirect_uri"],
            "code_verifier": rp.verifier}
    results = at_once(RACERS, lambda _: rp.token_request(data))
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(200) == 1, statuses
    assert all(r.json()["error"] == "invalid_grant" for r in results if r.status_code != 200)
    # The token the winner got, stored revoked or revoked by a replay; and the reuse said once.
    assert _tokens(server) == (1, 0) and _events(server, "code.reuse_detected") >= 1


def test_twenty_simultaneous_refreshes_one_succeeds(server, rp_of):
    seeded = seed(server)
    rp = rp_of(server, seeded.first_party)
    web = FormBrowser(server.url)
    password_login(web, rp, seeded.user_email, seeded.password, scope="openid offline_access")
    refresh = rp.exchange(web.last_redirect)["refresh_token"]
    results = at_once(RACERS, lambda _: rp.token_request({"grant_type": "refresh_token", "refresh_token": refresh}))
    assert sorted(r.status_code for r in results).count(200) == 1
    # The first token and the winner's successor: the family, revoked by the replays.
    assert _tokens(server) == (2, 0) and _events(server, "token.replay_detected") >= 1


def _tokens(server) -> tuple[int, int]:
    """(token rows, live ones)."""
    from sqlalchemy import func, select

    from idp.db import db
    from idp.models import Token

    with server.context():
        return (db.session.scalar(select(func.count()).select_from(Token)),
                db.session.scalar(select(func.count()).select_from(Token).where(Token.revoked_at.is_(None))))


def _events(server, event: str) -> int:
    from sqlalchemy import func, select

    from idp.db import db
    from idp.models import AuditEvent

    with server.context():
        return db.session.scalar(select(func.count()).where(AuditEvent.event == event))


@pytest.fixture
def rp_of():
    from fixtures.oidc import RelyingParty

    return lambda server, client: RelyingParty(server.url, client)
