"""The TOTP factor: conformance, enrolment only after a correct code, replay, several credentials, CLI."""
import base64
import threading
from datetime import timedelta

import pytest
from click.testing import CliRunner
from flask import render_template
from sqlalchemy import func, select

from idp.db import db
from idp.factors import Enrolled, Rejected, Verified
from idp.factors.registry import current_registry
from idp.factors.store import CredentialStore
from idp.factors.testing import make_user, run_conformance, second_factor_count
from idp_plugins.totp.factor import TotpFactor
from idp_plugins.totp.otp import hotp, time_step


def code_for(secret: bytes, now, offset=0, digits=6, algorithm="SHA1"):
    return hotp(secret, time_step(now) + offset, digits, algorithm)


def pending_secret(factor, user, step):
    return factor.store.open_pending(user, step.state["secret"])


@pytest.fixture
def totp(factor_app):
    return current_registry().get("totp")


@pytest.fixture
def ctx(factor_app, totp):
    return current_registry().context(totp, transaction_id="t1")


def enrol(totp, user, ctx, label=""):
    step = totp.begin_enrolment(user, ctx)
    secret = pending_secret(totp, user, step)
    outcome = totp.finish_enrolment(user, step.state, {"code": code_for(secret, ctx.now), "label": label}, ctx)
    assert isinstance(outcome, Enrolled)
    db.session.commit()
    return outcome.credential, secret


def test_conformance(factor_app, factor_user):
    def answer_challenge(step, credential, ctx):
        # The enrolment code's step is used: answer with the next step's code (accepted as drift +1).
        secret = current_registry().get("totp").store.reveal(credential)
        return {"code": code_for(secret, ctx.now, +1)}

    run_conformance(TotpFactor, factor_app, factor_user,
                    answer_enrolment=lambda step, ctx: {"code": code_for(
                        pending_secret(current_registry().get("totp"), factor_user, step), ctx.now)},
                    answer_challenge=answer_challenge)


def test_enrolment_view_and_state(totp, factor_user, ctx):
    step = totp.begin_enrolment(factor_user, ctx)
    view = step.view
    assert view["qr_svg"].startswith("<svg")
    assert view["uri"].startswith("otpauth://totp/localhost:alice%40example.com?")
    assert "issuer=localhost" in view["uri"]
    key = view["key"].replace(" ", "")
    assert all(len(group) == 4 for group in view["key"].split(" ")[:-1])
    assert base64.b32decode(key + "=" * (-len(key) % 8)) == pending_secret(totp, factor_user, step)
    assert key not in str(step.state)  # the seed is sealed in the state, never in clear
    assert totp.store.open_pending(make_user("bob@example.com"), step.state["secret"]) is None


def test_nothing_stored_before_a_correct_code(totp, factor_user, ctx):
    step = totp.begin_enrolment(factor_user, ctx)
    secret = pending_secret(totp, factor_user, step)
    assert totp.finish_enrolment(factor_user, step.state, {"code": code_for(secret, ctx.now, 3)}, ctx) \
        == Rejected("invalid_code")
    assert totp.store.count(factor_user) == 0 and second_factor_count(factor_user) == 0
    assert isinstance(totp.finish_enrolment(factor_user, step.state, {"code": code_for(secret, ctx.now)}, ctx),
                      Enrolled)
    db.session.commit()
    assert second_factor_count(factor_user) == 1


def test_enrolment_code_cannot_be_replayed_at_login(totp, factor_user, ctx):
    step = totp.begin_enrolment(factor_user, ctx)
    secret = pending_secret(totp, factor_user, step)
    code = code_for(secret, ctx.now)
    totp.finish_enrolment(factor_user, step.state, {"code": code}, ctx)
    db.session.commit()
    assert totp.verify(factor_user, {}, {"code": code}, ctx) == Rejected("replayed")


