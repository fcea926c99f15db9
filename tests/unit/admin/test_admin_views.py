"""Admin views: access rules on every route, the users list, the user's Security section,
Account > Security, the audit log."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from idp.db import db, utcnow
from idp.models import AuditEvent, Organization, User


def admin_routes(app):
    """Every admin URL with its methods, built from the URL map so that a new route is not forgotten."""
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin."):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.append((rule, method))
    assert routes
    return routes


def url_for_rule(rule, user_id, credential_id=0):
    url = (rule.rule.replace("<int:user_id>", str(user_id)).replace("<int:credential_id>", str(credential_id))
           .replace("<client_id>", "some-client"))
    assert "<" not in url, f"teach url_for_rule about {rule.rule}"
    return url


def audit_count():
    return db.session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()


# --------------------------------------------------------------------------- access

def test_anonymous_is_sent_to_sign_in(app, world, browser):
    client = browser()
    for rule, method in admin_routes(app):
        response = client.open(url_for_rule(rule, world["alice"].id), method=method)
        assert response.status_code == 302, (rule.rule, method)


def add_credential(user, factor="totp", label="phone"):
    from idp.factors.registry import current_registry

    info = current_registry().store.for_factor(factor).create(user.id, label, {"x": 1}, secret=b"s" * 20)
    db.session.commit()
    return info


def test_non_admin_gets_403_everywhere(app, world, browser):
    credential = add_credential(world["bob"])
    client = browser(world["alice"])
    for rule, method in admin_routes(app):
        response = client.open(url_for_rule(rule, world["bob"].id, credential.id), method=method,
                               data={"on": "on"})
        assert response.status_code == 403, (rule.rule, method)
    assert audit_count() == 0


def test_admin_of_another_org_gets_404_for_our_users(app, world, browser):
    credential = add_credential(world["alice"])
    client = browser(world["other_admin"])
    for rule, method in admin_routes(app):
        if "user_id" not in rule.arguments:
            continue
        response = client.open(url_for_rule(rule, world["alice"].id, credential.id), method=method,
                               data={"require_2fa": "y", "confirm": "1"})
        assert response.status_code == 404, (rule.rule, method)
    db.session.expire_all()
    assert db.session.get(User, world["alice"].id).mfa_setting == "follow"
    assert db.session.get(User, world["alice"].id).second_factor_count == 1
    assert audit_count() == 0


def test_a_credential_of_another_user_is_404(app, world, browser):
    credential = add_credential(world["bob"])
    client = browser(world["admin"])
    url = f"/admin/users/{world['alice'].id}/factors/{credential.id}/revoke"
    assert client.get(url).status_code == 404
    assert client.post(url, data={"confirm": "1"}).status_code == 404


def test_other_org_admin_acts_on_their_own_org_only(app, world, browser):
    client = browser(world["other_admin"])
    assert client.post("/admin/security/require-all", data={"on": "on"}).status_code == 302
    db.session.expire_all()
    assert db.session.get(Organization, world["other"].id).require_2fa is True
    assert db.session.get(Organization, world["acme"].id).require_2fa is False
    page = client.get("/admin/users").get_data(as_text=True)
    assert "stranger@other.test" in page and "alice@acme.test" not in page


def test_forms_need_a_csrf_token(app, world, browser):
    app.config["WTF_CSRF_ENABLED"] = True
    client = browser(world["admin"])
    assert client.post("/admin/security/require-all", data={"on": "on"}).status_code == 400
    assert client.post(f"/admin/users/{world['alice'].id}/security", data={"require_2fa": "y"}).status_code == 400
    assert audit_count() == 0
    page = client.get("/admin/security").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post("/admin/security/require-all", data={"on": "on", "csrf_token": token})
    assert response.status_code == 302 and audit_count() == 1


# --------------------------------------------------------------------------- users list

def shields(html):
    return dict(re.findall(r'data-user-id="(\d+)">.*?data-status="([a-z_]+)"', html, re.S))


def test_users_list_shows_the_four_shields_with_text(app, world, browser, make_user):
    make_user(world["acme"], "dave@acme.test", mfa_setting="required", second_factor_count=2)
    client = browser(world["admin"])
    response = client.get("/admin/users")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    got = shields(html)
    assert got[str(world["alice"].id)] == "not_active"
    assert got[str(world["bob"].id)] == "active_voluntary"
    assert got[str(world["carol"].id)] == "required_not_set_up"
    assert "active_required" in got.values()
    assert str(world["stranger"].id) not in got
    # hover text and a screen-reader alternative; the SVG itself is hidden from assistive tech
    assert 'title="Two-factor authentication is not active."' in html
    assert 'class="sr-only">2FA required, not set up.' in html
    assert 'aria-hidden="true"' in html
    assert "data-exempt" not in html
    # colour is not the only difference: each status is written next to its shield, and a
    # status made mandatory has its own outline
    for user, words in (("alice", "off"), ("bob", "on"), ("carol", "required, not set up")):
        row = re.search(rf'data-user-id="{world[user].id}">.*?</tr>', html, re.S).group(0)
        assert f'<span class="shield-text" aria-hidden="true">{words}</span>' in row, row
    assert '<span class="shield-text" aria-hidden="true">on, required</span>' in html
    assert html.count("shield-required") == 2 and 'stroke="#101828"' in html  # carol's and dave's


def test_users_list_marks_running_exemptions(app, world, browser, make_user):
    make_user(world["acme"], "ex@acme.test", mfa_setting="exempt")
    make_user(world["acme"], "old@acme.test", mfa_setting="exempt", exempt_until=utcnow().date() - timedelta(days=1))
    client = browser(world["admin"])
    html = client.get("/admin/users?q=ex%40").get_data(as_text=True)
    assert html.count("data-exempt") == 1
    html = client.get("/admin/users?q=old%40").get_data(as_text=True)
    assert "data-exempt" not in html and 'data-status="required_not_set_up"' in html


def test_users_search_and_status_filter(app, world, browser):
    client = browser(world["admin"])
    html = client.get("/admin/users?q=ALI").get_data(as_text=True)
    assert list(shields(html)) == [str(world["alice"].id)]
    html = client.get("/admin/users?status=active_voluntary").get_data(as_text=True)
    assert set(shields(html)) == {str(world["admin"].id), str(world["bob"].id)}
    html = client.get("/admin/users?q=%25").get_data(as_text=True)  # a literal %, not a wildcard
    assert shields(html) == {}
    assert client.get("/admin/users?status=purple").status_code == 400
    assert client.get("/admin/users?after=abc").status_code == 400


def test_users_keyset_pagination(app, world):
    from idp.admin import queries

    ids = sorted(u.id for k, u in world.items() if k in ("admin", "alice", "bob", "carol"))
    pages = []
    after = None
    org = db.session.get(Organization, world["acme"].id)
    while True:
        page = queries.users_page(org, today=utcnow().date(), after=after, limit=2)
        pages.append([r.id for r in page.rows])
        if page.next_after is None:
            break
        after = page.next_after
    assert [i for p in pages for i in p] == ids and len(pages) == 2
    back = queries.users_page(org, today=utcnow().date(), before=pages[1][0], limit=2)
    assert [r.id for r in back.rows] == pages[0] and back.prev_before is None and back.next_after


def test_users_list_pages_by_admin_page_size(app, world, browser, monkeypatch):
    """`admin.page_size` was documented ("rows per page of the admin users list") and read by
    nothing: every page held 50 users whatever it said."""
    settings = app.extensions["idp.settings"]

    class PageOfTwo:
        def __getattr__(self, name):
            return getattr(settings, name)

        def get(self, dotted, default=None):
            return 2 if dotted == "admin.page_size" else settings.get(dotted, default)

    monkeypatch.setitem(app.extensions, "idp.settings", PageOfTwo())
    client = browser(world["admin"])
    first = client.get("/admin/users").get_data(as_text=True)
    ids = sorted(u.id for k, u in world.items() if k in ("admin", "alice", "bob", "carol"))
    assert list(shields(first)) == [str(i) for i in ids[:2]]
    second = client.get(f"/admin/users?after={ids[1]}").get_data(as_text=True)
    assert list(shields(second)) == [str(i) for i in ids[2:]]


# --------------------------------------------------------------------------- user page

def test_user_page_security_section(app, world, browser):
    client = browser(world["admin"])
    html = client.get(f"/admin/users/{world['alice'].id}").get_data(as_text=True)
    assert "Require two-factor authentication" in html and 'name="require_2fa"' in html
    assert 'data-status="not_active"' in html


def test_the_navigation_marks_the_current_section_and_page(app, world, browser):
    """aria-current="page" on the page itself only: on a user's page "Users" is its section."""
    client = browser(world["admin"])

    def current(url):
        html = client.get(url).get_data(as_text=True)
        return re.findall(r'<a href="(/admin/[a-z]*)" class="active" aria-current="([a-z]+)"', html)

    assert current("/admin/users") == [("/admin/users", "page")]
    assert current(f"/admin/users/{world['alice'].id}") == [("/admin/users", "true")]
    assert current(f"/admin/users/{world['alice'].id}/disable") == [("/admin/users", "true")]
    assert current("/admin/users/new") == [("/admin/users", "true")]
    assert current("/admin/security") == [("/admin/security", "page")]
    assert current("/admin/audit") == [("/admin/audit", "page")]
    html = client.post("/admin/security/grace", data={"grace_days": "-1"}).get_data(as_text=True)
    assert re.findall(r'class="active" aria-current="([a-z]+)">([^<]+)<', html) == [("true", "Security")]


