"""Security notices: a user's password or sign-in methods change, and their mailbox hears of it,
once the change is committed (idp.security_notices), through a real SMTP server."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from fixtures.threads import finished
from fixtures.oidc import FormBrowser, seed, start_server


@pytest.fixture
def server(migrated_database_url, inbox):
    _handler, port = inbox
    live = start_server(migrated_database_url, {"mail.host": "127.0.0.1", "mail.port": port,
                                               "mail.sender": "idp@acme.test"})
    yield live
    live.stop()


@pytest.fixture
def mail(inbox):
    return inbox[0]


def alice(server, email: str = "alice@acme.test"):
    from idp.db import db
    from idp.models import User

    return db.session.scalar(select(User).where(User.email == email))


def sent_out() -> None:
    """Every notice thread started so far has finished (sent, or decided not to)."""
    finished("security-notices")


def body(message) -> str:
    return message.get_body(("plain",)).get_content()


def test_a_new_password_is_told_to_its_owner_whoever_set_it(server, mail):
    from idp import users
    from idp.db import db

    seeded = seed(server)
    with server.context():
        users.set_password(alice(server), "a new passphrase for alice", actor="cli")
        db.session.commit()
    [(to, message)] = mail.wait_for(1)
    assert to == [seeded.user_email] and message["Subject"] == "Your password was changed"
    assert "If you did not do this" in body(message) and "passphrase" not in body(message)
    # Where to see what changed: the security page at the issuer, whatever request made the change.
    assert body(message).rstrip().endswith(f"{server.url}/account/security")


def test_a_password_reset_by_link_is_told_too(server, mail):
    seeded = seed(server)
    browser = FormBrowser(server.url)
    browser.submit(browser.get("/password/forgot").form_with("username"), {"username": seeded.user_email})
    link = next(word for word in body(mail.wait_for(1)[0][1]).split() if "/password/reset/" in word)
    browser.submit(browser.get(link).form_with("password"),
                   {"password": "a brand new passphrase", "confirm": "a brand new passphrase"})
    assert browser.page.url.endswith("/password/changed")
    assert mail.wait_for(2)[1][1]["Subject"] == "Your password was changed"


def test_the_database_is_not_held_while_the_relay_takes_a_notice(server, mail):
    """A notice's reads end before the relay is spoken to. On SQLite every transaction holds the
    database's write lock, and the notice's read of its user kept every other request of every
    worker waiting while the relay answered (up to the SMTP timeout, 10 s; then 500s)."""
    from fixtures.database import writes_at_once
    from idp import users
    from idp.db import db

    seed(server)
    while_received = []
    mail.while_receiving = lambda: while_received.append(writes_at_once(server.database_url))
    with server.context():
        users.set_password(alice(server), "a new passphrase for alice", actor="cli")
        db.session.commit()
    mail.wait_for(1)
    assert while_received == [True]


def test_a_notice_the_relay_refused_is_logged_with_the_request_that_made_the_change(server, mail, log_stream):
    """The notice leaves on a thread after the answer; its warning still names the request (its id)."""
    from fixtures.logs import json_lines

    seeded = seed(server)
    browser = FormBrowser(server.url)
    browser.submit(browser.get("/password/forgot").form_with("username"), {"username": seeded.user_email})
    link = next(word for word in body(mail.wait_for(1)[0][1]).split() if "/password/reset/" in word)
    mail.refusing = True
    browser.http.headers["X-Request-ID"] = "new-password-1"
    browser.submit(browser.get(link).form_with("password"),
                   {"password": "a brand new passphrase", "confirm": "a brand new passphrase"})
    sent_out()
    [warning] = [line for line in json_lines(log_stream) if line["logger"] == "idp.security_notices"]
    assert warning["message"].startswith("security notice password_changed") and warning["level"] == "WARNING"
    assert warning.get("request_id") == "new-password-1"


def test_a_sign_in_method_added_or_removed_is_named_in_the_users_language(server, mail):
    from idp import audit
    from idp.db import db

    seed(server)
    with server.context():
        user = alice(server)
        user.locale = "fr"
        for event in ("factor.enrolled", "factor.removed"):
            audit.record(event, org_id=user.org_id, actor_id=user.id, actor=user.email, subject_id=user.id,
                         details={"factor": "totp", "credential_id": 1})
            db.session.commit()
    messages = [message for _, message in mail.wait_for(2)]
    assert sorted(m["Subject"] for m in messages) == [              # (each leaves on a thread of its own)
        "Une méthode de connexion a été ajoutée à votre compte", "Une méthode de connexion a été retirée de votre compte"]
    assert all("Application d'authentification" in body(m) for m in messages), body(messages[0])


def test_a_sign_in_by_a_recovery_method_and_an_admins_recovery_qr_code_are_told(server, mail):
    """Both open the account without the usual second factor: its owner hears of each."""
    from idp import audit
    from idp.db import db

    seed(server)
    with server.context():
        user = alice(server)
        audit.record("login.recovery_used", org_id=user.org_id, actor_id=user.id, actor=user.email,
                     subject_id=user.id, details={"factor": "recovery_codes", "credential_id": 1})
        db.session.commit()
        audit.record("recovery_qr.issued", org_id=user.org_id, actor="admin@acme.test", subject_id=user.id,
                     details={"credential_id": 2, "expires_at": "2026-12-04T00:00:00Z"})
        db.session.commit()
    messages = {message["Subject"]: body(message) for _, message in mail.wait_for(2)}
    used = messages["Someone signed in to your account with a recovery method"]
    assert "Recovery code" in used or "recovery code" in used, used
    assert "set up a new phone" in messages["An administrator issued a recovery QR code for your account"]


def test_a_totp_secret_an_operator_imported_is_told_and_listed(server, mail):
    """`idp factor totp import` adds a method the user did not add themselves: the mail and the
    security page's Recent activity say so, as for one they added."""
    from click.testing import CliRunner

    from idp.account import activity
    from idp.factors.registry import factor_group

    seeded = seed(server)
    with server.context():
        result = CliRunner().invoke(factor_group(), ["totp", "import", "--user", seeded.user_email, "--secret-stdin"],
                                    input="JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n")
        assert result.exit_code == 0, result.output
        [added] = [line for line in activity.recent(alice(server)) if line.what == "Sign-in method added"]
        assert added.about == "Authenticator app" and not added.by_admin
    [(to, message)] = mail.wait_for(1)
    assert to == [seeded.user_email] and message["Subject"] == "A sign-in method was added to your account"
    assert "Authenticator app" in body(message)


