"""A WebAuthn challenge takes one answer: a refused assertion (or registration) spends it.

The page shown again after a refusal carries a new challenge; a valid response made for the
refused one's challenge, posted afterwards, is refused. (The refused page kept its challenge,
and such a response then signed in: the contract says a challenge is never answered twice.)
Assertions and registrations are built in-process by the software authenticator.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from sqlalchemy import select

from fixtures.oidc import FormBrowser
from fixtures.totp import MFA

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "webauthn"))

from soft_authenticator import SoftAuthenticator, enrolled_key, options_of  # noqa: E402

ELSEWHERE = "https://evil.example"  # a response for another origin: refused (invalid_response)


def respond(web: FormBrowser, page, response: dict, **fields):
    return web.submit(page.form_with("response"), {"response": json.dumps(response), **fields})


def webauthn_credentials(live_server, email: str) -> list:
    from idp.db import db
    from idp.models import Credential, User

    with live_server.context():
        return db.session.scalars(select(Credential.id).join(User, User.id == Credential.user_id)
                                  .where(User.email == email, Credential.factor == "webauthn")).all()


def test_a_refused_assertion_spends_its_challenge(live_server, seeded, web, rp_factory):
    key = enrolled_key(live_server, seeded)
    web.get(rp_factory(seeded.first_party).authorization_url())
    page = web.login(seeded.user_email, seeded.password)
    first = options_of(page)
    kept_for_later = key.get(first, sign_count=11)  # valid, for the first challenge, not posted yet
    refused_page = page
    page = respond(web, page, key.get(first, origin=ELSEWHERE, sign_count=12))
    assert page.status == 401 and web.last_redirect is None
    # The first page's form again (a copy posted twice): the login moved on, nothing is checked.
    again = respond(web, refused_page, kept_for_later)
    assert web.last_redirect is None and options_of(again)["challenge"] == options_of(page)["challenge"]
    renewed = options_of(page)
    assert renewed["challenge"] != first["challenge"]
    assert renewed["allowCredentials"] == first["allowCredentials"]
    page = respond(web, page, kept_for_later)
    assert page.status == 401 and web.last_redirect is None, "signed in with the refused challenge's answer"
    # The page's own (new) challenge signs in as usual.
    respond(web, page, key.get(options_of(page), sign_count=13))
    if web.last_redirect is None:
        web.consent("allow")
    assert web.callback_params()["code"]


def test_a_refused_registration_at_login_spends_its_challenge(live_server, seeded, web, rp_factory):
    web.get(rp_factory(seeded.first_party).authorization_url(acr_values=MFA))
    page = web.login(seeded.user_email, seeded.password)
    choose = [f for f in page.forms() if f["action"].endswith("/factor/webauthn")]
    if choose:
        page = web.submit(choose[0])
    first = options_of(page)
    key = SoftAuthenticator("localhost", live_server.url)
    kept_for_later = key.create(first)
    page = respond(web, page, key.create(first, origin=ELSEWHERE))
    assert page.status == 400
    assert options_of(page)["challenge"] != first["challenge"]
    page = respond(web, page, kept_for_later)
    assert page.status == 400 and webauthn_credentials(live_server, seeded.user_email) == []
    respond(web, page, key.create(options_of(page)))
    assert len(webauthn_credentials(live_server, seeded.user_email)) == 1


def test_a_refused_registration_on_the_security_page_spends_its_challenge(live_server, seeded):
    web = FormBrowser(live_server.url)
    web.get("/account/security")
    page = web.login(seeded.user_email, seeded.password)
    page = web.submit(next(f for f in page.forms() if f["action"].endswith("/add/webauthn")))
    first = options_of(page)
    key = SoftAuthenticator("localhost", live_server.url)
    kept_for_later = key.create(first)
    page = respond(web, page, key.create(first, origin=ELSEWHERE), label="Key")
    assert page.status == 400
    assert options_of(page)["challenge"] != first["challenge"]
    page = respond(web, page, kept_for_later, label="Key")
    assert page.status == 400 and webauthn_credentials(live_server, seeded.user_email) == []
    respond(web, page, key.create(options_of(page)), label="Key")
    assert len(webauthn_credentials(live_server, seeded.user_email)) == 1


def test_a_refused_registration_whose_replacement_cannot_begin_is_not_shown_again(live_server, seeded, monkeypatch):
    """The refusal spent the security page's enrolment; when no new one can begin (the plugin fails),
    the page must not show the spent one's form again: a key answered there is refused as expired,
    after the user went through the key's prompt for nothing. The security page says so instead."""
    from idp.factors import FactorError

    web = FormBrowser(live_server.url)
    web.get("/account/security")
    page = web.login(seeded.user_email, seeded.password)
    page = web.submit(next(f for f in page.forms() if f["action"].endswith("/add/webauthn")))
    first = options_of(page)
    webauthn = type(live_server.app.extensions["idp.factors"].get("webauthn"))

    def unavailable(self, user, ctx):
        raise FactorError("the plugin cannot begin now")

    monkeypatch.setattr(webauthn, "begin_enrolment", unavailable)
    key = SoftAuthenticator("localhost", live_server.url)
    page = respond(web, page, key.create(first, origin=ELSEWHERE), label="Key")
    assert 'id="webauthn-options"' not in page.text, "the spent enrolment's form was shown again"
    assert page.url.endswith("/account/security") and "flash-error" in page.text
    assert webauthn_credentials(live_server, seeded.user_email) == []
