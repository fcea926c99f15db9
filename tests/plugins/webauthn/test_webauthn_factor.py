"""The WebAuthn factor against a software authenticator: registration, assertion, sign counts, origins."""
import json

import pytest
from flask import render_template

from idp.db import db
from idp.factors import Enrolled, Rejected, Verified
from idp.factors.registry import current_registry
from idp.factors.testing import make_user, run_conformance, second_factor_count
from idp_plugins.webauthn.factor import WebAuthnFactor

from soft_authenticator import SoftAuthenticator


@pytest.fixture
def factor(factor_app):
    return current_registry().get("webauthn")


@pytest.fixture
def ctx(factor):
    return current_registry().context(factor, transaction_id="t1")


def posted(credential_json: dict, **extra) -> dict:
    return {"response": json.dumps(credential_json), **extra}


def enrol(factor, user, ctx, **kwargs):
    key = SoftAuthenticator(ctx.rp_id, ctx.origin, **kwargs)
    step = factor.begin_enrolment(user, ctx)
    outcome = factor.finish_enrolment(user, step.state, posted(key.create(step.view["options"])), ctx)
    assert isinstance(outcome, Enrolled), outcome
    db.session.commit()
    return key, outcome.credential


def login(factor, user, ctx, key, **kwargs):
    step = factor.begin_challenge(user, ctx)
    return factor.verify(user, step.state, posted(key.get(step.view["options"], **kwargs)), ctx)


def test_conformance(factor_app, factor_user):
    keys = {}

    def answer_enrolment(step, ctx):
        keys["key"] = SoftAuthenticator(ctx.rp_id, ctx.origin, sign_count=1)
        return posted(keys["key"].create(step.view["options"]))

    run_conformance(WebAuthnFactor, factor_app, factor_user, answer_enrolment=answer_enrolment,
                    answer_challenge=lambda step, cred, ctx: posted(keys["key"].get(step.view["options"])))


def test_registration_options(factor, factor_user, ctx):
    options = factor.begin_enrolment(factor_user, ctx).view["options"]
    assert options["rp"] == {"id": "localhost", "name": "Identity Provider"}
    assert options["authenticatorSelection"]["residentKey"] == "preferred"
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    assert options["attestation"] == "none"
    assert options["user"]["name"] == "alice@example.com"
    assert str(factor_user.id) != options["user"]["id"]


def test_register_then_login(factor, factor_user, ctx):
    key, credential = enrol(factor, factor_user, ctx, sign_count=5)
    assert credential.lookup_key == key.id and credential.counter == 5
    assert second_factor_count(factor_user) == 1
    outcome = login(factor, factor_user, ctx, key)
    assert isinstance(outcome, Verified) and outcome.credential_id == credential.id
    assert outcome.amr == ("hwk", "user") and outcome.facts == {"user_verified": True}
    assert factor.store.get(factor_user, credential.id).counter == 6


def test_allow_and_exclude_credentials_list_the_users_keys(factor, factor_user, ctx):
    key, _ = enrol(factor, factor_user, ctx)
    assert [c["id"] for c in factor.begin_challenge(factor_user, ctx).view["options"]["allowCredentials"]] == [key.id]
    assert [c["id"] for c in factor.begin_enrolment(factor_user, ctx).view["options"]["excludeCredentials"]] \
        == [key.id]


def test_synced_passkey_is_swk(factor, factor_user, ctx):
    key, _ = enrol(factor, factor_user, ctx, backed_up=True)
    assert login(factor, factor_user, ctx, key).amr == ("swk", "user")


@pytest.mark.parametrize("backed_up, amr", [(True, ("swk", "user")), (False, ("hwk", "user"))])
def test_enrolment_proves_what_the_next_login_will(factor, factor_user, ctx, backed_up, amr):
    """The login that enrols a key gets the amr its next login with it would (a synced passkey
    is swk, not the factor's default hwk)."""
    key = SoftAuthenticator(ctx.rp_id, ctx.origin, backed_up=backed_up)
    step = factor.begin_enrolment(factor_user, ctx)
    outcome = factor.finish_enrolment(factor_user, step.state, posted(key.create(step.view["options"])), ctx)
    assert isinstance(outcome, Enrolled) and outcome.amr == amr


