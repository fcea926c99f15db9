"""decide(): the named checks, grace, acr_values, prompt=none errors; can_remove_factor; refresh_allowed.

Pure functions over plain objects: no database needed.
"""
from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest

from idp.policy import decide as policy
from idp.policy.decide import RequestFacts, SessionFacts
from policy_testkit import NOW, TODAY

PWD = SessionFacts(auth_time=NOW, amr=("pwd",))
MFA = SessionFacts(auth_time=NOW, amr=("pwd", "otp", "mfa"))
PLAIN = RequestFacts()


def user(**values):
    base = dict(second_factor_count=0, mfa_setting="follow", exempt_until=None, exempt_reason=None,
                required_since=None, logins_since_required=0, created_at=NOW - timedelta(days=100))
    base.update(values)
    return SimpleNamespace(**base)


def org(**values):
    base = dict(require_2fa=False, allowed_factors=None, grace_days=None, grace_logins=None)
    base.update(values)
    return SimpleNamespace(**base)


def decide(u, o, request=PLAIN, session=PWD, now=NOW, **kw):
    return policy.decide(u, o, request=request, session=session, now=now, **kw)


def names(decision):
    return {r.name for r in decision.reasons}


# --------------------------------------------------------------------------- the basic table

def test_nothing_required_nothing_set_up():
    d = decide(user(), org())
    assert (d.second_factor_required, d.must_enrol, d.may_postpone) == (False, False, False)
    assert d.unmet == () and d.satisfied and d.prompt_none_error() is None
    assert d.allowed_factors is None


def test_voluntary_factor_is_asked_at_login():
    d = decide(user(second_factor_count=1), org())
    assert d.second_factor_required and not d.must_enrol
    assert d.unmet == ("second_factor_set_up",)
    assert d.prompt_none_error() == "interaction_required"
    assert decide(user(second_factor_count=1), org(), session=MFA).unmet == ()


def test_org_requires_and_user_has_factor():
    d = decide(user(second_factor_count=2), org(require_2fa=True))
    assert d.second_factor_required and not d.must_enrol and not d.may_postpone
    assert d.unmet == ("org_requires_2fa",)
    assert "organization requires" in d.reason("org_requires_2fa")


def test_org_requires_and_user_has_none_must_enrol():
    d = decide(user(), org(require_2fa=True))
    assert d.second_factor_required and d.must_enrol and not d.may_postpone
    assert d.unmet == ("org_requires_2fa",)
    assert "must enrol" in d.reason("org_requires_2fa")


def test_user_required_even_when_org_is_not():
    d = decide(user(mfa_setting="required"), org())
    assert d.must_enrol and d.unmet == ("user_requires_2fa",)


def test_session_with_second_factor_meets_the_requirement():
    d = decide(user(second_factor_count=1), org(require_2fa=True), session=MFA)
    assert d.second_factor_required and d.unmet == () and d.prompt_none_error() is None


@pytest.mark.parametrize("amr", [("pwd", "mfa"), ("pwd", "hwk", "user", "mfa"), ("pwd", "otp")])
def test_second_factor_amr_variants(amr):
    d = decide(user(second_factor_count=1), org(require_2fa=True), session=SessionFacts(NOW, amr))
    assert d.unmet == ()


# --------------------------------------------------------------------------- exemptions

def test_exempt_user_is_not_asked_even_with_a_factor_set_up():
    d = decide(user(mfa_setting="exempt", second_factor_count=1, exempt_reason="lost phone"),
               org(require_2fa=True))
    assert (d.second_factor_required, d.must_enrol, d.may_postpone) == (False, False, False)
    assert d.unmet == ()
    assert names(d) == {"user_exempt"}
    assert "lost phone" in d.reason("user_exempt") and "no end date" in d.reason("user_exempt")


def test_exemption_runs_through_its_end_date():
    d = decide(user(mfa_setting="exempt", exempt_until=TODAY), org(require_2fa=True))
    assert not d.second_factor_required and d.unmet == ()
    assert TODAY.isoformat() in d.reason("user_exempt")


