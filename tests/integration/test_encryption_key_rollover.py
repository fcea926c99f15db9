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


def test_a_development_database_moving_to_production_is_told_to_reseal_under_its_old_secret_key(database_url, idp):
    """Production refuses the development secret key, and "dev" is derived from the secret key in
    force: an operator following "["k1:NEW", "dev"]" with production's new secret key met
    "ciphertext does not open with its key and associated data" and no way on."""
    old_secret, new_secret, k1 = "a development secret key of some length", "s" * 48, key("k1")
    assert idp("init", database_url=database_url, env={"IDP_SECRET_KEY": old_secret}).returncode == 0
    moving = {"IDP_SECRET_KEY": new_secret, "IDP_SECURITY__ENCRYPTION_KEYS": f'["{k1}", "dev"]'}
    for command in (("init",), ("keys", "rotate-secrets")):
        refused = idp(*command, database_url=database_url, env=moving)
        assert refused.returncode != 0 and len(refused.stderr_lines) == 1 and "Traceback" not in refused.stderr
        assert "derived from server.secret_key" in refused.stderr and "IDP_SECRET_KEY=OLD" in refused.stderr
    assert sealed_with(database_url) == {"dev"}, "nothing changed"
    resealed = idp("keys", "rotate-secrets", database_url=database_url, env={**moving, "IDP_SECRET_KEY": old_secret})
    assert resealed.returncode == 0, resealed.stderr
    assert sealed_with(database_url) == {"k1"}
    done = idp("init", database_url=database_url, env={**moving, "IDP_SECURITY__ENCRYPTION_KEYS": f'["{k1}"]'})
    assert done.returncode == 0, done.stderr


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


def test_a_credential_that_does_not_open_stops_the_reseal_in_one_line_after_recording_what_was_done(
        database_url, idp):
    """A tampered row (or one sealed with a key dropped too early): one line naming it, not a
    traceback; the signing keys resealed before it stay resealed and are audited."""
    from sqlalchemy import text

    k1, k2 = key("k1"), key("k2")
    old = {"IDP_SECURITY__ENCRYPTION_KEYS": f'["{k1}"]'}
    assert idp("init", database_url=database_url, env=old).returncode == 0
    assert idp("org", "add", "Acme", database_url=database_url, env=old).returncode == 0
    assert idp("user", "add", "--org", "Acme", "--email", "a@acme.test", "--password-stdin",
               database_url=database_url, env=old, input="a long enough password\n").returncode == 0
    assert idp("factor", "totp", "import", "--user", "a@acme.test", "--secret-stdin",
               database_url=database_url, env=old, input="JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n").returncode == 0
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE credentials SET secret_key_id = 'k1', secret_ciphertext = :junk "
                          "WHERE factor = 'totp'"), {"junk": b"\0" * 48})
    refused = idp("keys", "rotate-secrets", database_url=database_url,
                  env={"IDP_SECURITY__ENCRYPTION_KEYS": f'["{k2}", "{k1}"]'})
    assert refused.returncode != 0 and len(refused.stderr_lines) == 1 and "Traceback" not in refused.stderr
    assert "credential" in refused.stderr and "signing keys" in refused.stderr
    assert sealed_with(database_url) == {"k2"}
    with engine.connect() as conn:
        events = [row[0] for row in conn.execute(text(
            "SELECT details FROM audit_events WHERE event = 'secrets.resealed'"))]
    engine.dispose()
    assert len(events) == 1 and "signing_keys" in str(events[0])


