"""`idp policy ...`: the same rules and audit events as the web, one-line errors on bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from idp.db import db, utcnow
from idp.models import AuditEvent, Organization, User
from idp.policy.cli import policy


def audit_count():
    return db.session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()


def one_line_error(result, fragment):
    assert result.exit_code != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]
    assert result.stdout == ""


@pytest.fixture
def acme(make_org, make_user):
    org = make_org("Acme")
    make_user(org, "none@example.com")
    make_user(org, "vol@example.com", second_factor_count=1)
    make_user(org, "req@example.com", mfa_setting="required", second_factor_count=2)
    make_user(org, "ex@example.com", mfa_setting="exempt")
    return org


def test_show_json(run, acme):
    result = run("show", "--org", "Acme", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["distribution"] == {"not_active": 2, "required_not_set_up": 0,
                                        "active_voluntary": 1, "active_required": 1}
    assert document["total"] == 4 and document["disabled_not_counted"] == 0
    assert document["settings"] == {"require_2fa": False, "allowed_factors": None,
                                    "grace_days": None, "grace_logins": None, "self_push_recovery": True}
    assert document["impact_of_requiring_all"] == {"must_enrol": 1, "exempt": 1, "already_set_up": 2,
                                                   "total": 4}


def test_show_counts_disabled_accounts_apart(run, acme, make_user):
    make_user(acme, "gone@example.com", disabled=True, mfa_setting="required")
    document = json.loads(run("show", "--org", "Acme", "--json").stdout)
    assert document["distribution"] == {"not_active": 2, "required_not_set_up": 0,
                                        "active_voluntary": 1, "active_required": 1}
    assert (document["total"], document["disabled_not_counted"]) == (4, 1)
    assert document["impact_of_requiring_all"]["total"] == 4
    assert "Users: 4 (1 disabled, not counted)" in run("show", "--org", "Acme").stdout


def test_show_text(run, acme):
    result = run("show", "--org", "Acme")
    assert result.exit_code == 0
    assert "2FA required for everyone: off" in result.stdout
    assert "required_not_set_up" in result.stdout and "1 would have to set it up" in result.stdout


def test_require_all_on_off_with_one_event_each(run, acme):
    result = run("require-all", "--org", "Acme", "on")
    assert result.exit_code == 0 and "now required for everyone" in result.stdout
    assert db.session.get(Organization, acme.id).require_2fa is True
    [event] = db.session.execute(select(AuditEvent)).scalars().all()
    assert (event.event, event.actor, event.actor_id) == ("policy.org_requirement_changed", "cli", None)

    again = run("require-all", "--org", "Acme", "ON")
    assert again.exit_code == 0 and "already" in again.stdout and audit_count() == 1

    document = json.loads(run("show", "--org", "Acme", "--json").stdout)
    assert document["distribution"]["required_not_set_up"] == 1
    assert document["distribution"]["active_required"] == 2

    assert run("require-all", "--org", "Acme", "off").exit_code == 0
    assert db.session.get(Organization, acme.id).require_2fa is False and audit_count() == 2


def test_factors_and_grace(run, acme):
    result = run("factors", "--org", "Acme", "webauthn", "totp")
    assert result.exit_code == 0 and "now accepts: totp, webauthn" in result.stdout, result.output
    assert db.session.get(Organization, acme.id).allowed_factors == ["totp", "webauthn"]
    assert "already" in run("factors", "--org", "Acme", "totp", "webauthn").stdout and audit_count() == 1
    one_line_error(run("factors", "--org", "Acme", "sms"), "unknown factor: 'sms' (installed:")
    one_line_error(run("factors", "--org", "Acme", "all", "totp"), "either `all` or factor names")
    assert "every installed second factor" in run("factors", "--org", "Acme", "all").stdout
    assert db.session.get(Organization, acme.id).allowed_factors is None and audit_count() == 2

    result = run("grace", "--org", "Acme", "--days", "7", "--logins", "3")
    assert result.exit_code == 0 and "now: 7 days, 3 logins" in result.stdout, result.output
    assert "Grace period: 7 days, 3 logins" in run("show", "--org", "Acme").stdout
    one_line_error(run("grace", "--org", "Acme"), "give --days, --logins or both")
    one_line_error(run("grace", "--org", "Acme", "--days", "400"), "400")
    assert "now: none" in run("grace", "--org", "Acme", "--days", "0", "--logins", "0").stdout
    assert [e.event for e in db.session.execute(select(AuditEvent)).scalars()] == [
        "policy.allowed_factors_changed", "policy.allowed_factors_changed", "policy.grace_changed",
        "policy.grace_changed"]


def test_grace_keeps_the_measure_left_out(run, acme):
    assert run("grace", "--org", "Acme", "--days", "7", "--logins", "3").exit_code == 0
    result = run("grace", "--org", "Acme", "--days", "10")
    assert result.exit_code == 0 and "now: 10 days, 3 logins" in result.stdout, result.output
    org = db.session.get(Organization, acme.id)
    assert (org.grace_days, org.grace_logins) == (10, 3)
    assert "now: 10 days" in run("grace", "--org", "Acme", "--logins", "0").stdout


def test_an_organization_number_of_other_digits_is_unknown(run, acme):
    one_line_error(run("show", "--org", "²"), "unknown organization '²'")


def test_an_organization_is_found_by_its_name_never_by_its_id(run, acme, make_org):
    """--org 2 used to fall back to the organization with id 2 when none was named "2": a typo or
    a numeric name acted on another organization."""
    one_line_error(run("require-all", "--org", str(acme.id), "on"), f"unknown organization '{acme.id}'")
    assert db.session.get(Organization, acme.id).require_2fa is False
    named = make_org(str(acme.id))  # named as Acme's id: that name is what --org finds
    result = run("show", "--org", str(acme.id), "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["org"] == {"id": named.id, "name": named.name}
    assert named.id != acme.id


def test_push_recovery_off_and_on(run, acme):
    result = run("push-recovery", "--org", "Acme", "off")
    assert result.exit_code == 0 and "now by recovery QR code only" in result.stdout, result.output
    assert db.session.get(Organization, acme.id).self_push_recovery is False
    [event] = db.session.execute(select(AuditEvent)).scalars().all()
    assert (event.event, event.actor, event.details) == (
        "policy.self_push_recovery_changed", "cli", {"before": True, "after": False})
    assert "by password + e-mailed code: off" in run("show", "--org", "Acme").stdout
    again = run("push-recovery", "--org", "Acme", "OFF")
    assert again.exit_code == 0 and "already" in again.stdout and audit_count() == 1
    assert run("push-recovery", "--org", "Acme", "on").exit_code == 0 and audit_count() == 2
    assert json.loads(run("show", "--org", "Acme", "--json").stdout)["settings"]["self_push_recovery"] is True
    bad = run("push-recovery", "--org", "Acme", "maybe")
    assert bad.exit_code != 0 and len(bad.output.strip().splitlines()) == 1 and audit_count() == 2


def test_user_require_exempt_follow(run, acme):
    result = run("user", "none@example.com", "--require")
    assert result.exit_code == 0, result.output
    assert "required_not_set_up" in result.stdout
    user = db.session.scalar(select(User).where(User.email == "none@example.com"))
    assert user.mfa_setting == "required" and user.required_since is not None

    until = (utcnow().date() + timedelta(days=10)).isoformat()
    result = run("user", "NONE@example.com", "--exempt", "--until", until, "--reason", "lost phone")
    assert result.exit_code == 0 and f"until {until}" in result.stdout and "not_active" in result.stdout
    assert f"until {until} (that day included, UTC)" in result.stdout  # as the admin page says it
    user = db.session.get(User, user.id)
    assert (user.mfa_setting, user.exempt_until.isoformat(), user.exempt_reason) == ("exempt", until, "lost phone")

    assert "already" in run("user", "none@example.com", "--exempt", "--until", until,
                            "--reason", "lost phone").stdout
    assert run("user", "none@example.com", "--follow-org").exit_code == 0
    events = db.session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars().all()
    assert [e.event for e in events] == ["policy.user_requirement_changed"] * 3
    assert all(e.actor == "cli" and e.subject_id == user.id for e in events)


@pytest.mark.parametrize("args, fragment", [
    (("show", "--org", "Nope"), "unknown organization"),
    (("show", "--org", "9" * 40), "unknown organization"),
    (("show",), "--org"),
    (("require-all", "--org", "Acme", "maybe"), "maybe"),
    (("require-all", "--org", "Nope", "on"), "unknown organization"),
    (("user", "ghost@example.com", "--require"), "unknown user"),
    (("user", "none@example.com"), "choose exactly one"),
    (("user", "none@example.com", "--require", "--exempt"), "choose exactly one"),
    (("user", "none@example.com", "--require", "--until", "2030-01-01"), "--exempt only"),
    (("user", "none@example.com", "--exempt", "--until", "2030-13-01"), "2030-13-01"),
    (("user", "none@example.com", "--exempt", "--until", "2001-01-01"), "in the past"),
    (("user", "none@example.com", "--exempt", "--reason", "x" * 600), "too long"),
])
def test_bad_input_is_one_line_and_writes_nothing(run, acme, args, fragment):
    one_line_error(run(*args), fragment)
    assert audit_count() == 0
    user = db.session.scalar(select(User).where(User.email == "none@example.com"))
    assert user.mfa_setting == "follow"


def test_group_is_named_policy():
    assert policy.name == "policy"
    assert set(policy.commands) == {"show", "require-all", "factors", "grace", "push-recovery", "user"}


def test_through_the_idp_command(tmp_path):
    """The real console entry point, in a subprocess, once the whole app builds."""
    try:
        from idp.app import create_app
        from idp.cli import main  # noqa: F401

        url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
        app = create_app({"server.database_url": url})
    except ImportError as exc:
        pytest.skip(f"the app does not build yet: {exc}")
    from idp.db import Base

    with app.app_context():
        Base.metadata.create_all(db.engine)
        db.session.add(Organization(name="Acme"))
        db.session.commit()
        db.session.remove()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env["IDP_DATABASE_URL"] = url
    command = [sys.executable, "-c", "from idp.cli import main; main()"]
    shown = subprocess.run(command + ["policy", "show", "--org", "Acme", "--json"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["total"] == 0
    bad = subprocess.run(command + ["policy", "require-all", "--org", "Nope", "on"], env=env,
                         capture_output=True, text=True, timeout=120)
    # (JSON log lines from app start-up may precede it; the error itself is one line)
    errors = [line for line in bad.stderr.splitlines() if not line.startswith("{")]
    assert bad.returncode != 0 and errors == ["idp: error: unknown organization 'Nope'"]


def test_user_required_without_a_factor_says_where_the_grace_stands(run, acme):
    """As the admin page says it: in grace (until when, logins left), over, or none configured."""
    assert run("grace", "--org", "Acme", "--days", "7", "--logins", "3").exit_code == 0
    out = run("user", "none@example.com", "--require").stdout
    assert "required_not_set_up" in out and "in the grace period until " in out and "UTC, 3 logins left" in out
    assert "must set up at next login" not in out
    db.session.execute(update(User).where(User.email == "none@example.com")
                       .values(required_since=utcnow() - timedelta(days=8)))
    db.session.commit()
    out = run("user", "none@example.com", "--require").stdout
    assert "already required" in out and "grace period over: must set up at next login" in out
    assert run("grace", "--org", "Acme", "--days", "0", "--logins", "0").exit_code == 0
    out = run("user", "none@example.com", "--require").stdout
    assert "no grace period: must set up at next login" in out


def test_grace_given_one_measure_keeps_the_other_as_it_is_when_written(run, acme, monkeypatch):
    """An admin's save of the grace logins (Account > Security) lands between the command's look
    at the organization and its write: `--days` alone changes the days and keeps those logins,
    rather than write back the logins it saw before. (The admin's write goes in on the command's
    own connection, its loaded organization left as it was: SQLite has one writer at a time.)"""
    import idp.policy.cli as policy_cli

    assert run("grace", "--org", "Acme", "--days", "7", "--logins", "3").exit_code == 0
    found = policy_cli._find_org
    saved = []

    def find_then_another_admin_saves(name):
        org = found(name)
        if not saved:  # once: between the command's look and its write
            saved.append(db.session.connection().execute(
                update(Organization).where(Organization.id == org.id).values(grace_logins=5)))
        return org

    monkeypatch.setattr(policy_cli, "_find_org", find_then_another_admin_saves)
    result = run("grace", "--org", "Acme", "--days", "10")
    assert result.exit_code == 0 and "now: 10 days, 5 logins" in result.stdout, result.output
    org = db.session.get(Organization, acme.id)
    assert (org.grace_days, org.grace_logins) == (10, 5)
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "policy.grace_changed")
                               .order_by(AuditEvent.id.desc()).limit(1)).one()
    assert event.details == {"before": {"days": 7, "logins": 5}, "after": {"days": 10, "logins": 5}}
