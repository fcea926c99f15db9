"""The command line as a script sees it: output, --json, one-line errors, exit statuses."""

import io
import json

import segno

from authenticator.accounts import TotpParams
from authenticator.totp import code_at
from authenticator_testkit import FIXED_TIME, PASSPHRASE, SECRET, TOTP_URI, App, one_line_error


def test_add_list_code_remove(app):
    assert "added ACME:alice@example.com" in app.ok("add", TOTP_URI)
    listed = json.loads(app.ok("--json", "list"))
    assert [(a["issuer"], a["name"], a["type"]) for a in listed] == [("ACME", "alice@example.com", "totp")]
    assert set(listed[0]) >= {"id", "issuer", "name", "type"}
    expected = code_at(TotpParams(secret=SECRET), FIXED_TIME)
    for query in (listed[0]["id"], "ACME:alice@example.com", "alice@example.com"):
        assert json.loads(app.ok("code", query, "--json")) == {"code": expected, "expires_in": 10}
    assert app.ok("code", "alice@example.com").startswith(expected)
    assert "removed" in app.ok("remove", listed[0]["id"])
    assert json.loads(app.ok("list", "--json")) == []


def test_add_from_qr_png(app, tmp_path):
    image = tmp_path / "enrol.png"
    segno.make(TOTP_URI, error="m").save(str(image), scale=5)
    app.ok("add", str(image))
    expected = code_at(TotpParams(secret=SECRET), FIXED_TIME)
    assert json.loads(app.ok("--json", "code", "ACME:alice@example.com"))["code"] == expected


def test_parameters_reach_the_code(app):
    uri = f"otpauth://totp/Bank:bob?secret={SECRET}&algorithm=SHA256&digits=8&period=60"
    app.ok("add", uri)
    expected = code_at(TotpParams(secret=SECRET, algorithm="SHA256", digits=8, period=60), FIXED_TIME)
    assert json.loads(app.ok("--json", "code", "bob"))["code"] == expected


def test_hotp_and_malformed_uris_are_one_line_errors(app):
    assert "hotp" in one_line_error(app.run("add", "otpauth://hotp/x?secret=JBSWY3DPEHPK3PXP"))
    assert "no secret" in one_line_error(app.run("add", "otpauth://totp/x"))
    assert "not supported" in one_line_error(app.run("add", "idp-push://activate?c=1"))  # no v=1
    assert "no such file" in one_line_error(app.run("add", "missing.png"))
    assert not app.home.exists() or not any(app.home.glob("store*"))


def test_ambiguous_and_unknown_accounts(app):
    app.ok("add", f"otpauth://totp/One:sam?secret={SECRET}")
    app.ok("add", f"otpauth://totp/Two:sam?secret={SECRET}")
    assert "several accounts" in one_line_error(app.run("code", "sam"))
    assert "no account matches" in one_line_error(app.run("remove", "nobody"))
    assert len(json.loads(app.ok("--json", "list"))) == 2


def test_duplicate_add_refused(app):
    app.ok("add", TOTP_URI)
    assert "already exists" in one_line_error(app.run("add", TOTP_URI))


def test_wrong_passphrase(app):
    app.ok("add", TOTP_URI)
    result = app.run("list", env={"IDP_AUTHENTICATOR_PASSPHRASE": "guess"})
    assert one_line_error(result) == "idp-authenticator: wrong passphrase"
    assert result.returncode == 3


def test_passphrase_file(app, tmp_path):
    secret_file = tmp_path / "pass.txt"
    secret_file.write_text("from a file\n")
    env = {"IDP_AUTHENTICATOR_PASSPHRASE": None}
    app.ok("--passphrase-file", str(secret_file), "add", TOTP_URI, env=env)
    assert json.loads(app.ok("list", "--json", "--passphrase-file", str(secret_file), env=env))
    assert app.run("list", env={"IDP_AUTHENTICATOR_PASSPHRASE": "from a file"}).returncode == 0


class FakeTerminal(io.StringIO):
    """A stdin someone sits at: the prompts (getpass) are answered by the test."""

    def isatty(self) -> bool:
        return True