def test_sign_count_regression_suspends_the_key_and_is_reported(factor, factor_user, ctx):
    """A possible clone: refused, and from then on refused whatever count it presents (a clone a
    few counts behind would otherwise catch up in as many tries), no longer offered, reported to
    the admins -- and still the user's second factor (they use another method)."""
    from sqlalchemy import select

    from idp.models import AuditEvent

    from datetime import timedelta

    from idp.db import utcnow
    from idp.models import UserSession

    key, credential = enrol(factor, factor_user, ctx, sign_count=10)
    assert isinstance(login(factor, factor_user, ctx, key, sign_count=20), Verified)
    # a browser signed in with the key (the genuine one's or the clone's: no one can tell)
    db.session.add(UserSession(id="0" * 64, sid="signed-in-with-the-key", user_id=factor_user.id, auth_time=0,
                               amr=["pwd", "hwk", "mfa"], acr="urn:idp:acr:mfa", credential_ids=[credential.id],
                               expires_at=utcnow() + timedelta(hours=1)))
    db.session.commit()
    assert login(factor, factor_user, ctx, key, sign_count=19) == Rejected("sign_count_regressed")
    db.session.commit()
    assert db.session.get(UserSession, "0" * 64).revoked_at is not None, "signed out with the key"
    for count in (21, 22, 1000):  # the clone catching up, or the genuine key: refused alike, not counted as guesses
        assert login(factor, factor_user, ctx, key, sign_count=count) == Rejected("credential_suspended",
                                                                                 counts_as_failure=False)
    assert factor.store.get(factor_user, credential.id).counter == 20
    assert not factor.is_configured_for(factor_user) and second_factor_count(factor_user) == 1
    assert factor.begin_challenge(factor_user, ctx).view["options"].get("allowCredentials", []) == []
    assert factor.describe(factor.store.get(factor_user, credential.id)).facts["status"] == "suspended (may be cloned)"
    [event] = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "webauthn.clone_suspected")).all()
    assert (event.subject_id, event.details["credential_id"]) == (factor_user.id, credential.id)
    assert (event.details["stored_sign_count"], event.details["presented_sign_count"]) == (20, 19)


def test_a_response_nested_thousands_deep_is_an_invalid_response(factor, factor_user, ctx):
    """(json.loads raises RecursionError, not ValueError: it was a 500 at login and enrolment.)"""
    enrol(factor, factor_user, ctx, sign_count=1)
    deep = {"response": "[" * 30000 + "]" * 30000}
    assert factor.verify(factor_user, factor.begin_challenge(factor_user, ctx).state, deep, ctx) \
        == Rejected("invalid_response")
    step = factor.begin_enrolment(factor_user, ctx)
    assert isinstance(factor.finish_enrolment(factor_user, step.state, deep, ctx), Rejected)


def test_authenticator_without_counter_is_accepted(factor, factor_user, ctx):
    key, credential = enrol(factor, factor_user, ctx, sign_count=0)
    for _ in range(3):
        assert isinstance(login(factor, factor_user, ctx, key), Verified)
    db.session.commit()
    info = factor.store.get(factor_user, credential.id)
    assert info.counter == 0 and info.last_used_at is not None


def test_wrong_origin_and_stale_challenge_are_rejected(factor, factor_user, ctx):
    key, _ = enrol(factor, factor_user, ctx, sign_count=1)
    step = factor.begin_challenge(factor_user, ctx)
    assert factor.verify(factor_user, step.state, posted(key.get(step.view["options"], origin="https://evil.example")),
                         ctx) == Rejected("invalid_response")
    old = factor.begin_challenge(factor_user, ctx)
    new = factor.begin_challenge(factor_user, ctx)
    assert factor.verify(factor_user, new.state, posted(key.get(old.view["options"])), ctx) \
        == Rejected("invalid_response")


def test_other_users_key_is_refused(factor, factor_user, ctx):
    bob = make_user("bob@example.com")
    bobs_key, _ = enrol(factor, bob, ctx, sign_count=1)
    enrol(factor, factor_user, ctx, sign_count=1)
    step = factor.begin_challenge(factor_user, ctx)
    assert factor.verify(factor_user, step.state, posted(bobs_key.get(step.view["options"])), ctx) \
        == Rejected("unknown_credential")


def test_same_key_twice_is_refused(factor, factor_user, ctx):
    key, _ = enrol(factor, factor_user, ctx)
    step = factor.begin_enrolment(factor_user, ctx)
    outcome = factor.finish_enrolment(factor_user, step.state, posted(key.create(step.view["options"])), ctx)
    assert outcome == Rejected("already_registered", counts_as_failure=False)
    assert factor.store.count(factor_user) == 1


