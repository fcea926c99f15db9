"""A phone on a bad network sends a request again after its answer was lost on the way: over HTTP
on the live server, what the registration and the answer tell the second copy
(docs/push-protocol.md, sections 3 and 5.3)."""
from __future__ import annotations

import pytest
import requests
from push_testkit import activation_code, issue_activation_uri
from sqlalchemy import func, select

from authenticator.push import keys
from fixtures.oidc import FormBrowser

UNIFORM = {"error": "invalid_device_request"}


class Phone:
    """A device speaking protocol v1 with plain HTTP requests, signing each one itself."""

    def __init__(self, server):
        self.base = server.url + "/factors/push/v1"
        self.key = keys.new_private_key()
        self.id = keys.device_id(self.key)

    def registration(self, code: str) -> str:
        return keys.registration_token(self.key, audience=self.base + "/register", code=code, name="Phone")

    def register(self, token: str):
        return requests.post(self.base + "/register", json={"registration": token}, timeout=10)

    def pending(self) -> list:
        url = self.base + "/challenges"
        answer = requests.get(url, params={"wait": 5}, timeout=20,
                              headers={"Authorization": "Bearer " + keys.request_token(self.key, audience=url)})
        assert answer.status_code == 200, answer.text
        return answer.json()["challenges"]

    def answer_token(self, cid: str, decision: str, number: str | None = None) -> str:
        claims = {"challenge": cid, "decision": decision, **({"number": number} if number else {})}
        return keys.request_token(self.key, audience=f"{self.base}/challenges/{cid}/answer", extra=claims)

    def answer(self, cid: str, token: str):
        return requests.post(f"{self.base}/challenges/{cid}/answer", timeout=10,
                             headers={"Authorization": "Bearer " + token})


def registered_phone(server, email: str) -> Phone:
    phone = Phone(server)
    assert phone.register(phone.registration(activation_code(issue_activation_uri(server, email)))).status_code == 201
    return phone


def push_step(server, rp, seeded) -> str:
    """A browser's login at the push step; the number it shows."""
    web = FormBrowser(server.url)
    web.get(rp.authorization_url())
    number = web.login(seeded.user_email, seeded.password).find(r'data-push-number="(\d+)"')
    assert number, web.page.text[:2000]
    return number


def count(server, what) -> int:
    from idp.db import db
    from idp.models import AuditEvent, Credential

    with server.context():
        if what == "devices":
            return db.session.scalar(select(func.count()).select_from(Credential).where(Credential.factor == "push"))
        return db.session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.event == what))


def test_a_registration_sent_again_after_its_answer_was_lost_is_answered_again(push_server, seeded):
    phone = Phone(push_server)
    code = activation_code(issue_activation_uri(push_server, seeded.user_email))
    first = phone.register(phone.registration(code))
    assert first.status_code == 201 and first.json()["device_id"] == phone.id
    # The same request again (the phone never saw the 201), and a freshly signed one: both are told
    # the device is registered, as it is; nothing is registered, audited or mailed twice.
    for token in (phone.registration(code), phone.registration(code)):
        again = phone.register(token)
        assert (again.status_code, again.json()) == (201, first.json())
    assert count(push_server, "devices") == 1 and count(push_server, "push.device_registered") == 1
    # The code stays spent for any other key.
    other = Phone(push_server)
    assert other.register(other.registration(code)).json() == {"error": "invalid_activation"}


def test_a_registration_sent_again_after_the_device_was_revoked_is_refused(push_server, seeded):
    from idp.db import db
    from idp.models import Credential

    phone = Phone(push_server)
    code = activation_code(issue_activation_uri(push_server, seeded.user_email))
    assert phone.register(phone.registration(code)).status_code == 201
    with push_server.context():
        for row in db.session.scalars(select(Credential).where(Credential.factor == "push")):
            db.session.delete(row)
        db.session.commit()
    again = phone.register(phone.registration(code))
    assert (again.status_code, again.json()) == (400, {"error": "invalid_activation"})


def test_an_answer_sent_again_is_told_what_its_first_one_recorded(push_server, seeded, rp_factory):
    phone = registered_phone(push_server, seeded.user_email)
    other_phone = registered_phone(push_server, seeded.user_email)
    rp = rp_factory(seeded.first_party)

    number = push_step(push_server, rp, seeded)
    cid = phone.pending()[0]["id"]
    token = phone.answer_token(cid, "approve", number)
    assert phone.answer(cid, token).json() == {"status": "approved"}
    # The same bytes again are a replayed token: the uniform 401, whatever the first one did.
    assert (phone.answer(cid, token).status_code, phone.answer(cid, token).json()) == (401, UNIFORM)
    # Signed afresh: closed, and what this phone's answer recorded.
    again = phone.answer(cid, phone.answer_token(cid, "approve", number))
    assert (again.status_code, again.json()) == (409, {"error": "challenge_closed", "answered": {"status": "approved"}})
    # Another phone of the user answered nothing: closed, no more.
    late = other_phone.answer(cid, other_phone.answer_token(cid, "deny"))
    assert (late.status_code, late.json()) == (409, {"error": "challenge_closed"})

    number = push_step(push_server, rp, seeded)
    cid = phone.pending()[0]["id"]
    wrong = f"{(int(number) + 1) % 100:02d}"
    assert phone.answer(cid, phone.answer_token(cid, "approve", wrong)).json() == \
        {"status": "denied", "reason": "wrong_number"}
    again = phone.answer(cid, phone.answer_token(cid, "approve", wrong))
    assert again.json() == {"error": "challenge_closed", "answered": {"status": "denied", "reason": "wrong_number"}}


def test_a_fraud_report_sent_again_is_reported_once(push_server, seeded, rp_factory):
    """The same device's report, sent again after its reply was lost: it counted, and is not
    recorded (audited, suspended, mailed) a second time."""
    phone = registered_phone(push_server, seeded.user_email)
    push_step(push_server, rp_factory(seeded.first_party), seeded)
    cid = phone.pending()[0]["id"]
    assert phone.answer(cid, phone.answer_token(cid, "fraud")).json() == {"status": "fraud"}
    again = phone.answer(cid, phone.answer_token(cid, "fraud"))
    assert (again.status_code, again.json()) == (
        409, {"error": "challenge_closed", "reported": True, "answered": {"status": "fraud"}})
    assert count(push_server, "push.fraud_reported") == 1


@pytest.mark.postgres
def test_two_copies_of_one_registration_at_once_register_one_device_and_both_say_so(postgres_url, _migrated_copies):
    """A client's retry while its first registration is still under way: the second copy waits for
    the first's locks and is then told the device it registered, not `invalid_activation`."""
    from fixtures.oidc import seed, start_server
    from fixtures.race import at_once
    from push_testkit import enable_push

    _migrated_copies.migrate(postgres_url)
    server = enable_push(start_server(postgres_url))
    try:
        seeded = seed(server)
        phone = Phone(server)
        code = activation_code(issue_activation_uri(server, seeded.user_email))
        tokens = [phone.registration(code), phone.registration(code)]
        answers = at_once(2, lambda i: phone.register(tokens[i]))
        assert [a.status_code for a in answers] == [201, 201], [a.text for a in answers]
        assert answers[0].json() == answers[1].json()
        assert count(server, "devices") == 1 and count(server, "push.device_registered") == 1
    finally:
        server.stop()