def test_require_then_exempt_then_follow_one_event_each(app, world, browser):
    client = browser(world["admin"])
    alice = world["alice"]
    response = client.post(f"/admin/users/{alice.id}/security", data={"require_2fa": "y"})
    assert response.status_code == 302
    html = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Saved." in html and 'data-status="required_not_set_up"' in html
    db.session.expire_all()
    assert db.session.get(User, alice.id).mfa_setting == "required"

    until = (utcnow().date() + timedelta(days=7)).isoformat()
    client.post(f"/admin/users/{alice.id}/security",
                data={"exempt": "y", "exempt_until": until, "exempt_reason": "lost phone"})
    db.session.expire_all()
    user = db.session.get(User, alice.id)
    assert (user.mfa_setting, user.exempt_until.isoformat(), user.exempt_reason) == ("exempt", until, "lost phone")

    # the same again: nothing written
    client.post(f"/admin/users/{alice.id}/security",
                data={"exempt": "y", "exempt_until": until, "exempt_reason": "lost phone"})
    client.post(f"/admin/users/{alice.id}/security", data={})
    db.session.expire_all()
    assert db.session.get(User, alice.id).mfa_setting == "follow"
    events = db.session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars().all()
    assert [e.event for e in events] == ["policy.user_requirement_changed"] * 3
    assert all(e.actor_id == world["admin"].id and e.actor == "admin@acme.test" for e in events)


