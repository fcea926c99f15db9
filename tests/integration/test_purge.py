"""`idp purge`: expired server-side rows go, live ones stay (idp/maintenance.py, docs/operations.md "Housekeeping").

Rows of every kind are written straight into a migrated database, some past their
use and some still live; the command runs as a subprocess, as cron would run it.
Each test runs on SQLite and, when IDP_TEST_DATABASE_URL is set, on PostgreSQL.
"""
from __future__ import annotations

import hashlib
import json
import time
from datetime import timedelta

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from idp.db import utcnow
from idp.models import (AuthorizationCode, ClientAssertion, DeviceAuthorization, DPoPProof, FactorChallenge,
                        FailureCounter, LoginTransaction, Organization, PasswordReset, PushedRequest, SessionClient, Token,
                        User, UserSession)

REFRESH_TTL = 2592000  # config/default.toml tokens.refresh_token_ttl
MIN, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)

# Per table: (primary-key column, ids that must go, ids that must stay); the rows are written by seed().
EXPECTED = {
    "login_transactions": ("id", {"lt-expired"}, {"lt-live"}),
    "user_sessions": ("id", {"us-expired", "us-revoked"}, {"us-live"}),
    "authorization_codes": ("code_hash", {"ac-unredeemed-expired", "ac-old-no-tokens"},
                            {"ac-live", "ac-redeemed-recently", "ac-old-live-family"}),
    "tokens": ("access_token_hash", {"tk-all-expired", "tk-access-expired-no-refresh", "tk-revoked-long-ago"},
               {"tk-refresh-live", "tk-access-live", "tk-revoked-recently", "tk-family-of-old-code"}),
    "factor_challenges": ("id", {"fc-expired-long-ago", "fc-answered-long-ago-expired"},
                          {"fc-pending-live", "fc-expired-recently", "fc-answered-long-ago-unexpired",
                           "fc-jti-just-expired"}),
    "failure_counters": ("key", {"fx-idle", "fx-idle-lock-lapsed"}, {"fx-recent", "fx-idle-but-locked"}),
    # Kept while the per-account hourly limit counts them (created within the hour), expired or not.
    "password_resets": ("token_hash", {"pr-expired-old", "pr-used-old"}, {"pr-live", "pr-used-this-hour"}),
    # A jti is kept till its assertion expired beyond the 60 s of clock leeway it is checked with.
    "client_assertions": ("jti_hash", {"ca-expired"}, {"ca-live", "ca-within-leeway"}),
    "pushed_requests": ("request_uri_hash", {"pa-expired"}, {"pa-live"}),
    "dpop_proofs": ("jti_hash", {"dp-expired"}, {"dp-live"}),
    # Kept a day past expiry (a late poll is told expired_token), an approved one as long as a
    # redeemed code (its device code presented again must still find it: reuse detection).
    "device_authorizations": ("device_code_hash", {"da-expired-long-ago", "da-approved-expired-long-ago"},
                              {"da-live", "da-approved-live", "da-expired-recently", "da-approved-expired-days-ago"}),
}
MODELS = {"login_transactions": LoginTransaction, "user_sessions": UserSession,
          "authorization_codes": AuthorizationCode, "tokens": Token, "factor_challenges": FactorChallenge,
          "failure_counters": FailureCounter, "password_resets": PasswordReset, "client_assertions": ClientAssertion,
          "pushed_requests": PushedRequest, "dpop_proofs": DPoPProof, "device_authorizations": DeviceAuthorization}


