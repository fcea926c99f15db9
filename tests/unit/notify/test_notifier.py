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
        self.raw = []  # the bytes as they crossed the wire, for what parsing would hide (encodings)

    async def handle_DATA(self, server, session, envelope):
        self.raw.append(envelope.content)
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


def test_a_sender_with_a_display_name_gives_well_formed_headers(smtp_server, migrated_database_url):
    """`mail.sender` may be "Name <address>" (idp.config._check_mail_sender): the Message-ID's
    domain was cut from the whole text, so it ended in "example.test>>", a header relays and spam
    filters reject. A French mail's non-ASCII subject, body and sender name cross the wire encoded."""
    import re

    from idp.app import create_app

    handler, port = smtp_server
    with create_app({"server.database_url": migrated_database_url}).app_context():
        SmtpNotifier("127.0.0.1", port, "Identité Acme <idp@example.test>").send_code(
            "alice@example.com", "493817", "recovery", "fr")
    [(sender, rcpt, message)] = handler.received
    assert sender == "idp@example.test" and rcpt == ["alice@example.com"]
    assert re.fullmatch(r"<[^<>@\s]+@example\.test>", message["Message-ID"]), message["Message-ID"]
    assert message["From"].addresses[0].display_name == "Identité Acme"
    assert message["To"] == "alice@example.com" and message["Date"].datetime is not None
    assert message["Subject"] == "Votre code de récupération" and message["MIME-Version"] == "1.0"
    assert message.get_content_type() == "text/plain" and message.get_content_charset() == "utf-8"
    assert "493817" in message.get_content() and "valable 10 minutes" in message.get_content()
    [raw] = handler.raw
    headers = raw.split(b"\r\n\r\n", 1)[0]
    assert headers.isascii(), headers  # 8-bit headers are only for relays that announce SMTPUTF8


def test_a_line_break_in_an_address_is_a_notify_error_and_sends_nothing(smtp_server):
    """An address is checked where it is stored (idp.users.normalised_email); should one with a
    line break reach the notifier all the same, it adds no header and is a delivery failure like
    any other (a ValueError escaped, and a thread mailing several notices gave up on the rest)."""
    handler, port = smtp_server
    for to in ("alice@example.com\r\nBcc: eve@example.com", "alice@example.com\nBcc: eve@example.com"):
        with pytest.raises(NotifyError):
            SmtpNotifier("127.0.0.1", port, "idp@example.test").send_code(to, "493817", "recovery")
    assert not handler.received


def test_a_relay_that_does_not_offer_starttls_gets_nothing_in_clear(smtp_server):
    """With `starttls`, a relay that does not announce STARTTLS (or a man in the middle who
    stripped it from the EHLO answer) is a failure: the code is not sent in clear instead."""
    handler, port = smtp_server
    with pytest.raises(NotifyError, match="SMTPNotSupportedError"):
        SmtpNotifier("127.0.0.1", port, "idp@example.test", starttls=True, username="idp", password="pw",
                     timeout=5).send_code("alice@example.com", "493817", "recovery")
    assert not handler.received


class RefusingRecipients(Handler):
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        return "550 5.1.1 <%s>: no such mailbox" % address


def test_a_refused_recipient_is_a_notify_error_without_the_address_or_the_code():
    """The relay's answer quotes the recipient: the error (logged, and kept in the audit log by a
    password reset) names the failure's kind only."""
    handler = RefusingRecipients()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        with pytest.raises(NotifyError, match="SMTPRecipientsRefused") as info:
            SmtpNotifier("127.0.0.1", controller.port, "idp@example.test", timeout=5).send_code(
                "alice@example.com", "493817", "recovery")
    finally:
        controller.stop()
    assert "alice" not in str(info.value) and "493817" not in str(info.value) and not handler.received


def test_a_relay_that_never_answers_is_given_up_after_the_timeout():
    """A relay that takes the connection and says nothing (a hung MTA, a firewall that swallows
    packets) holds the sender for `timeout` seconds, then is a failure like any other."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        with pytest.raises(NotifyError, match="SMTPServerDisconnected|TimeoutError"):  # (smtplib: "timed out")
            SmtpNotifier("127.0.0.1", listener.getsockname()[1], timeout=0.5).send_code(
                "a@example.com", "493817", "recovery")


def test_smtp_failure_is_a_notify_error_without_the_code():
    with pytest.raises(NotifyError) as info:
        SmtpNotifier("127.0.0.1", free_port(), timeout=2).send_code("a@example.com", "493817", "recovery")
    assert "493817" not in str(info.value)


def _self_signed_certificate(directory) -> tuple[str, str]:
    """A certificate for 127.0.0.1 that no CA vouches for: a relay behind a private CA, as the client sees it."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=1))
                   .not_valid_after(now + datetime.timedelta(hours=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "relay.pem", directory / "relay.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.fixture
def starttls_server(tmp_path):
    import ssl

    cert, key = _self_signed_certificate(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler = Handler()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), tls_context=context,
                            require_starttls=True)
    controller.start()
    yield handler, controller.port, cert
    controller.stop()


def test_a_relay_certificate_refused_says_why(starttls_server, monkeypatch):
    # An operator whose relay has a private CA must learn that from the log line, not guess it
    # from "SSLCertVerificationError" alone.
    handler, port, _ = starttls_server
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with pytest.raises(NotifyError) as info:
        SmtpNotifier("127.0.0.1", port, "idp@example.test", starttls=True, timeout=5).send_code(
            "a@example.com", "493817", "recovery")
    assert "SSLCertVerificationError (self-signed certificate)" in str(info.value)
    assert "493817" not in str(info.value) and not handler.received


def test_ssl_cert_file_trusts_a_private_relay_ca(starttls_server, monkeypatch):
    # What docs/operations.md tells the operator to do about it.
    handler, port, cert = starttls_server
    monkeypatch.setenv("SSL_CERT_FILE", cert)
    SmtpNotifier("127.0.0.1", port, "idp@example.test", starttls=True, timeout=5).send_code(
        "alice@example.com", "493817", "recovery")
    [(_, rcpt, _)] = handler.received
    assert rcpt == ["alice@example.com"]


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


def test_an_invitation_names_the_organization_and_its_lifetime_in_days_or_hours(migrated_database_url):
    from idp.app import create_app

    with create_app({"server.database_url": migrated_database_url}).app_context():
        fields = {"org": "Acme {x}", "email": "carol@acme.test"}
        message = compose("carol@acme.test", "http://x/invitation/t", "invitation", "en", minutes=7 * 1440, **fields)
        assert message.subject == "You are invited to Acme {x}: choose your password"
        assert "carol@acme.test" in message.body and "for 7 days," in message.body
        assert "http://x/invitation/t" in message.body
        assert "for 1 day," in compose("c@a.test", "l", "invitation", "en", minutes=1440, **fields).body
        assert "for 2 hours," in compose("c@a.test", "l", "invitation", "en", minutes=120, **fields).body
        assert "for 90 minutes," in compose("c@a.test", "l", "invitation", "en", minutes=90, **fields).body
        french = compose("c@a.test", "l", "invitation", "fr", minutes=1440, **fields)
        assert french.subject == "Invitation à rejoindre Acme {x} : choisissez votre mot de passe"
        assert "pendant 1 jour," in french.body
        # The reset's lifetime stays in minutes ("60 minutes", not "1 hour").
        assert "for 60 minutes." in compose("c@a.test", "l", "password_reset", "en", minutes=60).body
