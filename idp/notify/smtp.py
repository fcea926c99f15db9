"""E-mail over SMTP (stdlib `smtplib`), configured by `[mail]`.

One connection per message: codes are rare and a pooled connection to a relay that
timed out is a worse failure than a reconnect. STARTTLS and login are used when
configured; the timeout keeps a dead relay from holding a worker thread for long.
"""
from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from idp.notify.base import Notifier, NotifyError, compose

TIMEOUT = 10.0


class SmtpNotifier(Notifier):
    def __init__(self, host: str, port: int = 25, sender: str = "idp@localhost", *, starttls: bool = False,
                 username: str = "", password: str = "", timeout: float = TIMEOUT) -> None:
        self.host, self.port, self.sender = host, int(port), sender
        self.starttls, self.username, self.password, self.timeout = bool(starttls), username, password, timeout

    def send_code(self, to: str, code: str, purpose: str, locale: str | None = None, *, minutes: int = 10,
                  **fields: str) -> None:
        message = compose(to, code, purpose, locale, minutes=minutes, **fields)
        try:
            email = self._email(message)
        except ValueError as exc:
            # A line break in an address or a subject: the stdlib refuses to write it (it would add
            # headers). Addresses are checked where they are stored (idp.users.normalised_email), so
            # this is a failure to deliver like any other, not an exception that ends a caller's
            # thread before its other mails (idp.security_notices.deliver).
            raise NotifyError(f"cannot write the e-mail: {type(exc).__name__}") from exc
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username:
                    smtp.login(self.username, self.password)
                smtp.send_message(email)
        except (smtplib.SMTPException, OSError) as exc:
            raise NotifyError(f"cannot send e-mail through {self.host}:{self.port}: {_failure(exc)}") from exc

    def _email(self, message) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self.sender
        email["To"] = message.to
        email["Subject"] = message.subject
        email["Date"] = formatdate(localtime=False)
        email["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        email["Auto-Submitted"] = "auto-generated"
        email.set_content(message.body)
        return email


def _failure(exc: Exception) -> str:
    """The exception's class (its text may quote the relay's answer, the recipient included).
    A refused certificate also says what OpenSSL found wrong ("unable to get local issuer
    certificate": a relay with a private CA, which SSL_CERT_FILE names), since the class alone
    leaves the operator guessing."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"{type(exc).__name__} ({exc.verify_message})"
    return type(exc).__name__