def test_another_users_key_id_registers_nothing_and_says_nothing_of_it(factor, factor_user, ctx):
    """A made-up registration carrying another account's credential id (ids are no secret: a
    login page lists them) is an invalid response, not "already registered to your account"."""
    bob = make_user("bob@example.com")
    bobs_key, _ = enrol(factor, bob, ctx)
    step = factor.begin_enrolment(factor_user, ctx)
    outcome = factor.finish_enrolment(factor_user, step.state, posted(bobs_key.create(step.view["options"])), ctx)
    assert outcome == Rejected("invalid_response") and outcome.message is None
    assert factor.store.count(factor_user) == 0 and factor.store.count(bob) == 1


def test_registration_from_another_origin_is_refused(factor, factor_user, ctx):
    key = SoftAuthenticator(ctx.rp_id, ctx.origin)
    step = factor.begin_enrolment(factor_user, ctx)
    outcome = factor.finish_enrolment(factor_user, step.state,
                                      posted(key.create(step.view["options"], origin="http://localhost:6666")), ctx)
    assert outcome == Rejected("invalid_response") and factor.store.count(factor_user) == 0


def test_templates_and_script(factor, factor_user, ctx, factor_app):
    with factor_app.test_request_context():
        step = factor.begin_enrolment(make_user("</script><b>x@example.com", name="</script>"), ctx)
        html = render_template(["factors/webauthn/enrol.html"], view=step.view, form=None)
        assert 'name="response"' in html and "/factors/webauthn/static/webauthn.js" in html
        assert "</script><b>" not in html  # options are JSON-escaped inside the script element
        html = render_template(["factors/webauthn/challenge.html"], view=factor.begin_challenge(
            factor_user, ctx).view, form=None)
        assert 'data-mode="get"' in html
    client = factor_app.test_client()
    assert b"navigator.credentials" in client.get("/factors/webauthn/static/webauthn.js").data


def test_malformed_transports_long_ids_and_nul_labels_are_refused_or_cleaned(factor, factor_user, ctx):
    """Browser input that used to be a 500: `transports` not a list, a credential id longer than the
    lookup column (PostgreSQL's DataError), a NUL in the label (which PostgreSQL text refuses)."""
    key = SoftAuthenticator(ctx.rp_id, ctx.origin)
    step = factor.begin_enrolment(factor_user, ctx)
    answer = key.create(step.view["options"])
    answer["response"]["transports"] = 5
    outcome = factor.finish_enrolment(factor_user, step.state, posted(answer, label="Key\x00one"), ctx)
    assert isinstance(outcome, Enrolled) and outcome.credential.label == "Keyone"
    assert outcome.credential.public["transports"] == []

    long_key = SoftAuthenticator(ctx.rp_id, ctx.origin)
    long_key.credential_id = b"\x01" * 200  # 267 base64url characters
    step = factor.begin_enrolment(factor_user, ctx)
    outcome = factor.finish_enrolment(factor_user, step.state, posted(long_key.create(step.view["options"])), ctx)
    assert outcome == Rejected("invalid_response")
    step = factor.begin_challenge(factor_user, ctx)
    assert factor.verify(factor_user, step.state, posted({"rawId": "A" * 300, "id": "A" * 300}), ctx) \
        == Rejected("invalid_response")


def test_a_label_of_invisible_characters_only_is_the_default_name(factor, factor_user, ctx):
    """A label that display text leaves empty (a bidirectional override, a zero-width space) is no
    label: the key gets the factor's own name, numbered, as with none typed; two such keys are not
    both shown as "Security key or passkey"."""
    for typed in ("\u202e", " \u200b "):
        key = SoftAuthenticator(ctx.rp_id, ctx.origin)
        step = factor.begin_enrolment(factor_user, ctx)
        outcome = factor.finish_enrolment(factor_user, step.state, posted(key.create(step.view["options"]),
                                                                          label=typed), ctx)
        assert isinstance(outcome, Enrolled)
    assert [c.label for c in factor.store.list(factor_user)] == ["Security key or passkey", "Security key or passkey 2"]