@pytest.mark.parametrize("data", [
    {"require_2fa": "y", "exempt": "y"},
    {"exempt": "y", "exempt_until": "2001-01-01"},
    {"exempt": "y", "exempt_until": "not-a-date"},
    {"exempt": "y", "exempt_reason": "x" * 501},
])
def test_user_security_bad_input_is_400_and_writes_nothing(app, world, browser, data):
    client = browser(world["admin"])
    response = client.post(f"/admin/users/{world['alice'].id}/security", data=data)
    assert response.status_code == 400
    assert 'role="alert"' in response.get_data(as_text=True)
    assert audit_count() == 0


# --------------------------------------------------------------------------- Account > Security

def test_security_page_require_all_toggle(app, world, browser):
    client = browser(world["admin"])
    html = client.get("/admin/security").get_data(as_text=True)
    assert "Require 2FA for everyone" in html
    # alice has to enrol; carol is already required (counted too); admin and bob have a factor
    assert "2 users will have to set up two-factor authentication" in html

    response = client.post("/admin/security/require-all", data={"on": "on"}, follow_redirects=True)
    html = response.get_data(as_text=True)
    assert "flash-success" in html and "now required for everyone" in html
    assert "Make 2FA optional for everyone" in html
    assert re.search(r'data-status="required_not_set_up">.*?class="count"[^>]*>2<', html, re.S)

    client.post("/admin/security/require-all", data={"on": "off"})
    html = client.get("/admin/security").get_data(as_text=True)
    assert "now optional for everyone" in html and "Require 2FA for everyone" in html
    assert [e.event for e in db.session.execute(select(AuditEvent)).scalars()] == [
        "policy.org_requirement_changed"] * 2
    assert client.post("/admin/security/require-all", data={"on": "maybe"}).status_code == 400


def test_distribution_links_say_what_they_count(app, world, browser):
    """A screen reader's list of links reads each count with its status, not a bare number."""
    html = browser(world["admin"]).get("/admin/security").get_data(as_text=True)
    links = re.findall(r'<a href="/admin/users\?status=([a-z_]+)" class="count" aria-label="([^"]*)">(\d+)</a>', html)
    assert links == [
        ("not_active", "1 user: 2FA not active", "1"), ("required_not_set_up", "1 user: 2FA required, not set up", "1"),
        ("active_voluntary", "2 users: 2FA active, set up voluntarily", "2"),
        ("active_required", "0 users: 2FA active and required", "0")]


