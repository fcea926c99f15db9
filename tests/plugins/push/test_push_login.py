"""A push login end to end over HTTP: a form-posting browser on the live server, the device answering
through protocol v1 (the app's own client), the ID token's amr."""
from __future__ import annotations

import pytest
import requests
from sqlalchemy import select, update

from idp.db import db
from idp.models import User

from fixtures.threads import finished
from fixtures.oidc import FormBrowser, past_new_recovery_codes
from push_testkit import give_device


def start(web: FormBrowser, rp, seeded):
    web.get(rp.authorization_url())
    page = web.login(seeded.user_email, seeded.password)
    number = page.find(r'data-push-number="(\d+)"')
    assert number, page.text[:3000]
    poll = page.find(r'data-poll-url="([^"]+)"')
    return page, number, poll


def continue_(web: FormBrowser, page):
    return web.submit([f for f in page.forms() if "version" in f["fields"]][0])


def test_push_login_approved(push_server, seeded, web, rp_factory):
    device = give_device(push_server, seeded.user_email)
    rp = rp_factory(seeded.first_party)
    page, number, poll = start(web, rp, seeded)
    assert web.http.get(web.base_url + poll if poll.startswith("/") else poll).json() == {"status": "pending"}
    # Without an answer, Continue keeps the user waiting on the same step.
    waiting = continue_(web, page)
    assert web.last_redirect is None and waiting.status == 202
    challenge = device.pending()[0]
    assert challenge["context"]["application"] == "First"
    assert device.answer(challenge["id"], "approve", number) == {"status": "approved"}
    poll_url = web.base_url + poll if poll.startswith("/") else poll
    assert web.http.get(poll_url).json()["status"] == "approved"
    continue_(web, waiting)
    # The phone registered with an activation code, outside the login and the security page: its
    # first login shows the recovery codes the user does not hold yet, once.
    assert len(past_new_recovery_codes(web)) == 10
    if web.last_redirect is None:
        web.consent("allow")
    claims = rp.validate_id_token(rp.exchange(web.last_redirect)["id_token"])
    assert set(claims["amr"]) >= {"pwd", "swk", "user", "mfa"}


def test_push_login_denied_and_fraud(push_server, seeded, web, rp_factory):
    device = give_device(push_server, seeded.user_email)
    rp = rp_factory(seeded.first_party)
    page, number, _poll = start(web, rp, seeded)
    challenge = device.pending()[0]
    assert device.answer(challenge["id"], "fraud")["status"] == "fraud"
    denied = continue_(web, page)
    assert web.last_redirect is None and denied.status == 403
    assert "suspends push approvals until an administrator" in denied.text  # said, not silently switched
    # Suspended: the next login does not offer push any more.
    other = FormBrowser(push_server.url)
    other.get(rp.authorization_url())
    page = other.login(seeded.user_email, seeded.password)
    assert "data-push-number" not in page.text


def test_an_approval_reported_as_fraud_does_not_sign_in_once_push_is_resumed(push_server, seeded, web, rp_factory):
    """Approved by mistake, reported at once, and the login (an attacker's: the password is known)
    left waiting without pressing Continue; an admin then resumes push. Continue gets no code: the
    approval was voided by the report, and the page sends a new request for the phone to answer.
    (An audit saw this login signed in with amr swk, user, mfa.)"""
    from idp.policy import settings as policy_settings

    device = give_device(push_server, seeded.user_email)
    rp = rp_factory(seeded.first_party)
    page, number, _poll = start(web, rp, seeded)
    reported = device.pending()[0]
    assert device.answer(reported["id"], "approve", number) == {"status": "approved"}
    # 409 challenge_closed, "reported": true: the report counts, and the app says so.
    assert device.answer(reported["id"], "fraud") == {"status": "fraud", "reported": True}
    with push_server.context():
        user_id = db.session.scalar(select(User.id).where(User.email == seeded.user_email))
        assert policy_settings.clear_push_suspension(user_id, policy_settings.Actor.cli())
    page = continue_(web, page)
    assert web.last_redirect is None, "signed in with the approval the user reported"
    assert "data-push-number" in page.text
    assert [c["id"] for c in device.pending()] != [reported["id"]] and len(device.pending()) == 1


