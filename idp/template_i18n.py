"""Templates' `_()` and `ngettext()`, called straight instead of through Jinja's i18n wrappers.

Flask-Babel installs its translation functions through Jinja's i18n extension ("newstyle"
gettext): each `_()` in a template is a context-passing alias that looks `gettext` up in the
template's context and calls it through `Context.call`, which calls Flask-Babel's function
through `Context.call` again, and Flask-Babel finds the request's translations anew each
time: about 20 us a call, of which this keeps 10; a login page makes half a dozen such calls.
These functions keep newstyle's meaning exactly: the translation of the request's locale,
marked safe when the template autoescapes, then formatted with the (escaped) keyword
arguments; `ngettext` also supplies `num`.
"""
from __future__ import annotations

from flask import Flask, g
from flask_babel import get_locale, get_translations
from jinja2 import pass_eval_context
from markupsafe import Markup


def _translations():
    """The request's translations, looked up once per request and locale (Flask-Babel walks its
    context, domain and cache on every call; `force_locale` changes the locale, so it is the key)."""
    locale = get_locale()
    cached = g.get("_idp_translations")
    if cached is None or cached[0] is not locale:
        cached = g._idp_translations = (locale, get_translations())
    return cached[1]


@pass_eval_context
def gettext(eval_ctx, string: str, **variables):
    text = _translations().ugettext(string)
    if eval_ctx.autoescape:
        text = Markup(text)
    return text % variables


@pass_eval_context
def ngettext(eval_ctx, singular: str, plural: str, num: int, **variables):
    variables.setdefault("num", num)
    text = _translations().ungettext(singular, plural, num)
    if eval_ctx.autoescape:
        text = Markup(text)
    return text % variables


def install(app: Flask) -> None:
    """After Flask-Babel's own set-up (which this replaces for `_`, `gettext` and `ngettext`)."""
    app.jinja_env.globals.update(_=gettext, gettext=gettext, ngettext=ngettext)
