"""Push logins in headless Chromium, answered by `idp-authenticator` running as a separate process.

The page polls the login's status URL (push.js) and moves on by itself; these tests never press
Continue. Reaching the relying party's callback is seen in the requests the page makes.
"""
from __future__ import annotations

import time

import pytest

from push_testkit import AppProcess, enable_push, give_device, issue_activation_uri, recovery_codes_received

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def record_requests(page):
    """`page` and `chromium` come from tests/fixtures/browser.py. Record where the browser goes, to
    see it reach the relying party's callback."""
    page.requested = []
    page.on("request", lambda r: page.requested.append(r.url))
    return page


@pytest.fixture
def phone(tmp_path, push_server, seeded):
    """The app, as a separate process, holding a push account for the seeded user."""
    app = AppProcess(tmp_path / "phone")
    app.ok("add", issue_activation_uri(push_server, seeded.user_email))
    recovery_codes_received(push_server, seeded.user_email)  # (these pages go straight to the client)
    return app


def sign_in(page, server, rp, seeded) -> str:
    """Open the RP's authorization URL, type the password; returns the number the page shows."""
    page.goto(rp.authorization_url())
    page.fill("input[name=username]", seeded.user_email)
    page.fill("input[name=password]", seeded.password)
    page.locator("form:has(input[name=password]) [type=submit]").first.click()
    number = page.locator("[data-push-number]").get_attribute("data-push-number")
    assert number and number.isdigit()
    return number


def pending_id(app: AppProcess) -> str:
    import json

    items = json.loads(app.ok("--json", "pending"))
    assert len(items) == 1, items
    return items[0]["id"]


def callbacks(page, rp) -> list:
    return [url for url in page.requested if url.startswith(rp.client["redirect_uri"])]


