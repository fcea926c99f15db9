"""Account changes raced on PostgreSQL: two operators removing each other's administrator rights,
or disabling each other, at the same moment leave the organization one enabled admin (idp.users
locks the organization's row before counting its admins); an admin's change to a member raced by
that member's promotion never lands on an admin (idp.admin.access.peer_admin_refused reads the
role under the user's row lock)."""
from __future__ import annotations

import pytest

from fixtures.database import postgres_base_url
from fixtures.oidc import FormBrowser, RelyingParty, password_login, seed
from fixtures.race import at_once
from test_factor_races import _at_once

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")


@pytest.mark.parametrize("action", ["role", "disable"])
def test_two_admins_demoting_or_disabling_each_other_at_once_leave_one_admin(pg_server, action):
    """The admin pages leave another admin's account to the operator: the race is two `idp user`
    commands' (idp.users.set_role, set_disabled), run here on threads of the server's app."""
    from sqlalchemy import func, select, update

    from idp import users
    from idp.db import db
    from idp.models import AuditEvent, User

    seeded = seed(pg_server)
    with pg_server.context():
        ids = dict(db.session.execute(select(User.email, User.id)).all())
    pairs = (ids[seeded.user_email], ids[seeded.admin_email])

    def change(i: int) -> str:
        with pg_server.context():
            target = db.session.get(User, pairs[i])
            try:
                if action == "role":
                    users.set_role(target, "user", actor="cli")
                else:
                    users.set_disabled(target, True, actor="cli")
            except users.LastAdmin:
                db.session.rollback()
                return "refused"
            db.session.commit()
            return "changed"

    for _round in range(10):  # the window is a few milliseconds wide: try it several times
        with pg_server.context():
            db.session.execute(update(User).where(User.org_id == seeded.org_id).values(role="admin", disabled=False))
            db.session.commit()
        assert sorted(at_once(2, change)) == ["changed", "refused"], f"round {_round}"
        with pg_server.context():
            admins = db.session.scalar(select(func.count()).select_from(User).where(
                User.org_id == seeded.org_id, User.role == "admin", User.disabled.is_(False)))
        assert admins == 1, f"round {_round}: {admins} enabled admins"
    event = "user.role_changed" if action == "role" else "user.disabled"
    with pg_server.context():
        changed = db.session.scalars(select(AuditEvent).where(AuditEvent.event == event)).all()
    assert len(changed) == 10


def test_a_members_promotion_raced_by_an_admins_change_never_leaves_it_on_an_admin(pg_server):
    """Admin A disables Alice as admin B makes her an administrator: either the disabling came
    first (then her promotion), or it is refused (she is an admin by then). Without the role read
    under her row lock, A's request read "member", B's promotion committed, and A disabled an admin."""
    from sqlalchemy import select, update

    from idp.db import db
    from idp.models import AuditEvent, User

    seeded = seed(pg_server)
    with pg_server.context():
        db.session.add(User(public_id="peer-b", org_id=seeded.org_id, email="bob@acme.test", name="Bob",
                            role="admin", password_hash=pg_server.app.extensions["idp.passwords"].hash(
                                seeded.password)))
        db.session.commit()
        alice = db.session.scalar(select(User.id).where(User.email == seeded.user_email))
    rp = RelyingParty(pg_server.url, seeded.first_party)
    admins = []
    for email in (seeded.admin_email, "bob@acme.test"):
        browser = FormBrowser(pg_server.url)
        password_login(browser, rp, email, seeded.password)
        admins.append(browser)
    for _round in range(10):
        with pg_server.context():
            db.session.execute(update(User).where(User.id == alice).values(role="user", disabled=False))
            db.session.commit()
            last = db.session.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1))
        disable = next(f for f in admins[0].get(f"/admin/users/{alice}/disable").forms()
                       if f["action"].endswith("/disable"))
        promote = next(f for f in admins[1].get(f"/admin/users/{alice}/role").forms()
                       if f["action"].endswith("/role"))
        _at_once([(admins[0], disable, {}), (admins[1], promote, {})])
        with pg_server.context():
            events = db.session.scalars(select(AuditEvent.event).where(AuditEvent.id > last, AuditEvent.event.in_(
                ["user.disabled", "user.role_changed", "admin.peer_action_refused"])).order_by(AuditEvent.id)).all()
        # One order or the other, each in full: never the promotion, then the disabling.
        assert events in (["user.disabled", "user.role_changed"],
                          ["user.role_changed", "admin.peer_action_refused"]), f"round {_round}: {events}"


