"""The push factor's surroundings: settings, the page it renders, its CLI command, the wake-ups,
and the two races (answers, activation codes) on PostgreSQL."""
from __future__ import annotations

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from click.testing import CliRunner
from flask_babel import force_locale

from authenticator.push import keys
from idp.factors import FactorMisconfigured
from fixtures import servers
from idp_plugins.push.factor import PushFactor
from idp_plugins.push.settings import PushSettings
from idp_plugins.push.wake import Waker
from push_testkit import Device, activation_code, context, enrol_device, enrolment_context, push_factor


@pytest.mark.parametrize("bad", [{"digits": 1}, {"digits": 7}, {"digits": "2"}, {"long_poll_max_wait": 60},
                                 {"transport": "carrier-pigeon"}, {"transport": "webhook"},
                                 {"max_challenges": 0}, {"challenge_ttl": 5}, {"window": 0},
                                 {"window": 86401}])
def test_bad_settings_are_an_operator_error(bad):
    with pytest.raises(FactorMisconfigured):
        PushSettings.from_mapping(bad)


def test_defaults():
    s = PushSettings.from_mapping({})
    assert (s.digits, s.challenge_ttl, s.activation_ttl, s.max_challenges, s.window) == (2, 60, 600, 5, 600)


def test_number_has_the_configured_digits(factor_app, factor_user):
    from idp.factors.registry import current_registry

    push = push_factor()
    push.push_settings = PushSettings.from_mapping({"digits": 6})
    client = factor_app.test_client()
    enrol_device(client, push, factor_user)
    step = push.begin_challenge(factor_user, context(push))
    assert len(step.view["number"]) == 6 and step.view["number"].isdigit()
    assert current_registry().get("push") is push


def test_challenge_page_shows_the_number_and_context(factor_app, factor_user):
    from flask import render_template

    push = push_factor()
    enrol_device(factor_app.test_client(), push, factor_user)
    step = push.begin_challenge(factor_user, context(push))
    with factor_app.test_request_context("/login/x"):
        html = render_template("factors/push/challenge.html", view=step.view, poll_url="/login/x/poll",
                               action="/login/x", version=1)
    assert f'data-push-number="{step.view["number"]}"' in html
    assert "Payroll" in html and "203.0.113.7" in html
    assert 'data-poll-url="/login/x/poll"' in html and "/factors/push/static/push.js" in html
    assert "<script>" not in html  # CSP script-src 'self': no inline script
    # When the request was made, in the page's language (idp.template_i18n.utc), not strftime's "14:05 UTC".
    assert re.search(r"<dd>[A-Z][a-z]{2} \d{1,2}, \d{4}, \d{1,2}:\d\d\s[AP]M UTC</dd>", html), html
    with factor_app.test_request_context("/login/x"), force_locale("fr"):
        french = render_template("factors/push/challenge.html", view=step.view, poll_url="/login/x/poll",
                                 action="/login/x", version=1)
    assert re.search(r"<dd>\d{1,2} [a-zéû]{3,4}\.? \d{4}, \d\d:\d\d UTC</dd>", french), french


def test_enrol_page_shows_the_qr_and_the_uri(factor_app, factor_user):
    from flask import render_template

    push = push_factor()
    with factor_app.test_request_context("/login/x"):
        step = push.begin_enrolment(factor_user, enrolment_context(push))
        html = render_template("factors/push/enrol.html", view=step.view, action="/login/x", version=1)
    assert "<svg" in html and "idp-push://activate?v=1" in html.replace("&amp;", "&")
    assert step.view["status_url"].startswith("/factors/push/v1/activation/")
    assert "expires in 10 minutes" in html


@pytest.mark.parametrize("ttl, told", [(3600, "expires in 1 hour."), (2 * 86400, "expires in 2 days."),
                                       (90, "expires in 1 minute.")])
def test_the_enrol_page_tells_the_activation_codes_own_lifetime(factor_app, factor_user, ttl, told):
    import dataclasses

    from flask import render_template

    push = push_factor()
    push.push_settings = dataclasses.replace(push.push_settings, activation_ttl=ttl)
    with factor_app.test_request_context("/login/x"):
        step = push.begin_enrolment(factor_user, enrolment_context(push))
        html = render_template("factors/push/enrol.html", view=step.view, action="/login/x", version=1)
    assert told in html