@pytest.mark.parametrize("required", [False, True], ids=["voluntary", "required"])
def test_a_fraud_report_leaves_the_password_alone_insufficient(push_server, seeded, web, rp_factory, required):
    """Push suspended by a fraud report is still the user's second factor. Whoever caused the
    report and knows the password must neither finish the login on the password alone (2FA set
    up voluntarily) nor be offered to enrol a factor of their own (2FA required): with nothing
    else usable, the login stops at "no method available"."""
    device = give_device(push_server, seeded.user_email)
    if required:
        with push_server.context():
            db.session.execute(update(User).where(User.email == seeded.user_email).values(mfa_setting="required"))
            db.session.commit()
    rp = rp_factory(seeded.first_party)
    start(web, rp, seeded)
    assert device.answer(device.pending()[0]["id"], "fraud")["status"] == "fraud"
    attacker = FormBrowser(push_server.url)
    attacker.get(rp.authorization_url())
    page = attacker.login(seeded.user_email, seeded.password)
    assert attacker.last_redirect is None, "no code on the password alone"
    assert page.status == 403 and "None of the methods your organization allows" in page.text
    assert "Set up two-factor authentication" not in page.text


def test_push_login_wrong_number(push_server, seeded, web, rp_factory):
    device = give_device(push_server, seeded.user_email)
    rp = rp_factory(seeded.first_party)
    page, number, _poll = start(web, rp, seeded)
    wrong = f"{(int(number) + 1) % 100:02d}"
    challenge = device.pending()[0]
    assert device.answer(challenge["id"], "approve", wrong)["reason"] == "wrong_number"
    refused = continue_(web, page)
    assert web.last_redirect is None and refused.status == 403
    # The user meant to approve: the page says what went wrong, not a bare "The request was denied".
    assert "The number typed on your phone did not match the one shown here" in refused.text


def test_static_script_is_served(push_server):
    response = requests.get(push_server.url + "/factors/push/static/push.js", timeout=10)
    assert response.status_code == 200 and "data-push-wait" in response.text


def test_enrolment_during_login_with_the_app_client(push_server, seeded, web, rp_factory):
    """A user without a second factor, asked for MFA, picks push, scans (here: reads) the QR's URI;
    the device registers; Continue finishes the enrolment and the login."""
    import html

    from authenticator.push import keys
    from authenticator.push.activation import parse_activation_uri
    from authenticator.push.client import PushClient

    rp = rp_factory(seeded.first_party)
    web.get(rp.authorization_url(acr_values="urn:idp:acr:mfa"))
    page = web.login(seeded.user_email, seeded.password)
    choose = [f for f in page.forms() if f["action"].endswith("/factor/push")]
    if choose:  # several factors can be enrolled: choose push
        page = web.submit(choose[0])
    uri = page.find(r"<code[^>]*data-activation-uri>([^<]+)</code>")
    assert uri and "<svg" in page.text, page.text[:3000]
    query = parse_activation_uri(html.unescape(uri))
    device = PushClient(query["endpoint"], keys.new_private_key())
    device.register(query["code"], "enrolled phone")
    page = web.submit([f for f in page.forms() if "version" in f["fields"]][0])
    # The first second factor brings recovery codes, shown once; then the login completes.
    while web.last_redirect is None and page.forms():
        page = web.submit([f for f in page.forms() if "version" in f["fields"]][0])
    claims = rp.validate_id_token(rp.exchange(web.last_redirect)["id_token"])
    assert "mfa" in claims["amr"]
    assert push_events(push_server, "push.activation_issued") == [(seeded.user_email, "login")]
    assert push_events(push_server, "push.device_registered") == [(seeded.user_email, "activation")]
    with push_server.context():  # the enrolment showed the codes the phone's registration left owed
        assert db.session.scalar(select(User.recovery_codes_owed).where(User.email == seeded.user_email)) is False


