"""The challenge store: pending challenges answered exactly once, and expiry."""
from datetime import timedelta

import pytest

from idp.db import db, utcnow
from idp.factors.challenges import ChallengeStore


@pytest.fixture
def challenges(factor_app):
    return ChallengeStore("push")


def test_answer_once(challenges, factor_user):
    c = challenges.create(factor_user, ttl=60, transaction_id="t1", payload={"number": 42})
    db.session.commit()
    assert challenges.get(c.id).status == "pending"
    answered = challenges.answer(c.id, "approved", payload={"number": 42, "device": "x"})
    assert answered is not None and answered.status == "approved" and answered.payload["device"] == "x"
    assert challenges.answer(c.id, "denied") is None
    assert challenges.get(c.id).status == "approved"


def test_expired_challenge_cannot_be_answered(challenges, factor_user):
    now = utcnow()
    c = challenges.create(factor_user, ttl=timedelta(seconds=30), now=now)
    db.session.commit()
    assert challenges.answer(c.id, "approved", now=now + timedelta(seconds=31)) is None
    assert challenges.pending(user=factor_user, now=now + timedelta(seconds=31)) == []
    assert [p.id for p in challenges.pending(user=factor_user, now=now)] == [c.id]


def test_expire_and_scope(challenges, factor_user):
    c = challenges.create(factor_user, ttl=60, lookup_key="abc")
    db.session.commit()
    assert ChallengeStore("other").get(c.id) is None
    assert challenges.find("abc").id == c.id
    assert challenges.expire(c.id)
    db.session.commit()
    assert challenges.answer(c.id, "approved") is None
    with pytest.raises(ValueError):
        challenges.answer(c.id, "pending")


def test_the_login_state_named_here_is_the_pipelines():
    """idp.factors must not import idp.login: the state it looks for is spelled out, and held equal here."""
    from idp.factors.challenges import LOGIN_AT_SECOND_FACTOR
    from idp.login.transaction import State

    assert LOGIN_AT_SECOND_FACTOR == State.SECOND_FACTOR.value


@pytest.mark.parametrize("state, factor_name, expires_in, awaited", [
    ("second_factor", "push", 60, True),
    ("second_factor", None, 60, True),  # no method stored yet: the page stores push just after beginning it
    ("second_factor", "totp", 60, False),  # switched to another method
    ("consent", None, 60, False),  # finished with another method
    ("done", None, 60, False),
    ("cancelled", "push", 60, False),
    ("second_factor", "push", -1, False),  # the login expired
])
def test_awaited_only_while_the_login_waits_on_the_factor(challenges, factor_user, state, factor_name, expires_in,
                                                          awaited):
    from idp.models import LoginTransaction

    now = utcnow()
    db.session.add(LoginTransaction(id="t-wait", browser_binding="b", state=state, version=1, authz_request={},
                                    steps_done=[], factor_name=factor_name, created_at=now,
                                    expires_at=now + timedelta(seconds=expires_in)))
    c = challenges.create(factor_user, ttl=60, transaction_id="t-wait", payload={"type": "login"})
    orphan = challenges.create(factor_user, ttl=60, payload={"type": "login"})  # of no login
    db.session.commit()
    assert [p.id for p in challenges.pending(user=factor_user, awaited=True)] == ([c.id] if awaited else [])
    assert {p.id for p in challenges.pending(user=factor_user)} == {c.id, orphan.id}  # without: every one
    assert challenges.answer(orphan.id, "approved", awaited=True) is None
    assert (challenges.answer(c.id, "approved", awaited=True) is not None) is awaited
    assert challenges.get(c.id).status == ("approved" if awaited else "pending")
