"""A third-party factor that e-mails a code from `begin_challenge` sends it after the step's
commit (`directory.send_code_after_commit`, `directory.after_commit`).

Mailed from inside the step, the mail left before the code was committed (a user quick enough
typed a code not stored yet) and, on SQLite, while the step's transaction held the database's
write lock through the relay's whole answer (up to 10 s): every other login waited for it.
After the commit, the code is readable from another connection when the relay receives the
mail, the database is free meanwhile, a step rolled back sends nothing, and a callback that
fails is logged, leaving the page and what was committed as they were.
"""
from __future__ import annotations

import logging
import re

import pytest
from sqlalchemy import create_engine, text

from fixtures.database import writes_at_once
from fixtures.oidc import FormBrowser, start_server
from idp.factors import Enrolled, Factor, FactorError, FactorKind, Rejected, Step, Verified, directory


class MailedCodeFactor(Factor):
    """A third-party factor: a six-digit code, kept on the credential and e-mailed at each challenge."""

    name = "mailed_code"
    label = "E-mailed code"
    kind = FactorKind.SECOND_FACTOR
    amr = ("otp",)
    next_code = "314159"
    after_mail = None  # set by a test: a callable run as `begin_challenge` ends (a failure of the plugin)
    also_after_commit = None  # set by a test: a further callback for after the commit

    def begin_enrolment(self, user, ctx):
        return Step(state={}, view={})

    def finish_enrolment(self, user, state, response, ctx):
        return Enrolled(self.store.create(user, label="Mailbox"))

    def begin_challenge(self, user, ctx):
        credential = self.store.list(user)[0]
        self.store.update_public(credential.id, {"code": self.next_code})
        directory.send_code_after_commit(user, self.next_code, "recovery", valid_seconds=600)
        if self.also_after_commit is not None:
            directory.after_commit(self.also_after_commit)
        if self.after_mail is not None:
            self.after_mail()
        return Step(state={}, view={})

    def verify(self, user, state, response, ctx):
        credential = self.store.list(user)[0]
        if response.get("code") != credential.public.get("code"):
            return Rejected("invalid_code")
        return Verified(credential.id, self.amr)


@pytest.fixture
def live_server(migrated_database_url, inbox):
    _handler, port = inbox
    live = start_server(migrated_database_url, {"mail.host": "127.0.0.1", "mail.port": port,
                                                "mail.sender": "idp@acme.test", "mail.security_notices": False})
    yield live
    live.stop()


@pytest.fixture
def factor(live_server, seeded):
    """The factor registered at run time, and the seeded user's one credential of it."""
    from idp.db import db

    registered = live_server.app.extensions["idp.factors"].register(MailedCodeFactor)
    with live_server.context():
        user = directory.find_user_by_email(seeded.user_email)
        registered.finish_enrolment(user, {}, {}, None)
        db.session.commit()
    return registered


def stored_code(database_url: str) -> str | None:
    """The code as another connection reads it: what the provider has committed."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            public = connection.execute(text("SELECT public_json FROM credentials WHERE factor = 'mailed_code'")).scalar()
    finally:
        engine.dispose()
    if isinstance(public, str):
        import json

        public = json.loads(public)
    return (public or {}).get("code")


def code_in(message) -> str:
    return re.search(r"\b(\d{6})\b", message.get_body(("plain",)).get_content()).group(1)


def to_the_challenge(live_server, seeded, rp_factory):
    rp = rp_factory(seeded.first_party)
    web = FormBrowser(live_server.url)
    web.get(rp.authorization_url())
    return rp, web, web.login(seeded.user_email, seeded.password)


def test_the_code_is_mailed_after_the_commit_with_the_database_free(live_server, seeded, factor, inbox,
                                                                      rp_factory):
    handler, _port = inbox
    while_receiving = []
    handler.while_receiving = lambda: while_receiving.append(
        (stored_code(live_server.database_url), writes_at_once(live_server.database_url)))
    rp, web, page = to_the_challenge(live_server, seeded, rp_factory)
    assert page.status == 200, page.text[:500]
    [(rcpt, message)] = handler.wait_for(1)
    assert rcpt == [seeded.user_email] and code_in(message) == "314159"
    # When the relay took the mail, the code was committed and nothing held the database.
    assert while_receiving == [("314159", True)]
    web.submit(page.form_with("code"), {"code": code_in(message)})
    claims = rp.validate_id_token(rp.exchange(web.last_redirect)["id_token"])
    assert claims["amr"] == ["pwd", "otp", "mfa"]


def test_a_step_rolled_back_sends_nothing(live_server, seeded, factor, inbox, rp_factory, monkeypatch):
    """The plugin fails after asking for the mail: the login rolls its writes back, and the mail
    with them (it named a code that was never stored)."""
    handler, _port = inbox

    def gateway_down():
        raise FactorError("the second gateway answered 502")

    monkeypatch.setattr(MailedCodeFactor, "after_mail", staticmethod(gateway_down))
    _rp, _web, page = to_the_challenge(live_server, seeded, rp_factory)
    assert page.status == 503 and "E-mailed code cannot be used at the moment" in page.text
    assert stored_code(live_server.database_url) is None
    with pytest.raises(AssertionError, match="no e-mail arrived"):
        handler.wait_for(1, timeout=1.0)


def test_a_callback_that_fails_leaves_the_answer_and_the_commit(live_server, seeded, factor, inbox, rp_factory,
                                                                 monkeypatch, caplog):
    handler, _port = inbox

    def webhook_down():
        raise ConnectionError("the webhook is down")

    monkeypatch.setattr(MailedCodeFactor, "also_after_commit", staticmethod(webhook_down))
    with caplog.at_level(logging.ERROR, logger="idp.after_commit"):
        rp, web, page = to_the_challenge(live_server, seeded, rp_factory)
    assert page.status == 200, page.text[:500]
    assert stored_code(live_server.database_url) == "314159"
    assert [r.exc_info[0] for r in caplog.records if r.name == "idp.after_commit"] == [ConnectionError]
    [(_rcpt, message)] = handler.wait_for(1)  # the mail, registered before it, went
    web.submit(page.form_with("code"), {"code": code_in(message)})
    assert rp.exchange(web.last_redirect)["id_token"]


def test_only_what_commits_calls_back(live_server):
    """A savepoint rolled back drops what was registered in it (and in a savepoint inside it),
    while the transaction commits the rest; a transaction rolled back drops everything; a
    callback runs with no transaction open, and what it reads through the session is not kept
    open after it."""
    from idp.db import db

    called = []

    def note(name):
        def callback():
            called.append((name, db.in_transaction()))
            db.session.execute(text("SELECT 1"))  # (begins a transaction: rolled back after it)
        return callback

    with live_server.context():
        directory.after_commit(note("outer"))
        with db.session.begin_nested():
            directory.after_commit(note("released"))
        savepoint = db.session.begin_nested()
        directory.after_commit(note("rolled back"))
        with db.session.begin_nested():
            directory.after_commit(note("inside the rolled back"))
        savepoint.rollback()
        assert called == []
        db.session.commit()
        assert called == [("outer", False), ("released", False)]
        assert not db.in_transaction()

        directory.after_commit(note("never"))
        db.session.rollback()
        db.session.commit()
        directory.after_commit(note("never either"))
        db.session.remove()  # (the request ends without a commit)
        db.session.commit()
        assert called == [("outer", False), ("released", False)]
