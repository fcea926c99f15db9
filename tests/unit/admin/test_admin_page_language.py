"""The admin pages in the admin's language beyond their words: counts and shares written as the
language writes numbers (1,234 / 1 234, 12% / 12 %), and audit events named in words with their
event name beside them."""
from __future__ import annotations

import re
import secrets

from sqlalchemy import insert

from idp.db import db
from idp.models import User

FRENCH = {"Accept-Language": "fr-FR,fr;q=0.9"}
NNBSP, NBSP = "\u202f", "\u00a0"


def add_users(org, count: int) -> None:
    """`count` users without a second factor (2FA not active), in one statement."""
    db.session.execute(insert(User), [{"org_id": org.id, "email": f"user{i}@acme.test",
                                       "public_id": secrets.token_hex(16)} for i in range(count)])
    db.session.commit()


def distribution(html: str) -> dict[str, tuple[str, str]]:
    """status -> (count, share) as the distribution table shows them."""
    return {status: (count, share) for status, count, share in re.findall(
        r'<tr data-status="([a-z_]+)">.*?class="count"[^>]*>([^<]*)</a></td>\s*<td class="share">([^<]*)</td>',
        html, re.S)}


def test_counts_and_shares_in_english_and_french(app, world, browser):
    add_users(world["acme"], 1996)  # with the world's four: 2,000 users, 1,997 without 2FA (alice)
    client = browser(world["admin"])

    english = client.get("/admin/security").get_data(as_text=True)
    assert distribution(english)["not_active"] == ("1,997", "100%")
    assert distribution(english)["active_voluntary"] == ("2", "0%")
    assert re.search(r'<th scope="row">Total</th><td>2,000</td>', english)
    assert 'aria-label="1,997 users: 2FA not active"' in english
    assert "Distribution of the 2,000 users" in english
    assert "If you require it, 1,998 users will have to set up" in english  # ngettext's count
    assert "2FA not active (1,997)" in client.get("/admin/users").get_data(as_text=True)

    french = client.get("/admin/security", headers=FRENCH).get_data(as_text=True)
    assert distribution(french)["not_active"] == (f"1{NNBSP}997", f"100{NBSP}%")
    assert re.search(rf'<th scope="row">Total</th><td>2{NNBSP}000</td>', french)
    assert f"1{NNBSP}998 utilisateurs" in french
    assert "1,99" not in french and "2,000" not in french
    assert f"(1{NNBSP}997)" in client.get("/admin/users", headers=FRENCH).get_data(as_text=True)


def test_a_share_below_one_percent_and_a_plural_flash(app, world, browser):
    """The shares are rounded as the locale rounds them; a flash message's count (built in
    Python: idp.template_i18n.plural_text) is formatted too."""
    add_users(world["acme"], 1200)
    client = browser(world["admin"])
    html = client.get("/admin/security").get_data(as_text=True)
    assert distribution(html)["required_not_set_up"] == ("1", "0%")  # carol: 1 of 1,205
    html = client.post("/admin/security/require-all", data={"on": "on"}, headers=FRENCH,
                       follow_redirects=True).get_data(as_text=True)
    assert distribution(html)["required_not_set_up"] == (f"1{NNBSP}202", f"100{NBSP}%")
    client.post("/admin/security/require-all", data={"on": "off"})
    db.session.execute(User.__table__.update().where(User.email.like("user%")).values(mfa_setting="required"))
    db.session.commit()
    client.post("/admin/security/require-all", data={"on": "on"}, follow_redirects=True)
    html = client.post("/admin/security/require-all", data={"on": "off"}, headers=FRENCH,
                       follow_redirects=True).get_data(as_text=True)
    assert f"sauf pour 1{NNBSP}201 utilisateurs" in html, re.findall(r'class="flash[^"]*"[^>]*>([^<]*)', html)


def test_audit_events_in_words_with_their_names(app, world, browser):
    from idp import audit

    for event in ("factor.enrolled", "policy.grace_changed", "vendor.custom_thing"):
        audit.record(event, org_id=world["acme"].id, subject_id=world["alice"].id)
    db.session.commit()
    client = browser(world["admin"])

    html = client.get("/admin/audit").get_data(as_text=True)
    cells = dict(re.findall(r'<tr data-event="([^"]+)">.*?<td class="event">(.*?)</td>', html, re.S))
    assert cells["factor.enrolled"] == ('<span class="event-label">Second factor added</span> '
                                        '<code class="event-name">factor.<wbr>enrolled</code>')
    # An event without a label (a third-party plugin's): its name alone.
    assert cells["vendor.custom_thing"] == '<code class="event-name">vendor.<wbr>custom_thing</code>'
    # The suggestions submit the name and show the words.
    assert '<option value="factor.enrolled" label="Second factor added">' in html
    assert '<option value="vendor.custom_thing">' in html

    french = client.get("/admin/audit", headers=FRENCH).get_data(as_text=True)
    assert '<span class="event-label">Second facteur ajouté</span>' in french
    assert '<option value="policy.grace_changed" label="Délai de grâce modifié">' in french
    # The filter still takes the name (or its beginning), whatever the page's language.
    filtered = client.get("/admin/audit?action=factor.", headers=FRENCH).get_data(as_text=True)
    assert re.findall(r'<tr data-event="([^"]+)"', filtered) == ["factor.enrolled"]


def test_exemption_dates_in_the_page_language(app, world, browser):
    """The end of an exemption, on the user's page and in the users list, and a refused past
    date: the day as the language writes it, not an ISO string."""
    from datetime import date

    from sqlalchemy import update

    alice = world["alice"]
    db.session.execute(update(User).where(User.id == alice.id).values(mfa_setting="exempt",
                                                                    exempt_until=date(2999, 12, 31)))
    db.session.commit()
    client = browser(world["admin"])
    assert "Exempt until Dec 31, 2999." in client.get(f"/admin/users/{alice.id}").get_data(as_text=True)
    french = client.get(f"/admin/users/{alice.id}", headers=FRENCH).get_data(as_text=True)
    assert "31 déc. 2999" in french and "2999-12-31" not in french.replace('value="2999-12-31"', "")
    users = client.get("/admin/users", headers=FRENCH).get_data(as_text=True)
    assert re.search(r'data-exempt><span aria-hidden="true">[^<]*→ 31 déc\. 2999<', users)
    # The arrow is for the eye; a screen reader reads the sentence ("exempté flèche droite" said nothing).
    assert re.search(r'<span class="sr-only">Exempté jusqu(&#39;|\')au 31 déc\. 2999\.</span>', users)

    response = client.post(f"/admin/users/{alice.id}/security", headers=FRENCH,
                           data={"exempt": "y", "exempt_until": "2001-01-01"})
    assert response.status_code == 400
    assert "1 janv. 2001" in response.get_data(as_text=True)
    assert "2001-01-01" not in response.get_data(as_text=True).replace('value="2001-01-01"', "")