def test_cli_activate_prints_a_working_uri(factor_app, factor_user, tmp_path):
    push = push_factor()
    command = PushFactor.cli_command()
    runner = CliRunner()
    png = tmp_path / "qr.png"
    result = runner.invoke(command, ["activate", "--user", factor_user.email, "--expires-in", "1h", "--json",
                                     "--png", str(png)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["activation_uri"].startswith("idp-push://activate?v=1&") and data["expires_at"].endswith("Z")
    import zxingcpp
    from PIL import Image

    decoded = zxingcpp.read_barcodes(Image.open(png))
    assert decoded and decoded[0].text == data["activation_uri"]
    device = Device(factor_app.test_client())
    assert device.register(activation_code(data["activation_uri"])).status_code == 201
    assert push.store.count(factor_user) == 1

    plain = runner.invoke(command, ["activate", "--user", factor_user.email])
    assert plain.exit_code == 0 and plain.output.startswith("idp-push://activate?")
    for args in (["activate", "--user", "nobody@example.com"], ["activate", "--user", factor_user.email,
                                                               "--expires-in", "soon"],
                 ["activate", "--user", factor_user.email, "--expires-in", "30d"]):
        bad = runner.invoke(command, args)
        assert bad.exit_code != 0 and "Traceback" not in bad.output



def test_cli_activate_writes_nothing_when_the_png_cannot_be_written(factor_app, factor_user, tmp_path):
    """Nothing half-created: no activation nobody saw, no row, no audit event."""
    from sqlalchemy import func, select

    from idp.db import db
    from idp.models import AuditEvent, FactorChallenge

    push_factor()
    result = CliRunner().invoke(PushFactor.cli_command(), ["activate", "--user", factor_user.email, "--expires-in",
                                                           "7d", "--png", str(tmp_path / "missing" / "qr.png")])
    assert result.exit_code != 0 and "nothing was issued" in result.output
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(FactorChallenge)) == 0
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == 0


def test_cli_activation_is_audited_and_lasts_the_configured_time(factor_app, factor_user):
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import select

    from idp.db import db
    from idp.models import AuditEvent

    push = push_factor()
    before = datetime.now(timezone.utc)
    result = CliRunner().invoke(PushFactor.cli_command(), ["activate", "--user", factor_user.email, "--json"])
    assert result.exit_code == 0, result.output
    expires = datetime.fromisoformat(json.loads(result.output)["expires_at"].replace("Z", "+00:00"))
    ttl = timedelta(seconds=push.push_settings.activation_ttl)
    assert before + ttl - timedelta(seconds=5) <= expires <= before + ttl + timedelta(seconds=5)
    [event] = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "push.activation_issued")).all()
    assert (event.actor, event.subject_id) == ("cli", factor_user.id)


def test_in_process_waker_wakes_a_listener():
    waker = Waker()
    with waker.listen(["c"]) as listener:
        threading.Timer(0.05, waker.notify, args=("c",)).start()
        assert listener.wait(5) is True
        assert listener.wait(0.05) is False


def test_the_waker_forgets_channels_nobody_listens_on():
    """One counter per answered challenge, kept for ever, grew with every login."""
    waker = Waker()
    for i in range(100):
        waker.notify(f"challenge:{i}")  # answered with nobody waiting
    with waker.listen(["a", "b"]) as first, waker.listen(["a"]):
        waker.notify("a")
        assert first.wait(1) is True
    assert waker._generation == {} and waker._listening == {}


# --- races on PostgreSQL ---------------------------------------------------------------------


def test_two_racing_answers_one_accepted(pg_app):
    from idp.factors import testing

    user = testing.make_user("race@example.com")
    push = push_factor()
    client = pg_app.test_client()
    devices = [enrol_device(client, push, user, f"phone {i}") for i in range(2)]
    for round_ in range(5):
        step = push.begin_challenge(user, context(push, transaction_id=f"race-{round_}"))
        cid, number = step.state["challenge_id"], step.view["number"]
        barrier = threading.Barrier(len(devices) * 2)

        def answer(device, cid=cid, number=number, barrier=barrier):
            with pg_app.app_context():
                c = pg_app.test_client()
                d = Device(c, device.key)
                token = d.token(f"/challenges/{cid}/answer", challenge=cid, decision="approve", number=number)
                barrier.wait()
                return d.answer(cid, token=token).status_code

        with ThreadPoolExecutor(len(devices) * 2) as pool:
            codes = list(pool.map(answer, devices * 2))
        assert sorted(codes) == [200, 409, 409, 409], codes


def test_one_signed_answer_sent_four_times_at_once_is_accepted_once(pg_app):
    """A phone's retry, or a copy of its request replayed by whoever saw it: the signed request's
    jti is spent once (the challenge store's unique row), whichever copy comes first."""
    from idp.factors import testing

    user = testing.make_user("race3@example.com")
    push = push_factor()
    device = enrol_device(pg_app.test_client(), push, user)
    step = push.begin_challenge(user, context(push, transaction_id="replayed-at-once"))
    cid = step.state["challenge_id"]
    token = device.token(f"/challenges/{cid}/answer", challenge=cid, decision="approve", number=step.view["number"])
    barrier = threading.Barrier(4)

    def answer(_):
        with pg_app.app_context():
            phone = Device(pg_app.test_client(), device.key)
            barrier.wait()
            return phone.answer(cid, token=token).status_code

    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(answer, range(4)))
    assert sorted(codes) == [200, 401, 401, 401], codes
    assert push.challenges.get(cid).status == "approved"


