"""The device authorization grant (RFC 8628; idp.oidc.device_flow, idp.login.device_pages): a
device asks for codes, a person signs it in at /device in a browser (the real pages: code,
confirmation, password, second factor, consent), and the device's polls get what RFC 8628 3.5
says, then the tokens once. ID tokens are checked against the JWKS by the independent client's
joserfc, as for the code flow."""
from __future__ import annotations

import time

import pyotp
import pytest
import requests
from sqlalchemy import select, update

from fixtures.device import GRANT, allow_device_grant, approved_device, ask_for_codes, confirm, poll
from fixtures.oidc import FormBrowser, password_login
from fixtures.totp import enrol_totp_during_login

def forget_last_poll(server, device_code: str) -> None:
    """As if the device had waited its interval (the tests do not sleep 5 seconds a poll)."""
    from idp.db import db
    from idp.models import DeviceAuthorization
    from idp.security.tokens import sha256_hex

    with server.context():
        db.session.execute(update(DeviceAuthorization)
                           .where(DeviceAuthorization.device_code_hash == sha256_hex(device_code))
                           .values(last_polled_at=None))
        db.session.commit()


def device_row(server, device_code: str):
    from idp.db import db
    from idp.models import DeviceAuthorization
    from idp.security.tokens import sha256_hex

    with server.context():
        row = db.session.scalar(select(DeviceAuthorization)
                                .where(DeviceAuthorization.device_code_hash == sha256_hex(device_code)))
        db.session.expunge_all()
        return row


def validate_id_token(rp, id_token: str, client_id: str) -> dict:
    from joserfc import jwt

    token = jwt.decode(id_token, rp.jwks(), algorithms=["ES256", "RS256"])
    jwt.JWTClaimsRegistry(iss={"essential": True, "value": rp.issuer}, aud={"essential": True, "value": client_id},
                          exp={"essential": True}, iat={"essential": True}).validate(token.claims)
    return dict(token.claims)


def test_discovery_names_the_endpoint_and_the_grant(live_server):
    document = requests.get(f"{live_server.url}/.well-known/openid-configuration", timeout=10).json()
    assert document["device_authorization_endpoint"] == f"{live_server.url}/oauth/device_authorization"
    assert GRANT in document["grant_types_supported"]


