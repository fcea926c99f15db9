"""What the app prints on stdout for a human: no control character from outside reaches the terminal.

A push request shows the User-Agent of the browser that started the login, in the case push
approval exists for the attacker's. ``X ESC[2K ESC[G    from 10.0.0.1 (office VPN)`` would erase
the real "from" line and write a fake one before the user decides. Account labels come from QR
codes anyone can make. Every such value is escaped (``\\x1b``), keeping only the layout's newlines.
"""

import io
import json
import re
import time

from authenticator.accounts import PUSH, Account, PushData
from authenticator.terminal import printable, shown
from authenticator_testkit import SECRET, TOTP_URI, one_line_error

FAKE_FROM = "X\x1b[2K\x1b[G    from 10.0.0.1 (office VPN)"
TERMINAL_CONTROLS = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")  # all but the newline


def push_account(label_name="alice@example.com"):
    return Account(id="a1b2c3d4", type=PUSH, issuer="idp.example", name=label_name,
                   push=PushData(issuer_url="https://idp.example", username="alice@example.com",
                                 device_id="d", device_private_key="PEM"))


def challenge(**context):
    values = {"application": "Payroll", "ip": "203.0.113.7", "user_agent": "Firefox", "time": time.time()}
    values.update(context)
    return {"id": "c0ffee" * 4, "expires_at": time.time() + 60, "digits": 2, "context": values}


def test_shown_escapes_every_control_character_and_printable_keeps_newlines():
    assert shown("a\x1b[2Kb\nc\rd\x7fe\x9bf\x00") == "a\\x1b[2Kb\\nc\\rd\\x7fe\\x9bf\\x00"
    assert printable("line one\nline\x1b[2K two\r\t") == "line one\nline\\x1b[2K two\\r\\t"
    assert shown("al\udcffice") == "al\ufffdice"  # still printable on a UTF-8 stdout


def test_a_user_agent_cannot_rewrite_the_request_shown_to_the_user():
    from authenticator.push.commands import describe

    text = describe(challenge(user_agent=FAKE_FROM), push_account())
    assert not TERMINAL_CONTROLS.search(text), text
    assert "browser: X\\x1b[2K\\x1b[G    from 10.0.0.1" in text
    assert len(text.splitlines()) == 2 and "from 203.0.113.7" in text.splitlines()[1]


def test_every_server_field_and_the_label_are_escaped_one_by_one():
    from authenticator.push.commands import describe

    text = describe(challenge(application="Pay\nroll", ip="203.0.113.7\n    from 10.0.0.1", time="x"),
                    push_account("alice\x1b]0;title\x07"))
    assert not TERMINAL_CONTROLS.search(text), text
    assert len(text.splitlines()) == 2, text  # a newline inside a field is shown as \n, not obeyed
    assert "Pay\\nroll" in text and "alice\\x1b]0;title\\x07" in text


def test_watch_asks_without_passing_control_characters_through(monkeypatch):
    from authenticator.push import commands

    monkeypatch.setattr(commands.sys, "stdin", io.StringIO("\n"))  # Enter: skip

    class Ctx:
        out = io.StringIO()

    assert commands._ask(Ctx, challenge(user_agent=FAKE_FROM), push_account()) == 0
    printed = Ctx.out.getvalue()
    assert "\x1b" not in printed and "\\x1b[2K" in printed and "skipped" in printed


def test_result_lines_escape_the_request_id():
    from authenticator.push.commands import result_line

    assert "\x1b" not in result_line({"status": "approved"}, "abc\x1b[2Kdef")


def test_human_output_escapes_and_json_stays_exact(capsys, tmp_path):
    from authenticator.cli import Context
    from authenticator.secret_input import passphrase_source, recovery_secret_source

    out = io.StringIO()
    ctx = Context(home=tmp_path, as_json=False, passphrase=passphrase_source(None),
                  recovery_secret=recovery_secret_source(None), out=out, err=io.StringIO())
    ctx.emit({"name": "a\x1bb"}, "first\x1b[2K\nsecond\r")
    assert out.getvalue() == "first\\x1b[2K\nsecond\\r\n"
    ctx.as_json = True
    ctx.emit({"name": "a\x1bb"}, "ignored")
    assert json.loads(out.getvalue().splitlines()[-1]) == {"name": "a\x1bb"}