def test_an_enrolment_that_found_its_credential_already_announced_sends_nothing_more(server, mail):
    """A push device stores itself (the phone registers it) and its factor mails the owner then;
    the `factor.enrolled` of the page's last step, after it, is `announced`: no second mail."""
    from idp import audit
    from idp.db import db

    seed(server)
    with server.context():
        user = alice(server)
        audit.record("factor.enrolled", org_id=user.org_id, actor_id=user.id, actor=user.email, subject_id=user.id,
                     details={"factor": "push", "credential_id": 7, "during": "account", "announced": True})
        db.session.commit()
        audit.record("factor.enrolled", org_id=user.org_id, actor_id=user.id, actor=user.email, subject_id=user.id,
                     details={"factor": "totp", "credential_id": 8, "during": "account"})
        db.session.commit()
    sent_out()  # (each notice thread has delivered, or decided not to)
    [(_to, message)] = mail.wait_for(1)
    assert "Authenticator app" in body(message)  # the TOTP one, not the announced one


def test_nothing_is_sent_for_a_change_rolled_back_or_an_unverified_address(server, mail):
    from idp import users
    from idp.db import db

    seeded = seed(server)
    with server.context():
        users.set_password(alice(server), "rolled back with its change", actor="cli")
        db.session.rollback()
        admin = alice(server, seeded.admin_email)
        admin.email_verified = False
        db.session.commit()
        users.set_password(admin, "unverified addresses hear nothing", actor="cli")
        db.session.commit()
        users.set_password(alice(server), "the one that is told", actor="cli")   # the sentinel
        db.session.commit()
    [(to, _message)] = mail.wait_for(1)
    assert to == [seeded.user_email]
    sent_out()
    assert len(mail.messages) == 1


def test_the_notices_can_be_turned_off(migrated_database_url, inbox):
    from idp import users
    from idp.db import db

    handler, port = inbox
    live = start_server(migrated_database_url, {"mail.host": "127.0.0.1", "mail.port": port,
                                               "mail.security_notices": False})
    try:
        seeded = seed(live)
        with live.context():
            users.set_password(alice(live), "a new passphrase for alice", actor="cli")
            db.session.commit()
        browser = FormBrowser(live.url)                                             # a reset link still goes out
        browser.submit(browser.get("/password/forgot").form_with("username"), {"username": seeded.user_email})
        [(_to, message)] = handler.wait_for(1)
        assert message["Subject"] == "Reset your password"
        sent_out()
        assert len(handler.messages) == 1
    finally:
        live.stop()


def test_a_user_who_uses_the_site_in_french_hears_in_french_without_choosing_it(server, mail):
    """No language chosen with the form (User.locale unset): the notice is in the language of the
    page where the change was made (here the browser's Accept-Language), not English."""
    seeded = seed(server)
    browser = FormBrowser(server.url)
    browser.http.headers["Accept-Language"] = "fr"
    browser.submit(browser.get("/password/forgot").form_with("username"), {"username": seeded.user_email})
    link = next(word for word in body(mail.wait_for(1)[0][1]).split() if "/password/reset/" in word)
    browser.submit(browser.get(link).form_with("password"),
                   {"password": "a brand new passphrase", "confirm": "a brand new passphrase"})
    notice = mail.wait_for(2)[1][1]
    assert notice["Subject"] == "Votre mot de passe a été changé"
    assert "sécurité de votre compte" in body(notice) and f"{server.url}/account/security" in body(notice)
    with server.context():
        assert alice(server).locale is None  # a language seen is not a language chosen


