"""`idp policy user` for several users at once (`--email` repeated, `--emails-from FILE|-`): all or
nothing, the same events as the admin list's bulk change, one-line errors."""
from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from idp.db import db, utcnow
from idp.models import AuditEvent, User
from idp.policy.cli import policy


@pytest.fixture
def invoke(app):
    runner = CliRunner()

    def run(*args, input=None):
        result = runner.invoke(policy, list(args), input=input, catch_exceptions=False)
        db.session.expire_all()
        return result

    return run


@pytest.fixture
def team(make_org, make_user):
    acme, other = make_org("Acme"), make_org("Other")
    return {"acme": acme, "other": other,
            "a": make_user(acme, "a@acme.test"), "b": make_user(acme, "b@acme.test", mfa_setting="required"),
            "c": make_user(acme, "c@acme.test"), "x": make_user(other, "x@other.test")}


def _setting(email):
    return db.session.scalar(select(User.mfa_setting).where(User.email == email))


def _events(event):
    return db.session.scalars(select(AuditEvent).where(AuditEvent.event == event).order_by(AuditEvent.id)).all()


def _count():
    return db.session.scalar(select(func.count()).select_from(AuditEvent))


def one_line_error(result, fragment):
    assert result.exit_code != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert result.stdout == ""


def test_several_emails_require_in_one_go(invoke, team):
    result = invoke("user", "--email", "a@acme.test", "--email", "B@acme.test", "--email", "x@other.test",
                    "--require")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["a@acme.test: now required", "b@acme.test: already required",
                                          "x@other.test: now required", "2 changed, 1 already so"]
    assert [_setting(e) for e in ("a@acme.test", "b@acme.test", "x@other.test")] == ["required"] * 3
    changes = _events("policy.user_requirement_changed")
    assert sorted(e.subject_id for e in changes) == sorted([team["a"].id, team["x"].id])
    assert all(e.actor == "cli" and e.actor_id is None for e in changes)
    summaries = _events("policy.bulk_change")  # one per organization, in its own log
    assert sorted((e.org_id, e.details["changed"], e.details["unchanged"]) for e in summaries) == sorted(
        [(team["acme"].id, 1, 1), (team["other"].id, 1, 0)])


def test_the_positional_address_and_a_file_mix(invoke, team, tmp_path):
    path = tmp_path / "contractors.txt"
    path.write_text("# contractors, Q3\nc@acme.test\n\n  x@other.test  \nc@acme.test\n", encoding="utf-8")
    until = (utcnow() + timedelta(days=20)).date().isoformat()
    result = invoke("user", "a@acme.test", "--emails-from", str(path), "--exempt", "--until", until,
                    "--reason", "contract ends")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "3 changed, 0 already so"
    assert f"c@acme.test: now exempt until {until} (that day included, UTC)" in result.stdout
    for email in ("a@acme.test", "c@acme.test", "x@other.test"):
        user = db.session.scalar(select(User).where(User.email == email))
        assert (user.mfa_setting, user.exempt_until.isoformat(), user.exempt_reason) == ("exempt", until,
                                                                                          "contract ends")


def test_addresses_from_standard_input(invoke, team):
    result = invoke("user", "--emails-from", "-", "--follow-org", input="b@acme.test\nc@acme.test\n")
    assert result.exit_code == 0, result.output
    assert _setting("b@acme.test") == "follow" and "1 changed, 1 already so" in result.stdout


def test_one_unknown_address_changes_nothing(invoke, team):
    result = invoke("user", "--email", "a@acme.test", "--email", "nobody@acme.test", "--email", "ghost@x.test",
                    "--require")
    one_line_error(result, "unknown user 'nobody@acme.test' (and 1 more); nothing changed")
    assert _setting("a@acme.test") == "follow" and _count() == 0


@pytest.mark.parametrize("args, fragment", [
    (("--email", "a@acme.test", "--email", "c@acme.test", "--exempt", "--until", "2000-01-01"), "in the past"),
    (("--email", "a@acme.test", "--email", "c@acme.test", "--exempt", "--reason", "r" * 501), "too long"),
    (("--email", "a@acme.test", "--email", "c@acme.test", "--require", "--reason", "why"), "--exempt only"),
    (("--email", "a@acme.test", "--email", "c@acme.test", "--resume-push"), "takes one user's address"),
    (("--require",), "give the user's address"),
    (("--email", "", "--require"), "not an address"),
    (("--emails-from", "/nonexistent/list.txt", "--require"), "list.txt"),
])
def test_bad_input_is_one_line_and_changes_nothing(invoke, team, args, fragment):
    one_line_error(invoke("user", *args), fragment)
    assert _setting("a@acme.test") == "follow" and _setting("c@acme.test") == "follow" and _count() == 0


def test_a_file_that_is_not_utf8_is_one_line(invoke, team, tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"a@acme.test\n\xff\xfe\n")
    one_line_error(invoke("user", "--emails-from", str(path), "--require"), "cannot read the addresses")
    assert _count() == 0


def test_one_address_prints_as_before(invoke, team):
    result = invoke("user", "--email", "a@acme.test", "--require")
    assert result.exit_code == 0 and result.stdout.startswith("a@acme.test: now required; status required_not_set_up")
    assert _events("policy.bulk_change") == []