def seed(url: str) -> None:
    now, epoch = utcnow(), int(time.time())
    engine = create_engine(url)
    with Session(engine) as s:
        org = Organization(name="Acme")
        s.add(org)
        s.flush()
        user = User(org_id=org.id, public_id="sub-1", email="alice@acme.example")
        s.add(user)
        s.flush()

        def transaction(id_, expires_at):
            return LoginTransaction(id=id_, browser_binding="b", state="password", authz_request={},
                                    expires_at=expires_at)

        s.add_all([transaction("lt-expired", now - MIN), transaction("lt-live", now + 10 * MIN)])

        def session(id_, expires_at, revoked_at=None):
            return UserSession(id=id_, sid="sid-" + id_, user_id=user.id, auth_time=epoch, amr=["pwd"], acr="0",
                               expires_at=expires_at, revoked_at=revoked_at)

        s.add_all([session("us-expired", now - MIN), session("us-revoked", now + HOUR, revoked_at=now - MIN),
                   session("us-live", now + HOUR)])
        s.flush()
        # Whom to tell when a session ends (back-channel logout): goes with its session (ON DELETE
        # CASCADE, which SQLite enforces only with PRAGMA foreign_keys, set on every connection).
        s.add_all([SessionClient(sid="sid-" + id_, client_id="c", user_id=user.id)
                   for id_ in ("us-expired", "us-revoked", "us-live")])

        def code(hash_, expires_at, redeemed_at=None):
            return AuthorizationCode(code_hash=hash_, client_id="c", user_id=user.id, redirect_uri="https://rp/cb",
                                     scope="openid", auth_time=epoch, amr=["pwd"], acr="0",
                                     expires_at=expires_at, redeemed_at=redeemed_at)

        long_ago = now - timedelta(seconds=REFRESH_TTL) - DAY
        codes = [code("ac-unredeemed-expired", now - MIN), code("ac-live", now + MIN),
                 code("ac-redeemed-recently", now - MIN, redeemed_at=now - 2 * MIN),
                 code("ac-old-no-tokens", long_ago, redeemed_at=long_ago - MIN),
                 code("ac-old-live-family", long_ago, redeemed_at=long_ago - MIN)]
        s.add_all(codes)
        s.flush()

        def token(hash_, access_expires_at, refresh_expires_at=None, revoked_at=None, code_id=None):
            return Token(access_token_hash=hash_, refresh_token_hash=("r-" + hash_) if refresh_expires_at else None,
                         client_id="c", user_id=user.id, family_id=hash_[:32], code_id=code_id, issued_at=epoch - 60,
                         access_expires_at=access_expires_at, refresh_expires_at=refresh_expires_at,
                         revoked_at=revoked_at)

        old_code = codes[-1]
        s.add_all([token("tk-all-expired", epoch - 60, epoch - 1), token("tk-access-expired-no-refresh", epoch - 1),
                   token("tk-revoked-long-ago", epoch + 3600, epoch + 86400, revoked_at=epoch - 2 * 86400),
                   token("tk-refresh-live", epoch - 60, epoch + 86400), token("tk-access-live", epoch + 3600),
                   token("tk-revoked-recently", epoch + 3600, epoch + 86400, revoked_at=epoch - 60),
                   # Refresh rotation kept this family alive beyond the code's refresh lifetime.
                   token("tk-family-of-old-code", epoch - 60, epoch + 86400, code_id=old_code.id)])

        def challenge(id_, expires_at, answered_at=None, status="pending", factor="push", payload=None):
            return FactorChallenge(id=id_, user_id=user.id, factor=factor, status=status, expires_at=expires_at,
                                   answered_at=answered_at, payload_json=payload or {}, lookup_key="k-" + id_)

        s.add_all([challenge("fc-expired-long-ago", now - 2 * DAY),
                   challenge("fc-answered-long-ago-expired", now - HOUR, answered_at=now - 2 * DAY,
                             status="approved"),
                   challenge("fc-pending-live", now + MIN), challenge("fc-expired-recently", now - HOUR),
                   challenge("fc-answered-long-ago-unexpired", now + DAY, answered_at=now - 2 * DAY,
                             status="approved", factor="qr_recovery"),
                   challenge("fc-jti-just-expired", now - timedelta(seconds=30), payload={"type": "jti"})])

        def counter(key, updated_at, locked_until=None):
            return FailureCounter(key=key, failures=3, updated_at=updated_at, locked_until=locked_until)

        s.add_all([counter("fx-idle", now - 2 * DAY), counter("fx-idle-lock-lapsed", now - 2 * DAY, now - DAY),
                   counter("fx-recent", now - HOUR), counter("fx-idle-but-locked", now - 2 * DAY, now + HOUR)])

        def reset_link(hash_, created_at, expires_at, used_at=None):
            return PasswordReset(token_hash=hash_, user_id=user.id, created_at=created_at, expires_at=expires_at,
                                 used_at=used_at)

        s.add_all([reset_link("pr-expired-old", now - 2 * HOUR, now - HOUR),
                   reset_link("pr-used-old", now - 2 * HOUR, now - 2 * HOUR, used_at=now - 2 * HOUR),
                   reset_link("pr-live", now - MIN, now + HOUR),
                   reset_link("pr-used-this-hour", now - 10 * MIN, now - 5 * MIN, used_at=now - 5 * MIN)])
        s.add_all([ClientAssertion(client_id="c", jti_hash=hash_, expires_at=at) for hash_, at in (
            ("ca-expired", now - 2 * MIN), ("ca-live", now + MIN), ("ca-within-leeway", now - timedelta(seconds=30)))])
        s.add_all([PushedRequest(request_uri_hash=hash_, client_id="c", parameters={}, expires_at=at)
                   for hash_, at in (("pa-expired", now - timedelta(seconds=1)), ("pa-live", now + MIN))])
        s.add_all([DPoPProof(jkt="k", jti_hash=hash_, expires_at=at)
                   for hash_, at in (("dp-expired", now - timedelta(seconds=1)), ("dp-live", now + MIN))])
        s.add_all([DeviceAuthorization(device_code_hash=hash_, user_code=f"CODE{n}", client_id="c",
                                       scope="openid", status=status, interval=5, expires_at=at)
                   for n, (hash_, status, at) in enumerate((("da-expired-long-ago", "pending", now - 2 * DAY),
                                             ("da-expired-recently", "pending", now - timedelta(seconds=1)),
                                             ("da-live", "pending", now + MIN),
                                             ("da-approved-live", "approved", now + MIN),
                                             ("da-approved-expired-days-ago", "approved", now - 2 * DAY),
                                             ("da-approved-expired-long-ago", "approved", long_ago)))])
        s.commit()
    engine.dispose()