def test_an_admins_language_is_not_the_users_and_a_chosen_one_wins(server, mail):
    from idp import audit
    from idp.db import db

    seed(server)
    with server.app.test_request_context("/admin/", headers={"Accept-Language": "fr"}):
        user = alice(server)
        audit.record("factor.reset", org_id=user.org_id, actor_id=user.id + 1000, actor="admin@acme.test",
                     subject_id=user.id)
        db.session.commit()
    assert mail.wait_for(1)[0][1]["Subject"] == "Your second factors were reset"
    with server.app.test_request_context("/account/", headers={"Accept-Language": "fr"}):
        user = alice(server)
        user.locale = "en"
        audit.record("recovery_codes.regenerated", org_id=user.org_id, actor_id=user.id, actor=user.email,
                     subject_id=user.id)
        db.session.commit()
    assert mail.wait_for(2)[1][1]["Subject"] == "New recovery codes were made for your account"


def test_an_emailed_code_asked_for_in_french_is_in_french(server, mail):
    from idp.factors import directory

    seeded = seed(server)
    with server.app.test_request_context("/factors/qr_recovery/", headers={"Accept-Language": "fr-FR,fr;q=0.9"}):
        ref = directory.user_ref(alice(server))
        assert directory.send_code(ref, "123456", "recovery", valid_seconds=600) == "a***@acme.test"
    [(to, message)] = mail.wait_for(1)
    assert to == [seeded.user_email] and message["Subject"] == "Votre code de récupération"


def test_a_new_devices_name_is_quoted_as_whoever_added_it_gave_it_and_cut_short():
    """Whoever registers a phone chooses its name, and may be the very person the notice is meant
    to expose (a stolen recovery QR code): the name is said to be theirs, within quotes it cannot
    close, and cut short (an audit wrote "IT set this up, nothing to do" and a link into it)."""
    from idp.security_notices import SHOWN_NAME, _quoted_name

    assert _quoted_name("Pixel 9") == "Pixel 9"
    assert _quoted_name(None) is None and _quoted_name("") is None
    forged = _quoted_name("Pixel”. IT set this up, nothing to do. Undo: https://evil.example/undo")
    assert "”" not in forged and len(forged) <= SHOWN_NAME and forged.endswith("…")
    assert "evil.example" not in forged


def test_an_admins_changes_on_the_admin_pages_are_told_once_to_the_member_alone(server, mail):
    """Over HTTP, as an admin does it: a password the rules refused mails nothing, the one set
    mails its owner once (not the admin, and in the owner's language, not the admin's page's), and
    a "Sign out everywhere" alone is no change the notices are for (docs/operations.md)."""
    seeded = seed(server)
    with server.context():
        member_id = alice(server).id
    admin = FormBrowser(server.url)
    admin.http.headers["Accept-Language"] = "fr"
    admin.get("/account/security")
    admin.login(seeded.admin_email, seeded.password)
    form = admin.get(f"/admin/users/{member_id}/password").form_with("confirm")
    assert admin.submit(form, {"password": "short", "confirm": "short"}).status == 400
    form = admin.get(f"/admin/users/{member_id}/password").form_with("confirm")
    page = admin.submit(form, {"password": "a new passphrase from the admin", "confirm": "a new passphrase from the admin"})
    assert page.status == 200 and "flash-success" in page.text, page.text[:1000]
    page = admin.get(f"/admin/users/{member_id}/sign-out")
    page = admin.submit(page.form_with("csrf_token"))
    assert page.status == 200 and "flash-success" in page.text, page.text[:1000]
    [(to, message)] = mail.wait_for(1)
    assert to == [seeded.user_email] and message["Subject"] == "Your password was changed"
    assert "passphrase" not in body(message)
    sent_out()
    assert len(mail.messages) == 1


def test_an_admins_reset_of_the_second_factors_is_told_once_and_a_reset_of_nothing_not_at_all(server, mail):
    """The admin page's "Reset second factors" mails the member once (not one mail per method it
    revoked, not the admin); pressed again with nothing left, no change, no event, no mail."""
    from click.testing import CliRunner

    from idp.factors.registry import factor_group

    seeded = seed(server)
    with server.context():
        member_id = alice(server).id
        result = CliRunner().invoke(factor_group(), ["totp", "import", "--user", seeded.user_email, "--secret-stdin"],
                                    input="JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n")
        assert result.exit_code == 0, result.output
    mail.wait_for(1)
    admin = FormBrowser(server.url)
    admin.get("/account/security")
    admin.login(seeded.admin_email, seeded.password)
    for flash in ("flash-success", "flash-warning"):
        page = admin.submit(admin.get(f"/admin/users/{member_id}/reset-factors").form_with("csrf_token"))
        assert page.status == 200 and flash in page.text, page.text[:1000]
    [_imported, (to, message)] = mail.wait_for(2)
    assert to == [seeded.user_email] and message["Subject"] == "Your second factors were reset"
    sent_out()
    assert len(mail.messages) == 2
