"""Protocol v1 on the server (docs/push-protocol.md) through the Flask test client."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest

from authenticator.push import keys
from push_testkit import BASE, Device, activation_code, context, enrol_device, enrolment_context
from idp.factors import Denied, Enrolled, Pending, Rejected, Verified
from idp.factors.testing import make_user

UNIFORM = {"error": "invalid_device_request"}


def start_login(factor, user, txn="txn-1"):
    ctx = context(factor, transaction_id=txn)
    step = factor.begin_challenge(user, ctx)
    return ctx, step


# --- activation and registration ----------------------------------------------------------


def test_enrolment_completes_once_the_device_registers(client, push, factor_user):
    ctx = enrolment_context(push)
    step = push.begin_enrolment(factor_user, ctx)
    assert step.view["activation_uri"].startswith("idp-push://activate?v=1&")
    assert "<svg" in step.view["qr_svg"]
    assert isinstance(push.finish_enrolment(factor_user, step.state, {}, ctx), Rejected)
    device = Device(client)
    response = device.register(activation_code(step.view["activation_uri"]), "Alice's phone")
    assert response.status_code == 201
    assert response.get_json()["device_id"] == device.id
    outcome = push.finish_enrolment(factor_user, step.state, {}, ctx)
    assert isinstance(outcome, Enrolled)
    assert outcome.credential.lookup_key == device.id and outcome.credential.label == "Alice's phone"
    assert push.is_configured_for(factor_user)
    assert client.get(step.view["status_url"]).get_json() == {"status": "registered"}


def test_asking_whether_push_is_usable_opens_no_transaction(client, push, factor_user):
    """Every login page that offers push asks it: answered from the store's list and a read of
    the suspension outside any transaction, where a COUNT and a read through the session opened
    one (on SQLite, the write lock) to read."""
    from idp.db import db

    enrol_device(client, push, factor_user)
    db.session.remove()
    assert push.is_configured_for(factor_user)
    assert not db.in_transaction()


def test_activation_code_is_one_time(client, push, factor_user):
    step = push.begin_enrolment(factor_user, enrolment_context(push))
    code = activation_code(step.view["activation_uri"])
    assert Device(client).register(code).status_code == 201
    again = Device(client).register(code)
    assert again.status_code == 400 and again.get_json() == {"error": "invalid_activation"}


def test_expired_and_unknown_activation_codes_get_one_answer(client, push, factor_user):
    act = push.issue_activation(factor_user, "http://localhost:5000", context(push).now - timedelta(minutes=11))
    expired = Device(client).register(act.code)
    unknown = Device(client).register("not-a-code")
    assert expired.status_code == unknown.status_code == 400
    assert expired.get_json() == unknown.get_json() == {"error": "invalid_activation"}


def test_a_disabled_accounts_code_registers_no_device(client, push, factor_user):
    """(Disabling ends the codes it finds; one an operator issued afterwards must not add a
    way in that works again once the account is enabled.)"""
    from sqlalchemy import update

    from idp.db import db
    from idp.models import User

    code = activation_code(push.begin_enrolment(factor_user, enrolment_context(push)).view["activation_uri"])
    db.session.execute(update(User).where(User.id == factor_user.id).values(disabled=True))
    db.session.commit()
    refused = Device(client).register(code)
    assert (refused.status_code, refused.get_json()) == (400, {"error": "invalid_activation"})
    assert push.store.list(factor_user) == []


def test_the_last_devices_removal_ends_the_codes_still_pending(client, push, factor_user):
    """An admin's reset after a lost phone leaves no code that registers another."""
    from idp.factors import directory
    from idp.factors.registry import current_registry

    device = enrol_device(client, push, factor_user)
    code = activation_code(push.begin_enrolment(factor_user, enrolment_context(push)).view["activation_uri"])
    current_registry().remove_credential(factor_user, push.store.find(device.id).id)
    directory.commit()
    refused = Device(client).register(code)
    assert (refused.status_code, refused.get_json()) == (400, {"error": "invalid_activation"})