def test_one_address_added_twice_at_once_is_one_user_and_one_clear_refusal(pg_server):
    """Both checks find the address free (the password's hash takes its time between the check
    and the INSERT): the unique index decides, and the loser is told the address is taken, not a 500."""
    from sqlalchemy import func, select

    from fixtures.race import at_once
    from idp import users
    from idp.db import db
    from idp.models import User

    seeded = seed(pg_server)

    def add(_i):
        with pg_server.context():
            try:
                users.create(seeded.org_id, "carol@acme.test", seeded.password, actor="cli")
                db.session.commit()
                return "created"
            except users.AccountRefused as refused:
                db.session.rollback()
                return str(refused)

    for _round in range(5):
        results = at_once(2, add)
        assert sorted(results) == ["A user with the e-mail address carol@acme.test already exists.", "created"]
        with pg_server.context():
            assert db.session.scalar(select(func.count()).select_from(User).where(User.email == "carol@acme.test")) == 1
            db.session.execute(User.__table__.delete().where(User.email == "carol@acme.test"))
            db.session.commit()


def test_a_requirement_saved_while_the_last_factor_is_being_removed_keeps_it(pg_server):
    """An administrator's "Require 2FA" for a user, committed while the user's removal of their last
    second factor waits for the user's row, is seen by that removal: the factor stays. (An audit
    found the requirement judged as it was before the wait: a required user left with none.) The
    administrator's transaction is played here as idp.policy.settings runs it: the user's row held,
    the new setting written, then the commit once the removal waits."""
    import re
    import threading
    import time

    from sqlalchemy import create_engine, func, select, text

    from fixtures.totp import enrol_totp_during_login
    from idp.db import db
    from idp.models import Credential, User

    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.first_party)
    browser = FormBrowser(pg_server.url)
    enrol_totp_during_login(browser, rp, seeded)  # one TOTP; the organization requires nothing
    rp.exchange(browser.last_redirect)
    href = re.findall(r'data-remove="\d+"\s+href="([^"]+)"', browser.get("/account/security").text)[0]
    removal = [form for form in browser.get(href).forms() if form["action"].endswith("/remove")][0]
    with pg_server.context():
        user_id = db.session.scalar(select(User.id).where(User.email == seeded.user_email))

    engine = create_engine(pg_server.database_url)
    admin = engine.connect()
    watcher = engine.connect()
    try:
        admin.execute(text("SELECT id FROM users WHERE id = :id FOR NO KEY UPDATE"), {"id": user_id})
        admin.execute(text("UPDATE users SET mfa_setting = 'required', required_since = now() WHERE id = :id"),
                      {"id": user_id})
        removing = threading.Thread(target=lambda: browser.submit(removal))
        removing.start()
        for _ in range(200):  # until the removal waits for the user's row
            if watcher.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                    "AND datname = current_database()")).scalar():
                break
            time.sleep(0.05)
        else:
            pytest.fail("the removal never waited for the user's row")
        admin.commit()
        removing.join(15)
    finally:
        watcher.close()
        admin.close()
        engine.dispose()

    with pg_server.context():
        user = db.session.get(User, user_id)
        live = db.session.scalar(select(func.count()).select_from(Credential).where(
            Credential.user_id == user_id, Credential.factor == "totp", Credential.revoked_at.is_(None)))
    assert user.mfa_setting == "required"
    assert (live, user.second_factor_count) == (1, 1)


