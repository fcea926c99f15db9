"""What gives an account a way in, as the account is disabled, on PostgreSQL. The test holds the
user's row (as a disabling does from its UPDATE to its commit), lets the request run until it waits
for that lock, then disables the account (fixtures.race.disabled_while_it_waits): whatever the
request asks under the lock, it must see the disabling, which revoked the account's codes and
ended its sessions and pending enrolments.

- An admin's "Issue recovery QR code" (idp.admin.recovery_qr) takes the member's row lock (the
  peer-admin check's, idp.admin.access) and reads whether the account is disabled under it, as
  `idp recovery-qr issue` does (test_cli_disabled_race.py). It used to read the copy of the member
  taken before the lock: the code, issued after the disabling revoked the others, outlived it
  (on an account enabled again later, a way in issued to an account no admin saw enabled).
- The user's own enrolment on the security page (idp.account.service.finish) claims its pending
  enrolment under the user's lock: the disabling expired it, and nothing is stored.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pyotp
import pytest
from sqlalchemy import func, select

from fixtures.database import postgres_base_url
from fixtures.oidc import seed
from fixtures.race import disabled_while_it_waits
from test_factor_races import _live_credentials, _signed_in_to_account_page

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from recovery_kit import admin_browser  # noqa: E402

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")


def test_a_recovery_qr_code_issued_as_its_member_is_disabled_is_refused(pg_server):
    from idp.db import db
    from idp.models import Credential, User

    registry = pg_server.app.extensions["idp.factors"]
    if "qr_recovery" not in registry:
        from idp_plugins.qr_recovery.factor import QrRecoveryFactor

        registry.register(QrRecoveryFactor)
    seeded = seed(pg_server)
    with pg_server.context():
        alice = db.session.scalar(select(User.id).where(User.email == seeded.user_email))
    admin = admin_browser(pg_server, seeded)
    form = admin.get(f"/admin/users/{alice}/recovery-qr").form_with("expires_in")

    disabled_while_it_waits(pg_server, seeded.user_email, lambda: admin.submit(form, {"expires_in": "86400"}))

    assert admin.page.status == 400 and "This account is disabled" in admin.page.text, admin.page.status
    with pg_server.context():
        live = db.session.scalar(select(func.count()).select_from(Credential).where(
            Credential.user_id == alice, Credential.factor == "qr_recovery", Credential.revoked_at.is_(None)))
    assert live == 0


def test_an_enrolment_finished_on_the_security_page_as_the_account_is_disabled_stores_nothing(pg_server):
    seeded, browser, page = _signed_in_to_account_page(pg_server)
    before = _live_credentials(pg_server, seeded.user_email)
    page = browser.submit([f for f in page.forms() if f["action"].endswith("/add/totp")][0])
    key = page.find(r'<code>([A-Z2-7 ]+)</code>').replace(" ", "")
    form, code = page.form_with("code"), pyotp.TOTP(key).now()

    disabled_while_it_waits(pg_server, seeded.user_email,
                            lambda: browser.submit(form, {"code": code, "label": "Second"}))

    assert "Authenticator app added." not in browser.page.text
    assert _live_credentials(pg_server, seeded.user_email) == before == {"totp": 1, "recovery_codes": 10}