@pytest.mark.parametrize("kind", ["first_party", "public"])
def test_a_device_is_signed_in_by_password_and_gets_tokens_once(live_server, seeded, rp_factory, kind):
    client = getattr(seeded, kind)
    allow_device_grant(live_server, client)
    answer = ask_for_codes(live_server, client, scope="openid email offline_access")
    assert answer.status_code == 200, answer.text
    assert answer.headers["Cache-Control"] == "no-store"
    codes = answer.json()
    assert codes["verification_uri"] == f"{live_server.url}/device"
    assert codes["verification_uri_complete"] == f"{live_server.url}/device?user_code={codes['user_code']}"
    assert codes["interval"] == 5 and codes["expires_in"] == 600
    assert len(codes["user_code"]) == 9 and codes["user_code"][4] == "-"

    pending = poll(live_server, client, codes["device_code"])
    assert (pending.status_code, pending.json()["error"]) == (400, "authorization_pending")
    too_soon = poll(live_server, client, codes["device_code"])
    assert too_soon.json()["error"] == "slow_down"
    assert device_row(live_server, codes["device_code"]).interval == 10  # RFC 8628 3.5: 5 seconds more

    browser = FormBrowser(live_server.url)
    confirm(browser, codes["user_code"], via_link=(kind == "public"))
    page = browser.login(seeded.user_email, seeded.password)
    if kind == "public":  # a third-party application: the person consents, as at /authorize
        assert "wants to access your account" in page.text
        page = browser.consent("allow")
    assert page.url.endswith("/device/approved") and "Your device is signed in" in page.text

    # What the approval is stored under is no code: the code grant finds nothing by it, not even
    # from its preimage (which whoever read the device code's hash could compute).
    from idp.security.tokens import sha256_hex

    stored_as = rp_factory(client).token_request({"grant_type": "authorization_code", "redirect_uri": client["redirect_uri"],
                                                  "code": "device_code:" + sha256_hex(codes["device_code"])})
    assert (stored_as.status_code, stored_as.json()["error"]) == (400, "invalid_grant")

    forget_last_poll(live_server, codes["device_code"])
    granted = poll(live_server, client, codes["device_code"])
    assert granted.status_code == 200, granted.text
    tokens = granted.json()
    assert tokens["token_type"] == "Bearer" and tokens["refresh_token"] and tokens["scope"] == "openid email offline_access"
    rp = rp_factory(client)
    claims = validate_id_token(rp, tokens["id_token"], client["client_id"])
    assert claims["amr"] == ["pwd"] and claims["email"] == seeded.user_email and "nonce" not in claims
    assert claims["sid"] and claims["auth_time"] <= time.time()
    assert rp.userinfo(tokens["access_token"]).json()["email"] == seeded.user_email
    refreshed = rp.token_request({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text

    # Polled again (a device code used twice was stolen): refused, and what it got is revoked.
    forget_last_poll(live_server, codes["device_code"])
    again = poll(live_server, client, codes["device_code"])
    assert (again.status_code, again.json()["error"]) == (400, "invalid_grant")
    assert rp.userinfo(tokens["access_token"]).status_code == 401
    assert rp.userinfo(refreshed.json()["access_token"]).status_code == 401


def test_the_second_factor_and_the_session_apply_to_a_device_login(live_server, seeded, rp_factory, web):
    client = seeded.first_party
    allow_device_grant(live_server, client)
    rp = rp_factory(client)
    secret, _codes = enrol_totp_during_login(web, rp, seeded)  # signed in on `web`, with TOTP

    # Another browser: the password, then the authenticator app's code.
    codes = ask_for_codes(live_server, client).json()
    browser = FormBrowser(live_server.url)
    confirm(browser, codes["user_code"])
    page = browser.login(seeded.user_email, seeded.password)
    page = browser.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).at(int(time.time()) + 30)})
    assert page.url.endswith("/device/approved"), page.text[:2000]
    tokens = poll(live_server, client, codes["device_code"]).json()
    claims = validate_id_token(rp, tokens["id_token"], client["client_id"])
    assert claims["amr"] == ["pwd", "otp", "mfa"] and claims["acr"] == "urn:idp:acr:mfa"

    # The browser that signed in with both steps is enough for the next device: no login asked.
    codes = ask_for_codes(live_server, client).json()
    page = confirm(web, codes["user_code"])
    assert page.url.endswith("/device/approved"), page.text[:2000]
    tokens = poll(live_server, client, codes["device_code"]).json()
    assert validate_id_token(rp, tokens["id_token"], client["client_id"])["amr"] == ["pwd", "otp", "mfa"]

    # That session is ended (from the security page of another browser, say): the device's
    # tokens, got through it, end with it.
    from idp import sessions
    from idp.db import db
    from idp.models import User

    sid = validate_id_token(rp, tokens["id_token"], client["client_id"])["sid"]
    with live_server.context():
        user = db.session.scalar(select(User).where(User.email == seeded.user_email))
        assert sessions.end(user, sid, actor_id=user.id, actor=user.email, by="self") == 1
        db.session.commit()
    assert rp.userinfo(tokens["access_token"]).status_code == 401


def test_the_confirmation_names_the_account_a_session_would_sign_in_and_offers_another(live_server, seeded,
                                                                                        rp_factory):
    """On a shared computer someone else may still be signed in: the confirmation says whose
    account the device would get, and "Use another account" asks for a login whatever the
    session; the end page offers to sign out."""
    client = seeded.first_party
    allow_device_grant(live_server, client)
    browser = FormBrowser(live_server.url)
    codes = ask_for_codes(live_server, client).json()
    page = browser.get(f"/device?user_code={codes['user_code']}")
    page = browser.submit(page.form_with("user_code"))
    assert "data-signs-in-as" not in page.text  # nobody signed in: the login asks who

    password_login(browser, rp_factory(client), seeded.user_email, seeded.password)
    page = browser.get(f"/device?user_code={codes['user_code']}")
    page = browser.submit(page.form_with("user_code"))
    assert "data-signs-in-as" in page.text and f"Continue as {seeded.user_email}" in page.text
    page = browser.submit(page.form_with("action"), button=("action", "another_account"))
    page = browser.login(seeded.admin_email, seeded.password)
    assert page.url.endswith("/device/approved") and "/logout" in page.text, page.text[:2000]
    with live_server.context():
        from idp.db import db
        from idp.models import User

        admin_id = db.session.scalar(select(User.id).where(User.email == seeded.admin_email))
    assert device_row(live_server, codes["device_code"]).user_id == admin_id


