"""Bad input from a script, with no terminal: always one line on stderr, never a traceback.

The contract: "Exit status 0 on success, non-zero with one clear line on stderr otherwise".
These are the ways around that a script can stumble into: a secret that would be asked for
with nobody to ask, a usage mistake, and arguments, variables or files that are not what a
message or a key can hold (a newline, many kilobytes, bytes that are not UTF-8).
"""

import pytest

from authenticator_testkit import SECRET, TOTP_URI, one_line_error

NO_SECRETS = {"IDP_AUTHENTICATOR_PASSPHRASE": None, "IDP_AUTHENTICATOR_RECOVERY_SECRET": None}
# A UTF-8 stdout refuses to print undecodable bytes; without this the C locale would hide that.
UTF8_STDIO = {"PYTHONIOENCODING": "utf-8"}


def test_backup_enable_without_a_recovery_secret_names_the_ways_to_give_it(app, tmp_path):
    app.ok("add", TOTP_URI)
    before = app.files()
    result = app.run("backup", "--enable", "--to", str(tmp_path / "backups"),
                     env={"IDP_AUTHENTICATOR_RECOVERY_SECRET": None})
    assert one_line_error(result) == (
        "idp-authenticator: no recovery secret given: set IDP_AUTHENTICATOR_RECOVERY_SECRET or use "
        "--recovery-secret-file FILE (stdin is not a terminal, so it cannot be asked for)")
    assert result.returncode == 1
    assert app.files() == before


def test_no_stdin_at_all_is_a_one_line_error(app):
    app.ok("add", TOTP_URI)
    result = app.run("list", env=NO_SECRETS, close_stdin=True)
    assert "no passphrase given" in one_line_error(result) and result.returncode == 1


@pytest.mark.parametrize("args", [
    [],
    ["bogus"],
    ["list", "extra"],
    ["approve", "abcdef"],
    ["backup", "--now", "--disable"],
    ["recover", "alice"],
    ["--no-such-option", "list"],
    ["list", "two\nlines"],
])
def test_usage_errors_are_one_line_with_status_2(app, args):
    result = app.run(*args)
    line = one_line_error(result)
    assert result.returncode == 2
    assert line.startswith("idp-authenticator") and ": error: " in line and "--help'" in line
    assert not result.stdout


def test_help_still_prints_the_full_usage(app):
    result = app.run("--help")
    assert result.returncode == 0 and not result.stderr
    assert result.stdout.startswith("usage: idp-authenticator") and "restore" in result.stdout
    assert "--number NN" in app.ok("approve", "--help")


def test_a_newline_in_an_argument_stays_on_the_one_line(app):
    result = app.run("add", "missing\nfile.png")
    assert one_line_error(result) == "idp-authenticator: no such file: missing\\nfile.png"


def test_a_very_long_argument_is_shortened_in_the_message(app):
    long_name = "a" * 100_000
    for args in (["add", long_name], ["--home", long_name, "add", TOTP_URI], ["code", long_name], [long_name]):
        result = app.run(*args)
        assert len(one_line_error(result)) < 600, args


def test_a_directory_given_as_an_image_says_so(app, tmp_path):
    result = app.run("add", str(tmp_path))
    assert one_line_error(result) == f"idp-authenticator: cannot read image {tmp_path}: Is a directory"


def test_a_passphrase_that_is_not_utf8_is_a_one_line_error(app):
    result = app.run("add", TOTP_URI, env={"IDP_AUTHENTICATOR_PASSPHRASE": "\udcff"})  # the byte 0xff
    assert one_line_error(result) == "idp-authenticator: the passphrase is not UTF-8 text"
    assert not any(app.home.glob("store*"))


def test_an_endless_passphrase_file_is_a_one_line_error(app):
    app.ok("add", TOTP_URI)
    result = app.run("--passphrase-file", "/dev/zero", "list")
    assert "too long" in one_line_error(result) and result.returncode == 1


