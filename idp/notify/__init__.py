"""Sending one-time codes to people: the `Notifier` interface and its implementations.

    from idp.notify import current_notifier
    current_notifier().send_code("alice@example.com", "493817", purpose="recovery", locale="fr")

Which notifier an app uses comes from `[mail]` (config/default.toml): `host = "console"`
(the development default) logs the code; any other host sends e-mail over SMTP. A phone
gateway plugs into the same interface (`idp.notify.sms`). Plugins reach this only through
`idp.factors.directory.send_code`, which picks the user's verified address.
"""
from idp.notify.base import Message, Notifier, NotifyError, compose
from idp.notify.console import ConsoleNotifier
from idp.notify.factory import current_notifier, notifier_from_settings
from idp.notify.smtp import SmtpNotifier
from idp.notify.sms import SmsGateway, SmsNotifier

__all__ = ["Message", "Notifier", "NotifyError", "compose", "ConsoleNotifier", "SmtpNotifier", "SmsGateway",
           "SmsNotifier", "current_notifier", "notifier_from_settings"]
