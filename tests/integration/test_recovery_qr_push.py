"""Push recovery on a new phone with a recovery QR code that an admin issues on the admin page.

The old phone holds a push account and backs it up; the new phone restores the backup (its
push account needs verification), scans the PNG the admin page offers, and gets its own
key. Then both phones' credentials are listed and both approve push logins, until the admin
revokes the old one. The QR code reused, expired or revoked is refused with its own message.
"""
from __future__ import annotations

import pytest

from recovery_kit import (Phone, activation_uri, admin_browser, audit_events, enable_recovery, issue_on_admin_page,
                          push_devices, push_login, restored_phones, user_id)


@pytest.fixture
def server(live_server):
    return enable_recovery(live_server)


def test_new_phone_recovers_push_with_the_admins_qr_and_both_phones_work(server, seeded, rp_factory, tmp_path):
    old, new, account = restored_phones(server, seeded.user_email, tmp_path)
    refused = new.run("approve", "whatever", "--number", "12")
    assert refused.returncode != 0 and "needs verification" in refused.stderr

    admin = admin_browser(server, seeded)
    alice = user_id(server, seeded.user_email)
    issued = issue_on_admin_page(admin, alice)
    png = tmp_path / "recovery-qr.png"
    png.write_bytes(issued["png"])
    out = new.ok("recover", account, "--qr", str(png))
    assert out.startswith("recovered") and "recovery QR code" in out
    [recovered] = new.accounts()
    assert recovered["status"] == "active"

    # Two credentials, two keys: listed for the admin, and the new one came from the recovery.
    devices = push_devices(server, seeded.user_email)
    assert len(devices) == 2 and len({d.lookup_key for d in devices}) == 2
    user_page = admin.get(f"/admin/users/{alice}")
    for device in devices:
        assert f'data-credential-id="{device.id}"' in user_page.text
    [(actor, details)] = audit_events(server, "recovery_qr.issued")
    assert actor == seeded.admin_email
    # One event per device, whichever way it came; the code spent has its own.
    assert [d.get("via") for _a, d in audit_events(server, "push.device_registered")] == ["activation", "recovery_qr"]
    assert not audit_events(server, "recovery_qr.device_added")
    assert len(audit_events(server, "recovery_qr.used")) == 1

    # Both phones approve logins.
    rp = rp_factory(seeded.first_party)
    push_login(server, seeded, rp, new)
    push_login(server, seeded, rp, old)

    # The admin revokes the old phone: it stops working, the new one goes on.
    old_credential = next(d for d in devices if d.label != recovered["name"] and d.created_at == min(
        x.created_at for x in devices))
    page = admin.get(f"/admin/users/{alice}/factors/{old_credential.id}/revoke")
    admin.submit(page.form_with("confirm") if "confirm" in page.text else page.forms()[-1],
                 button=("confirm", "1"))
    assert len(push_devices(server, seeded.user_email)) == 1
    gone = old.run("pending")
    assert gone.returncode != 0 and "no longer accepts this device" in gone.stderr
    push_login(server, seeded, rp, new)

    # The backup written after the recovery restores again (still without any key).
    assert "backup" in new.ok("backup")


def test_reused_expired_and_revoked_qr_codes_are_refused(server, seeded, tmp_path):
    from idp.db import utcnow
    from idp.factors import directory

    _old, new, account = restored_phones(server, seeded.user_email, tmp_path)
    admin = admin_browser(server, seeded)
    alice = user_id(server, seeded.user_email)

    def scan(png_bytes, name):
        path = tmp_path / name
        path.write_bytes(png_bytes)
        return new.run("recover", account, "--qr", str(path))

    # Revoked on the admin page before use.
    revoked = issue_on_admin_page(admin, alice)
    page = admin.get(f"/admin/users/{alice}/recovery-qr")
    revoke_form = [f for f in page.forms() if f["action"].endswith("/revoke")][0]
    admin.submit(revoke_form, button=("confirm", "1"))
    before = new.files()
    result = scan(revoked["png"], "revoked.png")
    assert result.returncode == 32 and "revoked" in result.stderr
    assert new.files() == before  # nothing changed on the phone

    # Expired (issued by an operator, backdated past its validity).
    with server.context():
        qr = server.app.extensions["idp.factors"].get("qr_recovery")
        from datetime import timedelta

        expired = qr.issue(directory.find_user_by_email(seeded.user_email), actor="cli", ttl=60,
                           now=utcnow() - timedelta(minutes=5))
    result = scan(expired.png(), "expired.png")
    assert result.returncode == 31 and "expired" in result.stderr

    # Used once, then reused (by another phone restored from the same backup: the recovered phone
    # itself now refuses to recover again before sending anything, its account has its own key).
    good = issue_on_admin_page(admin, alice)
    assert scan(good["png"], "good.png").returncode == 0
    again = scan(good["png"], "good-again.png")
    assert again.returncode == 1 and "already has its own key on this device" in again.stderr
    third = Phone(tmp_path / "third-phone")
    third.ok("restore", "--from", str(tmp_path / "cloud"))
    [restored] = third.accounts()
    result = third.run("recover", restored["id"], "--qr", str(tmp_path / "good-again.png"))
    assert result.returncode == 30 and "already used" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert len(push_devices(server, seeded.user_email)) == 2  # the old phone's and one recovered key


