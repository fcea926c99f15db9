"""What the app reads from stdin and writes to the terminal, made safe for scripts.

The contract promises one clear line on stderr for every failure. Input can break
that promise in ways the commands never see: an argument or a server's answer
holding a newline or an escape sequence, a path of many kilobytes, bytes that are
not UTF-8 (Python hands them over as lone surrogates, which a UTF-8 stdout then
refuses to print), or no stdin at all (``<&-``: ``sys.stdin`` is None).
"""

import re
from typing import Optional, TextIO

from authenticator.errors import AuthenticatorError

# Echoed values (paths, URIs) longer than this are shortened in the middle: the
# start and the end are what tell a user which one it was.
LONGEST_SHOWN = 200
_SHOWN_HEAD, _SHOWN_TAIL = 140, 50

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_LONG_WORD = re.compile(r"\S{%d,}" % (LONGEST_SHOWN + 1))
_SURROGATE = re.compile(r"[\ud800-\udfff]")


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


def printable(text: str) -> str:
    """``text`` that any stdout can print: lone surrogates become U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def one_line(message: str) -> str:
    """``message`` as one readable line: control characters escaped, very long words shortened."""
    escaped = _CONTROL.sub(lambda match: repr(match.group())[1:-1], message)
    return _LONG_WORD.sub(_shorten, escaped)


def _shorten(match: re.Match) -> str:
    word = match.group()
    return f"{word[:_SHOWN_HEAD]}...{word[-_SHOWN_TAIL:]}"