def test_a_key_ring_that_lost_the_key_of_second_factor_secrets_stops_init_and_serve(database_url, idp):
    """Dropped before `idp keys rotate-secrets` ran (README, step 3 before step 2): one line at
    `idp init` and `idp serve` naming the key, not "signing keys present" and then every TOTP
    user's login failing."""
    k1, k2 = key("k1"), key("k2")
    both = {"IDP_SECURITY__ENCRYPTION_KEYS": f'["{k1}", "{k2}"]'}
    assert idp("init", database_url=database_url, env={"IDP_SECURITY__ENCRYPTION_KEYS": f'["{k2}"]'}).returncode == 0
    assert idp("org", "add", "Acme", database_url=database_url, env=both).returncode == 0
    assert idp("user", "add", "--org", "Acme", "--email", "a@acme.test", "--password-stdin",
               database_url=database_url, env=both, input="a long enough password\n").returncode == 0
    # The TOTP seed is sealed with k1, the signing keys with k2.
    assert idp("factor", "totp", "import", "--user", "a@acme.test", "--secret-stdin",
               database_url=database_url, env=both, input="JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n").returncode == 0
    lost = {"IDP_SECURITY__ENCRYPTION_KEYS": f'["{k2}"]'}
    refused = idp("init", database_url=database_url, env=lost)
    assert refused.returncode != 0 and len(refused.stderr_lines) == 1 and "Traceback" not in refused.stderr
    assert "cannot open second-factor secrets (1 sealed with key 'k1')" in refused.stderr
    served = idp("serve", "--port", "1", database_url=database_url, env=lost)
    assert served.returncode != 0 and "cannot open second-factor secrets" in served.stderr
    # Another key under the old id opens nothing either.
    impostor = {"IDP_SECURITY__ENCRYPTION_KEYS": f'["{k2}", "{key("k1")}"]'}
    assert "sealed with key 'k1'" in idp("init", database_url=database_url, env=impostor).stderr
    assert idp("init", database_url=database_url, env=both).returncode == 0


def test_a_totp_seed_whose_key_left_the_ring_is_a_clear_page_at_login_not_a_500(seeded, web, rp_factory,
                                                                                   live_server):
    """A server started anyway (gunicorn runs no `idp init`): the user is told to use another
    method, no guess is counted against them, and their recovery codes still sign them in."""
    import time

    import pyotp
    from sqlalchemy import func, update

    from fixtures.oidc import FormBrowser
    from fixtures.totp import enrol_totp_during_login
    from idp.db import db
    from idp.models import AuditEvent, Credential, FailureCounter

    rp = rp_factory(seeded.first_party)
    secret, codes = enrol_totp_during_login(web, rp, seeded)
    rp.exchange(web.last_redirect)
    with live_server.context():
        db.session.execute(update(Credential).where(Credential.factor == "totp").values(secret_key_id="gone"))
        db.session.commit()
        counters_before = db.session.scalar(func.count(FailureCounter.key).select())

    browser = FormBrowser(live_server.url)
    browser.get(rp.authorization_url())
    page = browser.login(seeded.user_email, seeded.password)
    page = browser.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).at(int(time.time()) + 30)})
    assert page.status == 503 and "cannot be checked at the moment" in page.text
    assert browser.last_redirect is None
    with live_server.context():
        assert db.session.scalar(func.count(AuditEvent.id).select().where(
            AuditEvent.event == "login.second_factor_failed")) == 0
        assert db.session.scalar(func.count(FailureCounter.key).select()) == counters_before

    choose = [f for f in page.forms() if f["action"].endswith("/factor/recovery_codes")]
    page = browser.submit(choose[0])
    browser.submit(page.form_with("code"), {"code": codes[0]})
    browser.past_recovery_notice()
    assert "mfa" in rp.validate_id_token(rp.exchange(browser.last_redirect)["id_token"])["amr"]


def _seal_pending_views_with_a_dropped_key(server) -> int:
    """What dropping the key that sealed the enrolments in progress does: their sealed views (and
    seeds) name a key the ring no longer holds."""
    from idp.db import db
    from idp.models import FactorChallenge, LoginTransaction

    changed = 0
    with server.context():
        for row in db.session.scalars(select(LoginTransaction)).all():
            data = dict(row.factor_state or {})
            if "sealed_view" in data:
                data["sealed_view"] = "gone:" + data["sealed_view"].partition(":")[2]
                row.factor_state, changed = data, changed + 1
        for row in db.session.scalars(select(FactorChallenge)).all():
            payload = dict(row.payload_json or {})
            if "sealed_view" in payload:
                payload["sealed_view"] = "gone:" + payload["sealed_view"].partition(":")[2]
                row.payload_json, changed = payload, changed + 1
        db.session.commit()
    return changed