def test_labels_from_a_qr_code_are_escaped_in_add_list_and_remove(app):
    uri = f"otpauth://totp/Bank:me%1B%5B2K%0Dfake%0Aline?secret={SECRET}&issuer=Bank"
    added = app.ok("add", uri)
    listed = app.ok("list")
    removed = app.ok("remove", "Bank:me\x1b[2K\rfake\nline")
    for out in (added, listed, removed):
        assert not TERMINAL_CONTROLS.search(out) and out.count("\n") == 1, out
        assert "me\\x1b[2K\\rfake\\nline" in out


def test_list_json_keeps_the_label_exact(app):
    app.ok("add", f"otpauth://totp/Bank:me%1Bx?secret={SECRET}&issuer=Bank")
    assert json.loads(app.ok("--json", "list"))[0]["name"] == "me\x1bx"



ASCII_STDIO = {"PYTHONIOENCODING": "ascii"}


def test_a_label_an_ascii_stdout_cannot_hold_is_escaped_not_a_traceback(app):
    """With an ASCII stdout (PYTHONIOENCODING=ascii) printing "Café" was a UnicodeEncodeError
    traceback, after `add` had saved the account."""
    added = app.run("add", f"otpauth://totp/Caf%C3%A9:z%C3%B6e?secret={SECRET}&issuer=Caf%C3%A9", env=ASCII_STDIO)
    assert added.returncode == 0 and added.stderr == ""
    assert added.stdout.startswith("added Caf\\xe9:z\\xf6e (totp, id ")
    assert app.ok("list", env=ASCII_STDIO).split("  ")[1] == "Caf\\xe9:z\\xf6e"
    assert json.loads(app.ok("--json", "list", env=ASCII_STDIO))[0]["issuer"] == "Café"  # JSON escapes itself


def test_an_error_quoting_what_an_ascii_stderr_cannot_hold_is_one_line(app):
    """Python's stderr escapes by default; main() keeps it so (it sets both streams alike)."""
    app.ok("add", TOTP_URI)
    for args in (["code", "Café"], ["bogus-€"]):
        result = app.run(*args, env=ASCII_STDIO)
        line = one_line_error(result)
        assert "Caf\\xe9" in line or "bogus-\\u20ac" in line, line


INVISIBLE = ["\u200b", "\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2060", "\u2061",
             "\u2062", "\u2063", "\u2064", "\u2066", "\u2067", "\u2068", "\u2069", "\ufeff", "\u2028", "\u2029",
             "\u00ad", "\u061c", "\u180e", "\u206a", "\u206f", "\ufff9", "\ufffb"]


def test_bidi_and_other_invisible_format_characters_are_escaped():
    """U+202E turns "evil\u202emoc.elgoog" into what reads as a trusted name; the server strips the same
    set (idp/security/text.py). Each is shown as its escape, in values, layouts and error lines alike."""
    from authenticator.terminal import one_line

    for char in INVISIBLE:
        escaped = f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"  # as Python writes it
        assert shown(f"a{char}b") == f"a{escaped}b"
        assert printable(f"a{char}b\nc") == f"a{escaped}b\nc"
        assert one_line(f"a{char}b") == f"a{escaped}b"
    assert shown("Café ✓ 日本") == "Café ✓ 日本"  # other non-ASCII text is left as it is


def test_a_reversed_application_name_cannot_disguise_a_request():
    from authenticator.push.commands import describe

    text = describe(challenge(application="Payroll\u202e lanretni", user_agent="Fire\u2066fox\u2069"),
                    push_account("alice\u200b@example.com"))
    assert not any(char in text for char in INVISIBLE), text
    assert "Payroll\\u202e lanretni" in text and "alice\\u200b@example.com" in text
