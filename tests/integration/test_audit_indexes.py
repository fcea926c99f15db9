"""The admin's audit page filtered by a user or by an action, and the security page's alerts, read
an index, not the whole log (idp.models.audit: ix_audit_org_subject and ix_audit_org_actor,
ix_audit_org_event), on PostgreSQL: EXPLAIN of the very statements idp.admin.queries runs, over a
log where the filtered events are rare (every login writes one event: a real log is mostly
`login.succeeded` of other users)."""
from __future__ import annotations

import pytest
from sqlalchemy import event, text

from fixtures.oidc import start_server


@pytest.fixture
def app_on_postgres(migrated_database_url):
    if not migrated_database_url.startswith("postgresql"):
        pytest.skip("the plans are PostgreSQL's")
    server = start_server(migrated_database_url)
    yield server.app
    server.stop()


def _plan_of(app, run) -> str:
    """The plan of the audit events statement `run` executes (its parameters bound as it ran)."""
    from idp.db import db

    with app.app_context():
        statements = []

        def keep(conn, cursor, statement, parameters, context, executemany):
            if "FROM audit_events" in statement:
                statements.append((statement, parameters))

        event.listen(db.engine, "before_cursor_execute", keep)
        try:
            run()
        finally:
            event.remove(db.engine, "before_cursor_execute", keep)
        statement, parameters = statements[0]
        connection = db.session.connection().connection.driver_connection
        rows = connection.execute("EXPLAIN " + statement, parameters).fetchall()
        db.session.rollback()
        return "\n".join(row[0] for row in rows)


def test_the_audit_filters_use_their_indexes(app_on_postgres):
    from datetime import timedelta
    from types import SimpleNamespace

    from idp import password_reset
    from idp.account import activity
    from idp.admin import queries
    from idp.db import db, utcnow

    with app_on_postgres.app_context():
        # 50,000 events of two organizations: logins of 5,000 users; an admin (actor 7) who reset
        # factors 20 times in organization 1.
        db.session.execute(text("""
            INSERT INTO audit_events (at, org_id, event, actor_id, actor, subject_id, details)
            SELECT now(), 1 + g % 2, CASE WHEN g % 2500 = 0 THEN 'factor.reset' ELSE 'login.succeeded' END,
                   CASE WHEN g % 2500 = 0 THEN 7 ELSE 100 + g % 5000 END, 'x', 100 + g % 5000, '{}'
            FROM generate_series(1, 50000) g"""))
        db.session.commit()
        db.session.execute(text("ANALYZE audit_events"))
        db.session.commit()

    by_actor = _plan_of(app_on_postgres, lambda: queries.audit_page(1, subject_ids=[7]))
    assert "ix_audit_org_actor" in by_actor and "ix_audit_org_subject" in by_actor, by_actor
    with_action = _plan_of(app_on_postgres, lambda: queries.audit_page(1, subject_ids=[7], action="factor."))
    for plan in (by_actor, with_action):  # the person's events, never the log newest first
        assert "Seq Scan on audit_events" not in plan and "Backward using audit_events_pkey" not in plan, plan
    by_action = _plan_of(app_on_postgres, lambda: queries.audit_page(1, action="factor.reset"))
    assert "ix_audit_org_event" in by_action, by_action
    by_prefix = _plan_of(app_on_postgres, lambda: queries.audit_page(1, action="factor."))
    assert "ix_audit_org_event" in by_prefix, by_prefix
    # The dashboard's security alerts (push fraud reports and denials, cloned keys): rare events
    # of one organization, read from the same index.
    alerts = _plan_of(app_on_postgres, lambda: queries.security_alerts(1, now=utcnow()))
    assert "ix_audit_org_event" in alerts, alerts
    # A user's own activity (their security page), newest first, and the password-reset refusals
    # of their last hour (that one or the organization's last hour, whichever is smaller): in
    # their organization, never the whole log.
    user = SimpleNamespace(id=108, org_id=1)
    own = _plan_of(app_on_postgres, lambda: activity.recent(user))
    assert "ix_audit_org_subject" in own and "Seq Scan on audit_events" not in own, own
    refused = _plan_of(app_on_postgres, lambda: db.session.scalar(password_reset._REFUSED_SINCE, {
        "org_id": 1, "user_id": 108, "reason": "rate_limited", "since": utcnow() - timedelta(hours=1)}))
    assert "Seq Scan on audit_events" not in refused and "Index" in refused, refused
