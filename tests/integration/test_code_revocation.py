"""A code revoked between its redemption's two steps stores no tokens (idp.token_revocation).

A code exchange claims its code (committed at once), then stores its tokens in a statement of
its own. Whatever takes back what the code opens in between (the session that signed the login
in ends, the application's access is withdrawn, the code is presented a second time) finds no
token to revoke yet; the exchange must then store none. The revocation is made to happen at
that exact point: in the request's own step between the two, reading the user, which runs it
to the end in a thread of its own before the exchange goes on. On SQLite and on PostgreSQL;
tests/concurrency/test_code_exchange_race.py makes the two overlap on PostgreSQL.
"""
from __future__ import annotations

import pytest
from sqlalchemy import select

from fixtures.code_exchange import between_claim_and_store, code_row, exchange_request, tokens_of
from fixtures.oidc import FormBrowser, RelyingParty, password_login


def in_app(live_server, work):
    def run():
        from idp.db import db
        from idp.models import User

        with live_server.context():
            work(db, db.session.scalar(select(User).where(User.email == "alice@acme.test")))
            db.session.commit()
    return run


@pytest.mark.parametrize("revocation", ["session_ended", "access_withdrawn", "code_presented_again"])
def test_a_code_revoked_while_its_exchange_is_under_way_yields_no_tokens(live_server, seeded, monkeypatch,
                                                                          revocation):
    from idp import consents, sessions

    rp = RelyingParty(live_server.url, seeded.third_party)
    browser = FormBrowser(live_server.url)
    code = password_login(browser, rp, seeded.user_email, seeded.password)["code"]
    row = code_row(live_server, code)
    second_answer = {}

    if revocation == "session_ended":
        revoke = in_app(live_server, lambda db, user: sessions.end(user, row.session_id, actor_id=user.id,
                                                                   actor=user.email, by="self"))
    elif revocation == "access_withdrawn":
        revoke = in_app(live_server, lambda db, user: consents.withdraw(user, seeded.third_party["client_id"],
                                                                        actor_id=user.id, actor=user.email, by="self"))
    else:
        def revoke():
            second_answer["response"] = exchange_request(rp, code)
    ran = between_claim_and_store(monkeypatch, revoke)

    answer = exchange_request(rp, code)
    assert ran and answer.status_code == 400 and answer.json()["error"] == "invalid_grant", answer.text
    assert tokens_of(live_server, row.id) == []
    assert code_row(live_server, code).revoked_at is not None
    if revocation == "code_presented_again":
        assert second_answer["response"].json()["error"] == "invalid_grant"
        from idp.db import db
        from idp.models import AuditEvent

        with live_server.context():
            [event] = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "code.reuse_detected")).all()
            assert event.details["tokens_revoked"] == 0


def test_a_code_of_an_ended_session_cannot_be_redeemed(live_server, seeded):
    from idp import sessions

    rp = RelyingParty(live_server.url, seeded.third_party)
    browser = FormBrowser(live_server.url)
    code = password_login(browser, rp, seeded.user_email, seeded.password)["code"]
    row = code_row(live_server, code)
    in_app(live_server, lambda db, user: sessions.end(user, row.session_id, actor_id=user.id, actor=user.email,
                                                      by="self"))()
    answer = exchange_request(rp, code)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"
    after = code_row(live_server, code)
    assert after.redeemed_at is None and after.revoked_at is not None
    assert tokens_of(live_server, row.id) == []
