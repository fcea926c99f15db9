"""Two admins saving the same change at once: one change, one audit event (PostgreSQL only).

The writes lock the row (SELECT ... FOR UPDATE) and compare under the lock, so the
second writer sees the first one's result and writes nothing.
"""
from __future__ import annotations

import os
import threading

import pytest
from sqlalchemy import func, select

from idp.db import db
from idp.models import AuditEvent
from idp.policy import settings as ps

pytestmark = pytest.mark.skipif(not os.environ.get("IDP_TEST_DATABASE_URL"),
                                reason="IDP_TEST_DATABASE_URL is not set")


def _race(app, fn, n=6):
    barrier = threading.Barrier(n)
    results, errors = [], []

    def worker():
        with app.app_context():
            try:
                barrier.wait()
                results.append(fn())
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    return results


def _events():
    db.session.remove()
    return db.session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()


def test_org_requirement_race(app, policy_app, make_org, make_user):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the race needs PostgreSQL")
    org = make_org()
    make_user(org, "u@example.com")
    results = _race(policy_app, lambda: ps.set_org_requirement(org.id, True, ps.Actor.cli()))
    assert sorted(results) == [False] * 5 + [True]
    assert _events() == 1


def test_user_requirement_race(app, policy_app, make_org, make_user):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the race needs PostgreSQL")
    user = make_user(make_org(), "u@example.com")
    results = _race(policy_app, lambda: ps.set_user_requirement(user.id, "required", None, None, ps.Actor.cli()))
    assert sorted(results) == [False] * 5 + [True]
    assert _events() == 1