def test_a_typed_label_longer_than_the_column_is_refused_not_cut(factor, factor_user, ctx):
    """Only a hand-made request sends more than the field's maxlength (200): the name was cut and
    the key stored. It is refused, not counted as a failure, and nothing is stored; the same
    answer of the key is taken with a shorter name."""
    from idp.factors import LABEL_MAX

    key = SoftAuthenticator(ctx.rp_id, ctx.origin)
    step = factor.begin_enrolment(factor_user, ctx)
    answer = key.create(step.view["options"])
    outcome = factor.finish_enrolment(factor_user, step.state, posted(answer, label="k" * (LABEL_MAX + 1)), ctx)
    assert outcome == Rejected("label_too_long", counts_as_failure=False)
    assert str(outcome.message) == "A name has at most 200 characters." and factor.store.list(factor_user) == []
    outcome = factor.finish_enrolment(factor_user, step.state, posted(answer, label="k" * LABEL_MAX), ctx)
    assert isinstance(outcome, Enrolled) and outcome.credential.label == "k" * LABEL_MAX


def test_only_the_transports_webauthn_names_are_kept(factor, factor_user, ctx):
    """A transport with a NUL or a lone surrogate (which PostgreSQL refuses) failed the enrolment as
    "cannot be used at the moment", with a traceback in the log (an audit found it); a long made-up
    one weighed on every login. Only WebAuthn's names are kept, as only they are ever used."""
    key = SoftAuthenticator(ctx.rp_id, ctx.origin)
    step = factor.begin_enrolment(factor_user, ctx)
    answer = key.create(step.view["options"])
    answer["response"]["transports"] = ["usb\x00", "\ud800", "x" * 60_000, "usb", 7, "nfc"]
    outcome = factor.finish_enrolment(factor_user, step.state, posted(answer), ctx)
    assert isinstance(outcome, Enrolled), outcome
    db.session.commit()
    assert outcome.credential.public["transports"] == ["usb", "nfc"]


@pytest.mark.parametrize("issuer, origin", [
    ("https://IdP.Example.com", "https://idp.example.com"),
    ("https://idp.example.com:443", "https://idp.example.com"),
    ("http://localhost:5000", "http://localhost:5000"),
    ("https://idp.example.com:8443/", "https://idp.example.com:8443"),
])
def test_the_origin_is_what_a_browser_reports(issuer, origin):
    """py_webauthn compares origins exactly; browsers send the host in lower case, without the default port."""
    from idp.security.origins import browser_origin

    assert browser_origin(issuer) == origin


def with_user_verification(factor, value):
    return WebAuthnFactor(factor.store, factor.challenges, {**factor.settings, "user_verification": value})


def test_user_verification_required_refuses_a_key_that_only_was_touched(factor, factor_user, ctx):
    """factors.webauthn.user_verification = "required": asked for in both ceremonies, and a
    response without the UV flag registers nothing and signs no one in -- not counted as a guess
    (the key is the user's) and leaving the key's count where it was."""
    strict = with_user_verification(factor, "required")
    assert strict.begin_enrolment(factor_user, ctx).view["options"]["authenticatorSelection"]["userVerification"] \
        == "required"
    touched_only = SoftAuthenticator(ctx.rp_id, ctx.origin, user_verified=False)
    step = strict.begin_enrolment(factor_user, ctx)
    outcome = strict.finish_enrolment(factor_user, step.state, posted(touched_only.create(step.view["options"])), ctx)
    assert outcome == Rejected("user_not_verified", counts_as_failure=False) and "PIN" in str(outcome.message)
    assert strict.store.count(factor_user) == 0

    # a key registered while "preferred" was the setting, which did not verify the user then
    key, credential = enrol(factor, factor_user, ctx, sign_count=5, user_verified=False)
    assert strict.begin_challenge(factor_user, ctx).view["options"]["userVerification"] == "required"
    assert login(strict, factor_user, ctx, key) == Rejected("user_not_verified", counts_as_failure=False)
    assert strict.store.get(factor_user, credential.id).counter == 5
    key.user_verified = True  # the user set a PIN on it
    outcome = login(strict, factor_user, ctx, key)
    assert isinstance(outcome, Verified) and outcome.facts == {"user_verified": True}


def test_user_verification_discouraged_signs_in_with_a_touch(factor, factor_user, ctx):
    relaxed = with_user_verification(factor, "discouraged")
    key, _credential = enrol(relaxed, factor_user, ctx, sign_count=1, user_verified=False)
    assert relaxed.begin_challenge(factor_user, ctx).view["options"]["userVerification"] == "discouraged"
    assert isinstance(login(relaxed, factor_user, ctx, key), Verified)


def test_an_unknown_user_verification_setting_stops_the_start(factor):
    from idp.factors import FactorMisconfigured

    with pytest.raises(FactorMisconfigured, match="user_verification must be one of preferred, required"):
        with_user_verification(factor, "always")
