"""A device's user code decided at once in several browsers, on PostgreSQL (idp.oidc.device_flow):
the approval is one conditional UPDATE of the pending row (`status = 'pending'`), in the
transaction of the login that ends with it. Logins of different people finishing together, or a
"no" at the confirmation as a login finishes, decide the device once: one approval row for the
code exchange, naming the user the device row names, or none; one audit event; and the device's
poll answers what was decided."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from fixtures.database import postgres_base_url
from fixtures.device import allow_device_grant, ask_for_codes, confirm, poll
from fixtures.oidc import FormBrowser, seed
from fixtures.race import at_once

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")

BROWSERS = 8


def _decisions(server, user_code: str):
    """The device row, the approvals stored for it (code rows) and the device.* audit events."""
    from idp.db import db
    from idp.models import AuditEvent, AuthorizationCode, DeviceAuthorization
    from idp.oidc.device_flow import approval_hash, normalised_user_code

    with server.context():
        device = db.session.scalar(select(DeviceAuthorization)
                                   .where(DeviceAuthorization.user_code == normalised_user_code(user_code)))
        approvals = db.session.scalars(select(AuthorizationCode).where(
            AuthorizationCode.code_hash == approval_hash(device.device_code_hash))).all()
        events = db.session.scalars(select(AuditEvent).where(AuditEvent.event.in_(
            ("device.approved", "device.denied")))).all()
        return ((device.status, device.user_id), [a.user_id for a in approvals],
                [(e.event, e.subject_id) for e in events])


def _user_id(server, email: str) -> int:
    from idp.db import db
    from idp.models import User

    with server.context():
        return db.session.scalar(select(User.id).where(User.email == email))


def test_one_user_code_signed_in_by_several_people_at_once_is_approved_once(pg_server):
    """Eight browsers (two people) confirmed the same code and post their password together: one
    login approves the device; the others are told the code is no longer valid, and store no
    approval of their own."""
    seeded = seed(pg_server)
    client = seeded.first_party
    allow_device_grant(pg_server, client)
    codes = ask_for_codes(pg_server, client).json()
    browsers = [FormBrowser(pg_server.url) for _ in range(BROWSERS)]
    emails = [seeded.user_email if i % 2 else seeded.admin_email for i in range(BROWSERS)]
    for browser in browsers:
        confirm(browser, codes["user_code"])
        assert browser.page.form_with("password")
    at_once(BROWSERS, lambda i: browsers[i].login(emails[i], seeded.password))

    approved = [email for browser, email in zip(browsers, emails, strict=True)
                if browser.page.url.endswith("/device/approved")]
    assert len(approved) == 1, [b.page.url for b in browsers]
    winner = _user_id(pg_server, approved[0])
    device, approvals, events = _decisions(pg_server, codes["user_code"])
    assert device == ("approved", winner) and approvals == [winner] and events == [("device.approved", winner)]
    answer = poll(pg_server, client, codes["device_code"])
    assert answer.status_code == 200 and _token_users(pg_server) == [winner], answer.text


def _token_users(server) -> list[int]:
    from idp.db import db
    from idp.models import Token

    with server.context():
        return sorted(set(db.session.scalars(select(Token.user_id))))


@pytest.mark.parametrize("round_", range(3))
def test_a_no_at_the_confirmation_as_a_login_approves_decides_the_device_once(pg_server, round_):
    """One browser finishes the login that approves the device as another says no at the
    confirmation, at the same moment: whichever comes first decides, the other changes nothing,
    and the device's poll gets tokens only after an approval."""
    seeded = seed(pg_server)
    client = seeded.first_party
    allow_device_grant(pg_server, client)
    codes = ask_for_codes(pg_server, client).json()
    signing_in, saying_no = FormBrowser(pg_server.url), FormBrowser(pg_server.url)
    confirm(signing_in, codes["user_code"])
    assert signing_in.page.form_with("password")
    page = saying_no.get(f"/device?user_code={codes['user_code']}")
    page = saying_no.submit(page.form_with("user_code"), {"user_code": codes["user_code"]})
    question = page.form_with("action")

    at_once(2, lambda i: (signing_in.login(seeded.user_email, seeded.password) if i == 0
                          else saying_no.submit(question, button=("action", "deny"))))

    device, approvals, events = _decisions(pg_server, codes["user_code"])
    answer = poll(pg_server, client, codes["device_code"])
    if device[0] == "approved":
        alice = _user_id(pg_server, seeded.user_email)
        assert signing_in.page.url.endswith("/device/approved")
        assert device == ("approved", alice) and approvals == [alice] and events == [("device.approved", alice)]
        assert answer.status_code == 200 and _token_users(pg_server) == [alice], answer.text
    else:
        assert not signing_in.page.url.endswith("/device/approved"), signing_in.page.url
        assert device == ("denied", None) and approvals == [] and events == [("device.denied", None)]
        assert (answer.status_code, answer.json()["error"]) == (400, "access_denied")