def test_an_activation_code_with_a_lone_surrogate_is_an_invalid_activation(client, push, factor_user):
    """`"code": "\ud800"` is valid JSON that no UTF-8 encodes: hashing it raised (a generic 400)."""
    code = activation_code(push.begin_enrolment(factor_user, enrolment_context(push)).view["activation_uri"])
    response = Device(client).register(code[:-1] + "\ud800")
    assert (response.status_code, response.get_json()) == (400, {"error": "invalid_activation"})
    assert Device(client).register(code).status_code == 201  # the real code is not spent


def test_a_registration_refused_for_its_key_leaves_the_code_unspent(client, push, factor_user):
    device = enrol_device(client, push, factor_user, "phone 1")
    code = activation_code(push.begin_enrolment(factor_user, enrolment_context(push)).view["activation_uri"])
    again = Device(client, device.key).register(code, "phone 1 again")
    assert (again.status_code, again.get_json()) == (409, {"error": "device_exists"})
    assert Device(client).register(code, "phone 2").status_code == 201
    assert [c.label for c in push.store.list(factor_user)] == ["phone 1", "phone 2"]


def test_registration_must_be_signed_by_the_key_it_carries(client, push, factor_user):
    step = push.begin_enrolment(factor_user, enrolment_context(push))
    code = activation_code(step.view["activation_uri"])
    honest, other = keys.new_private_key(), keys.new_private_key()
    header = {"alg": "ES256", "typ": "JWT", "jwk": keys.public_jwk(honest)}
    claims = {"aud": BASE + "/register", "code": code, "name": "x", "iat": int(time.time()),
              "exp": int(time.time()) + 60, "jti": "j" * 20}
    forged = keys.sign_jwt(other, header, claims)
    response = client.post("/factors/push/v1/register", json={"registration": forged})
    assert response.status_code == 400 and response.get_json() == {"error": "invalid_request"}
    # The code was not spent by the failed attempt.
    assert Device(client, honest).register(code).status_code == 201
    for body in (None, {}, {"registration": 5}, {"registration": "a.b.c"}):
        assert client.post("/factors/push/v1/register", json=body).status_code == 400


def test_two_devices_are_two_credentials(client, push, factor_user):
    enrol_device(client, push, factor_user, "phone 1")
    enrol_device(client, push, factor_user, "phone 2")
    assert [c.label for c in push.store.list(factor_user)] == ["phone 1", "phone 2"]


def test_two_phones_with_one_name_are_told_apart(client, push, factor_user):
    """Both apps call their phone "Pixel 8" (the app sends its host name): the second is stored as
    "Pixel 8 (2)", so the lists, the admins' alerts and the approvals say which phone it was. A name
    freed by a removed device can be taken again."""
    from idp.factors import directory
    from idp.factors.registry import current_registry

    enrol_device(client, push, factor_user, "Pixel 8")
    second = enrol_device(client, push, factor_user, "pixel 8")  # the same name, whatever its case
    assert [c.label for c in push.store.list(factor_user)] == ["Pixel 8", "pixel 8 (2)"]
    assert push.store.find(second.id).public["device_name"] == "pixel 8"  # as the phone sent it
    ctx, step = start_login(push, factor_user)
    second.answer(step.state["challenge_id"], "approve", step.view["number"])
    assert push.verify(factor_user, step.state, {}, ctx).facts["device"] == "pixel 8 (2)"
    first = push.store.list(factor_user)[0]
    current_registry().remove_credential(factor_user, first.id)
    directory.commit()
    enrol_device(client, push, factor_user, "Pixel 8")
    assert [c.label for c in push.store.list(factor_user)] == ["pixel 8 (2)", "Pixel 8"]


# --- device authentication ------------------------------------------------------------------


