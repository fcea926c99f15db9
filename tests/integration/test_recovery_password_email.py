"""Personal accounts: push recovery on a new phone with the password plus a code e-mailed through a
real SMTP server (aiosmtpd on 127.0.0.1, set through `[mail]`), driven through the app's
`recover ACCOUNT --password` exactly as a script would: password on stdin's first line, then the
code, read from the mailbox, on the second."""
from __future__ import annotations

import re

import pytest

from fixtures.mail import Inbox
from fixtures.oidc import start_server
from recovery_kit import audit_events, enable_recovery, push_devices, push_login, restored_phones

CODE_TTL = 900  # seconds: the mail says 15 minutes


@pytest.fixture
def live_server(migrated_database_url, inbox):
    """The live server (as in fixtures/oidc.py), its `[mail]` pointing at the local SMTP server."""
    _handler, port = inbox
    live = start_server(migrated_database_url, {"mail.host": "127.0.0.1", "mail.port": port,
                                                "mail.sender": "idp@acme.test",
                                                "factors.qr_recovery.code_ttl": CODE_TTL})
    enable_recovery(live)
    yield live
    live.stop()


@pytest.fixture
def server(live_server):
    return live_server


def phones_restored(server, email: str, tmp_path, handler: Inbox):
    """restored_phones, and the mail its old phone's registration sent ("A new device was added")
    taken out of the inbox: what the tests read from there comes after."""
    phones = restored_phones(server, email, tmp_path)
    [(_rcpt, notice)] = handler.wait_for(1)
    assert notice["Subject"] == "A new device was added to your account"
    handler.messages.clear()
    return phones


def code_of(message) -> str:
    return re.search(r"\b(\d{6})\b", message.get_body(("plain",)).get_content()).group(1)


