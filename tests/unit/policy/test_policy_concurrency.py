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


def test_two_admins_saving_from_the_same_page_at_once_save_one(app, policy_app, make_org, make_user):
    """Both pages were shown with the same setting (`seen`) and ask for different ones: the first
    under the row lock saves, the others then find the setting changed since their page
    (PolicyChanged), never undo it unseen."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the race needs PostgreSQL")
    user = make_user(make_org(), "u@example.com")
    seen = ps.requirement_version(user)
    modes = iter(["required", "exempt"] * 3)
    lock = threading.Lock()

    def save():
        with lock:
            mode = next(modes)
        try:
            return ps.set_user_requirement(user.id, mode, None, None, ps.Actor.cli(), seen=seen)
        except ps.PolicyChanged:
            return "changed"

    results = _race(policy_app, save)
    assert results.count(True) == 1 and set(results) <= {True, False, "changed"}
    assert _events() == 1