def push_events(server, event: str) -> list[tuple]:
    """(actor, where) of each `event`: `during` for an activation, `via` for a device."""
    from sqlalchemy import select

    from idp.models import AuditEvent

    with server.context():
        rows = db.session.scalars(select(AuditEvent).where(AuditEvent.event == event).order_by(AuditEvent.id))
        return [(row.actor, row.details.get("during") or row.details.get("via")) for row in rows]


def test_a_phone_added_on_the_security_page_is_audited_once_from_code_to_device(push_server, seeded, web):
    """The security page's activation code is audited like an operator's (`push.activation_issued`,
    the user as actor) and the phone it registers is one `push.device_registered`, as on every path."""
    import html

    from authenticator.push import keys
    from authenticator.push.activation import parse_activation_uri
    from authenticator.push.client import PushClient

    web.get("/account/security")
    page = web.login(seeded.user_email, seeded.password)
    page = web.submit([f for f in page.forms() if f["action"].endswith("/add/push")][0])
    uri = page.find(r"<code[^>]*data-activation-uri>([^<]+)</code>")
    assert uri, page.text[:3000]
    assert push_events(push_server, "push.activation_issued") == [(seeded.user_email, "account")]
    query = parse_activation_uri(html.unescape(uri))
    PushClient(query["endpoint"], keys.new_private_key()).register(query["code"], "Pixel 8")
    # Registered by the phone, before the page's last step (which nobody may ever take): the
    # owner is mailed now, and "Recent activity" shows it already.
    finished("security-notices")  # (mailed beside the answer, once the registration committed)
    notices = push_server.app.extensions["idp.notifier"].sent  # (the console notifier keeps what it sends)
    assert [m.subject for m in notices] == ["A new device was added to your account"]
    assert "Phone registered for push approvals" in web.get("/account/security").text
    page = web.submit([f for f in page.forms() if "/enrol/" in f["action"]][0])
    assert "data-recovery-codes" in page.text  # the first second factor, though stored before this step
    assert 'data-factor="push"' in web.get("/account/security").text
    assert push_events(push_server, "push.device_registered") == [(seeded.user_email, "activation")]
    with push_server.context():
        from idp.models import AuditEvent

        [enrolled] = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "factor.enrolled")).all()
    assert enrolled.details["announced"] is True and enrolled.details["recovery_codes_issued"] == 10
    finished("security-notices")  # idp.security_notices sends on threads of its own
    assert len(notices) == 1  # the enrolment's end, announced, mails nothing more



def test_past_the_fatigue_limit_continue_says_why_and_nothing_else(push_server, seeded, rp_factory):
    """The refusal page's Continue answered "That did not work. Try again." above the reason:
    the push factor now words its refusals itself (Rejected.message)."""
    give_device(push_server, seeded.user_email)
    rp = rp_factory(seeded.first_party)
    for _ in range(5):  # factors.push.max_challenges: five requests reach the phone
        start(FormBrowser(push_server.url), rp, seeded)
    web = FormBrowser(push_server.url)
    web.get(rp.authorization_url())
    page = web.login(seeded.user_email, seeded.password)
    assert "Too many approval requests" in page.text and "data-push-number" not in page.text
    answered = continue_(web, page)
    assert "Too many approval requests" in answered.text and "That did not work" not in answered.text


def _activation_at_enrolment(web: FormBrowser, rp, seeded):
    """A login on the password alone, at its enrolment step with push chosen: (page, activation query)."""
    import html

    from authenticator.push.activation import parse_activation_uri

    web.get(rp.authorization_url(acr_values="urn:idp:acr:mfa"))
    page = web.login(seeded.user_email, seeded.password)
    choose = [f for f in page.forms() if f["action"].endswith("/factor/push")]
    if choose:
        page = web.submit(choose[0])
    uri = page.find(r"<code[^>]*data-activation-uri>([^<]+)</code>")
    assert uri, page.text[:3000]
    return page, parse_activation_uri(html.unescape(uri))