def test_expired_exemption_is_required_again_without_anyone_acting():
    u = user(mfa_setting="exempt", exempt_until=TODAY - timedelta(days=1))
    for o in (org(require_2fa=True), org(require_2fa=False)):
        d = decide(u, o)
        assert d.must_enrol and d.unmet == ("user_requires_2fa",)
        assert "exemption ended" in d.reason("user_requires_2fa")
        assert "user_exempt" not in names(d)


def test_expired_exemption_grace_counts_from_the_day_after():
    u = user(mfa_setting="exempt", exempt_until=TODAY - timedelta(days=1))
    d = decide(u, org(grace_days=2))
    assert d.may_postpone and not d.must_enrol and d.unmet == ()
    later = decide(u, org(grace_days=2), now=NOW + timedelta(days=2))
    assert later.must_enrol and set(later.unmet) == {"user_requires_2fa", "grace_period"}


# --------------------------------------------------------------------------- grace

def test_grace_by_days():
    o = org(require_2fa=True, grace_days=7)
    u = user(required_since=NOW - timedelta(days=6, hours=23))
    d = decide(u, o)
    assert d.may_postpone and not d.second_factor_required and not d.must_enrol
    assert d.unmet == () and d.prompt_none_error() is None
    assert "in grace" in d.reason("grace_period")
    over = decide(user(required_since=NOW - timedelta(days=7)), o)
    assert over.must_enrol and not over.may_postpone
    assert set(over.unmet) == {"org_requires_2fa", "grace_period"}
    assert "grace period over" in over.reason("grace_period")


def test_grace_by_logins():
    o = org(require_2fa=True, grace_logins=3)
    for used, postpone in ((0, True), (2, True), (3, False), (9, False)):
        d = decide(user(required_since=NOW - timedelta(days=400), logins_since_required=used), o)
        assert d.may_postpone is postpone and d.must_enrol is (not postpone)


def test_grace_with_both_ends_when_either_runs_out():
    o = org(require_2fa=True, grace_days=7, grace_logins=3)
    assert decide(user(required_since=NOW, logins_since_required=2), o).may_postpone
    assert decide(user(required_since=NOW, logins_since_required=3), o).must_enrol
    assert decide(user(required_since=NOW - timedelta(days=8)), o).must_enrol


def test_no_grace_once_an_admin_withdrew_the_users_factors():
    """A reset after a lost phone (settings.withdraw_grace): whatever the days left, no postponing."""
    from idp.policy.decide import GRACE_WITHDRAWN

    for o in (org(require_2fa=True, grace_days=7), org(require_2fa=True, grace_logins=3),
              org(require_2fa=True, grace_days=7, grace_logins=3)):
        d = decide(user(required_since=NOW, logins_since_required=GRACE_WITHDRAWN), o)
        assert d.must_enrol and not d.may_postpone and "withdrawn" in d.reason("grace_period")


def test_grace_counts_from_creation_when_required_since_unknown():
    o = org(require_2fa=True, grace_days=7)
    assert decide(user(created_at=NOW - timedelta(days=1)), o).may_postpone
    assert decide(user(created_at=NOW - timedelta(days=30)), o).must_enrol


def test_grace_does_not_apply_to_users_with_a_factor():
    d = decide(user(second_factor_count=1, required_since=NOW), org(require_2fa=True, grace_days=7))
    assert d.second_factor_required and not d.may_postpone and "grace_period" not in names(d)


def test_no_grace_configured():
    d = decide(user(required_since=NOW), org(require_2fa=True))
    assert d.must_enrol and "grace_period" not in names(d)


# --------------------------------------------------------------------------- acr_values

@pytest.mark.parametrize("acr", ["urn:idp:acr:mfa", "mfa",
                                 "http://schemas.openid.net/pape/policies/2007/06/multi-factor"])
