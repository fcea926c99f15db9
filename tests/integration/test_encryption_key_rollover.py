"""`idp keys rotate-secrets` as an operator meets it: moving a database begun without encryption
keys to real ones, and a key left out of the ring (one line, nothing changed)."""
from __future__ import annotations

import base64
import os

from sqlalchemy import create_engine, select

from idp.models import SigningKey


def key(name: str) -> str:
    return f"{name}:" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def sealed_with(url: str) -> set[str]:
    engine = create_engine(url)
    with engine.connect() as conn:
        ids = set(conn.scalars(select(SigningKey.secret_key_id)))
    engine.dispose()
    return ids


def test_a_database_begun_without_keys_moves_to_real_ones(database_url, idp):
    assert idp("init", database_url=database_url).returncode == 0
    assert sealed_with(database_url) == {"dev"}
    k1 = key("k1")
    refused = idp("keys", "rotate-secrets", database_url=database_url,
                  env={"IDP_SECURITY__ENCRYPTION_KEYS": f'["{k1}"]'})
    assert refused.returncode != 0 and len(refused.stderr_lines) == 1 and "Traceback" not in refused.stderr
    assert "no encryption key 'dev'" in refused.stderr and '"dev"' in refused.stderr
    assert sealed_with(database_url) == {"dev"}, "nothing changed"
    moved = idp("keys", "rotate-secrets", database_url=database_url,
                env={"IDP_SECURITY__ENCRYPTION_KEYS": f'["{k1}", "dev"]'})
    assert moved.returncode == 0, moved.stderr
    assert sealed_with(database_url) == {"k1"}
    assert idp("keys", "list", database_url=database_url,
               env={"IDP_SECURITY__ENCRYPTION_KEYS": f'["{k1}"]'}).returncode == 0


def test_a_key_ring_that_lost_the_signing_keys_key_stops_init_and_is_not_ready(database_url, idp):
    """One line at `idp init` (and `idp serve`), an unready instance behind a load balancer:
    not "signing keys present" and then a 500 on every token and JWKS request."""
    from idp.app import create_app

    k1, k2 = key("k1"), key("k2")
    assert idp("init", database_url=database_url, env={"IDP_SECURITY__ENCRYPTION_KEYS": f'["{k1}"]'}).returncode == 0
    lost = {"IDP_SECURITY__ENCRYPTION_KEYS": f'["{k2}"]'}
    refused = idp("init", database_url=database_url, env=lost)
    assert refused.returncode != 0 and len(refused.stderr_lines) == 1 and "Traceback" not in refused.stderr
    assert "cannot open signing key(s)" in refused.stderr
    served = idp("serve", "--port", "1", database_url=database_url, env=lost)
    assert served.returncode != 0 and "cannot open signing key(s)" in served.stderr

    def readiness(ring: str):
        app = create_app({"server.database_url": database_url, "security.encryption_keys": [ring]})
        return app.test_client().get("/readyz")

    unready = readiness(k2)
    assert unready.status_code == 503 and unready.get_json()["signing_keys"] == "unusable"
    ready = readiness(k1)
    assert ready.status_code == 200 and ready.get_json() == {"status": "ready", "database": "ok",
                                                             "signing_keys": "ok"}
