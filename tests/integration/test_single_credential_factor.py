"""A factor that keeps one credential per user (`allow_multiple = False`: one mailbox, one
phone number) is not offered again on the security page once the user holds it.

The flag only grouped such a factor's credentials into one row of the page: "Add" stayed
offered, a second enrolment stored a second credential that no row showed, and removing the
one shown left the other signing the user in.
"""
from __future__ import annotations

import html

from fixtures.oidc import FormBrowser
from idp.factors import Enrolled, Factor, FactorKind, Rejected, Step


class MailboxFactor(Factor):
    """A third-party factor: codes sent to the user's one mailbox."""

    name = "mailbox"
    label = "Code by e-mail"
    kind = FactorKind.SECOND_FACTOR
    amr = ("otp",)
    allow_multiple = False

    def begin_enrolment(self, user, ctx):
        return Step(state={}, view={})

    def finish_enrolment(self, user, state, response, ctx):
        if response.get("code") != "123456":
            return Rejected("invalid_code")
        return Enrolled(self.store.create(user, label="Mailbox"))

    def begin_challenge(self, user, ctx):
        return Step(state={}, view={})

    def verify(self, user, state, response, ctx):
        return Rejected("invalid_code")


def add_forms(page) -> list[str]:
    return [form["action"].rsplit("/", 1)[1] for form in page.forms() if "/security/add/" in form["action"]]


def test_a_single_credential_factor_is_added_once(live_server, seeded):
    from idp.factors import directory

    factor = live_server.app.extensions["idp.factors"].register(MailboxFactor)
    web = FormBrowser(live_server.url)
    web.get("/account/security")
    page = web.login(seeded.user_email, seeded.password)
    add = next(form for form in page.forms() if form["action"].endswith("/add/mailbox"))
    enrol_page = web.submit(add)
    page = web.submit(enrol_page.form_with("code"), {"code": "123456"})
    page = web.get("/account/security")
    assert "mailbox" not in add_forms(page) and "totp" in add_forms(page)
    again = web.submit(add)  # the old page's form, posted anyway: refused, nothing begun
    assert "This method is not available." in html.unescape(again.text)
    with live_server.context():
        assert len(factor.store.list(directory.find_user_by_email(seeded.user_email))) == 1


def test_two_enrolments_begun_before_either_finished_store_one_credential(live_server, seeded):
    """Two tabs each began adding the factor while the user held none: the second to finish is
    refused (it would store a second credential the page never lists), and nothing is kept of it."""
    from idp.factors import directory

    factor = live_server.app.extensions["idp.factors"].register(MailboxFactor)
    web = FormBrowser(live_server.url)
    web.get("/account/security")
    page = web.login(seeded.user_email, seeded.password)
    add = next(form for form in page.forms() if form["action"].endswith("/add/mailbox"))
    first_tab = web.submit(add).form_with("code")
    begun_a_while_ago(live_server)  # the second "Add" is no copy of the same click
    second_tab = web.submit(add).form_with("code")
    assert second_tab["action"] != first_tab["action"]
    web.submit(first_tab, {"code": "123456"})
    refused = web.submit(second_tab, {"code": "123456"})
    assert refused.status == 400 and "You already have this method." in html.unescape(refused.text)
    with live_server.context():
        assert len(factor.store.list(directory.find_user_by_email(seeded.user_email))) == 1


def begun_a_while_ago(server) -> None:
    """Date the security page's pending enrolments a minute back: an "Add" clicked after them is
    the user's asking again, not a copy of the same click (idp.account.service.ONE_CLICK), and
    begins an enrolment of its own."""
    from datetime import timedelta

    from sqlalchemy import update

    from idp.db import db, utcnow
    from idp.factors.challenges import ACCOUNT_ENROLMENT
    from idp.models import FactorChallenge

    with server.context():
        db.session.execute(update(FactorChallenge).where(FactorChallenge.factor == ACCOUNT_ENROLMENT)
                           .values(created_at=utcnow() - timedelta(minutes=1)))
        db.session.commit()
