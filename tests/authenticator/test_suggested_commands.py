"""The commands the app suggests (after `restore`, in errors and warnings) name the home the user
gave with `--home`: copied as they are, they act on that home, not on the default one."""

import shlex

from authenticator_testkit import TOTP_URI, App, one_line_error


def _suggested(error: str) -> list:
    """The command an error line suggests after "run: ", as a shell would split it."""
    return shlex.split(error.split("run: ", 1)[1])


def test_a_suggestion_carries_the_home_given_and_works_as_written(tmp_path):
    app = App(tmp_path / "my phone")  # (a space: the suggestion quotes it as a shell needs)
    app.ok("add", TOTP_URI)
    error = one_line_error(app.run("backup", "--now"))
    assert error == (f"idp-authenticator: backup is not enabled; run: idp-authenticator --home "
                     f"'{app.home}' backup --enable --to DIR")
    program, *arguments = _suggested(error)
    assert program == "idp-authenticator"
    cloud = tmp_path / "cloud"
    arguments[arguments.index("DIR")] = str(cloud)
    app.ok(*arguments, pass_home=False)  # as written: the home it names is this one
    assert app.ok("backup").startswith(f"automatic backup to {cloud}") and any(cloud.iterdir())


def test_a_home_given_after_the_command_is_carried_too(tmp_path):
    app = App(tmp_path / "phone")
    app.ok("add", TOTP_URI)
    error = one_line_error(app.run("backup", "--now", "--home", str(app.home), pass_home=False))
    assert error.endswith(f"run: idp-authenticator --home {app.home} backup --enable --to DIR")


def test_without_home_the_suggestion_has_none(tmp_path):
    app = App(tmp_path / "data" / "idp-authenticator")  # the default home under $XDG_DATA_HOME
    env = {"XDG_DATA_HOME": str(tmp_path / "data")}
    app.ok("add", TOTP_URI, pass_home=False, env=env)
    error = one_line_error(app.run("backup", "--now", pass_home=False, env=env))
    assert error.endswith("run: idp-authenticator backup --enable --to DIR")


def test_restore_suggests_enabling_backup_to_its_folder_as_a_runnable_command(tmp_path):
    """The folder restored from, named in the suggestion, is quoted as a shell needs: a space in it
    made `--to /path/my cloud` two arguments."""
    old, new = App(tmp_path / "old"), App(tmp_path / "new")
    cloud = tmp_path / "my cloud"
    old.ok("add", TOTP_URI)
    old.ok("backup", "--enable", "--to", str(cloud))
    out = new.ok("restore", "--from", str(cloud))
    program, *arguments = shlex.split(out.split("automatic backup is off on this device: ", 1)[1])
    assert program == "idp-authenticator"
    assert arguments[-2:] == ["--to", str(cloud)]
    new.ok(*arguments, pass_home=False)
    assert new.ok("backup").startswith(f"automatic backup to {cloud}")
