"""`idp init` run by several processes at once (containers started together), on PostgreSQL: the
schema migrates once (idp.schema's advisory lock) and the first signing keys are made once.

These run only with IDP_TEST_DATABASE_URL (SQLite serialises writers, so a race there proves nothing).
"""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from fixtures.database import postgres_base_url
from fixtures.race import at_once

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")

RACERS = 6


def test_simultaneous_inits_make_one_signing_key_per_algorithm(postgres_url):
    from idp.app import create_app
    from idp.db import db
    from idp.models import AuditEvent, SigningKey
    from idp.oidc.keys import SUPPORTED_ALGS, ensure_signing_key
    from idp.schema import upgrade

    app = create_app({"server.database_url": postgres_url})
    with app.app_context():
        upgrade(db.engine)

    def init(_: int) -> int:
        with app.app_context():
            try:
                return len(ensure_signing_key(actor="cli"))
            finally:
                db.session.remove()

    made = at_once(RACERS, init)
    with app.app_context():
        by_alg = dict(db.session.execute(select(SigningKey.alg, func.count()).group_by(SigningKey.alg)).all())
        events = db.session.scalar(select(func.count()).select_from(AuditEvent)
                                   .where(AuditEvent.event == "signing_key.created"))
        db.session.remove()
    db.engine.dispose()
    assert by_alg == {alg: 1 for alg in SUPPORTED_ALGS}
    assert sorted(made) == [0] * (RACERS - 1) + [len(SUPPORTED_ALGS)] and events == 1
