"""Invitations by e-mail (idp/invitations.py): an admin or the operator invites a person, who
chooses their password with the mailed link, which proves their address; nothing signs them in.

Over real HTTP against a live server whose `[mail]` is a real SMTP server (aiosmtpd,
fixtures/mail.py), with an independent OIDC client for the tokens; the `idp` command as a
subprocess. On SQLite and, when IDP_TEST_DATABASE_URL is set, PostgreSQL. The reset links that
share the machinery are tests/integration/test_password_reset.py's.
"""
from __future__ import annotations

import json
import re
from datetime import timedelta

import pyotp
import pytest
import requests
from sqlalchemy import select, update

from fixtures.cli import ok
from fixtures.oidc import FormBrowser, password_login, start_server

NEW_PASSWORD = "a brand new passphrase"
PER_HOUR = 2
LINK = re.compile(r"(http://\S+/invitation/[A-Za-z0-9_-]{43})\s")
CAROL = "carol@acme.test"


@pytest.fixture
def live_server(migrated_database_url, inbox):
    _handler, port = inbox
    server = start_server(migrated_database_url, {"mail.host": "127.0.0.1", "mail.port": port,
                                                  "mail.sender": "idp@acme.test", "password_reset.per_hour": PER_HOUR})
    yield server
    server.stop()


@pytest.fixture
def mail(inbox):
    return inbox[0]


def link_in(message) -> str:
    return LINK.search(message.get_body(("plain",)).get_content()).group(1)


def events(server, name: str) -> list:
    from idp.db import db
    from idp.models import AuditEvent

    with server.context():
        return db.session.scalars(select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.id)).all()


def user_row(server, email: str):
    from idp.db import db
    from idp.models import User

    with server.context():
        row = db.session.scalar(select(User).where(User.email == email))
        if row is not None:
            db.session.expunge(row)
        return row


def signed_in_admin(server, seeded, rp_factory) -> FormBrowser:
    browser = FormBrowser(server.url)
    password_login(browser, rp_factory(seeded.first_party), seeded.admin_email, seeded.password)
    return browser


def add_by_invitation(admin: FormBrowser, email: str = CAROL, **values):
    form = admin.get("/admin/users/new").form_with("email")
    assert form["fields"].get("how") == "invite", "an invitation is the default"
    return admin.submit(form, {"email": email, "name": "Carol", **values})


def add_without_password(server, seeded, email: str = CAROL, *, org_id: int | None = None, verified=False) -> int:
    """A user as `idp user import` leaves one without a password hash."""
    from idp.db import db
    from idp.models import User
    from idp.security.tokens import random_token

    with server.context():
        row = User(public_id=random_token(16), org_id=org_id or seeded.org_id, email=email, name="Carol",
                   email_verified=verified, password_hash=None)
        db.session.add(row)
        db.session.commit()
        return row.id


def choose_password(browser: FormBrowser, link: str, password: str = NEW_PASSWORD):
    page = browser.get(link)
    assert page.status == 200, page.text[:1500]
    return browser.submit(page.form_with("password"), {"password": password, "confirm": password})


def can_sign_in(server, seeded, rp_factory, email: str, password: str) -> bool:
    browser = FormBrowser(server.url)
    browser.get(rp_factory(seeded.first_party).authorization_url())
    browser.login(email, password)
    return browser.last_redirect is not None and "code=" in browser.last_redirect


# ---------------------------------------------------------------- the admin's invitation, end to end