def test_a_uri_that_is_not_utf8_is_refused_before_it_is_stored(app):
    """Stored, its label would make every later `list` fail to print on a UTF-8 stdout."""
    uri = TOTP_URI.replace("alice", "al\udcffice")  # the byte 0xff in the argument
    result = app.run("add", uri, env=UTF8_STDIO)
    assert "the URI is not UTF-8 text" in one_line_error(result) and result.returncode == 1
    assert app.files() == {}


def test_a_stored_label_that_is_not_utf8_still_lists(app):
    """A store written before that check (or a server's answer) may hold such a label."""
    from authenticator.otpauth import parse_totp_uri
    from authenticator.store import Vault
    from authenticator_testkit import PASSPHRASE

    vault = Vault.create(app.home, PASSPHRASE)
    vault.add(parse_totp_uri(TOTP_URI.replace("alice", "al\udcffice")))
    vault.save()
    result = app.run("list", env=UTF8_STDIO)
    assert result.returncode == 0 and not result.stderr, result.stderr
    assert "al\ufffdice" in result.stdout


@pytest.mark.parametrize("parameter", ["digits", "period"])
def test_a_number_of_thousands_of_digits_is_refused_in_one_line(app, parameter):
    """int() refuses more than 4300 digits with a ValueError: the text is checked first."""
    result = app.run("add", f"otpauth://totp/A:b?secret=JBSWY3DPEHPK3PXP&{parameter}={'1' * 5000}")
    line = one_line_error(result)
    assert result.returncode == 1 and f"unsupported otpauth {parameter} '111" in line and len(line) < 600
    assert app.files() == {}


@pytest.mark.parametrize("uri,message", [
    ("idp-push://activate?v=1&issuer=https://x&endpoint=http://[::1&code=abc",
     "malformed endpoint URL in the push activation URI"),
    ("idp-push://activate?v=1&issuer=http://[::1&endpoint=https://x&code=abc",
     "malformed issuer URL in the push activation URI"),
    ("idp-push://activate?v=1&issuer=https://x&endpoint=https://x&code=A&code=B",
     "push activation URI repeats parameter 'code'"),
    ("idp-push://activate?v=1&issuer=https://x&endpoint=https://x&code=A&CODE=B",
     "push activation URI repeats parameter 'code'"),
    ("idp-push://activate?v=1&issuer=https://x&endpoint=https://x&endpoint=https://evil&code=A",
     "push activation URI repeats parameter 'endpoint'"),
    # The code is a secret: never to a server over plain http elsewhere than this machine, and the
    # endpoint is the issuer's (E = ISS + "/factors/push/v1"), not any server the QR code names.
    ("idp-push://activate?v=1&issuer=http://id.example&endpoint=http://id.example/factors/push/v1&code=A",
     "the issuer URL in the push activation URI must be an https URL (plain http only to this machine)"),
    ("idp-push://activate?v=1&issuer=https://id.example&endpoint=http://id.example/factors/push/v1&code=A",
     "the endpoint URL in the push activation URI must be an https URL (plain http only to this machine)"),
    ("idp-push://activate?v=1&issuer=https://id.example&endpoint=https://evil.example/factors/push/v1&code=A",
     "the endpoint URL in the push activation URI is not on the issuer's server"),
])
def test_a_malformed_activation_uri_is_refused_before_any_request(app, uri, message):
    """urlsplit raises ValueError on an unclosed IPv6 bracket; the parameters must be one of each.
    (No server listens at these URLs: a request would have been exit 20.)"""
    result = app.run("add", uri)
    assert one_line_error(result) == f"idp-authenticator: {message}" and result.returncode == 1
    assert app.files() == {}


def test_a_uri_pasted_with_spaces_around_it_is_still_a_uri(app):
    assert app.ok("add", f" {TOTP_URI}\n").startswith("added ACME:alice@example.com")