@pytest.mark.parametrize("meanwhile", ["login_cancelled", "factor_set_up_elsewhere"])
def test_a_logins_activation_registers_no_phone_once_that_login_no_longer_wants_it(push_server, seeded, web,
                                                                                    rp_factory, meanwhile):
    """The activation a login shows at its enrolment step (reached on the password alone) is that
    login's: cancelled, or once the user set up a factor elsewhere (which must then be proven), a
    phone that scans it later registers nothing."""
    from authenticator.push import keys
    from authenticator.push.client import ActivationExpired, PushClient
    from fixtures.totp import enrol_totp_during_login

    rp = rp_factory(seeded.first_party)
    page, query = _activation_at_enrolment(web, rp, seeded)
    if meanwhile == "login_cancelled":
        cancel = [f for f in page.forms() if f["action"].endswith("/cancel")]
        web.submit(cancel[0])
        assert web.callback_params()["error"] == "access_denied"
    else:
        enrol_totp_during_login(FormBrowser(push_server.url), rp, seeded)
    with pytest.raises(ActivationExpired):
        PushClient(query["endpoint"], keys.new_private_key()).register(query["code"], "someone's phone")
    assert push_events(push_server, "push.device_registered") == []


def test_an_activation_code_from_a_session_of_the_lost_phone_dies_with_the_admins_reset(push_server, seeded, web,
                                                                                          rp_factory):
    """Whoever holds the password and the lost TOTP phone signs in and asks the security page
    for a push activation code, keeping it for later: the admin's reset (the user has no push
    device, so the push plugin's own clean-up has nothing to do) withdraws it with the session."""
    import html

    from authenticator.push import keys
    from authenticator.push.activation import parse_activation_uri
    from authenticator.push.client import ActivationExpired, PushClient
    from fixtures.totp import enrol_totp_during_login
    from fixtures.oidc import admin_resets_factors

    enrol_totp_during_login(web, rp_factory(seeded.first_party), seeded)
    page = web.get("/account/security")
    page = web.submit([f for f in page.forms() if f["action"].endswith("/add/push")][0])
    query = parse_activation_uri(html.unescape(page.find(r"<code[^>]*data-activation-uri>([^<]+)</code>")))

    admin_resets_factors(push_server, seeded)

    with pytest.raises(ActivationExpired):
        PushClient(query["endpoint"], keys.new_private_key()).register(query["code"], "Thief's phone")
    assert push_events(push_server, "push.device_registered") == []


def _activation_on_the_security_page(web: FormBrowser, seeded) -> dict:
    """The user signs in on their security page and begins adding push: the activation's query."""
    import html

    from authenticator.push.activation import parse_activation_uri

    web.get("/account/security")
    page = web.login(seeded.user_email, seeded.password)
    page = web.submit([f for f in page.forms() if f["action"].endswith("/add/push")][0])
    uri = page.find(r"<code[^>]*data-activation-uri>([^<]+)</code>")
    assert uri, page.text[:3000]
    status = page.find(r'data-poll-url="([^"]+)"') or ""
    return {**parse_activation_uri(html.unescape(uri)), "status_url": html.unescape(status)}


@pytest.mark.parametrize("how", ["sign_out", "session_ended_elsewhere"])
def test_an_activation_code_of_the_security_page_dies_with_its_session(push_server, seeded, web, how):
    """The security page's activation code is that session's: once it is signed out (or ended from
    another browser's "Where you're signed in"), a phone that scans the code left on the screen
    (or photographed) registers nothing, and the page's status says it expired."""
    from authenticator.push import keys
    from authenticator.push.client import ActivationExpired, PushClient

    query = _activation_on_the_security_page(web, seeded)
    if how == "sign_out":
        web.submit(web.get("/logout").form_with("csrf_token"))
    else:
        other = FormBrowser(push_server.url)
        other.get("/account/security")
        page = other.login(seeded.user_email, seeded.password)
        ends = [f for f in page.forms() if "/sessions/" in f["action"] and f["action"].endswith("/end")]
        assert len(ends) == 1, page.text[:3000]
        other.submit(ends[0])
    status_url = query["status_url"]
    assert status_url
    status_url = push_server.url + status_url if status_url.startswith("/") else status_url
    assert requests.get(status_url, timeout=10).json() == {"status": "expired"}
    with pytest.raises(ActivationExpired):
        PushClient(query["endpoint"], keys.new_private_key()).register(query["code"], "Found phone")
    with push_server.context():
        user_id = db.session.scalar(select(User.id).where(User.email == seeded.user_email))
        assert push_server.app.extensions["idp.factors"].get("push").store.count(user_id) == 0


