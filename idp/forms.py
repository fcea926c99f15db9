"""The base of every form: Flask-WTF (CSRF on every POST), with WTForms' own messages translated
from a per-process cache.

Flask-WTF loads WTForms' message catalogue from disk (a .mo file parsed by Babel) once per
request that builds a form: on the login pages that was a visible share of the request. The
catalogue never changes while the process runs, so it is loaded once per locale.
"""
from __future__ import annotations

from functools import lru_cache

from babel import support
from flask_babel import get_locale
from flask_wtf import FlaskForm
from wtforms.i18n import messages_path


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
        def get_translations(self, form):
            return _TRANSLATIONS
