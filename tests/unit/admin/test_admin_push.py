"""Admin views for push (issue 6): a user's suspended push and "Resume push approvals", push
devices on the user page, the recent security alerts on Account > Security, and the users
list's mark. Access on the new routes is also covered by the URL-map tests of
test_admin_views.py (every `admin.*` rule, whatever its name)."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from idp.db import db, utcnow
from idp.models import AuditEvent, User
from test_admin_views import admin_routes


@pytest.fixture(scope="module", autouse=True)
def push_factor(admin_app):
    """The push factor in this module's app (registered before its first request, as the
    push tests do: pyproject.toml does not list it as an `idp.factors` entry point yet)."""
    from idp.factors.registry import current_registry
    from idp_plugins.push.factor import PushFactor

    with admin_app.app_context():
        registry = current_registry()
        return registry.get("push") if "push" in registry else registry.register(PushFactor)


def audit_count():
    return db.session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()


def events(name=None):
    query = select(AuditEvent).order_by(AuditEvent.id)
    if name:
        query = query.where(AuditEvent.event == name)
    return db.session.execute(query).scalars().all()


def suspend(user, when=None):
    row = db.session.get(User, user.id)
    row.push_suspended_at = when or utcnow().replace(microsecond=0) - timedelta(hours=1)
    db.session.commit()
    return row.push_suspended_at


def record(event, user, *, at=None, **details):
    db.session.add(AuditEvent(event=event, org_id=user.org_id, actor_id=user.id, actor=user.email,
                              subject_id=user.id, at=at or utcnow(), details=details))
    db.session.commit()


def add_push_device(user, name="Pixel 8"):
    from idp.factors.registry import current_registry

    info = current_registry().store.for_factor("push").create(
        user.id, name, {"device_name": name, "public_jwk": {"kty": "EC"}}, lookup_key=f"push-{user.id}-{name}")
    db.session.commit()
    return info


def test_the_new_routes_are_in_the_url_map_enumeration(app):
    rules = {(rule.rule, method) for rule, method in admin_routes(app)}
    assert ("/admin/users/<int:user_id>/resume-push", "GET") in rules
    assert ("/admin/users/<int:user_id>/resume-push", "POST") in rules


# --------------------------------------------------------------------------- resume push

def test_user_page_shows_the_suspension_and_resume_clears_it_with_one_event(app, world, browser):
    bob = world["bob"]
    since = suspend(bob)
    client = browser(world["admin"])
    page = client.get(f"/admin/users/{bob.id}").get_data(as_text=True)
    when = rf"{since:%b} {since.day}, {since.year}, {since.hour % 12 or 12}:{since:%M}\s{since:%p} UTC"  # (utc filter)
    assert re.search(rf"Push approvals suspended since {when} after a fraud report\.", page), page
    assert f'href="/admin/users/{bob.id}/resume-push"' in page and "Resume push approvals" in page
    assert f"/admin/audit?user_id={bob.id}" in page

    url = f"/admin/users/{bob.id}/resume-push"
    confirm = client.get(url)
    assert confirm.status_code == 200 and "Resume push approvals?" in confirm.get_data(as_text=True)
    assert re.search(rf"were suspended on {when} after a fraud report", confirm.get_data(as_text=True))
    assert audit_count() == 0  # asking is not doing
    done = client.post(url, data={"confirm": "1"}, follow_redirects=True)
    assert done.status_code == 200 and "Push approvals resumed." in done.get_data(as_text=True)
    assert "after a fraud report" not in done.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, bob.id).push_suspended_at is None
    [event] = events()
    assert (event.event, event.subject_id, event.actor_id, event.actor) == (
        "policy.push_suspension_cleared", bob.id, world["admin"].id, "admin@acme.test")

    # Again: nothing to do, nothing written; the GET goes back to the user page.
    assert "Nothing to change." in client.post(url, data={"confirm": "1"}, follow_redirects=True).get_data(as_text=True)
    assert client.get(url).status_code == 302
    assert audit_count() == 1


def test_a_fraud_report_made_after_the_confirmation_was_shown_is_asked_about_again(app, world, browser):
    """The suspension's date is the first report's: a second one, made while the admin read the
    confirmation, would otherwise be cleared unseen with it."""
    bob = world["bob"]
    suspend(bob)
    record("push.fraud_reported", bob, device="Pixel 8")
    client = browser(world["admin"])
    url = f"/admin/users/{bob.id}/resume-push"
    page = client.get(url).get_data(as_text=True)
    seen = re.search(r'name="reports_seen" value="(\d+)"', page).group(1)
    record("login.push_fraud_reported", bob, factor="push")
    again = client.post(url, data={"confirm": "1", "reports_seen": seen})
    assert again.status_code == 409 and "Another fraud report" in again.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, bob.id).push_suspended_at is not None
    assert not events("policy.push_suspension_cleared")
    # Confirmed in view of it, it is cleared.
    seen = re.search(r'name="reports_seen" value="(\d+)"', again.get_data(as_text=True)).group(1)
    assert client.post(url, data={"confirm": "1", "reports_seen": seen}).status_code == 302
    db.session.expire_all()
    assert db.session.get(User, bob.id).push_suspended_at is None


def test_resume_push_needs_a_csrf_token(app, world, browser):
    app.config["WTF_CSRF_ENABLED"] = True
    bob = world["bob"]
    suspend(bob)
    client = browser(world["admin"])
    url = f"/admin/users/{bob.id}/resume-push"
    assert client.post(url, data={"confirm": "1"}).status_code == 400
    assert audit_count() == 0
    page = client.get(url).get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert client.post(url, data={"confirm": "1", "csrf_token": token}).status_code == 302
    assert audit_count() == 1


def test_resume_push_refused_to_a_non_admin_and_to_another_orgs_admin(app, world, browser):
    bob = world["bob"]
    since = suspend(bob)
    url = f"/admin/users/{bob.id}/resume-push"
    user = browser(world["alice"])
    assert user.get(url).status_code == 403 and user.post(url, data={"confirm": "1"}).status_code == 403
    other = browser(world["other_admin"])
    assert other.get(url).status_code == 404 and other.post(url, data={"confirm": "1"}).status_code == 404
    db.session.expire_all()
    assert db.session.get(User, bob.id).push_suspended_at == since
    assert audit_count() == 0


# --------------------------------------------------------------------------- push devices

def test_user_page_lists_push_devices_with_revoke(app, world, browser):
    bob = world["bob"]
    device = add_push_device(bob, "Pixel 8")
    client = browser(world["admin"])
    page = client.get(f"/admin/users/{bob.id}").get_data(as_text=True)
    row = re.search(rf'<tr data-credential-id="{device.id}" data-factor="push">(.*?)</tr>', page, re.S)
    assert row, page
    assert "Pixel 8" in row.group(1) and f"{device.created_at:%b} {device.created_at.day}, {device.created_at.year}" in row.group(1)
    assert "—" in row.group(1)  # never used
    revoke = f"/admin/users/{bob.id}/factors/{device.id}/revoke"
    assert revoke in row.group(1)
    assert client.post(revoke, data={"confirm": "1"}).status_code == 302
    [event] = events()
    assert event.event == "factor.revoked" and event.details["factor"] == "push"
    assert f'data-credential-id="{device.id}"' not in client.get(f"/admin/users/{bob.id}").get_data(as_text=True)


def test_registry_describes_one_row_per_push_device(app, world):
    from idp.factors.registry import current_registry

    bob = world["bob"]
    add_push_device(bob, "Pixel 8")
    add_push_device(bob, "iPhone")
    rows = [(f.name, d.label) for f, d in current_registry().describe_credentials(bob.id)]
    assert rows == [("push", "Pixel 8"), ("push", "iPhone")]


# --------------------------------------------------------------------------- security alerts

def alerts(html):
    return re.findall(r'<tr data-alert="([a-z]+)" data-event="([^"]+)" data-subject-id="(\d*)">', html)


def test_alerts_show_this_orgs_fraud_reports_and_denials_never_another_orgs(app, world, browser):
    bob, alice, stranger = world["bob"], world["alice"], world["stranger"]
    now = utcnow()
    record("push.fraud_reported", bob, at=now - timedelta(hours=1), device_name="Pixel 8",
           application="Payroll", ip="203.0.113.9")
    record("push.denied", alice, at=now - timedelta(hours=2), device_name="iPhone", reason="denied")
    record("push.fraud_reported", stranger, at=now - timedelta(hours=1), device_name="Other phone")
    record("login.push_fraud_reported", stranger, at=now - timedelta(minutes=5))
    record("push.denied", bob, at=now - timedelta(days=31))  # too old
    record("policy.user_requirement_changed", bob, at=now)    # not an alert

    html = browser(world["admin"]).get("/admin/security").get_data(as_text=True)
    assert alerts(html) == [("fraud", "push.fraud_reported", str(bob.id)),
                            ("denial", "push.denied", str(alice.id))]
    assert "Recent security alerts" in html and "Reported as fraud" in html
    assert "Pixel 8" in html and "Payroll" in html and "203.0.113.9" in html
    assert "stranger@other.test" not in html and "Other phone" not in html
    assert f'href="/admin/audit?user_id={bob.id}"' in html

    other = browser(world["other_admin"]).get("/admin/security").get_data(as_text=True)
    assert alerts(other) == [("fraud", "login.push_fraud_reported", str(stranger.id)),
                             ("fraud", "push.fraud_reported", str(stranger.id))]
    assert "bob@acme.test" not in other and "Payroll" not in other


def test_a_fraud_report_from_the_login_pipeline_alone_is_shown(app, world, browser):
    bob = world["bob"]
    record("login.push_fraud_reported", bob, factor="push", reason="fraud")
    html = browser(world["admin"]).get("/admin/security").get_data(as_text=True)
    assert alerts(html) == [("fraud", "login.push_fraud_reported", str(bob.id))]


def test_the_browsers_echo_of_a_phones_answer_is_shown_once(app, world, browser):
    bob = world["bob"]
    now = utcnow()
    record("push.fraud_reported", bob, at=now - timedelta(seconds=30), device_name="Pixel 8")
    record("login.push_fraud_reported", bob, at=now - timedelta(seconds=20), factor="push", reason="fraud")
    record("push.denied", bob, at=now - timedelta(hours=1), device_name="Pixel 8")
    record("login.second_factor_denied", bob, at=now - timedelta(hours=1) + timedelta(seconds=8))
    html = browser(world["admin"]).get("/admin/security").get_data(as_text=True)
    assert alerts(html) == [("fraud", "push.fraud_reported", str(bob.id)),
                            ("denial", "push.denied", str(bob.id))]


def test_a_wrong_number_denial_says_so(app, world, browser):
    """A wrong number typed on the phone is what an attacker's login looks like to a careful user."""
    record("push.denied", world["bob"], device_name="Pixel 8", reason="wrong_number")
    record("push.denied", world["alice"], device_name="iPhone", reason="denied")
    html = browser(world["admin"]).get("/admin/security").get_data(as_text=True)
    assert html.count("Denied: wrong number typed") == 1 and html.count(">Denied<") == 1


