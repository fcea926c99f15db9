"""Answers against the login's other moves: a denial racing a re-push of the same login, fraud
reports on requests already closed, and what a suspension does to the requests still pending."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from fixtures.race import at_once
from push_testkit import Device, context, enrol_device, push_factor
from sqlalchemy import select

from idp.factors import Denied, Rejected, directory
from idp.factors.testing import make_user

UNIFORM = {"error": "invalid_device_request"}


def start_login(factor, user, txn="txn-1"):
    ctx = context(factor, transaction_id=txn)
    return ctx, factor.begin_challenge(user, ctx)


def fraud_events():
    from idp.db import db
    from idp.models import AuditEvent

    return db.session.scalars(select(AuditEvent).where(AuditEvent.event == "push.fraud_reported")
                              .order_by(AuditEvent.id)).all()


# --- a denial and a re-push of the same login -------------------------------------------------


def test_a_request_denied_as_the_re_push_reads_it_stops_the_re_push(client, push, factor_user, monkeypatch):
    """The re-push reads the login's pending request, which is denied at that moment (committed
    before the re-push cancels it): the cancellation finds it answered, and the checks that come
    after it see the denial. The login sends nothing more."""
    from idp_plugins.push import login_challenge

    enrol_device(client, push, factor_user)
    _ctx, first = start_login(push, factor_user)
    real = login_challenge.superseded

    def denied_as_it_is_read(*args, **kwargs):
        found = real(*args, **kwargs)
        push.challenges.answer(first.state["challenge_id"], login_challenge.DENIED,
                               payload={"type": login_challenge.LOGIN, "reason": "denied"})
        return found

    monkeypatch.setattr(login_challenge, "superseded", denied_as_it_is_read)
    _ctx, again = start_login(push, factor_user)
    assert again.state == {"refused": "denied"} and "number" not in again.view
    assert push.challenges.get(first.state["challenge_id"]).status == login_challenge.DENIED


@pytest.mark.postgres
def test_a_denial_racing_a_re_push_of_the_same_login_one_or_the_other(pg_app, monkeypatch):
    """A deny and a re-push of the same login, at once: either the deny lands first and the login
    sends nothing more, or the re-push supersedes the request first and the deny finds it closed
    (409). Never both: a denied login that pushes again. The first rounds widen the
    re-push's window between its reads and its writes (the answer used to slip in there)."""
    from idp.db import db

    from dataclasses import replace

    push = push_factor()
    monkeypatch.setattr(push, "push_settings", replace(push.push_settings, max_challenges=100))  # (16 requests)
    user = make_user("deny-race@example.com")
    device = enrol_device(pg_app.test_client(), push, user)
    db.session.commit()
    real = directory.any_challenge_status
    for round_ in range(8):
        slow = round_ < 4

        def check(*args, slow=slow, **kwargs):
            answer = real(*args, **kwargs)
            if slow:
                time.sleep(0.3)  # the denial arrives meanwhile
            return answer

        monkeypatch.setattr(directory, "any_challenge_status", check)
        txn = f"txn-{round_}"
        _ctx, first = start_login(push, user, txn)
        db.session.commit()
        cid = first.state["challenge_id"]

        def send(i, cid=cid, txn=txn, slow=slow):
            with pg_app.app_context():
                try:
                    if i == 0:
                        if slow:
                            time.sleep(0.1)  # the re-push is inside its check by now
                        phone = Device(pg_app.test_client(), device.key)
                        return phone.answer(cid, "deny").status_code
                    return push.begin_challenge(user, context(push, transaction_id=txn))
                finally:
                    db.session.remove()

        denied, repush = at_once(2, send)
        pushed_again = "number" in repush.view
        assert (denied, pushed_again) in ((200, False), (409, True)), (round_, denied, repush.state)
        db.session.rollback()


# --- fraud reports ----------------------------------------------------------------------------


