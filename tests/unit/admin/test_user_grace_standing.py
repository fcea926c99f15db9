"""A user required without a second factor: their admin page says where they stand with the grace
period (running, with its end; over; withdrawn), not always "must set it up at their next login"."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from idp.db import db, utcnow
from idp.models import Organization, User
from idp.policy.decide import GRACE_WITHDRAWN

MUST_NOW = "The user must set it up at their next login."


def _grace(org, days=None, logins=None):
    db.session.execute(update(Organization).where(Organization.id == org.id)
                       .values(grace_days=days, grace_logins=logins))
    db.session.commit()


def _carol(world, **values):
    db.session.execute(update(User).where(User.id == world["carol"].id).values(**values))
    db.session.commit()
    return world["carol"]


def _page(browser, world, lang="en"):
    return browser(world["admin"]).get(f"/admin/users/{world['carol'].id}",
                                       headers={"Accept-Language": lang}).get_data(as_text=True)


def test_a_running_grace_in_days_says_until_when(app, world, browser):
    _grace(world["acme"], days=7)
    since = utcnow().replace(microsecond=0) - timedelta(days=2)
    _carol(world, required_since=since)
    html = _page(browser, world)
    assert 'data-grace="running"' in html
    end = since + timedelta(days=7)
    assert f"{end.strftime('%b')} {end.day}, {end.year}" in html and "UTC" in html
    assert MUST_NOW not in html


def test_a_running_grace_in_logins_says_how_many_are_left(app, world, browser):
    _grace(world["acme"], logins=3)
    _carol(world, required_since=utcnow(), logins_since_required=1)
    html = _page(browser, world)
    assert 'data-grace="running"' in html and "2 more logins" in html
    assert MUST_NOW not in html
    assert "2 connexions de plus" in _page(browser, world, "fr")


def test_an_ended_grace_says_the_next_login_sets_it_up(app, world, browser):
    _grace(world["acme"], days=7)
    _carol(world, required_since=utcnow() - timedelta(days=8))
    html = _page(browser, world)
    assert 'data-grace="over"' in html and MUST_NOW in html


def test_a_withdrawn_grace_says_so(app, world, browser):
    _grace(world["acme"], days=7)
    _carol(world, required_since=utcnow(), logins_since_required=GRACE_WITHDRAWN)
    html = _page(browser, world)
    assert 'data-grace="withdrawn"' in html and MUST_NOW in html


def test_no_grace_configured_says_nothing_more(app, world, browser):
    html = _page(browser, world)
    assert "data-grace" not in html and MUST_NOW in html
