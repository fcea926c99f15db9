"""The registry: entry-point discovery, validation, run-time registration of a third-party factor."""
import hmac

import click
import click.testing
import pytest
from flask import Blueprint

from idp.factors import (
    Enrolled, Factor, FactorKind, FactorLoadError, FactorNotFound, Rejected, Step, Verified,
)
from idp.factors import directory
from idp.factors import registry as registry_module
from idp.factors.registry import current_registry
from idp.factors.testing import make_app, run_conformance


class ParrotFactor(Factor):
    """A third-party factor defined here: the user proves they remember a word (stored sealed)."""

    name = "parrot"
    label = "Parrot word"
    kind = FactorKind.SECOND_FACTOR
    amr = ("kba",)

    def begin_enrolment(self, user, ctx):
        return Step(state={"word": "polly"}, view={"hint": "say polly"})

    def finish_enrolment(self, user, state, response, ctx):
        if not isinstance(response.get("code"), str) or response["code"] != state.get("word"):
            return Rejected("invalid_code")
        return Enrolled(self.store.create(user, label="Parrot", public={}, secret=state["word"].encode()))

    def begin_challenge(self, user, ctx):
        return Step(state={}, view={})

    def verify(self, user, state, response, ctx):
        code = response.get("code")
        if not isinstance(code, str):
            return Rejected("invalid_code")
        for credential in self.store.list(user):
            if hmac.compare_digest(self.store.reveal(credential), code.encode()):
                return Verified(credential.id, self.amr)
        return Rejected("invalid_code")

    def device_blueprint(self):
        bp = Blueprint("parrot_device", __name__)
        bp.add_url_rule("/ping", "ping", lambda: "pong")
        return bp

    @classmethod
    def cli_command(cls):
        @click.command()
        def squawk():
            click.echo("squawk")
        return squawk


def test_third_party_factor_registered_at_run_time_appears(factor_app, factor_user):
    registry = current_registry()
    assert "parrot" not in registry.names()
    factor = registry.register(ParrotFactor)
    assert registry.get("parrot") is factor
    assert factor in registry.all() and factor in registry.all(kind=FactorKind.SECOND_FACTOR)
    assert factor not in registry.all(kind="recovery")
    # Its device blueprint answers under /factors/parrot/ and it passes the conformance kit.
    assert factor_app.test_client().get("/factors/parrot/ping").data == b"pong"
    run_conformance(ParrotFactor, factor_app, factor_user,
                    answer_enrolment=lambda step, ctx: {"code": "polly"},
                    answer_challenge=lambda step, cred, ctx: {"code": "polly"})


def test_entry_point_factors_are_loaded(factor_app):
    names = current_registry().names()
    for name in ("totp", "recovery_codes", "webauthn"):
        if name in names:
            assert current_registry().get(name).name == name


def test_disabled_factor_is_not_loaded(tmp_path):
    app = make_app("sqlite:///" + str(tmp_path / "d.sqlite"), {"factors.disabled": ["parrot", "totp"]})
    with app.app_context():
        registry = current_registry()
        assert registry.register(ParrotFactor) is None
        assert "totp" not in registry.names()
        with pytest.raises(FactorNotFound):
            registry.get("parrot")


def test_a_disabled_name_no_plugin_declares_is_warned_of(tmp_path, caplog):
    """`factors.disabled = ["totpp"]` disabled nothing and said nothing: the operator believed TOTP
    was off while every login still offered it."""
    with caplog.at_level("WARNING", logger="idp.factors.registry"):
        app = make_app("sqlite:///" + str(tmp_path / "d.sqlite"), {"factors.disabled": ["totpp", "totp"]})
    with app.app_context():
        assert "totp" not in current_registry().names()
    [warning] = [r.getMessage() for r in caplog.records if "factors.disabled" in r.getMessage()]
    assert "'totpp'" in warning and "disables nothing" in warning and "'totp'" not in warning


def test_a_settings_section_of_a_factor_no_plugin_declares_is_warned_of(tmp_path, caplog):
    """`[factors.topt] digits = 8` was taken in silence (a third-party plugin's section is left to
    it, and there was none): the operator believed new TOTP credentials had 8 digits."""
    with caplog.at_level("WARNING", logger="idp.factors.registry"):
        make_app("sqlite:///" + str(tmp_path / "d.sqlite"), {"factors.topt.digits": 8})
    [warning] = [r.getMessage() for r in caplog.records if "configures a factor" in r.getMessage()]
    assert warning.startswith("[factors.topt] configures") and "do nothing" in warning
    assert "[factors.totp]" not in warning


@pytest.mark.parametrize("issuer, warned", [("http://127.0.0.1:5000", "IP address"), ("http://[::1]:5000", "IP address"),
                                            ("http://idp.test:5000", "only over HTTPS"),
                                            ("http://localhost:5000", None), ("http://id.localhost:5000", None),
                                            ("https://idp.example.com", None)])