def test_a_fraud_report_on_a_request_just_superseded_still_suspends_push(client, push, factor_user):
    """The login page sent the request again (a new one supersedes the old) while the user was
    reading the old one on the phone: "not mine" on it still suspends push, is audited, and
    closes the user's pending requests. The answer stays 409 challenge_closed (section 5.3),
    with `"reported": true`."""
    device = enrol_device(client, push, factor_user)
    _ctx, old = start_login(push, factor_user)
    ctx, new = start_login(push, factor_user)  # supersedes `old`
    _other_ctx, other = start_login(push, factor_user, "txn-2")
    response = device.answer(old.state["challenge_id"], "fraud")
    assert (response.status_code, response.get_json()) == (409, {"error": "challenge_closed", "reported": True})
    assert directory.push_suspended(factor_user.id) and not push.is_configured_for(factor_user)
    [event] = fraud_events()
    assert event.details["challenge_status"] == "expired" and event.details["credential_id"]
    for step in (new, other):  # closed: no phone can approve them any more
        answered = device.answer(step.state["challenge_id"], "approve", step.view["number"])
        assert answered.status_code == 409 and "reported" not in answered.get_json()
    assert push.poll(factor_user, new.state, ctx) == Rejected("suspended", counts_as_failure=False)
    assert device.pending().get_json()["challenges"] == []


def test_a_fraud_report_on_an_approved_request_still_suspends_push(client, push, factor_user):
    """Approved by mistake, then reported: push is suspended, and the login that was approved
    does not complete with push (the pipeline polls it before it moves on)."""
    device = enrol_device(client, push, factor_user)
    ctx, step = start_login(push, factor_user)
    assert device.answer(step.state["challenge_id"], "approve", step.view["number"]).get_json() == {
        "status": "approved"}
    response = device.answer(step.state["challenge_id"], "fraud")
    assert response.get_json() == {"error": "challenge_closed", "reported": True}
    assert fraud_events()[0].details["challenge_status"] == "approved"
    outcome = push.poll(factor_user, step.state, ctx)
    assert isinstance(outcome, Rejected) and outcome.reason == "suspended"


def test_an_approval_reported_as_fraud_stays_void_once_an_admin_resumes_push(client, push, factor_user):
    """The report wins for good, not only while push is suspended: once an admin resumes push,
    the login that waited with the approval (an attacker's, who never pressed Continue) finds it
    expired and must send a new request, which the phone answers afresh. (An audit saw that login
    complete with the approval the user had reported.) The same for an approval of another login
    that the report came after."""
    from idp.policy import settings as policy_settings

    device = enrol_device(client, push, factor_user)
    ctx, step = start_login(push, factor_user, "txn-attacker")
    other_ctx, other = start_login(push, factor_user, "txn-other")
    for login in (other, step):
        assert device.answer(login.state["challenge_id"], "approve", login.view["number"]).status_code == 200
    assert device.answer(step.state["challenge_id"], "fraud").get_json()["reported"] is True
    assert policy_settings.clear_push_suspension(factor_user.id, policy_settings.Actor.cli())
    assert not directory.push_suspended(factor_user.id)
    for login, login_ctx in ((step, ctx), (other, other_ctx)):
        assert push.poll(factor_user, login.state, login_ctx) == Rejected("expired", counts_as_failure=False)


def test_after_a_fraud_report_the_users_other_pending_requests_cannot_be_approved(client, push, factor_user):
    device = enrol_device(client, push, factor_user)
    other_ctx, other = start_login(push, factor_user, "txn-other")
    _ctx, reported = start_login(push, factor_user, "txn-reported")
    assert device.answer(reported.state["challenge_id"], "fraud").get_json() == {"status": "fraud"}
    late = device.answer(other.state["challenge_id"], "approve", other.view["number"])
    assert (late.status_code, late.get_json()) == (409, {"error": "challenge_closed"})
    assert push.poll(factor_user, other.state, other_ctx) == Rejected("suspended", counts_as_failure=False)


def test_an_approval_that_lands_before_a_fraud_report_does_not_complete_the_login(client, push, factor_user):
    device = enrol_device(client, push, factor_user)
    approved_ctx, approved = start_login(push, factor_user, "txn-approved")
    _ctx, reported = start_login(push, factor_user, "txn-reported")
    assert device.answer(approved.state["challenge_id"], "approve", approved.view["number"]).status_code == 200
    assert device.answer(reported.state["challenge_id"], "fraud").get_json() == {"status": "fraud"}
    assert push.poll(factor_user, approved.state, approved_ctx) == Rejected("suspended", counts_as_failure=False)