def test_an_admin_invites_a_new_user_who_chooses_a_password_and_proves_the_address(
        live_server, seeded, rp_factory, mail):
    admin = signed_in_admin(live_server, seeded, rp_factory)
    page = add_by_invitation(admin)
    assert page.status == 200 and "An invitation was sent to" in page.text, page.text[:2000]
    carol = user_row(live_server, CAROL)
    assert carol.password_hash is None and carol.email_verified is False and carol.org_id == seeded.org_id
    assert 'data-invitation="pending"' in page.text and "Send a new invitation" in page.text

    [(rcpt, message)] = mail.wait_for(1)
    assert rcpt == [CAROL] and message["Subject"] == "You are invited to Acme: choose your password"
    body = message.get_body(("plain",)).get_content()
    assert CAROL in body and "7 days" in body
    link = link_in(message)
    assert link.startswith(f"{live_server.url}/invitation/")
    assert not can_sign_in(live_server, seeded, rp_factory, CAROL, NEW_PASSWORD)

    browser = FormBrowser(live_server.url)
    page = browser.get(link)
    assert page.status == 200 and "Welcome to" in page.text and "Acme" in page.text and CAROL in page.text
    assert requests.get(link, timeout=10).headers["Referrer-Policy"] == "no-referrer"
    # The password rules are the reset's: refused, and the link still works.
    page = browser.submit(page.form_with("password"), {"password": "short", "confirm": "short"})
    assert page.status == 400 and "at least 8 characters" in page.text
    page = choose_password(browser, link)
    assert page.status == 200 and page.url == f"{live_server.url}/invitation/accepted"
    assert "your e-mail address is confirmed" in page.text
    # Nothing signed in: this browser has no session of Carol's.
    assert "/login/" in browser.get("/account/security").url

    carol = user_row(live_server, CAROL)
    assert carol.email_verified is True and carol.password_hash.startswith("$argon2id$")
    assert can_sign_in(live_server, seeded, rp_factory, CAROL, NEW_PASSWORD)

    [invited] = events(live_server, "user.invited")
    assert invited.actor == seeded.admin_email and invited.details["by"] == "admin"
    assert invited.subject_id == carol.id and invited.details["expires_at"]
    [accepted] = events(live_server, "user.invitation_accepted")
    assert accepted.actor == "anonymous" and accepted.details["reset_id"] == invited.details["reset_id"]
    assert accepted.details["email_verified_before"] is False and accepted.details["email_verified"] is True
    [changed] = events(live_server, "user.password_changed")
    assert changed.details["by"] == "invitation"
    assert events(live_server, "user.password_reset") == []
    [created] = events(live_server, "user.created")
    assert created.details["password"] == "invitation"
    # Used: the link is dead, and the admin's page no longer offers an invitation (signed in since).
    assert browser.get(link).status == 410
    page = admin.get(f"/admin/users/{carol.id}")
    assert "send-invitation" not in page.text


def test_an_invited_user_enrols_a_second_factor_at_their_first_login_when_required(
        live_server, seeded, rp_factory, mail):
    """An imported user without a password, invited from their admin page; the organization
    requires 2FA: the invitation sets the password, and the first login enrols a factor."""
    from idp.db import db
    from idp.models import Organization

    admin = signed_in_admin(live_server, seeded, rp_factory)  # (a policy change applies from the next login)
    with live_server.context():
        db.session.execute(update(Organization).where(Organization.id == seeded.org_id).values(require_2fa=True))
        db.session.commit()
    user_id = add_without_password(live_server, seeded, "dave@acme.test")
    page = admin.get(f"/admin/users/{user_id}")
    assert 'data-invitation="none"' in page.text and "Send an invitation" in page.text, page.text[:3000]
    page = admin.submit(admin.get(f"/admin/users/{user_id}/invite").form_with("confirm"))
    assert "An invitation was sent to" in page.text, page.text[:2000]
    choose_password(FormBrowser(live_server.url), link_in(mail.wait_for(1)[-1][1]))

    browser = FormBrowser(live_server.url)
    rp = rp_factory(seeded.first_party)
    browser.get(rp.authorization_url(scope="openid email"))
    page = browser.login("dave@acme.test", NEW_PASSWORD)
    assert browser.last_redirect is None, "2FA is required: the login enrols a factor first"
    choose = [f for f in page.forms() if f["action"].endswith("/factor/totp")]
    if choose:
        page = browser.submit(choose[0])
    secret = page.find(r"<code>([A-Z2-7 ]+)</code>").replace(" ", "")
    page = browser.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).now(), "label": "Phone"})
    browser.submit(page.forms()[0])
    tokens = rp.exchange(browser.last_redirect)
    claims = rp.validate_id_token(tokens["id_token"])
    assert "mfa" in claims["amr"]
    assert rp.userinfo(tokens["access_token"]).json()["email_verified"] is True


# ---------------------------------------------------------------- the link's rules

def invite_from_page(admin: FormBrowser, user_id: int):
    return admin.submit(admin.get(f"/admin/users/{user_id}/invite").form_with("confirm"))