def test_an_issuer_at_an_ip_address_is_warned_of_for_webauthn(tmp_path, issuer, warned):
    """Browsers refuse an IP address as WebAuthn RP id ("This is an invalid domain"): at the default
    development issuer no security key could be added, the page saying only "Try again". Over plain
    HTTP elsewhere than localhost they offer no WebAuthn at all. `idp serve` prints the warning."""
    app = make_app("sqlite:///" + str(tmp_path / "d.sqlite"), {"server.issuer": issuer})
    warning = app.extensions["idp.factors"].rp_id_warning()
    assert bool(warning) == bool(warned), warning
    if warned:
        assert warned in warning and "localhost" in warning
    disabled = make_app("sqlite:///" + str(tmp_path / "e.sqlite"), {"server.issuer": issuer,
                                                                   "factors.disabled": ["webauthn"]})
    assert disabled.extensions["idp.factors"].rp_id_warning() is None


def test_invalid_declarations_are_refused(factor_app):
    class NoAmr(ParrotFactor):
        name = "no_amr"
        amr = ()

    class BadAmr(ParrotFactor):
        name = "bad_amr"
        amr = ("password",)

    class Unimplemented(Factor):
        name = "lazy"
        label = "Lazy"
        amr = ("otp",)

    for cls in (NoAmr, BadAmr, Unimplemented):
        with pytest.raises(FactorLoadError):
            current_registry().register(cls)
    current_registry().register(ParrotFactor)
    with pytest.raises(FactorLoadError, match="twice"):
        current_registry().register(ParrotFactor)


def test_entry_point_name_must_match(monkeypatch, factor_app):
    class FakeEntryPoint:
        name, value, module = "budgie", "tests:ParrotFactor", "tests"

        def load(self):
            return ParrotFactor

    monkeypatch.setattr(registry_module, "_entry_points", lambda: [FakeEntryPoint()])
    with pytest.raises(FactorLoadError, match="differs from its entry-point name"):
        registry_module.load_classes()


def test_cli_commands_are_collected(monkeypatch):
    class FakeEntryPoint:
        name, value, module = "parrot", "tests:ParrotFactor", "tests"

        def load(self):
            return ParrotFactor

    monkeypatch.setattr(registry_module, "_entry_points", lambda: [FakeEntryPoint()])
    commands = registry_module.cli_commands()
    assert list(commands) == ["parrot"]
    result = click.testing.CliRunner().invoke(registry_module.factor_group(), ["parrot"])
    assert result.output == "squawk\n"


def test_context_has_rp_id_and_origin(factor_app):
    ctx = current_registry().context("webauthn", transaction_id="t")
    assert ctx.rp_id == "localhost" and ctx.origin == "http://localhost:5000"
    assert ctx.issuer == "http://localhost:5000"


def test_register_after_the_first_request_is_a_clear_error(factor_app):
    factor_app.test_client().get("/nothing-here")
    with pytest.raises(FactorLoadError, match="before the app's first request"):
        current_registry().register(ParrotFactor)
    assert "parrot" not in current_registry().names()


def test_describe_credentials_groups_single_set_factors(factor_app, factor_user):
    registry = current_registry()
    if "recovery_codes" not in registry or "totp" not in registry:
        pytest.skip("first-party plugins not installed")
    from idp.db import db

    registry.get("totp").store.create(factor_user, label="Phone", secret=b"x" * 20)
    registry.get("recovery_codes").regenerate(factor_user)
    db.session.commit()
    rows = registry.describe_credentials(factor_user)
    assert [(f.name, d.label) for f, d in rows] == [("totp", "Phone"), ("recovery_codes", "Recovery codes")]
    assert rows[1][1].facts == {"remaining": 10}


class ConfiguredParrot(ParrotFactor):
    """A third-party factor that declares its settings: the registry checks them."""

    name = "configured_parrot"
    default_settings = {"ttl": 300, "sender": "parrot@example.com", "words": ["polly"]}


@pytest.mark.parametrize("section, error", [
    ({"tll": 600}, "unknown setting factors.configured_parrot.tll; did you mean factors.configured_parrot.ttl?"),
    ({"ttl": "ten minutes"}, "factors.configured_parrot.ttl must be a whole number, not 'ten minutes'"),
    ({"words": "polly"}, "factors.configured_parrot.words must be a list, not 'polly'"),
])
def test_declared_settings_refuse_unknown_keys_and_wrong_types(tmp_path, section, error):
    from idp.factors import FactorMisconfigured

    app = make_app("sqlite:///" + str(tmp_path / "s.sqlite"),
                   {f"factors.configured_parrot.{key}": value for key, value in section.items()})
    with app.app_context(), pytest.raises(FactorMisconfigured) as refused:
        current_registry().register(ConfiguredParrot)
    assert str(refused.value) == error


