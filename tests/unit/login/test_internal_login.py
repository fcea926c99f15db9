"""The provider's own login (the security page's): it comes back to a local path only."""
from __future__ import annotations

import pytest


@pytest.fixture
def app(migrated_database_url):
    from idp.app import create_app

    return create_app({"server.database_url": migrated_database_url})


@pytest.mark.parametrize("target, kept", [
    ("/account/security", True),
    ("//evil.example/", False),
    ("/\\evil.example", False),
    ("/\t/evil.example", False),   # werkzeug leaves a tab unencoded in Location; browsers drop it: "//evil.example"
    ("/\n/evil.example", False),
    ("https://evil.example/", False),
])
def test_the_way_back_is_a_local_path(app, target, kept):
    from idp.db import db
    from idp.login import pipeline, session, transaction

    with app.test_request_context("/account/security"):
        response = pipeline.start_internal(target)
        handle = response.headers["Location"].rsplit("/", 1)[1]
        loaded = transaction.load(handle, session.browser_binding())
        assert loaded.row.authz_request["next"] == (target if kept else "/")
        db.session.remove()