def test_code_accepted_once(totp, factor_user, ctx):
    credential, secret = enrol(totp, factor_user, ctx)
    later = ctx.__class__(**{**ctx.__dict__, "now": ctx.now + timedelta(seconds=60)})
    code = code_for(secret, later.now)
    outcome = totp.verify(factor_user, {}, {"code": code}, later)
    assert isinstance(outcome, Verified) and outcome.credential_id == credential.id and outcome.amr == ("otp",)
    assert totp.verify(factor_user, {}, {"code": code}, later) == Rejected("replayed")
    # An older step (still inside the drift window) is refused too: the counter only moves forward.
    assert totp.verify(factor_user, {}, {"code": code_for(secret, later.now, -1)}, later) == Rejected("replayed")
    assert totp.verify(factor_user, {}, {"code": "000000" if code != "000000" else "111111"}, later).reason \
        in ("invalid_code",)


def test_several_labelled_credentials(totp, factor_user, ctx):
    first, s1 = enrol(totp, factor_user, ctx, label="Phone")
    second, s2 = enrol(totp, factor_user, ctx)
    assert [c.label for c in totp.store.list(factor_user)] == ["Phone", "Authenticator app 2"]
    later = ctx.__class__(**{**ctx.__dict__, "now": ctx.now + timedelta(seconds=90)})
    assert totp.verify(factor_user, {}, {"code": code_for(s2, later.now)}, later).credential_id == second.id
    assert totp.verify(factor_user, {}, {"code": code_for(s1, later.now)}, later).credential_id == first.id
    assert second_factor_count(factor_user) == 2


@pytest.mark.parametrize("digits, algorithm", [(8, "SHA256"), (8, "SHA512"), (6, "SHA512")])
def test_configured_digits_and_algorithm(tmp_path, digits, algorithm):
    from idp.factors.testing import create_schema, make_app

    app = make_app("sqlite:///" + str(tmp_path / "t.sqlite"),
                   {"factors.totp.digits": digits, "factors.totp.algorithm": algorithm})
    with app.app_context():
        create_schema()
        user = make_user()
        factor = current_registry().get("totp")
        ctx = current_registry().context(factor)
        step = factor.begin_enrolment(user, ctx)
        assert (digits == 6 or f"digits={digits}" in step.view["uri"]) and f"algorithm={algorithm}" in step.view["uri"]
        secret = pending_secret(factor, user, step)
        assert len(secret) == {"SHA256": 32, "SHA512": 64}[algorithm]
        outcome = factor.finish_enrolment(user, step.state, {"code": code_for(secret, ctx.now, 0, digits,
                                                                               algorithm)}, ctx)
        assert isinstance(outcome, Enrolled) and outcome.credential.public["digits"] == digits


def test_templates_render(totp, factor_user, ctx, factor_app):
    with factor_app.test_request_context():
        step = totp.begin_enrolment(factor_user, ctx)
        html = render_template(["factors/totp/enrol.html", "login/challenge_generic.html"], view=step.view,
                               form=None)
        assert "<svg" in html and 'name="code"' in html and 'autocomplete="one-time-code"' in html
        assert step.view["key"] in html and 'href="otpauth://totp/' in html
        html = render_template(["factors/totp/challenge.html"], view={"digits": 6}, form=None)
        assert 'name="code"' in html and 'inputmode="numeric"' in html


# --- CLI -------------------------------------------------------------------------------------


def run_import(args, stdin):
    from idp.factors.registry import factor_group

    return CliRunner().invoke(factor_group(), ["totp", "import", *args], input=stdin)


