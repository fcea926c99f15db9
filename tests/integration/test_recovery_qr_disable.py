"""An admin-issued recovery QR code does not outlive the disabling of its account (over real HTTP,
the admin pages, on SQLite and PostgreSQL): disabling revokes it, so enabling the account again
(after a suspension following a push fraud report, say) brings no code back to life."""
from __future__ import annotations

import pytest

from recovery_kit import admin_browser, audit_events, enable_recovery, issue_on_admin_page, user_id


@pytest.fixture
def server(live_server):
    return enable_recovery(live_server)


def _switch(admin, target: int, action: str):
    page = admin.get(f"/admin/users/{target}/{action}")
    if action == "disable":  # the admin is told what goes with it
        assert "recovery QR codes not yet used are revoked" in page.text
    page = admin.submit(next(f for f in page.forms() if f["action"].endswith(f"/{action}")))
    assert f'data-account="{action}d"' in page.text, page.text[:1000]


def test_disabling_an_account_revokes_its_recovery_qr_codes(server, seeded):
    from idp.db import utcnow
    from idp.factors import directory
    from idp_plugins.qr_recovery import issuing

    admin = admin_browser(server, seeded)
    alice = user_id(server, seeded.user_email)
    issued = issue_on_admin_page(admin, alice)
    _switch(admin, alice, "disable")
    _switch(admin, alice, "enable")
    assert 'data-recovery-secret' not in admin.get(f"/admin/users/{alice}/recovery-qr").text
    with server.context():
        qr = server.app.extensions["idp.factors"].get("qr_recovery")
        user = directory.find_user_by_email(seeded.user_email)
        assert qr.outstanding(user) == []
        status, _credential = issuing.lookup(qr.store, qr.pepper(), issued["secret"], utcnow(), user)
        assert status == issuing.REVOKED
    [(actor, details)] = audit_events(server, "recovery_qr.revoked")
    assert actor == seeded.admin_email and details["reason"] == "account_disabled"
