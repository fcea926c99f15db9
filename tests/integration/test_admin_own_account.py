"""An admin's own account and the organization's 2FA policy are not changed through the admin
pages by a session that is not the admin's own recent full login (idp.admin.access): an admin
never exempts themselves, removes their own factors or issues themselves a recovery QR code
there (their security page has its own rules), and a stale admin session signs in again before
it lowers anyone's protection."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from fixtures.oidc import FormBrowser, password_login


def signed_in_admin(live_server, seeded, rp_factory) -> FormBrowser:
    browser = FormBrowser(live_server.url)
    password_login(browser, rp_factory(seeded.first_party), seeded.admin_email, seeded.password)
    return browser


def user_id(live_server, email: str) -> int:
    from idp.db import db
    from idp.models import User

    with live_server.context():
        return db.session.scalar(select(User.id).where(User.email == email))


def give_totp(live_server, email: str, secret: bytes | None = None) -> int:
    """A TOTP credential imported for `email`, as `idp factor totp import` does: its id."""
    import os

    from idp.factors.directory import commit, find_user_by_email
    from idp.factors.registry import current_registry

    with live_server.context():
        credential = current_registry().get("totp").store.create(
            find_user_by_email(email), label="Phone", secret=secret or os.urandom(20),
            public={"digits": 6, "algorithm": "SHA1", "period": 30, "imported": True})
        commit()
        return credential.id


def csrf_of(browser: FormBrowser) -> str:
    return browser.get("/admin/security").forms()[0]["fields"]["csrf_token"]


def audit_count(live_server, event: str) -> int:
    from idp.db import db
    from idp.models import AuditEvent

    with live_server.context():
        return len(db.session.scalars(select(AuditEvent).where(AuditEvent.event == event)).all())


def test_an_admin_does_not_exempt_themselves_nor_revoke_their_own_factors(live_server, seeded, rp_factory):
    from idp.db import db
    from idp.factors.store import CredentialStore
    from idp.models import User

    import base64
    import os

    import pyotp

    own = user_id(live_server, seeded.admin_email)
    secret = os.urandom(20)
    credential = give_totp(live_server, seeded.admin_email, secret)
    # The admin's own recent full login, the factor proven (a session that had not proven the
    # factor it holds would be sent to prove it before any of these pages: idp.login.session).
    admin = FormBrowser(live_server.url)
    admin.get(rp_factory(seeded.first_party).authorization_url())
    page = admin.login(seeded.admin_email, seeded.password)
    admin.submit(page.form_with("code"), {"code": pyotp.TOTP(base64.b32encode(secret).decode()).now()})
    assert admin.callback_params()["code"]
    page = admin.get(f"/admin/users/{own}")
    assert 'id="own-security"' in page.text and "/revoke" not in page.text and "reset-factors" not in page.text
    assert f"/admin/users/{own}/security" not in page.text and "recovery-qr" not in page.text
    csrf = csrf_of(admin)
    with live_server.context():  # issued by another admin (or the CLI): still not revoked here
        from idp.factors.directory import commit, find_user_by_email
        from idp.factors.registry import current_registry

        qr_code = current_registry().get("qr_recovery").issue(find_user_by_email(seeded.admin_email), actor="cli")
        commit()
    for path, data in ((f"/admin/users/{own}/security", {"exempt": "y"}),
                       (f"/admin/users/{own}/factors/{credential}/revoke", {"confirm": "1"}),
                       (f"/admin/users/{own}/reset-factors", {"confirm": "1"}),
                       (f"/admin/users/{own}/recovery-qr", {"expires_in": "86400"}),
                       (f"/admin/users/{own}/recovery-qr/{qr_code.credential.id}/revoke", {"confirm": "1"})):
        answer = admin.http.post(f"{live_server.url}{path}", data=dict(data, csrf_token=csrf), allow_redirects=False)
        assert answer.status_code == 302 and answer.headers["Location"].endswith(f"/admin/users/{own}"), path
    assert "security page" in admin.get(f"/admin/users/{own}/recovery-qr").text
    with live_server.context():
        assert db.session.get(User, own).mfa_setting != "exempt"
        assert [c.id for c in CredentialStore().list(own)] == [credential, qr_code.credential.id]
    assert audit_count(live_server, "factor.revoked") == audit_count(live_server, "recovery_qr.revoked") == 0
    assert audit_count(live_server, "recovery_qr.issued") == 1  # the CLI's, above


def test_a_stale_admin_session_signs_in_again_before_lowering_protection(live_server, seeded, rp_factory):
    from idp.db import db
    from idp.models import Organization, User, UserSession

    alice = user_id(live_server, seeded.user_email)
    credential = give_totp(live_server, seeded.user_email)
    admin = signed_in_admin(live_server, seeded, rp_factory)
    csrf = csrf_of(admin)
    with live_server.context():
        for row in db.session.scalars(select(UserSession)).all():
            row.login_started_at -= timedelta(minutes=6)
        org = db.session.get(Organization, seeded.org_id)
        org.require_2fa = True
        db.session.commit()
    for path, data in ((f"/admin/users/{alice}/security", {"exempt": "y"}),
                       (f"/admin/users/{alice}/factors/{credential}/revoke", {"confirm": "1"}),
                       (f"/admin/users/{alice}/reset-factors", {"confirm": "1"}),
                       (f"/admin/users/{alice}/recovery-qr", {"expires_in": "86400"}),
                       # (revoking takes access away, yet it changes a user's factors: docs/policy.md)
                       (f"/admin/users/{alice}/recovery-qr/{credential}/revoke", {"confirm": "1"}),
                       ("/admin/security/require-all", {"on": "off"}),
                       ("/admin/security/grace", {"grace_days": "30", "grace_logins": "30"})):
        answer = admin.http.post(f"{live_server.url}{path}", data=dict(data, csrf_token=csrf), allow_redirects=False,
                                 headers={"Referer": f"{live_server.url}/admin/users/{alice}"})
        assert answer.status_code == 302 and "/login/" in answer.headers["Location"], path
    for path in (f"/admin/users/{alice}/factors/{credential}/revoke", f"/admin/users/{alice}/reset-factors",
                 f"/admin/users/{alice}/recovery-qr"):
        assert "/login/" in admin.get(path).url, path
    with live_server.context():
        assert db.session.get(User, alice).mfa_setting != "exempt"
        assert db.session.get(Organization, seeded.org_id).require_2fa
    assert audit_count(live_server, "factor.revoked") == audit_count(live_server, "factor.reset") == 0
    assert audit_count(live_server, "recovery_qr.issued") == 0


def test_a_page_number_that_is_no_ascii_digit_is_a_400(live_server, seeded, rp_factory):
    admin = signed_in_admin(live_server, seeded, rp_factory)
    for query in ("/admin/users?after=%C2%B2", "/admin/audit?user_id=%C2%B2", "/admin/audit?before=%C2%B2"):
        assert admin.http.get(f"{live_server.url}{query}").status_code == 400, query