def test_a_login_enrolment_sealed_with_a_dropped_key_begins_again_not_a_500(seeded, web, rp_factory, live_server):
    """README's key rollover done within the ten minutes an enrolment lives: the page starts over
    (the old seed can be neither opened nor shown) with a new seed, and that one enrols."""
    import pyotp

    from fixtures.totp import at_totp_enrolment

    rp = rp_factory(seeded.first_party)
    _page, first_secret = at_totp_enrolment(web, rp, seeded)
    url = web.page.url
    assert _seal_pending_views_with_a_dropped_key(live_server) == 1
    page = web.get(url)
    assert page.status == 200, page.text[:500]
    choose = [f for f in page.forms() if f["action"].endswith("/factor/totp")]
    assert choose, "the choice of methods again, as if none had been begun"
    page = web.submit(choose[0])
    secret = page.find(r'<code>([A-Z2-7 ]+)</code>').replace(" ", "")
    assert secret and secret != first_secret
    page = web.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).now(), "label": "Phone"})
    assert page.status == 200 and "data-recovery-codes" in page.text, page.text[:500]


def test_an_account_enrolment_sealed_with_a_dropped_key_is_expired_not_a_500(seeded, web, live_server):
    page = web.get("/account/security")
    page = web.login(seeded.user_email, seeded.password)
    page = web.submit([f for f in page.forms() if f["action"].endswith("/add/totp")][0])
    url, form = page.url, page.form_with("code")
    assert _seal_pending_views_with_a_dropped_key(live_server) == 1
    page = web.get(url)
    assert page.status == 200 and "/account/security" in page.url and "This enrolment expired" in page.text
    page = web.submit(form, {"code": "123456", "label": "Phone"})
    assert page.status == 200 and "This enrolment expired" in page.text


def test_a_retired_signing_key_whose_encryption_key_is_gone_does_not_stop_the_reseal(database_url, idp):
    """`idp init` lets an encryption key go once only retired keys use it (nothing opens them
    again); a later rotation must not then be stuck on them, with the credentials never resealed."""
    from datetime import timedelta

    from sqlalchemy import text, update

    from idp.db import utcnow

    k0, k1, k2 = key("k0"), key("k1"), key("k2")
    old = {"IDP_SECURITY__ENCRYPTION_KEYS": f'["{k0}"]'}
    assert idp("init", database_url=database_url, env=old).returncode == 0
    now = {"IDP_SECURITY__ENCRYPTION_KEYS": f'["{k1}", "{k0}"]'}
    assert idp("keys", "rotate", database_url=database_url, env=now).returncode == 0
    engine = create_engine(database_url)
    with engine.begin() as conn:  # the keys k0 sealed have signed their last and retired
        conn.execute(update(SigningKey).where(SigningKey.secret_key_id == "k0")
                     .values(retired_at=utcnow() - timedelta(days=1)))
        conn.execute(update(SigningKey).where(SigningKey.secret_key_id == "k1")
                     .values(activates_at=utcnow() - timedelta(days=1)))
    only_k1 = {"IDP_SECURITY__ENCRYPTION_KEYS": f'["{k1}"]'}
    assert idp("init", database_url=database_url, env=only_k1).returncode == 0, "k0 may go"
    assert idp("org", "add", "Acme", database_url=database_url, env=only_k1).returncode == 0
    assert idp("user", "add", "--org", "Acme", "--email", "a@acme.test", "--password-stdin",
               database_url=database_url, env=only_k1, input="a long enough password\n").returncode == 0
    assert idp("factor", "totp", "import", "--user", "a@acme.test", "--secret-stdin",
               database_url=database_url, env=only_k1, input="JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n").returncode == 0

    moved = idp("keys", "rotate-secrets", database_url=database_url,
                env={"IDP_SECURITY__ENCRYPTION_KEYS": f'["{k2}", "{k1}"]'})
    assert moved.returncode == 0, moved.stderr
    assert sealed_with(database_url) == {"k0", "k2"}, "the retired keys stay as they were, the others move"
    with engine.connect() as conn:
        assert set(conn.scalars(text("SELECT secret_key_id FROM credentials WHERE secret_ciphertext IS NOT NULL"))) \
            == {"k2"}
    engine.dispose()