def test_acr_values_request_mfa_where_the_org_does_not(acr):
    request = RequestFacts(acr_values=("urn:idp:acr:pwd", acr))
    d = decide(user(second_factor_count=1), org(), request=request)
    assert d.second_factor_required
    assert set(d.unmet) == {"second_factor_set_up", "acr_values_request_mfa"}
    assert d.prompt_none_error() == "unmet_authentication_requirements"
    assert decide(user(second_factor_count=1), org(), request=request, session=MFA).unmet == ()


def test_acr_values_string_form_and_non_mfa_values():
    assert RequestFacts(acr_values="a urn:idp:acr:mfa").acr_values == ("a", "urn:idp:acr:mfa")
    d = decide(user(), org(), request=RequestFacts(acr_values=("urn:idp:acr:pwd",)))
    assert d.unmet == () and not d.second_factor_required


def test_acr_values_force_enrolment_without_grace_and_override_exemption():
    request = RequestFacts(acr_values=("urn:idp:acr:mfa",))
    d = decide(user(required_since=NOW), org(require_2fa=True, grace_days=30), request=request)
    assert d.must_enrol and not d.may_postpone
    assert "grace_period" in d.unmet
    exempt = decide(user(mfa_setting="exempt", second_factor_count=1), org(), request=request)
    assert exempt.second_factor_required and exempt.unmet == ("acr_values_request_mfa",)


# --------------------------------------------------------------------------- allowed factors

def test_allowed_factors_are_passed_on():
    d = decide(user(second_factor_count=1), org(require_2fa=True, allowed_factors=["webauthn"]),
               factors=("webauthn", "totp"))
    assert d.allowed_factors == ("webauthn",)
    assert d.second_factor_required and not d.must_enrol
    assert "allowed_factors" in names(d) and "allowed_factors" not in d.unmet


def test_only_disallowed_factors_still_ask_for_one_then_a_switch():
    """A factor the organization stopped accepting is still the user's 2FA: asked for (whoever
    knows the password alone must not enrol a factor of their own), then an allowed one is
    enrolled (must_switch). Not a must_enrol, never a postponement."""
    d = decide(user(second_factor_count=1), org(require_2fa=True, allowed_factors=["webauthn"]),
               factors=("totp",))
    assert d.second_factor_required and d.must_switch and not d.must_enrol and not d.may_postpone
    assert set(d.unmet) == {"org_requires_2fa", "allowed_factors"}
    assert "webauthn" in d.reason("allowed_factors")
    assert d.as_dict()["must_switch"] is True


def test_a_disallowed_factor_keeps_a_voluntary_user_asked():
    d = decide(user(second_factor_count=1), org(allowed_factors=["webauthn"]), factors=("totp",))
    assert d.second_factor_required and d.must_switch and "second_factor_set_up" in d.unmet


def test_a_disallowed_factor_is_no_grace():
    """Grace is for users who never had 2FA: one whose factor was disallowed is not given it."""
    in_grace = org(require_2fa=True, allowed_factors=["webauthn"], grace_days=7)
    d = decide(user(second_factor_count=1, required_since=NOW - timedelta(days=1)), in_grace, factors=("totp",))
    assert not d.may_postpone and d.must_switch and "grace_period" not in names(d)


def test_an_allowed_factor_held_needs_no_switch():
    d = decide(user(second_factor_count=2), org(require_2fa=True, allowed_factors=["webauthn"]),
               factors=("totp", "webauthn"))
    assert not d.must_switch and not d.must_enrol


def test_a_session_with_a_second_factor_needs_no_switch():
    d = decide(user(second_factor_count=1), org(require_2fa=True, allowed_factors=["webauthn"]),
               factors=("totp",), session=MFA)
    assert not d.must_switch and d.unmet == ()


def test_without_factor_names_the_count_is_trusted():
    d = decide(user(second_factor_count=1), org(require_2fa=True, allowed_factors=["webauthn"]))
    assert not d.must_enrol and d.second_factor_required


# --------------------------------------------------------------------------- sessions, max_age, prompt=none

def test_no_session_is_login_required():
    d = decide(user(), org(), session=None)
    assert d.unmet == ("no_session",) and d.prompt_none_error() == "login_required"


