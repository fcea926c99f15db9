"""Templates' `_()` and `ngettext()`, called straight instead of through Jinja's i18n wrappers.

Flask-Babel installs its translation functions through Jinja's i18n extension ("newstyle"
gettext): each `_()` in a template is a context-passing alias that looks `gettext` up in the
template's context and calls it through `Context.call`, which calls Flask-Babel's function
through `Context.call` again, and Flask-Babel finds the request's translations anew each
time: about 20 us a call, of which this keeps 10; a login page makes half a dozen such calls.
These functions keep newstyle's meaning exactly: the translation of the request's locale,
marked safe when the template autoescapes, then formatted with the (escaped) keyword
arguments; `ngettext` also supplies `num`, the count written for the page's language (below).

Numbers a page shows are written in its language too: `{{ count | number }}` ("1,234",
"1 234" with a narrow no-break space in French) and `{{ share | percent }}` ("12%", "12 %").
In a plural message the integer chooses the form and the words show it formatted: the
templates' `ngettext` does both by itself; a message built in Python uses `plural_text`
(`flask_babel.ngettext` would print `%(num)s` as Python's `str()`). A count's placeholder is
therefore `%(num)s`: a message still written with `%(num)d` gets the bare integer, unformatted.

Also the one way a page shows a moment: `{{ moment | utc }}` ("Dec 4, 2026, 9:36 PM UTC",
"4 déc. 2026, 21:36 UTC": the locale's medium date and short time, through
`flask_babel.format_datetime`, in UTC and saying so), or `{{ moment | utc(time=False) }}` for
the day alone ("Dec 4, 2026"). Stored times are naive UTC; a plugin's view (JSON) gives a moment
as Unix seconds, which the filter takes too. A sentence built in Python (a confirmation's text)
says a moment in the same words with `utc_text(moment)`.
"""
from __future__ import annotations

from datetime import datetime, timezone

from babel.numbers import format_decimal, format_percent
from flask import Flask, g
from flask_babel import format_date, format_datetime, get_locale, get_translations
from flask_babel import format_number as _format_number
from flask_babel import format_percent as _format_percent
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


def number(value: int | float) -> str:
    """A count, a duration's number or a measure, written as the request's language writes it
    ("1,234"; French "1\u202f234"). Outside a request (the CLI), in English."""
    if get_locale() is None:
        return format_decimal(value, locale="en")
    return _format_number(value)


def percent(value: float) -> str:
    """A share (0.12) as the request's language writes a percentage ("12%"; French "12\u00a0%")."""
    if get_locale() is None:
        return format_percent(value, locale="en")
    return _format_percent(value)


def _count(text: str, num: int) -> int | str:
    """What `%(num)...` shows in `text`: the formatted count, or the integer itself for a message
    still written with `%(num)d` (a third-party plugin's template), which takes nothing else."""
    return num if "%(num)d" in text else number(num)


def plural_text(singular: str, plural: str, num: int, **variables) -> str:
    """`flask_babel.ngettext` for a sentence built in Python, with the count written as the
    page's language writes it (`%(num)s`): the integer still chooses the plural form."""
    text = _translations().ungettext(singular, plural, num)
    variables.setdefault("num", _count(text, num))
    return text % variables


@pass_eval_context
def ngettext(eval_ctx, singular: str, plural: str, num: int, **variables):
    text = _translations().ungettext(singular, plural, num)
    variables.setdefault("num", _count(text, num))
    if eval_ctx.autoescape:
        text = Markup(text)
    return text % variables


def N_(message: str) -> str:
    """Marks a message for extraction; translated where it is used."""
    return message


UTC_FORMAT = N_("%(moment)s UTC")
_PATTERNS: dict[str, str] = {}  # locale -> its "medium date, short time" pattern


def _pattern(locale) -> str:
    key = str(locale)
    if key not in _PATTERNS:
        glue = str(locale.datetime_formats.get("medium", "{1} {0}"))
        _PATTERNS[key] = glue.replace("{1}", locale.date_formats["medium"].pattern) \
                             .replace("{0}", locale.time_formats["short"].pattern)
    return _PATTERNS[key]


def _moment(value: datetime | int | float) -> datetime:
    """A naive UTC datetime from a stored moment or from Unix seconds (a plugin's JSON view)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, timezone.utc).replace(tzinfo=None)
    return value


def _words(moment: datetime, time: bool) -> str:
    if not time:
        return format_date(moment, "medium")
    # rebase=False: shown in UTC whatever Flask-Babel's time zone, as the words say
    return format_datetime(moment, _pattern(get_locale()), rebase=False)


@pass_eval_context
def utc(eval_ctx, moment: datetime | int | float | None, time: bool = True):
    """A stored moment (naive UTC, or Unix seconds) for people: see the module's docstring. None
    shows as ""."""
    if moment is None:
        return ""
    words = _words(_moment(moment), time)
    return gettext(eval_ctx, UTC_FORMAT, moment=words) if time else words


def utc_text(moment: datetime | int | float | None, time: bool = True) -> str:
    """The `utc` filter's words, as plain text in the request's language, for a sentence built in
    Python (then escaped by the template that shows it, as any text)."""
    if moment is None:
        return ""
    words = _words(_moment(moment), time)
    return _translations().ugettext(UTC_FORMAT) % {"moment": words} if time else words


def bdi(value) -> Markup:
    """`value`, a name someone chose (a user's, an address, a method's, a device's, an application's,
    an organization's), in HTML's isolate: Arabic or Hebrew in it, or neutral characters at its
    end, cannot reorder the sentence or the text around it ("Remove “name”?", a cell followed by
    "(disabled)"). Not inside <title> or an attribute, where a tag is text."""
    return Markup("<bdi>%s</bdi>") % value


def isolated_text(message: str, **values) -> Markup:
    """A sentence built in Python for a page's body (a confirmation's), as HTML in the request's
    language: the `_` of a template, each value isolated (`bdi`). Mark `message` with N_."""
    return Markup(_translations().ugettext(message)) % {name: bdi(value) for name, value in values.items()}


def install(app: Flask) -> None:
    """After Flask-Babel's own set-up (which this replaces for `_`, `gettext` and `ngettext`)."""
    app.jinja_env.globals.update(_=gettext, gettext=gettext, ngettext=ngettext)
    app.jinja_env.filters["utc"] = utc
    app.jinja_env.filters["number"] = number
    app.jinja_env.filters["percent"] = percent
    app.jinja_env.filters["bdi"] = bdi