def test_declared_settings_are_merged_over_their_defaults(tmp_path):
    app = make_app("sqlite:///" + str(tmp_path / "s.sqlite"),
                   {"factors.configured_parrot.ttl": 600, "factors.configured_parrot.words": ["polly", "cracker"]})
    with app.app_context():
        factor = current_registry().register(ConfiguredParrot)
        expected = {"ttl": 600, "sender": "parrot@example.com", "words": ("polly", "cracker")}
        assert dict(factor.settings) == expected
        assert dict(current_registry().context(factor).settings) == expected


def test_undeclared_settings_are_handed_over_unchecked(tmp_path):
    app = make_app("sqlite:///" + str(tmp_path / "s.sqlite"), {"factors.parrot.anything": 1})
    with app.app_context():
        assert dict(current_registry().register(ParrotFactor).settings) == {"anything": 1}


class CarelessParrot(ParrotFactor):
    """Spends the credential's counter before looking at the answer."""

    name = "careless_parrot"

    def verify(self, user, state, response, ctx):
        credential = self.store.list(user)[0]
        self.store.advance_counter(credential.id, credential.counter + 1)
        return super().verify(user, state, response, ctx)


def test_the_conformance_kit_catches_garbage_that_spends_a_counter(factor_app, factor_user):
    with pytest.raises(AssertionError, match="spent a counter or a code"):
        run_conformance(CarelessParrot, factor_app, factor_user,
                        answer_enrolment=lambda step, ctx: {"code": "polly"},
                        answer_challenge=lambda step, cred, ctx: {"code": "polly"})


class MailingParrot(ParrotFactor):
    """Mails the user a reminder of the word as each challenge begins: inline, or after the commit."""

    name = "mailing_parrot"
    inline = True

    def begin_challenge(self, user, ctx):
        send = directory.send_code if self.inline else directory.send_code_after_commit
        send(user, "polly", "login")
        return Step(state={}, view={})


class Outbox:
    def __init__(self) -> None:
        self.sent = []

    def send_code(self, to, code, purpose, locale=None, **_kw):
        self.sent.append((to, code))


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "after-the-commit"])
def test_the_conformance_kit_catches_a_message_sent_inside_a_transaction(factor_app, factor_user, monkeypatch,
                                                                         inline):
    from idp.notify.factory import EXTENSION_KEY

    outbox = factor_app.extensions[EXTENSION_KEY] = Outbox()
    monkeypatch.setattr(MailingParrot, "inline", inline)
    kit = lambda: run_conformance(MailingParrot, factor_app, factor_user,  # noqa: E731
                                  answer_enrolment=lambda step, ctx: {"code": "polly"},
                                  answer_challenge=lambda step, cred, ctx: {"code": "polly"})
    if inline:
        with pytest.raises(AssertionError, match="send it with directory.send_code_after_commit"):
            kit()
        assert outbox.sent == []
    else:
        kit()  # (only the challenge the kit commits is mailed: the first one's is rolled back)
        assert outbox.sent == [(factor_user.email, "polly")]
    assert factor_app.extensions[EXTENSION_KEY] is outbox  # (the kit's watch is lifted)


def test_two_packages_declaring_one_factor_name_are_refused(monkeypatch):
    """A third-party package that declares "totp" must not silently take the place of ours
    (or be silently ignored): whichever came first on the path won, and the credentials of
    every user's authenticator app went to the other class."""
    class EntryPoint:
        def __init__(self, value):
            self.name, self.value, self.module = "parrot", value, value.partition(":")[0]

        def load(self):
            return ParrotFactor

    monkeypatch.setattr(registry_module, "_entry_points",
                        lambda: [EntryPoint("acme.parrot:ParrotFactor"), EntryPoint("other.parrot:Parrot")])
    with pytest.raises(FactorLoadError, match="'parrot' is declared twice: acme.parrot:ParrotFactor and "
                                              "other.parrot:Parrot"):
        registry_module.load_classes()
    # The same declaration met twice (one distribution seen on two paths) is one factor.
    monkeypatch.setattr(registry_module, "_entry_points",
                        lambda: [EntryPoint("acme.parrot:ParrotFactor"), EntryPoint("acme.parrot:ParrotFactor")])
    assert registry_module.load_classes() == {"parrot": ParrotFactor}


@pytest.mark.parametrize("settings", [{"server.issuer": "https://bücher.example"},
                                      {"server.issuer": "https://login.bücher.example",
                                       "factors.webauthn.rp_id": "Bücher.example"}])
def test_an_internationalised_issuer_gives_the_ascii_rp_id_browsers_use(tmp_path, settings):
    """The origin was IDNA-encoded (as browsers send it) but the RP id, from the issuer's host or
    the setting, stayed in Unicode: the start-up check refused every such issuer, and the RP id's
    hash would not have matched the browser's either."""
    app = make_app("sqlite:///" + str(tmp_path / "d.sqlite"), {"env": "development", **settings})
    with app.app_context():
        rp_id, origin = current_registry().rp_id_and_origin()
    assert rp_id == "xn--bcher-kva.example"
    assert origin in ("https://xn--bcher-kva.example", "https://login.xn--bcher-kva.example")
