"""Fixtures for the factor contract, registry and stores (see idp/factors/fixtures.py)."""
from idp.factors.fixtures import factor_app, factor_user, pg_app  # noqa: F401
