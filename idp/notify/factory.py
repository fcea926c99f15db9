"""Which notifier an app uses: built once per app from `[mail]` and kept in its extensions."""
from __future__ import annotations

import logging
from email.utils import parseaddr

from flask import current_app

from idp.config import mail_goes_to_console

from idp.notify.base import Notifier
from idp.notify.console import ConsoleNotifier
from idp.notify.smtp import SmtpNotifier

EXTENSION_KEY = "idp.notifier"
# `[mail] sender` when it is left empty.
DEFAULT_SENDER = "idp@localhost"
# The start-up warning's logger: a server's (gunicorn's `create_app()`, `idp serve`); the other
# `idp` commands quiet it (idp.cli), whose stderr holds their one-line errors.
SENDER_WARNING_LOGGER = "idp.notify.sender"


def notifier_from_settings(settings) -> Notifier:
    """`[mail] host = "console"` (or empty): the console notifier; else SMTP with the section's values."""
    mail = settings.section("mail")
    if mail_goes_to_console(settings):
        return ConsoleNotifier()
    return SmtpNotifier(str(mail.get("host")).strip(), int(mail.get("port") or 25), str(mail.get("sender") or DEFAULT_SENDER),
                        starttls=bool(mail.get("starttls")), username=str(mail.get("username") or ""),
                        password=str(mail.get("password") or ""))


def current_notifier() -> Notifier:
    """The current app's notifier (built on first use; tests may put their own in the extensions)."""
    extensions = current_app.extensions
    if EXTENSION_KEY not in extensions:
        extensions[EXTENSION_KEY] = notifier_from_settings(extensions["idp.settings"])
    return extensions[EXTENSION_KEY]


def warn_of_an_unroutable_sender(settings) -> None:
    """At start, in production: one warning when `mail.sender`'s domain has no dot (the default,
    idp@localhost, or a bare host name). Most relays refuse such a From and receivers file it as
    spam: password reset links and e-mailed recovery codes die unseen. A warning, not a refusal
    (idp.config refuses in production what would leak or run insecurely): the mail is still sent,
    and a relay that rewrites the sender delivers it. Said by every worker as it builds the app."""
    if not settings.production or mail_goes_to_console(settings):
        return
    sender = str(settings.get("mail.sender") or "").strip() or DEFAULT_SENDER
    domain = parseaddr(sender)[1].rpartition("@")[2].strip(".")
    if "." not in domain:
        logging.getLogger(SENDER_WARNING_LOGGER).warning("mail.sender is %r, whose domain %r is no public one: most mail relays refuse it and "
                    "receivers file it as spam, so password reset links and e-mailed codes are never seen; "
                    "set mail.sender (IDP_MAIL__SENDER) to an address of your own domain, e.g. "
                    "\"Identity <idp@example.com>\"", sender, domain)
