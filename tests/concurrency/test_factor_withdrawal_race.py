"""A withdrawn second factor against what is under way at that moment, on PostgreSQL.

- A refresh rotating a token of a family whose login proved the factor: the successor it stores is
  revoked with its family (idp.sessions._revoke_families_proved_by reads the family's live head,
  then revokes by family with token_revocation.revoke, which runs its UPDATE until a pass finds
  nothing). The interleaving is made, as in test_application_access_race.py: the refresh's
  transaction spends the old row and inserts its successor and stays open; the withdrawal reads the
  old head, then waits on its lock; then the refresh commits.
- A code exchange storing the tokens of a session that proved the factor, while the withdrawal
  holds the user's row: the exchange does not wait for it, and its tokens are revoked.
- A code of a session that has expired since, under exchange (claimed, its tokens not yet
  stored) as the factor its login proved is withdrawn: the code is revoked first, and the
  exchange stores nothing.
- A push activation shown on a security page (directory.session_live, FOR SHARE on the session's
  row) against a sign-out of that session: the sign-out either comes first and is seen, or waits.
"""
from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import create_engine, select, text

from fixtures.database import postgres_base_url
from fixtures.oidc import FormBrowser, RelyingParty, password_login, seed

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")

WITHDRAWN = 424242  # the id of the lost phone the family's login proved (only the number matters)

ROTATE = """
WITH spent AS (UPDATE tokens SET rotated_at = :now WHERE refresh_token_hash = :old
               AND rotated_at IS NULL AND revoked_at IS NULL RETURNING *)
INSERT INTO tokens (access_token_hash, refresh_token_hash, client_id, user_id, scope, family_id, code_id,
                    auth_time, amr, acr, credential_ids, issued_at, access_expires_at, refresh_expires_at)
SELECT 'successor-access', 'successor-refresh', client_id, user_id, scope, family_id, code_id,
       auth_time, amr, acr, credential_ids, :now, access_expires_at, refresh_expires_at FROM spent
RETURNING id
"""


def _waiting(engine, query_start: str) -> bool:
    with engine.connect() as conn:
        return bool(conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                     "AND datname = current_database() AND query LIKE :start"),
                                {"start": query_start + "%"}))


def _wait_until(engine, query_start: str, thread: threading.Thread, what: str) -> None:
    deadline = time.monotonic() + 10
    while not _waiting(engine, query_start):
        assert thread.is_alive() and time.monotonic() < deadline, what
        time.sleep(0.02)


def _rotate(engine, refresh_token: str):
    """The refresh grant's statement on PostgreSQL (spend the old row, insert its successor), its
    transaction left open: (the connection, its transaction, the successor's id)."""
    from idp.security.tokens import sha256_hex

    refresh = engine.connect()
    refresh_tx = refresh.begin()
    successor = refresh.execute(text(ROTATE), {"now": int(time.time()), "old": sha256_hex(refresh_token)}).scalar_one()
    return refresh, refresh_tx, successor


def _paused_withdrawal(pg_server, seeded, monkeypatch):
    """The withdrawal of WITHDRAWN from the seeded user (sessions.end_proved_by), to run on a
    thread: it sets `locked` once it holds the user's row, then waits for `go`. Returns (locked,
    go, outcome: {"ended"} or {"error"}, the thread's function)."""
    from idp import sessions
    from idp.db import db
    from idp.login import transaction
    from idp.models import User

    locked, go = threading.Event(), threading.Event()
    expire_advanced_by = transaction.expire_advanced_by

    def paused_after_the_users_row(user_id, withdrawn):  # end_proved_by holds the user's row here
        locked.set()
        go.wait(10)
        return expire_advanced_by(user_id, withdrawn)

    monkeypatch.setattr(transaction, "expire_advanced_by", paused_after_the_users_row)
    outcome: dict = {}

    def withdraw():
        try:
            with pg_server.context():
                user = db.session.scalar(select(User).where(User.email == seeded.user_email))
                outcome["ended"] = sessions.end_proved_by(user, {WITHDRAWN}, actor_id=None, actor="test")
                db.session.commit()
        except Exception as error:  # (a deadlock, say)
            outcome["error"] = error

    return locked, go, outcome, withdraw