def test_denied_at_the_confirmation_or_at_consent_the_device_is_told_access_denied(live_server, seeded, rp_factory):
    client = seeded.public
    allow_device_grant(live_server, client)
    codes = ask_for_codes(live_server, client).json()
    page = confirm(FormBrowser(live_server.url), codes["user_code"], action="deny")
    assert page.url.endswith("/device/denied")
    assert poll(live_server, client, codes["device_code"]).json()["error"] == "access_denied"
    assert device_row(live_server, codes["device_code"]).status == "denied"

    codes = ask_for_codes(live_server, client).json()
    browser = FormBrowser(live_server.url)
    confirm(browser, codes["user_code"])
    browser.login(seeded.user_email, seeded.password)
    page = browser.consent("deny")
    assert page.url.endswith("/device/denied")
    assert poll(live_server, client, codes["device_code"]).json()["error"] == "access_denied"
    row = device_row(live_server, codes["device_code"])
    assert row.status == "denied" and row.user_id is not None

    # A browser signed in: its "Deny" at the confirmation is its user's.
    password_login(browser, rp_factory(seeded.first_party), seeded.user_email, seeded.password)
    codes = ask_for_codes(live_server, client).json()
    confirm(browser, codes["user_code"], action="deny")
    assert device_row(live_server, codes["device_code"]).user_id == row.user_id
    with live_server.context():
        from sqlalchemy import select

        from idp.db import db
        from idp.models import AuditEvent

        denials = db.session.execute(select(AuditEvent.org_id, AuditEvent.subject_id, AuditEvent.details)
                                     .where(AuditEvent.event == "device.denied").order_by(AuditEvent.id)).all()
    assert [(org, subject) for org, subject, _ in denials] == [
        (None, None), (seeded.org_id, row.user_id), (seeded.org_id, row.user_id)]
    assert all(details["client_id"] == client["client_id"] for *_, details in denials)


def test_a_used_expired_or_unknown_user_code_is_refused_with_the_form_again(live_server, seeded):
    from idp.db import db
    from idp.models import DeviceAuthorization

    client = seeded.first_party
    allow_device_grant(live_server, client)
    browser = FormBrowser(live_server.url)
    for typed in ("BCDF-GHJK", "not a code", "A" * 32):
        page = browser.get("/device")
        page = browser.submit(page.form_with("user_code"), {"user_code": typed})
        assert page.status == 400 and "That code is not valid" in page.text
    codes = ask_for_codes(live_server, client).json()
    with live_server.context():
        db.session.execute(update(DeviceAuthorization).values(expires_at=DeviceAuthorization.created_at))
        db.session.commit()
    page = browser.get(f"/device?user_code={codes['user_code']}")
    page = browser.submit(page.form_with("user_code"))
    assert page.status == 400 and "That code is not valid" in page.text
    forget_last_poll(live_server, codes["device_code"])
    assert poll(live_server, client, codes["device_code"]).json()["error"] == "expired_token"


def test_two_browsers_confirming_one_code_approve_it_once(live_server, seeded, rp_factory):
    client = seeded.first_party
    allow_device_grant(live_server, client)
    codes = ask_for_codes(live_server, client).json()
    first, second = FormBrowser(live_server.url), FormBrowser(live_server.url)
    confirm(first, codes["user_code"])
    confirm(second, codes["user_code"])
    assert first.login(seeded.user_email, seeded.password).url.endswith("/device/approved")
    page = second.login(seeded.admin_email, seeded.password)
    assert not page.url.endswith("/device/approved") and "no longer valid" in page.text
    tokens = poll(live_server, client, codes["device_code"]).json()
    claims = validate_id_token(rp_factory(client), tokens["id_token"], client["client_id"])
    assert claims["email"] == seeded.user_email


