"""What the login page says when a factor rejects a response: the factor's own words for its own reasons.

The core words only the reasons any factor may give (an invalid or replayed code, an expired
request); a reason only one factor knows comes with its wording (`Rejected.message`). A factor
the core has never heard of, registered at run time, shows its message like ours; WebAuthn's
"possibly cloned" travels the same way.
"""
from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path

import pytest

from idp.factors import Enrolled, Factor, FactorKind, Rejected, Step, Verified

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "webauthn"))

from soft_authenticator import enrolled_key, post_assertion  # noqa: E402

OWN_WORDS = "The parrot only repeats the word it was taught."


class ParrotFactor(Factor):
    """A third-party factor: the user repeats the word they taught the parrot."""

    name = "parrot"
    label = "Parrot word"
    kind = FactorKind.SECOND_FACTOR
    amr = ("kba",)

    def begin_enrolment(self, user, ctx):
        return Step(state={}, view={})

    def finish_enrolment(self, user, state, response, ctx):
        return Enrolled(self.store.create(user, label="Parrot", public={"word": "polly"}))

    def begin_challenge(self, user, ctx):
        return Step(state={}, view={"code_inputmode": "text"})  # a word, not digits: a full keyboard

    def verify(self, user, state, response, ctx):
        code = response.get("code")
        if code == "squawk":  # a reason of its own, worded by the factor
            return Rejected("not_the_word", message=OWN_WORDS)
        if code == "mumble":  # a reason of its own, left to the core's fallback
            return Rejected("inaudible")
        for credential in self.store.list(user):
            if code == credential.public["word"]:
                return Verified(credential.id, self.amr)
        return Rejected("invalid_code")


def error_of(page) -> str:
    return html.unescape(page.find(r'class="error" role="alert"[^>]*>([^<]+)<') or "")


@pytest.fixture
def parrot_user(live_server, seeded):
    """The seeded user holding a parrot word (the factor registered before the first request)."""
    from idp.db import db
    from idp.factors import directory

    registry = live_server.app.extensions["idp.factors"]
    factor = registry.register(ParrotFactor)
    with live_server.context():
        factor.finish_enrolment(directory.find_user_by_email(seeded.user_email), {}, {}, None)
        db.session.commit()
    return seeded


def test_a_third_party_factor_words_its_own_rejections(parrot_user, web, rp_factory):
    seeded = parrot_user
    rp = rp_factory(seeded.first_party)
    web.get(rp.authorization_url())
    page = web.login(seeded.user_email, seeded.password)
    assert page.form_with("code") and 'inputmode="text"' in page.text

    page = web.submit(page.form_with("code"), {"code": "squawk"})
    assert (page.status, error_of(page)) == (401, OWN_WORDS)
    page = web.submit(page.form_with("code"), {"code": "mumble"})
    assert (page.status, error_of(page)) == (401, "That did not work. Try again.")
    page = web.submit(page.form_with("code"), {"code": "wrong"})
    assert (page.status, error_of(page)) == (401, "That code is not right. Try again.")  # the core's wording
    web.submit(page.form_with("code"), {"code": "polly"})
    assert web.callback_params()["code"]


def test_webauthn_says_a_key_may_have_been_cloned_in_its_own_words(live_server, seeded, web, rp_factory):
    """A sign count that went backwards: the plugin's message reaches the page (in French too:
    the words moved, their translation with them)."""
    key = enrolled_key(live_server, seeded)
    rp = rp_factory(seeded.first_party)
    web.get(rp.authorization_url(ui_locales="fr"))
    page = post_assertion(web, web.login(seeded.user_email, seeded.password), key, sign_count=5)
    # The key is suspended, and it was the user's only method: the page says why, and that none is left.
    assert page.status == 403 and web.last_redirect is None
    assert error_of(page).startswith("Cette clé de sécurité a peut-être été clonée")
    # Its owner is told by mail, in the language of the page, naming the key.
    from fixtures.threads import finished

    finished("security-notices")
    [notice] = [m for m in live_server.app.extensions["idp.notifier"].sent
                if m.subject == "Une clé de sécurité de votre compte a été suspendue"]
    assert "(Clé de sécurité ou clé d'accès)" in notice.body, notice.body  # its default label, translated


def test_a_key_suspended_as_a_clone_stays_suspended_when_a_parallel_post_moved_the_login_on(
        live_server, seeded, web, rp_factory, monkeypatch):
    """The clone's answer is checked while another post of the same page (the genuine key's)
    moves the login on: the failure is still counted, and the suspension, its audit event and
    the sign-outs stand (they were rolled back with the stale attempt)."""
    from sqlalchemy import select, update

    from idp.db import db
    from idp.factors import directory
    from idp.models import AuditEvent, LoginTransaction

    key = enrolled_key(live_server, seeded)
    webauthn = live_server.app.extensions["idp.factors"].get("webauthn")
    check = webauthn.verify

    def check_while_a_parallel_post_moves_the_login_on(user, state, response, ctx):
        outcome = check(user, state, response, ctx)
        db.session.execute(update(LoginTransaction).where(LoginTransaction.id == ctx.transaction_id)
                           .values(version=LoginTransaction.version + 1))
        return outcome

    monkeypatch.setattr(webauthn, "verify", check_while_a_parallel_post_moves_the_login_on)
    web.get(rp_factory(seeded.first_party).authorization_url())
    post_assertion(web, web.login(seeded.user_email, seeded.password), key, sign_count=5)

    with live_server.context():
        user = directory.find_user_by_email(seeded.user_email)
        [credential] = webauthn.store.list(user)
        assert credential.public.get("suspected_clone_at")
        assert db.session.scalars(select(AuditEvent).where(AuditEvent.event == "webauthn.clone_suspected",
                                                           AuditEvent.subject_id == user.id)).all()
        assert db.session.scalars(select(AuditEvent).where(AuditEvent.event == "login.second_factor_failed",
                                                           AuditEvent.subject_id == user.id)).all()


def test_one_security_key_answer_posted_twice_at_once_signs_in_once_and_suspends_nothing(
        live_server, seeded, web, rp_factory):
    """A retried POST or a double click: the same assertion arrives twice together. The second
    copy waits for the first under the user's lock, then finds the login moved on, rather than
    checking an answer whose count was just stored (which reads as a cloned key: the key
    suspended, the admins alerted, the session the first copy opened signed out)."""
    from sqlalchemy import select

    from fixtures.race import at_once, tabs_of
    from idp.db import db
    from idp.models import AuditEvent, Credential

    key = enrolled_key(live_server, seeded)
    rp = rp_factory(seeded.first_party)
    web.get(rp.authorization_url())
    page = web.login(seeded.user_email, seeded.password)
    options = json.loads(html.unescape(re.search(
        r'<script type="application/json" id="webauthn-options"[^>]*>(.+?)</script>', page.text, re.S).group(1)))
    answer = {"response": json.dumps(key.get(options, sign_count=11))}
    form = page.form_with("response")
    tabs = tabs_of(web, 4)
    at_once(len(tabs), lambda i: tabs[i].submit(form, answer))
    assert sum(1 for tab in tabs if tab.last_redirect and "code=" in tab.last_redirect) == 1
    with live_server.context():
        events = set(db.session.scalars(select(AuditEvent.event)))
        [credential] = db.session.scalars(select(Credential).where(Credential.factor == "webauthn")).all()
    assert not events & {"webauthn.clone_suspected", "session.ended", "login.second_factor_failed"}, events
    assert "suspected_clone_at" not in credential.public_json and credential.counter == 11
