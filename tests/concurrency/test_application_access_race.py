"""Removing an application's access while it refreshes a token, on PostgreSQL: the successor the
refresh stores is revoked too (idp.consents.withdraw runs its UPDATE until a pass finds nothing).

The interleaving is made, not hoped for: a transaction rotates the application's refresh token
the way the refresh grant does (spend the old row, insert its successor) and stays open; the
withdrawal starts and waits on the old row's lock; then the refresh commits. The first pass of
the withdrawal cannot see the successor (its snapshot predates it): only a second pass can.
"""
from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import create_engine, select, text

from fixtures.database import postgres_base_url
from fixtures.oidc import FormBrowser, RelyingParty, password_login, seed

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")

ROTATE = """
WITH spent AS (UPDATE tokens SET rotated_at = :now WHERE refresh_token_hash = :old
               AND rotated_at IS NULL AND revoked_at IS NULL RETURNING *)
INSERT INTO tokens (access_token_hash, refresh_token_hash, client_id, user_id, scope, family_id, code_id,
                    auth_time, amr, acr, issued_at, access_expires_at, refresh_expires_at)
SELECT 'successor-access', 'successor-refresh', client_id, user_id, scope, family_id, code_id,
       auth_time, amr, acr, :now, access_expires_at, refresh_expires_at FROM spent
RETURNING id
"""


def _waiting_on_a_lock(engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                     "AND datname = current_database() AND query LIKE 'UPDATE tokens SET revoked_at%'")))


def test_a_refresh_in_flight_does_not_outlive_the_withdrawal(pg_server, postgres_url):
    from idp import consents
    from idp.db import db
    from idp.models import Token, User
    from idp.security.tokens import sha256_hex

    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.third_party)
    browser = FormBrowser(pg_server.url)
    password_login(browser, rp, seeded.user_email, seeded.password,
                   scope="openid offline_access", prompt="consent")
    tokens = rp.exchange(browser.last_redirect)

    engine = create_engine(postgres_url)
    refresh = engine.connect()
    refresh_tx = refresh.begin()
    successor = refresh.execute(text(ROTATE), {"now": int(time.time()),
                                               "old": sha256_hex(tokens["refresh_token"])}).scalar_one()
    outcome: dict = {}

    def withdraw():
        with pg_server.context():
            user = db.session.scalar(select(User).where(User.email == seeded.user_email))
            outcome["revoked"] = consents.withdraw(user, seeded.third_party["client_id"], actor_id=user.id,
                                                   actor=user.email, by="self")
            db.session.commit()

    thread = threading.Thread(target=withdraw)
    thread.start()
    deadline = time.monotonic() + 10
    while not _waiting_on_a_lock(engine):
        assert thread.is_alive() and time.monotonic() < deadline, "the withdrawal never waited on the refresh's lock"
        time.sleep(0.02)
    refresh_tx.commit()
    thread.join(timeout=30)
    refresh.close()
    with engine.connect() as conn:
        revoked = dict(conn.execute(select(Token.id, Token.revoked_at).where(
            Token.client_id == seeded.third_party["client_id"])).all())
    engine.dispose()
    assert outcome["revoked"] == 2 and revoked[successor] is not None and all(revoked.values()), revoked
