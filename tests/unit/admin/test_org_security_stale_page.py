"""Two admins on Account > Security: a save from a page shown before another admin's change of the
same setting is refused (409), writes nothing and no event, rather than undo that change unseen (a
grace period shortened after an incident put back; self-service push recovery, switched off for
work accounts, switched on again by a checkbox saved whole). The page then shows what is in force
now, with a `seen` from which the next save goes through. The commands pass no `seen`: unchanged."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from idp.db import db
from idp.models import AuditEvent, Organization


def _events(event: str | None = None) -> int:
    query = select(func.count()).select_from(AuditEvent)
    if event is not None:
        query = query.where(AuditEvent.event == event)
    return db.session.scalar(query)


def _form(html: str, action: str) -> str:
    found = re.search(r'<form method="post" action="%s">(.*?)</form>' % re.escape(action), html, re.S)
    assert found, html
    return found.group(1)


def _seen(html: str, action: str) -> str:
    found = re.search(r'<input type="hidden" name="seen" value="([0-9a-f]+)">', _form(html, action))
    assert found, _form(html, action)
    return found.group(1)


def _org(world) -> Organization:
    db.session.expire_all()
    return db.session.get(Organization, world["acme"].id)


@pytest.fixture
def two_admins(world, browser, make_user):
    """The organization's two admins, each with the security page open."""
    second = make_user(world["acme"], "second@acme.test", name="Sam Second", role="admin", second_factor_count=1)
    first_client, second_client = browser(world["admin"]), browser(second)
    pages = [c.get("/admin/security").get_data(as_text=True) for c in (first_client, second_client)]
    return (first_client, pages[0]), (second_client, pages[1])


def test_a_grace_period_saved_from_a_page_shown_before_another_admins_save_is_409(app, world, two_admins):
    (first, first_page), (second, second_page) = two_admins
    before = _events()
    response = first.post("/admin/security/grace", data={"grace_days": "3", "grace_logins": "",
                                                         "seen": _seen(first_page, "/admin/security/grace")})
    assert response.status_code == 302
    assert _org(world).grace_days == 3 and _events("policy.grace_changed") == before + 1
    stale = _seen(second_page, "/admin/security/grace")
    response = second.post("/admin/security/grace", data={"grace_days": "30", "grace_logins": "10", "seen": stale})
    assert response.status_code == 409
    html = response.get_data(as_text=True)
    assert "Not saved: another administrator changed this setting since this page was shown" in html
    # What is in force now, in the form, and a fingerprint of it.
    grace_form = _form(html, "/admin/security/grace")
    assert re.search(r'name="grace_days"[^>]*value="3"|value="3"[^>]*name="grace_days"', grace_form), grace_form
    assert 'aria-invalid="true"' in grace_form and "<title>Error:" in html
    org = _org(world)
    assert (org.grace_days, org.grace_logins) == (3, None) and _events() == before + 1
    fresh = _seen(html, "/admin/security/grace")
    assert fresh != stale
    # Seen now: saved, one event.
    response = second.post("/admin/security/grace", data={"grace_days": "30", "grace_logins": "10", "seen": fresh})
    assert response.status_code == 302
    org = _org(world)
    assert (org.grace_days, org.grace_logins) == (30, 10) and _events() == before + 2


def test_push_recovery_saved_from_a_page_shown_before_another_admin_switched_it_off_is_409(app, world, two_admins):
    (first, first_page), (second, second_page) = two_admins
    assert first.post("/admin/security/push-recovery",
                      data={"seen": _seen(first_page, "/admin/security/push-recovery")}).status_code == 302
    assert _org(world).self_push_recovery is False
    before = _events()
    # The second admin's page still shows it ticked; saving it (say, with a wish to change nothing)
    # turned it on again.
    response = second.post("/admin/security/push-recovery",
                           data={"allowed": "y", "seen": _seen(second_page, "/admin/security/push-recovery")})
    assert response.status_code == 409
    html = response.get_data(as_text=True)
    assert "another administrator changed this setting" in html
    assert not re.search(r'<input[^>]*checked[^>]*name="allowed"', _form(html, "/admin/security/push-recovery"))
    assert _org(world).self_push_recovery is False and _events() == before


