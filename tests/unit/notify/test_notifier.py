"""idp.notify: which notifier `[mail]` selects, SMTP delivery (to aiosmtpd on 127.0.0.1), failures as
NotifyError, the console notifier, and the SMS slot with a gateway of the test's own."""
from __future__ import annotations

import logging
import socket
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller

from idp.config import load_settings
from idp.notify import (ConsoleNotifier, NotifyError, SmsGateway, SmsNotifier, SmtpNotifier, compose,
                        notifier_from_settings)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Handler:
    def __init__(self):
        self.received = []

    async def handle_DATA(self, server, session, envelope):
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos),
                              message_from_bytes(envelope.content, policy=policy.default)))
        return "250 OK"


@pytest.fixture
def smtp_server():
    handler = Handler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield handler, controller.port
    controller.stop()


def test_mail_settings_select_the_notifier():
    assert isinstance(notifier_from_settings(load_settings({}, environ={})), ConsoleNotifier)
    smtp = notifier_from_settings(load_settings({"mail.host": "smtp.example.test", "mail.port": 587,
                                                 "mail.starttls": True, "mail.sender": "idp@example.test",
                                                 "mail.username": "u", "mail.password": "p"}, environ={}))
    assert isinstance(smtp, SmtpNotifier)
    assert (smtp.host, smtp.port, smtp.sender, smtp.starttls, smtp.username) == (
        "smtp.example.test", 587, "idp@example.test", True, "u")


def test_smtp_delivers_the_code(smtp_server):
    handler, port = smtp_server
    SmtpNotifier("127.0.0.1", port, "idp@example.test").send_code("alice@example.com", "493817", "recovery")
    [(sender, rcpt, message)] = handler.received
    assert sender == "idp@example.test" and rcpt == ["alice@example.com"]
    assert message["Subject"] == "Your recovery code" and message["Auto-Submitted"] == "auto-generated"
    assert "493817" in message.get_body(("plain",)).get_content()


def test_smtp_failure_is_a_notify_error_without_the_code():
    with pytest.raises(NotifyError) as info:
        SmtpNotifier("127.0.0.1", free_port(), timeout=2).send_code("a@example.com", "493817", "recovery")
    assert "493817" not in str(info.value)


def test_console_logs_and_keeps(caplog):
    notifier = ConsoleNotifier()
    with caplog.at_level(logging.WARNING, logger="idp.notify"):
        notifier.send_code("a@example.com", "123456", "recovery")
    assert "123456" in caplog.text and notifier.sent[-1].to == "a@example.com"


def test_sms_slot_uses_any_gateway():
    class Recorder(SmsGateway):
        def __init__(self):
            self.texts = []

        def send(self, number, text):
            self.texts.append((number, text))

    class Broken(SmsGateway):
        def send(self, number, text):
            raise RuntimeError("vendor down")

    gateway = Recorder()
    SmsNotifier(gateway).send_code("+33600000000", "123456", "recovery")
    assert gateway.texts == [("+33600000000", "Your recovery code: 123456")]
    with pytest.raises(NotifyError):
        SmsNotifier(Broken()).send_code("+33600000000", "123456", "recovery")


def test_compose_outside_an_app():
    message = compose("a@example.com", "654321", "recovery", "fr")
    assert "654321" in message.body and "10 minutes" in message.body
    assert "valid for 1 minute." in compose("a@example.com", "654321", "recovery", minutes=1).body


def test_a_lifetime_of_one_minute_is_singular_in_every_language(migrated_database_url):
    """factors.qr_recovery.code_ttl may be 60 seconds: "1 minute", never "1 minutes"."""
    from idp.app import create_app

    with create_app({"server.database_url": migrated_database_url}).app_context():
        assert "Il est valable 1 minute." in compose("a@example.com", "654321", "recovery", "fr", minutes=1).body
        assert "pendant 15 minutes." in compose("a@example.com", "http://x/", "password_reset", "fr", minutes=15).body
        assert "valid for 1 minute." in compose("a@example.com", "654321", "recovery", "en", minutes=1).body