@pytest.mark.parametrize("argument", [
    " otpauth:/totp/A:b?secret=JBSWY3DPEHPK3PXP",  # one slash lost: not a URI, so a file name
    "otpauth:totp/A:b?secret=JBSWY3DPEHPK3PXP",
    "OTPAUTH:/totp/A:b?secret=JBSWY3DPEHPK3PXP",
    "idp-push:/activate?v=1&issuer=https://x&endpoint=https://x&code=JBSWY3DPEHPK3PXP",
    "otpauth:/totp/A:b?secret=JBSWY3DPEHPK3PXP" + "x" * 5000,  # "File name too long"
])
def test_an_argument_that_looks_like_a_uri_is_never_echoed(app, argument):
    """It may hold the account's secret (or a one-time code): an error goes to logs and screenshots."""
    result = app.run("add", argument)
    line = one_line_error(result)
    assert "JBSWY3DPEHPK3PXP" not in result.stderr and "totp/" not in line and "activate" not in line
    assert "not repeated here: it may hold a secret" in line and result.returncode == 1


@pytest.mark.parametrize("args", [
    [TOTP_URI],  # `add` forgotten: argparse quotes the invalid command
    ["code", TOTP_URI],  # "no account matches ..."
    ["remove", TOTP_URI.replace("secret=", "sec\nret=")],  # an escaped newline does not end it
    # A label with a space or a quote, which `add` takes as it is ("ACME:John Smith"): no character
    # tells where such a URI ends, so the whole rest of the line is left out (an audit saw it quoted).
    ["code", f"otpauth://totp/ACME:John Smith?secret={SECRET}&issuer=ACME"],
    ["remove", f"otpauth://totp/ACME:O'Brien?secret={SECRET}"],
    [f"otpauth://totp/ACME:John Smith?secret={SECRET}"],
])
def test_no_error_quotes_a_uri_given_where_something_else_belongs(app, args):
    app.ok("add", "otpauth://totp/Other:zed?secret=MFRGGZDFMZTWQ2LK")
    result = app.run(*args)
    line = one_line_error(result)
    assert SECRET not in line and "secret=" not in line
    assert "(a URI, not repeated here: it may hold a secret)" in line


# --- the test-only variables, leaked into a real environment --------------------------------------

@pytest.mark.parametrize("value", ["abc", "nan", "inf", "-inf", "-1", "1e30", "12:00"])
def test_an_unusable_pinned_time_is_a_one_line_error(app, value):
    app.ok("add", TOTP_URI)
    result = app.run("code", "alice@example.com", env={"IDP_AUTHENTICATOR_NOW": value})
    assert one_line_error(result) == (f"idp-authenticator: IDP_AUTHENTICATOR_NOW={value!r} is not a time (Unix "
                                      "seconds, from 0 to 253402300799); it is for tests only: unset it")
    assert result.returncode == 1


COST_WARNING = ("idp-authenticator: warning: IDP_AUTHENTICATOR_SCRYPT_N=16 sets the scrypt cost of new stores and "
                "backups (for tests only: unset it; a low cost makes their passphrase or recovery secret fast to "
                "guess)\n")


def test_the_test_only_scrypt_cost_is_announced_whenever_it_is_used(app, tmp_path):
    """It weakens every store and backup made with it, for good: never silently. Once per command, and
    only for a command that makes a store or a backup key."""
    result = app.run("add", TOTP_URI, keep_cost_warning=True)
    assert result.returncode == 0 and result.stderr == COST_WARNING
    result = app.run("backup", "--enable", "--to", str(tmp_path / "cloud"), keep_cost_warning=True)
    assert result.returncode == 0 and result.stderr == COST_WARNING
    result = app.run("list", keep_cost_warning=True)
    assert result.returncode == 0 and result.stderr == ""


def test_without_the_test_only_scrypt_cost_nothing_is_announced(app):
    result = app.run("add", TOTP_URI, env={"IDP_AUTHENTICATOR_SCRYPT_N": None}, keep_cost_warning=True)
    assert result.returncode == 0 and result.stderr == ""