def test_allowed_factors_saved_from_a_page_shown_before_another_admins_save_is_409(app, world, two_admins):
    (first, first_page), (second, second_page) = two_admins
    choices = re.findall(r'name="factors"[^>]*value="([a-z_]+)"', first_page)
    assert len(choices) >= 2, first_page
    before = _events()
    assert first.post("/admin/security/factors",
                      data={"factors": choices[:1], "seen": _seen(first_page, "/admin/security/factors")}
                      ).status_code == 302
    response = second.post("/admin/security/factors",
                           data={"all_factors": "y", "seen": _seen(second_page, "/admin/security/factors")})
    assert response.status_code == 409
    assert _org(world).allowed_factors == choices[:1] and _events() == before + 1
    assert _events("policy.allowed_factors_changed") == 1


def test_a_change_of_another_setting_meanwhile_does_not_refuse_a_save(app, world, two_admins):
    """One fingerprint per form: a grace period saved after another admin's change of the allowed
    factors (or of the rule for everyone) changes the grace period and nothing else."""
    (first, first_page), (second, second_page) = two_admins
    assert first.post("/admin/security/push-recovery",
                      data={"seen": _seen(first_page, "/admin/security/push-recovery")}).status_code == 302
    assert first.post("/admin/security/require-all", data={"on": "on"}).status_code == 302
    response = second.post("/admin/security/grace", data={"grace_days": "5", "grace_logins": "",
                                                          "seen": _seen(second_page, "/admin/security/grace")})
    assert response.status_code == 302
    org = _org(world)
    assert (org.grace_days, org.self_push_recovery, org.require_2fa) == (5, False, True)


def test_the_same_change_made_meanwhile_is_nothing_to_change(app, world, two_admins):
    (first, first_page), (second, second_page) = two_admins
    data = {"grace_days": "7", "grace_logins": ""}
    assert first.post("/admin/security/grace",
                      data={**data, "seen": _seen(first_page, "/admin/security/grace")}).status_code == 302
    before = _events()
    response = second.post("/admin/security/grace", data={**data, "seen": _seen(second_page, "/admin/security/grace")},
                           follow_redirects=True)
    assert response.status_code == 200 and "Nothing to change." in response.get_data(as_text=True)
    assert _events() == before


def test_a_page_shown_after_the_change_saves(app, world, browser):
    """The normal save: the page's own `seen`, one change, one event; a second save of the page shown
    after it, too."""
    client = browser(world["admin"])
    for days in ("4", "9"):
        page = client.get("/admin/security").get_data(as_text=True)
        response = client.post("/admin/security/grace",
                               data={"grace_days": days, "grace_logins": "",
                                     "seen": _seen(page, "/admin/security/grace")}, follow_redirects=True)
        assert response.status_code == 200 and "Grace period saved." in response.get_data(as_text=True)
        assert _org(world).grace_days == int(days)
    assert _events("policy.grace_changed") == 2


def test_a_refused_form_keeps_the_others_as_they_are(app, world, browser):
    """A form refused (bad input, a stale page) is shown again beside the others as they are now:
    built from the organization, not from the request (a checkbox of another form read the refused
    form's post, which did not carry it, as unticked)."""
    client = browser(world["admin"])
    html = client.post("/admin/security/grace", data={"grace_days": "-3"}).get_data(as_text=True)
    assert re.search(r'<input[^>]*checked[^>]*name="allowed"', _form(html, "/admin/security/push-recovery"))
    assert re.search(r'<input[^>]*checked[^>]*name="all_factors"', _form(html, "/admin/security/factors"))


def test_the_command_line_saves_whatever_the_pages_show(app, world):
    from idp.policy import settings

    org_id = world["acme"].id
    assert settings.set_grace(org_id, 2, None, settings.Actor.cli())
    assert settings.set_grace(org_id, 6, None, settings.Actor.cli())
    stale = settings.org_setting_version(Organization(grace_days=2), "grace")
    with pytest.raises(settings.PolicyChanged):
        settings.set_grace(org_id, 8, None, settings.Actor.cli(), seen=stale)
    assert _org(world).grace_days == 6
