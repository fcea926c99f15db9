"""A login finishing as its account is disabled, on PostgreSQL: the login's last step holds the
user's row (idp.login.pipeline.finish: its `last_login_at` stamp, or `hold_for_sign_in`, both
conditional on `disabled IS false`), so a disabling that commits while the login waits for that
lock is seen, and the login ends with no session and no code. The test holds the user's row (as a
disabling does from its UPDATE to its commit), lets the login's last post run until it waits for
it, then disables the account (fixtures.race.disabled_while_it_waits)."""
from __future__ import annotations

import time

import pyotp
import pytest
from sqlalchemy import func, select

from fixtures.database import postgres_base_url
from fixtures.oidc import FormBrowser, RelyingParty, seed
from fixtures.race import disabled_while_it_waits
from fixtures.totp import enrol_totp_during_login

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")


def _signed_in_since(server, email: str) -> tuple[int, int, int]:
    """The user's login.succeeded events, live sessions and live codes."""
    from idp.db import db, utcnow
    from idp.models import AuditEvent, AuthorizationCode, User, UserSession

    with server.context():
        user_id = db.session.scalar(select(User.id).where(User.email == email))
        now = utcnow()
        return (db.session.scalar(select(func.count()).where(AuditEvent.event == "login.succeeded",
                                                             AuditEvent.subject_id == user_id)),
                db.session.scalar(select(func.count()).select_from(UserSession).where(
                    UserSession.user_id == user_id, UserSession.revoked_at.is_(None))),
                db.session.scalar(select(func.count()).select_from(AuthorizationCode).where(
                    AuthorizationCode.user_id == user_id, AuthorizationCode.redeemed_at.is_(None),
                    AuthorizationCode.revoked_at.is_(None), AuthorizationCode.expires_at > now)))


@pytest.mark.parametrize("last_step", ["password", "totp"])
def test_a_disabling_while_the_login_waits_for_the_users_lock_ends_the_login(pg_server, last_step):
    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.first_party)
    browser = FormBrowser(pg_server.url)
    if last_step == "totp":
        secret = enrol_totp_during_login(FormBrowser(pg_server.url), rp, seeded)[0]
        browser.get(rp.authorization_url())
        browser.login(seeded.user_email, seeded.password)
        form, values = browser.page.form_with("code"), {"code": pyotp.TOTP(secret).at(time.time() + 30)}
    else:
        browser.get(rp.authorization_url())
        form, values = browser.page.form_with("password"), {"username": seeded.user_email,
                                                            "password": seeded.password}
    events_before = _signed_in_since(pg_server, seeded.user_email)[0]

    disabled_while_it_waits(pg_server, seeded.user_email, lambda: browser.submit(form, values))

    assert not (browser.last_redirect and "code=" in browser.last_redirect), browser.last_redirect
    assert _signed_in_since(pg_server, seeded.user_email) == (events_before, 0, 0)
