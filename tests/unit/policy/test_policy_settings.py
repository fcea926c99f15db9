"""Policy writes: exactly one audit event per change, none for a no-op, nothing on bad input."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from idp.db import db
from idp.models import AuditEvent, Organization, User
from idp.policy import settings as ps
from idp.policy.settings import Actor, PolicyError
from policy_testkit import NOW, TODAY

CLI = Actor.cli()


def events(event=None):
    query = select(AuditEvent).order_by(AuditEvent.id)
    if event:
        query = query.where(AuditEvent.event == event)
    return db.session.execute(query).scalars().all()


def count_events():
    return db.session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()


def fresh(model, id_):
    db.session.expire_all()
    return db.session.get(model, id_)


# --------------------------------------------------------------------------- organization requirement

def test_org_requirement_on_and_off(app, make_org, make_user):
    org = make_org()
    follower = make_user(org, "f@example.com")
    own = make_user(org, "r@example.com", mfa_setting="required", required_since=NOW - timedelta(days=9))
    exempt = make_user(org, "e@example.com", mfa_setting="exempt")

    assert ps.set_org_requirement(org.id, True, Actor(7, "admin@example.com", org.id), now=NOW) is True
    [event] = events()
    assert (event.event, event.org_id, event.actor_id, event.actor) == (
        ps.EVENT_ORG_REQUIREMENT, org.id, 7, "admin@example.com")
    assert event.details == {"require_2fa": True, "users_following_org": 1}
    assert fresh(Organization, org.id).require_2fa is True
    assert fresh(User, follower.id).required_since == NOW
    assert fresh(User, own.id).required_since == NOW - timedelta(days=9)  # was required already
    assert fresh(User, exempt.id).required_since is None

    assert ps.set_org_requirement(org.id, True, CLI, now=NOW) is False  # no-op: no event
    assert count_events() == 1

    assert ps.set_org_requirement(org.id, False, CLI, now=NOW) is True
    assert count_events() == 2 and events()[-1].actor == "cli" and events()[-1].actor_id is None
    assert fresh(User, follower.id).required_since is None
    assert fresh(User, own.id).required_since == NOW - timedelta(days=9)


def test_org_requirement_bad_input(app, make_org):
    org = make_org()
    with pytest.raises(PolicyError):
        ps.set_org_requirement(org.id, "yes", CLI)
    with pytest.raises(PolicyError, match="not found"):
        ps.set_org_requirement(org.id + 100, True, CLI)
    other = make_org("other")
    with pytest.raises(PolicyError, match="not found"):  # an admin of another organization
        ps.set_org_requirement(org.id, True, Actor(1, "x", other.id))
    assert count_events() == 0 and fresh(Organization, org.id).require_2fa is False


# --------------------------------------------------------------------------- user requirement

def test_user_required_sets_required_since(app, make_org, make_user):
    org = make_org()
    user = make_user(org, "u@example.com", logins_since_required=4)
    assert ps.set_user_requirement(user.id, "required", None, None, CLI, now=NOW) is True
    user = fresh(User, user.id)
    assert (user.mfa_setting, user.required_since, user.logins_since_required) == ("required", NOW, 0)
    [event] = events()
    assert event.event == ps.EVENT_USER_REQUIREMENT and event.subject_id == user.id
    assert event.details["before"]["mode"] == "follow" and event.details["after"]["mode"] == "required"
    assert event.details["required"] is True

    # no-op
    assert ps.set_user_requirement(user.id, "required", None, None, CLI, now=NOW) is False
    assert count_events() == 1

    # back to following an organization that does not require: no longer required
    assert ps.set_user_requirement(user.id, "follow", None, None, CLI, now=NOW) is True
    assert fresh(User, user.id).required_since is None
    assert count_events() == 2


def test_required_since_is_kept_while_still_required(app, make_org, make_user):
    org = make_org(require_2fa=True)
    since = NOW - timedelta(days=3)
    user = make_user(org, "u@example.com", required_since=since)
    ps.set_user_requirement(user.id, "required", None, None, CLI, now=NOW)
    assert fresh(User, user.id).required_since == since


def test_exemption_with_reason_and_end_date(app, make_org, make_user):
    org = make_org(require_2fa=True)
    user = make_user(org, "u@example.com", required_since=NOW - timedelta(days=1))
    until = TODAY + timedelta(days=14)
    assert ps.set_user_requirement(user.id, "exempt", until, "  lost   phone ", CLI, now=NOW)
    user = fresh(User, user.id)
    assert (user.mfa_setting, user.exempt_until, user.exempt_reason) == ("exempt", until, "lost phone")
    assert user.required_since is None
    [event] = events()
    assert event.details["after"] == {"mode": "exempt", "until": until.isoformat(), "reason": "lost phone"}
    assert event.details["required"] is False

    # same exemption again: no-op; a different end date: a change
    assert not ps.set_user_requirement(user.id, "exempt", until, "lost phone", CLI, now=NOW)
    assert ps.set_user_requirement(user.id, "exempt", None, "lost phone", CLI, now=NOW)
    assert count_events() == 2

    # leaving the exemption clears end date and reason
    assert ps.set_user_requirement(user.id, "follow", None, None, CLI, now=NOW)
    user = fresh(User, user.id)
    assert (user.exempt_until, user.exempt_reason, user.required_since) == (None, None, NOW)


def test_exemption_ending_today_is_allowed(app, make_org, make_user):
    user = make_user(make_org(), "u@example.com")
    assert ps.set_user_requirement(user.id, "exempt", TODAY, None, CLI, now=NOW)


def test_an_ended_exemption_sent_back_unchanged_is_nothing_to_change(app, make_org, make_user):
    """The admin's user page fills the form with the stored exemption: once its end date has
    passed, saving it as it is changes nothing (it was refused as "in the past"); a new past
    date, or the old one with a new reason, is still refused."""
    user = make_user(make_org(), "u@example.com")
    ended = TODAY - timedelta(days=3)
    assert ps.set_user_requirement(user.id, "exempt", ended, "trip", CLI, now=NOW - timedelta(days=5))
    assert ps.set_user_requirement(user.id, "exempt", ended, "trip", CLI, now=NOW) is False
    for until, reason in ((ended - timedelta(days=1), "trip"), (ended, "another trip")):
        with pytest.raises(PolicyError, match="in the past"):
            ps.set_user_requirement(user.id, "exempt", until, reason, CLI, now=NOW)
    assert count_events() == 1


def test_an_ended_exemption_keeps_its_grace_when_the_mode_changes(app, make_org, make_user):
    """Required again since the day after the end date, without anyone acting: setting the user
    to "required" (or back to the organization) keeps the grace counted from that day, rather
    than restart it from the account's creation (long gone: no grace at all)."""
    from datetime import datetime

    org = make_org(require_2fa=True)
    user = make_user(org, "u@example.com")
    ended = TODAY - timedelta(days=3)
    ps.set_user_requirement(user.id, "exempt", ended, None, CLI, now=NOW - timedelta(days=5))
    assert ps.set_user_requirement(user.id, "required", None, None, CLI, now=NOW)
    assert fresh(User, user.id).required_since == datetime.combine(ended + timedelta(days=1), datetime.min.time())