def test_a_security_key_suspended_as_a_possible_clone_is_an_alert(app, world, browser):
    record("webauthn.clone_suspected", world["bob"], label="YubiKey 5", stored_sign_count=20, presented_sign_count=19)
    html = browser(world["admin"]).get("/admin/security").get_data(as_text=True)
    assert alerts(html) == [("clone", "webauthn.clone_suspected", str(world["bob"].id))]
    assert "Security key may be cloned (suspended)" in html and "YubiKey 5" in html


def test_no_alert(app, world, browser):
    html = browser(world["admin"]).get("/admin/security").get_data(as_text=True)
    assert "data-no-alerts" in html and not alerts(html)


def test_the_alerts_link_opens_the_audit_log_of_that_user_exactly(app, world, browser, make_user):
    bob = world["bob"]
    jimbob = make_user(world["acme"], "jimbob@acme.test")
    record("push.fraud_reported", bob)
    record("push.denied", jimbob)
    record("push.denied", world["stranger"])
    client = browser(world["admin"])
    html = client.get(f"/admin/audit?user_id={bob.id}").get_data(as_text=True)
    assert re.findall(r'data-event="([^"]+)"', html) == ["push.fraud_reported"]
    assert 'value="bob@acme.test"' in html
    # another organization's user id shows nothing of theirs
    html = client.get(f"/admin/audit?user_id={world['stranger'].id}").get_data(as_text=True)
    assert re.findall(r'data-event="([^"]+)"', html) == []


# --------------------------------------------------------------------------- users list

def test_users_list_marks_users_with_push_suspended(app, world, browser):
    suspend(world["bob"])
    html = browser(world["admin"]).get("/admin/users").get_data(as_text=True)
    marked = re.findall(r'data-user-id="(\d+)">(?:(?!</tr>).)*?data-push-suspended', html, re.S)
    assert marked == [str(world["bob"].id)]


@pytest.mark.parametrize("path", ["/admin/security", "/admin/users"])
def test_pages_in_french(app, world, browser, path):
    suspend(world["bob"])
    record("push.fraud_reported", world["bob"])
    html = browser(world["admin"]).get(path, headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert ("Alertes de sécurité récentes" in html) if path == "/admin/security" else ("notifications suspendues" in html)
