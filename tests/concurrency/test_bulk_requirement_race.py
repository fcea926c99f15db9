"""The users list's bulk change of 2FA against a single user's save of one of the same users, over
HTTP on PostgreSQL: neither overwrites the other, neither deadlocks. The bulk change locks the
organization's row, then its users' rows in ascending id order (idp.policy.settings.
set_users_requirement); a single save holds one user's row. Whichever commits first wins, and the
other, which waited for its lock (seen with pg_blocking_pids, not a duration), finds the user
changed since its page was shown: the bulk change skips that user, the single save is a 409."""
from __future__ import annotations

import re
import threading
import time

import pytest

from fixtures.database import postgres_base_url
from fixtures.oidc import FormBrowser, RelyingParty, password_login, seed
from fixtures.race import blocked_by

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")


def _members(server, org_id, emails):
    from idp.db import db
    from idp.models import User
    from idp.security.tokens import random_token

    with server.context():
        users = [User(public_id=random_token(16), org_id=org_id, email=email, name=email.split("@")[0].title())
                 for email in emails]
        db.session.add_all(users)
        db.session.commit()
        return [u.id for u in users]


def _admin(server):
    seeded = seed(server)
    admin = FormBrowser(server.url)
    password_login(admin, RelyingParty(server.url, seeded.first_party), seeded.admin_email, seeded.password)
    return seeded, admin


def _while_held(server, hold, request):
    """Run `request` (an HTTP call) in a thread while this process holds what `hold` locked (in its
    open transaction); once `request` waits for that lock, commit. Returns (waited, its answer)."""
    from sqlalchemy import create_engine, text

    from idp.db import db

    watcher = create_engine(server.database_url)
    answers = []
    with server.context():
        hold()
        holder = db.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        thread = threading.Thread(target=lambda: answers.append(request()))
        thread.start()
        waited = False
        with watcher.connect() as watch:
            while thread.is_alive() and not waited:
                waited = blocked_by(watch, holder)
                time.sleep(0.02)
        db.session.commit()
        thread.join()
    watcher.dispose()
    return waited, answers[0]


def _state(server, ids):
    from sqlalchemy import select

    from idp.db import db
    from idp.models import AuditEvent, User

    with server.context():
        users = {u.id: (u.mfa_setting, u.exempt_reason) for u in
                 db.session.scalars(select(User).where(User.id.in_(ids)))}
        events = db.session.scalars(select(AuditEvent).where(AuditEvent.event.like("policy.%"))
                                    .order_by(AuditEvent.id)).all()
        return users, [(e.event, e.subject_id, e.details) for e in events]


def test_a_single_save_committed_first_is_skipped_by_the_bulk_change(pg_server):
    from idp.policy import settings

    seeded, admin = _admin(pg_server)
    ids = _members(pg_server, seeded.org_id, ["m1@acme.test", "m2@acme.test", "m3@acme.test"])
    page = admin.get("/admin/users").text
    boxes = re.findall(r'name="user" id="select-\d+" value="([^"]+)"', page)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert len(boxes) == 4  # alice and the three members
    # Another admin's save of m2's own page (an exemption after an incident), not yet committed.
    waited, answer = _while_held(
        pg_server,
        lambda: settings.set_user_requirement(ids[1], settings.EXEMPT, None, "incident", settings.Actor.cli(),
                                              commit=False),
        lambda: admin.http.post(f"{pg_server.url}/admin/users", allow_redirects=False, timeout=30,
                                data={"csrf_token": csrf, "mode": "required", "user": boxes}))
    assert waited, "the bulk change did not wait for the single save's lock on the user's row"
    assert answer.status_code == 302, answer.text
    users, events = _state(pg_server, ids)
    assert users == {ids[0]: ("required", None), ids[1]: ("exempt", "incident"), ids[2]: ("required", None)}
    [summary] = [details for event, _subject, details in events if event == "policy.bulk_change"]
    assert summary["skipped"] == [ids[1]] and summary["changed"] == 3  # alice, m1, m3
    assert "m2@acme.test" in admin.get("/admin/users").text.split("skipped because", 1)[1].split("</p>")[0]


def test_a_single_save_waiting_for_the_bulk_change_is_refused_not_overwriting_it(pg_server):
    from idp.policy import settings

    seeded, admin = _admin(pg_server)
    ids = _members(pg_server, seeded.org_id, ["m1@acme.test", "m2@acme.test"])
    page = admin.get(f"/admin/users/{ids[1]}")
    form = page.form_with("seen")
    # The bulk change (another admin's, from the list) holds the organization's and the users' rows.
    waited, answer = _while_held(
        pg_server,
        lambda: settings.set_users_requirement({ids[0]: None, ids[1]: None}, settings.REQUIRED, None, None,
                                               settings.Actor.cli(), commit=False),
        lambda: admin.http.post(f"{pg_server.url}/admin/users/{ids[1]}/security", allow_redirects=False,
                                timeout=30, data={**form["fields"], "exempt": "y", "exempt_reason": "stale page"}))
    assert waited, "the single save did not wait for the bulk change's lock on the user's row"
    assert answer.status_code == 409, answer.text
    users, events = _state(pg_server, ids)
    assert users == {ids[0]: ("required", None), ids[1]: ("required", None)}
    assert [e for e, *_ in events].count("policy.user_requirement_changed") == 2
