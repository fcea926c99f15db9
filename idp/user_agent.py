"""A browser's User-Agent, kept short and clean, and told to people as "Firefox on Linux".

`for_storage` is what a signed-in session keeps of the header (idp.login.session.start):
anyone can send anything there, so it goes through idp.security.text.display_text (control
characters out: PostgreSQL refuses a NUL; a header arrives as Latin-1, so no other invisible
character can be in it) and a megabyte of it is cut to MAX_LENGTH. `describe` is worked out
when a page shows it, so that a better parser later improves the sessions already stored. It
knows the handful of browsers and systems people use (order matters: Edge and Opera also say
"Chrome", Android also says "Linux", an iPhone also says "Mac OS X"); anything else is shown
as the header's first word ("curl/8.5.0"), which is what a person comparing the list with
their own devices needs.
"""
from __future__ import annotations

from flask_babel import gettext as _

from idp.security.text import display_text

MAX_LENGTH = 255
_FIRST_WORD_LENGTH = 40

# (marker in the header, name shown), first match wins.
_BROWSERS = (
    ("Edg/", "Edge"), ("EdgA/", "Edge"), ("EdgiOS/", "Edge"),
    ("OPR/", "Opera"), ("SamsungBrowser/", "Samsung Internet"), ("Vivaldi/", "Vivaldi"),
    ("Firefox/", "Firefox"), ("FxiOS/", "Firefox"),
    ("CriOS/", "Chrome"), ("Chromium/", "Chromium"), ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
)
_SYSTEMS = (
    ("iPhone", "iOS"), ("iPad", "iPadOS"), ("Android", "Android"), ("CrOS", "ChromeOS"),
    ("Windows", "Windows"), ("Mac OS X", "macOS"), ("Macintosh", "macOS"), ("Linux", "Linux"),
)


def for_storage(raw: str | None) -> str | None:
    """`raw` as one line of display text of at most MAX_LENGTH characters; None when nothing is left."""
    return display_text((raw or "")[:2 * MAX_LENGTH])[:MAX_LENGTH] or None


def _first(markers: tuple[tuple[str, str], ...], header: str) -> str | None:
    return next((name for marker, name in markers if marker in header), None)


def describe(stored: str | None) -> str:
    """A short description for people: "Firefox on Linux", "Safari", "curl/8.5.0"."""
    header = stored or ""
    browser, system = _first(_BROWSERS, header), _first(_SYSTEMS, header)
    if browser and system:
        return _("%(browser)s on %(system)s", browser=browser, system=system)
    if browser or system:
        return browser or system
    first_word = header.split(" ", 1)[0][:_FIRST_WORD_LENGTH]
    return first_word or _("Unknown browser")
