"""The notifier interface and the text of what it sends.

A notifier delivers a one-time code to an address (an e-mail address, a phone number)
for a named purpose. It never decides *whether* to send (rate limits, verified
addresses): the caller does. It raises `NotifyError` when delivery failed, so the
caller can tell the user "we could not send the code" instead of waiting for nothing.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass


def N_(text: str) -> str:
    """Marks a message for the catalogue (pybabel extracts N_); translated later, in the user's locale."""
    return text


# Purposes and their wording. The code is the only secret in the message; the rest says what
# it is for and what to do if the reader did not ask for it.
_SUBJECTS = {
    "recovery": N_("Your recovery code"),
    "new_device": N_("A new device was added to your account"),
    "password_reset": N_("Reset your password"),
    # An admin's invitation (idp.invitations): {org} is the organization's name.
    "invitation": N_("You are invited to {org}: choose your password"),
    # Security notices (idp.security_notices): no secret in them, `code` is what changed.
    "password_changed": N_("Your password was changed"),
    "factor_added": N_("A sign-in method was added to your account"),
    "factor_removed": N_("A sign-in method was removed from your account"),
    "factors_reset": N_("Your second factors were reset"),
    "recovery_codes_regenerated": N_("New recovery codes were made for your account"),
    "recovery_used": N_("Someone signed in to your account with a recovery method"),
    "recovery_qr_issued": N_("An administrator issued a recovery QR code for your account"),
    "key_suspended": N_("A security key of your account was suspended"),
}
_BODIES = {
    "recovery": N_("Your one-time code to recover your authenticator is:\n\n    {code}\n\n"
                   "It is valid for {minutes}. If you did not ask for it, someone knows your "
                   "password: change it and tell your administrator."),
    # The name is whoever added the device's own words: said so, quoted and cut short, so that it
    # never reads as the provider's (an audit named a device "IT set this up, nothing to do" and a link).
    "new_device": N_("A new device was added to your account. Whoever added it named it “{code}”.\n\n"
                     "If this was not you, tell your administrator at once, whatever that name says."),
    # The link is the secret here; the second factor is still asked at the next sign-in.
    "password_reset": N_("Someone asked to reset the password of your account. To choose a new "
                         "password, open this link:\n\n    {code}\n\n"
                         "It works once, for {minutes}. If you did not ask for it, ignore this "
                         "message: your password stays as it is."),
    # The link is the secret; choosing the password proves the address ({email}) too.
    "invitation": N_("An administrator of {org} created an account for you: you sign in with this e-mail "
                     "address, {email}. To choose your password, open this link:\n\n    {code}\n\n"
                     "It works once, for {minutes}, and choosing your password also confirms your e-mail "
                     "address. If you did not expect this invitation, ignore this message: nothing happens "
                     "without it."),
    "password_changed": N_("The password of your account was changed, and every browser and application "
                           "signed in to it was signed out.\n\n"
                           "If you did not do this, someone else may have your password: reset it at once "
                           "(\"Forgot your password?\" on the sign-in page) and tell your administrator."),
    "factor_added": N_("A sign-in method was added to your account: {code}.\n\n"
                       "If you did not do this, remove it on your account's security page, change your "
                       "password and tell your administrator."),
    "factor_removed": N_("A sign-in method was removed from your account: {code}.\n\n"
                         "If you did not do this, change your password and tell your administrator."),
    "factors_reset": N_("An administrator removed every second factor and recovery code of your account "
                        "(after a lost device, for instance).\n\n"
                        "If you did not ask for this, tell your administrator at once."),
    "recovery_codes_regenerated": N_("New recovery codes were made for your account; the old ones no longer "
                                     "work.\n\n"
                                     "If you did not do this, change your password and tell your administrator."),
    "recovery_used": N_("Someone signed in to your account with a recovery method instead of a second factor: "
                        "{code}.\n\n"
                        "If this was not you, change your password and tell your administrator at once."),
    "recovery_qr_issued": N_("An administrator issued a recovery QR code for your account: whoever holds it can "
                             "set up a new phone to sign in as you.\n\n"
                             "If you did not ask for one, tell your administrator at once."),
    "key_suspended": N_("A sign-in with one of your security keys ({code}) showed a signature count lower than "
                        "before: the key may have been copied. It can no longer be used to sign in, and the "
                        "browsers signed in with it were signed out.\n\n"
                        "Remove it on your account's security page and add it again. If you did not just try to "
                        "sign in with it, change your password and tell your administrator."),
}
# The notices about a change to the account (no secret in them) end with the address of the
# user's security page, where they can see the change and undo it: built from the issuer (as a
# password reset link is), never from a request, whose forged Host header would send them elsewhere.
_ABOUT_THE_ACCOUNT = frozenset({"new_device", "password_changed", "factor_added", "factor_removed",
                                "factors_reset", "recovery_codes_regenerated", "recovery_used",
                                "recovery_qr_issued", "key_suspended"})
