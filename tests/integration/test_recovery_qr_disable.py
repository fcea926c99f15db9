"""An admin-issued recovery QR code does not outlive the disabling of its account (over real HTTP,
the admin pages, on SQLite and PostgreSQL): disabling revokes it, so enabling the account again
(after a suspension following a push fraud report, say) brings no code back to life. Nor does it
outlive its member's promotion: an administrator's codes are the operator's to issue."""
from __future__ import annotations

import pytest

from idp.factors import Factor, FactorKind
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


def test_promoting_a_member_revokes_the_codes_admins_issued_and_keeps_the_operators(server, seeded):
    from idp.db import db
    from idp.factors import directory

    admin = admin_browser(server, seeded)
    alice = user_id(server, seeded.user_email)
    issue_on_admin_page(admin, alice)
    with server.context():
        qr = server.app.extensions["idp.factors"].get("qr_recovery")
        from_operator = qr.issue(directory.find_user_by_email(seeded.user_email), actor="cli", ttl=3600)
        db.session.commit()
    page = admin.get(f"/admin/users/{alice}/role")
    page = admin.submit(next(f for f in page.forms() if f["action"].endswith("/role")))
    assert page.status == 200, page.text[:1000]
    with server.context():
        qr = server.app.extensions["idp.factors"].get("qr_recovery")
        outstanding = qr.outstanding(directory.find_user_by_email(seeded.user_email))
        assert [c.id for c in outstanding] == [from_operator.credential.id]
    [(actor, details)] = audit_events(server, "recovery_qr.revoked")
    assert actor == seeded.admin_email and details["reason"] == "promoted"
    # The issuing admin could not have revoked it any more: another admin's codes are the operator's.
    assert admin.get(f"/admin/users/{alice}/recovery-qr").status == 403


class BrokenCleanupFactor(Factor):
    """A third-party factor whose clean-up hooks fail (someone else's code, a bug of its own)."""

    name = "broken_cleanup"
    label = "Broken clean-up"
    kind = FactorKind.SECOND_FACTOR
    amr = ("otp",)

    def begin_enrolment(self, user, ctx):
        raise NotImplementedError

    def finish_enrolment(self, user, state, response, ctx):
        raise NotImplementedError

    def begin_challenge(self, user, ctx):
        raise NotImplementedError

    def verify(self, user, state, response, ctx):
        raise NotImplementedError

    def on_account_disabled(self, user, *, actor, actor_id):
        from idp.factors import directory

        directory.audit("broken_cleanup.half_done", user, actor=actor, actor_id=actor_id)
        raise RuntimeError("the plugin's own bug")

    def on_removed(self, credential):
        raise RuntimeError("the plugin's own bug")


def test_a_plugins_failing_clean_up_neither_stops_nor_spoils_the_disabling(server, seeded, caplog):
    """Disabling a compromised account must work whatever a plugin does: the failing hook's
    writes go (a savepoint), the other factors' clean-up and the disabling stay. The hook's
    event goes with its writes, from the table and from the log lines (idp.audit)."""
    caplog.set_level("INFO", logger="idp.audit")
    from idp.factors import directory

    server.app.extensions["idp.factors"].register(BrokenCleanupFactor)
    admin = admin_browser(server, seeded)
    alice = user_id(server, seeded.user_email)
    issue_on_admin_page(admin, alice)
    with server.context():
        broken = server.app.extensions["idp.factors"].get("broken_cleanup")
        credential = broken.store.create(directory.find_user_by_email(seeded.user_email), label="Broken")
        directory.commit()
    _switch(admin, alice, "disable")
    with server.context():
        user = directory.find_user_by_email(seeded.user_email)
        assert directory.is_disabled(user)
        assert server.app.extensions["idp.factors"].get("qr_recovery").outstanding(user) == []
        removed = server.app.extensions["idp.factors"].remove_credential(user, credential.id)
        directory.commit()
        assert removed is not None and broken.store.get(user, credential.id) is None
    assert audit_events(server, "broken_cleanup.half_done") == []
    assert len(audit_events(server, "recovery_qr.revoked")) == 1
    logged = [record.getMessage() for record in caplog.records if record.name == "idp.audit"]
    assert "user.disabled" in logged and "broken_cleanup.half_done" not in logged


class HalfDoneCleanupFactor(BrokenCleanupFactor):
    """Its clean-up spends its credentials (one of the store's prebuilt statements, run straight on
    the transaction's connection: idp.db.Database.run) and then fails."""

    name = "half_done_cleanup"

    def on_account_disabled(self, user, *, actor, actor_id):
        for credential in self.store.list(user):
            self.store.consume(credential.id, commit=False)
        raise RuntimeError("the plugin's own bug")


def test_a_failing_clean_up_loses_its_first_writes_too(server, seeded):
    """The savepoint covers a hook's statements from the first: SQLAlchemy emits SAVEPOINT only when
    a statement asks it for the connection, which `db.run`'s do not, and a hook whose first writes
    went that way kept them when its savepoint was rolled back."""
    from idp.factors import directory

    server.app.extensions["idp.factors"].register(HalfDoneCleanupFactor)
    admin = admin_browser(server, seeded)
    alice = user_id(server, seeded.user_email)
    with server.context():
        half_done = server.app.extensions["idp.factors"].get("half_done_cleanup")
        credential = half_done.store.create(directory.find_user_by_email(seeded.user_email), label="Half")
        directory.commit()
    _switch(admin, alice, "disable")
    with server.context():
        user = directory.find_user_by_email(seeded.user_email)
        assert directory.is_disabled(user)
        assert half_done.store.get(user, credential.id).used_at is None


