"""The recovery QR factor: issuing (stored hashed, audited, shown once), login use (once, then
enrolment), revocation and expiry, the URI format, and the CLI."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from qr_testkit import context, secret_of
from sqlalchemy import select

from idp.db import db, utcnow
from idp.factors import FactorKind, Rejected, Verified
from idp.models import AuditEvent, Credential
from idp_plugins.qr_recovery import secret as secrets_
from idp_plugins.qr_recovery.factor import QrRecoveryFactor


def events(name):
    return db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)).all()


def test_declared_as_an_admin_issued_recovery_factor():
    assert QrRecoveryFactor.kind == FactorKind.RECOVERY
    assert QrRecoveryFactor.user_enrollable is False and QrRecoveryFactor.allow_multiple is True


def test_issue_stores_only_a_keyed_hash_and_audits(qr, factor_user):
    issued = qr.issue(factor_user, actor="admin@example.com", ttl=3600)
    params = secrets_.parse_uri(issued.uri)
    assert params["v"] == "1" and params["issuer"] == "http://localhost:5000"
    assert params["endpoint"] == "http://localhost:5000/factors/qr_recovery"
    assert params["user"] == factor_user.username and params["secret"] == issued.secret
    assert int(params["expires"]) > 0
    row = db.session.get(Credential, issued.credential.id)
    normalised = secrets_.normalise(issued.secret)
    assert row.lookup_key == secrets_.digest(qr.pepper(), normalised) == row.public_json["digest"]
    assert row.secret_ciphertext is None
    assert normalised not in json.dumps(row.public_json) and issued.secret not in json.dumps(row.public_json)
    assert [e.details["credential_id"] for e in events("recovery_qr.issued")] == [row.id]
    assert issued.svg().startswith("<svg") and issued.png().startswith(b"\x89PNG")
    assert qr.is_configured_for(factor_user)


def test_png_decodes_back_to_the_uri(qr, factor_user, tmp_path):
    from authenticator.qr import decode_qr_image

    issued = qr.issue(factor_user, actor="cli")
    (tmp_path / "qr.png").write_bytes(issued.png())
    assert decode_qr_image(tmp_path / "qr.png") == issued.uri


def test_default_and_bounded_validity(qr, factor_user):
    issued = qr.issue(factor_user, actor="cli")
    assert abs((issued.expires_at - utcnow()).total_seconds() - 86400) < 5
    with pytest.raises(ValueError):
        qr.issue(factor_user, actor="cli", ttl=8 * 86400)
    with pytest.raises(ValueError):
        qr.issue(factor_user, actor="cli", ttl=10)


def test_login_use_once_then_enrolment(qr, factor_user):
    issued = qr.issue(factor_user, actor="admin@example.com")
    ctx = context(qr)
    typed = issued.secret.lower().replace("-", " ")  # as a person might type it
    outcome = qr.verify(factor_user, {}, {"code": typed}, ctx)
    assert isinstance(outcome, Verified) and outcome.facts["then_enrol"] is True
    assert outcome.amr == ("otp",)
    db.session.commit()
    again = qr.verify(factor_user, {}, {"code": issued.secret}, ctx)
    assert isinstance(again, Rejected) and again.reason == "replayed"
    assert "Ask your administrator for a new one" in str(again.message)  # no "next code" to wait for
    assert not qr.is_configured_for(factor_user)
    assert qr.store.list(factor_user) == []  # a used code leaves the lists


def test_login_accepts_the_pasted_uri(qr, factor_user):
    issued = qr.issue(factor_user, actor="cli")
    assert isinstance(qr.verify(factor_user, {}, {"code": issued.uri}, context(qr)), Verified)


def test_login_refusals(qr, factor_user):
    from idp.factors import testing

    bob = testing.make_user("bob@example.com")
    ctx = context(qr)
    bobs = qr.issue(bob, actor="cli")
    for garbage in ({}, {"code": ""}, {"code": None}, {"code": "x" * 500}, {"code": ["a"]}):
        assert isinstance(qr.verify(factor_user, {}, garbage, ctx), Rejected)
    wrong = qr.verify(factor_user, {}, {"code": secrets_.generate()}, ctx)
    assert wrong == Rejected("invalid_code")
    assert qr.verify(factor_user, {}, {"code": bobs.secret}, ctx) == Rejected("invalid_code")  # not alice's
    assert qr.is_configured_for(bob)  # and bob's code was not spent


def test_expired_and_revoked_codes_are_refused(qr, factor_user):
    old = qr.issue(factor_user, actor="cli", ttl=60, now=utcnow() - timedelta(minutes=5))
    assert not qr.is_configured_for(factor_user)
    # Not the core's "expired" (a challenge timed out, "a new one has been started"): the code's own.
    expired = qr.verify(factor_user, {}, {"code": old.secret}, context(qr))
    assert expired == Rejected("code_expired", counts_as_failure=False) and "has expired" in str(expired.message)
    revoked = qr.issue(factor_user, actor="cli")
    assert qr.revoke(factor_user, revoked.credential.id, actor="admin@example.com") is not None
    assert qr.revoke(factor_user, revoked.credential.id, actor="admin@example.com") is None
    assert [e.details["credential_id"] for e in events("recovery_qr.revoked")] == [revoked.credential.id]
    refused = qr.verify(factor_user, {}, {"code": revoked.secret}, context(qr))
    assert refused == Rejected("code_revoked", counts_as_failure=False) and "revoked" in str(refused.message)
    assert not qr.is_configured_for(factor_user)


def test_not_user_enrollable(qr, factor_user):
    step = qr.begin_enrolment(factor_user, context(qr))
    assert step.view == {"admin_issued": True}
    assert isinstance(qr.finish_enrolment(factor_user, step.state, {}, context(qr)), Rejected)
    assert qr.store.count(factor_user) == 0


def test_secret_normalisation():
    shown = secrets_.generate()
    assert len(shown) == 29 and shown.count("-") == 4
    assert secrets_.normalise(shown.lower()) == shown.replace("-", "")
    assert secrets_.normalise("I" * 25) == "1" * 25 and secrets_.normalise("O" * 25) == "0" * 25
    assert secrets_.normalise("U" * 25) is None and secrets_.normalise("A" * 24) is None


def test_cli_issue_revoke_list(factor_app, qr, factor_user, tmp_path):
    from click.testing import CliRunner

    from authenticator.qr import decode_qr_image
    from idp_plugins.qr_recovery.cli import recovery_qr_group

    group, runner = recovery_qr_group(), CliRunner()
    result = runner.invoke(group, ["issue", "--user", factor_user.email, "--expires-in", "2h", "--json",
                                   "--png", str(tmp_path / "r.png")])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert set(document) == {"user", "credential_id", "recovery_uri", "secret", "expires_at"}
    assert decode_qr_image(tmp_path / "r.png") == document["recovery_uri"]
    assert secret_of(document["recovery_uri"]) == document["secret"]
    listed = json.loads(runner.invoke(group, ["list", "--user", factor_user.email, "--json"]).stdout)
    assert [r["credential_id"] for r in listed] == [document["credential_id"]]
    assert runner.invoke(group, ["revoke", "--user", factor_user.email, str(document["credential_id"])]).exit_code == 0
    assert runner.invoke(group, ["revoke", "--user", factor_user.email, str(document["credential_id"])]).exit_code != 0
    for bad in (["issue", "--user", "nobody@example.com"], ["issue", "--user", factor_user.email, "--expires-in", "9d"],
                ["issue", "--user", factor_user.email, "--expires-in", "soon"]):
        result = runner.invoke(group, bad)
        assert result.exit_code != 0 and "Traceback" not in result.output
    assert events("recovery_qr.issued")[0].actor == "cli"


@pytest.mark.parametrize("overrides", [{"default_ttl": 10}, {"default_ttl": 900000}, {"code_tries": 0},
                                       {"max_ttl": "a day"},
                                       # past the calendar a code's expiry is a traceback at its issue
                                       {"max_ttl": 999_999_999_999}, {"code_ttl": 86401}])
def test_unusable_settings_are_an_operator_error(overrides):
    from idp.factors import FactorMisconfigured
    from idp_plugins.qr_recovery.settings import QrRecoverySettings

    with pytest.raises(FactorMisconfigured):
        QrRecoverySettings.from_mapping(overrides)


def test_describe_for_the_lists(qr, factor_user):
    issued = qr.issue(factor_user, actor="admin@example.com", ttl=3600)
    description = qr.describe(issued.credential)
    assert description.facts["status"] == "unused" and description.facts["issued_by"] == "admin@example.com"
    assert description.facts["expires"] == issued.expires_at  # a datetime (naive UTC): pages format it