def test_the_impact_of_requiring_all_mentions_the_grace_period(app, world, browser):
    """"At their next login" is not the whole truth when the organization grants a grace period."""
    client = browser(world["admin"])
    assert "data-grace" not in client.get("/admin/security").get_data(as_text=True)
    db.session.execute(update(Organization).where(Organization.id == world["acme"].id).values(grace_days=7))
    db.session.commit()
    html = client.get("/admin/security").get_data(as_text=True)
    assert "2 users will have to set up" in html and "they may put it off for a while" in html


def test_require_all_says_who_the_change_leaves_out(app, world, browser):
    """"Everyone" has exceptions: the confirmation names them, and a second click changes nothing."""
    client = browser(world["admin"])
    db.session.execute(update(User).where(User.id == world["bob"].id).values(mfa_setting="exempt"))
    db.session.commit()
    html = client.post("/admin/security/require-all", data={"on": "on"}, follow_redirects=True).get_data(as_text=True)
    assert "now required for everyone, except 1 exempt user." in html
    html = client.post("/admin/security/require-all", data={"on": "on"}, follow_redirects=True).get_data(as_text=True)
    assert "Nothing to change." in html and "now required" not in html
    # carol stays required (her own setting): "optional for everyone" is not the whole truth
    html = client.post("/admin/security/require-all", data={"on": "off"}, follow_redirects=True).get_data(as_text=True)
    assert "now optional for everyone, except 1 user for whom it is required individually." in html
    assert [e.event for e in db.session.execute(select(AuditEvent)).scalars()] == [
        "policy.org_requirement_changed"] * 2


def test_security_page_grace(app, world, browser):
    client = browser(world["admin"])
    assert client.post("/admin/security/grace", data={"grace_days": "7", "grace_logins": ""}).status_code == 302
    db.session.expire_all()
    assert db.session.get(Organization, world["acme"].id).grace_days == 7
    assert client.post("/admin/security/grace", data={"grace_days": "-3"}).status_code == 400
    assert audit_count() == 1


def test_security_page_push_recovery(app, world, browser):
    client = browser(world["admin"])
    html = client.get("/admin/security").get_data(as_text=True)
    assert "Push approvals on a new phone" in html and '<input checked id="allowed" name="allowed" type="checkbox"' in html
    response = client.post("/admin/security/push-recovery", data={}, follow_redirects=True)
    assert "now need a recovery QR code from an admin" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Organization, world["acme"].id).self_push_recovery is False
    assert db.session.get(Organization, world["other_admin"].org_id).self_push_recovery is True
    assert client.post("/admin/security/push-recovery", data={}).status_code == 302  # unchanged: no event
    assert [e.event for e in db.session.execute(select(AuditEvent)).scalars()] == [
        "policy.self_push_recovery_changed"]


def test_security_page_allowed_factors_refuses_unknown(app, world, browser):
    client = browser(world["admin"])
    assert client.post("/admin/security/factors", data={"factors": ["nope"]}).status_code == 400
    assert client.post("/admin/security/factors", data={"all_factors": "y"}).status_code == 302
    assert audit_count() == 0  # "every factor" was already the setting


# --------------------------------------------------------------------------- audit log

def test_audit_log_lists_and_filters(app, world, browser):
    client = browser(world["admin"])
    client.post(f"/admin/users/{world['alice'].id}/security", data={"require_2fa": "y"})
    client.post("/admin/security/require-all", data={"on": "on"})
    other = browser(world["other_admin"])
    other.post("/admin/security/require-all", data={"on": "on"})

    html = client.get("/admin/audit").get_data(as_text=True)
    assert html.count('data-event="') == 2  # the other organization's event is not shown
    html = client.get("/admin/audit?user=alice").get_data(as_text=True)
    assert re.findall(r'data-event="([^"]+)"', html) == ["policy.user_requirement_changed"]
    html = client.get("/admin/audit?action=policy.org").get_data(as_text=True)
    assert re.findall(r'data-event="([^"]+)"', html) == ["policy.org_requirement_changed"]
    assert "127.0.0.1" in html  # from which address
    # In any case, on either database (SQLite's LIKE ignores case, PostgreSQL's does not)
    html = client.get("/admin/audit?action=POLICY.Org").get_data(as_text=True)
    assert re.findall(r'data-event="([^"]+)"', html) == ["policy.org_requirement_changed"]