@pytest.mark.parametrize("first", ["refresh", "withdrawal"])
def test_a_refresh_in_flight_does_not_outlive_the_factor_its_login_proved(pg_server, postgres_url, monkeypatch,
                                                                          first):
    """`refresh`: the refresh has stored its successor (uncommitted) when the withdrawal begins.
    `withdrawal`: the withdrawal holds the user's row when the refresh spends the old token and
    inserts its successor (whose foreign key takes a key share of the user's row). The user's row
    taken FOR UPDATE made the refresh wait for the withdrawal there, while the withdrawal waited
    for the old token's row, which the refresh held: PostgreSQL found a deadlock and one of the
    two failed (an admin's removal of a lost phone, or the refresh, a 500). Both now end well."""
    from idp.models import AuditEvent, Token
    from idp.security.tokens import sha256_hex

    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.third_party)
    browser = FormBrowser(pg_server.url)
    password_login(browser, rp, seeded.user_email, seeded.password,
                   scope="openid offline_access", prompt="consent")
    tokens = rp.exchange(browser.last_redirect)
    engine = create_engine(postgres_url)
    with engine.begin() as conn:  # as if that login had proved the phone (its session's list is left alone)
        conn.execute(text("UPDATE tokens SET credential_ids = :ids WHERE refresh_token_hash = :old"),
                     {"ids": f"[{WITHDRAWN}]", "old": sha256_hex(tokens["refresh_token"])})

    locked, go, outcome, withdraw = _paused_withdrawal(pg_server, seeded, monkeypatch)

    refreshed: dict = {}

    def refresh_now():
        try:
            refreshed["connection"], refreshed["transaction"], refreshed["successor"] = _rotate(
                engine, tokens["refresh_token"])
        except Exception as error:
            refreshed["error"] = error

    thread = threading.Thread(target=withdraw)
    if first == "refresh":
        refresh_now()
        go.set()
        thread.start()
    else:
        thread.start()
        assert locked.wait(10)
        refresher = threading.Thread(target=refresh_now)
        refresher.start()
        refresher.join(timeout=3)  # done at once, or waiting on the user's row (FOR UPDATE)
        go.set()
        refresher.join(timeout=30)
    if "transaction" in refreshed:
        deadline = time.monotonic() + 10  # the withdrawal waits for the refresh (on a row it holds), or failed
        while thread.is_alive() and not _waiting(engine, "") and time.monotonic() < deadline:
            time.sleep(0.02)
        refreshed["transaction"].commit()
        refreshed["connection"].close()
    thread.join(timeout=30)
    with engine.connect() as conn:
        revoked = dict(conn.execute(select(Token.id, Token.revoked_at).where(
            Token.client_id == seeded.third_party["client_id"])).all())
        events = conn.execute(select(AuditEvent.details).where(AuditEvent.event == "token.families_revoked")).all()
    engine.dispose()
    assert "error" not in outcome and "error" not in refreshed, (outcome, refreshed)
    assert outcome["ended"] == 0  # (the session proved nothing: only the family stood on the phone)
    assert revoked[refreshed["successor"]] is not None and all(revoked.values()), revoked
    assert len(events) == 1 and events[0].details["families"] == 1, events


def _security_page_session(pg_server, seeded):
    """A signed-in browser and the sid of its session."""
    from idp.db import db
    from idp.models import UserSession

    rp = RelyingParty(pg_server.url, seeded.first_party)
    browser = FormBrowser(pg_server.url)
    password_login(browser, rp, seeded.user_email, seeded.password)
    with pg_server.context():
        return browser, db.session.scalars(select(UserSession.sid).where(UserSession.revoked_at.is_(None))).one()


@pytest.mark.parametrize("first", ["activation", "sign_out"])
def test_a_sign_out_and_a_phone_registering_in_its_session_name_take_turns(pg_server, postgres_url, first):
    """`session_live` holds the session's row FOR SHARE: a sign-out that comes after waits for the
    registration's commit; one that came first (its UPDATE not yet committed) is waited for, and
    then seen (the row, read again after the sign-out's commit, is revoked)."""
    from idp.db import db
    from idp.factors import directory
    from idp.models import UserSession

    seeded = seed(pg_server)
    _browser, sid = _security_page_session(pg_server, seeded)
    engine = create_engine(postgres_url)
    outcome: dict = {}
    held = threading.Event()
    release = threading.Event()

    def activation():
        with pg_server.context():
            user = directory.find_user_by_email(seeded.user_email)
            outcome["live"] = directory.session_live(sid, user)
            held.set()
            release.wait(10)
            db.session.commit()

    sign_out = engine.connect()
    if first == "activation":
        thread = threading.Thread(target=activation)
        thread.start()
        assert held.wait(10)
        sign_out_tx = sign_out.begin()

        def end():
            sign_out.execute(text("UPDATE user_sessions SET revoked_at = now() WHERE sid = :sid"), {"sid": sid})
            sign_out_tx.commit()

        ender = threading.Thread(target=end)
        ender.start()
        _wait_until(engine, "UPDATE user_sessions SET revoked_at", ender, "the sign-out never waited")
        release.set()
        thread.join(timeout=30)
        ender.join(timeout=30)
        assert outcome["live"] is True
    else:
        sign_out_tx = sign_out.begin()
        sign_out.execute(text("UPDATE user_sessions SET revoked_at = now() WHERE sid = :sid"), {"sid": sid})
        release.set()
        thread = threading.Thread(target=activation)
        thread.start()
        _wait_until(engine, "SELECT user_sessions.sid", thread, "session_live never waited on the sign-out")
        sign_out_tx.commit()
        thread.join(timeout=30)
        assert outcome["live"] is False
    sign_out.close()
    with engine.connect() as conn:
        assert conn.scalar(select(UserSession.revoked_at).where(UserSession.sid == sid)) is not None
    engine.dispose()


