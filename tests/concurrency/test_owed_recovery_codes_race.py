"""Recovery codes owed after `idp factor totp import`, on PostgreSQL: several logins proving a
second factor at the same moment make one set, shown on one page."""
from __future__ import annotations

import time

import pyotp
import pytest
from sqlalchemy import func, select

from fixtures.database import postgres_base_url
from fixtures.oidc import FormBrowser, RelyingParty, seed
from fixtures.race import at_once

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")

TABS = 4


def _import(server, email: str, secret: str) -> None:
    from click.testing import CliRunner

    from idp.factors.registry import factor_group

    with server.context():
        result = CliRunner().invoke(factor_group(), ["totp", "import", "--user", email, "--secret-stdin"],
                                    input=secret + "\n")
    assert result.exit_code == 0, result.output


def _one_set_shown_and_kept(server, tabs, email: str) -> None:
    """One tab shows the new codes, the others go on to the application, and one set is stored."""
    from idp.db import db
    from idp.models import Credential, User

    shown = [tab for tab in tabs if "data-recovery-codes" in tab.page.text]
    through = [tab for tab in tabs if tab.last_redirect and "code=" in tab.last_redirect]
    assert len(shown) == 1 and len(through) == TABS - 1, [tab.page.status for tab in tabs]
    with server.context():
        user_id = db.session.scalar(select(User.id).where(User.email == email))
        live = db.session.scalar(select(func.count()).select_from(Credential).where(
            Credential.user_id == user_id, Credential.factor == "recovery_codes", Credential.revoked_at.is_(None)))
        assert live == 10


def test_logins_proving_factors_at_once_make_one_set_of_owed_codes(pg_server):
    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.first_party)
    # One authenticator per tab: each tab's code is accepted (one step of one credential each).
    secrets = [pyotp.random_base32() for _ in range(TABS)]
    for secret in secrets:
        _import(pg_server, seeded.user_email, secret)
    tabs = []
    for _ in range(TABS):
        tab = FormBrowser(pg_server.url)
        tab.get(rp.authorization_url())
        tab.login(seeded.user_email, seeded.password)
        tabs.append(tab)
    now = time.time()
    at_once(TABS, lambda i: tabs[i].submit(tabs[i].page.form_with("code"), {"code": pyotp.TOTP(secrets[i]).at(now)}))
    _one_set_shown_and_kept(pg_server, tabs, seeded.user_email)


def test_push_logins_approved_at_once_make_one_set_of_owed_codes(pg_server):
    """The phone registered with an activation code owes the codes; several logins approved on it
    continue at the same moment. Push's check writes no credential, so the list of the user's
    credentials the login read before it waited for the user's row (idp.factors.store keeps it
    for the request) still said "no recovery codes" after the first tab had made its set: every
    tab made and showed one, each replacing the one before."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "push"))
    from push_testkit import enable_push, give_device

    enable_push(pg_server)
    seeded = seed(pg_server)
    phone = give_device(pg_server, seeded.user_email)
    rp = RelyingParty(pg_server.url, seeded.first_party)
    tabs, waiting = [], []
    for _ in range(TABS):  # each login's request approved before the next begins
        tab = FormBrowser(pg_server.url)
        tab.get(rp.authorization_url())
        page = tab.login(seeded.user_email, seeded.password)
        number = page.find(r'data-push-number="(\d+)"')
        assert number, page.text[:3000]
        [request] = [r for r in phone.pending() if r["id"] not in {w[1] for w in waiting}]
        assert phone.answer(request["id"], "approve", number) == {"status": "approved"}
        tabs.append(tab)
        waiting.append(([f for f in page.forms() if "version" in f["fields"]][0], request["id"]))
    at_once(TABS, lambda i: tabs[i].submit(waiting[i][0]))
    _one_set_shown_and_kept(pg_server, tabs, seeded.user_email)