def test_an_activation_code_of_the_security_page_works_while_its_session_lives(push_server, seeded, web):
    """Another browser signing out leaves this page's code working."""
    from authenticator.push import keys
    from authenticator.push.client import PushClient

    query = _activation_on_the_security_page(web, seeded)
    other = FormBrowser(push_server.url)
    other.get("/account/security")
    other.login(seeded.user_email, seeded.password)
    other.submit(other.get("/logout").form_with("csrf_token"))
    PushClient(query["endpoint"], keys.new_private_key()).register(query["code"], "Pixel 8")


def test_an_activation_code_registers_no_phone_once_the_organization_stops_accepting_push(push_server, seeded, web):
    """The user begins adding push on the security page; the organization then accepts
    authenticator apps only. A phone scanning the code left on the screen registers nothing: the
    page could no longer finish that enrolment, and the device would be a second factor of a kind
    the organization refuses (as a recovery QR code's push restoration answers push_not_allowed)."""
    from authenticator.push import keys
    from authenticator.push.client import ActivationExpired, PushClient
    from idp.models import Organization

    query = _activation_on_the_security_page(web, seeded)
    with push_server.context():
        db.session.execute(update(Organization).where(Organization.id == seeded.org_id)
                           .values(allowed_factors=["totp"]))
        db.session.commit()
    with pytest.raises(ActivationExpired):
        PushClient(query["endpoint"], keys.new_private_key()).register(query["code"], "Pixel 8")
    with push_server.context():
        user = db.session.scalar(select(User).where(User.email == seeded.user_email))
        assert push_server.app.extensions["idp.factors"].get("push").store.count(user.id) == 0
        assert user.second_factor_count == 0



def test_a_cancelled_logins_request_can_no_longer_be_answered(push_server, seeded, web, rp_factory):
    """The person at the browser cancels the sign-in: its request leaves the phone's list, and an
    answer already on its way gets 409 challenge_closed. (It stayed listed, and an approval was
    told "approved", for a sign-in that no longer existed.)"""
    from authenticator.push.client import ChallengeUnavailable

    device = give_device(push_server, seeded.user_email)
    rp = rp_factory(seeded.first_party)
    page, number, _poll = start(web, rp, seeded)
    request_id = device.pending()[0]["id"]
    web.submit([f for f in page.forms() if f["action"].endswith("/cancel")][0])
    assert "error=access_denied" in web.last_redirect
    assert device.pending() == []
    with pytest.raises(ChallengeUnavailable):
        device.answer(request_id, "approve", number)


def _user_with_push_and_totp(push_server, seeded):
    """A phone and an authenticator app (imported, as `idp factor totp import` does): the TOTP secret."""
    import os

    from idp.factors.directory import commit, find_user_by_email

    device = give_device(push_server, seeded.user_email)
    secret = os.urandom(20)
    with push_server.context():
        push_server.app.extensions["idp.factors"].get("totp").store.create(
            find_user_by_email(seeded.user_email), label="App", secret=secret,
            public={"digits": 6, "algorithm": "SHA1", "period": 30, "imported": True})
        commit()
    return device, secret


def _start_on_push(web: FormBrowser, rp, seeded):
    """Sign in up to the push request (the login begins with the app's code: pick push)."""
    web.get(rp.authorization_url())
    page = web.login(seeded.user_email, seeded.password)
    choose = [f for f in page.forms() if f["action"].endswith("/factor/push")]
    if choose:
        page = web.submit(choose[0])
    number = page.find(r'data-push-number="(\d+)"')
    assert number, page.text[:3000]
    return page, number


def _switch_to_totp(web: FormBrowser, page):
    choose = [f for f in page.forms() if f["action"].endswith("/factor/totp")]
    assert choose, page.text[:3000]
    page = web.submit(choose[0])
    assert page.form_with("code") and "data-push-number" not in page.text
    return page


