"""Withdrawing a signing key (`idp keys withdraw KID`, its private key leaked): out of the JWKS and
out of use at once, with the algorithm's next key signing; over HTTP against a live server, the
command run as an operator runs it (a subprocess on the server's database)."""
from __future__ import annotations

import base64
import json
import uuid

import pytest
import requests

from fixtures.cli import run_idp
from fixtures.oidc import FormBrowser, RelyingParty, password_login, seed, start_server


@pytest.fixture
def server(migrated_database_url):
    # A publish delay, as in production: a rotation's new key waits before it signs. No cached
    # JWKS document (5 s by default): the relying party checks each token against the keys as
    # they are published at that moment.
    live = start_server(migrated_database_url, {"tokens.key_publish_delay": 300, "ops.cached_documents_ttl": 0})
    yield live
    live.stop()


def published_kids(server) -> set[str]:
    # A query string passes the per-process document cache (idp/ops/documents.py).
    return {k["kid"] for k in requests.get(f"{server.url}/jwks?t={uuid.uuid4().hex}", timeout=5).json()["keys"]}


def signing_kid(server, seeded, rp) -> str:
    """The kid of a fresh login's ID token, once the server forgot its cached keys (they last 10 s)."""
    from idp.oidc import keys

    with server.context():
        keys.invalidate_cache()
    browser = FormBrowser(server.url)
    password_login(browser, rp, seeded.user_email, seeded.password)
    token = rp.exchange(browser.last_redirect)["id_token"]
    rp.validate_id_token(token)  # against the JWKS as published now
    return json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]


def idp(server, *args: str) -> dict:
    result = run_idp(*args, database_url=server.database_url)
    assert result.returncode == 0, result
    return json.loads(result.stdout)


def listed(server) -> list[dict]:
    """What `idp keys list --json` prints, read in process (a subprocess costs most of a second)."""
    from idp.db import db
    from idp.oidc import keys

    with server.context():
        listing = keys.list_keys()
        db.session.remove()
    return listing


def statuses(server) -> dict[str, str]:
    return {key["kid"]: key["status"] for key in listed(server)}


def test_a_withdrawn_key_leaves_the_jwks_and_a_new_key_signs_at_once(server):
    seeded = seed(server)
    rp = RelyingParty(server.url, seeded.first_party)
    leaked = signing_kid(server, seeded, rp)

    done = idp(server, "keys", "withdraw", leaked, "--json")
    assert done["kid"] == leaked and done["alg"] == "ES256"
    assert done["created"] and done["signs_now"] == done["created"]  # no publish delay for a leak

    assert signing_kid(server, seeded, rp) == done["created"]
    assert leaked not in published_kids(server) and done["created"] in published_kids(server)
    assert statuses(server)[leaked] == "removed"
    with server.context():
        from idp.db import db
        from idp.models import AuditEvent

        event = db.session.query(AuditEvent).filter_by(event="signing_key.withdrawn").one()
        assert event.details == done and event.actor == "cli"


def _now_iso() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat()


def _age_the_rotation(server, seconds: int) -> None:
    """As if the rotation had been made `seconds` ago (every key's times moved back)."""
    from datetime import timedelta

    from idp.db import db
    from idp.models import SigningKey
    from idp.oidc import keys

    with server.context():
        for row in db.session.query(SigningKey).all():
            row.created_at -= timedelta(seconds=seconds)
            row.activates_at -= timedelta(seconds=seconds)
            if row.retired_at:
                row.retired_at -= timedelta(seconds=seconds)
                row.remove_after -= timedelta(seconds=seconds)
        db.session.commit()
        keys.invalidate_cache()


