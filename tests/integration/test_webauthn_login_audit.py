"""A WebAuthn login, over HTTP, the way an attacker or a demanding user tries it: one signed answer
posted twice, an answer made for another login or another relying party, a key removed while a
login waits on it, a registration replayed or made for another user's challenge.
Assertions and registrations are built in-process by the software authenticator.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from sqlalchemy import select

from fixtures.oidc import FormBrowser

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "webauthn"))

from soft_authenticator import SoftAuthenticator, enrolled_key, options_of  # noqa: E402


def respond(web: FormBrowser, page, response: dict, **fields):
    return web.submit(page.form_with("response"), {"response": json.dumps(response), **fields})


def events(live_server, name: str) -> list:
    from idp.db import db
    from idp.models import AuditEvent

    with live_server.context():
        return [e.details for e in db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)
                                                      .order_by(AuditEvent.id))]


def key_row(live_server, lookup_key: str):
    from idp.db import db
    from idp.models import Credential

    with live_server.context():
        row = db.session.scalars(select(Credential).where(Credential.lookup_key == lookup_key)).one()
        db.session.expunge(row)
        return row


def at_key_page(live_server, seeded, rp) -> FormBrowser:
    web = FormBrowser(live_server.url)
    web.get(rp.authorization_url())
    page = web.login(seeded.user_email, seeded.password)
    assert 'id="webauthn-options"' in page.text, page.text[:2000]
    return web


def test_one_signed_answer_posted_twice_signs_in_once(live_server, seeded, rp_factory):
    key = enrolled_key(live_server, seeded)
    web = at_key_page(live_server, seeded, rp_factory(seeded.first_party))
    page = web.page
    answer = key.get(options_of(page), sign_count=11)
    respond(web, page, answer)
    assert web.callback_params()["code"]
    again = respond(web, page, answer)  # the same form and answer (a double click, a replay)
    assert web.last_redirect is None and again.status == 400, again.text[:3000]  # the login is over: no second code
    assert key_row(live_server, key.id).counter == 11
    assert events(live_server, "login.second_factor_failed") == []
    assert events(live_server, "webauthn.clone_suspected") == []


def test_an_answer_made_for_one_login_is_refused_by_another_and_counted(live_server, seeded, rp_factory):
    rp = rp_factory(seeded.first_party)
    key = enrolled_key(live_server, seeded)
    login_a, login_b = at_key_page(live_server, seeded, rp), at_key_page(live_server, seeded, rp)
    for_a = key.get(options_of(login_a.page), sign_count=11)
    page = respond(login_b, login_b.page, for_a)
    assert page.status == 401 and login_b.last_redirect is None
    assert "That did not work" in page.text
    assert [e["reason"] for e in events(live_server, "login.second_factor_failed")] == ["invalid_response"]
    assert key_row(live_server, key.id).counter == 10, "a refused answer moved the key's count"
    # The login it was made for still takes it; the other's page has a new challenge.
    respond(login_a, login_a.page, for_a)
    assert login_a.callback_params()["code"]
    respond(login_b, page, key.get(options_of(page), sign_count=12))
    assert login_b.callback_params()["code"]


def test_an_answer_signed_for_another_relying_party_is_refused_and_counted(live_server, seeded, rp_factory):
    """The right key, the right challenge and origin, but authenticator data for another RP id
    (a phishing site's relay, an authenticator answering for the wrong site)."""
    key = enrolled_key(live_server, seeded)
    web = at_key_page(live_server, seeded, rp_factory(seeded.first_party))
    key.rp_id = "evil.example"
    page = respond(web, web.page, key.get(options_of(web.page), sign_count=11))
    assert page.status == 401 and web.last_redirect is None
    assert [e["reason"] for e in events(live_server, "login.second_factor_failed")] == ["invalid_response"]
    assert key_row(live_server, key.id).counter == 10


def test_a_key_removed_while_a_login_waits_on_it_is_refused_with_a_fitting_message(live_server, seeded, rp_factory):
    """The login page listed the key; the user (or an admin) removes it before it is answered. Its
    answer signs no one in. With no key left, the page says the method can no longer be used --
    not that push approvals were suspended, which has nothing to do with it."""
    from idp.db import db
    from idp.factors import directory
    from idp.factors.registry import current_registry
    from idp.models import Credential

    key = enrolled_key(live_server, seeded)
    web = at_key_page(live_server, seeded, rp_factory(seeded.first_party))
    answer = key.get(options_of(web.page), sign_count=11)
    with live_server.context():
        row = db.session.scalars(select(Credential).where(Credential.lookup_key == key.id)).one()
        current_registry().store.revoke(directory.find_user_by_email(seeded.user_email), row.id)
        db.session.commit()
    page = respond(web, web.page, answer)
    assert web.last_redirect is None and page.status == 403
    assert "can no longer be used" in page.text and "push" not in page.text, page.text[:3000]


def test_with_two_keys_the_removed_ones_answer_is_refused_and_the_other_signs_in(live_server, seeded, rp_factory):
    from idp.db import db
    from idp.factors import directory
    from idp.factors.registry import current_registry
    from idp.models import Credential

    first = enrolled_key(live_server, seeded)
    second = enrolled_key(live_server, seeded)
    web = at_key_page(live_server, seeded, rp_factory(seeded.first_party))
    assert {c["id"] for c in options_of(web.page)["allowCredentials"]} == {first.id, second.id}
    answer = first.get(options_of(web.page), sign_count=11)
    with live_server.context():
        row = db.session.scalars(select(Credential).where(Credential.lookup_key == first.id)).one()
        current_registry().store.revoke(directory.find_user_by_email(seeded.user_email), row.id)
        db.session.commit()
    page = respond(web, web.page, answer)
    assert page.status == 401 and web.last_redirect is None
    assert [c["id"] for c in options_of(page)["allowCredentials"]] == [second.id]
    respond(web, page, second.get(options_of(page), sign_count=11))
    assert web.callback_params()["code"]


def _at_security_enrolment(live_server, email, password) -> FormBrowser:
    web = FormBrowser(live_server.url)
    web.get("/account/security")
    page = web.login(email, password)
    web.submit(next(f for f in page.forms() if f["action"].endswith("/add/webauthn")))
    assert 'id="webauthn-options"' in web.page.text
    return web


def webauthn_keys(live_server, email: str) -> list[str]:
    from idp.db import db
    from idp.models import Credential, User

    with live_server.context():
        return db.session.scalars(select(Credential.lookup_key).join(User, User.id == Credential.user_id).where(
            User.email == email, Credential.factor == "webauthn", Credential.revoked_at.is_(None))).all()


def test_one_registration_posted_twice_registers_one_key(live_server, seeded):
    web = _at_security_enrolment(live_server, seeded.user_email, seeded.password)
    page = web.page
    key = SoftAuthenticator("localhost", live_server.url)
    attestation = key.create(options_of(page))
    respond(web, page, attestation, label="Key")
    again = respond(web, page, attestation, label="Key")
    assert again.status < 500
    assert webauthn_keys(live_server, seeded.user_email) == [key.id]
    assert len(events(live_server, "factor.enrolled")) == 1


def test_a_registration_made_for_another_users_challenge_is_refused(live_server, seeded):
    """Bob's page's challenge, answered and posted on Alice's page (a registration made elsewhere,
    fed to a victim's session): nothing is registered to either."""
    alice = _at_security_enrolment(live_server, seeded.user_email, seeded.password)
    bob = _at_security_enrolment(live_server, seeded.admin_email, seeded.password)
    key = SoftAuthenticator("localhost", live_server.url)
    page = respond(alice, alice.page, key.create(options_of(bob.page)), label="Planted")
    assert page.status == 400
    assert webauthn_keys(live_server, seeded.user_email) == [] and webauthn_keys(live_server, seeded.admin_email) == []


def test_a_required_user_cannot_remove_their_only_key(live_server, seeded):
    """2FA required, one security key: the security page (signed in with the key) refuses to remove
    it, and says why; the key stays."""
    from sqlalchemy import update

    from idp.db import db
    from idp.models import User

    key = enrolled_key(live_server, seeded)
    with live_server.context():
        db.session.execute(update(User).where(User.email == seeded.user_email).values(mfa_setting="required"))
        db.session.commit()
    web = FormBrowser(live_server.url)
    web.get("/account/security")
    page = web.login(seeded.user_email, seeded.password)
    respond(web, page, key.get(options_of(page), sign_count=11))
    page = web.get("/account/security")
    href = re.search(r'data-remove="\d+"\s+href="([^"]+)"', page.text).group(1)
    confirm = web.get(href)
    assert confirm.status == 403 and "add another method before removing your last one" in confirm.text
    assert webauthn_keys(live_server, seeded.user_email) == [key.id]
