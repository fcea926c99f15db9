"""Two admins saving the organization's grace period at the same moment from pages shown with the
same setting, on PostgreSQL: the first under the organization's row lock saves (one event), the
other finds the setting changed since its page was shown (409) and writes nothing of its own."""
from __future__ import annotations

import re
import threading
import time

import pytest
from sqlalchemy import create_engine, select, update

from fixtures.database import postgres_base_url
from fixtures.oidc import FormBrowser, seed

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")


def _admin(server, email: str, password: str) -> FormBrowser:
    browser = FormBrowser(server.url)
    browser.get("/account/security")  # signing in to one's own page opens the session the admin pages use
    browser.login(email, password)
    page = browser.get("/admin/security")
    assert page.status == 200 and "/admin/security" in page.url, page.text[:1000]
    return browser


def test_two_admins_saving_the_grace_period_at_once_save_one(pg_server):
    from idp.db import db
    from idp.models import AuditEvent, Organization, User

    seeded = seed(pg_server)
    with pg_server.context():
        db.session.execute(update(User).where(User.email == seeded.user_email).values(role="admin"))
        db.session.commit()
    admins = [_admin(pg_server, email, seeded.password) for email in (seeded.admin_email, seeded.user_email)]
    forms = [[f for f in a.page.forms() if f["action"].endswith("/admin/security/grace")][0] for a in admins]
    assert forms[0]["fields"]["seen"] == forms[1]["fields"]["seen"] != ""

    watcher = create_engine(pg_server.database_url)
    answers: list = [None, None]
    with pg_server.context(), watcher.connect() as watch:
        # Both saves wait for the organization's row (held here as a save holds it), so that each
        # has read the page's fingerprint before either commits.
        db.session.execute(select(Organization.id).where(Organization.id == seeded.org_id)
                           .with_for_update(key_share=True))
        holder = db._dbapi().info.backend_pid

        def save(i: int, days: str) -> None:
            answers[i] = admins[i].submit(forms[i], {"grace_days": days, "grace_logins": ""})

        saving = [threading.Thread(target=save, args=(i, days)) for i, days in enumerate(("3", "30"))]
        for thread in saving:
            thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not _both_blocked(watch, holder):
            time.sleep(0.02)
        assert all(t.is_alive() for t in saving), "a save did not wait for the organization's row"
        db.session.rollback()
        for thread in saving:
            thread.join(30)
    watcher.dispose()

    statuses = sorted(a.status for a in answers)
    assert statuses == [200, 409], statuses  # (the winner's redirect followed to the page)
    [refused] = [a for a in answers if a.status == 409]
    assert "another administrator changed this setting" in refused.text
    with pg_server.context():
        org = db.session.get(Organization, seeded.org_id)
        events = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "policy.grace_changed")).all()
        [winner] = [a for a in answers if a.status == 200]
        shown = re.search(r'name="grace_days"[^>]*value="(\d+)"|value="(\d+)"[^>]*name="grace_days"', refused.text)
        assert len(events) == 1 and org.grace_days == events[0].details["after"]["days"]
        assert int(shown.group(1) or shown.group(2)) == org.grace_days, "the 409 shows what is in force"
        assert "Grace period saved." in winner.text


def _both_blocked(watch, holder: int) -> bool:
    from sqlalchemy import text

    count = watch.execute(text("SELECT count(*) FROM pg_stat_activity WHERE :holder = ANY(pg_blocking_pids(pid))"),
                          {"holder": holder}).scalar_one()
    watch.rollback()
    return count >= 2
