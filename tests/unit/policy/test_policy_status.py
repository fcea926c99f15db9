"""The four statuses: the Python predicate and the SQL CASE agree on every combination."""
from __future__ import annotations

import itertools
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from policy_testkit import TODAY
from idp.db import db
from idp.models import Organization, User
from idp.policy import status as st
from idp.policy.status import TwoFactorStatus as S

COUNTS = (0, 1, 3)
ORG_REQUIRE = (False, True)
MODES = ("follow", "required", "exempt", "bogus")
UNTILS = (None, TODAY - timedelta(days=1), TODAY, TODAY + timedelta(days=1))
COMBINATIONS = list(itertools.product(COUNTS, ORG_REQUIRE, MODES, UNTILS))


@pytest.mark.parametrize(
    "count, org_require, mode, until, expected",
    [
        (0, False, "follow", None, S.NOT_ACTIVE),
        (1, False, "follow", None, S.ACTIVE_VOLUNTARY),
        (0, True, "follow", None, S.REQUIRED_NOT_SET_UP),
        (2, True, "follow", None, S.ACTIVE_REQUIRED),
        (0, False, "required", None, S.REQUIRED_NOT_SET_UP),
        (1, False, "required", None, S.ACTIVE_REQUIRED),
        # exempt: 2FA waived, even with a factor set up and the organization requiring it
        (1, True, "exempt", None, S.NOT_ACTIVE),
        (0, True, "exempt", TODAY, S.NOT_ACTIVE),  # the end date is the last exempt day
        # an exemption that has passed: required again, whatever the organization says
        (0, False, "exempt", TODAY - timedelta(days=1), S.REQUIRED_NOT_SET_UP),
        (1, False, "exempt", TODAY - timedelta(days=1), S.ACTIVE_REQUIRED),
        (1, True, "exempt", TODAY - timedelta(days=1), S.ACTIVE_REQUIRED),
    ],
)
def test_predicate_table(count, org_require, mode, until, expected):
    assert st.status_of(second_factor_count=count, org_require=org_require, mfa_setting=mode,
                        exempt_until=until, today=TODAY) is expected


def test_status_looks():
    assert (S.NOT_ACTIVE.color, S.NOT_ACTIVE.mark) == ("red", None)
    assert (S.REQUIRED_NOT_SET_UP.color, S.REQUIRED_NOT_SET_UP.mark) == ("orange", "exclamation")
    assert (S.ACTIVE_VOLUNTARY.color, S.ACTIVE_VOLUNTARY.mark) == ("orange", "check")
    assert (S.ACTIVE_REQUIRED.color, S.ACTIVE_REQUIRED.mark) == ("green", "check")


def _populate(make_org, make_user):
    orgs = {False: make_org("optional"), True: make_org("required", require_2fa=True)}
    expected = {}
    for n, (count, org_require, mode, until) in enumerate(COMBINATIONS):
        user = make_user(orgs[org_require], f"u{n}@example.com", second_factor_count=count,
                         mfa_setting=mode, exempt_until=until)
        expected[user.id] = st.status_of(second_factor_count=count, org_require=org_require,
                                          mfa_setting=mode, exempt_until=until, today=TODAY)
    return orgs, expected


def test_sql_case_agrees_with_predicate_on_every_combination(app, make_org, make_user):
    _, expected = _populate(make_org, make_user)
    rows = db.session.execute(
        select(User.id, st.status_expr(TODAY)).join(Organization, Organization.id == User.org_id)
    ).all()
    assert len(rows) == len(COMBINATIONS) == len(expected)
    got = {user_id: S(value) for user_id, value in rows}
    mismatches = {uid: (got[uid], want) for uid, want in expected.items() if got[uid] is not want}
    assert not mismatches
    # and every status occurs, so the comparison covered all four branches
    assert set(got.values()) == set(S)


def test_sql_case_with_inlined_org_requirement_agrees(app, make_org, make_user):
    orgs, expected = _populate(make_org, make_user)
    for org_require, org in orgs.items():
        rows = db.session.execute(
            select(User.id, st.status_expr(TODAY, org_require=org_require)).where(User.org_id == org.id)
        ).all()
        assert rows
        for user_id, value in rows:
            assert S(value) is expected[user_id]


def test_model_helpers_match(app, make_org, make_user):
    org = make_org(require_2fa=True)
    user = make_user(org, "a@example.com", mfa_setting="exempt", exempt_until=TODAY - timedelta(days=1))
    assert st.status(user, org, TODAY) is S.REQUIRED_NOT_SET_UP
    assert st.is_required(user, org, TODAY)
    assert not st.is_exempt(user, TODAY)
    user2 = make_user(org, "b@example.com", mfa_setting="exempt", exempt_until=TODAY)
    assert not st.is_required(user2, org, TODAY) and st.is_exempt(user2, TODAY)


