"""An admin's "Resume push approvals" as a fraud report comes in, on PostgreSQL.

The confirmation carries the newest report it was shown in view of (`reports_seen`); a report
made since is asked about again (409) rather than cleared unseen. The POST read that newest
report before it took the member's row lock, and the clear waited for the lock: a report the
phone was recording at that moment (the phone's answer, and the login page's, hold the user's
row from the check to the commit) committed in between and was cleared with the suspension,
unseen. The newest report is now read under that lock.
"""
from __future__ import annotations

import re
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, update

from fixtures.database import postgres_base_url
from fixtures.oidc import seed
from fixtures.race import blocked_by

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from recovery_kit import admin_browser  # noqa: E402

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")


def test_a_fraud_report_recorded_as_the_admin_confirms_is_asked_about_again(pg_server):
    from idp import audit
    from idp.db import db, utcnow
    from idp.factors import directory
    from idp.models import User

    seeded = seed(pg_server)
    with pg_server.context():
        alice = db.session.scalar(select(User).where(User.email == seeded.user_email))
        alice_id, org_id = alice.id, alice.org_id
        db.session.execute(update(User).where(User.id == alice_id).values(push_suspended_at=utcnow()))
        audit.record("push.fraud_reported", org_id=org_id, actor_id=alice_id, actor=seeded.user_email,
                     subject_id=alice_id, details={"device": "Pixel 8"})
        db.session.commit()
    admin = admin_browser(pg_server, seeded)
    url = f"/admin/users/{alice_id}/resume-push"
    page = admin.get(url)
    assert page.status == 200 and re.search(r'name="reports_seen" value="\d+"', page.text), page.text[:2000]
    form = [f for f in page.forms() if "reports_seen" in f["fields"]][0]

    watcher = create_engine(pg_server.database_url)
    with pg_server.context(), watcher.connect() as watch:
        # The phone's fraud report, as the push device endpoint records it: under the user's row.
        directory.lock_user(alice_id)
        holder = db._dbapi().info.backend_pid
        confirming = threading.Thread(target=lambda: admin.submit(form))
        confirming.start()
        while confirming.is_alive() and not blocked_by(watch, holder):
            time.sleep(0.02)
        assert confirming.is_alive(), "the confirmation did not wait for the user's lock"
        audit.record("push.fraud_reported", org_id=org_id, actor_id=alice_id, actor=seeded.user_email,
                     subject_id=alice_id, details={"device": "Pixel 8"})
        db.session.commit()
        confirming.join()
    watcher.dispose()

    assert admin.page.status == 409 and "Another fraud report" in admin.page.text, admin.page.status
    with pg_server.context():
        assert db.session.scalar(select(User.push_suspended_at).where(User.id == alice_id)) is not None
