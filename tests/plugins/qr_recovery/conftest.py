"""Recovery QR fixtures: push and qr_recovery registered on the factor test app."""
import pytest
from qr_testkit import enable


@pytest.fixture
def factors(factor_app):
    return enable()


@pytest.fixture
def push(factors):
    return factors[0]


@pytest.fixture
def qr(factors):
    return factors[1]


@pytest.fixture
def client(factor_app, factors):
    return factor_app.test_client()


@pytest.fixture
def mailbox(factor_app):
    """The console notifier, kept on the app so tests can read what was 'sent'."""
    from idp.notify import ConsoleNotifier

    notifier = ConsoleNotifier()
    factor_app.extensions["idp.notifier"] = notifier
    return notifier.sent