def test_the_device_endpoints_refuse_what_rfc_8628_and_6749_refuse(live_server, seeded):
    client, other = seeded.first_party, seeded.third_party
    # Not registered for the grant: unauthorized_client, at both endpoints.
    refused = ask_for_codes(live_server, client)
    assert (refused.status_code, refused.json()["error"]) == (400, "unauthorized_client")
    allow_device_grant(live_server, client)
    allow_device_grant(live_server, other)
    codes = ask_for_codes(live_server, client).json()
    # A wrong secret: invalid_client, 401.
    wrong = requests.post(f"{live_server.url}/oauth/device_authorization", auth=(client["client_id"], "nope"),
                          timeout=10)
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
    # Another client's device code, a made-up one, none at all.
    assert poll(live_server, other, codes["device_code"]).json()["error"] == "invalid_grant"
    assert poll(live_server, client, "made-up").json()["error"] == "invalid_grant"
    missing = requests.post(f"{live_server.url}/oauth/token", data={"grant_type": GRANT},
                            auth=(client["client_id"], client["client_secret"]), timeout=10)
    assert (missing.status_code, missing.json()["error"]) == (400, "invalid_request")
    missing_and_wrong = requests.post(f"{live_server.url}/oauth/token", data={"grant_type": GRANT},
                                      auth=(client["client_id"], "nope"), timeout=10)
    assert (missing_and_wrong.status_code, missing_and_wrong.json()["error"]) == (401, "invalid_client")
    twice = requests.post(f"{live_server.url}/oauth/token", auth=(client["client_id"], client["client_secret"]),
                          data=[("grant_type", GRANT), ("device_code", codes["device_code"]), ("device_code", "x")],
                          timeout=10)
    assert (twice.status_code, twice.json()["error"]) == (400, "invalid_request")  # RFC 6749 3.2
    # client_id sent empty beside Basic credentials: not sent (RFC 6749 3.1).
    empty_id = requests.post(f"{live_server.url}/oauth/device_authorization", data={"client_id": ""},
                             auth=(client["client_id"], client["client_secret"]), timeout=10)
    assert empty_id.status_code == 200, empty_id.text
    # A scope the client may not have is left out, not refused (RFC 6749 3.3).
    narrowed = ask_for_codes(live_server, client, scope="openid made-up").json()
    assert device_row(live_server, narrowed["device_code"]).scope == "openid"
    # The device code is not an authorization code.
    as_code = requests.post(f"{live_server.url}/oauth/token", auth=(client["client_id"], client["client_secret"]),
                            data={"grant_type": "authorization_code", "code": codes["device_code"],
                                  "redirect_uri": client["redirect_uri"]}, timeout=10)
    assert (as_code.status_code, as_code.json()["error"]) == (400, "invalid_grant")


def test_a_user_code_already_taken_is_drawn_again(live_server, seeded, monkeypatch):
    from idp.oidc import device_flow

    draws = iter(["BCDFGHJK", "BCDFGHJK", "ZXWVTSRQ"])
    monkeypatch.setattr(device_flow, "new_user_code", lambda: next(draws))
    allow_device_grant(live_server, seeded.first_party)
    first = ask_for_codes(live_server, seeded.first_party).json()
    second = ask_for_codes(live_server, seeded.first_party).json()
    assert (first["user_code"], second["user_code"]) == ("BCDF-GHJK", "ZXWV-TSRQ")


@pytest.fixture
def strict_server(migrated_database_url):
    from fixtures.oidc import start_server

    server = start_server(migrated_database_url, {"ratelimit.login_posts_per_ip": "3 per minute"})
    yield server
    server.stop()


