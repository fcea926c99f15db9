"""A code revoked between its redemption's two steps leaves no live token (idp.token_revocation).

A code exchange claims its code (committed at once), then stores its tokens in a statement of
its own. Whatever takes back what the code opens in between (the session that signed the login
in ends, the application's access is withdrawn) finds no token to revoke yet; the exchange must
then store none. A second presentation of the code in between does not take the first one's
answer away (one of simultaneous redemptions succeeds, tests/concurrency/test_token_races.py),
but what it obtained is stored revoked. The revocation is made to happen at that exact point:
in the request's own step between the two, reading the user, which runs it to the end in a
thread of its own before the exchange goes on. On SQLite and on PostgreSQL;
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


@pytest.mark.parametrize("revocation", ["session_ended", "access_withdrawn"])
def test_a_code_revoked_while_its_exchange_is_under_way_yields_no_tokens(live_server, seeded, monkeypatch,
                                                                          revocation):
    from idp import consents, sessions

    rp = RelyingParty(live_server.url, seeded.third_party)
    browser = FormBrowser(live_server.url)
    code = password_login(browser, rp, seeded.user_email, seeded.password)["code"]
    row = code_row(live_server, code)

    if revocation == "session_ended":
        revoke = in_app(live_server, lambda db, user: sessions.end(user, row.session_id, actor_id=user.id,
                                                                   actor=user.email, by="self"))
    else:
        revoke = in_app(live_server, lambda db, user: consents.withdraw(user, seeded.third_party["client_id"],
                                                                        actor_id=user.id, actor=user.email, by="self"))
    ran = between_claim_and_store(monkeypatch, revoke)

    answer = exchange_request(rp, code)
    assert ran and answer.status_code == 400 and answer.json()["error"] == "invalid_grant", answer.text
    assert tokens_of(live_server, row.id) == []
    assert code_row(live_server, code).revoked_at is not None


def test_a_code_presented_again_while_its_exchange_is_under_way_leaves_it_dead_tokens(live_server, seeded,
                                                                                     monkeypatch):
    from idp.db import db
    from idp.models import AuditEvent

    rp = RelyingParty(live_server.url, seeded.third_party)
    code = password_login(FormBrowser(live_server.url), rp, seeded.user_email, seeded.password)["code"]
    row = code_row(live_server, code)
    second_answer = {}

    def present_again():
        second_answer["response"] = exchange_request(rp, code)
    ran = between_claim_and_store(monkeypatch, present_again)

    answer = exchange_request(rp, code)
    assert ran and answer.status_code == 200, answer.text
    assert second_answer["response"].status_code == 400
    assert second_answer["response"].json()["error"] == "invalid_grant"
    tokens = tokens_of(live_server, row.id)
    assert len(tokens) == 1 and tokens[0].revoked_at is not None
    assert rp.userinfo(answer.json()["access_token"]).status_code == 401
    refresh = answer.json().get("refresh_token")
    if refresh:
        assert rp.token_request({"grant_type": "refresh_token", "refresh_token": refresh}).status_code == 400
    after = code_row(live_server, code)
    assert after.reused_at is not None and after.revoked_at is None
    with live_server.context():
        [event] = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "code.reuse_detected")).all()
        assert event.details["tokens_revoked"] == 0  # none yet: they were born revoked


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


def test_only_codes_that_could_still_be_exchanged_are_marked(live_server, seeded):
    """Signing out everywhere marks the codes of the last minutes, not a month of old logins
    (their tokens are revoked as rows; idp.token_revocation.EXCHANGE_IN_FLIGHT)."""
    from datetime import timedelta

    from sqlalchemy import update

    from idp.db import db, utcnow
    from idp.models import AuthorizationCode
    from idp.users import sign_out_everywhere

    rp = RelyingParty(live_server.url, seeded.third_party)
    old = code_row(live_server, password_login(FormBrowser(live_server.url), rp, seeded.user_email,
                                               seeded.password)["code"])
    fresh_code = password_login(FormBrowser(live_server.url), rp, seeded.user_email, seeded.password)["code"]
    with live_server.context():
        db.session.execute(update(AuthorizationCode).where(AuthorizationCode.id == old.id)
                           .values(expires_at=utcnow() - timedelta(minutes=10)))
        sign_out_everywhere(old.user_id)
        db.session.commit()
        marked = dict(db.session.execute(select(AuthorizationCode.id, AuthorizationCode.revoked_at)).all())
    assert marked[old.id] is None and marked[code_row(live_server, fresh_code).id] is not None