class RereadingCleanupFactor(BrokenCleanupFactor):
    """Its clean-up revokes its other credentials, reads the user's credentials again (filling the
    request's cache of live rows, idp.factors.store._live_rows) and then fails."""

    name = "rereading_cleanup"

    def on_removed(self, credential):
        for other in self.store.list(credential.user_id):
            self.store.revoke(credential.user_id, other.id)
        assert self.store.list(credential.user_id) == []
        raise RuntimeError("the plugin's own bug")


def test_a_failed_clean_up_leaves_no_stale_credentials_in_the_request(server, seeded):
    """The savepoint rolled back the hook's revocations: the rest of the request (the admin's
    revocation, then what it asks of the store) sees the credentials as they are, not as the hook
    left its cache."""
    from idp.db import db
    from idp.factors import directory

    factors = server.app.extensions["idp.factors"]
    factors.register(RereadingCleanupFactor)
    with server.context():
        user = directory.find_user_by_email(seeded.user_email)
        factor = factors.get("rereading_cleanup")
        first, second = (factor.store.create(user, label=label) for label in ("One", "Two"))
        directory.commit()
    with server.app.test_request_context():
        user = directory.find_user_by_email(seeded.user_email)
        assert [c.id for c in factor.store.list(user)] == [first.id, second.id]
        assert factors.remove_credential(user, first.id) is not None   # the hook failed: its writes undone
        assert [c.id for c in factor.store.list(user)] == [second.id]  # one request, the same cache
        db.session.commit()
    with server.context():
        assert [c.id for c in factor.store.list(directory.find_user_by_email(seeded.user_email))] == [second.id]


def test_a_disabled_account_is_offered_no_recovery_qr_code(server, seeded):
    """The member's page offers none, and the code's own page says why instead of a form that
    can only be refused (the refusal itself stands: a form kept open from before)."""
    admin = admin_browser(server, seeded)
    alice = user_id(server, seeded.user_email)
    assert f"/admin/users/{alice}/recovery-qr" in admin.get(f"/admin/users/{alice}").text
    _switch(admin, alice, "disable")
    assert f"/admin/users/{alice}/recovery-qr" not in admin.get(f"/admin/users/{alice}").text
    page = admin.get(f"/admin/users/{alice}/recovery-qr")
    assert page.status == 200 and 'data-account="disabled"' in page.text
    assert not [f for f in page.forms() if f["action"].endswith("/recovery-qr")]


def test_revoking_a_code_that_no_longer_works_says_so_instead_of_a_404(server, seeded):
    """A double click, a second tab, a page left open while the code was used or expired: the
    revocation goes back to the codes' page saying what became of the code, with nothing audited
    again. A code of another user, or none, is still a 404."""
    from datetime import timedelta

    from idp.db import utcnow
    from idp.factors import directory
    from idp_plugins.qr_recovery import issuing

    admin = admin_browser(server, seeded)
    alice = user_id(server, seeded.user_email)
    issue_on_admin_page(admin, alice, valid_for="3600")
    [revoke] = [f for f in admin.get(f"/admin/users/{alice}/recovery-qr").forms() if f["action"].endswith("/revoke")]
    first = admin.http.post(revoke["action"], data=revoke["fields"], allow_redirects=False)
    again = admin.http.post(revoke["action"], data=revoke["fields"], allow_redirects=False)
    assert (first.status_code, again.status_code) == (302, 302), again.text[:500]
    assert again.headers["Location"].endswith(f"/admin/users/{alice}/recovery-qr")
    page = admin.get(again.headers["Location"])
    assert page.status == 200 and "This recovery QR code was already revoked." in page.text
    assert len(audit_events(server, "recovery_qr.revoked")) == 1

    with server.context():
        qr = server.app.extensions["idp.factors"].get("qr_recovery")
        user = directory.find_user_by_email(seeded.user_email)
        used = qr.issue(user, actor=seeded.admin_email, ttl=3600).credential
        assert issuing.consume(qr.store, used, utcnow())
        directory.commit()
        expired = qr.issue(user, actor=seeded.admin_email, ttl=3600, now=utcnow() - timedelta(hours=2)).credential
        mallory = qr.issue(directory.find_user_by_email(seeded.admin_email), actor="cli", ttl=3600).credential
    base = revoke["action"].rsplit("/", 2)[0]
    for credential_id, said in [(used.id, "This recovery QR code was already used: there is nothing to revoke."),
                                (expired.id, "This recovery QR code has expired: there is nothing to revoke.")]:
        response = admin.http.post(f"{base}/{credential_id}/revoke", data=revoke["fields"], allow_redirects=False)
        assert response.status_code == 302, (credential_id, response.status_code)
        assert said in admin.get(response.headers["Location"]).text
    for credential_id in (mallory.id, 999_999):
        response = admin.http.post(f"{base}/{credential_id}/revoke", data=revoke["fields"], allow_redirects=False)
        assert response.status_code == 404
    assert len(audit_events(server, "recovery_qr.revoked")) == 1
