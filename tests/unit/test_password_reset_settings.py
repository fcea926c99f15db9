"""idp.password_reset without a server: its settings' ranges, the mail's wording, links no token names."""
from __future__ import annotations

import pytest

from idp.config import ConfigError, load_settings
from idp.notify import compose
from idp.password_reset import settings_of

LINK = "https://idp.example/password/reset/" + "A" * 43


def test_defaults_are_on_half_an_hour_three_an_hour():
    config = settings_of(load_settings(environ={"IDP_DATABASE_URL": "sqlite://"}))
    assert (config.enabled, config.link_ttl, config.per_hour) == (True, 1800, 3)


@pytest.mark.parametrize("name, raw", [("IDP_PASSWORD_RESET__LINK_TTL", "60"),
                                       ("IDP_PASSWORD_RESET__LINK_TTL", "604800"),
                                       ("IDP_PASSWORD_RESET__PER_HOUR", "0")])
def test_a_setting_out_of_its_range_stops_the_start(name, raw):
    with pytest.raises(ConfigError, match=name):
        load_settings(environ={"IDP_DATABASE_URL": "sqlite://", name: raw})


def test_the_mail_holds_the_link_on_its_own_line_and_how_long_it_works():
    message = compose("alice@example.com", LINK, "password_reset", minutes=30)
    assert message.subject == "Reset your password"
    assert f"\n    {LINK}\n" in message.body and "30 minutes" in message.body
    assert "ignore this message" in message.body


@pytest.mark.parametrize("token", ["", "short", "A" * 42 + "/", "A" * 44, "é" * 43, None])
def test_a_token_of_the_wrong_shape_names_no_link_without_asking_the_database(token):
    from idp.password_reset import live_link

    assert live_link(token) is None  # no app, no database: refused before either
