"""IDP_* variables are read as the type of the setting they override, and production refuses what
would leak: the development key, an http issuer, missing encryption keys, the console notifier."""
from __future__ import annotations

import pytest

from idp.config import ConfigError, load_settings

PRODUCTION = {"IDP_ENV": "production", "IDP_ISSUER": "https://idp.example", "IDP_SECRET_KEY": "s" * 40,
              "IDP_SECURITY__ENCRYPTION_KEYS": "k1:" + "A" * 43, "IDP_MAIL__HOST": "smtp.internal",
              "IDP_DATABASE_URL": "sqlite://"}


def settings(**environ):
    return load_settings(environ={"IDP_DATABASE_URL": "sqlite://", **environ})


@pytest.mark.parametrize("raw, expected", [("false", False), ("False", False), ("off", False), ("0", False),
                                           ("true", True), ("ON", True), ("1", True)])
def test_booleans_in_any_usual_spelling(raw, expected):
    assert settings(IDP_OPS__METRICS_ENABLED=raw).get("ops.metrics_enabled") is expected


def test_lists_from_one_item_commas_or_a_toml_array():
    assert settings(IDP_FACTORS__DISABLED="push").get("factors.disabled") == ("push",)
    assert settings(IDP_FACTORS__DISABLED="push, webauthn").get("factors.disabled") == ("push", "webauthn")
    assert settings(IDP_SERVER__TRUSTED_PROXIES='["10.0.0.1"]').trusted_proxies == ("10.0.0.1",)
    assert settings(IDP_SERVER__TRUSTED_PROXIES="10.0.0.1").trusted_proxies == ("10.0.0.1",)


def test_text_settings_keep_the_text():
    assert settings(IDP_MAIL__PASSWORD="123").get("mail.password") == "123"
    assert settings(IDP_MAIL__PASSWORD="true").get("mail.password") == "true"


@pytest.mark.parametrize("name, raw", [("IDP_SESSION__LIFETIME", "1h"), ("IDP_TOKENS__ACCESS_TOKEN_TTL", "abc"),
                                       ("IDP_TOKENS__ACCESS_TOKEN_TTL", "1.5"), ("IDP_OPS__METRICS_ENABLED", "maybe")])
def test_a_value_of_the_wrong_type_is_a_configuration_error(name, raw):
    with pytest.raises(ConfigError, match=name):
        settings(**{name: raw})


def test_production_starts_with_everything_set():
    assert load_settings(environ=PRODUCTION).production


def test_production_refuses_the_console_notifier():
    """It writes e-mailed one-time codes (recovery) to the log."""
    environ = {k: v for k, v in PRODUCTION.items() if k != "IDP_MAIL__HOST"}
    with pytest.raises(ConfigError, match="console notifier"):
        load_settings(environ=environ)