def wait_for_callback(page, rp, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while not callbacks(page, rp) and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert callbacks(page, rp), f"the page did not move on: {page.url}"
    return rp.validate_id_token(rp.exchange(callbacks(page, rp)[0])["id_token"])


def test_approved_by_the_app_moves_the_page_on_its_own(page, push_server, seeded, phone, rp_factory):
    rp = rp_factory(seeded.first_party)
    number = sign_in(page, push_server, rp, seeded)
    challenge = pending_id(phone)
    phone.ok("approve", "--number", number, "--", challenge)
    answered = time.monotonic()
    claims = wait_for_callback(page, rp)
    assert time.monotonic() - answered < 3
    assert set(claims["amr"]) >= {"pwd", "swk", "user", "mfa"}


def test_denied(page, push_server, seeded, phone, rp_factory):
    rp = rp_factory(seeded.first_party)
    sign_in(page, push_server, rp, seeded)
    phone.ok("deny", "--", pending_id(phone))
    page.wait_for_selector("text=denied")
    assert "data-push-number" not in page.content() or page.locator(".error").count() >= 1


def test_wrong_number(page, push_server, seeded, phone, rp_factory):
    rp = rp_factory(seeded.first_party)
    number = sign_in(page, push_server, rp, seeded)
    wrong = f"{(int(number) + 1) % 100:02d}"
    result = phone.run("approve", "--number", wrong, "--", pending_id(phone))
    assert result.returncode == 26 and "did not match" in result.stderr and len(result.stderr.splitlines()) == 1
    page.wait_for_selector("text=did not match the one shown here")  # the browser says why, as the app does
    assert not callbacks(page, rp)


def test_expired(page, push_server, seeded, phone, rp_factory):
    from datetime import timedelta

    from sqlalchemy import update

    from idp.db import db, utcnow
    from idp.models import FactorChallenge

    rp = rp_factory(seeded.first_party)
    number = sign_in(page, push_server, rp, seeded)
    challenge = pending_id(phone)
    with push_server.context():  # time passes: the 60 s are over
        db.session.execute(update(FactorChallenge).where(FactorChallenge.id == challenge)
                           .values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    posts = []
    page.on("request", lambda r: r.method == "POST" and "/login/" in r.url and posts.append(r.url))
    page.wait_for_selector("text=expired")
    page.wait_for_timeout(2000)
    assert len(posts) == 1, f"the page must not re-post in a loop: {posts}"
    late = phone.run("approve", "--number", number, "--", challenge)
    assert late.returncode != 0 and "no pending request" in late.stderr


def test_replayed_approval_and_foreign_answers_change_nothing(page, push_server, seeded, phone, rp_factory):
    """An approval replayed from an earlier login, another device's key, another user's device:
    the page keeps waiting, and the real approval still works afterwards."""
    import requests

    from authenticator.push import keys
    from authenticator.push.client import PushClient
    from idp.db import db
    from idp.models import User

    rp = rp_factory(seeded.first_party)
    intruder = give_device(push_server, seeded.user_email)  # a second device of alice, for the replay
    number = sign_in(page, push_server, rp, seeded)
    challenge = pending_id(phone)
    endpoint = push_server.url + "/factors/push/v1"
    url = f"{endpoint}/challenges/{challenge}/answer"
    claims = {"challenge": challenge, "decision": "approve", "number": number}
    # 1. A request replayed: accepted once (here as a deny of a throw-away check), refused after.
    token = keys.request_token(intruder.key, audience=endpoint + "/challenges")
    assert requests.get(endpoint + "/challenges", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert requests.get(endpoint + "/challenges", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    # 2. Signed by a key the server does not know, claiming the intruder's device id.
    stranger = keys.new_private_key()
    forged = keys.sign_jwt(stranger, {"alg": "ES256", "kid": keys.device_id(intruder.key)},
                           {"iss": keys.device_id(intruder.key), "aud": url, "iat": int(time.time()),
                            "exp": int(time.time()) + 60, "jti": "forged-jti-0123456789", **claims})
    assert requests.post(url, headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    # 3. Another user's device answering alice's challenge.
    with push_server.context():
        bob = User(public_id="bob-browser-test", org_id=seeded.org_id, email="bob@acme.test", name="Bob")
        db.session.add(bob)
        db.session.commit()
    bobs = give_device(push_server, "bob@acme.test")
    with pytest.raises(Exception, match="no pending request"):
        bobs.answer(challenge, "approve", number)
    time.sleep(1.5)
    assert page.locator("[data-push-number]").count() == 1, "the page is still waiting"
    phone.ok("approve", "--number", number, "--", challenge)
    wait_for_callback(page, rp)
    assert isinstance(intruder, PushClient)


def test_revoked_device(page, push_server, seeded, phone, rp_factory):
    from idp.factors import directory
    from idp.factors.registry import current_registry

    rp = rp_factory(seeded.first_party)
    number = sign_in(page, push_server, rp, seeded)
    challenge = pending_id(phone)
    with push_server.context():
        user = directory.find_user_by_email(seeded.user_email)
        registry = current_registry()
        for credential in registry.get("push").store.list(user):
            registry.remove_credential(user, credential.id)
        directory.commit()
    result = phone.run("approve", "--number", number, "--", challenge)
    assert result.returncode != 0 and "no longer accepts this device" in result.stderr
    # Its challenge was cancelled: the page stops waiting (push is no longer among the user's factors).
    page.wait_for_selector("[data-push-number]", state="detached")
    assert not callbacks(page, rp)


def test_two_instances_browser_on_one_answer_on_the_other(page, push_server, seeded, tmp_path, rp_factory):
    """Two app instances on one database: the browser waits on A, the app talks to B only."""
    from fixtures.oidc import start_server

    other = enable_push(start_server(push_server.database_url))
    try:
        app = AppProcess(tmp_path / "phone-b")
        app.ok("add", issue_activation_uri(other, seeded.user_email))
        recovery_codes_received(other, seeded.user_email)
        rp = rp_factory(seeded.first_party)
        number = sign_in(page, push_server, rp, seeded)
        app.ok("approve", "--number", number, "--", pending_id(app))
        answered = time.monotonic()
        wait_for_callback(page, rp)
        assert time.monotonic() - answered < 3
    finally:
        other.stop()


def test_a_page_whose_request_another_tab_replaced_shows_the_new_number(page, push_server, seeded, phone,
                                                                         rp_factory, monkeypatch):
    """Two tabs of one login on the app's code page, each clicking "send a push instead": the
    second tab's request replaces the first's. The first tab's script kept polling, followed the
    login's new request and still showed the old number, the one the user then typed on the phone:
    a wrong number. Its poll now says "restart", the page loads again with the new request's
    number, and the phone's approval with that number signs in. The second tab holds the login's
    one long poll (here: every poll is a plain one), so the first tab's polls are plain ones, which
    read the login's request afresh each time."""
    import contextlib
    import os

    from idp.factors.directory import commit, find_user_by_email
    from idp.login.steps import second_factor

    with push_server.context():  # an authenticator app too, newer than the phone: the login begins with it
        push_server.app.extensions["idp.factors"].get("totp").store.create(
            find_user_by_email(seeded.user_email), label="App", secret=os.urandom(20),
            public={"digits": 6, "algorithm": "SHA1", "period": 30, "imported": True})
        commit()
    monkeypatch.setattr(second_factor, "one_wait_per", lambda key: contextlib.nullcontext(False))
    rp = rp_factory(seeded.first_party)
    page.goto(rp.authorization_url())
    page.fill("input[name=username]", seeded.user_email)
    page.fill("input[name=password]", seeded.password)
    page.locator("form:has(input[name=password]) [type=submit]").first.click()
    send_push = "form[action$='/factor/push'] [type=submit]"
    page.wait_for_selector(send_push)
    other = page.context.new_page()
    other.goto(page.url)
    page.locator(send_push).click()
    first = page.locator("[data-push-wait]").get_attribute("data-push-challenge")
    other.locator(send_push).click()
    second = other.locator("[data-push-wait]").get_attribute("data-push-challenge")
    number = other.locator("[data-push-number]").get_attribute("data-push-number")
    other.close()
    assert first != second
    page.wait_for_selector(f"[data-push-challenge='{second}']")
    assert page.locator("[data-push-number]").get_attribute("data-push-number") == number
    phone.ok("approve", "--number", number, "--", pending_id(phone))
    wait_for_callback(page, rp)
