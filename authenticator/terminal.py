"""What the app reads from stdin and writes to the terminal, made safe for scripts and for the user.

The contract promises one clear line on stderr for every failure. Input can break
that promise in ways the commands never see: an argument or a server's answer
holding a newline or an escape sequence, a path of many kilobytes, bytes that are
not UTF-8 (Python hands them over as lone surrogates, which a UTF-8 stdout then
refuses to print), or no stdin at all (``<&-``: ``sys.stdin`` is None).

The same goes for what the app prints on stdout. A push request shows text the
browser that started the login chose (its User-Agent): in the case push approval
is there for, that is the attacker's browser, and an escape sequence in it could
erase the real "from" line and write a fake one before the user decides. So every
value quoted from outside (a server's text, an account label from a QR code) goes
through :func:`shown`, which escapes every control character, newlines included;
:func:`printable` then escapes whatever else would reach the terminal, keeping only
the newlines of the app's own layout.
"""

import re
import shlex
import sys
from typing import Optional, TextIO

from authenticator.errors import AuthenticatorError

PROG = "idp-authenticator"

# ` --home DIR` when the user gave one (cli.main): a command the app suggests names the same home,
# or, copied as it is, it would act on the default home rather than the one the user works in.
_home_option = ""


def suggest_home(explicit: Optional[str]) -> None:
    """The ``--home`` the suggested commands carry (None: the default home, no option)."""
    global _home_option
    _home_option = f" --home {shlex.quote(explicit)}" if explicit else ""


def command_line(arguments: str) -> str:
    """``idp-authenticator [--home DIR] ARGUMENTS``: a command to run next, as the user types it."""
    return f"{PROG}{_home_option} {arguments}"

# Echoed values (paths, URIs) longer than this are shortened in the middle: the
# start and the end are what tell a user which one it was.
LONGEST_SHOWN = 200
_SHOWN_HEAD, _SHOWN_TAIL = 140, 50

# Invisible characters that change how the text around them reads: zero-width space, the bidi marks
# (the Arabic letter mark among them), embeddings, overrides and isolates (a U+202E makes "moc.elgoog"
# read "google.com"), the soft hyphen, the Mongolian vowel separator, word joiner and invisible
# operators, the deprecated shaping and swapping controls, the interlinear annotation controls, the
# BOM, and the Unicode line and paragraph separators (a new line to some terminals). The server's
# idp/security/text.py strips the same set from what it stores.
_FORMAT = ("\xad\u061c\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
           "\u2028\u2029")
# C0, DEL and C1 (what a terminal may obey), and _FORMAT.
_CONTROL = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f{_FORMAT}]")
_CONTROL_BUT_NEWLINE = re.compile(f"[\\x00-\\x09\\x0b-\\x1f\\x7f-\\x9f{_FORMAT}]")
_LONG_WORD = re.compile(r"\S{%d,}" % (LONGEST_SHOWN + 1))
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# An otpauth: or idp-...: URI with a query, however mangled: its query holds the account's secret
# (or a one-time code). Given where another argument belongs ("code URI", the command forgotten), an
# error would quote it, and error lines end up in logs and screenshots. Left out from its scheme to
# the end of the line: its label may hold spaces and quotes ("ACME:John Smith", "O'Brien") and its
# query unencoded spaces, so no character tells where it ends (an audit saw a secret quoted whole
# when the pattern stopped at the label's space); not the program's own name that begins each line.
# Matched after control characters are escaped, so that an escaped newline inside it does not end it.
_URI_WITH_QUERY = re.compile(r"\b(?:otpauth|idp-(?!authenticator\b)[a-z]+)\s*:[^?]*\?.*", re.IGNORECASE)
URI_LEFT_OUT = "(a URI, not repeated here: it may hold a secret)"


def is_terminal(stream: Optional[TextIO]) -> bool:
    """Whether someone can be asked at ``stream``: False when it is missing, closed or not a tty."""
    if stream is None:
        return False
    try:
        return stream.isatty()
    except ValueError:  # closed
        return False


def read_line(stream: Optional[TextIO]) -> str:
    """One line of ``stream``, "" at its end or when there is no stream."""
    if stream is None:
        return ""
    try:
        return stream.readline()
    except UnicodeDecodeError:
        raise AuthenticatorError("stdin is not UTF-8 text") from None


def is_text(value: str) -> bool:
    """False when ``value`` came from bytes that are not UTF-8 (an argument, a variable, a file)."""
    return not _SURROGATE.search(value)


def shown(value) -> str:
    """One value quoted from outside (a server's text, an account label), for human output on stdout:
    every control character escaped as Python writes it (``\\x1b``, ``\\n``), lone surrogates as U+FFFD."""
    return printable(_CONTROL.sub(_escape, str(value)))


def printable(text: str) -> str:
    """``text`` that any stdout can print and no terminal acts on: control characters other than the
    layout's newlines escaped, lone surrogates replaced by U+FFFD."""
    return _SURROGATE.sub("\ufffd", _CONTROL_BUT_NEWLINE.sub(_escape, text))


def warn(message: str, stream: Optional[TextIO] = None) -> None:
    """One warning line on stderr (or ``stream``): something the user should know; the command goes on."""
    print(one_line(f"{PROG}: warning: {message}"), file=stream or sys.stderr)


def one_line(message: str) -> str:
    """``message`` as one readable line: control characters escaped, URIs that may hold a secret left
    out, very long words shortened."""
    escaped = _CONTROL.sub(_escape, message)
    return _LONG_WORD.sub(_shorten, _URI_WITH_QUERY.sub(URI_LEFT_OUT, escaped))


def _escape(match: re.Match) -> str:
    return repr(match.group())[1:-1]


def _shorten(match: re.Match) -> str:
    word = match.group()
    return f"{word[:_SHOWN_HEAD]}...{word[-_SHOWN_TAIL:]}"
