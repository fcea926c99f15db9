"""/admin/users/new: an address in use elsewhere tells the admin nothing about another organization
beyond the one bit the global uniqueness of addresses forces (docs/policy.md, "Admin pages")."""
from __future__ import annotations

import re

from sqlalchemy import func, select

from idp.db import db
from idp.models import AuditEvent, User

PASSWORD = "a long enough passphrase"


def post_new_user(client, email: str):
    return client.post("/admin/users/new", data={"email": email, "name": "", "password": PASSWORD,
                                                 "confirm": PASSWORD})


def answer_without(response, email: str) -> str:
    """The page as the admin reads it, with the address they typed (echoed in the field) taken out."""
    return re.sub(r'name="csrf_token" value="[^"]*"', "", response.get_data(as_text=True).replace(email, "EMAIL"))


def test_an_address_of_another_organization_gets_the_answer_of_an_address_of_ones_own(app, world, browser):
    client = browser(world["admin"])
    own = post_new_user(client, world["alice"].email)
    foreign = post_new_user(client, world["stranger"].email)
    assert own.status_code == foreign.status_code == 400
    assert answer_without(own, world["alice"].email) == answer_without(foreign, world["stranger"].email)
    text = foreign.get_data(as_text=True)
    assert "already in use" in text and "already exists" not in text and "Other" not in text
    assert db.session.scalar(select(func.count()).select_from(User)) == len(world) - 2  # nobody added
    refused = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "user.create_refused")
                                 .order_by(AuditEvent.id)).all()
    assert [(e.org_id, e.actor_id, e.details) for e in refused] == [
        (world["acme"].id, world["admin"].id, {"email": world["alice"].email, "reason": "email_taken"}),
        (world["acme"].id, world["admin"].id, {"email": world["stranger"].email, "reason": "email_taken"})]


def test_the_form_is_no_directory_of_other_organizations(app, world, browser):
    """Past the factor lockout's threshold of "in use" answers, the admin waits: a list of guessed
    addresses cannot be checked against every organization at the speed of the form."""
    client = browser(world["admin"])
    for n in range(5):
        assert post_new_user(client, f"someone{n}@other.test").status_code == 302  # free: created
    for _n in range(5):
        assert post_new_user(client, world["stranger"].email).status_code == 400
    waiting = post_new_user(client, "free@acme.test")
    assert waiting.status_code == 429 and "wait" in waiting.get_data(as_text=True)
    assert 0 < int(waiting.headers["Retry-After"]) <= 30
    assert db.session.scalar(select(User.id).where(User.email == "free@acme.test")) is None
    other_admin = browser(world["other_admin"])  # another admin's budget is their own
    assert post_new_user(other_admin, "free@other.test").status_code == 302


def test_with_redis_the_refusal_is_still_audited_and_counted(app, world, browser, monkeypatch):
    """On Redis the lockout commits nothing of the database's: the event must not go with it."""
    import os
    import socket

    import pytest
    import redis

    url = os.environ.get("IDP_TEST_REDIS_URL")
    if not url:
        pytest.skip("IDP_TEST_REDIS_URL not set")
    try:
        socket.create_connection((redis.connection.parse_url(url)["host"], 6379), timeout=0.5).close()
    except OSError:
        pytest.skip("no Redis")
    server = redis.Redis.from_url(url)
    key = f"factor:admin-taken-email:{world['admin'].id}"
    monkeypatch.setitem(app.extensions, "idp.redis", server)
    server.delete(*[k for k in server.keys("*admin-taken-email*")] or [key])
    try:
        client = browser(world["admin"])
        assert post_new_user(client, world["stranger"].email).status_code == 400
        assert db.session.scalar(select(func.count()).select_from(AuditEvent)
                                 .where(AuditEvent.event == "user.create_refused")) == 1
        assert server.keys("*admin-taken-email*")
    finally:
        server.delete(*[k for k in server.keys("*admin-taken-email*")] or [key])


def test_the_answer_is_counted_before_the_address_is_looked_up(app, world, browser, monkeypatch):
    """Requests posted at once must not all pass a check made before any of them is counted: the
    request is counted while it looks the address up, and taken back when the address was free."""
    from idp import users
    from idp.models import FailureCounter

    key = f"factor:admin-taken-email:{world['admin'].id}"
    counted_during_lookup = []
    create = users.create

    def spying_create(*args, **kwargs):
        counted_during_lookup.append(db.session.scalar(select(FailureCounter.failures)
                                                       .where(FailureCounter.key == key)))
        return create(*args, **kwargs)

    monkeypatch.setattr(users, "create", spying_create)
    client = browser(world["admin"])
    assert post_new_user(client, world["stranger"].email).status_code == 400
    assert post_new_user(client, "free@acme.test").status_code == 302
    assert counted_during_lookup == [1, 2]
    db.session.expire_all()
    assert db.session.scalar(select(FailureCounter.failures).where(FailureCounter.key == key)) == 1


def test_users_created_every_day_do_not_keep_the_in_use_answers_alive(app, world, browser):
    """Each add is counted before the look-up and a created user takes its count back; that must
    not also keep the admin's earlier "in use" answers alive (as the address's password count,
    idp.lockout `touch`): an admin adding people every day would otherwise find the form waiting
    after their fifth duplicate in months. An "in use" answer keeps them."""
    from datetime import timedelta

    from sqlalchemy import update

    from idp import maintenance
    from idp.db import utcnow
    from idp.models import FailureCounter

    key = f"factor:admin-taken-email:{world['admin'].id}"
    client = browser(world["admin"])

    def age():  # a day and more without an "in use" answer
        db.session.execute(update(FailureCounter).where(FailureCounter.key == key)
                           .values(updated_at=utcnow() - timedelta(days=2)))
        db.session.commit()

    assert post_new_user(client, world["stranger"].email).status_code == 400
    age()
    assert post_new_user(client, "daily@acme.test").status_code == 302
    maintenance.purge()
    assert db.session.scalar(select(FailureCounter).where(FailureCounter.key == key)) is None
    assert post_new_user(client, world["stranger"].email).status_code == 400
    age()
    assert post_new_user(client, world["alice"].email).status_code == 400
    maintenance.purge()
    assert db.session.scalar(select(FailureCounter.failures).where(FailureCounter.key == key)) == 2
