"""bench/code_post_floor.py: the floor the bench sets beside the provider's code POST does the
work it claims to (a figure for an app that skipped a check or a write would flatter nothing but
mislead whoever compares with it)."""
from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

import pyotp

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from code_post_floor import Floor  # noqa: E402


def _browser_at_code_page(floor: Floor):
    handle, secret = floor.pending.pop()
    browser = floor.app.test_client()
    token = browser.get(f"/login/{handle}").get_data(as_text=True)
    return browser, handle, secret, token


def _count(floor: Floor, table: str) -> int:
    with sqlite3.connect(floor.path) as connection:
        return connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_a_right_code_signs_in_once_and_writes_what_the_provider_writes(tmp_path):
    floor = Floor(tmp_path, 2)
    browser, handle, secret, token = _browser_at_code_page(floor)
    code = pyotp.TOTP(secret).now()

    response = browser.post(f"/login/{handle}", data={"csrf_token": token, "version": "2", "code": code})
    assert response.status_code == 302
    assert "code=" in response.headers["Location"] and "iss=" in response.headers["Location"]
    assert [_count(floor, t) for t in ("user_sessions", "audit_events", "authorization_codes")] == [1, 2, 1]

    # The same form posted again: the session was rotated at sign-in, so its CSRF token no longer
    # checks (and the login has moved on besides); nothing more is written.
    again = browser.post(f"/login/{handle}", data={"csrf_token": token, "version": "2", "code": code})
    assert again.status_code == 400
    assert _count(floor, "authorization_codes") == 1


def test_a_wrong_code_or_a_missing_csrf_token_changes_nothing(tmp_path):
    floor = Floor(tmp_path, 1)
    browser, handle, secret, token = _browser_at_code_page(floor)
    totp = pyotp.TOTP(secret)
    right = totp.now()
    step = totp.timecode(time.time())
    accepted = {totp.generate_otp(step + drift) for drift in (-1, 0, 1)}
    wrong = next(f"{n:06d}" for n in range(4) if f"{n:06d}" not in accepted)

    assert browser.post(f"/login/{handle}", data={"csrf_token": token, "version": "2", "code": wrong}).status_code == 401
    assert browser.post(f"/login/{handle}", data={"version": "2", "code": right}).status_code == 400
    assert [_count(floor, t) for t in ("user_sessions", "audit_events", "authorization_codes")] == [0, 0, 0]
    with sqlite3.connect(floor.path) as connection:
        assert connection.execute("SELECT state FROM login_transactions").fetchone()[0] == "second_factor"
