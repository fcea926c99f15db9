"""Signing-key rotation: published before it signs; old keys stay in the JWKS until their tokens expire."""
from __future__ import annotations

from datetime import timedelta

import requests

from fixtures.oidc import password_login, seed, start_server


def _kids(server) -> set[str]:
    # A query string passes the few-second per-process document cache (idp/ops/documents.py).
    import uuid

    return {k["kid"] for k in requests.get(f"{server.url}/jwks?t={uuid.uuid4().hex}", timeout=5).json()["keys"]}


def _id_token_kid(token: str) -> str:
    import base64
    import json

    return json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]


def test_rotation_publishes_first_and_keeps_old_keys(migrated_database_url, rp_factory_for):
    from idp.db import db
    from idp.models import SigningKey
    from idp.oidc import keys

    server = start_server(migrated_database_url, {"tokens.key_publish_delay": 300})
    try:
        seeded = seed(server)
        rp = rp_factory_for(server, seeded.first_party)
        web = type_browser(server)
        password_login(web, rp, seeded.user_email, seeded.password)
        old_kid = _id_token_kid(rp.exchange(web.last_redirect)["id_token"])
        with server.context():
            new_keys = keys.rotate()
        new_kids = {k.kid for k in new_keys}
        assert new_kids <= _kids(server) and old_kid in _kids(server), "published at once, old key kept"
        web = type_browser(server)
        password_login(web, rp, seeded.user_email, seeded.password)
        assert _id_token_kid(rp.exchange(web.last_redirect)["id_token"]) == old_kid, "not signing before the delay"
        with server.context():  # let the delay pass
            for row in db.session.query(SigningKey).all():
                row.created_at -= timedelta(seconds=301)
                row.activates_at -= timedelta(seconds=301)
                if row.retired_at:
                    row.retired_at -= timedelta(seconds=301)
                    row.remove_after -= timedelta(seconds=301)
            db.session.commit()
            keys.invalidate_cache()
        web = type_browser(server)
        password_login(web, rp, seeded.user_email, seeded.password)
        token = rp.exchange(web.last_redirect)["id_token"]
        assert _id_token_kid(token) in new_kids
        assert old_kid in _kids(server), "old tokens are still valid: their key stays published"
        rp.validate_id_token(token)
        with server.context():
            for row in db.session.query(SigningKey).filter(SigningKey.retired_at.isnot(None)).all():
                row.remove_after -= timedelta(days=1)
            db.session.commit()
            keys.invalidate_cache()
        assert old_kid not in _kids(server)
    finally:
        server.stop()


def test_an_id_token_is_signed_by_the_key_its_header_names_if_the_active_key_changes_meanwhile(
        migrated_database_url, rp_factory_for, monkeypatch):
    """Authlib asks for the header's kid, then (after the claims) for the key: should the key
    snapshot reload in between, at the moment a rotation takes effect, the two calls would see
    different keys. The ID token takes both from one look-up (idp.oidc.openid)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from joserfc.jwk import ECKey

    from idp.oidc import keys

    server = start_server(migrated_database_url)
    try:
        seeded = seed(server)
        rp = rp_factory_for(server, seeded.first_party)
        real = keys.signing_key
        looked_up = []

        def the_key_changes_after_one_look_up(alg):
            looked_up.append(alg)
            if len(looked_up) == 1:
                return real(alg)
            return "es256-unpublished", ECKey.import_key(ec.generate_private_key(ec.SECP256R1()))

        web = type_browser(server)
        password_login(web, rp, seeded.user_email, seeded.password)
        monkeypatch.setattr(keys, "signing_key", the_key_changes_after_one_look_up)
        token = rp.exchange(web.last_redirect)["id_token"]
        monkeypatch.setattr(keys, "signing_key", real)
        assert looked_up == ["ES256"]
        rp.validate_id_token(token)  # the header's kid verifies the signature
    finally:
        server.stop()


def type_browser(server):
    from fixtures.oidc import FormBrowser

    return FormBrowser(server.url)


import pytest  # noqa: E402


@pytest.fixture
def rp_factory_for():
    from fixtures.oidc import RelyingParty

    return lambda server, client: RelyingParty(server.url, client)


@pytest.mark.parametrize("delay, documents, max_age", [(300, 5, 285), (15, 5, 0), (3600, 5, 300), (0, 5, 0)])
def test_relying_parties_keep_the_jwks_no_longer_than_a_rotated_in_key_waits(delay, documents, max_age):
    """A key set fetched just before `idp keys rotate` must expire before the new key signs: its
    max-age follows tokens.key_publish_delay less the workers' caches (at most 300 s). A flat 300 s
    let relying parties keep a set without the signing key for minutes (an audit found it)."""
    from idp.oidc.views import jwks_max_age

    settings = {"tokens.key_publish_delay": delay, "ops.cached_documents_ttl": documents}
    assert jwks_max_age(settings) == max_age


def test_the_jwks_says_its_max_age(migrated_database_url):
    server = start_server(migrated_database_url, {"tokens.key_publish_delay": 120, "ops.cached_documents_ttl": 5})
    try:
        assert requests.get(f"{server.url}/jwks", timeout=10).headers["Cache-Control"] == "public, max-age=105"
    finally:
        server.stop()