def test_addresses_in_use_probed_at_once_from_the_new_user_form_are_answered_up_to_the_limit(pg_server):
    """An admin (or their stolen session) posting a dozen "add a user" forms at once, each with
    an address some account already has: each answer "already in use" is counted before the
    address is looked up (idp.admin.accounts, `_taken_budget`), so no more than the limit
    (`ratelimit.factor_failures_before_lockout`, 5 by default) are answered; the rest wait."""
    import sys
    from pathlib import Path

    from sqlalchemy import func, select

    from fixtures.race import tabs_of
    from idp.db import db
    from idp.models import AuditEvent

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
    from recovery_kit import admin_browser

    seeded = seed(pg_server)
    admin = admin_browser(pg_server, seeded)
    form = admin.get("/admin/users/new").form_with("email")
    tabs = tabs_of(admin, 12)
    password = "a brand new passphrase"
    _at_once([(tab, form, {"email": seeded.user_email, "password": password, "confirm": password})
              for tab in tabs])
    statuses = sorted(tab.page.status for tab in tabs)
    assert statuses == [400] * 5 + [429] * 7, statuses
    with pg_server.context():
        refused = db.session.scalar(select(func.count()).where(AuditEvent.event == "user.create_refused"))
    assert refused == 5


def test_a_recovery_qr_code_issued_as_its_member_is_promoted_never_outlives_the_promotion(pg_server):
    """Admin A issues Alice a recovery QR code as admin B makes her an administrator: either the
    code came first, and her promotion revokes it (an administrator's codes are the operator's),
    or it is refused (she is an admin by then: the role is read under her row lock). Never a
    live code, issued by an admin, on an administrator."""
    from sqlalchemy import func, select, update

    from idp.db import db
    from idp.models import AuditEvent, Credential, User

    registry = pg_server.app.extensions["idp.factors"]
    if "qr_recovery" not in registry:
        from idp_plugins.qr_recovery.factor import QrRecoveryFactor

        registry.register(QrRecoveryFactor)
    seeded = seed(pg_server)
    with pg_server.context():
        db.session.add(User(public_id="peer-b", org_id=seeded.org_id, email="bob@acme.test", name="Bob",
                            role="admin", password_hash=pg_server.app.extensions["idp.passwords"].hash(
                                seeded.password)))
        db.session.commit()
        alice = db.session.scalar(select(User.id).where(User.email == seeded.user_email))
    rp = RelyingParty(pg_server.url, seeded.first_party)
    admins = []
    for email in (seeded.admin_email, "bob@acme.test"):
        browser = FormBrowser(pg_server.url)
        password_login(browser, rp, email, seeded.password)
        admins.append(browser)
    for _round in range(10):
        with pg_server.context():
            db.session.execute(update(User).where(User.id == alice).values(role="user"))
            db.session.commit()
            last = db.session.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1))
        issue = admins[0].get(f"/admin/users/{alice}/recovery-qr").form_with("expires_in")
        promote = next(f for f in admins[1].get(f"/admin/users/{alice}/role").forms()
                       if f["action"].endswith("/role"))
        _at_once([(admins[0], issue, {"expires_in": "86400"}), (admins[1], promote, {})])
        with pg_server.context():
            events = db.session.scalars(select(AuditEvent.event).where(AuditEvent.id > last, AuditEvent.event.in_(
                ["recovery_qr.issued", "recovery_qr.revoked", "user.role_changed", "admin.peer_action_refused"]))
                .order_by(AuditEvent.id)).all()
            live = db.session.scalar(select(func.count()).select_from(Credential).where(
                Credential.user_id == alice, Credential.factor == "qr_recovery", Credential.revoked_at.is_(None)))
        assert events in (["recovery_qr.issued", "user.role_changed", "recovery_qr.revoked"],
                          ["user.role_changed", "admin.peer_action_refused"]), f"round {_round}: {events}"
        assert live == 0, f"round {_round}"