def test_withdrawn_during_a_rotation_the_waiting_key_signs_or_is_replaced(server):
    seeded = seed(server)
    rp = RelyingParty(server.url, seeded.first_party)
    current = signing_kid(server, seeded, rp)
    waiting = next(k["kid"] for k in idp(server, "keys", "rotate", "--json") if k["alg"] == "ES256")
    assert statuses(server)[waiting] == "published"

    # The key that waits is withdrawn: another waits in its place, the current one signs on.
    _age_the_rotation(server, seconds=200)  # later in the publish delay: 100 s of it are left
    replaced_at = _now_iso()
    replaced = idp(server, "keys", "withdraw", waiting, "--json")
    assert replaced["signs_now"] == current and replaced["created"] not in (None, waiting)
    assert statuses(server)[replaced["created"]] == "published"
    assert signing_kid(server, seeded, rp) == current
    # ...published for the whole delay from now (relying parties cache the JWKS), however soon
    # the current key was to retire; which signs on until then.
    from datetime import datetime, timedelta

    for key in listed(server):
        key["activates_at"] = datetime.fromisoformat(key["activates_at"].replace("Z", "+00:00"))
        key["retired_at"] = key["retired_at"] and datetime.fromisoformat(key["retired_at"].replace("Z", "+00:00"))
        if key["kid"] == replaced["created"]:
            new = key
        elif key["kid"] == current:
            signing = key
    waited = new["activates_at"] - datetime.fromisoformat(replaced_at.replace("Z", "+00:00"))
    assert waited >= timedelta(seconds=299) and signing["retired_at"] == new["activates_at"]

    # The signing key is withdrawn: the waiting one signs now, without waiting out the delay.
    done = idp(server, "keys", "withdraw", current, "--json")
    assert done["signs_now"] == replaced["created"] and done["created"] is None
    assert signing_kid(server, seeded, rp) == replaced["created"]
    assert current not in published_kids(server)


@pytest.mark.parametrize("kid, message", [("es256-nosuchkey", "unknown signing key"), (None, "already out of the JWKS")])
def test_refusals_change_nothing(server, kid, message):
    seeded = seed(server)
    signing_kid(server, seeded, RelyingParty(server.url, seeded.first_party))
    if kid is None:  # one withdrawn already
        from idp.db import db
        from idp.oidc import keys

        kid = next(k for k, status in statuses(server).items() if status == "active")
        with server.context():
            keys.withdraw(kid)
            db.session.commit()
    before = listed(server)
    result = run_idp("keys", "withdraw", kid, database_url=server.database_url)
    assert result.returncode != 0 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert listed(server) == before


def test_withdrawing_the_first_of_two_waiting_keys_leaves_no_moment_without_a_signing_key(server):
    """Two rotations: the first's key waits to sign when the current key retires, the second's
    after. Withdrawing the first, the current key signs on until the second starts."""
    seeded = seed(server)
    rp = RelyingParty(server.url, seeded.first_party)
    current = signing_kid(server, seeded, rp)
    first = next(k["kid"] for k in idp(server, "keys", "rotate", "--json") if k["alg"] == "ES256")
    _age_the_rotation(server, seconds=100)
    second = next(k["kid"] for k in idp(server, "keys", "rotate", "--json") if k["alg"] == "ES256")
    idp(server, "keys", "withdraw", first, "--json")
    times = {key["kid"]: key for key in listed(server)}
    assert times[current]["retired_at"] >= times[second]["activates_at"], times


def test_the_replacement_key_is_generated_before_the_transaction_begins(server, monkeypatch):
    """An RSA key takes up to hundreds of milliseconds to generate: made inside the withdrawal's
    transaction, on SQLite (whose every transaction takes the write lock as it begins) every
    server would wait through it, as `rotate` already avoids."""
    from idp.db import db
    from idp.oidc import keys

    seed(server)
    generated_in_transaction = []
    real = keys._generated_key

    def watched(alg):
        generated_in_transaction.append(db.in_transaction())
        return real(alg)

    monkeypatch.setattr(keys, "_generated_key", watched)
    kid = next(k["kid"] for k in listed(server) if k["alg"] == "RS256" and k["status"] == "active")
    with server.context():
        done = keys.withdraw(kid)
        db.session.commit()
        db.session.remove()
    assert done.created and generated_in_transaction == [False]
    assert statuses(server)[done.created] == "active" and kid not in published_kids(server)
