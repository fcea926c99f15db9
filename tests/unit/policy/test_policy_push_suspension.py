"""Lifting a push suspension (a fraud report's): one audit event per clear, none for a no-op,
organization confinement, and the `idp policy user EMAIL --resume-push` command."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from idp.db import db
from idp.models import AuditEvent, User
from idp.policy import settings as ps
from idp.policy.settings import Actor, PolicyError
from policy_testkit import NOW

SUSPENDED_AT = NOW - timedelta(hours=2)


def events():
    return db.session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars().all()


def count_events():
    return db.session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()


def suspended_at(user_id):
    db.session.expire_all()
    return db.session.get(User, user_id).push_suspended_at


@pytest.fixture
def acme(make_org):
    return make_org("Acme")


@pytest.fixture
def suspended(acme, make_user):
    return make_user(acme, "victim@example.com", second_factor_count=1, push_suspended_at=SUSPENDED_AT)


def test_clear_writes_one_event_then_is_a_no_op(acme, suspended):
    admin = Actor(41, "admin@example.com", acme.id)
    assert ps.clear_push_suspension(suspended.id, admin, now=NOW) is True
    assert suspended_at(suspended.id) is None
    [event] = events()
    assert (event.event, event.org_id, event.actor_id, event.actor, event.subject_id) == (
        ps.EVENT_PUSH_SUSPENSION_CLEARED, acme.id, 41, "admin@example.com", suspended.id)
    assert event.event == "policy.push_suspension_cleared"
    assert event.details == {"suspended_at": SUSPENDED_AT.isoformat(timespec="seconds"),
                             "suspended_for_seconds": 7200}

    assert ps.clear_push_suspension(suspended.id, admin, now=NOW) is False  # nothing left: no event
    assert ps.clear_push_suspension(suspended.id, Actor.cli(), now=NOW) is False
    assert count_events() == 1


def test_a_user_never_suspended_is_a_no_op(acme, make_user):
    user = make_user(acme, "fine@example.com")
    assert ps.clear_push_suspension(user.id, Actor(1, "a@example.com", acme.id)) is False
    assert count_events() == 0


def test_another_organizations_admin_cannot_clear(acme, suspended, make_org):
    other = make_org("Other")
    with pytest.raises(PolicyError, match="user not found"):
        ps.clear_push_suspension(suspended.id, Actor(9, "admin@other.example", other.id), now=NOW)
    with pytest.raises(PolicyError, match="user not found"):
        ps.clear_push_suspension(10**9, Actor.cli(), now=NOW)
    assert suspended_at(suspended.id) == SUSPENDED_AT
    assert count_events() == 0


def test_a_new_fraud_report_after_a_clear_suspends_again_and_clears_with_its_own_event(acme, suspended):
    assert ps.clear_push_suspension(suspended.id, Actor.cli(), now=NOW)
    db.session.get(User, suspended.id).push_suspended_at = NOW + timedelta(minutes=5)
    db.session.commit()
    assert ps.clear_push_suspension(suspended.id, Actor.cli(), now=NOW + timedelta(minutes=10))
    assert [e.event for e in events()] == [ps.EVENT_PUSH_SUSPENSION_CLEARED] * 2


# --------------------------------------------------------------------------- the command

def test_cli_resume_push(run, suspended):
    result = run("user", "Victim@example.com", "--resume-push")
    assert result.exit_code == 0, result.output
    assert "push approvals resumed" in result.stdout
    assert suspended_at(suspended.id) is None
    [event] = events()
    assert (event.event, event.actor, event.actor_id, event.subject_id) == (
        "policy.push_suspension_cleared", "cli", None, suspended.id)

    again = run("user", "victim@example.com", "--resume-push")
    assert again.exit_code == 0 and "not suspended" in again.stdout
    assert count_events() == 1


@pytest.mark.parametrize("args, fragment", [
    (("user", "victim@example.com", "--resume-push", "--require"), "choose exactly one"),
    (("user", "victim@example.com", "--resume-push", "--follow-org"), "choose exactly one"),
    (("user", "victim@example.com", "--resume-push", "--reason", "checked"), "--exempt only"),
    (("user", "ghost@example.com", "--resume-push"), "unknown user"),
])
def test_cli_resume_push_bad_input_is_one_line_and_writes_nothing(run, suspended, args, fragment):
    result = run(*args)
    assert result.exit_code != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert count_events() == 0
    user = db.session.get(User, suspended.id)
    assert user.push_suspended_at == SUSPENDED_AT and user.mfa_setting == "follow"