def _assert_closed_to_the_phone(device, request_id: str, number: str) -> None:
    from authenticator.push.client import ChallengeUnavailable

    assert device.pending() == []
    with pytest.raises(ChallengeUnavailable):  # 409 challenge_closed
        device.answer(request_id, "approve", number)


def test_a_request_of_a_login_finished_with_another_method_can_no_longer_be_answered(push_server, seeded, web,
                                                                                       rp_factory):
    """The push request is sent, and the person signs in with the authenticator app instead: the
    phone no longer lists the request, and its approval gets 409 challenge_closed. (It stayed
    listed, and was told "approved", until its minute ended.)"""
    import base64

    import pyotp

    device, secret = _user_with_push_and_totp(push_server, seeded)
    rp = rp_factory(seeded.first_party)
    page, number = _start_on_push(web, rp, seeded)
    request_id = device.pending()[0]["id"]
    page = _switch_to_totp(web, page)
    web.submit(page.form_with("code"), {"code": pyotp.TOTP(base64.b32encode(secret).decode()).now()})
    past_new_recovery_codes(web)  # (the phone came with an activation code: codes owed)
    if web.last_redirect is None:
        web.consent("allow")
    assert "code=" in web.last_redirect
    _assert_closed_to_the_phone(device, request_id, number)


def test_a_request_of_a_login_that_switched_to_another_method_can_no_longer_be_answered(push_server, seeded, web,
                                                                                          rp_factory):
    """The login moved to the authenticator app and waits there: its push request is not what it
    waits on any more. Back to push, the new request is listed and answered as usual."""
    device, _secret = _user_with_push_and_totp(push_server, seeded)
    rp = rp_factory(seeded.first_party)
    page, number = _start_on_push(web, rp, seeded)
    request_id = device.pending()[0]["id"]
    page = _switch_to_totp(web, page)
    _assert_closed_to_the_phone(device, request_id, number)
    page = web.submit([f for f in page.forms() if f["action"].endswith("/factor/push")][0])
    number = page.find(r'data-push-number="(\d+)"')
    [listed] = device.pending()
    assert listed["id"] != request_id
    assert device.answer(listed["id"], "approve", number) == {"status": "approved"}


def test_a_request_of_an_expired_login_can_no_longer_be_answered(push_server, seeded, web, rp_factory):
    """The login's transaction expired before its push request's minute ended (its page would say
    "this sign-in expired"): the request is no longer listed nor answerable."""
    from datetime import timedelta

    from idp.db import utcnow
    from idp.models import LoginTransaction

    device = give_device(push_server, seeded.user_email)
    rp = rp_factory(seeded.first_party)
    _page, number, _poll = start(web, rp, seeded)
    [listed] = device.pending()
    with push_server.context():
        user_id = db.session.scalar(select(User.id).where(User.email == seeded.user_email))
        expired = db.session.execute(update(LoginTransaction).where(LoginTransaction.user_id == user_id)
                                     .values(expires_at=utcnow() - timedelta(seconds=1)))
        assert expired.rowcount == 1
        db.session.commit()
    _assert_closed_to_the_phone(device, listed["id"], number)


def _reported_on_the_closed_request(push_server, seeded, device, request_id: str) -> None:
    """The phone reports a request its login no longer waits on as fraud: told it is closed and
    reported, and reported it is (push suspended, the request expired, one event)."""
    from idp.models import AuditEvent, FactorChallenge

    # (the app's client turns every 409 into one error: the signed request as it sends it, read raw)
    response = device._signed("POST", f"/challenges/{request_id}/answer",
                              extra={"challenge": request_id, "decision": "fraud"})
    assert (response.status_code, device._json(response)) == (409, {"error": "challenge_closed", "reported": True})
    with push_server.context():
        assert db.session.scalar(select(User.push_suspended_at).where(User.email == seeded.user_email))
        assert db.session.get(FactorChallenge, request_id).status == "expired"
        [event] = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "push.fraud_reported")).all()
        assert event.details["challenge_status"] == "expired"


