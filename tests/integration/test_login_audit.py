"""What the audit log says about password logins: refused guesses and rehashed passwords.

A refused password was typed by somebody nobody has authenticated: the event's actor is
`anonymous` (with the request's address and User-Agent), the account it named is the subject.
A password rehashed on login (the argon2 parameters changed) is a change to the account and is
recorded like one.
"""
from __future__ import annotations

import requests
from argon2 import PasswordHasher
from sqlalchemy import select, update

from fixtures.oidc import FAST_ARGON2
from recovery_kit import enable_recovery


def events(server, name: str) -> list:
    from idp.db import db
    from idp.models import AuditEvent

    with server.context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.id)).all()
        db.session.expunge_all()
        return rows


def user_row(server, email: str):
    from idp.db import db
    from idp.models import User

    with server.context():
        row = db.session.scalars(select(User).where(User.email == email)).one()
        db.session.expunge(row)
        return row


def set_user(server, email: str, **values) -> None:
    from idp.db import db
    from idp.models import User

    with server.context():
        db.session.execute(update(User).where(User.email == email).values(**values))
        db.session.commit()


def test_a_wrong_password_is_an_anonymous_attempt_on_the_account(live_server, seeded, web, rp_factory):
    rp = rp_factory(seeded.first_party)
    web.get(rp.authorization_url())
    assert web.login(seeded.user_email, "not the password").status == 401

    alice = user_row(live_server, seeded.user_email)
    [event] = events(live_server, "login.password_failed")
    assert (event.actor, event.actor_id, event.subject_id, event.org_id) == ("anonymous", None, alice.id, seeded.org_id)
    assert event.ip == "127.0.0.1" and event.user_agent.startswith("python-requests/")
    assert event.details == {"reason": "wrong_password", "client_id": seeded.first_party["client_id"]}


def test_a_password_for_an_unknown_address_is_recorded_too_without_the_address(live_server, seeded, web, rp_factory):
    """So that a refusal writes and commits the same whether the address has an account or not
    (one that wrote less for an unknown address answered sooner: its timing told which addresses
    have accounts). Nobody's organization, nobody as subject, the typed address not kept."""
    rp = rp_factory(seeded.first_party)
    web.get(rp.authorization_url())
    assert web.login("nobody@nowhere.example", "not the password").status == 401
    [event] = events(live_server, "login.password_failed")
    assert (event.actor, event.actor_id, event.subject_id, event.org_id) == ("anonymous", None, None, None)
    assert event.details == {"reason": "unknown_account", "client_id": seeded.first_party["client_id"]}
    assert "nobody" not in repr(event.details) and event.ip == "127.0.0.1"


def test_the_right_password_of_a_disabled_account_is_refused_alike_and_recorded_as_such(live_server, seeded, web,
                                                                                          rp_factory):
    set_user(live_server, seeded.user_email, disabled=True)
    rp = rp_factory(seeded.first_party)
    web.get(rp.authorization_url())
    page = web.login(seeded.user_email, seeded.password)
    assert page.status == 401 and "Incorrect e-mail or password." in page.text  # the page says no more
    [event] = events(live_server, "login.password_failed")
    assert (event.actor, event.details["reason"]) == ("anonymous", "account_disabled")


def test_the_guess_that_locks_an_account_is_anonymous_too(live_server, seeded, web, rp_factory):
    rp = rp_factory(seeded.first_party)
    web.get(rp.authorization_url())
    statuses = [web.login(seeded.user_email, f"guess {i}").status for i in range(11)]
    assert statuses[-1] == 429
    [locked] = events(live_server, "login.locked_out")
    assert (locked.actor, locked.actor_id, locked.subject_id) == ("anonymous", None,
                                                                   user_row(live_server, seeded.user_email).id)
    assert {e.actor for e in events(live_server, "login.password_failed")} == {"anonymous"}


def test_a_refused_recovery_password_is_anonymous_too(migrated_database_url):
    """The push recovery by password (idp.factors.directory.check_password) models it the same way."""
    from fixtures.oidc import seed, start_server

    server = enable_recovery(start_server(migrated_database_url))
    try:
        seeded = seed(server)
        response = requests.post(f"{server.url}/factors/qr_recovery/personal/start",
                                 json={"email": seeded.user_email, "password": "not the password"}, timeout=10)
        assert response.status_code == 401
        [event] = events(server, "recover.password_failed")
        assert (event.actor, event.actor_id) == ("anonymous", None)
        assert event.subject_id == user_row(server, seeded.user_email).id and event.ip == "127.0.0.1"
        assert event.details["reason"] == "wrong_password"
    finally:
        server.stop()


def test_a_password_rehashed_at_login_is_recorded(live_server, seeded, web, rp_factory):
    """The server's argon2 parameters changed since the password was set: the login stores a new
    hash and says so, with both sets of parameters (public: they are part of the hash)."""
    old_hash = PasswordHasher(time_cost=FAST_ARGON2["security.argon2_time_cost"] + 1,
                              memory_cost=FAST_ARGON2["security.argon2_memory_cost"]).hash(seeded.password)
    set_user(live_server, seeded.user_email, password_hash=old_hash)
    rp = rp_factory(seeded.first_party)
    web.get(rp.authorization_url())
    web.login(seeded.user_email, seeded.password)
    assert web.callback_params()["code"]

    alice = user_row(live_server, seeded.user_email)
    assert alice.password_hash != old_hash
    [event] = events(live_server, "login.password_rehashed")
    assert (event.actor, event.actor_id, event.subject_id) == (alice.email, alice.id, alice.id)
    assert event.details["from"]["time_cost"] == FAST_ARGON2["security.argon2_time_cost"] + 1
    assert event.details["to"]["time_cost"] == FAST_ARGON2["security.argon2_time_cost"]
    assert event.details["to"]["type"] == "id"

    other = type(web)(live_server.url)  # the next login finds the hash current: nothing more to say
    other.get(rp.authorization_url())
    other.login(seeded.user_email, seeded.password)
    assert other.callback_params()["code"] and len(events(live_server, "login.password_rehashed")) == 1


def test_a_rehash_at_login_holds_no_transaction_through_argon2(live_server, seeded, web, rp_factory, monkeypatch):
    """The new hash is computed before the login's writes begin their transaction: on SQLite that
    transaction holds the database's write lock, which every login after a change of the argon2
    parameters held through a hash (tens of milliseconds, every other request waiting)."""
    from fixtures.database import writes_while_hashing

    old_hash = PasswordHasher(time_cost=FAST_ARGON2["security.argon2_time_cost"] + 1,
                              memory_cost=FAST_ARGON2["security.argon2_memory_cost"]).hash(seeded.password)
    set_user(live_server, seeded.user_email, password_hash=old_hash)
    while_hashing = writes_while_hashing(live_server, monkeypatch)
    web.get(rp_factory(seeded.first_party).authorization_url())
    web.login(seeded.user_email, seeded.password)
    assert web.callback_params()["code"] and while_hashing == [True]
    assert user_row(live_server, seeded.user_email).password_hash != old_hash


def test_a_user_agent_with_control_characters_is_recorded_as_one_short_line(live_server, seeded, web, rp_factory):
    # PostgreSQL's text cannot hold NUL: stored raw, it turned every audited request into an error.
    web.http.headers["User-Agent"] = "Evil\x00Agent\x01/1.0 " + "x" * 1000
    web.get(rp_factory(seeded.first_party).authorization_url())
    assert web.login(seeded.user_email, "not the password").status == 401

    [event] = events(live_server, "login.password_failed")
    assert event.user_agent.startswith("EvilAgent/1.0 xxx") and len(event.user_agent) == 255