def test_a_code_exchanged_while_the_factor_its_login_proved_is_withdrawn_leaves_no_live_token(
        pg_server, postgres_url, monkeypatch):
    """The withdrawal holds the user's row (end_proved_by) when the application exchanges the
    code of a session that proved the factor. The exchange's INSERT reads its code row FOR SHARE
    and takes a key share of the user's row (its foreign key): with the user's row held FOR
    UPDATE it waited there, holding the code row, which the withdrawal's end of that session
    then waited for (revoke_codes): a deadlock. Now the exchange stores its tokens without
    waiting, and the withdrawal revokes them."""
    from fixtures.code_exchange import code_row, exchange_request, tokens_of

    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.third_party)
    code = password_login(FormBrowser(pg_server.url), rp, seeded.user_email, seeded.password)["code"]
    row = code_row(pg_server, code)
    engine = create_engine(postgres_url)
    with engine.begin() as conn:  # as if that login had proved the phone
        conn.execute(text("UPDATE user_sessions SET credential_ids = :ids WHERE sid = :sid"),
                     {"ids": f"[{WITHDRAWN}]", "sid": row.session_id})
        conn.execute(text("UPDATE authorization_codes SET credential_ids = :ids WHERE id = :id"),
                     {"ids": f"[{WITHDRAWN}]", "id": row.id})

    locked, go, outcome, withdraw = _paused_withdrawal(pg_server, seeded, monkeypatch)

    thread = threading.Thread(target=withdraw)
    thread.start()
    assert locked.wait(10)
    answers: dict = {}
    exchange = threading.Thread(target=lambda: answers.setdefault("exchange", exchange_request(rp, code)))
    exchange.start()
    exchange.join(timeout=3)  # done at once, or waiting on the user's row (held FOR UPDATE)
    go.set()
    exchange.join(timeout=30)
    thread.join(timeout=30)
    engine.dispose()
    assert "error" not in outcome, outcome
    assert outcome["ended"] == 1 and answers["exchange"].status_code in (200, 400), answers["exchange"].text
    assert all(token.revoked_at is not None for token in tokens_of(pg_server, row.id))
    if answers["exchange"].status_code == 200:
        assert rp.userinfo(answers["exchange"].json()["access_token"]).status_code == 401


def test_a_code_of_an_expired_session_under_exchange_as_its_factor_is_withdrawn_gives_no_token(
        pg_server, postgres_url, monkeypatch):
    """The session that signed the login in has expired since (no sign-out revoked its codes, and
    the withdrawal ends no live session), and the application is exchanging the code: claimed, its
    tokens not yet stored, when the withdrawal reads the token families. The withdrawal revokes the
    code first, so the exchange then stores nothing (invalid_grant); it used to store a family
    standing on the withdrawn factor that nothing revoked."""
    from fixtures.code_exchange import between_claim_and_store, code_row, exchange_request, tokens_of
    from idp import sessions
    from idp.db import db
    from idp.models import User

    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.third_party)
    code = password_login(FormBrowser(pg_server.url), rp, seeded.user_email, seeded.password,
                          scope="openid offline_access")["code"]
    row = code_row(pg_server, code)
    engine = create_engine(postgres_url)
    with engine.begin() as conn:  # that login proved the phone; its session has expired since
        conn.execute(text("UPDATE user_sessions SET credential_ids = :ids, expires_at = now() - interval '1 minute' "
                          "WHERE sid = :sid"), {"ids": f"[{WITHDRAWN}]", "sid": row.session_id})
        conn.execute(text("UPDATE authorization_codes SET credential_ids = :ids WHERE id = :id"),
                     {"ids": f"[{WITHDRAWN}]", "id": row.id})
    engine.dispose()
    outcome: dict = {}

    def withdraw():
        with pg_server.context():
            user = db.session.scalar(select(User).where(User.email == seeded.user_email))
            outcome["ended"] = sessions.end_proved_by(user, {WITHDRAWN}, actor_id=None, actor="test")
            db.session.commit()

    ran = between_claim_and_store(monkeypatch, withdraw)
    answer = exchange_request(rp, code)
    assert ran and outcome["ended"] == 0
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant", answer.text
    assert [token for token in tokens_of(pg_server, row.id) if token.revoked_at is None] == []
