"""Every audit event is also a JSON log line (logger `idp.audit`) once its transaction commits,
and never when it rolls back (idp.audit). `ops.audit_log = false` turns the lines off."""
from __future__ import annotations

import json

import pytest

from fixtures.logs import json_lines
from fixtures.oidc import FormBrowser, RelyingParty, seed, start_server

UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def lines(stream, logger: str = "idp.audit") -> list[dict]:
    return [line for line in json_lines(stream) if line["logger"] == logger]


def served(migrated_database_url, **overrides):
    return start_server(migrated_database_url, {"server.json_logs": True, "server.log_level": "INFO", **overrides})


def test_a_wrong_password_is_a_line_of_the_request_that_made_it(migrated_database_url, log_stream):
    server = served(migrated_database_url)
    try:
        seeded = seed(server)
        browser = FormBrowser(server.url)
        browser.http.headers["User-Agent"] = UA
        browser.get(RelyingParty(server.url, seeded.first_party).authorization_url())
        browser.login(seeded.user_email, "not the password")
    finally:
        server.stop()
    [line] = [line for line in lines(log_stream) if line["message"] == "login.password_failed"]
    assert line["level"] == "INFO" and line["event"] == "login.password_failed"
    assert line["actor"] == "anonymous" and line["actor_id"] is None and line["subject_id"] and line["org_id"]
    assert line["ip"] == "127.0.0.1" and line["user_agent"] == UA and line["details"]["reason"] == "wrong_password"
    [access] = [a for a in lines(log_stream, "idp.access") if a["method"] == "POST" and a["status"] == 401]
    assert line["request_id"] == access["request_id"]


@pytest.fixture
def app(migrated_database_url):
    from idp.app import create_app

    return create_app({"server.database_url": migrated_database_url, "server.json_logs": True})


def test_only_committed_events_are_logged(app, log_stream):
    from idp import audit
    from idp.db import db

    with app.test_request_context(headers={"User-Agent": UA}, environ_base={"REMOTE_ADDR": "198.51.100.7"}):
        audit.record("test.rolled_back", org_id=None, actor="cli")
        db.session.rollback()
        row = audit.record("test.committed", org_id=None, actor="cli", details={"n": 1})
        row.details = {"n": 2}  # amended before the commit: the line says what was written
        audit.record_now("test.core", org_id=None, actor="cli", details={"fast": True})
        assert lines(log_stream) == []                                    # nothing before the commit
        db.session.commit()
        audit.record("test.closed_without_commit", org_id=None, actor="cli")
        db.session.close()
        db.session.commit()                                               # a new, empty transaction
    logged = {line["message"]: line for line in lines(log_stream)}
    assert list(logged) == ["test.committed", "test.core"]
    assert logged["test.committed"]["details"] == {"n": 2} and logged["test.core"]["details"] == {"fast": True}
    assert logged["test.committed"]["ip"] == "198.51.100.7" and logged["test.committed"]["user_agent"] == UA


def test_a_savepoint_does_not_log_what_the_outer_transaction_rolls_back(app, log_stream):
    from idp import audit
    from idp.db import db

    with app.app_context():
        audit.record("test.outer", org_id=None, actor="cli")
        with db.session.begin_nested():
            audit.record("test.inner", org_id=None, actor="cli")
        assert lines(log_stream) == []
        db.session.rollback()
        db.session.commit()
    assert lines(log_stream) == []


def test_an_event_of_a_savepoint_rolled_back_is_not_logged_when_the_rest_commits(app, log_stream):
    """A factor's clean-up hook runs in a savepoint (idp.factors.registry._cleanup_hook): when it
    fails, its writes and its events are undone and the action stands. The events it recorded
    before failing were never stored, so no line (nor security notice) may say they happened."""
    from sqlalchemy import select

    from idp import audit
    from idp.db import db
    from idp.models import AuditEvent

    with app.app_context():
        audit.record("test.outer", org_id=None, actor="cli")
        with pytest.raises(RuntimeError):
            with db.session.begin_nested():
                audit.record("test.undone", org_id=None, actor="cli")
                db.session.flush()
                with db.session.begin_nested():  # nested deeper, released, then undone with its parent
                    audit.record("test.undone_inner", org_id=None, actor="cli")
                raise RuntimeError("the hook failed")
        with db.session.begin_nested():
            audit.record("test.kept", org_id=None, actor="cli")
        db.session.commit()
        stored = list(db.session.scalars(select(AuditEvent.event).where(AuditEvent.event.startswith("test."))))
    assert sorted(stored) == ["test.kept", "test.outer"]
    assert [line["message"] for line in lines(log_stream)] == ["test.outer", "test.kept"]


def test_a_key_rotation_commits_with_its_event_whole(app, log_stream):
    """`idp keys rotate`'s event names the new keys in the rotation's own transaction: it was
    committed empty with the keys, and its details written by a second commit (the line said
    `{}`; a failure between the two left the rotation without the keys it published)."""
    from idp.oidc import keys

    with app.app_context():
        rotated = keys.rotate(actor="cli")
        kids = sorted(key.kid for key in rotated)
    [line] = [line for line in lines(log_stream) if line["message"] == "signing_key.rotated"]
    assert line["actor"] == "cli" and sorted(key["kid"] for key in line["details"]["new_keys"]) == kids


def test_the_lines_can_be_turned_off(migrated_database_url, log_stream):
    from sqlalchemy import func, select

    from idp import audit
    from idp.app import create_app
    from idp.db import db
    from idp.models import AuditEvent

    app = create_app({"server.database_url": migrated_database_url, "ops.audit_log": False})
    try:
        with app.app_context():
            audit.record("test.quiet", org_id=None, actor="cli")
            db.session.commit()
            assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == 1   # still written
        assert lines(log_stream) == []
    finally:
        create_app({"server.database_url": migrated_database_url})  # the logger's level back on for the others


def test_the_lines_are_written_whatever_the_log_level(migrated_database_url, log_stream):
    """server.log_level = WARNING (to quiet the access lines) also dropped every audit line, INFO,
    though ops.audit_log said they were on: the SIEM's feed cut without a word."""
    from idp import audit
    from idp.app import create_app
    from idp.db import db

    app = create_app({"server.database_url": migrated_database_url, "server.log_level": "WARNING"})
    try:
        with app.app_context():
            audit.record("test.heard", org_id=None, actor="cli")
            db.session.commit()
        assert [line["event"] for line in lines(log_stream)] == ["test.heard"]
    finally:
        create_app({"server.database_url": migrated_database_url})  # the root level back for the others


def test_the_idp_command_writes_its_events_but_no_lines(sqlite_only_url, idp, db):
    """An operator's terminal gets the command's own output only (the event is in the table)."""
    from fixtures.cli import ok

    result = ok(idp("org", "add", "Acme", database_url=sqlite_only_url))
    assert result.stderr == "" and [e["event"] for e in db.events("org.created")] == ["org.created"]


def test_idp_serve_writes_the_lines(url):
    """`idp serve` is a server: its audit lines go to stderr with its access lines."""
    from fixtures.cli import start_serving
    from fixtures.oidc import FAST_ARGON2, LiveServer
    from idp.app import create_app

    app = create_app({"server.database_url": url, **FAST_ARGON2})
    seeded = seed(LiveServer("", app, url))
    server, base = start_serving(url)
    try:
        browser = FormBrowser(base)
        browser.get(RelyingParty(base, seeded.first_party).authorization_url())
        browser.login(seeded.user_email, "not the password")
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    logged = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert [line["event"] for line in logged if line["logger"] == "idp.audit"] == ["login.password_failed"]
