"""gate.decision_for: decided once per request for the same inputs, anew in each request (an
administrator's change of policy applies to a login in progress from its next request on)."""
from __future__ import annotations

import dataclasses

import pytest

from idp.login.user import LoginOrg, LoginUser


@pytest.fixture
def app(migrated_database_url):
    from idp.app import create_app

    return create_app({"server.database_url": migrated_database_url})


def _user(**org) -> LoginUser:
    # second_factor_count 0: no credential read (gate._held_factor_names), the policy alone
    return LoginUser(id=1, public_id="p", org_id=1, email="a@example.test", name=None, locale=None, disabled=False,
                     password_hash=None, mfa_setting="follow", exempt_until=None, exempt_reason=None,
                     required_since=None, logins_since_required=0, second_factor_count=0, recovery_codes_owed=False,
                     created_at=None, tokens_valid_after=None,
                     org=LoginOrg(**dict(dict(id=1, name="Acme", require_2fa=False, allowed_factors=None,
                                              grace_days=None, grace_logins=None), **org)))


def test_one_decision_per_request_for_the_same_inputs(app):
    from idp.login import gate

    user, params = _user(), {"client_id": "web"}
    with app.test_request_context("/login/x"):
        first = gate.decision_for(user, params)
        assert gate.decision_for(user, params) is first  # the wrong code's page: asked again
        assert gate.decision_for(user, dict(params, acr_values="urn:idp:acr:mfa")) is not first
        assert gate.decision_for(user, dict(params, acr_values="urn:idp:acr:mfa")).second_factor_required
        # Another row of the user (as the next request reads it) is another question.
        required = dataclasses.replace(user, org=dataclasses.replace(user.org, require_2fa=True))
        assert not first.second_factor_required and gate.decision_for(required, params).second_factor_required


def test_a_policy_changed_between_requests_is_decided_anew(app):
    from idp.login import gate

    params = {"client_id": "web"}
    with app.test_request_context("/login/x"):
        assert not gate.decision_for(_user(), params).second_factor_required
    with app.test_request_context("/login/x"):  # the organization now requires 2FA
        assert gate.decision_for(_user(require_2fa=True), params).must_enrol
