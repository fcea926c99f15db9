"""Fixtures for the companion app: a fast scrypt, fixed secrets and clock, fresh app homes."""

import pytest

from authenticator_testkit import FIXED_TIME, PASSPHRASE, RECOVERY_SECRET, App


@pytest.fixture(autouse=True)
def app_env(monkeypatch):
    """The environment every in-process test and subprocess gets."""
    values = {
        "IDP_AUTHENTICATOR_SCRYPT_N": "16",
        "IDP_AUTHENTICATOR_PASSPHRASE": PASSPHRASE,
        "IDP_AUTHENTICATOR_RECOVERY_SECRET": RECOVERY_SECRET,
        "IDP_AUTHENTICATOR_NOW": str(FIXED_TIME),
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


@pytest.fixture
def make_app(tmp_path):
    def make(name: str = "phone") -> App:
        return App(tmp_path / name)
    return make


@pytest.fixture
def app(make_app) -> App:
    return make_app("phone")
