"""An answer whose reply is lost: the app sends it once more, signed afresh, and says that the
first one counted when the server says so (`409 challenge_closed` with `answered`,
docs/push-protocol.md 5.3, "Retrying an answer").

The app runs as a real subprocess against the live server (test_push_app.LiveIdp), through a
proxy that forwards every request and, for the first answers, drops the server's reply: the
answer lands, the phone hears nothing, as on a connection cut on the way back.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from authenticator_testkit import one_line_error
from test_push_app import LiveIdp, _free_port

FORWARDED = ("Authorization", "Content-Type", "Accept", "User-Agent")


class LossyProxy(BaseHTTPRequestHandler):
    """Forwards to `server.backend`; the replies to the first `server.replies_to_drop` answers are
    never sent (the connection is closed instead)."""

    def _forward(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name: self.headers[name] for name in FORWARDED if self.headers.get(name)}
        reply = requests.request(self.command, self.server.backend + self.path, data=body, headers=headers,
                                 timeout=30)
        if self.command == "POST" and self.path.endswith("/answer"):
            self.server.answers_seen += 1
            if self.server.replies_to_drop > 0:
                self.server.replies_to_drop -= 1
                self.close_connection = True
                return  # landed; the phone hears nothing
        self.send_response(reply.status_code)
        for name in ("Content-Type", "Date"):
            if name in reply.headers:
                self.send_header(name, reply.headers[name])
        self.send_header("Content-Length", str(len(reply.content)))
        self.end_headers()
        self.wfile.write(reply.content)

    do_GET = do_POST = _forward

    def log_message(self, *args):
        pass


@pytest.fixture
def proxied(tmp_path):
    """(the live server, the proxy): the issuer's URL is the proxy's, so that what the phone signs
    names the address it talks to."""
    port = _free_port()
    idp = LiveIdp(tmp_path, issuer_port=port)
    proxy = ThreadingHTTPServer(("127.0.0.1", port), LossyProxy)
    proxy.backend, proxy.replies_to_drop, proxy.answers_seen = f"http://127.0.0.1:{idp.port}", 0, 0
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield idp, proxy
    proxy.shutdown()
    proxy.server_close()
    thread.join(5)
    idp.close()


@pytest.fixture
def phone(app, proxied):
    idp, _proxy = proxied
    assert json.loads(app.ok("--json", "add", idp.activation_uri()))["type"] == "push"
    return app


def test_an_approval_whose_reply_was_lost_is_sent_again_and_said_to_have_counted(phone, proxied):
    from idp.factors import Verified

    idp, proxy = proxied
    step = idp.start_login()
    proxy.replies_to_drop = 1
    result = phone.run("--json", "approve", "--number", step.view["number"], "--", step.state["challenge_id"])
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["status"] == "approved" and document["already_counted"] is True
    assert proxy.answers_seen == 2 and isinstance(idp.outcome(step), Verified)

    step = idp.start_login("txn-2")
    proxy.replies_to_drop = 1
    out = phone.ok("approve", "--number", step.view["number"], "--", step.state["challenge_id"])
    assert out.startswith(f"approved {step.state['challenge_id']}")
    assert "the reply to this answer was lost, so it was sent again: the server had already counted it" in out
    assert isinstance(idp.outcome(step, "txn-2"), Verified)


def test_a_fraud_report_whose_reply_was_lost_is_said_to_have_counted_once(phone, proxied):
    from idp.factors import Denied

    idp, proxy = proxied
    step = idp.start_login()
    proxy.replies_to_drop = 1
    out = phone.ok("deny", "--fraud", "--", step.state["challenge_id"])
    assert out.startswith(f"denied {step.state['challenge_id']} and reported it as fraud")
    assert "the server had already counted it" in out
    assert idp.outcome(step) == Denied("fraud", fraud=True)
    with idp.app.app_context():
        from sqlalchemy import func, select

        from idp.db import db
        from idp.models import AuditEvent

        assert db.session.scalar(select(func.count()).where(AuditEvent.event == "push.fraud_reported")) == 1


def test_a_wrong_number_whose_reply_was_lost_is_still_a_number_mismatch(phone, proxied):
    from idp.factors import Denied

    idp, proxy = proxied
    step = idp.start_login()
    wrong = f"{(int(step.view['number']) + 1) % 100:02d}"
    proxy.replies_to_drop = 1
    result = phone.run("approve", "--number", wrong, "--", step.state["challenge_id"])
    assert result.returncode == 26 and "the number did not match" in one_line_error(result)
    assert idp.outcome(step) == Denied("wrong_number")


def test_an_answer_with_both_replies_lost_is_the_server_unreachable(phone, proxied):
    """Sent twice, not more: the line says the server could not be reached (status 20); the answer
    landed all the same (the login goes on), which the app cannot know."""
    idp, proxy = proxied
    step = idp.start_login()
    proxy.replies_to_drop = 2
    result = phone.run("approve", "--number", step.view["number"], "--", step.state["challenge_id"])
    assert result.returncode == 20 and "cannot reach the server" in one_line_error(result)
    assert proxy.answers_seen == 2
