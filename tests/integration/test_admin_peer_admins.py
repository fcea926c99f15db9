"""An admin acts on the organization's members, not on another admin's account
(idp.admin.access.peer_admin_refused): a peer's password, factors, recovery QR codes, account
state, role and exemption are the operator's, with the `idp` command. Over HTTP against a live
server: every such page answers 403 (GET and POST), changes nothing and is audited; the peer's
user page offers none of those buttons; the CLI does what the operator then needs."""
from __future__ import annotations

import os

import pytest
from sqlalchemy import select

from fixtures.cli import ok, run_idp
from fixtures.oidc import FormBrowser, password_login

PEER = "bob@acme.test"
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def peer(live_server, seeded):
    """A second admin of the organization with a TOTP credential and a recovery QR code (issued by
    the operator): its id, the credential's and the code's."""
    from idp.db import db
    from idp.factors.directory import user_ref
    from idp.factors.registry import current_registry
    from idp.models import User
    from idp.security.tokens import random_token

    with live_server.context():
        row = User(public_id=random_token(16), org_id=seeded.org_id, email=PEER, name="Bob", role="admin",
                   password_hash=live_server.app.extensions["idp.passwords"].hash(seeded.password))
        db.session.add(row)
        db.session.flush()
        registry = current_registry()
        credential = registry.get("totp").store.create(
            user_ref(row), label="Phone", secret=os.urandom(20),
            public={"digits": 6, "algorithm": "SHA1", "period": 30, "imported": True})
        registry.get("qr_recovery").issue(user_ref(row), actor="cli", actor_id=None, ttl=3600)
        code = registry.get("qr_recovery").outstanding(user_ref(row))[0]
        db.session.commit()
        return row.id, credential.id, code.id


def signed_in_admin(live_server, seeded, rp_factory) -> FormBrowser:
    browser = FormBrowser(live_server.url)
    password_login(browser, rp_factory(seeded.first_party), seeded.admin_email, seeded.password)
    return browser


def state(live_server, user_id: int) -> tuple:
    """What a takeover would change: password hash, role, disabled, setting, live credentials."""
    from idp.db import db
    from idp.factors.store import CredentialStore
    from idp.models import User

    with live_server.context():
        row = db.session.get(User, user_id)
        return (row.password_hash, row.role, row.disabled, row.mfa_setting,
                sorted(c.id for c in CredentialStore().list(user_id)))


def refusals(live_server) -> list[tuple]:
    from idp.db import db
    from idp.models import AuditEvent

    with live_server.context():
        return [(e.actor, e.subject_id, e.details["action"]) for e in db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "admin.peer_action_refused").order_by(AuditEvent.id))]


def other_events(live_server) -> list[str]:
    """Events a change of the peer's account would write (by an admin: the fixture's are the CLI's)."""
    from idp.db import db
    from idp.models import AuditEvent

    with live_server.context():
        return db.session.scalars(select(AuditEvent.event).where(AuditEvent.event.in_(
            ["user.password_changed", "user.disabled", "user.enabled", "user.role_changed", "factor.revoked",
             "factor.reset", "recovery_qr.issued", "recovery_qr.revoked", "policy.user_requirement_changed"]),
            AuditEvent.actor != "cli")).all()