def test_max_age():
    session = SessionFacts(auth_time=NOW - timedelta(seconds=600), amr=("pwd",))
    old = decide(user(), org(), request=RequestFacts(max_age=300), session=session)
    assert old.unmet == ("max_age",) and old.prompt_none_error() == "login_required"
    fresh = decide(user(), org(), request=RequestFacts(max_age=900), session=session)
    assert fresh.unmet == () and "max_age" in names(fresh)


def test_login_required_wins_over_the_others():
    session = SessionFacts(auth_time=NOW - timedelta(hours=2), amr=("pwd",))
    d = decide(user(second_factor_count=1), org(require_2fa=True),
               request=RequestFacts(max_age=60, acr_values=("mfa",)), session=session)
    assert set(d.unmet) == {"max_age", "org_requires_2fa", "acr_values_request_mfa"}
    assert d.prompt_none_error() == "login_required"


def test_session_from_before_the_requirement_is_not_enough():
    """A user who became required while holding a pwd-only session gets no token from it."""
    d = decide(user(second_factor_count=1), org(require_2fa=True),
               session=SessionFacts(auth_time=NOW - timedelta(hours=1), amr=("pwd",)))
    assert not d.satisfied and d.prompt_none_error() == "interaction_required"


def test_as_dict_is_json_ready():
    import json

    d = decide(user(), org(require_2fa=True, allowed_factors=["totp"]))
    data = json.loads(json.dumps(d.as_dict()))
    assert data["must_enrol"] is True and data["unmet"] == ["org_requires_2fa", "allowed_factors"]
    assert set(data["reasons"]) == {"org_requires_2fa", "allowed_factors"}


def test_every_check_has_a_unique_name_and_the_documented_ones_exist():
    documented = {"org_requires_2fa", "user_requires_2fa", "user_exempt", "grace_period",
                  "acr_values_request_mfa", "allowed_factors", "max_age"}
    check_names = [c.name for c in policy.CHECKS]
    assert len(check_names) == len(set(check_names))
    assert documented <= set(check_names)
    for check in policy.CHECKS:
        assert f"``{check.name}``" in policy.__doc__


# --------------------------------------------------------------------------- acr helpers

def test_acr_helpers():
    assert policy.acr_for(["pwd"]) == policy.ACR_PWD
    assert policy.acr_for(["pwd", "otp", "mfa"]) == policy.ACR_MFA
    assert not policy.has_second_factor(None) and not policy.has_second_factor(["pwd"])
    assert policy.requests_mfa(["https://refeds.org/profile/mfa"])


# --------------------------------------------------------------------------- removing factors, refresh

def test_can_remove_factor():
    required = user(mfa_setting="required", second_factor_count=1)
    ok, why = policy.can_remove_factor(required, org(), 0, TODAY)
    assert not ok and "required" in why
    assert policy.can_remove_factor(required, org(), 1, TODAY)[0]
    assert not policy.can_remove_factor(user(second_factor_count=1), org(require_2fa=True), 0, TODAY)[0]
    assert policy.can_remove_factor(user(second_factor_count=1), org(), 0, TODAY)[0]
    exempt = user(mfa_setting="exempt", second_factor_count=1)
    assert policy.can_remove_factor(exempt, org(require_2fa=True), 0, TODAY)[0]
    expired = user(mfa_setting="exempt", exempt_until=TODAY - timedelta(days=1), second_factor_count=1)
    assert not policy.can_remove_factor(expired, org(), 0, TODAY)[0]


def test_refresh_allowed():
    required = org(require_2fa=True)
    assert policy.refresh_allowed(user(), org(), ["pwd"], NOW)
    assert not policy.refresh_allowed(user(), required, ["pwd"], NOW)
    assert not policy.refresh_allowed(user(), required, None, NOW)
    assert policy.refresh_allowed(user(), required, ["pwd", "otp", "mfa"], NOW)
    assert policy.refresh_allowed(user(mfa_setting="exempt"), required, ["pwd"], NOW)
    expired = user(mfa_setting="exempt", exempt_until=TODAY - timedelta(days=1))
    assert not policy.refresh_allowed(expired, org(), ["pwd"], NOW)


