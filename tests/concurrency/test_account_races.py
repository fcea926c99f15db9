"""Account changes raced over HTTP on PostgreSQL: two admins removing each other's administrator
rights, or disabling each other, at the same moment leave the organization one enabled admin
(idp.users locks the organization's row before counting its admins)."""
from __future__ import annotations

import pytest

from fixtures.database import postgres_base_url
from fixtures.oidc import FormBrowser, RelyingParty, password_login, seed
from test_factor_races import _at_once

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")


@pytest.mark.parametrize("action", ["role", "disable"])
def test_two_admins_demoting_or_disabling_each_other_at_once_leave_one_admin(pg_server, action):
    from sqlalchemy import func, select, update

    from idp.db import db
    from idp.models import AuditEvent, User

    seeded = seed(pg_server)
    with pg_server.context():  # two admins: the seeded one and alice
        db.session.execute(update(User).where(User.email == seeded.user_email).values(role="admin"))
        db.session.commit()
        ids = dict(db.session.execute(select(User.email, User.id)).all())
    rp = RelyingParty(pg_server.url, seeded.first_party)
    pairs = ((seeded.admin_email, ids[seeded.user_email]), (seeded.user_email, ids[seeded.admin_email]))
    for _round in range(10):  # the window is a few milliseconds wide: try it several times
        with pg_server.context():
            db.session.execute(update(User).where(User.org_id == seeded.org_id).values(role="admin", disabled=False))
            db.session.commit()
        submissions = []
        for me, other_id in pairs:  # signed in afresh: disabling ended the loser's sessions
            browser = FormBrowser(pg_server.url)
            password_login(browser, rp, me, seeded.password)
            page = browser.get(f"/admin/users/{other_id}/{action}")
            submissions.append((browser, next(f for f in page.forms() if f["action"].endswith(f"/{action}")), {}))
        _at_once(submissions)
        with pg_server.context():
            admins = db.session.scalar(select(func.count()).select_from(User).where(
                User.org_id == seeded.org_id, User.role == "admin", User.disabled.is_(False)))
        assert admins == 1, f"round {_round}: {admins} enabled admins"
    event = "user.role_changed" if action == "role" else "user.disabled"
    with pg_server.context():
        changed = db.session.scalars(select(AuditEvent).where(AuditEvent.event == event)).all()
    assert len(changed) == 10


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
