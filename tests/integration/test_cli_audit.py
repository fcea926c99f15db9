"""`idp audit list` (idp.audit_export): the audit log for operators, run as a real subprocess
against a real database whose events are inserted directly."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import text

from fixtures.cli import ok, refused

from idp.db import utcnow
from idp.models import AuditEvent, Organization, User


def insert(db, model, **values) -> int:
    with db.engine.begin() as conn:
        return conn.execute(model.__table__.insert().values(**values)).inserted_primary_key[0]


def world(db) -> dict:
    """Two organizations, a user in each, and events of each, of none, old and new."""
    now = utcnow()
    acme = insert(db, Organization, name="Acme", created_at=now)
    other = insert(db, Organization, name="Other", created_at=now)
    alice = insert(db, User, org_id=acme, email="alice@acme.example", name="Alice", role="user", public_id="a" * 22,
                   created_at=now)
    bob = insert(db, User, org_id=other, email="bob@other.example", name="Bob", role="user", public_id="b" * 22,
                 created_at=now)
    for at, org_id, event, subject_id, details in (
            (now - timedelta(days=3), acme, "login.succeeded", alice, {}),
            (now - timedelta(hours=2), acme, "login.password_failed", alice, {"reason": "wrong_password"}),
            (now - timedelta(hours=1), other, "factor.removed", bob, {"factor": "totp"}),
            (now - timedelta(minutes=30), None, "login.password_failed", None, {"reason": "unknown_account"}),
            (now - timedelta(minutes=10), None, "client.created", None, {"client_id": "wiki"})):
        insert(db, AuditEvent, at=at, org_id=org_id, event=event, actor="anonymous", subject_id=subject_id,
               ip="192.0.2.7", user_agent="Agent/1.0", details=details)
    return {"acme": acme, "alice": alice, "bob": bob}


def listed(idp, url, *args) -> list[dict]:
    return json.loads(ok(idp("audit", "list", "--json", *args, database_url=url)).stdout)


def test_the_last_day_of_every_organization_and_of_none_oldest_first(url, idp, db):
    ids = world(db)
    events = listed(idp, url)
    assert [(e["event"], e["org"]) for e in events] == [
        ("login.password_failed", "Acme"), ("factor.removed", "Other"), ("login.password_failed", None),
        ("client.created", None)]
    first = events[0]
    assert (first["subject"], first["subject_id"], first["org_id"]) == ("alice@acme.example", ids["alice"], ids["acme"])
    assert (first["actor"], first["ip"], first["user_agent"]) == ("anonymous", "192.0.2.7", "Agent/1.0")
    assert first["details"] == {"reason": "wrong_password"} and first["at"].endswith("Z")

    text = ok(idp("audit", "list", "--since", "7d", database_url=url)).stdout.splitlines()
    assert len(text) == 5 and "login.succeeded  org=Acme  actor=anonymous  subject=alice@acme.example" in text[0]
    assert text[-1].endswith('ip=192.0.2.7  {"client_id": "wiki"}')


def test_filters_by_organization_user_event_and_window(url, idp, db):
    world(db)
    assert [e["event"] for e in listed(idp, url, "--org", "Acme", "--since", "7d")] == [
        "login.succeeded", "login.password_failed"]
    assert [e["subject"] for e in listed(idp, url, "--user", "BOB@other.example")] == ["bob@other.example"]
    assert [e["org"] for e in listed(idp, url, "--event", "login.password")] == ["Acme", None]
    assert listed(idp, url, "--event", "login_") == []                   # a prefix, "_" no wildcard
    assert [e["event"] for e in listed(idp, url, "--since", "7d", "--until", "90m")] == [
        "login.succeeded", "login.password_failed"]
    start = (utcnow() - timedelta(minutes=45)).replace(microsecond=0).isoformat() + "Z"
    assert [e["event"] for e in listed(idp, url, "--since", start)] == ["login.password_failed", "client.created"]


def test_an_event_prefix_finds_the_same_events_in_any_case_on_either_database(url, idp, db):
    """SQLite's LIKE ignores case and PostgreSQL's does not: "LOGIN." found the events on one and
    none on the other. Event names are lower case: the prefix is too."""
    world(db)
    assert [e["org"] for e in listed(idp, url, "--event", "LOGIN.Password")] == ["Acme", None]
    assert listed(idp, url, "--event", "LOGIN_") == []


def test_a_clients_event_is_about_no_user_whose_id_it_shares(url, idp, db):
    """`client.*` events name the client by its row id, in no organization (idp.clients): one
    whose id is also a user's is not that user's, neither in `--user` nor in its subject."""
    ids = world(db)
    insert(db, AuditEvent, at=utcnow(), org_id=None, event="client.updated", actor="cli", subject_id=ids["alice"],
           details={"client_id": "wiki", "changes": {}})
    assert [e["event"] for e in listed(idp, url, "--user", "alice@acme.example")] == ["login.password_failed"]
    assert [e["event"] for e in listed(idp, url, "--user", "alice@acme.example", "--org", "Other")] == []
    updated = [e for e in listed(idp, url) if e["event"] == "client.updated"]
    assert [(e["subject_id"], e["subject"]) for e in updated] == [(ids["alice"], None)]
    text = ok(idp("audit", "list", "--event", "client.updated", database_url=url)).stdout
    assert "subject=-" in text and "alice" not in text


def test_a_window_naming_more_users_than_a_statement_takes_parameters(url, db):
    """The subjects' addresses were read with an IN list of their ids: past 65,535 users (a day of
    a large organization's sign-ins, within --limit's range) psycopg refused the statement and the
    command printed a database error instead of the events."""
    from idp import audit_export
    from idp.app import create_app

    if not url.startswith("postgresql"):
        pytest.skip("the limit is psycopg's (each id one parameter)")
    ids = world(db)
    with db.engine.begin() as conn:  # one sign-in each of 65,536 users (ids no user has: no address)
        conn.execute(text("INSERT INTO audit_events (at, org_id, event, actor, subject_id, details) "
                          "SELECT :at, :org, 'login.succeeded', 'x', 1000000 + g, '{}' "
                          "FROM generate_series(1, 65536) AS g"), {"at": utcnow(), "org": ids["acme"]})
    with create_app({"server.database_url": url}).app_context():
        documents, more = audit_export.events(audit_export.Window(since=utcnow() - timedelta(hours=3)), 70_000)
    assert len(documents) == 65536 + 4 and not more
    assert documents[0]["subject"] == "alice@acme.example" and documents[-1]["subject"] is None


def test_text_lines_escape_what_a_terminal_would_obey(url, idp, db):
    """Details hold text that people outside the operator's trust typed or sent (an exemption's
    reason, once checked for C0 controls only; a client's or a device's words): a C1 control
    (U+009B is CSI, U+009D an OSC that sets the window's title) or a U+202E that reorders the
    line reached the terminal as it was. Text lines escape what is not printable, as JSON does
    (the details stay JSON); --json escapes it anyway."""
    ids = world(db)
    reason = "holiday\u009b2J\u009d0;all clear\u009c \u202egnp.exe"
    insert(db, AuditEvent, at=utcnow(), org_id=ids["acme"], event="policy.user_requirement_changed", actor="admin",
           subject_id=ids["alice"], details={"after": {"mode": "exempt", "reason": reason}})
    [line] = ok(idp("audit", "list", "--event", "policy.", database_url=url)).stdout.splitlines()
    assert line.isprintable() and "\\u009b2J\\u009d0;all clear\\u009c \\u202egnp.exe" in line
    assert json.loads(line[line.index("{"):])["after"]["reason"] == reason
    [event] = listed(idp, url, "--event", "policy.")
    assert event["details"]["after"]["reason"] == reason


def test_a_limit_keeps_the_oldest_and_says_more_were_left(url, idp, db):
    world(db)
    result = ok(idp("audit", "list", "--json", "--limit", "2", database_url=url))
    assert [e["event"] for e in json.loads(result.stdout)] == ["login.password_failed", "factor.removed"]
    assert "more than 2 events" in result.stderr
    assert ok(idp("audit", "list", "--since", "1m", database_url=url)).stdout.strip() == "no events"


def test_bad_input_is_one_line_and_no_listing(sqlite_only_url, idp):
    refused(idp("audit", "list", "--org", "Nobody", database_url=sqlite_only_url), "unknown organization")
    refused(idp("audit", "list", "--user", "nobody@example.com", database_url=sqlite_only_url), "no user")
    refused(idp("audit", "list", "--since", "last tuesday", database_url=sqlite_only_url), "--since")
    for far in ("999999d", "99999999999d", "0001-01-01T00:00:00+01:00"):  # an OverflowError's traceback before
        refused(idp("audit", "list", "--since", far, database_url=sqlite_only_url), "too far from now")
    refused(idp("audit", "list", "--until", "9999-12-31T23:59:59-01:00", database_url=sqlite_only_url), "--until")
    refused(idp("audit", "list", "--limit", "0", database_url=sqlite_only_url), "--limit")
    # A window the wrong way round holds nothing: "no events" would read as "nothing happened then".
    for window in (("--since", "1d", "--until", "2d"), ("--since", "2026-12-02T00:00:00Z", "--until", "2026-12-01"),
                   ("--since", "2026-12-01T01:00:00+01:00", "--until", "2026-12-01T00:00:00Z")):
        refused(idp("audit", "list", *window, database_url=sqlite_only_url), "is not after --since")