def test_an_admin_cannot_touch_another_admins_account(live_server, seeded, rp_factory, peer):
    peer_id, credential_id, code_id = peer
    admin = signed_in_admin(live_server, seeded, rp_factory)
    before = state(live_server, peer_id)
    csrf = admin.get("/admin/security").forms()[0]["fields"]["csrf_token"]
    base = f"{live_server.url}/admin/users/{peer_id}"
    attempts = [
        ("password", "/password", {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD}),
        ("factor_revoke", f"/factors/{credential_id}/revoke", {"confirm": "1"}),
        ("factors_reset", "/reset-factors", {"confirm": "1"}),
        ("recovery_qr_issue", "/recovery-qr", {"expires_in": "3600"}),
        ("recovery_qr_revoke", f"/recovery-qr/{code_id}/revoke", {"confirm": "1"}),
        ("disable", "/disable", {"confirm": "1"}),
        ("enable", "/enable", {"confirm": "1"}),
        ("role", "/role", {"confirm": "1", "role": "user"}),
        ("exempt", "/security", {"exempt": "y", "exempt_reason": "travelling"}),
    ]
    for action, path, fields in attempts:
        answer = admin.http.post(base + path, data={"csrf_token": csrf, **fields}, allow_redirects=False)
        assert answer.status_code == 403, (action, answer.status_code, answer.text[:300])
        assert 'id="peer-admin-refused"' in answer.text and "idp user" in answer.text, action
    for action, path in [("password", "/password"), ("factor_revoke", f"/factors/{credential_id}/revoke"),
                         ("factors_reset", "/reset-factors"), ("recovery_qr", "/recovery-qr"),
                         ("disable", "/disable"), ("enable", "/enable"), ("role", "/role")]:
        assert admin.http.get(base + path, allow_redirects=False).status_code == 403, action
    assert state(live_server, peer_id) == before
    assert other_events(live_server) == []
    expected = ["password", "factor_revoke", "factors_reset", "recovery_qr_issue", "recovery_qr_revoke", "disable",
                "enable", "role", "exempt", "password", "factor_revoke", "factors_reset", "recovery_qr", "disable",
                "enable", "role"]
    assert refusals(live_server) == [(seeded.admin_email, peer_id, action) for action in expected]


def test_the_peers_page_offers_only_what_an_admin_may_do(live_server, seeded, rp_factory, peer):
    peer_id, credential_id, _ = peer
    admin = signed_in_admin(live_server, seeded, rp_factory)
    page = admin.get(f"/admin/users/{peer_id}")
    assert page.status == 200 and 'id="peer-admin"' in page.text
    for hidden in ("/password", "/revoke", "/reset-factors", "/recovery-qr", "/disable", "/enable", "/role",
                   'name="exempt"'):
        assert hidden not in page.text, hidden
    assert f"/admin/users/{peer_id}/sign-out" in page.text and 'name="require_2fa"' in page.text
    # What stays: requiring 2FA for the peer (and signing them out) is no takeover.
    form = next(f for f in page.forms() if f["action"].endswith(f"/admin/users/{peer_id}/security"))
    page = admin.submit(form, {"require_2fa": "y"})
    assert page.status == 200 and state(live_server, peer_id)[3] == "required"
    # A member's page still has them all.
    from idp.db import db
    from idp.models import User

    with live_server.context():
        alice_id = db.session.scalar(select(User.id).where(User.email == seeded.user_email))
    page = admin.get(f"/admin/users/{alice_id}")
    assert all(f"/admin/users/{alice_id}/{action}" in page.text for action in ("password", "disable", "role"))
    assert refusals(live_server) == []


def test_a_member_promoted_meanwhile_is_a_peer_by_the_time_of_the_post(live_server, seeded, rp_factory):
    """The confirmation page was shown while Alice was a member; she is an admin when it is posted."""
    from idp.db import db
    from idp.models import User

    admin = signed_in_admin(live_server, seeded, rp_factory)
    with live_server.context():
        alice_id = db.session.scalar(select(User.id).where(User.email == seeded.user_email))
    form = next(f for f in admin.get(f"/admin/users/{alice_id}/disable").forms() if f["action"].endswith("/disable"))
    ok(run_idp("user", "set-role", "--email", seeded.user_email, "--role", "admin",
               database_url=live_server.database_url))
    answer = admin.http.post(form["action"], data=form["fields"] | {"confirm": "1"}, allow_redirects=False)
    assert answer.status_code == 403
    assert state(live_server, alice_id)[2] is False
    assert refusals(live_server) == [(seeded.admin_email, alice_id, "disable")]


def test_the_operator_resets_a_locked_out_admins_factors(live_server, seeded, peer):
    from idp.db import db
    from idp.models import AuditEvent

    peer_id, credential_id, _ = peer
    result = ok(run_idp("user", "reset-factors", "--email", PEER, database_url=live_server.database_url))
    assert f"{PEER}: 2 credential(s) revoked (qr_recovery, totp)" in result.stdout
    assert state(live_server, peer_id)[4] == []
    with live_server.context():
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.event == "factor.reset"))
        assert (event.actor, event.subject_id, event.details["by"], event.details["factors"]) == (
            "cli", peer_id, "cli", ["qr_recovery", "totp"])
    again = ok(run_idp("user", "reset-factors", "--email", PEER, database_url=live_server.database_url))
    assert "had no second factor" in again.stdout