def test_device_requests_need_a_valid_jwt(client, push, factor_user):
    device = enrol_device(client, push, factor_user)
    assert device.pending().status_code == 200
    now = time.time()
    bad_tokens = [
        "",
        "Bearer",
        "garbage",
        keys.request_token(device.key, audience=BASE + "/elsewhere"),
        keys.request_token(device.key, audience=BASE + "/challenges", now=now - 120),  # expired
        keys.sign_jwt(device.key, {"alg": "ES256", "kid": device.id},
                      {"iss": device.id, "aud": BASE + "/challenges", "iat": int(now), "exp": int(now) + 600,
                       "jti": "x" * 20}),  # lives too long
        keys.sign_jwt(device.key, {"alg": "ES256", "kid": device.id},
                      {"iss": device.id, "aud": BASE + "/challenges", "iat": int(now), "exp": int(now) + 30}),  # no jti
        keys.request_token(keys.new_private_key(), audience=BASE + "/challenges"),  # unknown device
    ]
    # A token claiming this device's id but signed by another key.
    intruder = keys.new_private_key()
    bad_tokens.append(keys.sign_jwt(intruder, {"alg": "ES256", "kid": device.id},
                                    {"iss": device.id, "aud": BASE + "/challenges", "iat": int(now),
                                     "exp": int(now) + 60, "jti": "y" * 20}))
    for token in bad_tokens:
        response = client.get("/factors/push/v1/challenges", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401 and response.get_json() == UNIFORM, token


def test_replayed_request_is_refused(client, push, factor_user):
    device = enrol_device(client, push, factor_user)
    token = device.token("/challenges")
    assert device.pending(token=token).status_code == 200
    replay = device.pending(token=token)
    assert replay.status_code == 401 and replay.get_json() == UNIFORM


# --- login challenges -------------------------------------------------------------------------


def test_the_context_shown_on_the_phone_carries_no_control_characters(client, push, factor_user):
    """The User-Agent is the signing-in browser's, maybe an attacker's: an escape sequence in it
    could redraw the lines the user reads before deciding (the "from" line, say)."""
    device = enrol_device(client, push, factor_user)
    forged = "X\x1b[2K\x1b[G    from 10.0.0.1 (office VPN)\r\n"
    push.begin_challenge(factor_user, context(push, user_agent=forged, client_name="Pay\x1broll"))
    [listed] = device.pending().get_json()["challenges"]
    assert listed["context"]["user_agent"] == "X[2K[G    from 10.0.0.1 (office VPN)"
    assert listed["context"]["application"] == "Payroll"


def test_approval_with_the_right_number_verifies(client, push, factor_user):
    device = enrol_device(client, push, factor_user)
    ctx, step = start_login(push, factor_user)
    number = step.view["number"]
    assert len(number) == 2 and number.isdigit()
    assert isinstance(push.poll(factor_user, step.state, ctx), Pending)
    listed = device.pending().get_json()["challenges"]
    assert len(listed) == 1 and "number" not in listed[0]
    assert listed[0]["context"]["application"] == "Payroll" and listed[0]["context"]["ip"] == "203.0.113.7"
    assert listed[0]["context"]["user_agent"] == "Mozilla/5.0 (test)"
    assert listed[0]["expires_at"] - listed[0]["created_at"] == 60
    response = device.answer(listed[0]["id"], "approve", number)
    assert response.get_json() == {"status": "approved"}
    outcome = push.verify(factor_user, step.state, {}, ctx)
    assert isinstance(outcome, Verified) and outcome.amr == ("swk", "user")
    assert outcome.credential_id == push.store.find(device.id).id


def test_wrong_number_counts_as_a_denial(client, push, factor_user):
    device = enrol_device(client, push, factor_user)
    ctx, step = start_login(push, factor_user)
    wrong = f"{(int(step.view['number']) + 1) % 100:02d}"
    challenge_id = step.state["challenge_id"]
    assert device.answer(challenge_id, "approve", wrong).get_json() == {"status": "denied", "reason": "wrong_number"}
    assert push.verify(factor_user, step.state, {}, ctx) == Denied("wrong_number")
    # ... and is final: the right number afterwards changes nothing (the phone is told what its
    # first answer recorded).
    late = device.answer(challenge_id, "approve", step.view["number"])
    assert late.status_code == 409 and late.get_json() == {
        "error": "challenge_closed", "answered": {"status": "denied", "reason": "wrong_number"}}


def test_deny_and_fraud(client, push, factor_user):
    device = enrol_device(client, push, factor_user)
    ctx, step = start_login(push, factor_user, "t1")
    assert device.answer(step.state["challenge_id"], "deny").get_json()["status"] == "denied"
    assert push.verify(factor_user, step.state, {}, ctx) == Denied("denied")
    ctx, step = start_login(push, factor_user, "t2")
    assert device.answer(step.state["challenge_id"], "fraud").get_json() == {"status": "fraud"}
    assert push.verify(factor_user, step.state, {}, ctx) == Denied("fraud", fraud=True)
    # Push is suspended at once: no longer offered.
    assert not push.is_configured_for(factor_user)


def test_answered_twice_is_accepted_once(client, push, factor_user):
    device = enrol_device(client, push, factor_user)
    _ctx, step = start_login(push, factor_user)
    first = device.answer(step.state["challenge_id"], "approve", step.view["number"])
    second = device.answer(step.state["challenge_id"], "approve", step.view["number"])
    assert first.status_code == 200 and second.status_code == 409


def test_replayed_approval_is_refused(client, push, factor_user):
    device = enrol_device(client, push, factor_user)
    _ctx, step = start_login(push, factor_user)
    cid = step.state["challenge_id"]
    token = device.token(f"/challenges/{cid}/answer", challenge=cid, decision="approve", number=step.view["number"])
    assert device.answer(cid, token=token).status_code == 200
    assert device.answer(cid, token=token).get_json() == UNIFORM


def test_expired_challenge_cannot_be_answered(client, push, factor_user):
    device = enrol_device(client, push, factor_user)
    ctx = context(push)
    ctx = type(ctx)(**{**ctx.__dict__, "now": ctx.now - timedelta(seconds=61)})
    step = push.begin_challenge(factor_user, ctx)
    response = device.answer(step.state["challenge_id"], "approve", step.view["number"])
    assert response.status_code == 409
    now_ctx = context(push)
    assert push.verify(factor_user, step.state, {}, now_ctx) == Rejected("expired", counts_as_failure=False)


def test_another_users_challenge_looks_missing(client, push, factor_user):
    enrol_device(client, push, factor_user)
    bob = make_user("bob@example.com")
    bobs_device = enrol_device(client, push, bob)
    _ctx, step = start_login(push, factor_user)
    response = bobs_device.answer(step.state["challenge_id"], "approve", step.view["number"])
    assert response.status_code == 404 and response.get_json() == {"error": "unknown_challenge"}
    assert bobs_device.pending().get_json()["challenges"] == []
    missing = bobs_device.answer("no-such-challenge", "approve", "00")
    assert missing.status_code == 404 and missing.get_json() == response.get_json()


def test_answer_claims_must_match_the_url(client, push, factor_user):
    device = enrol_device(client, push, factor_user)
    _ctx, step = start_login(push, factor_user)
    cid = step.state["challenge_id"]
    assert device.answer(cid, "approve").status_code == 400  # no number
    assert device.answer(cid, "maybe", "00").status_code == 400
    token = device.token(f"/challenges/{cid}/answer", challenge="other", decision="deny")
    assert device.answer(cid, token=token).status_code == 400
    # A token for another challenge's URL does not work here.
    other = device.token("/challenges/other/answer", challenge=cid, decision="deny")
    assert device.answer(cid, token=other).get_json() == UNIFORM


def test_state_of_another_login_or_user_is_rejected(client, push, factor_user):
    enrol_device(client, push, factor_user)
    _ctx, step = start_login(push, factor_user, "txn-A")
    assert push.verify(factor_user, step.state, {}, context(push, transaction_id="txn-B")) == Rejected("invalid_state")
    bob = make_user("bob@example.com")
    assert push.verify(bob, step.state, {}, context(push, transaction_id="txn-A")) == Rejected("invalid_state")
    for garbage in ({}, {"challenge_id": 5}, {"challenge_id": "nope"}, None):
        assert isinstance(push.verify(factor_user, garbage, {}, context(push)), Rejected)


def test_revoked_device_gets_the_uniform_error_and_its_challenges_close(client, push, factor_user):
    from idp.factors import directory
    from idp.factors.registry import current_registry

    device = enrol_device(client, push, factor_user)
    ctx, step = start_login(push, factor_user)
    credential = push.store.find(device.id)
    current_registry().remove_credential(factor_user, credential.id)
    directory.commit()
    assert device.pending().get_json() == UNIFORM
    assert device.answer(step.state["challenge_id"], "approve", step.view["number"]).get_json() == UNIFORM
    assert isinstance(push.verify(factor_user, step.state, {}, ctx), Rejected)


def test_a_long_poll_of_a_device_revoked_meanwhile_gets_the_uniform_error_not_the_next_login(
        client, push, factor_user):
    """A long-poll is authenticated once and lasts up to 20 s: it re-reads its device on every pass,
    so a phone revoked while it waits is not handed the user's next login (application, browser
    address, user agent) but the uniform 401 of section 7."""
    import threading

    from idp.db import db
    from idp.factors import directory
    from idp.factors.registry import current_registry

    revoked, kept = enrol_device(client, push, factor_user), enrol_device(client, push, factor_user, "Other phone")
    token = revoked.token("/challenges")
    answers = []
    waiting = threading.Thread(target=lambda: answers.append(revoked.pending(wait=10, token=token)), daemon=True)
    waiting.start()
    time.sleep(1.0)  # it is waiting by now
    current_registry().remove_credential(factor_user, push.store.find(revoked.id).id)
    directory.commit()
    start_login(push, factor_user)  # (wakes the waiting long-poll)
    db.session.rollback()  # (this test's app context is shared by its requests: leave SQLite's lock)
    waiting.join(15)
    assert answers and (answers[0].status_code, answers[0].get_json()) == (401, UNIFORM)
    assert len(kept.pending().get_json()["challenges"]) == 1  # the other phone still sees it


def test_push_fatigue_limit(client, push, factor_user):
    enrol_device(client, push, factor_user)
    for i in range(push.push_settings.max_challenges):
        assert "number" in start_login(push, factor_user, f"t{i}")[1].view
    ctx, step = start_login(push, factor_user, "one-too-many")
    assert step.view == {"refused": "too_many_requests"}
    assert push.verify(factor_user, step.state, {}, ctx) == Rejected("too_many_requests", counts_as_failure=False)


def test_a_request_sent_again_after_it_expired_counts_towards_the_fatigue_limit(client, push, factor_user):
    """The limit caps the requests that reach the phone. One that lapsed unanswered and is sent
    again (the login page starts a new one) is another prompt on the phone, so it counts: were
    lapsed requests forgotten, whoever holds the password could prompt without end by letting
    each one expire."""
    from dataclasses import replace

    enrol_device(client, push, factor_user)
    ctx = context(push, transaction_id="one-login")
    for _ in range(push.push_settings.max_challenges):
        step = push.begin_challenge(factor_user, ctx)
        assert "number" in step.view
        ctx = replace(ctx, now=ctx.now + timedelta(seconds=push.push_settings.challenge_ttl + 1))
        assert push.verify(factor_user, step.state, {}, ctx) == Rejected("expired", counts_as_failure=False)
    assert push.begin_challenge(factor_user, ctx).view == {"refused": "too_many_requests"}


def test_a_new_challenge_cancels_the_previous_one_of_the_same_login(client, push, factor_user):
    device = enrol_device(client, push, factor_user)
    _ctx, first = start_login(push, factor_user)
    _ctx, second = start_login(push, factor_user)
    ids = [c["id"] for c in device.pending().get_json()["challenges"]]
    assert ids == [second.state["challenge_id"]]
    assert device.answer(first.state["challenge_id"], "approve", first.view["number"]).status_code == 409


def test_long_poll_returns_at_once_when_a_challenge_waits_and_times_out_otherwise(client, push, factor_user):
    device = enrol_device(client, push, factor_user)
    started = time.monotonic()
    assert device.pending(wait=1).get_json()["challenges"] == []
    assert 0.9 <= time.monotonic() - started < 3
    start_login(push, factor_user)
    started = time.monotonic()
    assert len(device.pending(wait=20).get_json()["challenges"]) == 1
    assert time.monotonic() - started < 1


def test_no_new_request_in_a_login_after_a_denial(client, push, factor_user):
    device = enrol_device(client, push, factor_user)
    ctx, step = start_login(push, factor_user, "txn-D")
    device.answer(step.state["challenge_id"], "deny")
    again = push.begin_challenge(factor_user, ctx)
    assert again.view == {"refused": "denied"}
    assert device.pending().get_json()["challenges"] == []
    assert push.verify(factor_user, again.state, {}, ctx) == Rejected("denied", counts_as_failure=False)
    # Another login is not affected.
    assert "number" in start_login(push, factor_user, "txn-E")[1].view


# --- malformed numbers and structures from a device -------------------------------------------


def test_a_wait_that_is_not_a_number_does_not_hold_the_request(client, push, factor_user):
    """float("nan") parses, and a NaN deadline is never reached: the request must end at once."""
    import threading

    device = enrol_device(client, push, factor_user)
    answers = []
    token = device.token("/challenges")
    thread = threading.Thread(target=lambda: answers.append(client.get(
        "/factors/push/v1/challenges?wait=nan", headers={"Authorization": f"Bearer {token}"})), daemon=True)
    thread.start()
    thread.join(15)  # far beyond the answer's real time, short of never
    assert answers and answers[0].status_code == 200 and answers[0].get_json()["challenges"] == []


def test_one_device_holds_one_long_poll_at_a_time(client, push, factor_user):
    """Each wait holds a worker thread: a device's second wait, while its first is under way, is
    answered at once (idp.factors.waiting), or one device could hold every thread."""
    import threading

    from idp.db import db

    device = enrol_device(client, push, factor_user)
    first_token, second_token = device.token("/challenges"), device.token("/challenges")
    answers = []
    first = threading.Thread(target=lambda: answers.append(client.get(
        "/factors/push/v1/challenges?wait=5", headers={"Authorization": f"Bearer {first_token}"})), daemon=True)
    first.start()
    time.sleep(1.0)  # the first is waiting by now
    second = client.get("/factors/push/v1/challenges?wait=5", headers={"Authorization": f"Bearer {second_token}"})
    first_still_waiting = first.is_alive()
    db.session.rollback()  # (this test's app context is shared by its requests: leave SQLite's lock)
    first.join(15)
    assert second.status_code == 200 and second.get_json()["challenges"] == []
    assert first_still_waiting and answers and answers[0].status_code == 200


def test_device_tokens_whose_times_are_not_numbers_are_refused(client, push, factor_user):
    """JSON parsers accept NaN, which compares false to everything: a token with iat NaN would
    skip the 60-second lifetime check, exp NaN was a 500."""
    import secrets

    device = enrol_device(client, push, factor_user)
    now = time.time()
    for iat, exp in ((float("nan"), now + 10 * 365 * 86400), (now, float("nan")), (float("nan"), 1e15),
                     (now, float("inf"))):
        token = keys.sign_jwt(device.key, {"alg": "ES256", "typ": "JWT", "kid": device.id},
                              {"iss": device.id, "aud": BASE + "/challenges", "iat": iat, "exp": exp,
                               "jti": secrets.token_urlsafe(24)})
        response = device.pending(token=token)
        assert (response.status_code, response.get_json()) == (401, UNIFORM), (iat, exp)


def test_times_too_big_for_a_float_are_a_bad_token_not_a_500(client, push, factor_user):
    """`"exp": 1000...0` (400 digits) is valid JSON and parses to an int that no float holds:
    math.isfinite raised OverflowError. Unauthenticated on /register (the JWS carries its own key)."""
    import secrets

    huge = 10 ** 400
    device = enrol_device(client, push, factor_user)
    now = int(time.time())
    for iat, exp in ((now, huge), (huge, huge + 10), (-huge, now + 10)):
        token = keys.sign_jwt(device.key, {"alg": "ES256", "typ": "JWT", "kid": device.id},
                              {"iss": device.id, "aud": BASE + "/challenges", "iat": iat, "exp": exp,
                               "jti": secrets.token_urlsafe(24)})
        response = device.pending(token=token)
        assert (response.status_code, response.get_json()) == (401, UNIFORM), (iat, exp)
        newcomer = keys.new_private_key()
        code = activation_code(push.begin_enrolment(factor_user, enrolment_context(push)).view["activation_uri"])
        registration = keys.sign_jwt(newcomer, {"alg": "ES256", "typ": "JWT", "jwk": keys.public_jwk(newcomer)},
                                     {"aud": BASE + "/register", "iat": iat, "exp": exp, "code": code,
                                      "name": "phone", "jti": secrets.token_urlsafe(24)})
        response = client.post("/factors/push/v1/register", json={"registration": registration})
        assert (response.status_code, response.get_json()) == (400, {"error": "invalid_request"}), (iat, exp)


def test_a_body_nested_too_deep_is_an_invalid_request_not_a_500(client, push):
    """200 KB of brackets (under MAX_CONTENT_LENGTH): the JSON decoder raises RecursionError, which
    request.get_json(silent=True) does not swallow (idp.factors.bodies)."""
    body = "[" * 100000 + "]" * 100000
    response = client.post("/factors/push/v1/register", data=body, content_type="application/json")
    assert (response.status_code, response.get_json()) == (400, {"error": "invalid_request"})


def test_a_registration_nested_too_deep_is_refused_not_a_500(client, push):
    import base64
    import json

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    key = keys.new_private_key()
    header = {"alg": "ES256", "typ": "JWT", "jwk": keys.public_jwk(key)}
    claims = '{"aud":"' + BASE + '/register","nested":' + "[" * 2000 + "]" * 2000 + "}"
    signing_input = b64(json.dumps(header).encode()) + "." + b64(claims.encode())
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    token = signing_input + "." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    response = client.post("/factors/push/v1/register", json={"registration": token})
    assert response.status_code == 400


@pytest.mark.postgres
def test_parallel_logins_do_not_pass_the_fatigue_limit_together(pg_app):
    """The checks and the new challenge run one request per user at a time (the user's row is locked)."""
    import threading

    from idp.db import db
    from push_testkit import push_factor

    push = push_factor()
    user = make_user("fatigue@example.com")
    enrol_device(pg_app.test_client(), push, user)
    db.session.commit()
    racers = push.push_settings.max_challenges * 3
    barrier, steps, failures = threading.Barrier(racers), [], []

    def worker(i):
        with pg_app.app_context():
            barrier.wait()
            try:
                steps.append(push.begin_challenge(user, context(push, transaction_id=f"txn-{i}")))
            except Exception as exc:  # said as what it is (a server out of connections), not as a missing step
                failures.append(repr(exc))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(racers)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not failures, failures
    assert len(steps) == racers
    assert sum("number" in s.view for s in steps) == push.push_settings.max_challenges


# --- resource limits --------------------------------------------------------------------------


def test_registrations_beyond_max_devices_are_refused_and_leave_the_code_unspent(client, push, factor_user,
                                                                                  monkeypatch):
    from dataclasses import replace

    from idp.factors import directory
    from idp.factors.registry import current_registry

    monkeypatch.setattr(push, "push_settings", replace(push.push_settings, max_devices=2))
    enrol_device(client, push, factor_user, "one")
    enrol_device(client, push, factor_user, "two")
    code = activation_code(push.begin_enrolment(factor_user, enrolment_context(push)).view["activation_uri"])
    response = Device(client).register(code, "three")
    assert (response.status_code, response.get_json()) == (409, {"error": "too_many_devices"})
    assert push.store.count(factor_user) == 2
    current_registry().remove_credential(factor_user, push.store.list(factor_user)[0].id)
    directory.commit()
    assert Device(client).register(code, "three").status_code == 201  # the code was not spent


def test_a_device_beyond_its_request_rate_is_told_to_wait_and_writes_nothing(client, push, factor_user,
                                                                              monkeypatch):
    from dataclasses import replace

    from sqlalchemy import func, select

    from idp.db import db
    from idp.models import FactorChallenge

    busy, calm = enrol_device(client, push, factor_user), enrol_device(client, push, factor_user, "Calm phone")
    monkeypatch.setattr(push, "push_settings", replace(push.push_settings, device_requests="3 per minute"))
    assert [busy.pending().status_code for _ in range(3)] == [200] * 3
    rows = db.session.scalar(select(func.count()).select_from(FactorChallenge))
    throttled = busy.pending()
    assert throttled.status_code == 429 and throttled.get_json()["error"] == "too_many_attempts"
    assert 0 < throttled.get_json()["retry_after"] <= 60 and throttled.headers["Retry-After"]
    assert db.session.scalar(select(func.count()).select_from(FactorChallenge)) == rows  # no replay-guard row
    _ctx, step = start_login(push, factor_user)
    assert busy.answer(step.state["challenge_id"], "deny").status_code == 429
    assert calm.pending().status_code == 200  # per device: the user's other phone is not held back
    # Only a device whose signature verifies is counted: anyone else still gets the uniform 401.
    stranger = Device(client)
    assert stranger.pending().get_json() == UNIFORM


@pytest.mark.postgres
def test_racing_registrations_do_not_pass_max_devices_together(pg_app, monkeypatch):
    """Each registration counts the user's devices under the user's lock: of several racing with
    their own codes for the last free place, one registers."""
    from dataclasses import replace

    from fixtures.race import at_once
    from idp.db import db
    from push_testkit import push_factor

    push = push_factor()
    monkeypatch.setattr(push, "push_settings", replace(push.push_settings, max_devices=2))
    user = make_user("max-devices@example.com")
    enrol_device(pg_app.test_client(), push, user)
    codes = [activation_code(push.begin_enrolment(user, enrolment_context(push)).view["activation_uri"])
             for _ in range(4)]
    db.session.commit()

    def register(i):
        with pg_app.app_context():
            try:
                return Device(pg_app.test_client()).register(codes[i], f"phone {i}").status_code
            finally:
                db.session.remove()

    assert sorted(at_once(len(codes), register)) == [201, 409, 409, 409]
    assert push.store.count(user) == 2


def test_a_woken_long_poll_looks_again_for_a_request_its_login_records_a_moment_later(client, push, factor_user,
                                                                                       monkeypatch):
    """A login switching back to push from another method stores the new request and wakes the
    phones a moment before it records push as its method: the woken long-poll lists nothing yet
    (its login does not wait on push), and must look again shortly, not at the fallback interval
    (3 s with Redis; 30 here)."""
    import threading

    from sqlalchemy import update

    from idp.db import db
    from idp.factors.testing import waiting_login
    from idp.models import LoginTransaction

    device = enrol_device(client, push, factor_user)
    monkeypatch.setattr(push.waker(), "fallback_interval", 30.0)
    waiting_login("txn-back-to-push", "totp")  # the login shows its TOTP page
    db.session.commit()
    answers = []
    waiting = threading.Thread(target=lambda: answers.append(device.pending(wait=20)), daemon=True)
    waiting.start()
    time.sleep(1.0)  # it is waiting by now
    step = push.begin_challenge(factor_user, context(push, transaction_id="txn-back-to-push"))  # stored, woken
    time.sleep(0.1)  # the woken long-poll has looked by now, and found nothing
    db.session.execute(update(LoginTransaction).where(LoginTransaction.id == "txn-back-to-push")
                       .values(factor_name="push"))  # the login records its new method
    db.session.commit()
    waiting.join(8)  # (looking again only at its 20 s deadline, it would still be waiting)
    assert answers and [c["id"] for c in answers[0].get_json()["challenges"]] == [step.state["challenge_id"]]
