"""Text from outside (forms, query strings, JSON bodies, signed device requests) on its way to the database.

Two kinds of character reach a text column only to make the driver fail: NUL, which PostgreSQL's
text and JSONB values refuse (psycopg raises `DataError`; SQLite stores it), and a lone surrogate,
which a JSON body may spell (`"\\ud800"`) but no database can encode as UTF-8 (the driver raises
`UnicodeEncodeError`, on SQLite as on PostgreSQL). Neither is ever part of a stored value here, so:

- a value looked up by (a client id, an e-mail address, a challenge id, a lookup key) that is not
  `storable` names no row: the caller answers "no such thing" without asking the database;
- display text a user or device chooses (a credential label, a device name) goes through
  `display_text` before it is stored.

`idp.errors` answers a `DataError` that still gets through with a 400 (and rolls back).
"""
from __future__ import annotations

import re

# Cc (C0, DEL, C1) and the surrogates; and the invisible format characters that make two names
# look alike or reorder what is shown around them: the soft hyphen, the Mongolian vowel
# separator, zero-width space, word joiner and invisible operators, the deprecated shaping and
# swapping controls (U+206A-U+206F), the interlinear annotation controls, the byte-order mark,
# and the bidirectional marks (the Arabic letter mark among them), embeddings, overrides and
# isolates (U+202E shows "Pixel" + RLO + "lapot" as "Pixeltopal"). The zero-width joiners
# (U+200C, U+200D) stay: emoji sequences and several scripts need them; so do the format
# characters that show or join something (Arabic number signs, Egyptian hieroglyph joiners, the
# tags of a subdivision flag emoji). The whitespace among the controls, and the line and
# paragraph separators, become a space.
_SPACING_CONTROLS = re.compile("[\t\n\v\f\r\x1c-\x1f\x85\u2028\u2029]")
_OTHER_CONTROLS = re.compile("[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\xad\u061c\u180e\ud800-\udfff"
                             "\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]")


def storable(value: str) -> bool:
    """Whether a database text column can hold `value` (no NUL, no lone surrogate).

    Cheap on the hot paths (the token endpoint's client id): one scan for NUL, and the UTF-8
    check only for a string that is not ASCII (`isascii` reads a flag).
    """
    if "\x00" in value:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def display_text(value: str) -> str:
    """`value` as one line of display text: tabs and line breaks as spaces, the other control
    characters, invisible format characters and lone surrogates removed, surrounding whitespace
    stripped. Other characters (accents, emoji and their joiners) stay as typed."""
    if value.isprintable():
        return value.strip()
    return _OTHER_CONTROLS.sub("", _SPACING_CONTROLS.sub(" ", value)).strip()


def name_problem(name: str, max_length: int) -> str | None:
    """Why `name` (already stripped) cannot name something an operator registers (an organization,
    a client), or None: the end of a sentence that starts with what it names ("the client name ...")."""
    if not name:
        return "must not be empty"
    if len(name) > max_length:
        return f"is longer than {max_length} characters"
    if not name.isprintable():
        return "must not contain control characters"
    return None
