"""Two admins on one user's Security section: a save from a page shown before another admin's change
is refused (409) rather than undo that change unseen (a requirement set after an incident turned back
into the exemption the stale page showed); the page then shows what is in force now."""
from __future__ import annotations

import re

from sqlalchemy import func, select

from idp.db import db
from idp.models import AuditEvent, User
from idp.policy import settings


def _events():
    return db.session.scalar(select(func.count()).select_from(AuditEvent))


def _seen(html):
    return re.search(r'name="seen"[^>]*value="([^"]*)"|value="([^"]*)"[^>]*name="seen"', html)


def test_a_save_from_a_page_shown_before_another_admins_change_is_409(app, world, browser, make_user):
    alice = world["alice"]
    settings.set_user_requirement(alice.id, settings.EXEMPT, None, "on leave", settings.Actor.cli())
    client = browser(world["admin"])
    page = client.get(f"/admin/users/{alice.id}").get_data(as_text=True)
    seen = _seen(page)
    assert seen, page
    seen = seen.group(1) or seen.group(2)
    # Another admin requires 2FA of alice (an incident) while the first one's page is open.
    settings.set_user_requirement(alice.id, settings.REQUIRED, None, None, settings.Actor.cli())
    before = _events()
    response = client.post(f"/admin/users/{alice.id}/security",
                           data={"exempt": "y", "exempt_reason": "on leave, back in May", "seen": seen})
    assert response.status_code == 409
    html = response.get_data(as_text=True)
    assert "changed since this page was shown" in html
    assert 'name="require_2fa"' in html and re.search(r'<input[^>]*checked[^>]*name="require_2fa"|'
                                                      r'<input[^>]*name="require_2fa"[^>]*checked', html)
    db.session.expire_all()
    assert db.session.get(User, alice.id).mfa_setting == "required" and _events() == before
    fresh = _seen(html)
    fresh = fresh.group(1) or fresh.group(2)
    assert fresh != seen
    # Seen now: saved.
    response = client.post(f"/admin/users/{alice.id}/security",
                           data={"exempt": "y", "exempt_reason": "on leave", "seen": fresh})
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(User, alice.id).mfa_setting == "exempt" and _events() == before + 1


def test_the_same_change_made_meanwhile_is_nothing_to_change(app, world, browser):
    alice = world["alice"]
    client = browser(world["admin"])
    page = client.get(f"/admin/users/{alice.id}").get_data(as_text=True)
    seen = _seen(page)
    seen = seen.group(1) or seen.group(2)
    settings.set_user_requirement(alice.id, settings.REQUIRED, None, None, settings.Actor.cli())
    response = client.post(f"/admin/users/{alice.id}/security", data={"require_2fa": "y", "seen": seen})
    assert response.status_code == 302
