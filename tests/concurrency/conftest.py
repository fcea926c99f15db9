"""The races' shared server: the provider on a fresh PostgreSQL schema with the default settings.
A module that needs other settings defines its own `pg_server` (test_factor_races.py)."""
from __future__ import annotations

import pytest
from test_factor_races import _pg_server


@pytest.fixture
def pg_server(postgres_url):
    server = _pg_server(postgres_url, {})
    yield server
    server.stop()