def test_new_store_asks_twice_when_interactive(app, monkeypatch, capsys):
    # In-process: a subprocess's stdin is not a terminal, and then nothing is asked (see below).
    from authenticator.cli import main

    answers = iter(["one passphrase", "another one", "same passphrase", "same passphrase"])
    monkeypatch.delenv("IDP_AUTHENTICATOR_PASSPHRASE")
    monkeypatch.setattr("sys.stdin", FakeTerminal())
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    assert main(["--home", str(app.home), "add", TOTP_URI]) == 1
    assert capsys.readouterr().err == "idp-authenticator: the two passphrases differ\n"
    assert not any(app.home.glob("store*"))
    assert main(["--home", str(app.home), "add", TOTP_URI]) == 0
    assert "ACME:alice@example.com" in app.ok("list", env={"IDP_AUTHENTICATOR_PASSPHRASE": "same passphrase"})


def test_a_new_store_wants_a_passphrase_of_8_characters_and_an_old_one_still_opens(app, tmp_path):
    """Offline guessing of a copied store goes at scrypt's pace: a one-letter passphrase is no
    protection. Only a new store is held to it (one made before the rule opens as before)."""
    from authenticator.store import Vault

    short = app.run("add", TOTP_URI, env={"IDP_AUTHENTICATOR_PASSPHRASE": "1234567"})
    assert short.returncode == 1 and one_line_error(short) == (
        "idp-authenticator: a new passphrase must be at least 8 characters (several words are best)")
    assert not any(app.home.glob("store*"))
    Vault.create(app.home, "old").save()  # as an earlier version let it be made
    assert app.run("list", env={"IDP_AUTHENTICATOR_PASSPHRASE": "old"}).returncode == 0


def test_without_a_terminal_the_passphrase_is_not_asked_for(app):
    """No GetPassWarning, no prompt nobody sees: one line naming the two ways to give it."""
    app.ok("add", TOTP_URI)
    result = app.run("list", env={"IDP_AUTHENTICATOR_PASSPHRASE": None}, stdin="")
    assert one_line_error(result) == (
        "idp-authenticator: no passphrase given: set IDP_AUTHENTICATOR_PASSPHRASE or use --passphrase-file FILE "
        "(stdin is not a terminal, so it cannot be asked for)")
    assert result.returncode == 1
    # A passphrase piped to stdin is not read either: it would have been echoed to the screen.
    assert one_line_error(app.run("list", env={"IDP_AUTHENTICATOR_PASSPHRASE": None}, stdin=PASSPHRASE + "\n"))


def test_default_home_follows_xdg(tmp_path):
    app = App(tmp_path / "xdg" / "idp-authenticator")
    app.ok("add", TOTP_URI, env={"XDG_DATA_HOME": str(tmp_path / "xdg")}, pass_home=False)
    assert (app.home / "store.bin").exists()


def test_default_home_without_xdg(monkeypatch, tmp_path):
    from authenticator.home import resolve_home

    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_home(None) == tmp_path / ".local" / "share" / "idp-authenticator"
    assert resolve_home(str(tmp_path / "elsewhere")) == tmp_path / "elsewhere"


def test_list_on_a_fresh_home_is_empty_and_creates_nothing(app):
    assert json.loads(app.ok("--json", "list")) == []
    assert app.files() == {}


def test_recover_of_unknown_account_on_fresh_home(app):
    # recover itself is tested against a live server: tests/authenticator/test_recover_*.py, tests/integration.
    for args in (["recover", "alice", "--password"], ["recover", "alice", "--qr", "x.png"]):
        result = app.run(*args)
        assert "no account matches 'alice'" in one_line_error(result)
    assert app.files() == {}


def test_code_of_unknown_account_on_fresh_home(app):
    assert "no account matches" in one_line_error(app.run("code", "x"))


def test_a_file_named_on_the_command_line_beats_the_environment(app, tmp_path):
    """--help says so: a leftover exported variable must not silently win over --passphrase-file."""
    secret_file = tmp_path / "pass.txt"
    secret_file.write_text("from a file\n")
    app.ok("--passphrase-file", str(secret_file), "add", TOTP_URI, env={"IDP_AUTHENTICATOR_PASSPHRASE": None})
    assert app.run("--passphrase-file", str(secret_file), "list",
                   env={"IDP_AUTHENTICATOR_PASSPHRASE": "leftover"}).returncode == 0