@pytest.mark.parametrize("mode, until, reason, message", [
    ("sometimes", None, None, "mode must be one of"),
    ("required", TODAY, None, "only apply to an exemption"),
    ("follow", None, "because", "only apply to an exemption"),
    ("exempt", TODAY - timedelta(days=1), None, "in the past"),
    ("exempt", "2030-01-01", None, "must be a date"),
    ("exempt", None, "x" * 501, "too long"),
    ("exempt", None, "nul \x00 byte", "control characters"),
    # What a terminal or a page would obey rather than show: a C1 control (CSI), a bidi override.
    ("exempt", None, "csi \x9b31m red", "control characters"),
    ("exempt", None, "Pixel \u202elapot", "control characters"),
])
def test_user_requirement_bad_input_writes_nothing(app, make_org, make_user, mode, until, reason, message):
    user = make_user(make_org(), "u@example.com")
    with pytest.raises(PolicyError, match=message):
        ps.set_user_requirement(user.id, mode, until, reason, CLI, now=NOW)
    assert count_events() == 0 and fresh(User, user.id).mfa_setting == "follow"


def test_user_requirement_scoped_to_the_admins_organization(app, make_org, make_user):
    org, other = make_org("a"), make_org("b")
    user = make_user(other, "u@example.com")
    with pytest.raises(PolicyError, match="user not found"):
        ps.set_user_requirement(user.id, "required", None, None, Actor(1, "admin", org.id), now=NOW)
    with pytest.raises(PolicyError, match="user not found"):
        ps.set_user_requirement(user.id + 99, "required", None, None, CLI, now=NOW)
    assert count_events() == 0