def test_a_link_works_once_not_after_it_expires_and_a_new_invitation_kills_the_old_one(
        live_server, seeded, rp_factory, mail):
    from idp.db import db
    from idp.models import PasswordReset

    admin = signed_in_admin(live_server, seeded, rp_factory)
    user_id = add_without_password(live_server, seeded)
    invite_from_page(admin, user_id)
    first = link_in(mail.wait_for(1)[0][1])
    invite_from_page(admin, user_id)
    second = link_in(mail.wait_for(2)[1][1])
    browser = FormBrowser(live_server.url)
    assert browser.get(first).status == 410 and "ask the administrator" in browser.page.text
    # Expired: the same dead page.
    with live_server.context():
        db.session.execute(update(PasswordReset).where(PasswordReset.kind == "invite", PasswordReset.used_at.is_(None))
                           .values(expires_at=PasswordReset.created_at - timedelta(seconds=1)))
        db.session.commit()
    assert browser.get(second).status == 410
    assert user_row(live_server, CAROL).password_hash is None
    # Per account per hour, as reset links (PER_HOUR, both kinds together): the third is refused.
    page = invite_from_page(admin, user_id)
    assert page.status == 429 and "Too many links" in page.text
    assert len(mail.messages) == 2 and len(events(live_server, "user.invited")) == 2


