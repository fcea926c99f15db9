"""A third-party factor's one-time code, answered through the challenge store, posted twice at once.

A code sent out of band (by e-mail, by text message) is a challenge, spent by
`ChallengeStore.answer` (docs/factor-plugins.md). Called from `verify` at login, the answer now
commits with the login step's outcome, as the credential store's gates do: the user stays
locked until then, and a second copy of the same form (a double click, a retry) waits and
then finds the login moved on. Committed at once, it released that lock in the middle of the
step: the copy that waited found the code spent, started a new challenge ("That request
expired") and moved the login first, and the copy that had the right answer lost its move.
Nobody signed in, and the code was gone.
"""
from __future__ import annotations

import hashlib
import hmac

import pytest

from fixtures.database import postgres_base_url
from fixtures.oidc import FormBrowser, RelyingParty, seed, start_server
from fixtures.race import at_once, tabs_of
from idp.factors import Enrolled, Factor, FactorKind, Rejected, Step, Verified

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")

RACERS = 6
CODE = "424242"  # what the test's "mail" always carries


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


class MailedCodeFactor(Factor):
    """A code "mailed" for each challenge, kept hashed in the challenge store, spent once."""

    name = "mailed_code"
    label = "Code by e-mail"
    kind = FactorKind.SECOND_FACTOR
    amr = ("otp",)

    def begin_enrolment(self, user, ctx):
        return Step(state={}, view={})

    def finish_enrolment(self, user, state, response, ctx):
        return Enrolled(self.store.create(user, label="Mailbox"))

    def begin_challenge(self, user, ctx):
        credential = self.store.list(user)[0]
        challenge = self.challenges.create(user, ttl=300, transaction_id=ctx.transaction_id,
                                           credential_id=credential.id, payload={"digest": _digest(CODE)})
        return Step(state={"challenge": challenge.id}, view={})

    def verify(self, user, state, response, ctx):
        code, challenge = response.get("code"), self.challenges.get(state.get("challenge") or "")
        if challenge is None or not isinstance(code, str):
            return Rejected("invalid_code")
        if not hmac.compare_digest(_digest(code), challenge.payload["digest"]):
            return Rejected("invalid_code")
        if self.challenges.answer(challenge.id, "approved") is None:
            return Rejected("expired")  # spent (or expired) meanwhile
        return Verified(challenge.credential_id, self.amr)


@pytest.fixture
def pg_server(postgres_url):
    from sqlalchemy import create_engine

    from idp import schema

    engine = create_engine(postgres_url)
    schema.upgrade(engine)
    engine.dispose()
    server = start_server(postgres_url, {"ratelimit.factor_failures_before_lockout": 100})
    server.app.extensions["idp.factors"].register(MailedCodeFactor)
    yield server
    server.stop()


def test_a_mailed_code_posted_twice_at_once_signs_in_once(pg_server):
    from idp.db import db
    from idp.factors import directory

    seeded = seed(pg_server)
    factor = pg_server.app.extensions["idp.factors"].get("mailed_code")
    with pg_server.context():
        factor.finish_enrolment(directory.find_user_by_email(seeded.user_email), {}, {}, None)
        db.session.commit()
    rp = RelyingParty(pg_server.url, seeded.first_party)
    browser = FormBrowser(pg_server.url)
    browser.get(rp.authorization_url())
    form = browser.login(seeded.user_email, seeded.password).form_with("code")
    tabs = tabs_of(browser, RACERS)
    at_once(RACERS, lambda i: tabs[i].submit(form, {"code": CODE}))
    assert sum(1 for tab in tabs if tab.last_redirect and "code=" in tab.last_redirect) == 1
