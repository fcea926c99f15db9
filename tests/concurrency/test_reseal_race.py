"""`idp keys rotate-secrets` while a user removes an authenticator app, on PostgreSQL: the seed
the user removed stays removed.

These run only with IDP_TEST_DATABASE_URL (SQLite serialises writers, so a race there proves nothing).
"""
from __future__ import annotations

import base64
import os

import pytest
from sqlalchemy import create_engine, text

from fixtures.database import postgres_base_url

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")


def key(name: str) -> str:
    return f"{name}:" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def test_a_credential_revoked_while_it_is_resealed_keeps_no_secret(postgres_url, idp, monkeypatch):
    from idp.app import create_app
    from idp.db import db
    from idp.factors.store import reseal_all
    from idp.security.secrets import KeyRing

    k1, k2 = key("k1"), key("k2")
    old = {"IDP_SECURITY__ENCRYPTION_KEYS": f'["{k1}"]'}
    assert idp("init", database_url=postgres_url, env=old).returncode == 0
    assert idp("org", "add", "Acme", database_url=postgres_url, env=old).returncode == 0
    assert idp("user", "add", "--org", "Acme", "--email", "a@acme.test", "--password-stdin",
               database_url=postgres_url, env=old, input="a long enough password\n").returncode == 0
    assert idp("factor", "totp", "import", "--user", "a@acme.test", "--secret-stdin",
               database_url=postgres_url, env=old, input="JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n").returncode == 0

    other = create_engine(postgres_url)
    opened = KeyRing.open

    def open_while_the_user_removes_it(ring, key_id, blob, aad):
        # The user's removal (idp.factors.store revoke) commits between the reseal's read and write.
        with other.begin() as conn:
            conn.execute(text("UPDATE credentials SET revoked_at = now(), secret_ciphertext = NULL, "
                              "secret_key_id = NULL, lookup_key = NULL WHERE factor = 'totp'"))
        return opened(ring, key_id, blob, aad)

    app = create_app({"server.database_url": postgres_url, "security.encryption_keys": [k2, k1]})
    monkeypatch.setattr(KeyRing, "open", open_while_the_user_removes_it)
    with app.app_context():
        resealed = reseal_all()
        db.session.remove()
    db.engine.dispose()
    with other.connect() as conn:
        row = conn.execute(text("SELECT revoked_at, secret_ciphertext, secret_key_id FROM credentials "
                                "WHERE factor = 'totp'")).one()
    other.dispose()
    assert row.revoked_at is not None and row.secret_ciphertext is None and row.secret_key_id is None, \
        "the removed seed was written back"
    assert resealed == 0, "nothing resealed (nor audited): the row went from under it"