# --------------------------------------------------------------------------- allowed factors, grace

def test_allowed_factors(app, make_org):
    org = make_org()
    assert ps.set_allowed_factors(org.id, ["webauthn", "totp", "totp"], CLI, known={"totp", "webauthn"})
    assert fresh(Organization, org.id).allowed_factors == ["totp", "webauthn"]
    assert not ps.set_allowed_factors(org.id, ["webauthn", "totp"], CLI)  # same set: no-op
    assert ps.set_allowed_factors(org.id, None, CLI)
    assert fresh(Organization, org.id).allowed_factors is None
    assert [e.details for e in events(ps.EVENT_ALLOWED_FACTORS)] == [
        {"before": None, "after": ["totp", "webauthn"]}, {"before": ["totp", "webauthn"], "after": None}]
    for bad, message in (([], "at least one"), (["TOTP!"], "not a factor name"), (["sms"], "unknown factor")):
        with pytest.raises(PolicyError, match=message):
            ps.set_allowed_factors(org.id, bad, CLI, known={"totp"})
    assert count_events() == 2


def test_grace(app, make_org):
    org = make_org()
    assert ps.set_grace(org.id, 7, None, CLI)
    assert not ps.set_grace(org.id, 7, 0, CLI)  # 0 means none: unchanged
    assert ps.set_grace(org.id, None, 3, CLI)
    org = fresh(Organization, org.id)
    assert (org.grace_days, org.grace_logins) == (None, 3)
    assert [e.details["after"] for e in events(ps.EVENT_GRACE)] == [
        {"days": 7, "logins": None}, {"days": None, "logins": 3}]
    for days, logins in ((-1, None), (366, None), (None, 101), ("7", None), (True, None)):
        with pytest.raises(PolicyError):
            ps.set_grace(org.id, days, logins, CLI)
    assert count_events() == 2


def test_self_push_recovery(app, make_org):
    org = make_org()
    assert fresh(Organization, org.id).self_push_recovery is True  # the default: as before the setting
    assert ps.set_self_push_recovery(org.id, False, CLI)
    assert not ps.set_self_push_recovery(org.id, False, CLI)
    assert fresh(Organization, org.id).self_push_recovery is False
    with pytest.raises(PolicyError):
        ps.set_self_push_recovery(org.id, "off", CLI)
    other = make_org("Other")
    with pytest.raises(PolicyError, match="not found"):
        ps.set_self_push_recovery(other.id, False, ps.Actor(id=1, display="admin", org_id=org.id))
    assert [e.details for e in events(ps.EVENT_SELF_PUSH_RECOVERY)] == [{"before": True, "after": False}]


def test_note_postponed_login(app, make_org, make_user):
    user = make_user(make_org(), "u@example.com", logins_since_required=1)
    assert ps.note_postponed_login(user.id, 1) and ps.note_postponed_login(user.id, 2)
    assert fresh(User, user.id).logins_since_required == 3
    assert count_events() == 0


def test_a_postponed_login_counts_only_from_the_count_it_was_allowed_on(app, make_org, make_user):
    """Two logins allowed on the same count (the last grace login): the second one counts nothing."""
    user = make_user(make_org(), "u@example.com", logins_since_required=2)
    assert ps.note_postponed_login(user.id, 2)
    assert not ps.note_postponed_login(user.id, 2)
    assert fresh(User, user.id).logins_since_required == 3


def test_event_and_change_share_one_transaction(app, make_org, make_user, monkeypatch):
    """If the audit write fails, the change is not kept either."""
    org = make_org()
    user = make_user(org, "u@example.com")

    def boom(*a, **k):
        raise RuntimeError("audit down")

    monkeypatch.setattr(ps.audit, "record", boom)
    with pytest.raises(RuntimeError):
        ps.set_user_requirement(user.id, "required", None, None, CLI, now=NOW)
    with pytest.raises(RuntimeError):
        ps.set_org_requirement(org.id, True, CLI, now=NOW)
    assert fresh(User, user.id).mfa_setting == "follow"
    assert fresh(Organization, org.id).require_2fa is False
    assert fresh(User, user.id).required_since is None
