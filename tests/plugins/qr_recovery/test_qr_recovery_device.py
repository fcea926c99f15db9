"""The device endpoints: redeem a recovery QR code with a new device key, and personal recovery by
password plus an e-mailed code. Both end with the new device's own push credential beside the old."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from qr_testkit import NewDevice, enable
from sqlalchemy import select

from idp.db import db, utcnow
from idp.models import AuditEvent

PASSWORD = "correct horse battery staple"


def events(name):
    return db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)).all()


def old_device(push, user, mailbox=None):
    """A phone the user registered before the test (committed; its "new device" notice, if a
    `mailbox` is given, delivered and forgotten)."""
    from authenticator.push import keys
    from fixtures.threads import finished

    device = push.register_device(user, keys.public_jwk(keys.new_private_key()), "Old phone", utcnow(),
                                  via="activation")
    db.session.commit()
    finished("security-notices")
    if mailbox is not None:
        mailbox.clear()
    return device


def notices(mailbox) -> list[str]:
    """The bodies of the mail sent so far, once the notices in flight have left. (The test's own
    transaction ends first: on SQLite it holds the write lock the notice's read would wait for.)"""
    from fixtures.threads import finished

    db.session.rollback()
    finished("security-notices")
    return [m.body for m in mailbox]


def test_redeem_registers_the_new_device_beside_the_old(client, push, qr, factor_user, mailbox):
    old = old_device(push, factor_user, mailbox)
    issued = qr.issue(factor_user, actor="admin@example.com")
    device = NewDevice(client)
    response = device.redeem(issued.secret, user=factor_user.username, name="Pixel 9")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body == {"device_id": device.id, "user": factor_user.username, "issuer": "http://localhost:5000",
                    "endpoint": "http://localhost:5000/factors/push/v1"}
    devices = {c.lookup_key: c for c in push.store.list(factor_user)}
    assert set(devices) == {old.lookup_key, device.id}
    assert devices[device.id].label == "Pixel 9"
    # One event for the new device (the old phone's came first), one for the code it spent.
    registered = events("push.device_registered")
    assert [e.details["via"] for e in registered] == ["activation", "recovery_qr"]
    assert registered[1].details == {"credential_id": devices[device.id].id, "device_name": "Pixel 9",
                                     "via": "recovery_qr", "recovery_qr_id": issued.credential.id}
    assert not events("recovery_qr.device_added")
    assert [e.details["credential_id"] for e in events("recovery_qr.used")] == [issued.credential.id]
    added = [body for body in notices(mailbox) if body.startswith("A new device was added")]
    assert added == ["A new device was added to your account. Whoever added it named it “Pixel 9”.\n\nIf this "
                     "was not you, tell your administrator at once, whatever that name says.\n\n"
                     "Your account's security page (sign-in methods, where you are signed in, recent activity):\n\n"
                     "    http://localhost:5000/account/security"]
    assert not qr.is_configured_for(factor_user)


def test_a_disabled_users_code_registers_no_device_and_stays_unspent(client, push, qr, factor_user):
    """A code issued before the account was disabled was redeemed after it (201, a new device)."""
    from sqlalchemy import update

    from idp.models import User

    issued = qr.issue(factor_user, actor="cli")
    db.session.execute(update(User).where(User.id == factor_user.id).values(disabled=True))
    db.session.commit()
    response = NewDevice(client).redeem(issued.secret, user=factor_user.username)
    assert response.status_code == 403 and response.get_json() == {"error": "account_disabled"}
    assert push.store.list(factor_user) == [] and qr.is_configured_for(factor_user)


def test_redeem_without_the_user_claim_still_works(client, push, qr, factor_user):
    issued = qr.issue(factor_user, actor="cli")
    assert NewDevice(client).redeem(issued.secret).status_code == 201


def test_the_user_claim_never_redirects_a_code(client, push, qr, factor_user):
    """docs/recovery.md 1.3: a valid code registers the device for its user or nobody: `user`
    naming another account refuses it (unspent), naming no account (an address changed since the
    code was issued) leaves it to its user."""
    from idp.factors import testing

    bob = testing.make_user("bob@example.com")
    issued = qr.issue(factor_user, actor="cli")
    other = NewDevice(client).redeem(issued.secret, user=bob.username)
    assert (other.status_code, other.get_json()) == (400, {"error": "invalid_recovery_code"})
    assert push.store.count(bob) == 0 and qr.is_configured_for(factor_user)
    stale = NewDevice(client).redeem(issued.secret, user="renamed-since@example.com")
    assert stale.status_code == 201 and stale.get_json()["user"] == factor_user.username
    assert push.store.count(factor_user) == 1 and push.store.count(bob) == 0


def test_reused_expired_revoked_and_unknown_codes_are_refused(client, push, qr, factor_user):
    used = qr.issue(factor_user, actor="cli")
    assert NewDevice(client).redeem(used.secret, user=factor_user.username).status_code == 201
    again = NewDevice(client).redeem(used.secret, user=factor_user.username)
    assert (again.status_code, again.get_json()) == (410, {"error": "recovery_code_used"})

    expired = qr.issue(factor_user, actor="cli", ttl=60, now=utcnow() - timedelta(minutes=2))
    answer = NewDevice(client).redeem(expired.secret, user=factor_user.username)
    assert (answer.status_code, answer.get_json()) == (410, {"error": "recovery_code_expired"})
    qr.issue(factor_user, actor="cli")  # tidies the expired code away: still expired, not "revoked by an admin"
    answer = NewDevice(client).redeem(expired.secret, user=factor_user.username)
    assert (answer.status_code, answer.get_json()) == (410, {"error": "recovery_code_expired"})

    revoked = qr.issue(factor_user, actor="cli")
    qr.revoke(factor_user, revoked.credential.id, actor="admin@example.com")
    answer = NewDevice(client).redeem(revoked.secret, user=factor_user.username)
    assert (answer.status_code, answer.get_json()) == (410, {"error": "recovery_code_revoked"})

    answer = NewDevice(client).redeem("00000-00000-00000-00000-00000", user=factor_user.username)
    assert (answer.status_code, answer.get_json()) == (400, {"error": "invalid_recovery_code"})
    assert push.store.count(factor_user) == 1
    # A real code presented again (used, expired, revoked) may have leaked: each refusal is audited.
    assert [e.details["status"] for e in events("recovery_qr.redeem_refused")] == [
        "used", "expired", "expired", "revoked"]


def test_malformed_and_forged_requests(client, push, qr, factor_user):
    issued = qr.issue(factor_user, actor="cli")
    device = NewDevice(client)
    for body in (None, {}, {"request": ""}, {"request": "a.b.c"}, {"request": 5}, ["x"]):
        response = client.post("/factors/qr_recovery/redeem", json=body)
        assert response.status_code == 400, body
    # Signed by another key than the one in the header.
    from authenticator.push import keys

    other = keys.new_private_key()
    header = {"alg": "ES256", "typ": "JWT", "jwk": keys.public_jwk(device.key)}
    forged = keys.sign_jwt(other, header, {"aud": device.base + "/redeem", **keys._times(None),
                                           "secret": issued.secret, "name": "x"})
    assert device.redeem(issued.secret, token=forged).status_code == 400
    # For another endpoint, or too long-lived.
    assert device.redeem(issued.secret, token=device.token("/personal/finish", secret=issued.secret,
                                                           name="x")).status_code == 400
    assert device.redeem(issued.secret, name="").status_code == 400
    assert device.redeem(issued.secret, name="\x01\x02").status_code == 400  # control characters alone: no name
    assert qr.is_configured_for(factor_user)  # nothing spent
    assert push.store.count(factor_user) == 0


def test_an_already_registered_key_does_not_spend_the_code(client, push, qr, factor_user):
    device = NewDevice(client)
    first = qr.issue(factor_user, actor="cli")
    assert device.redeem(first.secret).status_code == 201
    second = qr.issue(factor_user, actor="cli")
    assert device.redeem(second.secret).get_json() == {"error": "device_exists"}
    assert qr.is_configured_for(factor_user)


def test_a_redemption_sent_again_after_its_answer_was_lost_is_told_the_key_is_registered(client, push, qr,
                                                                                         factor_user):
    """The phone never saw its 201 and sends the redemption again (signed afresh): its key is a
    device, which is what it must learn, not that the code it spent is "used"."""
    device = NewDevice(client)
    issued = qr.issue(factor_user, actor="cli")
    assert device.redeem(issued.secret, user=factor_user.username).status_code == 201
    again = device.redeem(issued.secret, user=factor_user.username)
    assert (again.status_code, again.get_json()) == (409, {"error": "device_exists"})
    # Another key with the spent code still learns it is used.
    assert NewDevice(client).redeem(issued.secret, user=factor_user.username).get_json() == \
        {"error": "recovery_code_used"}


def test_a_key_registered_meanwhile_does_not_spend_the_code(client, push, qr, factor_user, monkeypatch):
    """The key passes the check before spending (registered by a racing request a moment later):
    the registration's conflict rolls the code's use back with it."""
    device = NewDevice(client)
    assert device.redeem(qr.issue(factor_user, actor="cli").secret).status_code == 201
    second = qr.issue(factor_user, actor="cli")
    monkeypatch.setattr(push.store, "find", lambda *_args, **_kwargs: None)  # the race window
    refused = device.redeem(second.secret)
    assert (refused.status_code, refused.get_json()) == (409, {"error": "device_exists"})
    monkeypatch.undo()
    db.session.expire_all()
    assert not events("recovery_qr.used")[1:], "the refused redemption left an audit event"
    assert NewDevice(client).redeem(second.secret).status_code == 201  # still usable
    assert push.store.count(factor_user) == 2


# --- personal accounts: password + e-mailed code ---------------------------------------------


def _personal_user(factor_app, email: str):
    from idp.factors import testing
    from idp.models import User

    ref = testing.make_user(email)
    row = db.session.get(User, ref.id)
    row.password_hash = factor_app.extensions["idp.passwords"].hash(PASSWORD)
    db.session.commit()
    return ref


@pytest.fixture
def alice(factor_app, push, mailbox):
    """A personal account that signs in with push on her old phone (what recovery restores)."""
    ref = _personal_user(factor_app, "alice.personal@example.com")
    old_device(push, ref, mailbox)
    return ref


def code_in(message) -> str:
    import re

    return re.search(r"\b(\d{6})\b", message.body).group(1)


def sent_code(mailbox) -> str:
    """The last e-mailed recovery code, once the notices in flight (a recovery QR code issued, a
    device added: idp.security_notices) have joined it in the mailbox."""
    notices(mailbox)
    return code_in([m for m in mailbox if m.subject == "Your recovery code"][-1])


def test_bodies_nested_too_deep_are_invalid_requests_not_a_500(client, push, qr, alice):
    """The decoder's RecursionError escaped request.get_json(silent=True) (idp.factors.bodies)."""
    body = "[" * 100000 + "]" * 100000
    for path in ("/redeem", "/personal/start", "/personal/finish"):
        response = client.post("/factors/qr_recovery" + path, data=body, content_type="application/json")
        assert (response.status_code, response.get_json()) == (400, {"error": "invalid_request"}), path


def test_personal_recovery_end_to_end(client, push, qr, alice, mailbox):
    device = NewDevice(client)
    started = device.start(alice.email, PASSWORD)
    assert started.status_code == 200, started.get_json()
    body = started.get_json()
    assert body["sent_to"] == "a***@example.com" and body["recovery_id"]
    assert len(mailbox) == 1 and mailbox[0].to == alice.email
    code = sent_code(mailbox)
    finished = device.finish(body["recovery_id"], code, name="Restored phone")
    assert finished.status_code == 201, finished.get_json()
    assert finished.get_json()["device_id"] == device.id
    assert sorted(c.label for c in push.store.list(alice)) == ["Old phone", "Restored phone"]
    assert device.finish(body["recovery_id"], code).status_code in (409, 410)  # spent
    assert NewDevice(client).finish(body["recovery_id"], code).get_json()["error"] == "code_expired"
    assert [e.details["via"] for e in events("push.device_registered")] == ["activation", "recover"]
    assert not events("recover.device_added")  # one event for one device


def test_a_personal_recovery_started_before_a_new_password_does_not_finish(client, push, qr, alice, mailbox):
    """Started with the old password, finished after an admin set a new one: it registered a
    device (201). A sign-out everywhere expires the user's factor challenges, this one too."""
    from idp import users
    from idp.models import User

    device = NewDevice(client)
    started = device.start(alice.email, PASSWORD).get_json()
    code = sent_code(mailbox)  # (the new password's notice follows it: idp.security_notices)
    users.set_password(db.session.get(User, alice.id), "a brand new passphrase", actor="cli")
    db.session.commit()
    refused = device.finish(started["recovery_id"], code)
    assert refused.status_code == 410 and refused.get_json()["error"] == "code_expired"
    assert sorted(c.label for c in push.store.list(alice)) == ["Old phone"]


def test_a_personal_code_sent_before_the_last_push_device_went_adds_none(client, push, qr, alice, mailbox):
    """An admin's reset after a lost phone, between the code's mail and its use: recovery restores
    push to an account that has it, never gives it to one on the password and mailbox alone."""
    from idp.factors.registry import current_registry

    device = NewDevice(client)
    started = device.start(alice.email, PASSWORD).get_json()
    code = sent_code(mailbox)
    for credential in push.store.list(alice):
        current_registry().remove_credential(alice, credential.id)
    db.session.commit()
    refused = device.finish(started["recovery_id"], code)
    assert (refused.status_code, refused.get_json()) == (403, {"error": "no_push_device"})
    assert push.store.list(alice) == []
    assert device.finish(started["recovery_id"], code).get_json()["error"] == "code_expired"


def test_no_recovery_adds_push_where_the_organization_no_longer_takes_it(client, push, qr, alice, mailbox):
    """A TOTP-only organization: the admin's code still works at a login (into enrolment of an
    allowed factor), but registers no phone; nor does the password and an e-mailed code."""
    from sqlalchemy import update

    from idp.models import Organization

    device = NewDevice(client)
    started = device.start(alice.email, PASSWORD).get_json()
    code = sent_code(mailbox)
    issued = qr.issue(alice, actor="cli")
    db.session.execute(update(Organization).where(Organization.id == alice.org_id).values(allowed_factors=["totp"]))
    db.session.commit()
    for refused in (device.redeem(issued.secret), device.finish(started["recovery_id"], code),
                    NewDevice(client).start(alice.email, PASSWORD)):
        assert (refused.status_code, refused.get_json()) == (403, {"error": "push_not_allowed"})
    assert [c.label for c in push.store.list(alice)] == ["Old phone"]
    assert qr.is_configured_for(alice), "the code is not spent"


@pytest.mark.parametrize("way", ["redeem", "personal"])
def test_an_account_disabled_after_the_code_registers_no_device(client, push, qr, alice, mailbox, way):
    """Disabled without the sign-out that ends its codes (the account's row alone, as a disable
    racing the request sees it): 403 account_disabled, nothing spent, never a 500."""
    from sqlalchemy import update

    from idp.models import User

    device = NewDevice(client)
    if way == "personal":
        started = device.start(alice.email, PASSWORD).get_json()
        code = sent_code(mailbox)
    else:
        issued = qr.issue(alice, actor="cli")
    db.session.execute(update(User).where(User.id == alice.id).values(disabled=True))
    db.session.commit()
    refused = device.finish(started["recovery_id"], code) if way == "personal" else device.redeem(issued.secret)
    assert (refused.status_code, refused.get_json()) == (403, {"error": "account_disabled"})
    assert [c.label for c in push.store.list(alice)] == ["Old phone"]


def test_a_key_registered_meanwhile_does_not_spend_the_personal_code(client, push, qr, alice, mailbox,
                                                                     monkeypatch):
    device = NewDevice(client)
    assert device.redeem(qr.issue(alice, actor="cli").secret).status_code == 201  # the key is a device
    started = device.start(alice.email, PASSWORD).get_json()
    code = sent_code(mailbox)
    monkeypatch.setattr(push.store, "find", lambda *_args, **_kwargs: None)  # the race window
    refused = device.finish(started["recovery_id"], code)
    assert (refused.status_code, refused.get_json()) == (409, {"error": "device_exists"})
    monkeypatch.undo()
    finished = NewDevice(client).finish(started["recovery_id"], code, name="Restored phone")
    assert finished.status_code == 201, finished.get_json()



def test_personal_recovery_does_not_give_push_to_an_account_without_it(client, push, qr, factor_app, mailbox):
    """Password and mailbox alone must not mint a second factor: recovery adds a new phone beside
    an old one; an account without push gets it from an admin's recovery QR code."""
    bob = _personal_user(factor_app, "bob.personal@example.com")
    refused = NewDevice(client).start(bob.email, PASSWORD)
    assert (refused.status_code, refused.get_json()) == (403, {"error": "no_push_device"})
    assert not mailbox and push.store.count(bob) == 0


def _set_self_recovery(user, allowed: bool) -> None:
    from idp.models import Organization, User

    db.session.get(Organization, db.session.get(User, user.id).org_id).self_push_recovery = allowed
    db.session.commit()


def test_an_organization_can_keep_push_recovery_to_its_qr_codes(client, push, qr, alice, mailbox):
    """Work accounts: the organization's admins switch self-service recovery off; a right password
    then learns that, a wrong one learns nothing more than before, and no code is sent."""
    _set_self_recovery(alice, False)
    refused = NewDevice(client).start(alice.email, PASSWORD)
    assert (refused.status_code, refused.get_json()) == (403, {"error": "personal_recovery_disabled"})
    wrong = NewDevice(client).start(alice.email, "not the password")
    assert (wrong.status_code, wrong.get_json()) == (401, {"error": "invalid_credentials"})
    assert not mailbox and not events("recover.code_sent")
    assert NewDevice(client).redeem(qr.issue(alice, actor="cli").secret).status_code == 201  # the QR code works


def test_a_code_sent_before_the_switch_is_turned_off_stops_working(client, push, qr, alice, mailbox):
    device = NewDevice(client)
    started = device.start(alice.email, PASSWORD).get_json()
    _set_self_recovery(alice, False)
    refused = device.finish(started["recovery_id"], sent_code(mailbox))
    assert (refused.status_code, refused.get_json()) == (403, {"error": "personal_recovery_disabled"})
    _set_self_recovery(alice, True)
    assert device.finish(started["recovery_id"], sent_code(mailbox)).get_json() == {"error": "code_expired"}
    assert push.store.count(alice) == 1


def test_no_phone_is_registered_by_password_while_push_is_suspended(client, push, qr, alice, mailbox):
    """A login reported as not the user's suspends push: whoever else holds the password must not
    register their own phone on its strength, before the code is sent or after."""
    from idp.factors import directory

    device = NewDevice(client)
    started = device.start(alice.email, PASSWORD).get_json()
    from idp.db import utcnow

    directory.suspend_push(alice.id, utcnow())
    directory.commit()
    refused = device.finish(started["recovery_id"], sent_code(mailbox))
    assert (refused.status_code, refused.get_json()) == (403, {"error": "push_suspended"})
    again = NewDevice(client).start(alice.email, PASSWORD)
    assert (again.status_code, again.get_json()) == (403, {"error": "push_suspended"})
    assert len(mailbox) == 1 and push.store.count(alice) == 1


def test_personal_start_gives_one_answer_for_unknown_account_and_wrong_password(client, qr, alice, mailbox):
    device = NewDevice(client)
    wrong = device.start(alice.email, "not the password")
    unknown = device.start("nobody@example.com", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json() == unknown.get_json() == {"error": "invalid_credentials"}
    assert device.start(alice.email, "").status_code == 400
    assert client.post("/factors/qr_recovery/personal/start", data="x").status_code == 400
    assert not mailbox
    # Both recorded alike (the same writes: the same time), the unknown address as nobody's.
    refusals = sorted(events("recover.password_failed"), key=lambda event: event.subject_id is None)
    assert [(event.subject_id, event.details["reason"]) for event in refusals] == [
        (alice.id, "wrong_password"), (None, "unknown_account")]


def test_personal_start_locks_out_after_repeated_failures(client, qr, alice, mailbox):
    """The login form's own lockout (ratelimit.password_*: 10 failures), on the same counter: a
    password cannot be tried here once the login form refuses it, nor there once refused here."""
    from idp import lockout

    device = NewDevice(client)
    statuses = [device.start(alice.email, f"wrong {i}").status_code for i in range(11)]
    assert statuses[:10] == [401] * 10 and statuses[10] == 429
    locked = device.start(alice.email, PASSWORD)  # even the right password waits
    assert locked.status_code == 429 and locked.get_json()["retry_after"] > 0
    assert int(locked.headers["Retry-After"]) > 0
    assert not mailbox
    assert lockout.check([lockout.PasswordGuess.of(f" {alice.email.upper()}", "127.0.0.1").account]) > 0


def test_personal_start_locks_an_unknown_address_like_a_real_one(client, qr, alice):
    """Nothing tells an account that exists from one that does not, not even the lockout."""
    device = NewDevice(client)
    real = [device.start(alice.email, f"wrong {i}").get_json()["error"] for i in range(11)]
    unknown = [device.start("nobody@example.com", f"wrong {i}").get_json()["error"] for i in range(11)]
    assert real == unknown == ["invalid_credentials"] * 10 + ["too_many_attempts"]


def test_wrong_codes_count_and_the_fifth_ends_it(client, push, qr, alice, mailbox):
    device = NewDevice(client)
    recovery_id = device.start(alice.email, PASSWORD).get_json()["recovery_id"]
    code = sent_code(mailbox)
    wrong = "000000" if code != "000000" else "111111"
    answers = [device.finish(recovery_id, wrong).get_json() for _ in range(5)]
    assert [a.get("tries_left") for a in answers] == [4, 3, 2, 1, 0]
    assert answers[0]["error"] == "invalid_code"
    final = device.finish(recovery_id, code)
    assert (final.status_code, final.get_json()["error"]) == (410, "code_expired")
    assert push.store.count(alice) == 1  # the old phone only
    # Each wrong guess is in the audit log (someone with the password may be guessing).
    assert [e.details["tries_left"] for e in events("recover.code_failed")] == [4, 3, 2, 1, 0]


def test_a_signed_request_is_taken_once(client, push, qr, alice, mailbox):
    """A captured request replayed within its minute: refused before anything is counted or spent
    (a wrong code's guess would burn the owner's tries; a refused redemption might succeed later)."""
    device = NewDevice(client)
    recovery_id = device.start(alice.email, PASSWORD).get_json()["recovery_id"]
    wrong = "000000" if sent_code(mailbox) != "000000" else "111111"
    guess = device.token("/personal/finish", recovery_id=recovery_id, code=wrong, name="New phone")
    first = client.post("/factors/qr_recovery/personal/finish", json={"request": guess})
    assert first.get_json() == {"error": "invalid_code", "tries_left": 4}
    replayed = client.post("/factors/qr_recovery/personal/finish", json={"request": guess})
    assert (replayed.status_code, replayed.get_json()) == (400, {"error": "invalid_request"})
    assert device.finish(recovery_id, wrong).get_json()["tries_left"] == 3  # the replay counted nothing
    issued = qr.issue(alice, actor="cli")
    redemption = device.token("/redeem", secret=issued.secret, name="Newer phone")
    assert device.redeem(issued.secret, token=redemption).status_code == 201
    assert device.redeem(issued.secret, token=redemption).status_code == 400


def test_expired_code_is_refused(client, push, qr, alice, mailbox):
    from idp.models import FactorChallenge

    device = NewDevice(client)
    recovery_id = device.start(alice.email, PASSWORD).get_json()["recovery_id"]
    row = db.session.get(FactorChallenge, recovery_id)
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert device.finish(recovery_id, sent_code(mailbox)).get_json() == {"error": "code_expired"}


def test_undeliverable_code_is_a_clear_error(factor_app, client, qr, alice):
    from idp.notify import SmtpNotifier
    from fixtures.oidc import free_port

    factor_app.extensions["idp.notifier"] = SmtpNotifier("127.0.0.1", free_port(), timeout=2)
    response = NewDevice(client).start(alice.email, PASSWORD)
    assert (response.status_code, response.get_json()) == (503, {"error": "code_not_sent"})
    assert not events("recover.code_sent") and len(events("recover.code_not_sent")) == 1  # what happened


def test_codes_the_relay_did_not_take_do_not_spend_the_hours_codes(factor_app, client, qr, alice, mailbox):
    """The relay is down: each code dies unsent (503, audited). Once it is back the user just
    asks again: the codes no one received did not count against `codes_per_hour` (they made
    the user wait up to an hour: 429), as a password reset's failed links do not."""
    from idp.notify import SmtpNotifier
    from fixtures.oidc import free_port

    working = factor_app.extensions["idp.notifier"]
    factor_app.extensions["idp.notifier"] = SmtpNotifier("127.0.0.1", free_port(), timeout=2)
    device = NewDevice(client)
    for _ in range(qr.qr_settings.codes_per_hour + 1):
        response = device.start(alice.email, PASSWORD)
        assert (response.status_code, response.get_json()) == (503, {"error": "code_not_sent"})
    factor_app.extensions["idp.notifier"] = working
    response = device.start(alice.email, PASSWORD)
    assert response.status_code == 200, response.get_json()
    assert device.finish(response.get_json()["recovery_id"], sent_code(mailbox)).status_code == 201
    assert len(events("recover.code_not_sent")) == qr.qr_settings.codes_per_hour + 1


def test_sends_the_relay_did_not_take_are_bounded_too(factor_app, client, qr, alice):
    """Unsent codes do not spend the hour's codes, but each is an audited SMTP attempt: whoever
    holds the password must not ask for them without end while the relay is down. At most
    ATTEMPTS_PER_CODE x `codes_per_hour` attempts an hour, sent or not, then the codes' 429."""
    from idp.notify import SmtpNotifier
    from fixtures.oidc import free_port
    from idp_plugins.qr_recovery.personal import ATTEMPTS_PER_CODE

    factor_app.extensions["idp.notifier"] = SmtpNotifier("127.0.0.1", free_port(), timeout=2)
    device = NewDevice(client)
    attempts = ATTEMPTS_PER_CODE * qr.qr_settings.codes_per_hour
    assert ATTEMPTS_PER_CODE > 1
    for _ in range(attempts):
        response = device.start(alice.email, PASSWORD)
        assert (response.status_code, response.get_json()) == (503, {"error": "code_not_sent"})
    refused = device.start(alice.email, PASSWORD)
    assert refused.status_code == 429 and refused.get_json()["error"] == "too_many_attempts", refused.get_json()
    assert int(refused.headers["Retry-After"]) > 0
    assert len(events("recover.code_not_sent")) == attempts  # no further SMTP attempt


def test_personal_recovery_can_be_switched_off(tmp_path):
    from idp.factors import testing

    app = testing.make_app(testing.database_url_for_tests(tmp_path), {"factors.qr_recovery.personal_recovery": False})
    with app.app_context():
        testing.create_schema()
        enable()
        response = app.test_client().post("/factors/qr_recovery/personal/start", json={"email": "a", "password": "b"})
        assert response.status_code == 403


# --- exactly once under concurrency (PostgreSQL) ---------------------------------------------


def test_two_racing_redemptions_of_one_code_give_one_device(pg_app):
    from idp.factors import testing

    push, qr = enable()
    user = testing.make_user("race@example.com")
    issued = qr.issue(user, actor="cli")
    devices = [NewDevice(None) for _ in range(4)]
    tokens = [d.token("/redeem", secret=issued.secret, user=user.username, name=f"phone {i}")
              for i, d in enumerate(devices)]
    barrier = threading.Barrier(len(devices))

    def redeem(token):
        with pg_app.app_context():
            client = pg_app.test_client()
            barrier.wait()
            return client.post("/factors/qr_recovery/redeem", json={"request": token}).status_code

    with ThreadPoolExecutor(len(devices)) as pool:
        codes = list(pool.map(redeem, tokens))
    assert sorted(codes) == [201, 410, 410, 410], codes
    assert push.store.count(user) == 1
    assert len(events("recovery_qr.used")) == 1


def _signed_raw(device, payload: bytes) -> str:
    """A request signed by `device` whose payload is exactly these bytes (what json.dumps cannot write)."""
    import json

    from authenticator.push import keys
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    header = {"alg": "ES256", "typ": "JWT", "jwk": keys.public_jwk(device.key)}
    signing_input = keys._b64(json.dumps(header).encode()) + "." + keys._b64(payload)
    r, s = decode_dss_signature(device.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return signing_input + "." + keys._b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def test_signed_requests_outside_the_documented_claims_are_invalid_requests(client, push, qr, factor_user):
    """Claims nested thousands deep (a RecursionError), NaN times (which compare false to
    everything, so they passed the time window) and integer times too big for a float (an
    OverflowError) are refused like any malformed request."""
    import time

    issued = qr.issue(factor_user, actor="cli")
    device = NewDevice(client)
    an_hour_ago = time.time() - 3600
    nan_times = device.token("/redeem", secret=issued.secret, name="x", iat=an_hour_ago, exp=float("nan"))
    now = int(time.time())
    deep = (b'{"aud":"http://localhost:5000/factors/qr_recovery/redeem","iat":%d,"exp":%d,"jti":"%s","x":'
            % (now, now + 30, b"j" * 32) + b"[" * 3000 + b"]" * 3000 + b"}")
    huge_times = device.token("/redeem", secret=issued.secret, name="x", iat=now, exp=10 ** 400)  # (OverflowError)
    for token in (nan_times, _signed_raw(device, deep), huge_times):
        response = device.redeem(issued.secret, token=token)
        assert (response.status_code, response.get_json()) == (400, {"error": "invalid_request"})
    assert qr.is_configured_for(factor_user)  # nothing spent


def _pg_personal_account(pg_app):
    """(push, qr, user, mailbox) on the PostgreSQL app: a personal account with push on an old phone."""
    from idp.notify import ConsoleNotifier

    push, qr = enable()
    notifier = ConsoleNotifier()
    pg_app.extensions["idp.notifier"] = notifier
    user = _personal_user(pg_app, "racer@example.com")
    old_device(push, user, notifier.sent)
    return push, qr, user, notifier.sent


def _all_at_once(pg_app, requests_):
    """Each `request(client)` on a thread and a test client of its own, released together: the
    (status, body) answers, in order."""
    barrier = threading.Barrier(len(requests_))

    def run(request_):
        with pg_app.app_context():
            client = pg_app.test_client()
            barrier.wait()
            response = request_(client)
            return response.status_code, response.get_json()

    with ThreadPoolExecutor(len(requests_)) as pool:
        return list(pool.map(run, requests_))


def test_parallel_starts_send_at_most_codes_per_hour(pg_app):
    """docs/recovery.md 2: at most `codes_per_hour` codes per user, counted under the user's row lock
    so that parallel starts (each with the right password) cannot exceed it."""
    push, qr, user, mailbox = _pg_personal_account(pg_app)
    limit = qr.qr_settings.codes_per_hour
    answers = _all_at_once(pg_app, [lambda client: NewDevice(client).start(user.email, PASSWORD)] * (limit + 4))
    assert sorted(status for status, _body in answers) == [200] * limit + [429] * 4, answers
    notices(mailbox)
    assert len([m for m in mailbox if m.subject == "Your recovery code"]) == limit
    assert len(events("recover.code_sent")) == limit


def test_parallel_guesses_at_one_code_are_checked_at_most_code_tries_times(pg_app):
    """docs/recovery.md 2: every guess is counted first, in one statement, so at most `code_tries`
    guesses per code even in parallel; the right code after them finds it void."""
    push, qr, user, mailbox = _pg_personal_account(pg_app)
    started = NewDevice(pg_app.test_client()).start(user.email, PASSWORD).get_json()
    code = sent_code(mailbox)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    tries = qr.qr_settings.code_tries
    answers = _all_at_once(pg_app, [lambda client: NewDevice(client).finish(started["recovery_id"], wrong)] * 12)
    assert sum(status == 401 for status, _body in answers) == tries, answers
    assert all(status in (401, 410) for status, _body in answers), answers
    assert len(events("recover.code_failed")) == tries
    last = NewDevice(pg_app.test_client()).finish(started["recovery_id"], code)
    assert (last.status_code, last.get_json()) == (410, {"error": "code_expired"})
    assert push.store.count(user) == 1  # the old phone alone


def test_the_right_code_sent_by_several_new_keys_at_once_registers_one(pg_app):
    push, qr, user, mailbox = _pg_personal_account(pg_app)
    started = NewDevice(pg_app.test_client()).start(user.email, PASSWORD).get_json()
    code = sent_code(mailbox)
    answers = _all_at_once(pg_app, [lambda client: NewDevice(client).finish(started["recovery_id"], code)] * 5)
    assert sorted(status for status, _body in answers) == [201, 410, 410, 410, 410], answers
    assert push.store.count(user) == 2
    assert [e.details["via"] for e in events("push.device_registered")] == ["activation", "recover"]


def test_disabling_the_account_revokes_its_codes_for_good(client, push, qr, factor_user):
    """A code issued before the account was disabled (suspended after a push fraud report, say)
    registers no phone and passes no login once the account is enabled again: disabling revoked
    it (`recovery_qr.revoked`, reason `account_disabled`); the admin issues a new one."""
    from qr_testkit import context

    from idp import users
    from idp.factors import Rejected
    from idp.models import User

    issued = qr.issue(factor_user, actor="cli")
    typed = qr.issue(factor_user, actor="cli")
    row = db.session.get(User, factor_user.id)
    users.set_disabled(row, True, actor="admin@example.com", actor_id=None)
    db.session.commit()
    users.set_disabled(row, False, actor="admin@example.com", actor_id=None)
    db.session.commit()
    response = NewDevice(client).redeem(issued.secret, user=factor_user.username)
    assert (response.status_code, response.get_json()) == (410, {"error": "recovery_code_revoked"})
    outcome = qr.verify(factor_user, {}, {"code": typed.secret}, context(qr))
    assert isinstance(outcome, Rejected) and outcome.reason == "code_revoked"
    assert push.store.list(factor_user) == [] and not qr.is_configured_for(factor_user)
    revoked = events("recovery_qr.revoked")
    assert sorted(e.details["credential_id"] for e in revoked) == sorted([issued.credential.id, typed.credential.id])
    assert {(e.actor, e.details["reason"]) for e in revoked} == {("admin@example.com", "account_disabled")}


def test_a_disabled_users_code_typed_at_a_login_is_refused_and_stays_unspent(qr, factor_user):
    """Disabled without the revocation (the account's row alone, as a disable racing the login
    sees it): the typed code passes nothing and is not spent."""
    from qr_testkit import context
    from sqlalchemy import update

    from idp.factors import Rejected
    from idp.models import User

    issued = qr.issue(factor_user, actor="cli")
    db.session.execute(update(User).where(User.id == factor_user.id).values(disabled=True))
    db.session.commit()
    outcome = qr.verify(factor_user, {}, {"code": issued.secret}, context(qr))
    assert isinstance(outcome, Rejected) and outcome.reason == "account_disabled"
    assert qr.outstanding(factor_user) != []


def _owed(user) -> bool:
    from idp.models import User

    db.session.rollback()  # (a fresh read: the request committed in its own session's transaction)
    return db.session.scalar(select(User.recovery_codes_owed).where(User.id == user.id))


def test_a_phone_a_recovery_registers_owes_recovery_codes_to_a_user_holding_none(client, push, qr, factor_user):
    """The new phone is a second factor set up outside the login and the security page: a user
    holding no recovery codes (an admin's reset retires them with the last factor) is shown a set
    at their next sign-in (idp.factors.directory.owe_recovery_codes); one holding some, none."""
    from idp.factors.registry import current_registry

    codes = current_registry().recovery_codes()
    assert codes is not None and not codes.is_configured_for(factor_user)
    issued = qr.issue(factor_user, actor="admin@example.com")
    assert NewDevice(client).redeem(issued.secret, user=factor_user.username, name="Pixel 9").status_code == 201
    assert _owed(factor_user) is True

    from idp.factors import directory

    codes.regenerate(factor_user)  # as the login that shows them, or the security page, makes them
    directory.recovery_codes_issued(factor_user.id)
    db.session.commit()
    assert _owed(factor_user) is False
    again = qr.issue(factor_user, actor="admin@example.com")
    assert NewDevice(client).redeem(again.secret, user=factor_user.username, name="Pixel 10").status_code == 201
    assert _owed(factor_user) is False