def test_a_fraud_report_on_a_request_its_login_no_longer_waits_on_still_counts(push_server, seeded, web, rp_factory):
    """Signed in with the authenticator app after a request the person did not send: "not mine"
    on that request is still reported (409 with "reported": true), push is suspended, and the
    request is closed (audited as expired, not as pending)."""
    import base64

    import pyotp

    device, secret = _user_with_push_and_totp(push_server, seeded)
    rp = rp_factory(seeded.first_party)
    page, _number = _start_on_push(web, rp, seeded)
    request_id = device.pending()[0]["id"]
    page = _switch_to_totp(web, page)
    web.submit(page.form_with("code"), {"code": pyotp.TOTP(base64.b32encode(secret).decode()).now()})
    past_new_recovery_codes(web)  # (the phone came with an activation code: codes owed)
    assert "code=" in (web.last_redirect or "") or web.consent("allow")
    _reported_on_the_closed_request(push_server, seeded, device, request_id)


def test_a_phone_enrolled_at_a_login_while_a_factor_was_set_up_elsewhere_is_asked_for_not_added(
        push_server, seeded, web, rp_factory, monkeypatch):
    """Someone with the password stands at the enrolment step (the user had no factor yet) with
    a phone registered; as they press Continue, the user sets up TOTP in their own browser, which
    commits while this POST waits for the user's row. The check made under that lock (what was
    set up since this login began) must see it: it read the user's credentials before it waited,
    and push's finish writes no credential to make the store read them again."""
    import threading

    from authenticator.push import keys
    from authenticator.push.client import PushClient
    from idp.factors.store import CredentialStore
    from idp.login.steps import enrol
    from idp.models import AuditEvent

    rp = rp_factory(seeded.first_party)
    page, query = _activation_at_enrolment(web, rp, seeded)
    PushClient(query["endpoint"], keys.new_private_key()).register(query["code"], "someone's phone")
    with push_server.context():
        user_id = db.session.scalar(select(User.id).where(User.email == seeded.user_email))

    def the_user_set_up_totp_elsewhere() -> None:
        with push_server.app.app_context():
            try:
                CredentialStore("totp").create(user_id, label="Mine", secret=b"0" * 20)
                db.session.commit()
            finally:
                db.session.remove()

    waited_for = enrol.lock_user

    def set_up_while_this_waited(held_user_id: int) -> None:
        thread = threading.Thread(target=the_user_set_up_totp_elsewhere)
        thread.start()
        thread.join(10)
        assert not thread.is_alive()
        waited_for(held_user_id)

    monkeypatch.setattr(enrol, "lock_user", set_up_while_this_waited)
    page = continue_(web, page)
    monkeypatch.undo()
    assert web.last_redirect is None and page.form_with("code"), page.text[:3000]  # TOTP's code page
    with push_server.context():
        assert db.session.scalars(select(AuditEvent.event).where(AuditEvent.event == "factor.enrolled")).all() == []


def test_a_fraud_report_on_an_open_request_its_login_left_counts_whatever_the_window(push_server, seeded, web,
                                                                                      rp_factory, monkeypatch):
    """`factors.push.window` may be shorter than `challenge_ttl` (30 s and 60 s here). A request
    still open (unexpired, never answered) whose login switched to another method was reported
    only when younger than the window: "not mine" on such a request, tapped 40 s after it came,
    got a bare 409, suspending nothing and telling no admin. (Before requests closed with their
    login's wait, that answer claimed the open request and was reported.)"""
    import dataclasses
    from datetime import timedelta

    from idp.db import utcnow
    from idp.models import FactorChallenge

    push = push_server.app.extensions["idp.factors"].get("push")
    monkeypatch.setattr(push, "push_settings", dataclasses.replace(push.push_settings, window=30))
    device, _secret = _user_with_push_and_totp(push_server, seeded)
    rp = rp_factory(seeded.first_party)
    page, _number = _start_on_push(web, rp, seeded)
    request_id = device.pending()[0]["id"]
    _switch_to_totp(web, page)  # (the attacker's login, at the app's code it does not have)
    with push_server.context():  # the person reads the request for 40 seconds: 20 of its 60 are left
        now = utcnow()
        db.session.execute(update(FactorChallenge).where(FactorChallenge.id == request_id)
                           .values(created_at=now - timedelta(seconds=40), expires_at=now + timedelta(seconds=20)))
        db.session.commit()
    _reported_on_the_closed_request(push_server, seeded, device, request_id)


