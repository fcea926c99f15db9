"""A factor plugin that fails costs the user that one method, never the login.

A plugin is someone else's code, with gateways of its own (an SMS provider, a mail relay):
when it raises, or answers outside the contract, the login logs it, rolls back what the
plugin wrote (a code it spent stays unspent) and shows the page again, saying that method
cannot be used now, with the user's other methods and recovery still offered. Before, the
exception was a 500 on every load of the page that began it: a user whose method used last
was that one never saw their other methods again.
"""
from __future__ import annotations

import html
import re

import pytest

from fixtures.oidc import FormBrowser
from idp.factors import Enrolled, Factor, FactorError, FactorKind, Rejected, Step, Verified


class WordFactor(Factor):
    """A third-party factor: the user types the word they set (here always "polly")."""

    name = "word"
    label = "Secret word"
    kind = FactorKind.SECOND_FACTOR
    amr = ("kba",)
    begins_quietly = True
    answer_amr: object = None  # set by a test: what `verify` claims to have proven

    def begin_enrolment(self, user, ctx):
        return Step(state={}, view={})

    def finish_enrolment(self, user, state, response, ctx):
        return Enrolled(self.store.create(user, label=self.name.title()))

    def begin_challenge(self, user, ctx):
        return Step(state={}, view={})

    def verify(self, user, state, response, ctx):
        code = response.get("code")
        if code == "crash":
            raise RuntimeError("a bug of the plugin")
        if code != "polly":
            return Rejected("invalid_code")
        credential = self.store.list(user)[0]
        # A code it spends before answering: unspent again when its answer is refused.
        assert self.store.advance_counter(credential.id, credential.counter + 1)
        if self.answer_amr == "a boolean":  # (Sentry's authenticators answer True)
            return True
        return Verified(credential.id, self.amr if self.answer_amr is None else self.answer_amr)


class TextMessageFactor(WordFactor):
    """A factor whose gateway is down: it cannot begin a challenge."""

    name = "sms_code"
    label = "Text message"
    amr = ("sms",)

    def begin_challenge(self, user, ctx):
        raise FactorError("the SMS gateway answered 502")


def error_of(page) -> str:
    return html.unescape(page.find(r'class="error" role="alert"[^>]*>([^<]+)<') or "")


def holding(live_server, seeded, *classes) -> dict:
    """Register `classes` (before the first request) and give the seeded user one credential of
    each, in this order (the last one created is offered first)."""
    from idp.db import db
    from idp.factors import directory

    registry = live_server.app.extensions["idp.factors"]
    factors = {cls.name: registry.register(cls) for cls in classes}
    with live_server.context():
        user = directory.find_user_by_email(seeded.user_email)
        for factor in factors.values():
            factor.finish_enrolment(user, {}, {}, None)
            db.session.commit()
    return factors


def counter_of(live_server, factor, seeded) -> int:
    from idp.factors import directory

    with live_server.context():
        return factor.store.list(directory.find_user_by_email(seeded.user_email))[0].counter


@pytest.mark.parametrize("quietly", [False, True], ids=["begun-by-the-page", "begun-quietly"])
def test_a_method_that_cannot_begin_leaves_the_others(live_server, seeded, rp_factory, quietly, monkeypatch):
    monkeypatch.setattr(TextMessageFactor, "begins_quietly", quietly)
    holding(live_server, seeded, WordFactor, TextMessageFactor)
    rp = rp_factory(seeded.first_party)
    web = FormBrowser(live_server.url)
    web.get(rp.authorization_url())
    page = web.login(seeded.user_email, seeded.password)  # (begun quietly: during this POST)
    # The text message, used last, cannot begin: the page says so and asks for the word instead.
    assert page.status == 200, page.text[:500]
    assert error_of(page) == "Text message cannot be used at the moment. Use another method, or try again later."
    assert any(form["action"].endswith("/factor/sms_code") for form in page.forms())  # still offered
    choose = next(form for form in page.forms() if form["action"].endswith("/factor/sms_code"))
    again = web.submit(choose)  # chosen on purpose: said again, the word still asked
    assert again.status == 503 and "Text message cannot be used" in error_of(again)
    web.submit(again.form_with("code"), {"code": "polly"})
    claims = rp.validate_id_token(rp.exchange(web.last_redirect)["id_token"])
    assert claims["amr"] == ["pwd", "kba", "mfa"]