def test_a_password_only_token_refreshes_while_its_user_may_still_postpone():
    """A required user in grace signs in with the password alone (enrolment postponed): the token
    that login gave keeps refreshing until the grace ends, not only until its first refresh."""
    in_grace = org(require_2fa=True, grace_days=7)
    newly = user(required_since=NOW - timedelta(days=2))
    assert policy.refresh_allowed(newly, in_grace, ["pwd"], NOW)
    assert not policy.refresh_allowed(newly, in_grace, ["pwd"], NOW + timedelta(days=6))
    # Grace in days and logins: spent logins end it for the token too.
    both = org(require_2fa=True, grace_days=7, grace_logins=3)
    assert policy.refresh_allowed(user(logins_since_required=2, required_since=NOW), both, ["pwd"], NOW)
    assert not policy.refresh_allowed(user(logins_since_required=3, required_since=NOW), both, ["pwd"], NOW)
    # Grace in logins alone: refreshes are no logins, so they would postpone for ever.
    assert not policy.refresh_allowed(user(logins_since_required=0), org(require_2fa=True, grace_logins=3),
                                      ["pwd"], NOW)
    # A user holding a factor is never in grace: the login asks for the factor.
    assert not policy.refresh_allowed(user(second_factor_count=1, required_since=NOW), in_grace, ["pwd"], NOW)


# --------------------------------------------------------------------------- precedence (audit)

def test_exempt_beats_everyone_required_and_a_disallowed_only_factor():
    """Required for everyone, the user exempt, the only factor they hold of a kind no longer
    allowed: the exemption waives it all (no factor, no switch), unless the client asks for MFA,
    which takes the held factor and then the switch (never an enrolment on the password alone)."""
    u = user(second_factor_count=1, mfa_setting="exempt", exempt_until=TODAY)
    o = org(require_2fa=True, allowed_factors=["webauthn"], grace_days=7)
    d = decide(u, o, factors=("totp",))
    assert d.satisfied and not d.second_factor_required and not d.must_switch and "user_exempt" in names(d)
    asked = decide(u, o, request=RequestFacts(acr_values="mfa"), factors=("totp",))
    assert asked.second_factor_required and asked.must_switch and not asked.must_enrol and not asked.may_postpone
    ended = decide(user(second_factor_count=1, mfa_setting="exempt", exempt_until=TODAY - timedelta(days=1)), o,
                   factors=("totp",))
    assert ended.must_switch and "user_requires_2fa" in ended.unmet and not ended.may_postpone


def test_a_user_required_alone_in_an_optional_organization():
    d = decide(user(mfa_setting="required", required_since=NOW), org())
    assert d.must_enrol and d.unmet == ("user_requires_2fa",)
    assert decide(user(mfa_setting="required", required_since=NOW), org(grace_days=1)).may_postpone


def test_an_ended_exemptions_refresh_tokens_follow_its_grace_from_the_day_after():
    """docs/policy.md: an exemption's grace counts from the day after its end date; a password-only
    token of a user holding no factor refreshes while that grace (in days) lasts, and stops after."""
    grace = org(grace_days=7)
    ended_yesterday = user(mfa_setting="exempt", exempt_until=TODAY - timedelta(days=1))
    assert policy.refresh_allowed(ended_yesterday, grace, ["pwd"], NOW)
    assert decide(ended_yesterday, grace).may_postpone
    ended_long_ago = user(mfa_setting="exempt", exempt_until=TODAY - timedelta(days=8))
    assert not policy.refresh_allowed(ended_long_ago, grace, ["pwd"], NOW)
    assert decide(ended_long_ago, grace).must_enrol
    # the last exempt day itself: still exempt, refreshes, asks nothing
    assert decide(user(mfa_setting="exempt", exempt_until=TODAY), org(require_2fa=True)).satisfied