def test_a_link_used_twice_or_posted_without_csrf_or_of_the_other_kind_sets_nothing(
        live_server, seeded, rp_factory, mail):
    admin = signed_in_admin(live_server, seeded, rp_factory)
    user_id = add_without_password(live_server, seeded)
    invite_from_page(admin, user_id)
    link = link_in(mail.wait_for(1)[0][1])
    token = link.rsplit("/", 1)[1]
    # An invitation is no reset link: the reset's URL does not take it.
    assert FormBrowser(live_server.url).get(f"/password/reset/{token}").status == 410
    browser = FormBrowser(live_server.url)
    page = browser.get(link)
    posted = browser.http.post(link, data={"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}, allow_redirects=False)
    assert posted.status_code == 400 and user_row(live_server, CAROL).password_hash is None
    form = page.form_with("password")
    done = browser.submit(form, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert done.url.endswith("/invitation/accepted")
    again = browser.submit(form, {"password": "another passphrase", "confirm": "another passphrase"})
    assert again.status == 410
    assert can_sign_in(live_server, seeded, rp_factory, CAROL, NEW_PASSWORD)
    assert len(events(live_server, "user.invitation_accepted")) == 1


def test_a_disabled_users_invitation_dies_and_a_deleted_users_goes_with_them(live_server, seeded, rp_factory, mail):
    from idp import users
    from idp.db import db
    from idp.models import PasswordReset, User

    admin = signed_in_admin(live_server, seeded, rp_factory)
    user_id = add_without_password(live_server, seeded)
    invite_from_page(admin, user_id)
    link = link_in(mail.wait_for(1)[0][1])
    with live_server.context():
        users.set_disabled(db.session.get(User, user_id), True, actor="cli")
        db.session.commit()
    assert FormBrowser(live_server.url).get(link).status == 410
    with live_server.context():
        users.set_disabled(db.session.get(User, user_id), False, actor="cli")
        db.session.commit()
    assert FormBrowser(live_server.url).get(link).status == 410, "enabling does not revive it"
    # A disabled user is not invited.
    with live_server.context():
        users.set_disabled(db.session.get(User, user_id), True, actor="cli")
        db.session.commit()
    page = admin.get(f"/admin/users/{user_id}")
    assert "send-invitation" not in page.text
    csrf = page.forms()[0]["fields"]["csrf_token"]
    posted = admin.http.post(f"{live_server.url}/admin/users/{user_id}/invite", data={"csrf_token": csrf})
    assert "cannot be invited" in posted.text and len(events(live_server, "user.invited")) == 1
    with live_server.context():
        users.delete(db.session.get(User, user_id), actor="cli")
        db.session.commit()
        assert db.session.scalars(select(PasswordReset).where(PasswordReset.user_id == user_id)).all() == []
    assert FormBrowser(live_server.url).get(link).status == 410


def test_an_invitation_dies_once_its_user_has_signed_in_with_a_first_password(live_server, seeded, rp_factory, mail):
    """An invitation is for someone who never got in (idp.invitations.may_invite): a user the
    admin gave a first password and also invited, who then signs in with that password, is
    someone "Forgot your password?" serves. The week-long link in their mailbox must not stay a
    way to set their password (and it asks no second factor)."""
    admin = signed_in_admin(live_server, seeded, rp_factory)
    form = admin.get("/admin/users/new").form_with("email")
    first = "the first passphrase"
    page = admin.submit(form, {"email": CAROL, "how": "password", "password": first, "confirm": first})
    assert page.status == 200, page.text[:2000]
    carol_id = user_row(live_server, CAROL).id
    assert invite_from_page(admin, carol_id).status == 200
    link = link_in(mail.wait_for(1)[0][1])
    browser = FormBrowser(live_server.url)
    form = browser.get(link).form_with("password")  # read before the sign-in
    assert can_sign_in(live_server, seeded, rp_factory, CAROL, first)
    assert FormBrowser(live_server.url).get(link).status == 410
    done = browser.submit(form, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert done.status == 410
    assert can_sign_in(live_server, seeded, rp_factory, CAROL, first)
    assert events(live_server, "user.invitation_accepted") == []


# ---------------------------------------------------------------- who may invite whom

def test_the_admin_pages_invite_members_only_with_csrf_and_in_their_own_organization(
        live_server, seeded, rp_factory, mail):
    from idp.db import db
    from idp.models import Organization, User

    admin = signed_in_admin(live_server, seeded, rp_factory)
    with live_server.context():
        other = Organization(name="Other")
        db.session.add(other)
        db.session.commit()
        other_id = other.id
        alice_id = db.session.scalar(select(User.id).where(User.email == seeded.user_email))
        admin_id = db.session.scalar(select(User.id).where(User.email == seeded.admin_email))
    stranger = add_without_password(live_server, seeded, "stranger@other.test", org_id=other_id)
    member = add_without_password(live_server, seeded)
    peer = add_without_password(live_server, seeded, "peer@acme.test")
    with live_server.context():
        db.session.execute(update(User).where(User.id == peer).values(role="admin"))
        db.session.commit()
    csrf = admin.get(f"/admin/users/{member}/invite").form_with("confirm")["fields"]["csrf_token"]

    # Another organization's user: the same 404 as no user.
    for method in ("get", "post"):
        response = getattr(admin.http, method)(f"{live_server.url}/admin/users/{stranger}/invite",
                                               data={"csrf_token": csrf}, allow_redirects=False)
        assert response.status_code == 404
    # No CSRF token: 400, nothing sent.
    response = admin.http.post(f"{live_server.url}/admin/users/{member}/invite", data={}, allow_redirects=False)
    assert response.status_code == 400
    # Another admin: the operator's (403, audited); one's own account: the security page.
    response = admin.http.post(f"{live_server.url}/admin/users/{peer}/invite", data={"csrf_token": csrf})
    assert response.status_code == 403
    [refusal] = events(live_server, "admin.peer_action_refused")
    assert refusal.details["action"] == "invite" and refusal.subject_id == peer
    response = admin.http.post(f"{live_server.url}/admin/users/{admin_id}/invite", data={"csrf_token": csrf})
    assert "security page" in response.text
    # A member who signed in with their password already: "Forgot your password?" is theirs.
    assert "send-invitation" in admin.get(f"/admin/users/{alice_id}").text, "never signed in (the seed's)"
    with live_server.context():
        db.session.execute(update(User).where(User.id == alice_id).values(last_login_at=User.created_at))
        db.session.commit()
    assert "send-invitation" not in admin.get(f"/admin/users/{alice_id}").text
    response = admin.http.post(f"{live_server.url}/admin/users/{alice_id}/invite", data={"csrf_token": csrf})
    assert "cannot be invited" in response.text
    # A plain user: 403.
    user_browser = FormBrowser(live_server.url)
    password_login(user_browser, rp_factory(seeded.first_party), seeded.user_email, seeded.password)
    assert user_browser.http.get(f"{live_server.url}/admin/users/{member}/invite",
                                 allow_redirects=False).status_code == 403
    assert events(live_server, "user.invited") == [] and mail.messages == []


def test_set_a_first_password_stays_and_bad_choices_change_nothing(live_server, seeded, rp_factory, mail):
    admin = signed_in_admin(live_server, seeded, rp_factory)
    form = admin.get("/admin/users/new").form_with("email")
    for bad, message in (({"how": "password"}, "Type a first password"),
                         ({"how": "mail"}, "Choose how the user gets in"),
                         ({"how": "invite", "email": "not an address"}, "Invalid e-mail address")):
        page = admin.submit(form, {"email": CAROL, **bad})
        assert page.status == 400 and message in page.text, page.text[:2000]
    assert user_row(live_server, CAROL) is None
    page = admin.submit(form, {"email": CAROL, "how": "password", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert page.status == 200 and "can sign in now" in page.text
    carol = user_row(live_server, CAROL)
    assert carol.email_verified is True and carol.password_hash
    assert 'data-invitation="none"' in page.text, "never signed in: an invitation may still be sent"
    assert mail.messages == [] and events(live_server, "user.invited") == []


def test_a_refused_mail_kills_the_link_and_tells_the_admin(live_server, seeded, rp_factory, inbox):
    handler, _port = inbox
    handler.refusing = True
    admin = signed_in_admin(live_server, seeded, rp_factory)
    page = add_by_invitation(admin)
    assert "could not be e-mailed" in page.text, page.text[:2000]
    [failed] = events(live_server, "password_reset.mail_failed")
    assert failed.details["kind"] == "invite"
    assert failed.actor == seeded.admin_email and failed.actor_id is not None  # the admin who sent it
    handler.refusing = False
    link = link_in(handler.refused[0][1])
    assert FormBrowser(live_server.url).get(link).status == 410


def test_the_invitation_speaks_the_users_language(live_server, seeded, rp_factory, mail):
    from idp.db import db
    from idp.models import User

    admin = signed_in_admin(live_server, seeded, rp_factory)
    user_id = add_without_password(live_server, seeded)
    with live_server.context():
        db.session.execute(update(User).where(User.id == user_id).values(locale="fr"))
        db.session.commit()
    invite_from_page(admin, user_id)
    message = mail.wait_for(1)[0][1]
    assert message["Subject"] == "Invitation à rejoindre Acme : choisissez votre mot de passe"
    assert "7 jours" in message.get_body(("plain",)).get_content()
    page = FormBrowser(live_server.url).get(link_in(message) + "?ui_locales=fr")
    assert page.status == 200


# ---------------------------------------------------------------- the idp command

def cli_env(server, inbox) -> dict:
    return {"IDP_MAIL__HOST": "127.0.0.1", "IDP_MAIL__PORT": str(inbox[1]), "IDP_MAIL__SENDER": "idp@acme.test",
            "IDP_ISSUER": server.url}


def test_idp_user_invite_mails_or_prints_the_link(idp, live_server, seeded, rp_factory, inbox):
    mail = inbox[0]
    env = cli_env(live_server, inbox)
    add_without_password(live_server, seeded)
    result = ok(idp("user", "invite", "--email", CAROL, database_url=live_server.database_url, env=env))
    assert re.fullmatch(rf"invitation mailed to {CAROL}, valid until \d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n",
                        result.stdout), result.stdout
    mailed = link_in(mail.wait_for(1)[0][1])
    result = ok(idp("user", "invite", "--email", CAROL, "--print-link", "--json",
                    database_url=live_server.database_url, env=env))
    [document] = json.loads(result.stdout)
    assert document["email"] == CAROL and document["link"].startswith(f"{live_server.url}/invitation/")
    assert len(mail.messages) == 1, "--print-link mails nothing"

    def shown() -> dict:
        return json.loads(ok(idp("user", "show", "--email", CAROL, "--json", database_url=live_server.database_url)).stdout)

    assert shown()["invitation_expires_at"] == document["expires_at"]  # support sees one is on its way
    browser = FormBrowser(live_server.url)
    assert browser.get(mailed).status == 410, "the printed one replaced it"
    choose_password(browser, document["link"])
    assert shown()["invitation_expires_at"] is None
    assert can_sign_in(live_server, seeded, rp_factory, CAROL, NEW_PASSWORD)
    [first, second] = events(live_server, "user.invited")
    assert first.actor == second.actor == "cli" and second.details["by"] == "cli"
    # A printed link went through the operator's hands, not the mailbox: using it proves no address.
    assert user_row(live_server, CAROL).email_verified is False
    [accepted] = events(live_server, "user.invitation_accepted")
    assert accepted.details["email_verified_before"] is False and accepted.details["email_verified"] is False


def test_idp_user_add_invite_and_the_bulk_invitation_after_an_import(idp, live_server, seeded, rp_factory, inbox):
    mail = inbox[0]
    env = cli_env(live_server, inbox)
    url = live_server.database_url
    result = ok(idp("user", "add", "--org", "Acme", "--email", "Dave@Acme.test", "--invite", database_url=url, env=env))
    assert "created user dave@acme.test" in result.stdout and "invitation mailed to dave@acme.test" in result.stdout
    assert mail.wait_for(1)[0][0] == ["dave@acme.test"]
    assert user_row(live_server, "dave@acme.test").password_hash is None
    for email in ("erin@acme.test", "frank@acme.test"):
        add_without_password(live_server, seeded, email)
    result = ok(idp("user", "invite", "--org", "Acme", "--all-without-password", "--print-link",
                    database_url=url, env=env))
    lines = result.stdout.splitlines()
    assert [line.split()[2].rstrip(",") for line in lines] == ["dave@acme.test", "erin@acme.test", "frank@acme.test"]
    assert all("/invitation/" in line for line in lines) and len(mail.messages) == 1
    result = ok(idp("user", "add", "--org", "Acme", "--email", "gail@acme.test", "--invite", "--print-link", "--json",
                    database_url=url, env=env))
    document = json.loads(result.stdout)
    assert document["email"] == "gail@acme.test" and document["link"].startswith(f"{live_server.url}/invitation/")
    assert document["expires_at"].endswith("Z") and len(mail.messages) == 1
    choose_password(FormBrowser(live_server.url), document["link"])
    assert can_sign_in(live_server, seeded, rp_factory, "gail@acme.test", NEW_PASSWORD)
    assert user_row(live_server, "gail@acme.test").email_verified is False, "a printed link proves no address"


@pytest.mark.parametrize("args, fragment", [
    (("user", "invite"), "either --email"),
    (("user", "invite", "--email", CAROL, "--org", "Acme", "--all-without-password"), "either --email"),
    (("user", "invite", "--all-without-password"), "either --email"),
    (("user", "invite", "--email", "nobody@acme.test"), "no user"),
    (("user", "invite", "--email", "alice@acme.test"), "cannot be invited"),
    (("user", "invite", "--org", "Nope", "--all-without-password"), "unknown organization"),
    (("user", "add", "--org", "Acme", "--email", "new@acme.test"), "exactly one of"),
    (("user", "add", "--org", "Acme", "--email", "new@acme.test", "--invite", "--password-stdin"), "exactly one of"),
    (("user", "add", "--org", "Acme", "--email", "new@acme.test", "--password-stdin", "--print-link"), "--invite"),
    (("user", "add", "--org", "Acme", "--email", CAROL, "--invite"), "already exists"),
])
def test_idp_user_invite_refuses_bad_input_in_one_line_and_changes_nothing(
        idp, live_server, seeded, inbox, args, fragment):
    from fixtures.cli import refused

    add_without_password(live_server, seeded)
    from idp.db import db
    from idp.models import User

    with live_server.context():  # alice signed in with her password: hers is "Forgot your password?"
        db.session.execute(update(User).where(User.email == seeded.user_email).values(last_login_at=User.created_at))
        db.session.commit()
    refused(idp(*args, database_url=live_server.database_url, env=cli_env(live_server, inbox), input="x" * 12 + "\n"),
            fragment)
    assert events(live_server, "user.invited") == [] and inbox[0].messages == []
    assert user_row(live_server, "new@acme.test") is None


def test_idp_user_invite_says_when_invitations_are_off(idp, live_server, seeded, inbox):
    from fixtures.cli import refused

    add_without_password(live_server, seeded)
    refused(idp("user", "invite", "--email", CAROL, database_url=live_server.database_url,
                env={**cli_env(live_server, inbox), "IDP_PASSWORD_RESET__ENABLED": "false"}), "invitations need")
