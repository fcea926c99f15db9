"""A session ending while a code of its is exchanged, on PostgreSQL: whichever commits first, no
token from that code outlives the session (idp.token_revocation, "Codes").

The exchange claims its code, then stores its tokens in one INSERT that reads the code row FOR
SHARE; ending the session marks its codes revoked, then revokes their tokens. Both orders are
made to happen, not hoped for:

- the exchange first: a transaction of the test holds the user's row FOR UPDATE, so that the
  exchange's INSERT, once it has read (and locked) its code, waits on the foreign key check of
  its new row; the session's end then waits on that code row; the test lets go of the user's
  row, the tokens are committed, and the session's end revokes them;
- the revocation first: the session's end runs between the exchange's claim and its INSERT and
  stays uncommitted; the INSERT waits on the code row, then finds the code revoked and stores
  nothing.
"""
from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import create_engine, select, text

from fixtures.code_exchange import between_claim_and_store, code_row, exchange_request, tokens_of
from fixtures.database import postgres_base_url
from fixtures.oidc import FormBrowser, RelyingParty, password_login

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")


def waiting_on_a_lock(engine, statement_start: str) -> bool:
    with engine.connect() as conn:
        return bool(conn.scalar(text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database() AND query LIKE :start"), {"start": statement_start + "%"}))


def wait_until(condition, what: str, *alive: threading.Thread) -> None:
    deadline = time.monotonic() + 15
    while not condition():
        assert all(thread.is_alive() for thread in alive) and time.monotonic() < deadline, what
        time.sleep(0.02)


def signed_in_code(server, seeded):
    rp = RelyingParty(server.url, seeded.third_party)
    code = password_login(FormBrowser(server.url), rp, seeded.user_email, seeded.password)["code"]
    return rp, code, code_row(server, code)


def end_session(server, sid: str, before_commit: threading.Event | None = None, ended: threading.Event | None = None):
    from idp import sessions
    from idp.db import db
    from idp.models import User

    with server.context():
        user = db.session.scalar(select(User).where(User.email == "alice@acme.test"))
        sessions.end(user, sid, actor_id=user.id, actor=user.email, by="self")
        if ended is not None:
            ended.set()
        if before_commit is not None:
            before_commit.wait(timeout=30)
        db.session.commit()


def test_tokens_stored_first_are_revoked_by_the_session_end(pg_server, postgres_url, seeded_pg):
    rp, code, row = signed_in_code(pg_server, seeded_pg)
    engine = create_engine(postgres_url)
    holder = engine.connect()
    hold = holder.begin()
    holder.execute(text("SELECT id FROM users WHERE id = :id FOR UPDATE"), {"id": row.user_id})
    answers: dict = {}
    exchange = threading.Thread(target=lambda: answers.setdefault("exchange", exchange_request(rp, code)))
    exchange.start()
    wait_until(lambda: waiting_on_a_lock(engine, "INSERT INTO tokens"), "the exchange never waited", exchange)
    ending = threading.Thread(target=end_session, args=(pg_server, row.session_id))
    ending.start()
    wait_until(lambda: waiting_on_a_lock(engine, "UPDATE authorization_codes"),
               "the session's end did not wait for the exchange's tokens", ending)
    hold.commit()
    holder.close()
    exchange.join(timeout=30)
    ending.join(timeout=30)
    engine.dispose()

    assert answers["exchange"].status_code == 200, answers["exchange"].text
    stored = tokens_of(pg_server, row.id)
    assert len(stored) == 1 and stored[0].revoked_at is not None
    assert rp.userinfo(answers["exchange"].json()["access_token"]).status_code == 401


def test_a_revocation_first_leaves_the_exchange_nothing_to_store(pg_server, postgres_url, seeded_pg, monkeypatch):
    rp, code, row = signed_in_code(pg_server, seeded_pg)
    engine = create_engine(postgres_url)
    ended, commit = threading.Event(), threading.Event()
    ending = threading.Thread(target=end_session, args=(pg_server, row.session_id, commit, ended))

    def start_the_session_end():  # runs inside the exchange, between its claim and its INSERT
        ending.start()
        assert ended.wait(timeout=30)
    between_claim_and_store(monkeypatch, start_the_session_end)
    answers: dict = {}
    exchange = threading.Thread(target=lambda: answers.setdefault("exchange", exchange_request(rp, code)))
    exchange.start()
    wait_until(lambda: waiting_on_a_lock(engine, "INSERT INTO tokens"),
               "the exchange's INSERT did not wait for the uncommitted revocation", exchange)
    commit.set()
    exchange.join(timeout=30)
    ending.join(timeout=30)
    engine.dispose()

    answer = answers["exchange"]
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant", answer.text
    assert tokens_of(pg_server, row.id) == []


@pytest.fixture
def seeded_pg(pg_server):
    from fixtures.oidc import seed

    return seed(pg_server)