def test_a_check_that_crashes_is_refused_cleanly_and_counts_nothing(live_server, seeded, rp_factory):
    from sqlalchemy import select

    from idp.db import db
    from idp.models import FailureCounter, LoginTransaction

    word = holding(live_server, seeded, WordFactor)["word"]
    rp = rp_factory(seeded.first_party)
    web = FormBrowser(live_server.url)
    web.get(rp.authorization_url())
    page = web.login(seeded.user_email, seeded.password)
    page = web.submit(page.form_with("code"), {"code": "crash"})
    assert page.status == 503 and error_of(page).startswith("Secret word cannot be used at the moment")
    with live_server.context():
        row = db.session.scalars(select(LoginTransaction)).one()
        assert row.factor_name == "word"
        assert db.session.get(FailureCounter, f"factor:user:{row.user_id}") is None  # no failure counted
    web.submit(page.form_with("code"), {"code": "polly"})
    assert web.callback_params()["code"]
    assert counter_of(live_server, word, seeded) == 1


@pytest.mark.parametrize("amr", ["kba", (), ("email",), ("kba", None), "a boolean"],
                         ids=["a-string", "none", "unregistered", "not-text", "no-outcome"])
def test_an_answer_outside_the_contract_signs_no_one_in(live_server, seeded, rp_factory, monkeypatch, amr):
    """`Verified.amr` goes into the ID token: "kba" would read k, b, a; an empty one would make
    a second factor proven look like the password alone. Such an answer, or one that is no
    outcome at all, is refused like a failure of the plugin, and what the check spent is
    unspent again."""
    monkeypatch.setattr(WordFactor, "answer_amr", amr)
    word = holding(live_server, seeded, WordFactor)["word"]
    rp = rp_factory(seeded.first_party)
    web = FormBrowser(live_server.url)
    web.get(rp.authorization_url())
    page = web.login(seeded.user_email, seeded.password)
    page = web.submit(page.form_with("code"), {"code": "polly"})
    assert web.last_redirect is None and page.status == 503
    assert counter_of(live_server, word, seeded) == 0


class BrokenEnrolmentFactor(WordFactor):
    """A factor whose enrolment cannot begin (its gateway is down)."""

    name = "broken"
    label = "Carrier pigeon"

    def begin_enrolment(self, user, ctx):
        raise FactorError("no pigeon in the loft")


def test_an_enrolment_that_cannot_begin_on_the_security_page_is_said(live_server, seeded):
    live_server.app.extensions["idp.factors"].register(BrokenEnrolmentFactor)
    web = FormBrowser(live_server.url)
    web.get("/account/security")
    page = web.login(seeded.user_email, seeded.password)
    page = web.submit(next(f for f in page.forms() if f["action"].endswith("/add/broken")))
    assert page.status == 200 and page.url.endswith("/account/security")
    assert "Carrier pigeon cannot be used at the moment" in html.unescape(page.text)


class UnsureFactor(WordFactor):
    """A factor whose own check of the user's credentials fails (a service it asks is down)."""

    name = "unsure"
    label = "Hardware token"

    def is_configured_for(self, user):
        raise FactorError("the token server does not answer")


def test_a_factor_whose_own_check_fails_is_left_out_not_the_login(live_server, seeded, rp_factory):
    holding(live_server, seeded, WordFactor, UnsureFactor)
    rp = rp_factory(seeded.first_party)
    web = FormBrowser(live_server.url)
    web.get(rp.authorization_url())
    page = web.login(seeded.user_email, seeded.password)
    assert page.status == 200 and not any(f["action"].endswith("/factor/unsure") for f in page.forms())
    web.submit(page.form_with("code"), {"code": "polly"})
    assert web.callback_params()["code"]