def test_codes_asked_for_and_typed_are_limited_per_address(strict_server):
    """Each device authorization is a row a public client's id alone can ask for, and each typed
    code a guess: both limited per address as the login forms are."""
    from fixtures.oidc import seed

    client = seed(strict_server).first_party
    allow_device_grant(strict_server, client)
    answers = [ask_for_codes(strict_server, client) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[-1].json()["error"] == "too_many_attempts" and int(answers[-1].headers["Retry-After"]) > 0
    browser = FormBrowser(strict_server.url)
    statuses = []
    for _ in range(4):
        page = browser.get("/device")
        statuses.append(browser.submit(page.form_with("user_code"), {"user_code": "BCDF-GHJK"}).status)
    assert statuses == [400, 400, 400, 429]


@pytest.fixture
def guarded_server(migrated_database_url):
    from fixtures.oidc import start_server

    server = start_server(migrated_database_url, {"ratelimit.factor_ip_failures_before_lockout": 3})
    yield server
    server.stop()


def test_wrong_codes_lock_the_address_out_in_every_worker(guarded_server):
    """The form's request rate is counted per worker without Redis: wrong codes are also counted
    where every worker sees them (idp.lockout), with the per-address limit of second-factor
    codes; once locked, even a right code waits."""
    from fixtures.oidc import seed

    client = seed(guarded_server).first_party
    allow_device_grant(guarded_server, client)
    right = ask_for_codes(guarded_server, client).json()["user_code"]
    browser = FormBrowser(guarded_server.url)
    statuses = []
    for typed in ("BCDF-GHJK", "BCDF-GHJL", "BCDF-GHJM", right):
        page = browser.get("/device")
        statuses.append(browser.submit(page.form_with("user_code"), {"user_code": typed}).status)
    assert statuses == [400, 400, 400, 429]
    with guarded_server.context():
        from idp.db import db
        from idp.models import FailureCounter

        counters = db.session.query(FailureCounter).all()
        assert [c.key.split(":")[:2] for c in counters] == [["device", "ip"]] and counters[0].locked_until


def test_wrong_codes_posted_at_once_get_no_more_look_ups_than_the_limit(guarded_server):
    """Twenty wrong codes from one address, posted together: each is counted before its look-up
    (idp.lockout.reserve), so three are looked up and the rest wait, rather than all passing a
    check that none of them had failed yet. A right code counts as no failure."""
    from fixtures.oidc import seed
    from fixtures.race import at_once

    client = seed(guarded_server).first_party
    allow_device_grant(guarded_server, client)
    right = ask_for_codes(guarded_server, client).json()["user_code"]
    browser = FormBrowser(guarded_server.url)
    page = browser.get("/device")
    assert browser.submit(page.form_with("user_code"), {"user_code": right}).status == 200

    def failures() -> int:
        with guarded_server.context():
            from idp.db import db
            from idp.models import FailureCounter

            return sum(c.failures for c in db.session.query(FailureCounter).all())

    assert failures() == 0
    browsers = [FormBrowser(guarded_server.url) for _ in range(20)]
    forms = [b.get("/device").form_with("user_code") for b in browsers]
    statuses = at_once(20, lambda i: browsers[i].submit(forms[i], {"user_code": f"BCDF-GH{'JKLMNPQRST'[i % 10]}"
                                                                                f"{'BCDFGHJKLM'[i // 10]}"}).status)
    assert sorted(statuses) == [400] * 3 + [429] * 17, statuses
    assert failures() == 3


def test_a_device_login_cancelled_at_the_password_page_tells_the_device_access_denied(live_server, seeded):
    client = seeded.first_party
    allow_device_grant(live_server, client)
    codes = ask_for_codes(live_server, client).json()
    browser = FormBrowser(live_server.url)
    page = confirm(browser, codes["user_code"])
    cancel = next(form for form in page.forms() if form["action"].endswith("/cancel"))
    assert browser.submit(cancel).url.endswith("/device/denied")
    assert poll(live_server, client, codes["device_code"]).json()["error"] == "access_denied"
    row = device_row(live_server, codes["device_code"])
    assert (row.status, row.user_id) == ("denied", None)  # nobody had signed in: no one's event


def test_a_no_said_after_another_browser_approved_is_not_reported_as_a_denial(live_server, seeded, monkeypatch):
    """Two browsers at one code: one approves while the other's "Deny" is between its look-up of
    the pending code and its decision. The device is signed in, so the second browser is told
    the code is no longer valid, not that the device was denied."""
    from idp.oidc import device_flow

    client = seeded.first_party
    allow_device_grant(live_server, client)
    codes = ask_for_codes(live_server, client).json()
    late = FormBrowser(live_server.url)
    page = late.get(f"/device?user_code={codes['user_code']}")
    confirmation = late.submit(page.form_with("user_code"))
    assert "this same code: " + codes["user_code"] in confirmation.text
    with live_server.context():
        read_before = device_flow.pending(codes["user_code"])
    approving = FormBrowser(live_server.url)
    confirm(approving, codes["user_code"])
    assert approving.login(seeded.user_email, seeded.password).url.endswith("/device/approved")
    monkeypatch.setattr(device_flow, "pending", lambda typed: read_before)  # the late browser's read came first
    page = late.submit(confirmation.form_with("action"), button=("action", "deny"))
    assert page.url.endswith("/login/expired") and device_row(live_server, codes["device_code"]).status == "approved"


def test_an_approval_whose_sign_in_ended_before_the_first_poll_is_access_denied(live_server, seeded):
    """The user signed out everywhere (a new password, say) between the approval and the device's
    first poll: the approval was revoked with the session's codes, and the device is told it was
    refused, not that its code was used already."""
    from idp import users
    from idp.db import db

    client = seeded.first_party
    codes = approved_device(live_server, seeded, client)
    with live_server.context():
        users.sign_out_everywhere(device_row(live_server, codes["device_code"]).user_id)
        db.session.commit()
    forget_last_poll(live_server, codes["device_code"])
    ended = poll(live_server, client, codes["device_code"])
    assert (ended.status_code, ended.json()["error"]) == (400, "access_denied"), ended.text


def test_an_approval_whose_browser_signed_out_before_the_first_poll_is_access_denied(live_server, seeded):
    """The same when the approving browser itself signs out (/logout): the approval was a code of
    that session's, withdrawn with it."""
    client = seeded.first_party
    allow_device_grant(live_server, client)
    codes = ask_for_codes(live_server, client).json()
    browser = FormBrowser(live_server.url)
    confirm(browser, codes["user_code"])
    assert browser.login(seeded.user_email, seeded.password).url.endswith("/device/approved")
    browser.submit(browser.get("/logout").form_with("csrf_token"))
    ended = poll(live_server, client, codes["device_code"])
    assert (ended.status_code, ended.json()["error"]) == (400, "access_denied"), ended.text


def test_a_user_required_to_use_two_factors_sets_one_up_at_the_device_login(live_server, seeded, rp_factory):
    """The 2FA policy applies at /device as at /authorize: a session on the password alone no
    longer answers the device once 2FA is required, and a required user with no second factor
    yet sets one up (a wrong code first) before the device is signed in, with `mfa` in its tokens."""
    from idp.db import db
    from idp.models import User

    client = seeded.first_party
    allow_device_grant(live_server, client)
    browser = FormBrowser(live_server.url)
    password_login(browser, rp_factory(client), seeded.user_email, seeded.password)
    with live_server.context():
        db.session.execute(update(User).where(User.email == seeded.user_email).values(mfa_setting="required"))
        db.session.commit()
    codes = ask_for_codes(live_server, client).json()
    page = browser.get(f"/device?user_code={codes['user_code']}")
    page = browser.submit(page.form_with("user_code"))
    assert "data-signs-in-as" not in page.text  # that session is not enough any more
    page = browser.submit(page.form_with("action"), button=("action", "allow"))
    page = browser.login(seeded.user_email, seeded.password)
    page = browser.submit([f for f in page.forms() if f["action"].endswith("/factor/totp")][0])
    secret = page.find(r'<code>([A-Z2-7 ]+)</code>').replace(" ", "")
    page = browser.submit(page.form_with("code"), {"code": "000000" if pyotp.TOTP(secret).now() != "000000"
                                                   else "111111", "label": "Phone"})
    assert page.status == 400 and not page.url.endswith("/device/approved")
    assert poll(live_server, client, codes["device_code"]).json()["error"] == "authorization_pending"
    page = browser.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).now(), "label": "Phone"})
    assert "data-recovery-codes" in page.text, page.text[:2000]
    page = browser.submit(page.forms()[0])
    assert page.url.endswith("/device/approved"), page.text[:2000]
    forget_last_poll(live_server, codes["device_code"])
    tokens = poll(live_server, client, codes["device_code"]).json()
    claims = validate_id_token(rp_factory(client), tokens["id_token"], client["client_id"])
    assert claims["amr"] == ["pwd", "otp", "mfa"] and claims["acr"] == "urn:idp:acr:mfa"


