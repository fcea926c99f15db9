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