def remaining(url: str) -> dict[str, set[str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {table: set(conn.scalars(select(getattr(MODELS[table], column))))
                    for table, (column, _gone, _kept) in EXPECTED.items()}
    finally:
        engine.dispose()


def purge(idp, url: str, *args: str) -> dict:
    result = idp("purge", "--json", *args, database_url=url)
    assert result.returncode == 0, result
    assert result.stderr == "", result
    return json.loads(result.stdout)


@pytest.fixture
def seeded(migrated_database_url):
    seed(migrated_database_url)
    return migrated_database_url


def test_only_expired_rows_go(idp, seeded):
    everything = {table: gone | kept for table, (_col, gone, kept) in EXPECTED.items()}
    assert remaining(seeded) == everything

    document = purge(idp, seeded)
    assert document == {"dry_run": False,
                        "counts": {**{table: len(gone) for table, (_col, gone, _kept) in EXPECTED.items()},
                                   "signing_key_secrets": 0}}
    assert remaining(seeded) == {table: kept for table, (_col, _gone, kept) in EXPECTED.items()}
    engine = create_engine(seeded)
    with engine.connect() as conn:
        assert set(conn.scalars(select(SessionClient.sid))) == {"sid-us-live"}
    engine.dispose()

    # Nothing more to do: a second run deletes nothing.
    again = purge(idp, seeded)
    assert set(again["counts"].values()) == {0}


def test_dry_run_counts_and_deletes_nothing(idp, seeded):
    before = remaining(seeded)
    document = purge(idp, seeded, "--dry-run")
    assert document == {"dry_run": True,
                        "counts": {**{table: len(gone) for table, (_col, gone, _kept) in EXPECTED.items()},
                                   "signing_key_secrets": 0}}
    assert remaining(seeded) == before


def test_text_output_is_one_line(idp, seeded):
    result = idp("purge", database_url=seeded)
    assert result.returncode == 0, result
    assert result.stdout.startswith("deleted ") and len(result.stdout.strip().splitlines()) == 1, result
    assert "1 login transactions, 2 user sessions" in result.stdout, result


def test_rows_go_in_batches_each_committed(seeded, monkeypatch):
    """One row per DELETE here (a backlog of millions goes in batches of maintenance.BATCH): the
    same rows go; in the tables with a composite key, the batch walks the expiry (one batch per
    expiry, then the one that finds the rest empty)."""
    from sqlalchemy import event

    from idp import maintenance
    from idp.app import create_app
    from idp.db import db

    monkeypatch.setattr(maintenance, "BATCH", 1)
    deletes: dict[str, int] = {}

    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("DELETE FROM"):
            table = statement.split()[2].strip('"')
            deletes[table] = deletes.get(table, 0) + 1

    with create_app({"server.database_url": seeded}).app_context():
        event.listen(db.engine, "before_cursor_execute", count)
        counts = maintenance.purge()
        event.remove(db.engine, "before_cursor_execute", count)
    assert counts == {**{table: len(gone) for table, (_col, gone, _kept) in EXPECTED.items()}, "signing_key_secrets": 0}
    assert remaining(seeded) == {table: kept for table, (_col, _gone, kept) in EXPECTED.items()}
    assert deletes["tokens"] == 3 and deletes["user_sessions"] == 2  # one per row that went
    assert deletes["client_assertions"] == 2 and deletes["dpop_proofs"] == 2


def _deletes_by_table(engine) -> tuple[dict[str, list[int]], object]:
    """A listener recording, per table, how many rows each DELETE statement removed."""
    deleted: dict[str, list[int]] = {}

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("DELETE FROM"):
            deleted.setdefault(statement.split()[2].strip('"'), []).append(cursor.rowcount)
    return deleted, record


@pytest.mark.parametrize("table", ["dpop_proofs", "client_assertions"])
def test_a_backlog_of_replay_guards_goes_in_bounded_batches(migrated_database_url, monkeypatch, table):
    """A week without a purge leaves millions of DPoP proofs (one per DPoP request) or assertion
    jtis: they go in several DELETEs of at most BATCH rows each (SQLite's write lock, which every
    login waits for, is held for one batch at a time), every expired row goes, every live one stays."""
    from sqlalchemy import event

    from idp import maintenance
    from idp.app import create_app
    from idp.db import db

    now = utcnow()
    model, column = {"dpop_proofs": (DPoPProof, "jkt"), "client_assertions": (ClientAssertion, "client_id")}[table]
    # 25 expired rows (random keys, each its own expiry but the 10th and 11th, which share one),
    # and 3 that are live (or within the assertions' leeway).
    expired = {f"{n:02d}-expired": now - 2 * HOUR + timedelta(seconds=9 if n == 10 else n) for n in range(25)}
    live = {"live-1": now + MIN, "live-2": now + HOUR, "within-a-second": now + timedelta(seconds=1)}
    engine = create_engine(migrated_database_url)
    with Session(engine) as s:
        s.add_all([model(**{column: "k", "jti_hash": hashlib.sha256(name.encode()).hexdigest(), "expires_at": at})
                   for name, at in {**expired, **live}.items()])
        s.commit()

    monkeypatch.setattr(maintenance, "BATCH", 10)
    with create_app({"server.database_url": migrated_database_url}).app_context():
        deleted, record = _deletes_by_table(db.engine)
        event.listen(db.engine, "after_cursor_execute", record)
        counts = maintenance.purge()
        event.remove(db.engine, "after_cursor_execute", record)
    assert counts[table] == 25
    # Up to the 10th expiry (the 11th row shares it, so it comes along), the next 10, the rest.
    assert deleted[table] == [11, 10, 4], deleted
    with engine.connect() as conn:
        left = set(conn.scalars(select(model.jti_hash)))
    engine.dispose()
    assert left == {hashlib.sha256(name.encode()).hexdigest() for name in live}


def test_a_backlog_of_audit_events_goes_in_bounded_batches(migrated_database_url, monkeypatch):
    """Audit events past the retention, many batches of them: each DELETE takes at most BATCH,
    all the old ones go, the ones within the retention stay."""
    from sqlalchemy import event

    from idp import maintenance
    from idp.app import create_app
    from idp.db import db
    from idp.models import AuditEvent

    engine = create_engine(migrated_database_url)
    with Session(engine) as s:
        s.add_all([AuditEvent(event=f"test.old{n}", org_id=None, actor="cli", at=utcnow() - (40 + n) * DAY,
                              details={}) for n in range(23)]
                  + [AuditEvent(event=f"test.recent{n}", org_id=None, actor="cli", at=utcnow() - (29 - n) * DAY,
                                details={}) for n in range(3)])
        s.commit()
    monkeypatch.setattr(maintenance, "BATCH", 5)
    with create_app({"server.database_url": migrated_database_url, "ops.audit_retention_days": 30}).app_context():
        deleted, record = _deletes_by_table(db.engine)
        event.listen(db.engine, "after_cursor_execute", record)
        counts = maintenance.purge()
        event.remove(db.engine, "after_cursor_execute", record)
    assert counts["audit_events"] == 23
    assert deleted["audit_events"] == [5, 5, 5, 5, 3]
    names = {name for name, _ in _audit_names(migrated_database_url)}
    engine.dispose()
    assert {"test.recent0", "test.recent1", "test.recent2", "audit.purged"} <= names
    assert not any(name.startswith("test.old") for name in names)


def _audit_events(url: str, seeded_events: dict[str, timedelta]) -> None:
    from idp.models import AuditEvent

    engine = create_engine(url)
    with Session(engine) as s:
        s.add_all([AuditEvent(event=name, org_id=None, actor="cli", at=utcnow() - age, details={})
                   for name, age in seeded_events.items()])
        s.commit()
    engine.dispose()


def _audit_names(url: str) -> list[tuple[str, dict]]:
    from idp.models import AuditEvent

    engine = create_engine(url)
    with Session(engine) as s:
        found = [(row.event, row.details) for row in s.scalars(select(AuditEvent).order_by(AuditEvent.id))]
    engine.dispose()
    return found


def test_audit_events_are_kept_unless_a_retention_is_set(idp, seeded):
    """The audit log is the record of what people did: kept for ever by default; with
    ops.audit_retention_days, events older than that go, and the purge records that it did."""
    _audit_events(seeded, {"test.ancient": 400 * DAY, "test.last_year": 200 * DAY, "test.last_month": 29 * DAY})
    assert "audit_events" not in purge(idp, seeded)["counts"]
    assert {"test.ancient", "test.last_year", "test.last_month"} <= {name for name, _ in _audit_names(seeded)}

    retention = {"IDP_OPS__AUDIT_RETENTION_DAYS": "180"}
    result = idp("purge", "--json", "--dry-run", database_url=seeded, env=retention)
    assert json.loads(result.stdout)["counts"]["audit_events"] == 2
    assert {"test.ancient", "test.last_year"} <= {name for name, _ in _audit_names(seeded)}

    result = idp("purge", "--json", database_url=seeded, env=retention)
    assert result.returncode == 0, result
    assert json.loads(result.stdout)["counts"]["audit_events"] == 2
    left = dict(_audit_names(seeded))
    assert "test.ancient" not in left and "test.last_year" not in left and "test.last_month" in left
    assert left["audit.purged"]["deleted"] == 2 and left["audit.purged"]["before"].endswith("Z")

    again = idp("purge", "--json", database_url=seeded, env=retention)
    assert json.loads(again.stdout)["counts"]["audit_events"] == 0  # (and no second audit.purged)
    assert [name for name, _ in _audit_names(seeded) if name == "audit.purged"] == ["audit.purged"]


@pytest.mark.parametrize("days", ["1", "29", "-1"])
def test_an_audit_retention_shorter_than_the_alerts_window_is_refused(idp, migrated_database_url, days):
    result = idp("purge", database_url=migrated_database_url, env={"IDP_OPS__AUDIT_RETENTION_DAYS": days})
    assert result.returncode != 0 and "ops.audit_retention_days" in result.stderr, result
    assert len(result.stderr.strip().splitlines()) == 1, result


def _signing_keys(url: str) -> dict[str, dict]:
    from idp.models import SigningKey

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {row.kid: row._asdict() for row in conn.execute(select(*SigningKey.__table__.c))}
    finally:
        engine.dispose()


def test_private_keys_out_of_the_jwks_are_wiped(idp, initialised_database_url):
    """A signing key past `remove_after` signs nothing and verifies nothing: the purge wipes its
    sealed private key (a leaked database and encryption key must not forge tokens with it), and
    keeps the row, its public JWK and its dates. A key published, signing or still within
    `remove_after` keeps its private key. The key commands still work around a wiped key."""
    url = initialised_database_url

    def ok(*args: str) -> str:
        result = idp(*args, database_url=url)
        assert result.returncode == 0, result
        return result.stdout

    withdrawn = json.loads(ok("keys", "withdraw", "--json", next(iter(_signing_keys(url)))))["kid"]
    ok("keys", "rotate")  # every other key: retired but still published, or published and waiting
    before = _signing_keys(url)
    assert before[withdrawn]["private_ciphertext"]

    assert purge(idp, url, "--dry-run")["counts"]["signing_key_secrets"] == 1
    assert _signing_keys(url) == before
    assert purge(idp, url)["counts"]["signing_key_secrets"] == 1
    after = _signing_keys(url)
    assert after[withdrawn]["private_ciphertext"] == b""
    assert {**after[withdrawn], "private_ciphertext": None} == {**before[withdrawn], "private_ciphertext": None}
    assert {kid: row for kid, row in after.items() if kid != withdrawn} == {
        kid: row for kid, row in before.items() if kid != withdrawn}
    assert purge(idp, url)["counts"]["signing_key_secrets"] == 0

    listed = {key["kid"]: key["status"] for key in json.loads(ok("keys", "list", "--json"))}
    assert listed[withdrawn] == "removed" and len(listed) == len(before)
    refused = idp("keys", "withdraw", withdrawn, database_url=url)
    assert refused.returncode != 0 and "already out of the JWKS" in refused.stderr, refused
    ok("keys", "rotate")
    assert "resealed" in ok("keys", "rotate-secrets")
    assert _signing_keys(url)[withdrawn]["private_ciphertext"] == b""