def test_cli_import(factor_app, factor_user):
    from idp.models import AuditEvent

    secret = b"0123456789abcdefghij"
    key = base64.b32encode(secret).decode()
    result = run_import(["--user", "Alice@example.com", "--label", "Old IdP", "--digits", "8",
                         "--algorithm", "sha256", "--secret-stdin"], key.lower() + "\n")
    assert result.exit_code == 0, result.output
    [credential] = current_registry().get("totp").store.list(factor_user)
    assert credential.label == "Old IdP" and credential.public["digits"] == 8
    assert current_registry().get("totp").store.reveal(credential) == secret
    assert second_factor_count(factor_user) == 1
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "factor.totp.imported")).one()
    assert event.subject_id == factor_user.id and event.actor == "cli"
    ctx = current_registry().context("totp")
    assert isinstance(current_registry().get("totp").verify(
        factor_user, {}, {"code": code_for(secret, ctx.now, 0, 8, "SHA256")}, ctx), Verified)


def test_cli_import_takes_a_512_bit_secret_spaced_out_as_apps_show_it(factor_app, factor_user):
    key = base64.b32encode(b"k" * 64).decode().rstrip("=").lower()
    spaced = " ".join(key[i:i + 4] for i in range(0, len(key), 4))
    result = run_import(["--user", "alice@example.com", "--algorithm", "SHA512", "--secret-stdin"], spaced + "\n")
    assert result.exit_code == 0, result.output
    [credential] = current_registry().get("totp").store.list(factor_user)
    assert current_registry().get("totp").store.reveal(credential) == b"k" * 64


@pytest.mark.parametrize("args, stdin, message", [
    (["--user", "nobody@example.com"], "JBSWY3DPEHPK3PXP", "unknown user"),
    (["--user", "alice@example.com"], "not base32 !!", "not valid base32"),
    (["--user", "alice@example.com"], "", "no secret"),
    (["--user", "alice@example.com"], "JBSWY3DP", "too short"),
    (["--user", "alice@example.com"], base64.b32encode(b"k" * 65).decode(), "too long (520 bits; at most 512)"),
    (["--user", "alice@example.com"], "JBSWY3DPEHPK3PXP" * 327_680, "more than 1024 bytes"),  # 5 MB
    (["--user", "alice@example.com"], b"JBSWY3DP\xffEHPK3PXP", "not UTF-8"),
    (["--user", "alice@example.com", "--digits", "7"], "JBSWY3DPEHPK3PXP", "7"),
    (["--user", "alice@example.com", "--label", "my\tphone"], "JBSWY3DPEHPK3PXP", "control characters"),
    (["--user", "alice@example.com", "--label", "x" * 201], "JBSWY3DPEHPK3PXP", "at most 200"),
])
def test_cli_import_refuses_bad_input(factor_app, factor_user, args, stdin, message):
    result = run_import([*args, "--secret-stdin"], stdin)
    assert result.exit_code != 0 and message in result.output
    assert result.output.strip().splitlines()[-1].startswith("Error: ")
    assert CredentialStore(None).list(factor_user) == []


def test_cli_import_refuses_a_disabled_user(factor_app, factor_user):
    """As `factor push activate` and `recovery-qr issue` refuse: no new way into an account no one may use."""
    from idp.models import AuditEvent, User

    db.session.get(User, factor_user.id).disabled = True
    db.session.commit()
    result = run_import(["--user", "alice@example.com", "--secret-stdin"], "JBSWY3DPEHPK3PXP\n")
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        "Error: alice@example.com is disabled: enable the account first (idp user enable)"], result.output
    assert CredentialStore(None).list(factor_user) == []
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == 0