def test_a_typed_code_is_read_whatever_its_case_separators_or_width(live_server, seeded):
    """RFC 8628 6.1: lower case, no dash, spaces, another dash, a full-width keyboard's letters
    (an East Asian input method): the same code. A look-alike letter of another script is not."""
    client = seeded.first_party
    allow_device_grant(live_server, client)
    code = ask_for_codes(live_server, client).json()["user_code"]
    full_width = "".join(chr(ord(ch) + 0xFEE0) for ch in code)  # ＢＣＤＦ－ＧＨＪＫ
    browser = FormBrowser(live_server.url)
    for typed in (code.lower(), code.replace("-", ""), f" {code[:2]} {code[2:]} ", code.replace("-", "\u2014"),
                  full_width):
        page = browser.submit(browser.get("/device").form_with("user_code"), {"user_code": typed})
        assert page.status == 200 and f"this same code: {code}" in page.text, (typed, page.text[:1000])
    cyrillic = {"B": "\u0412", "C": "\u0421", "H": "\u041d", "K": "\u041a", "M": "\u041c", "P": "\u0420",
                "T": "\u0422", "X": "\u0425"}
    look_alike = "".join(cyrillic.get(ch, ch) for ch in code)
    if look_alike != code:
        page = browser.submit(browser.get("/device").form_with("user_code"), {"user_code": look_alike})
        assert page.status == 400 and "That code is not valid" in page.text
