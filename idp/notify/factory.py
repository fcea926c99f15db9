"""Which notifier an app uses: built once per app from `[mail]` and kept in its extensions."""
from __future__ import annotations

from flask import current_app

from idp.config import mail_goes_to_console

from idp.notify.base import Notifier
from idp.notify.console import ConsoleNotifier
from idp.notify.smtp import SmtpNotifier

EXTENSION_KEY = "idp.notifier"


def notifier_from_settings(settings) -> Notifier:
    """`[mail] host = "console"` (or empty): the console notifier; else SMTP with the section's values."""
    mail = settings.section("mail")
    if mail_goes_to_console(settings):
        return ConsoleNotifier()
    return SmtpNotifier(str(mail.get("host")).strip(), int(mail.get("port") or 25), str(mail.get("sender") or "idp@localhost"),
                        starttls=bool(mail.get("starttls")), username=str(mail.get("username") or ""),
                        password=str(mail.get("password") or ""))


def current_notifier() -> Notifier:
    """The current app's notifier (built on first use; tests may put their own in the extensions)."""
    extensions = current_app.extensions
    if EXTENSION_KEY not in extensions:
        extensions[EXTENSION_KEY] = notifier_from_settings(extensions["idp.settings"])
    return extensions[EXTENSION_KEY]
