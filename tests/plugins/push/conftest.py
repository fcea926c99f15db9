"""Push plugin fixtures: an app with the push factor registered at run time (see push_testkit.py)."""
import pytest
from push_testkit import enable_push, push_factor


@pytest.fixture
def push(factor_app):
    return push_factor()


@pytest.fixture
def client(factor_app, push):
    return factor_app.test_client()


@pytest.fixture
def push_server(live_server):
    """The live server (tests/fixtures/oidc.py) with push registered before its first request."""
    return enable_push(live_server)