class VagueFactor(WordFactor):
    """A factor whose description of a credential fails."""

    name = "vague"
    label = "Smart card"

    def describe(self, credential):
        raise KeyError("facts")


def test_a_factor_that_cannot_describe_its_credential_leaves_the_security_page(live_server, seeded):
    holding(live_server, seeded, VagueFactor)
    web = FormBrowser(live_server.url)
    web.get("/account/security")
    page = web.login(seeded.user_email, seeded.password)
    page = web.submit(page.form_with("code"), {"code": "polly"})  # (the user's second factor is that one)
    assert page.status == 200 and page.url.endswith("/account/security"), page.text[:300]
    assert "Vague" in page.text  # the credential's label, and a way to remove it


def invalid_fields(page) -> list[str]:
    """The page's inputs marked aria-invalid: "id|what describes it" of each."""
    found = []
    for tag in re.findall(r"<input\b[^>]*>", page.text):
        if 'aria-invalid="true"' in tag:
            described = re.search(r'aria-describedby="([^"]*)"', tag)
            found.append(re.search(r'\bid="([^"]+)"', tag).group(1) + "|" + (described.group(1) if described else ""))
    return found


def test_only_the_field_whose_answer_was_refused_is_marked_invalid(live_server, seeded, rp_factory):
    """A message about another method (it cannot begin, chosen or not) is the page's, said in its
    alert; the field of the method shown was not refused and carries no aria-invalid. A wrong
    answer in that field is its own: marked invalid and described by the message."""
    holding(live_server, seeded, WordFactor, TextMessageFactor)
    web = FormBrowser(live_server.url)
    web.get(rp_factory(seeded.first_party).authorization_url())
    page = web.login(seeded.user_email, seeded.password)
    assert error_of(page).startswith("Text message cannot be used") and invalid_fields(page) == []
    choose = next(form for form in page.forms() if form["action"].endswith("/factor/sms_code"))
    page = web.submit(choose)
    assert page.status == 503 and error_of(page).startswith("Text message cannot be used")
    assert invalid_fields(page) == []
    page = web.submit(page.form_with("code"), {"code": "parrot"})
    assert page.status == 401 and invalid_fields(page) == ["code|step-error"]


@pytest.mark.parametrize("quietly", [False, True], ids=["begun-by-the-page", "begun-quietly"])
def test_a_claim_left_behind_is_cleared_when_no_method_can_begin(live_server, seeded, rp_factory, quietly,
                                                                 monkeypatch):
    """A login left half-started by a worker that died between its claim and its keep (the
    factor named, no step kept: `being_begun`), whose every method then fails to begin: the
    page waited for that keep, then put the half-started step back, so every later load waited
    again. It is cleared instead (nothing begun), and the next load begins at once."""
    from sqlalchemy import select, update

    from idp.db import db
    from idp.models import LoginTransaction

    monkeypatch.setattr(TextMessageFactor, "begins_quietly", quietly)
    holding(live_server, seeded, TextMessageFactor)
    web = FormBrowser(live_server.url)
    web.get(rp_factory(seeded.first_party).authorization_url())
    page = web.login(seeded.user_email, seeded.password)
    assert page.status == 503 and "Text message cannot be used" in error_of(page)

    def step_of_the_login():
        with live_server.context():
            row = db.session.scalars(select(LoginTransaction)).one()
            return row.factor_name, row.factor_state

    with live_server.context():  # the dead worker's claim
        db.session.execute(update(LoginTransaction).values(factor_name="sms_code", factor_state=None,
                                                           version=LoginTransaction.version + 1))
        db.session.commit()
    again = web.get(web.page.url)  # (waits for the dead claim's keep, then tries the method)
    assert again.status == 503 and "Text message cannot be used" in error_of(again)
    assert step_of_the_login() == (None, None), "the half-started step was put back"
    assert web.get(web.page.url).status == 503  # (no claim to wait for)
    assert step_of_the_login() == (None, None)