@pytest.mark.parametrize("listed", [True, False], ids=["few-people", "many-people"])
def test_audit_search_by_name_finds_that_persons_events_in_this_organization_only(
        app, world, browser, make_user, monkeypatch, listed):
    """A name finds the events about and by the people who bear it, in the admin's organization
    only: not a namesake's elsewhere, nor an event about the person recorded for another
    organization. The same whether the matching people are read one by one (few of them) or
    the log is read newest first (many: LISTED_USERS)."""
    from idp import audit
    from idp.admin import queries

    zed = make_user(world["acme"], "zed@acme.test", name="Zed Quux")
    namesake = make_user(world["other"], "zed@other.test", name="Zed Quux")
    expected = []

    def record(name, org, **who):
        audit.record(name, org_id=org.id, **who)
        db.session.commit()
        return db.session.scalar(select(func.max(AuditEvent.id)))

    expected.append(record("policy.user_requirement_changed", world["acme"], actor_id=world["admin"].id,
                           subject_id=zed.id))
    record("login.succeeded", world["acme"], actor_id=world["alice"].id, subject_id=world["alice"].id)
    expected.append(record("consent.granted", world["acme"], actor_id=zed.id))  # by them, about nobody
    record("login.succeeded", world["other"], actor_id=namesake.id, subject_id=namesake.id)
    record("factor.reset", world["other"], actor_id=world["other_admin"].id, subject_id=zed.id)
    expected.append(record("login.succeeded", world["acme"], actor_id=zed.id, subject_id=zed.id))
    if not listed:
        monkeypatch.setattr(queries, "LISTED_USERS", 0)
    assert isinstance(queries.people_matching(world["acme"].id, "quux"), list) is listed

    client = browser(world["admin"])
    for search in ("quux", "ZED QU", "zed@acme"):
        html = client.get(f"/admin/audit?user={search}").get_data(as_text=True)
        assert re.findall(r'data-event="([^"]+)"', html) == [
            "login.succeeded", "consent.granted", "policy.user_requirement_changed"], search
    html = client.get("/admin/audit?user=quux&action=login.").get_data(as_text=True)
    assert re.findall(r'data-event="([^"]+)"', html) == ["login.succeeded"]
    for search in ("zed@other", "nobody at all"):
        html = client.get(f"/admin/audit?user={search}").get_data(as_text=True)
        assert 'data-event="' not in html and "No event matches." in html

    # Pages of two, newest first, and back.
    people = queries.people_matching(world["acme"].id, "quux")
    first = queries.audit_page(world["acme"].id, subject_ids=people, limit=2)
    assert [e.id for e in first.rows] == expected[::-1][:2] and first.prev_before is None
    second = queries.audit_page(world["acme"].id, subject_ids=people, after=first.next_after, limit=2)
    assert [e.id for e in second.rows] == expected[::-1][2:] and second.next_after is None
    back = queries.audit_page(world["acme"].id, subject_ids=people, before=second.prev_before, limit=2)
    assert [e.id for e in back.rows] == [e.id for e in first.rows]


def test_audit_action_suggestions_read_the_latest_events_only(app, world, browser, monkeypatch):
    """The suggestions come from a bounded window of the newest events (a DISTINCT over the whole
    log read every event on each visit); an older action is still found by typing it."""
    from idp import audit
    from idp.admin import queries

    for name in ("user.role_changed", "login.succeeded", "login.succeeded", "token.revoked"):
        audit.record(name, org_id=world["acme"].id, subject_id=world["alice"].id)
        db.session.commit()
    audit.record("policy.grace_changed", org_id=world["other"].id)
    db.session.commit()
    monkeypatch.setattr(queries, "RECENT_ACTIONS", 3)
    client = browser(world["admin"])
    html = client.get("/admin/audit").get_data(as_text=True)
    assert re.findall(r'<option value="([^"]+)"', html) == ["login.succeeded", "token.revoked"]
    html = client.get("/admin/audit?action=user.").get_data(as_text=True)
    assert re.findall(r'data-event="([^"]+)"', html) == ["user.role_changed"]
    assert 'value="user."' in html and 'list="actions"' in html


# --------------------------------------------------------------------------- a user's factors

