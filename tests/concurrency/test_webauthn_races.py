"""Exactly once over HTTP, on PostgreSQL: one signed WebAuthn answer posted by ten tabs at once."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from fixtures.database import postgres_base_url
from fixtures.oidc import FormBrowser, RelyingParty, seed
from fixtures.race import at_once, tabs_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "webauthn"))

from soft_authenticator import SoftAuthenticator, enrolled_key, options_of  # noqa: E402

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")

RACERS = 10


def _events(server, name: str) -> list:
    from idp.db import db
    from idp.models import AuditEvent

    with server.context():
        return db.session.scalars(select(AuditEvent.details).where(AuditEvent.event == name)).all()


@pytest.mark.parametrize("stored, presented", [(10, 11), (0, 0)], ids=["counter", "passkey-without-counter"])
def test_one_assertion_posted_by_ten_tabs_at_once_signs_in_once(pg_server, stored, presented):
    """A key whose count rises, and a passkey whose count stays 0 (no counter to stop a replay:
    the login's single-use challenge does)."""
    from idp.db import db
    from idp.models import Credential

    seeded = seed(pg_server)
    key = enrolled_key(pg_server, seeded, sign_count=stored)
    browser = FormBrowser(pg_server.url)
    browser.get(RelyingParty(pg_server.url, seeded.first_party).authorization_url())
    page = browser.login(seeded.user_email, seeded.password)
    form = page.form_with("response")
    answer = json.dumps(key.get(options_of(page), sign_count=presented))
    tabs = tabs_of(browser, RACERS)
    at_once(RACERS, lambda i: tabs[i].submit(form, {"response": answer}))
    assert sum(1 for t in tabs if t.last_redirect and "code=" in t.last_redirect) == 1
    assert all(t.page.status < 500 for t in tabs)
    with pg_server.context():
        assert db.session.scalars(select(Credential.counter).where(Credential.lookup_key == key.id)).one() == presented
    assert _events(pg_server, "login.second_factor_failed") == []
    assert _events(pg_server, "webauthn.clone_suspected") == []
    assert len(_events(pg_server, "login.second_factor")) == 1


def test_one_registration_posted_by_ten_tabs_at_once_registers_one_key(pg_server):
    from idp.db import db
    from idp.models import Credential

    seeded = seed(pg_server)
    browser = FormBrowser(pg_server.url)
    browser.get("/account/security")
    page = browser.login(seeded.user_email, seeded.password)
    page = browser.submit(next(f for f in page.forms() if f["action"].endswith("/add/webauthn")))
    form = page.form_with("response")
    attestation = json.dumps(SoftAuthenticator("localhost", pg_server.url).create(options_of(page)))
    tabs = tabs_of(browser, RACERS)
    at_once(RACERS, lambda i: tabs[i].submit(form, {"response": attestation, "label": "Key"}))
    assert all(t.page.status < 500 for t in tabs)
    with pg_server.context():
        assert len(db.session.scalars(select(Credential.id).where(Credential.factor == "webauthn")).all()) == 1
    assert len(_events(pg_server, "factor.enrolled")) == 1
