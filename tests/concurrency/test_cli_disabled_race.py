"""The operator's factor commands and the disabling of the account, on PostgreSQL: `factor totp
import`, `factor push activate` and `recovery-qr issue` ask whether the account is disabled under
the user's lock, held to their commit (as the push activation does: test_push_activation_race.py),
so a disabling that commits while the command waits for that lock is seen, and nothing is
written for the disabled account: no credential, no activation code, no recovery code."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fixtures.database import postgres_base_url
from fixtures.oidc import seed
from fixtures.race import disabled_while_it_waits

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "push"))
from push_testkit import enable_push  # noqa: E402

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def _commands():
    from idp_plugins.push.cli import push_group
    from idp_plugins.qr_recovery.cli import recovery_qr_group
    from idp_plugins.totp.cli import totp_group

    return {
        "totp import": (totp_group, ["import", "--secret-stdin"], SECRET + "\n"),
        "push activate": (push_group("push"), ["activate"], ""),
        "recovery-qr issue": (recovery_qr_group("qr_recovery"), ["issue"], ""),
    }


@pytest.mark.parametrize("command", ["totp import", "push activate", "recovery-qr issue"])
def test_a_disabling_while_the_command_waits_for_the_users_lock_refuses_it(pg_server, command):
    """The test holds the user's row (as a disabling does from its UPDATE to its commit), the
    command runs meanwhile and waits for it, then the disabling is done and committed: the
    command refuses. Before, it had read "not disabled" before waiting (or without waiting at
    all), and wrote its credential or code for the disabled account."""
    from sqlalchemy import func, select

    from idp.db import db
    from idp.models import Credential, FactorChallenge

    enable_push(pg_server)
    registry = pg_server.app.extensions["idp.factors"]
    if "qr_recovery" not in registry:
        from idp_plugins.qr_recovery.factor import QrRecoveryFactor

        registry.register(QrRecoveryFactor)
    seeded = seed(pg_server)
    group, args, stdin = _commands()[command]
    outcome = []

    def run():
        with pg_server.context():
            result = CliRunner().invoke(group, args + ["--user", seeded.user_email], input=stdin)
            outcome.append((result.exit_code, result.output))
            db.session.remove()

    def written():
        return (db.session.scalar(select(func.count()).select_from(Credential)),
                db.session.scalar(select(func.count()).select_from(FactorChallenge)))

    with pg_server.context():
        before = written()
    disabled_while_it_waits(pg_server, seeded.user_email, run)
    assert outcome and outcome[0][0] != 0 and "is disabled" in outcome[0][1], outcome
    with pg_server.context():
        assert written() == before