def test_two_racing_registrations_with_one_code_one_device(pg_app):
    from idp.factors import testing

    user = testing.make_user("race2@example.com")
    push = push_factor()
    step = push.begin_enrolment(user, enrolment_context(push))
    code = activation_code(step.view["activation_uri"])
    key_list = [keys.new_private_key() for _ in range(4)]
    barrier = threading.Barrier(len(key_list))

    def register(key):
        with pg_app.app_context():
            device = Device(pg_app.test_client(), key)
            barrier.wait()
            return device.register(code).status_code

    with ThreadPoolExecutor(len(key_list)) as pool:
        codes = list(pool.map(register, key_list))
    assert sorted(codes) == [201, 400, 400, 400]
    assert push.store.count(user) == 1


def test_webhook_transport_posts_a_wake_up_without_context(factor_app, factor_user):
    import queue
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received = queue.Queue()

    class Relay(BaseHTTPRequestHandler):
        def do_POST(self):
            received.put(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Relay)
    servers.serve_in_background(server)
    try:
        push = push_factor()
        push.push_settings = PushSettings.from_mapping(
            {"transport": "webhook", "webhook_url": f"http://127.0.0.1:{server.server_address[1]}/relay"})
        device = enrol_device(factor_app.test_client(), push, factor_user)
        step = push.begin_challenge(factor_user, context(push))
        body = received.get(timeout=5)
        assert body["device_id"] == device.id and body["challenge_id"] == step.state["challenge_id"]
        assert set(body) == {"device_id", "challenge_id", "expires_at"}
    finally:
        servers.stop(server)


def test_wait_returns_as_soon_as_the_device_answers(factor_app, factor_user):
    import time

    from idp.factors import Pending, Verified

    push = push_factor()
    device = enrol_device(factor_app.test_client(), push, factor_user)
    ctx = context(push)
    step = push.begin_challenge(factor_user, ctx)
    cid, number = step.state["challenge_id"], step.view["number"]

    def answer_later():
        time.sleep(0.3)
        with factor_app.app_context():
            Device(factor_app.test_client(), device.key).answer(cid, "approve", number)

    threading.Thread(target=answer_later).start()
    started = time.monotonic()
    outcome = push.wait(factor_user, step.state, ctx, timeout=10)
    assert isinstance(outcome, Verified)
    assert time.monotonic() - started < 1.0
    # Nothing pending: returns after the timeout with Pending.
    other_ctx = context(push, transaction_id="t-other")
    other = push.begin_challenge(factor_user, other_ctx)
    started = time.monotonic()
    assert isinstance(push.wait(factor_user, other.state, other_ctx, timeout=0.5), Pending)
    assert 0.4 < time.monotonic() - started < 2


@pytest.mark.postgres
def test_a_security_page_enrolment_finished_while_another_made_the_codes_makes_none(pg_app, monkeypatch):
    """Two of the user's tabs finish a push enrolment on the security page at once (or one does
    while a login shows the codes a phone's activation owed). The second waits for the user's row,
    then must see the first one's recovery codes: it had read the user's credentials before it
    waited (idp.factors.store keeps them for the request), and push's finish stores no credential
    of its own to make it read them again, so it made a second set, replacing the first one the
    user had just been shown."""
    from sqlalchemy import func, select

    from idp.account import service
    from idp.db import db
    from idp.factors import testing
    from idp.models import Credential, User

    push_factor()
    user = db.session.get(User, testing.make_user("two-tabs@example.com").id)
    with pg_app.test_request_context():
        pending_id = service.begin(user, "push")
        view = service.pending_view(user, service.pending(user, pending_id))
    device = Device(pg_app.test_client())
    assert device.register(activation_code(view["activation_uri"]), "phone").status_code == 201
    db.session.remove()
    user = db.session.get(User, user.id)

    # (The user's lock that `finish` takes, which also asks whether the account is still there.)
    waited_for = service.hold_enabled

    def the_other_tab_finished_first(ref) -> bool:
        def other_tab() -> None:
            with pg_app.app_context():
                try:
                    service.regenerate_recovery_codes(db.session.get(User, ref.id), audit_event=False)
                    db.session.commit()
                finally:
                    db.session.remove()

        thread = threading.Thread(target=other_tab)
        thread.start()
        thread.join()
        return waited_for(ref)

    monkeypatch.setattr(service, "hold_enabled", the_other_tab_finished_first)
    with pg_app.test_request_context():
        _credential, codes = service.finish(user, pending_id, {})
        assert codes is None
        live = db.session.scalar(select(func.count()).select_from(Credential).where(
            Credential.user_id == user.id, Credential.factor == "recovery_codes", Credential.revoked_at.is_(None)))
        assert live == 10