def test_a_passphrase_file_that_is_not_text_is_a_one_line_error(app, tmp_path):
    binary = tmp_path / "pass.bin"
    binary.write_bytes(b"\xff\xfe\x00")
    result = app.run("--passphrase-file", str(binary), "add", TOTP_URI)
    assert "not UTF-8" in one_line_error(result) and result.returncode != 0


def test_an_image_claiming_too_many_pixels_is_a_one_line_error(app, tmp_path):
    """Pillow refuses to decode it with DecompressionBombError, which is not an OSError."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    result = app.run("add", str(bomb))
    assert "cannot read image" in one_line_error(result) and result.returncode != 0


def test_an_image_of_many_pixels_in_few_bytes_is_refused_before_it_is_decoded(app, tmp_path):
    """13000 x 13000 RGBA in a 0.7 MB PNG: under Pillow's own refusal (179 M pixels), over its warning,
    which the decoder's noise silences. Decoded, it took 1.2 GB (an audit measured it); refused from
    its header instead (authenticator.qr.MAX_PIXELS)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # (Its pixels need not be there: the size is read from the header, and nothing more is. A real
    # one, all white, is 0.7 MB.)
    image = tmp_path / "big.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 13000, 13000, 8, 6, 0, 0, 0))
                      + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    result = app.run("add", str(image))
    assert "more than the 64 million a QR code photo needs" in one_line_error(result) and result.returncode != 0


def test_a_full_disk_is_a_one_line_error(app):
    """The store is replaced atomically: a write that fails leaves the old one, and says why."""
    import os
    import resource
    import signal
    import subprocess
    import sys

    from authenticator_testkit import REPO

    app.ok("add", TOTP_URI)

    def no_room():  # every write beyond 0 bytes fails with EFBIG, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))

    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    result = subprocess.run([sys.executable, "-m", "authenticator", "--home", str(app.home), "add",
                             TOTP_URI.replace("alice", "bob")], capture_output=True, text=True, env=env,
                            cwd=REPO, preexec_fn=no_room, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "cannot write" in result.stderr
    assert len(json.loads(app.ok("--json", "list"))) == 1


# Run before the app: its stdout on the full device (every write fails, ENOSPC), or closed (`>&-`).
STDOUT_FULL = "import os\nos.dup2(os.open('/dev/full', os.O_WRONLY), 1)"
STDOUT_CLOSED = "import os, sys\nos.close(1)\nsys.stdout = None"


def test_an_unwritable_stdout_after_a_saved_change_says_it_was_saved(app):
    """`add URI >/dev/full` saved the account, then failed with "cannot write" (status 1): run again,
    it said "already exists". Now the line says what happened; the status is still 1."""
    from pathlib import Path

    if not Path("/dev/full").exists():
        import pytest

        pytest.skip("needs /dev/full")
    for prelude, reason in ((STDOUT_FULL, "No space left on device"), (STDOUT_CLOSED, "stdout is closed")):
        uri = TOTP_URI.replace("alice", "alice-full" if prelude == STDOUT_FULL else "alice-closed")
        result = app.run("add", uri, prelude=prelude)
        assert result.returncode == 1 and one_line_error(result) == (
            f"idp-authenticator: the account was saved, but the output could not be written ({reason})"), result
    assert [a["name"] for a in json.loads(app.ok("--json", "list"))] == ["alice-full@example.com",
                                                                        "alice-closed@example.com"]
    # Nothing changed: the plain "cannot write" line, as before (closed stdout: no silent success).
    assert one_line_error(app.run("list", prelude=STDOUT_CLOSED)) == "idp-authenticator: cannot write: stdout is closed"


def test_the_help_says_what_an_account_argument_may_be(capsys):
    """README and `--help` say how ACCOUNT is matched (the id, ISSUER:NAME or a unique NAME), as
    test_add_list_code_remove uses it: a bare ACCOUNT left a user guessing."""
    from authenticator.cli import build_parser

    for command in ("code", "remove", "recover"):
        try:
            build_parser().parse_args([command, "--help"])
        except SystemExit:
            pass
        assert "ISSUER:NAME" in " ".join(capsys.readouterr().out.split())
