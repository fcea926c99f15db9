"""A push login end to end over HTTP: a form-posting browser on the live server, the device answering
through protocol v1 (the app's own client), the ID token's amr."""
from __future__ import annotations

import requests

from fixtures.oidc import FormBrowser
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
    # Suspended: the next login does not offer push any more.
    other = FormBrowser(push_server.url)
    other.get(rp.authorization_url())
    page = other.login(seeded.user_email, seeded.password)
    assert "data-push-number" not in page.text


def test_push_login_wrong_number(push_server, seeded, web, rp_factory):
    device = give_device(push_server, seeded.user_email)
    rp = rp_factory(seeded.first_party)
    page, number, _poll = start(web, rp, seeded)
    wrong = f"{(int(number) + 1) % 100:02d}"
    challenge = device.pending()[0]
    assert device.answer(challenge["id"], "approve", wrong)["reason"] == "wrong_number"
    continue_(web, page)
    assert web.last_redirect is None


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
