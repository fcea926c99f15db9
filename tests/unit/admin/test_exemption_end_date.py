"""An exemption's end date as the admin types it, as it is enforced, and as the pages say it back:
the last exempt day, included, ending at midnight UTC (whatever the admin's own time zone)."""
from __future__ import annotations

import re
from datetime import timedelta

from idp.db import db, utcnow
from idp.models import User

END_OF_DAY_EN = "the exemption ends at the end of that day, at midnight UTC"
END_OF_DAY_FR = "l'exemption prend fin à la fin de ce jour, à minuit UTC"


def _exempt(client, user, until):
    response = client.post(f"/admin/users/{user.id}/security",
                           data={"exempt": "y", "exempt_until": until.isoformat(), "exempt_reason": "travel"})
    assert response.status_code == 302, response.get_data(as_text=True)


def test_the_date_field_says_which_day_and_time_zone_end_the_exemption(app, world, browser):
    html = browser(world["admin"]).get(f"/admin/users/{world['alice'].id}").get_data(as_text=True)
    field = re.search(r'<input[^>]*name="exempt_until"[^>]*>', html).group(0)
    hint = re.search(r'aria-describedby="([^"]+)"', field)
    assert hint, field
    text = re.search(rf'id="{hint.group(1)}"[^>]*>(.*?)</', html, re.S).group(1)
    assert "last exempt day, included" in text and "UTC" in text, text


def test_the_page_shows_back_the_day_typed_and_when_it_ends(app, world, browser):
    client = browser(world["admin"])
    until = utcnow().date() + timedelta(days=30)
    _exempt(client, world["alice"], until)
    db.session.expire_all()
    assert db.session.get(User, world["alice"].id).exempt_until == until
    html = client.get(f"/admin/users/{world['alice'].id}").get_data(as_text=True)
    assert f'value="{until.isoformat()}"' in html  # the form gives back what was typed
    assert re.search(rf"Exempt until {until.strftime('%b')} {until.day}, {until.year}\.", html), html
    assert END_OF_DAY_EN in html


def test_in_french_too(app, world, browser):
    client = browser(world["admin"])
    until = utcnow().date() + timedelta(days=30)
    _exempt(client, world["alice"], until)
    html = client.get(f"/admin/users/{world['alice'].id}",
                      headers={"Accept-Language": "fr"}).get_data(as_text=True)
    assert f'value="{until.isoformat()}"' in html
    assert re.search(rf"Exempté jusqu'au {until.day} \S+ {until.year}\.", html), html
    assert END_OF_DAY_FR in html


def test_a_refused_date_keeps_the_hint_with_the_error(app, world, browser):
    yesterday = utcnow().date() - timedelta(days=1)
    response = browser(world["admin"]).post(f"/admin/users/{world['alice'].id}/security",
                                            data={"exempt": "y", "exempt_until": yesterday.isoformat()})
    assert response.status_code == 400
    field = re.search(r'<input[^>]*name="exempt_until"[^>]*>', response.get_data(as_text=True)).group(0)
    assert 'aria-describedby="exempt-until-hint exempt_until-error-1"' in field, field
    assert field.count("aria-describedby") == 1