def recover_with_password(phone, account, password: str, inbox: Inbox, code_for=None):
    """Run `recover --password`: the password now, the e-mailed code once it arrives."""
    process = phone.popen("recover", account, "--password")
    process.stdin.write(password + "\n")
    process.stdin.flush()
    code = None
    if code_for is not None:
        _rcpt, message = inbox.wait_for(code_for)[code_for - 1]
        code = code_of(message)
    try:
        out, err = process.communicate((code or "") + "\n", timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, out, err, code


def test_password_and_emailed_code_give_the_new_phone_its_own_key(server, seeded, inbox, rp_factory, tmp_path):
    handler, _port = inbox
    old, new, account = phones_restored(server, seeded.user_email, tmp_path, handler)
    status, out, err, code = recover_with_password(new, account, seeded.password, handler, code_for=1)
    assert status == 0, err
    assert out.startswith("recovered") and "password and e-mailed code" in out
    assert "old phone keeps its own" in out  # (docs/recovery.md: both work until one is revoked)
    assert "a code was sent to a***@acme.test" in err
    rcpt, message = handler.messages[0]
    assert rcpt == [seeded.user_email] and message["From"] == "idp@acme.test"
    assert message["Subject"] == "Your recovery code" and len(code) == 6
    assert "valid for 15 minutes" in message.get_body(("plain",)).get_content()
    assert new.accounts()[0]["status"] == "active"
    # The other devices' owner hears of it: a notice by e-mail, and the audit log for the admins.
    _rcpt, notice = handler.wait_for(2)[1]
    assert notice["Subject"] == "A new device was added to your account"
    assert [d.get("via") for _a, d in audit_events(server, "push.device_registered")] == ["activation", "recover"]
    assert not audit_events(server, "recover.device_added")  # one event for one device
    assert len(push_devices(server, seeded.user_email)) == 2
    rp = rp_factory(seeded.first_party)
    push_login(server, seeded, rp, new)
    push_login(server, seeded, rp, old)


def test_the_database_is_not_held_while_the_relay_takes_the_code(server, seeded, inbox, tmp_path):
    """The code's mail leaves with no transaction open: on SQLite the read of the user's address
    (idp.factors.directory.send_code) held the database's write lock through the relay's answer,
    and every other request of every worker waited for it."""
    from fixtures.database import writes_at_once

    handler, _port = inbox
    _old, new, account = phones_restored(server, seeded.user_email, tmp_path, handler)
    while_received = []
    handler.while_receiving = lambda: while_received.append(writes_at_once(server.database_url))
    status, _out, err, _code = recover_with_password(new, account, seeded.password, handler, code_for=1)
    assert status == 0, err
    assert while_received[0] is True


def test_wrong_password_sends_nothing(server, seeded, inbox, tmp_path):
    handler, _port = inbox
    _old, new, account = phones_restored(server, seeded.user_email, tmp_path, handler)
    before = new.files()
    status, _out, err, _code = recover_with_password(new, account, "not my password", handler)
    assert status == 34 and "wrong e-mail or password" in err
    assert len(err.strip().splitlines()) == 1
    assert handler.messages == [] and new.files() == before


def test_wrong_code_is_refused_with_the_tries_left(server, seeded, inbox, tmp_path):
    handler, _port = inbox
    _old, new, account = phones_restored(server, seeded.user_email, tmp_path, handler)
    process = new.popen("recover", account, "--password")
    process.stdin.write(seeded.password + "\n")
    process.stdin.flush()
    _rcpt, message = handler.wait_for(1)[0]
    wrong = "000000" if code_of(message) != "000000" else "111111"
    out, err = process.communicate(wrong + "\n", timeout=60)
    assert process.returncode == 35 and "wrong code (4 tries left, but no other code was given)" in err
    assert "run recover again, which e-mails a new code" in err
    assert new.accounts()[0]["status"] == "needs_verification"
    assert len(push_devices(server, seeded.user_email)) == 1


def test_a_wrong_code_can_be_given_again_on_the_next_line(server, seeded, inbox, tmp_path):
    """The tries the server leaves a code are the user's to use in the same run: a new run of
    `recover` would ask for a new code, and the one in the mailbox would no longer count (the
    message used to say "4 tries left: run recover again")."""
    handler, _port = inbox
    _old, new, account = phones_restored(server, seeded.user_email, tmp_path, handler)
    process = new.popen("recover", account, "--password")
    process.stdin.write(seeded.password + "\n")
    process.stdin.flush()
    _rcpt, message = handler.wait_for(1)[0]
    code = code_of(message)
    wrong = "000000" if code != "000000" else "111111"
    out, err = process.communicate(f"{wrong}\n{code}\n", timeout=60)
    assert process.returncode == 0, err
    assert "wrong code (4 tries left); reading another from stdin" in err
    assert out.startswith("recovered")
    assert new.accounts()[0]["status"] == "active"
    assert len(push_devices(server, seeded.user_email)) == 2
    assert len([m for _r, m in handler.messages if m["Subject"] == "Your recovery code"]) == 1


def test_no_code_line_is_a_clear_error(server, seeded, inbox, tmp_path):
    handler, _port = inbox
    _old, new, account = phones_restored(server, seeded.user_email, tmp_path, handler)
    result = new.run("recover", account, "--password", stdin="")
    assert result.returncode != 0 and "no password on stdin" in result.stderr


def test_a_password_reset_by_email_adds_no_phone_until_a_login_proves_a_second_factor(server, seeded, inbox,
                                                                                        rp_factory, tmp_path):
    """A reset link and the recovery code both go to the mailbox: together they would give whoever
    holds it a phone of their own, past the second factor. Refused, until a login with one."""
    from dataclasses import replace

    from fixtures.oidc import FormBrowser
    from fixtures.threads import finished
    from test_password_reset import ask_for_link, link_in

    handler, _port = inbox
    old, new, account = phones_restored(server, seeded.user_email, tmp_path, handler)
    browser = FormBrowser(server.url)
    ask_for_link(browser, seeded.user_email)
    [(_rcpt, message)] = handler.wait_for(1)
    reset = browser.get(link_in(message)).form_with("password")
    assert browser.submit(reset, {"password": "a brand new passphrase",
                                  "confirm": "a brand new passphrase"}).url.endswith("/password/changed")
    finished("security-notices")  # the "password changed" notice
    handler.messages.clear()

    status, _out, err, _code = recover_with_password(new, account, "a brand new passphrase", handler)
    assert status != 0 and "reset by e-mail" in err and len(err.strip().splitlines()) == 1
    assert handler.messages == [] and len(push_devices(server, seeded.user_email)) == 1

    # The old phone answers a login: the password is the owner's again, recovery works.
    push_login(server, replace(seeded, password="a brand new passphrase"), rp_factory(seeded.first_party), old)
    status, _out, err, _code = recover_with_password(new, account, "a brand new passphrase", handler, code_for=1)
    assert status == 0, err
    assert len(push_devices(server, seeded.user_email)) == 2


def test_a_password_changed_on_a_password_only_session_after_a_reset_still_adds_no_phone(server, seeded, inbox,
                                                                                         tmp_path):
    """Exempt from 2FA, the user's password-only session proves no more than the reset link that
    opened it: a password changed there does not lift the refusal."""
    from sqlalchemy import update

    from fixtures.oidc import FormBrowser
    from fixtures.threads import finished
    from idp.db import db
    from idp.models import User
    from test_password_reset import ask_for_link, link_in

    handler, _port = inbox
    _old, new, account = phones_restored(server, seeded.user_email, tmp_path, handler)
    with server.context():
        db.session.execute(update(User).where(User.email == seeded.user_email).values(mfa_setting="exempt"))
        db.session.commit()
    browser = FormBrowser(server.url)
    ask_for_link(browser, seeded.user_email)
    [(_rcpt, message)] = handler.wait_for(1)
    browser.submit(browser.get(link_in(message)).form_with("password"),
                   {"password": "a brand new passphrase", "confirm": "a brand new passphrase"})
    page = browser.get("/account/password")
    page = browser.login(seeded.user_email, "a brand new passphrase")  # the password alone: exempt
    page = browser.submit(page.form_with("current"), {"current": "a brand new passphrase",
                                                      "password": "another passphrase", "confirm": "another passphrase"})
    finished("security-notices")
    handler.messages.clear()
    status, _out, err, _code = recover_with_password(new, account, "another passphrase", handler)
    assert status != 0 and "reset by e-mail" in err
    assert len(push_devices(server, seeded.user_email)) == 1


def test_an_old_backup_does_not_bring_back_push_the_user_removed(server, seeded, inbox, tmp_path):
    """The user removes their only phone's push device; a backup it wrote earlier, restored on another
    phone, holds no key (docs/backup-format.md), and the password with an e-mailed code does not
    register one: recovery restores push beside a live device, it never gives it back to an account
    that no longer has it (`no_push_device`, status 38, no code sent, nothing changed on the phone).
    The removed phone itself is refused by the server."""
    from idp.db import db
    from idp.factors import directory
    from idp.factors.registry import current_registry

    handler, _port = inbox
    old, new, account = phones_restored(server, seeded.user_email, tmp_path, handler)
    [device] = push_devices(server, seeded.user_email)
    with server.context():
        current_registry().remove_credential(directory.find_user_by_email(seeded.user_email), device.id)
        db.session.commit()
    assert push_devices(server, seeded.user_email) == []
    gone = old.run("pending")
    assert gone.returncode != 0 and len(gone.stderr.strip().splitlines()) == 1
    assert "no longer accepts this device" in gone.stderr

    before = new.files()
    status, out, err, _code = recover_with_password(new, account, seeded.password, handler)
    assert status == 38 and not out, err
    assert err.strip().splitlines() == ["idp-authenticator: this account has no push sign-in to recover on the "
                                        "server: ask your administrator for a recovery QR code"]
    assert handler.messages == [] and new.files() == before
    assert new.accounts()[0]["status"] == "needs_verification"
    assert push_devices(server, seeded.user_email) == []
