"""A push activation and the disabling of its account, on PostgreSQL: the activation reads whether
the account is disabled under the user's lock (plugins/push/activation.register), so a disabling
that commits while the phone's request waits for that lock is seen, and no phone is registered on
a disabled account."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fixtures.database import postgres_base_url
from fixtures.oidc import seed
from fixtures.race import disabled_while_it_waits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "push"))
from push_testkit import activation_code, enable_push, issue_activation_uri  # noqa: E402

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")


def test_a_disabling_while_the_phone_waits_for_the_users_lock_refuses_the_phone(pg_server):
    """The test holds the user's row (as a disabling does from its UPDATE to its commit), the phone
    registers meanwhile and waits for it, then the disabling is done and committed: the phone is
    refused. Before, the phone had read "not disabled" before waiting, and registered its device
    on the disabled account (its activation code, expired by the disabling at a later instant than
    the phone's request began, still passed the code's check)."""
    from sqlalchemy import select

    from authenticator.push import keys
    from authenticator.push.client import PushClient
    from idp.db import db
    from idp.models import Credential

    enable_push(pg_server)
    seeded = seed(pg_server)
    uri = issue_activation_uri(pg_server, seeded.user_email)
    phone = PushClient(pg_server.url + "/factors/push/v1", keys.new_private_key())
    outcome = []

    def register():
        try:
            phone.register(activation_code(uri), "phone")
            outcome.append("registered")
        except Exception as exc:  # noqa: BLE001 - the client's refusal, whatever its class
            outcome.append(f"refused: {exc}")

    disabled_while_it_waits(pg_server, seeded.user_email, register)
    assert outcome and outcome[0].startswith("refused"), outcome
    with pg_server.context():
        devices = db.session.scalars(select(Credential).where(Credential.factor == "push",
                                                              Credential.revoked_at.is_(None))).all()
    assert devices == []