def test_revoke_one_factor_after_confirmation(app, world, browser):
    carol = world["carol"]
    keep = add_credential(carol, label="old phone")
    lost = add_credential(carol, label="lost phone")
    client = browser(world["admin"])
    page = client.get(f"/admin/users/{carol.id}").get_data(as_text=True)
    assert "lost phone" in page, page
    assert 'data-status="active_required"' in page, page
    # Each "Revoke" link names its factor to a screen reader, which may list the links out of their rows.
    links = re.findall(r'href="/admin/users/\d+/factors/(\d+)/revoke">(.*?)</a>', page)
    assert [(int(i), re.sub(r"<[^>]+>", "", text)) for i, text in links] == [
        (keep.id, "Revoke Authenticator app “old phone”"), (lost.id, "Revoke Authenticator app “lost phone”")]
    url = f"/admin/users/{carol.id}/factors/{lost.id}/revoke"
    confirm = client.get(url)
    assert confirm.status_code == 200 and "Confirm" in confirm.get_data(as_text=True)
    assert audit_count() == 0  # asking is not doing
    response = client.post(url, data={"confirm": "1"})
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(User, carol.id).second_factor_count == 1
    [event] = db.session.execute(select(AuditEvent)).scalars().all()
    assert (event.event, event.subject_id, event.actor_id) == ("factor.revoked", carol.id, world["admin"].id)
    assert client.post(url, data={"confirm": "1"}).status_code == 404  # already revoked
    assert keep.id != lost.id


def test_revoking_the_last_second_factor_retires_the_recovery_codes(app, world, browser):
    """As when the user removes it: codes that stand in for no second factor would be a way past
    the second step while the admin pages show 2FA as not active (and the next first enrolment
    would keep them rather than issue a new set)."""
    from idp.account.service import regenerate_recovery_codes
    from idp.factors.registry import current_registry

    carol = world["carol"]
    first, last = add_credential(carol, label="old phone"), add_credential(carol, label="lost phone")
    regenerate_recovery_codes(carol, audit_event=False)
    db.session.commit()
    codes = current_registry().store.for_factor("recovery_codes")
    assert codes.count(carol.id) == 10
    client = browser(world["admin"])

    assert client.post(f"/admin/users/{carol.id}/factors/{first.id}/revoke", data={"confirm": "1"}).status_code == 302
    assert codes.count(carol.id) == 10  # another second factor remains: the codes still stand in for it
    assert client.post(f"/admin/users/{carol.id}/factors/{last.id}/revoke", data={"confirm": "1"}).status_code == 302
    db.session.expire_all()
    assert codes.count(carol.id) == 0
    events = db.session.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars().all()
    assert [e.event for e in events] == ["factor.revoked", "factor.revoked"]
    assert "recovery_codes_revoked" not in events[0].details
    assert events[1].details["recovery_codes_revoked"] == 10


def test_a_recovery_code_is_not_revoked_as_a_factor(app, world, browser):
    """Recovery codes go as a set (Reset), a recovery QR code on its own page with its own event:
    the one-factor revocation refuses them, whatever id is typed into its URL."""
    from idp.account.service import regenerate_recovery_codes
    from idp.factors.registry import current_registry

    carol = world["carol"]
    add_credential(carol, label="phone")
    regenerate_recovery_codes(carol, audit_event=False)
    db.session.commit()
    [code, *_] = current_registry().store.list(carol.id, "recovery_codes")
    client = browser(world["admin"])
    assert client.post(f"/admin/users/{carol.id}/factors/{code.id}/revoke", data={"confirm": "1"}).status_code == 404
    assert audit_count() == 0 and current_registry().store.for_factor("recovery_codes").count(carol.id) == 10


def test_reset_second_factors_makes_a_required_user_enrol_again(app, world, browser):
    carol = world["carol"]
    add_credential(carol, label="a")
    add_credential(carol, label="b")
    client = browser(world["admin"])
    url = f"/admin/users/{carol.id}/reset-factors"
    assert client.get(url).status_code == 200
    response = client.post(url, data={"confirm": "1"}, follow_redirects=True)
    html = response.get_data(as_text=True)
    assert "2 revoked" in html and 'data-status="required_not_set_up"' in html
    db.session.expire_all()
    assert db.session.get(User, carol.id).second_factor_count == 0
    [event] = db.session.execute(select(AuditEvent)).scalars().all()
    assert event.event == "factor.reset" and event.details["revoked"] == 2
    again = client.post(url, data={"confirm": "1"}, follow_redirects=True)  # a second admin, a moment later
    assert "Nothing to reset" in again.get_data(as_text=True)
    assert audit_count() == 1


