"""`idp recovery-qr issue|list|revoke` through the real `idp` command tree (CONTRACT.md), in process
with the qr_recovery entry point added (the plugin is registered like an installed one)."""
from __future__ import annotations

import json
import re
from importlib.metadata import EntryPoint

import pytest
from click.testing import CliRunner

ENTRY_POINT = EntryPoint(name="qr_recovery", value="idp_plugins.qr_recovery.factor:QrRecoveryFactor",
                         group="idp.factors")


@pytest.fixture
def installed(monkeypatch):
    from idp.factors import registry

    original = registry._entry_points
    monkeypatch.setattr(registry, "_entry_points",
                        lambda: [ep for ep in original() if ep.name != "qr_recovery"] + [ENTRY_POINT])


@pytest.fixture
def database(initialised_database_url):
    from idp.factors import testing

    app = testing.make_app(initialised_database_url)
    with app.app_context():
        testing.make_user("carol@example.com")
    return initialised_database_url


def idp(database_url, *args):
    from idp.cli import cli

    env = {"IDP_DATABASE_URL": database_url, "IDP_SECRET_KEY": "cli-test-secret"}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_issue_list_revoke(installed, database, tmp_path):
    from authenticator.qr import decode_qr_image

    png = tmp_path / "carol.png"
    result = idp(database, "recovery-qr", "issue", "--user", "carol@example.com", "--expires-in", "24h",
                 "--png", str(png), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["recovery_uri"].startswith("idp-recovery://redeem?v=1&")
    assert decode_qr_image(png) == document["recovery_uri"]
    listed = json.loads(idp(database, "recovery-qr", "list", "--user", "carol@example.com", "--json").stdout)
    assert [r["credential_id"] for r in listed] == [document["credential_id"]]
    assert idp(database, "recovery-qr", "revoke", "--user", "carol@example.com",
               str(document["credential_id"])).exit_code == 0
    assert json.loads(idp(database, "recovery-qr", "list", "--user", "carol@example.com", "--json").stdout) == []
    plain = idp(database, "recovery-qr", "issue", "--user", "carol@example.com")
    assert plain.exit_code == 0 and plain.stdout.startswith("idp-recovery://redeem?")


def test_an_unwritable_png_issues_nothing(installed, database, tmp_path):
    from sqlalchemy import create_engine, func, select

    from idp.models import AuditEvent, Credential

    result = idp(database, "recovery-qr", "issue", "--user", "carol@example.com",
                 "--png", str(tmp_path / "missing" / "qr.png"))
    assert result.exit_code != 0 and "nothing was issued" in result.output
    engine = create_engine(database)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Credential)) == 0
        assert conn.scalar(select(func.count()).select_from(AuditEvent)) == 0
    engine.dispose()


def test_bad_input_is_one_line_and_writes_nothing(installed, database):
    for args in (["issue", "--user", "nobody@example.com"], ["issue", "--user", "carol@example.com", "--expires-in", "30d"],
                 ["revoke", "--user", "carol@example.com", "999"],
                 ["revoke", "--user", "carol@example.com", str(2**80)]):
        result = idp(database, "recovery-qr", *args)
        assert result.exit_code != 0 and "Error" in result.output, result.output
    listed = idp(database, "recovery-qr", "list", "--user", "carol@example.com", "--json")
    assert json.loads(listed.stdout) == []


def test_without_the_plugin_the_group_says_so(monkeypatch, database):
    from idp.factors import registry

    original = registry._entry_points
    monkeypatch.setattr(registry, "_entry_points", lambda: [ep for ep in original() if ep.name != "qr_recovery"])
    result = idp(database, "recovery-qr", "issue", "--user", "carol@example.com")
    assert result.exit_code != 0 and "qr_recovery factor is not installed" in result.output


def test_issue_and_list_print_the_same_iso_time_and_refuse_the_range_in_days(installed, database):
    """One time format in the `idp` command's JSON (ISO 8601 UTC, to the second, as push activate
    prints it) and one way of naming the accepted validity: `issue` said 168h where push said 7d,
    and `list --json` printed Unix seconds where `issue --json` printed ISO."""
    issued = json.loads(idp(database, "recovery-qr", "issue", "--user", "carol@example.com", "--expires-in", "2d",
                            "--json").stdout)
    [listed] = json.loads(idp(database, "recovery-qr", "list", "--user", "carol@example.com", "--json").stdout)
    assert listed["expires_at"] == issued["expires_at"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", listed["expires_at"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", listed["created_at"])
    too_long = idp(database, "recovery-qr", "issue", "--user", "carol@example.com", "--expires-in", "8d")
    assert too_long.exit_code != 0 and "must be between 1m and 7d" in too_long.output, too_long.output


def test_an_id_beyond_the_id_columns_is_refused_alike_on_every_database(installed, database):
    """Ids are INTEGER columns: 2**31 and beyond name no row. PostgreSQL answered such an id with
    "database: integer out of range", SQLite with "no live recovery QR code"."""
    largest = idp(database, "recovery-qr", "revoke", "--user", "carol@example.com", str(2**31 - 1))
    assert largest.exit_code == 1 and "no live recovery QR code 2147483647" in largest.output, largest.output
    for too_large in (str(2**31), "9999999999"):
        result = idp(database, "recovery-qr", "revoke", "--user", "carol@example.com", too_large)
        assert result.exit_code == 2 and "not in the range 1<=x<=2147483647" in result.output, result.output
        assert "database" not in result.output


def test_the_png_is_its_owners_alone_and_never_written_through_a_symlink(installed, database, tmp_path):
    """The image holds a live secret: written 0600 (an existing file's wider mode too), and a
    symlink at the path (someone else's, in a shared directory) is refused, nothing issued."""
    import os
    import stat

    from sqlalchemy import create_engine, func, select

    from idp.models import Credential

    new, existing = tmp_path / "new.png", tmp_path / "existing.png"
    existing.write_bytes(b"old")
    existing.chmod(0o644)
    for png in (new, existing):
        result = idp(database, "recovery-qr", "issue", "--user", "carol@example.com", "--png", str(png))
        assert result.exit_code == 0, result.output
        assert stat.S_IMODE(os.stat(png).st_mode) == 0o600 and png.read_bytes().startswith(b"\x89PNG")
    target, link = tmp_path / "elsewhere.txt", tmp_path / "link.png"
    target.write_bytes(b"untouched")
    link.symlink_to(target)
    result = idp(database, "recovery-qr", "issue", "--user", "carol@example.com", "--png", str(link))
    assert result.exit_code == 1 and "symbolic link" in result.output and "nothing was issued" in result.output
    assert target.read_bytes() == b"untouched"
    engine = create_engine(database)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Credential)) == 2
    engine.dispose()


def test_a_disabled_user_gets_no_code(installed, database):
    """As `factor push activate` and `factor totp import` refuse: a code for an account no one may
    use (it issued one, audited, and notified the user)."""
    from sqlalchemy import create_engine, func, select

    from idp.factors import testing
    from idp.models import AuditEvent, Credential

    with testing.make_app(database).app_context():
        testing.make_user("dave@example.com", disabled=True)
    result = idp(database, "recovery-qr", "issue", "--user", "dave@example.com")
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        "Error: dave@example.com is disabled: enable the account first (idp user enable)"], result.output
    engine = create_engine(database)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Credential)) == 0
        assert conn.scalar(select(func.count()).select_from(AuditEvent)) == 0
    engine.dispose()