@pytest.mark.parametrize("value", ["abc", "3", "0", str(2**21)])
def test_an_unusable_scrypt_cost_is_a_one_line_error(app, value):
    result = app.run("add", TOTP_URI, env={"IDP_AUTHENTICATOR_SCRYPT_N": value})
    assert one_line_error(result) == (f"idp-authenticator: IDP_AUTHENTICATOR_SCRYPT_N={value!r} is not a usable "
                                      "scrypt n (a power of two up to 2**20; for tests only: unset it)")
    assert result.returncode == 1 and not app.home.exists()


NO_SUCH_USER = "~no-such-user-on-this-machine"


@pytest.mark.parametrize("args", [
    ["--home", f"{NO_SUCH_USER}/phone", "list"],
    ["--home", f"{NO_SUCH_USER}/phone", "add", TOTP_URI],
    ["backup", "--enable", "--to", f"{NO_SUCH_USER}/cloud"],
    ["restore", "--from", f"{NO_SUCH_USER}/cloud"],
])
def test_a_tilde_naming_no_user_is_a_one_line_error(app, args):
    """`~name/...` is expanded as a shell would; a user this machine does not know was a traceback
    (RuntimeError from pathlib) before any command ran."""
    result = app.run(*args)
    line = one_line_error(result)
    assert f"{NO_SUCH_USER}/" in line and "no user" in line, line
    assert app.files() == {}


@pytest.mark.parametrize("args, message", [
    (["--home", "", "add", TOTP_URI], "--home must name a directory"),
    (["--home", "", "list"], "--home must name a directory"),
    (["add", TOTP_URI, "--home", ""], "--home must name a directory"),
    (["restore", "--from", ""], "--from must name a directory"),
    (["recover", "alice", "--qr", ""], "--qr must name an image or a URI"),
    (["--passphrase-file", "", "add", TOTP_URI], "--passphrase-file must name a file"),
    (["--recovery-secret-file", "", "restore", "--from", "."], "--recovery-secret-file must name a file"),
])
def test_an_empty_path_is_refused_not_taken_for_the_default(app, tmp_path, args, message):
    """An empty value (a script's unset variable: `--home "$PHONE"`) meant the default home, the
    current directory, or the secret from the environment: the wrong store changed, silently."""
    default_data = tmp_path / "data"
    result = app.run(*args, env={"XDG_DATA_HOME": str(default_data)}, pass_home=False)
    line = one_line_error(result)
    assert line == f"idp-authenticator: error: {message} (it is empty); see 'idp-authenticator --help'", line
    assert result.returncode == 2
    assert not default_data.exists()


@pytest.mark.parametrize("source", ["", "  "])
def test_an_empty_uri_for_add_says_what_to_give(app, source):
    """Not taken for an empty `--from` (the same attribute), nor for the current directory as an image."""
    result = app.run("add", source)
    assert one_line_error(result) == ("idp-authenticator: nothing to add: give a URI (otpauth://, idp-push://) "
                                      "or a QR code image")
    assert result.returncode == 1 and app.files() == {}


@pytest.mark.parametrize("args", [["list"], ["--json", "list"], ["--json", "pending"], ["code", "alice"],
                                  ["remove", "alice"], ["add", TOTP_URI]])
def test_a_home_that_is_a_file_is_an_error_not_an_empty_device(tmp_path, args):
    """`--home` naming a file (a slip: the store's own file, a backup) read as a device holding nothing:
    "no accounts", `[]`, exit 0, where a script learns nothing went wrong."""
    from authenticator_testkit import App

    not_a_home = tmp_path / "store.bin"
    not_a_home.write_bytes(b"x")
    result = App(not_a_home).run(*args)
    assert one_line_error(result) == f"idp-authenticator: cannot use home directory {not_a_home}: not a directory"
    assert result.returncode == 1 and not result.stdout