def test_cli_import_refuses_a_secret_the_user_already_holds(factor_app, factor_user):
    """Run twice, the import made two credentials of one seed (two notice mails, two events)."""
    from idp.models import AuditEvent

    key = base64.b32encode(b"0123456789abcdefghij").decode()
    assert run_import(["--user", "alice@example.com", "--secret-stdin"], key + "\n").exit_code == 0
    [first] = current_registry().get("totp").store.list(factor_user)
    spaced = " ".join(key[i:i + 4] for i in range(0, len(key), 4)).lower()  # the same seed, written otherwise
    again = run_import(["--user", "alice@example.com", "--digits", "8", "--secret-stdin"], spaced + "\n")
    assert again.exit_code == 1 and again.output.strip().splitlines() == [
        f"Error: alice@example.com already has this secret (TOTP credential {first.id}, {first.label!r}): "
        "nothing imported"], again.output
    other = base64.b32encode(b"another secret, 20 b").decode()
    assert run_import(["--user", "alice@example.com", "--secret-stdin"], other + "\n").exit_code == 0
    assert len(current_registry().get("totp").store.list(factor_user)) == 2
    assert len(db.session.scalars(select(AuditEvent).where(AuditEvent.event == "factor.totp.imported")).all()) == 2


# --- concurrency on PostgreSQL ---------------------------------------------------------------


@pytest.mark.postgres
def test_same_code_by_ten_threads_is_accepted_once(pg_app):
    user = make_user("race@example.com")
    factor = current_registry().get("totp")
    ctx = current_registry().context(factor)
    step = factor.begin_enrolment(user, ctx)
    secret = pending_secret(factor, user, step)
    factor.finish_enrolment(user, step.state, {"code": code_for(secret, ctx.now, -1)}, ctx)
    db.session.commit()
    code = code_for(secret, ctx.now)
    barrier, results = threading.Barrier(10), []

    def worker():
        with pg_app.app_context():
            barrier.wait()
            try:
                results.append(factor.verify(user, {}, {"code": code}, ctx))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(10)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sum(isinstance(r, Verified) for r in results) == 1
    assert sum(r == Rejected("replayed") for r in results) == 9


def test_a_numbered_own_label_is_translated_with_its_number():
    from pathlib import Path

    from flask import Flask
    from flask_babel import Babel, force_locale

    from idp.factors import CredentialInfo
    from idp_plugins.totp.factor import TotpFactor

    app = Flask(__name__)
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(Path(__file__).resolve().parents[3] / "idp" / "translations")
    Babel(app)
    factor = TotpFactor.__new__(TotpFactor)
    with app.test_request_context(), force_locale("fr"):
        shown = [factor.shown_label(CredentialInfo(id=1, user_id=1, factor="totp", label=label, public={},
                                                     lookup_key=None, counter=0, created_at=None))
                 for label in ("Imported authenticator (2)", "Phone (2)", "", "Authenticator app", "Authenticator app 3",
                               "Phone 2")]
    assert shown == ["Application d'authentification importée (2)", "Phone (2)", "Application d'authentification",
                     "Application d'authentification", "Application d'authentification 3", "Phone 2"]


def test_a_name_the_factor_gives_is_stored_in_english_whatever_the_page_language(totp, factor_user, ctx):
    """No name typed: "Authenticator app 2" is stored (the command line and the audit log read it
    so), and each reader sees it in their own language (above)."""
    from flask_babel import force_locale

    enrol(totp, factor_user, ctx, label="Phone")
    with force_locale("fr"):
        enrol(totp, factor_user, ctx)
    assert [c.label for c in totp.store.list(factor_user)] == ["Phone", "Authenticator app 2"]


def test_cli_import_refuses_a_user_whose_organization_does_not_accept_totp(factor_app, factor_user):
    """As `factor push activate` refuses: the organization's allowed factors leave authenticator apps
    out, so the credential would be a second factor of a kind it refuses (the user's next login would
    ask for it, then have another set up)."""
    from idp.models import AuditEvent, Organization

    db.session.get(Organization, factor_user.org_id).allowed_factors = ["webauthn"]
    db.session.commit()
    result = run_import(["--user", "alice@example.com", "--secret-stdin"], "JBSWY3DPEHPK3PXP\n")
    assert result.exit_code == 1 and result.output.strip().splitlines() == [
        "Error: the organization of alice@example.com does not accept totp (idp policy factors)"], result.output
    assert CredentialStore(None).list(factor_user) == []
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == 0