def test_clear_errors_for_a_wrong_account_and_an_unreachable_server(server, seeded, tmp_path):
    _old, new, account = restored_phones(server, seeded.user_email, tmp_path)
    admin = admin_browser(server, seeded)
    issued = issue_on_admin_page(admin, user_id(server, seeded.user_email))
    # Another server's code: refused by the app before any request.
    foreign = issued["uri"].replace(server.url.replace(":", "%3A").replace("/", "%2F"), "https%3A%2F%2Fother.test")
    result = new.run("recover", account, "--qr", foreign)
    assert result.returncode != 0 and "other.test" in result.stderr
    # The right code while the server is down: one clear line, exit status 20, the phone unchanged.
    png = tmp_path / "qr.png"
    png.write_bytes(issued["png"])
    before = new.files()
    server.stop()
    result = new.run("recover", account, "--qr", str(png))
    assert result.returncode == 20 and "cannot reach the server" in result.stderr, result.stderr
    assert new.files() == before


def test_a_new_phone_without_a_backup_adds_push_with_the_admins_qr(server, seeded, rp_factory, tmp_path):
    """The admin page says the app scans the code on a new phone to get push sign-in back; a phone
    that never had a backup holds no account to `recover`, so `add` takes the recovery QR code
    (it used to answer "unsupported URI scheme 'idp-recovery'")."""
    old = Phone(tmp_path / "old-phone")
    old.ok("add", activation_uri(server, seeded.user_email))
    admin = admin_browser(server, seeded)
    issued = issue_on_admin_page(admin, user_id(server, seeded.user_email))
    png = tmp_path / "recovery-qr.png"
    png.write_bytes(issued["png"])

    new = Phone(tmp_path / "new-phone")
    out = new.ok("add", str(png))
    assert out.startswith("added ") and "(push, id " in out
    [account] = new.accounts()
    assert account["type"] == "push" and account["status"] == "active"
    assert account["name"] == seeded.user_email and account == {**account, **old.accounts()[0], "id": account["id"]}
    assert [d.get("via") for _a, d in audit_events(server, "push.device_registered")] == ["activation", "recovery_qr"]
    assert len(push_devices(server, seeded.user_email)) == 2
    push_login(server, seeded, rp_factory(seeded.first_party), new)

    # The code works once: a third phone is told so, and is left with nothing.
    third = Phone(tmp_path / "third-phone")
    result = third.run("add", str(png))
    assert result.returncode == 30 and "already used" in result.stderr and "Traceback" not in result.stderr
    assert not third.home.exists()


def test_adding_a_recovery_qr_for_a_restored_account_points_to_recover(server, seeded, tmp_path):
    _old, new, account = restored_phones(server, seeded.user_email, tmp_path)
    issued = issue_on_admin_page(admin_browser(server, seeded), user_id(server, seeded.user_email))
    before = new.files()
    result = new.run("add", issued["uri"])
    assert result.returncode == 1 and f"run idp-authenticator --home {new.home} recover {account} --qr IMAGE" in result.stderr
    assert new.files() == before
    assert new.ok("recover", account, "--qr", issued["uri"]).startswith("recovered")  # the code was not spent


def test_the_account_activity_names_the_app_that_registered_a_phone(server, seeded, tmp_path):
    """The user's "Recent activity" (and the audit log) showed a phone registered "from"
    python-requests/2.x, the HTTP library's default: next to "If you do not recognise something
    here, change your password", the user's own phone read as a stranger's script."""
    from sqlalchemy import select

    from idp.db import db
    from idp.models import AuditEvent

    _old, new, account = restored_phones(server, seeded.user_email, tmp_path)
    issued = issue_on_admin_page(admin_browser(server, seeded), user_id(server, seeded.user_email))
    new.ok("recover", account, "--qr", issued["uri"])
    with server.context():
        agents = db.session.scalars(select(AuditEvent.user_agent).where(
            AuditEvent.event.in_(["push.device_registered", "recovery_qr.used"]))).all()
    assert agents and set(agents) == {"idp-authenticator"}