def test_a_fraud_report_on_an_old_closed_request_is_only_closed(client, push, factor_user):
    """Older than `factors.push.window`: history, not a live attack."""
    from idp.db import db
    from idp.models import FactorChallenge

    device = enrol_device(client, push, factor_user)
    _ctx, step = start_login(push, factor_user)
    row = db.session.get(FactorChallenge, step.state["challenge_id"])
    row.created_at -= timedelta(seconds=push.push_settings.window + 60)
    row.expires_at = row.created_at + timedelta(seconds=60)
    db.session.commit()
    response = device.answer(step.state["challenge_id"], "fraud")
    assert (response.status_code, response.get_json()) == (409, {"error": "challenge_closed"})
    assert not directory.push_suspended(factor_user.id) and fraud_events() == []


def test_a_denial_and_its_audit_event_commit_together(client, push, factor_user):
    from idp.db import db
    from idp.models import AuditEvent

    device = enrol_device(client, push, factor_user)
    ctx, step = start_login(push, factor_user)
    assert device.answer(step.state["challenge_id"], "deny").get_json() == {"status": "denied", "reason": "denied"}
    db.session.rollback()
    assert db.session.scalars(select(AuditEvent).where(AuditEvent.event == "push.denied")).all()
    assert push.poll(factor_user, step.state, ctx) == Denied("denied")


# --- numbers that are not text -----------------------------------------------------------------


def test_a_number_with_a_lone_surrogate_is_a_wrong_number(client, push, factor_user):
    """`"number": "\\ud800"` is valid JSON that no UTF-8 encodes: it was a UnicodeEncodeError (a
    generic 400); the protocol counts any wrong number as a denial."""
    device = enrol_device(client, push, factor_user)
    ctx, step = start_login(push, factor_user)
    response = device.answer(step.state["challenge_id"], "approve", step.view["number"][:-1] + "\ud800")
    assert (response.status_code, response.get_json()) == (200, {"status": "denied", "reason": "wrong_number"})
    assert push.poll(factor_user, step.state, ctx) == Denied("wrong_number")


@pytest.mark.parametrize("closed_by", ["approval", "re_push"])
def test_a_fraud_report_on_a_closed_request_sent_again_is_reported_once(client, push, factor_user, closed_by):
    """A report on a request no longer pending (approved by mistake, superseded by a re-push),
    sent again signed afresh after its reply was lost: told the same (reported), and not recorded a
    second time (docs/push-protocol.md, "Retrying an answer": one event, one suspension). The
    retry used to find the request merely expired (the first report's doing) and report it again."""
    device = enrol_device(client, push, factor_user)
    _ctx, step = start_login(push, factor_user)
    if closed_by == "approval":
        assert device.answer(step.state["challenge_id"], "approve", step.view["number"]).status_code == 200
    else:
        start_login(push, factor_user)  # supersedes `step`
    first = device.answer(step.state["challenge_id"], "fraud")
    assert (first.status_code, first.get_json()) == (409, {"error": "challenge_closed", "reported": True})
    again = device.answer(step.state["challenge_id"], "fraud")
    assert (again.status_code, again.get_json()) == (409, {"error": "challenge_closed", "reported": True})
    assert len(fraud_events()) == 1
    # Another of the user's phones saying "not mine" about it is its own report.
    other = enrol_device(client, push, factor_user, "Other phone")
    assert other.answer(step.state["challenge_id"], "fraud").get_json()["reported"] is True
    assert len(fraud_events()) == 2


@pytest.mark.postgres
@pytest.mark.parametrize("closed_by", [None, "approval"])
def test_two_copies_of_one_fraud_report_at_once_are_reported_once(pg_app, closed_by):
    """A phone's retry sent while its first report is still under way (both signed): the answers
    take the user's lock one after the other, and the second finds the first's report, on a
    pending request or on one approved already."""
    from idp.db import db

    push = push_factor()
    user = make_user(f"fraud-twice-{closed_by}@example.com")
    device = enrol_device(pg_app.test_client(), push, user)
    _ctx, step = start_login(push, user)
    db.session.commit()
    cid = step.state["challenge_id"]
    if closed_by == "approval":
        assert device.answer(cid, "approve", step.view["number"]).status_code == 200
    tokens = [device.token(f"/challenges/{cid}/answer", challenge=cid, decision="fraud") for _ in range(2)]

    def send(i):
        with pg_app.app_context():
            try:
                response = Device(pg_app.test_client(), device.key).answer(cid, "fraud", token=tokens[i])
                return response.status_code, response.get_json()
            finally:
                db.session.remove()

    answers = at_once(2, send)
    assert all(body.get("reported") or body.get("status") == "fraud" for _code, body in answers), answers
    db.session.rollback()
    assert len([e for e in fraud_events() if e.actor_id == user.id]) == 1