# --------------------------------------------------------------------------- French

def text(response):
    import html

    return html.unescape(response.get_data(as_text=True))


def test_pages_in_french(app, world, browser):
    client = browser(world["admin"])
    french = {"Accept-Language": "fr-FR,fr;q=0.9"}
    html = text(client.get("/admin/security", headers=french))
    assert "Rendre obligatoire l'authentification à 2 facteurs pour tous" in html
    assert "Sécurité" in html and "Utilisateurs" in html
    html = text(client.post("/admin/security/require-all", data={"on": "on"}, headers=french,
                            follow_redirects=True))
    assert "Rendre optionnelle l'authentification à 2 facteurs pour tous" in html
    html = text(client.get(f"/admin/users/{world['alice'].id}", headers=french))
    assert "Activer l'authentification à 2 facteurs" in html
    html = text(client.get("/admin/users", headers=french))
    assert "La 2FA a été rendue obligatoire pour cet utilisateur." in html


def test_french_catalog_is_complete():
    """Every string has a French translation (the one catalogue, idp/translations: scripts/translations.sh)."""
    from pathlib import Path

    from babel.messages.pofile import read_po

    import idp

    po = Path(idp.__file__).parent / "translations" / "fr" / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as handle:
        catalog = read_po(handle)
    untranslated = [m.id for m in catalog if m.id and not m.string]
    assert not untranslated


# --------------------------------------------------------------------------- bad input never 500s

GARBAGE_QUERIES = ["q=%00", "q=" + "x" * 5000, "q=%E2%80%AE%F0%9F%98%80", "status=%00", "after=" + "9" * 30,
                   "before=-1", "after=1&before=2", "user=%00", "action=%25%00", "action=" + "a" * 500,
                   # beyond the INTEGER ids of PostgreSQL (idp.db.MAX_ROW_ID), within a BIGINT
                   f"after={2**31}", f"before={2**40}", f"user_id={2**32}"]
GARBAGE_FORMS = [
    {"grace_days": "abc", "grace_logins": "1e9"}, {"grace_days": "999999999999999999999"},
    {"exempt": "y", "exempt_until": "9999-99-99"}, {"exempt": "y", "exempt_until": "\x00"},
    {"exempt": "y", "exempt_reason": "\x00 nul"}, {"factors": ["x" * 1000, "\x00"]}, {"on": "\x00"},
    {"require_2fa": "\x00", "exempt": "maybe"}, {"confirm": "\x00"},
]


def test_admin_routes_answer_bad_input_without_a_500(app, world, browser):
    credential = add_credential(world["bob"])
    client = browser(world["admin"])
    for rule, method in admin_routes(app):
        url = url_for_rule(rule, world["bob"].id, credential.id)
        if method == "GET":
            for query in GARBAGE_QUERIES:
                response = client.get(f"{url}?{query}")
                assert response.status_code < 500, (url, query, response.status_code)
        else:
            for data in GARBAGE_FORMS:
                response = client.post(url, data=data)
                assert response.status_code < 500, (url, data, response.status_code)
    for url in ("/admin/users/99999999999999999999999", "/admin/users/0/factors/99999999999999999999/revoke",
                f"/admin/users/{2**31}", f"/admin/users/{world['bob'].id}/factors/{2**31}/revoke",
                f"/admin/users/{2**33}/recovery-qr"):
        assert client.get(url).status_code == 404, url
    for credential_id in (2**31, 2**70):
        url = f"/admin/users/{world['bob'].id}/recovery-qr/{credential_id}/revoke"
        assert client.post(url, data={"confirm": "1"}).status_code == 404, url


def test_users_pages_link_forward_and_back(app, world, browser, make_user):
    for n in range(55):
        make_user(world["acme"], f"many{n:02d}@acme.test")
    client = browser(world["admin"])
    first = client.get("/admin/users?q=many").get_data(as_text=True)
    assert len(shields(first)) == 50 and 'rel="prev"' not in first
    next_url = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = client.get(next_url).get_data(as_text=True)
    assert len(shields(second)) == 5 and 'rel="next"' not in second
    assert not set(shields(first)) & set(shields(second))
    prev_url = re.search(r'rel="prev" href="([^"]+)"', second).group(1).replace("&amp;", "&")
    assert shields(client.get(prev_url).get_data(as_text=True)) == shields(first)