_SECURITY_PAGE = N_("Your account's security page (sign-in methods, where you are signed in, recent "
                    "activity):\n\n    {link}")
_DEFAULT_SUBJECT = N_("Your one-time code")
_DEFAULT_BODY = N_("Your one-time code is:\n\n    {code}\n")


class NotifyError(Exception):
    """Delivery failed (relay refused or unreachable); the message says why, without the code."""


@dataclass(frozen=True)
class Message:
    to: str
    subject: str
    body: str


def _in_locale(locale: str | None, english: str, translated) -> str:
    """`translated()` (a Flask-Babel call) in `locale` when the app has a catalog for it;
    otherwise `english`."""
    try:
        from flask import has_app_context
        from flask_babel import force_locale

        if not locale or not has_app_context():
            return english
        with force_locale(locale):
            return translated()
    except Exception:  # no Babel configured: the English text
        return english


def _translate(text: str, locale: str | None) -> str:
    """`text` in the user's locale when the app has a catalog for it; otherwise unchanged."""
    from flask_babel import gettext

    return _in_locale(locale, text, lambda: gettext(text))


def _minutes(minutes: int, locale: str | None) -> str:
    """"1 minute", "10 minutes": a lifetime as its own plural message (a code's may be a minute:
    factors.qr_recovery.code_ttl), in `locale` where a translation exists."""
    from idp.template_i18n import plural_text

    english = ("%(num)s minute" if minutes == 1 else "%(num)s minutes") % {"num": minutes}
    return _in_locale(locale, english, lambda: plural_text("%(num)s minute", "%(num)s minutes", minutes))


def lifetime_words(minutes: int, locale: str | None) -> str:
    """"7 days", "2 hours", else as `_minutes`: an invitation's lifetime (days, by default)."""
    from idp.template_i18n import plural_text

    if minutes >= 1440 and minutes % 1440 == 0:
        days = minutes // 1440
        return _in_locale(locale, ("%(num)s day" if days == 1 else "%(num)s days") % {"num": days},
                          lambda: plural_text("%(num)s day", "%(num)s days", days))
    if minutes >= 60 and minutes % 60 == 0:
        hours = minutes // 60
        return _in_locale(locale, ("%(num)s hour" if hours == 1 else "%(num)s hours") % {"num": hours},
                          lambda: plural_text("%(num)s hour", "%(num)s hours", hours))
    return _minutes(minutes, locale)


def compose(to: str, code: str, purpose: str, locale: str | None = None, *, minutes: int = 10,
            **fields: str) -> Message:
    """The message for `purpose` with `code` in it, in `locale` where a translation exists.
    `fields`: the purpose's other words (an invitation's `org` and `email`)."""
    subject = _translate(_SUBJECTS.get(purpose, _DEFAULT_SUBJECT), locale)
    if fields:
        subject = subject.format(**fields)
    lifetime = lifetime_words(minutes, locale) if purpose == "invitation" else _minutes(minutes, locale)
    body = _translate(_BODIES.get(purpose, _DEFAULT_BODY), locale).format(code=code, minutes=lifetime, **fields)
    page = _security_page() if purpose in _ABOUT_THE_ACCOUNT else None
    if page:
        body += "\n\n" + _translate(_SECURITY_PAGE, locale).format(link=page)
    return Message(to=to, subject=subject, body=body)


def _security_page() -> str | None:
    """The user's security page at this provider's issuer; None outside an app."""
    from flask import current_app, has_app_context

    settings = current_app.extensions.get("idp.settings") if has_app_context() else None
    return f"{settings.issuer}/account/security" if settings is not None else None


class Notifier(abc.ABC):
    """Delivers one-time codes. Implementations: `SmtpNotifier`, `ConsoleNotifier`, `SmsNotifier`."""

    #: What kind of address `to` is: "email" or "phone".
    channel = "email"

    @abc.abstractmethod
    def send_code(self, to: str, code: str, purpose: str, locale: str | None = None, *, minutes: int = 10,
                  **fields: str) -> None:
        """Deliver `code` to `to` for `purpose` ("recovery", "password_reset" with a link as the
        code, "invitation" with a link and the `fields` `org` and `email`, ...), saying it is valid
        `minutes`. Raises NotifyError on failure.

        Example::

            notifier.send_code("alice@example.com", "493817", "recovery", "en")
        """
