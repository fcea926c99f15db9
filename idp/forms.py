"""The base of every form: Flask-WTF forms, with WTForms' own messages translated from a
per-process cache.

CSRF is checked once per request, by `CSRFProtect` (idp.extensions), before any view runs: every
POST that is not a client or device endpoint must carry the session's token, form or no form
(tests/unit/test_architecture.py walks the URL map to hold that). A form checking the token again,
and minting a fresh one for its hidden field, did the same work twice on every login POST; so
forms carry no CSRF field of their own and templates write `csrf_token()` themselves.

Flask-WTF loads WTForms' message catalogue from disk (a .mo file parsed by Babel) once per
request that builds a form: on the login pages that was a visible share of the request. The
catalogue never changes while the process runs, so it is loaded once per locale.
"""
from __future__ import annotations

from functools import lru_cache

from babel import support
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from flask import request
from flask_wtf import FlaskForm
from flask_wtf.form import SUBMIT_METHODS
from flask_wtf.form import _Auto as _AUTO  # Flask-WTF's "read the request" marker
from wtforms import PasswordField, SubmitField
from wtforms.i18n import messages_path
from wtforms.validators import DataRequired, EqualTo, Length


@lru_cache(maxsize=16)
def _wtforms_catalogue(locale: str) -> support.Translations:
    return support.Translations.load(messages_path(), [locale], domain="wtforms")


class _CachedTranslations:
    """What WTForms asks of its translations object (gettext, ngettext), for the request's locale."""

    def gettext(self, string: str) -> str:
        return _wtforms_catalogue(str(get_locale() or "en")).ugettext(string)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return _wtforms_catalogue(str(get_locale() or "en")).ungettext(singular, plural, n)


_TRANSLATIONS = _CachedTranslations()


class Form(FlaskForm):
    class Meta(FlaskForm.Meta):
        csrf = False  # CSRFProtect has already checked the token (module docstring)

        def get_translations(self, form):
            return _TRANSLATIONS

        def wrap_formdata(self, form, formdata):
            """The posted form fields only. Flask-WTF also reads uploaded files and JSON bodies:
            a password sent as a file reached the validators as a FileStorage (a 500), and a
            JSON body (the CSRF token in a header) as numbers, lists or booleans. No form of
            ours takes either: they are simply not there, and the form says what is missing."""
            if formdata is _AUTO:
                return request.form or None if request.method in SUBMIT_METHODS else None
            return formdata


class NewPasswordForm(Form):
    """A new password, typed twice (the admin's "Set a new password", the user's own change).
    The rules themselves are idp.users.password_problem's; the length bound here only keeps
    a megabyte out of argon2."""

    password = PasswordField(_l("New password"), validators=[DataRequired(), Length(max=1024)],
                             render_kw={"autocomplete": "new-password"})
    confirm = PasswordField(_l("New password again"),
                            validators=[DataRequired(), EqualTo("password", message=_l("The two passwords differ."))],
                            render_kw={"autocomplete": "new-password"})
    submit = SubmitField(_l("Set the password"))