def test_after_a_denied_push_the_method_offered_instead_is_not_marked_invalid(push_server, seeded, web, rp_factory):
    """The denial is said on the page of the method the login switches to (the app's code): its
    field was not refused, so it carries no aria-invalid, nor the denial as its description."""
    import re

    device, _secret = _user_with_push_and_totp(push_server, seeded)
    page, _number = _start_on_push(web, rp_factory(seeded.first_party), seeded)
    device.answer(device.pending()[0]["id"], "deny")
    denied = continue_(web, page)
    assert denied.status == 403 and 'role="alert"' in denied.text and denied.form_with("code")
    assert [tag for tag in re.findall(r"<input\b[^>]*>", denied.text) if "aria-invalid" in tag] == []


def _poll(web: FormBrowser, poll: str, wait: float | None = None) -> dict:
    url = web.base_url + poll if poll.startswith("/") else poll
    if wait is not None:  # (as push.js adds it)
        url += ("&" if "?" in url else "?") + f"wait={wait}"
    return web.http.get(url).json()


def test_a_page_whose_request_another_tab_replaced_is_told_to_load_again(push_server, seeded, web, rp_factory):
    """Two tabs of one login on the app's code page: the first sends a push, then the second (its
    "send a push instead" from before) sends another, which replaces the first's request. The
    first tab's poll followed the login's new request while the page still showed the old number,
    the one the user would type on the phone for the new request: a wrong number. Its poll now
    answers "restart" (push.js then posts the form), and the page that follows shows the new
    request's number, which the phone approves."""
    from fixtures.race import tabs_of

    device, _secret = _user_with_push_and_totp(push_server, seeded)
    rp = rp_factory(seeded.first_party)
    web.get(rp.authorization_url())
    page = web.login(seeded.user_email, seeded.password)
    [choose] = [f for f in page.forms() if f["action"].endswith("/factor/push")]
    [other_tab] = tabs_of(web, 1)
    first = web.submit(choose)
    first_poll = first.find(r'data-poll-url="([^"]+)"')
    assert first.find(r'data-push-number="(\d+)"') and first_poll
    [replaced] = device.pending()
    assert _poll(web, first_poll) == {"status": "pending"}
    second = other_tab.submit(choose)
    second_number, second_poll = second.find(r'data-push-number="(\d+)"'), second.find(r'data-poll-url="([^"]+)"')
    [live] = device.pending()
    assert live["id"] != replaced["id"]
    assert _poll(web, first_poll) == {"status": "restart"}, "the page shows a request the login no longer waits on"
    assert _poll(web, first_poll, wait=1) == {"status": "restart"}  # (the long poll alike)
    assert _poll(other_tab, second_poll) == {"status": "pending"}
    again = continue_(web, first)  # what push.js does on "restart"
    assert again.find(r'data-push-number="(\d+)"') == second_number
    assert again.find(r'data-poll-url="([^"]+)"') == second_poll
    assert _poll(web, second_poll) == {"status": "pending"}
    assert device.answer(live["id"], "approve", second_number) == {"status": "approved"}
    assert _poll(web, second_poll) == {"status": "approved"}


def test_a_push_page_whose_login_another_tab_moved_to_the_app_is_told_to_load_again(push_server, seeded, web,
                                                                                  rp_factory):
    """The other tab switched the login to the authenticator app: the push page's poll answered
    404 "none", which push.js reads as pending, and the page showed a request closed to the phone
    for good. It now answers "restart", and the page that follows asks for the app's code."""
    from fixtures.race import tabs_of

    _user_with_push_and_totp(push_server, seeded)
    rp = rp_factory(seeded.first_party)
    page, _number = _start_on_push(web, rp, seeded)
    poll = page.find(r'data-poll-url="([^"]+)"')
    [other_tab] = tabs_of(web, 1)
    _switch_to_totp(other_tab, page)
    assert _poll(web, poll) == {"status": "restart"}
    assert continue_(web, page).form_with("code")