def test_disabling_a_user_promoted_meanwhile_still_keeps_an_admin(app, world):
    """The user was read as a plain user, then another request made them an admin and disabled
    the organization's other admin: the disable reads the role again under the organization's
    lock, and refuses to leave the organization with no enabled admin."""
    from sqlalchemy import update

    from idp.models import User
    from idp.users import LastAdmin, set_disabled

    alice = db.session.get(User, world["alice"].id)
    assert alice.role == "user"  # as this request loaded her
    with db.engine.begin() as other_request:
        other_request.execute(update(User).where(User.id == alice.id).values(role="admin"))
        other_request.execute(update(User).where(User.id == world["admin"].id).values(disabled=True))
    with pytest.raises(LastAdmin):
        set_disabled(alice, True, actor="test")
    db.session.rollback()
    assert db.session.get(User, alice.id).disabled is False


def test_a_disabled_factors_credential_counts_no_more_and_can_be_revoked(app, world, browser):
    """A TOTP credential made while TOTP was on, then `factors.disabled = ["totp"]` (simulated by
    a factor name no plugin answers to now): `idp init`'s recount stops counting it (the login
    offers it no more), and the admin can still revoke the lost device it stands for."""
    from idp.factors.registry import current_registry
    from idp.factors.store import recount_second_factors

    carol = world["carol"]
    kept = add_credential(carol, factor="totp", label="phone")
    retired = add_credential(carol, factor="retired_otp", label="old token")
    db.session.execute(update(User).where(User.id == carol.id).values(second_factor_count=2))
    db.session.commit()

    assert recount_second_factors() == 3  # carol's, and the world's made-up counts (admin, bob)
    assert recount_second_factors() == 0  # nothing left to repair: nothing written
    assert db.session.scalar(select(User.second_factor_count).where(User.id == carol.id)) == 1
    page = browser(world["admin"]).get(f"/admin/users/{carol.id}").get_data(as_text=True)
    assert f"/factors/{retired.id}/revoke" in page
    client = browser(world["admin"])
    assert client.post(f"/admin/users/{carol.id}/factors/{retired.id}/revoke",
                       data={"confirm": "1"}).status_code == 302
    db.session.expire_all()
    assert db.session.scalar(select(User.second_factor_count).where(User.id == carol.id)) == 1  # the TOTP
    assert [e.event for e in db.session.scalars(select(AuditEvent))] == ["factor.revoked"]
    assert [c.id for c in current_registry().store.list(carol.id)] == [kept.id]


def test_no_recovery_qr_code_for_a_disabled_account(app, world, browser):
    """As `idp recovery-qr issue` refuses: enabled first, then given a way back in."""
    from idp.models import Credential

    db.session.execute(update(User).where(User.id == world["bob"].id).values(disabled=True))
    db.session.commit()
    response = browser(world["admin"]).post(f"/admin/users/{world['bob'].id}/recovery-qr",
                                            data={"expires_in": "86400"})
    assert response.status_code == 400 and "This account is disabled" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count()).select_from(Credential)) == 0 and audit_count() == 0


def test_disabled_accounts_are_counted_apart(app, world, browser):
    """Account > Security and the users list count enabled accounts in the four statuses, and say
    how many disabled ones they leave out; the status filter lists what its count counts."""
    client = browser(world["admin"])
    html = client.get("/admin/security").get_data(as_text=True)
    assert "data-disabled-not-counted" not in html
    db.session.execute(update(User).where(User.id.in_([world["alice"].id, world["carol"].id])).values(disabled=True))
    db.session.commit()
    html = client.get("/admin/security").get_data(as_text=True)
    links = re.findall(r'<a href="/admin/users\?status=([a-z_]+)" class="count" aria-label="[^"]*">(\d+)</a>', html)
    assert links == [("not_active", "0"), ("required_not_set_up", "0"), ("active_voluntary", "2"),
                     ("active_required", "0")]
    assert 'data-disabled-not-counted="2"' in html and "2 disabled accounts are not counted" in html
    assert "0 users will have to set up" in html
    listing = client.get("/admin/users").get_data(as_text=True)
    assert 'data-disabled-not-counted="2"' in listing and "alice@acme.test" in listing
    filtered = client.get("/admin/users?status=not_active").get_data(as_text=True)
    assert "alice@acme.test" not in filtered
    db.session.execute(update(User).where(User.id == world["carol"].id).values(disabled=False))
    db.session.commit()
    assert "1 disabled account is not counted" in client.get("/admin/security").get_data(as_text=True)
