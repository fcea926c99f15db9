"""idp.user_agent: what a session keeps of the User-Agent header, and how people are told it."""
from __future__ import annotations

import pytest

from idp.user_agent import MAX_LENGTH, describe, for_storage


@pytest.mark.parametrize("header, expected", [
    ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox on Linux"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 "
     "Safari/537.36", "Chrome on Windows"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 "
     "Safari/537.36 Edg/126.0.2592.87", "Edge on Windows"),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 "
     "Safari/605.1.15", "Safari on macOS"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.5 Mobile/15E148 Safari/604.1", "Safari on iOS"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "CriOS/126.0.6478.54 Mobile/15E148 Safari/604.1", "Chrome on iOS"),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile "
     "Safari/537.36", "Chrome on Android"),
    ("Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 "
     "Chrome/121.0.0.0 Mobile Safari/537.36", "Samsung Internet on Android"),
    ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 "
     "Safari/537.36 OPR/111.0.0.0", "Opera on ChromeOS"),
    ("Mozilla/5.0 (X11; Linux x86_64)", "Linux"),
    ("curl/8.5.0", "curl/8.5.0"),
    ("python-requests/2.32.3", "python-requests/2.32.3"),
    ("x" * 300, "x" * 40),
    (None, "Unknown browser"),
    ("", "Unknown browser"),
])
def test_describe(header, expected):
    assert describe(header) == expected


@pytest.mark.parametrize("header, expected", [
    ("curl/8.5.0", "curl/8.5.0"),
    ("  Firefox/128.0\t(tab)\x00\x1b[0m ", "Firefox/128.0 (tab)[0m"),   # NUL: PostgreSQL refuses it
    ("\x00\x7f ", None), ("", None), (None, None),
])
def test_for_storage_keeps_one_clean_line(header, expected):
    assert for_storage(header) == expected


def test_for_storage_cuts_a_long_header():
    assert for_storage("a" * 1_000_000) == "a" * MAX_LENGTH