def test_is_required_plain_objects():
    org = SimpleNamespace(require_2fa=False)
    assert not st.is_required(SimpleNamespace(mfa_setting="follow", exempt_until=None), org, TODAY)
    assert st.is_required(SimpleNamespace(mfa_setting="required", exempt_until=None), org, TODAY)


def test_distribution_counts_every_status_in_one_query(app, make_org, make_user):
    orgs, expected = _populate(make_org, make_user)
    for org in orgs.values():
        want = {s: 0 for s in S}
        users = db.session.execute(select(User.id).where(User.org_id == org.id)).scalars()
        for uid in users:
            want[expected[uid]] += 1
        assert st.distribution(org.id, TODAY) == want
    empty = make_org("empty")
    assert st.distribution(empty.id, TODAY) == {s: 0 for s in S}


def test_distribution_is_one_statement(app, make_org, make_user):
    from sqlalchemy import event

    org = make_org()
    for n in range(5):
        make_user(org, f"x{n}@example.com", second_factor_count=n % 2)
    statements = []
    listener = lambda *a: statements.append(a[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        st.distribution(org.id, TODAY)
        st.impact_of_requiring_all(org.id, TODAY)
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 2
    assert "GROUP BY" in selects[0].upper()


def test_impact_of_requiring_all(app, make_org, make_user):
    org = make_org()
    make_user(org, "none@example.com")                                        # must enrol
    make_user(org, "none2@example.com")                                       # must enrol
    make_user(org, "has@example.com", second_factor_count=1)                  # already set up
    make_user(org, "req@example.com", mfa_setting="required")                 # must enrol (already required)
    make_user(org, "ex@example.com", mfa_setting="exempt")                    # exempt
    make_user(org, "ex2@example.com", mfa_setting="exempt", exempt_until=TODAY, second_factor_count=1)
    make_user(org, "expired@example.com", mfa_setting="exempt",
              exempt_until=TODAY - timedelta(days=3))                         # must enrol
    other = make_org("other")
    make_user(other, "elsewhere@example.com")
    impact = st.impact_of_requiring_all(org.id, TODAY)
    assert impact == st.Impact(must_enrol=4, exempt=2, already_set_up=1, total=7)
    assert impact.as_dict()["must_enrol"] == 4


def test_policy_index_exists():
    names = {index.name for index in User.__table__.indexes}
    assert "ix_users_org_policy" in names


def test_the_refresh_grants_not_required_agrees_with_the_predicate(app, make_org, make_user):
    """idp.oidc.grants._not_required (the refresh grant's one statement takes only users of whom
    no second factor is required; the others go through its checks in Python) is the negation
    of `is_required` wherever `is_required` is false, and never true where it holds."""
    from idp.oidc.grants import _not_required

    _populate(make_org, make_user)
    rows = db.session.execute(
        select(User, Organization, _not_required(TODAY)).join(Organization, Organization.id == User.org_id)
    ).all()
    assert len(rows) == len(COMBINATIONS)
    for user, org, not_required in rows:
        assert bool(not_required) is (not st._required(user.mfa_setting, user.exempt_until, org.require_2fa, TODAY))
        assert not (not_required and st.is_required(user, org, TODAY))


def test_disabled_accounts_are_in_no_status_count(app, make_org, make_user):
    """A disabled account signs in with nothing: neither protected nor at risk. The distribution
    and the impact of requiring everyone leave it out; `disabled_count` says how many."""
    org = make_org()
    make_user(org, "on@example.com", second_factor_count=1)
    make_user(org, "off@example.com")
    make_user(org, "gone@example.com", disabled=True)                               # would be not_active
    make_user(org, "gone2@example.com", disabled=True, mfa_setting="required")      # would be required
    make_user(org, "gone3@example.com", disabled=True, mfa_setting="exempt")        # would be exempt
    assert st.distribution(org.id, TODAY) == {S.NOT_ACTIVE: 1, S.REQUIRED_NOT_SET_UP: 0, S.ACTIVE_VOLUNTARY: 1,
                                              S.ACTIVE_REQUIRED: 0}
    assert st.impact_of_requiring_all(org.id, TODAY) == st.Impact(must_enrol=1, exempt=0, already_set_up=1, total=2)
    assert st.disabled_count(org.id) == 3
    assert st.disabled_count(make_org("other").id) == 0
