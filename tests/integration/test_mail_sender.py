"""A production server warns at start of a `mail.sender` no relay delivers.

The default, idp@localhost, or any sender whose domain has no dot: most relays refuse such a
From and receivers file it as spam, so password reset links and e-mailed codes die unseen. A
warning, not a refusal (production refuses what would leak or run insecurely; this mail is still
sent, and a relay that rewrites the sender delivers it): the app gunicorn builds says it once.
"""
from __future__ import annotations

import logging

import pytest

from idp.app import create_app

PRODUCTION = {"server.env": "production", "server.issuer": "https://idp.example", "server.secret_key": "s" * 40,
              "security.encryption_keys": ["k1:" + "A" * 43], "mail.host": "smtp.internal", "mail.starttls": True,
              "security.argon2_memory_cost": 7168, "security.argon2_time_cost": 5}


def sender_warnings(caplog, **overrides) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="idp.notify.sender"):
        create_app(overrides)
    return [r.getMessage() for r in caplog.records if r.name == "idp.notify.sender"]


@pytest.mark.parametrize("sender", [None, "", "Identity <idp@mail>", "idp@localhost."],
                         ids=["the-default", "empty", "a-bare-host", "a-trailing-dot"])
def test_production_warns_of_a_sender_whose_domain_has_no_dot(tmp_path, caplog, sender):
    overrides = dict(PRODUCTION, **{"server.database_url": f"sqlite:///{tmp_path / 'idp.sqlite'}"})
    if sender is not None:
        overrides["mail.sender"] = sender
    [warning] = sender_warnings(caplog, **overrides)
    assert "mail.sender" in warning and "IDP_MAIL__SENDER" in warning


@pytest.mark.parametrize("sender", ["idp@example.com", "Identity <idp@mail.example.com>"])
def test_a_sender_of_a_real_domain_is_not_warned_of(tmp_path, caplog, sender):
    overrides = dict(PRODUCTION, **{"server.database_url": f"sqlite:///{tmp_path / 'idp.sqlite'}",
                                    "mail.sender": sender})
    assert sender_warnings(caplog, **overrides) == []


def test_development_is_not_warned(tmp_path, caplog):
    """(Its console notifier sends nothing: the default sender is its own.)"""
    assert sender_warnings(caplog, **{"server.database_url": f"sqlite:///{tmp_path / 'idp.sqlite'}"}) == []
