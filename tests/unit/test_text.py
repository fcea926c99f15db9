"""idp.security.text: which values the database can hold, and labels as display text."""
from __future__ import annotations

import pytest

from idp.security.text import display_text, storable


@pytest.mark.parametrize("value,expected", [
    ("client-1", True), ("", True), ("café", True), ("👩\u200d💻", True),
    ("a\x00b", False), ("\x00", False), ("é\x00", False),
    ("\ud800", False), ("a\udfffb", False),  # lone surrogates (a JSON body's "\ud800"): no UTF-8 for them
])
def test_storable(value, expected):
    assert storable(value) is expected


@pytest.mark.parametrize("value,expected", [
    ("Work phone", "Work phone"), ("  Work phone \n", "Work phone"),
    ("ab\x00cd", "abcd"), ("a\tb\r\nc", "a b  c"), ("\x1b[31mred\x7f", "[31mred"), ("a\x85b", "a b"),
    ("\x00\x01 ", ""), ("x\ud800y", "xy"),
    ("café 👩\u200d💻", "café 👩\u200d💻"), ("a\u00a0b", "a\u00a0b"),  # joiners and other spaces stay
    # invisible format characters that make two labels look alike or reorder the page around them
    ("Pixel\u200b", "Pixel"), ("Pixel \u202elapot", "Pixel lapot"), ("\ufeffKey\u2066 A\u2069", "Key A"),
    ("\u200e\u200fab\u2060", "ab"), ("line\u2028break\u2029", "line break"), ("می\u200cخواهم", "می\u200cخواهم"),
    # the soft hyphen, the Arabic letter mark, the Mongolian vowel separator, the deprecated
    # shaping and swapping controls and the interlinear annotation controls: as invisible
    ("Work\u00adphone", "Workphone"), ("Key \u061c1-2", "Key 1-2"), ("a\u180eb", "ab"),
    ("\u206a(a)\u206f", "(a)"), ("a\ufff9b\ufffac\ufffb", "abc"),
    # format characters that show or join something stay: an Arabic number sign, a flag's tags
    ("\u0600١٢", "\u0600١٢"), ("\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
                              "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"),
])
def test_display_text(value, expected):
    assert display_text(value) == expected
    assert storable(display_text(value))
