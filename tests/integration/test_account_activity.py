"""The security page's "Recent activity": the user's own view of the audit log (idp.account.activity).

Over HTTP against a live server: a wrong password from one browser, a sign-in from another,
an administrator's change, another user's events.
"""
from __future__ import annotations

import re

from sqlalchemy import select

from fixtures.oidc import FormBrowser, RelyingParty, password_login

FIREFOX_ON_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME_ON_WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                     "Chrome/126.0.0.0 Safari/537.36")


def activity_on(page) -> list[str]:
    """The rows of the activity table, as text, newest first."""
    table = re.search(r'<table class="activity stack">.*?</table>', page.text, re.S)
    assert table, page.text
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(0).split("<tbody>")[1], re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", row).split()) for row in rows]


def browser_with(live_server, agent: str) -> FormBrowser:
    browser = FormBrowser(live_server.url)
    browser.http.headers["User-Agent"] = agent
    return browser


def test_a_refused_password_and_a_sign_in_show_with_their_browsers(live_server, seeded):
    rp = RelyingParty(live_server.url, seeded.first_party)
    guesser = browser_with(live_server, CHROME_ON_WINDOWS)
    guesser.get(rp.authorization_url())
    guesser.login(seeded.user_email, "not the password")
    owner = browser_with(live_server, FIREFOX_ON_LINUX)
    password_login(owner, rp, seeded.user_email, seeded.password)
    rows = activity_on(owner.get("/account/security"))
    assert len(rows) == 2, rows
    assert "Signed in: First" in rows[0] and "Firefox on Linux" in rows[0] and "127.0.0.1" in rows[0]
    assert "Sign-in refused: wrong password: First" in rows[1] and "Chrome on Windows" in rows[1]
    # one human format for every moment (template_i18n.utc): "Dec 3, 2026, 9:36 PM UTC"
    assert all(re.match(r"[A-Z][a-z]{2} \d{1,2}, \d{4}, \d{1,2}:\d\d\s[AP]M UTC", row) for row in rows), rows


def test_an_administrators_change_says_so_and_others_events_stay_out(live_server, seeded):
    from idp import audit
    from idp.db import db
    from idp.models import User

    with live_server.context():
        alice, admin = (db.session.scalar(select(User).where(User.email == email))
                        for email in (seeded.user_email, seeded.admin_email))
        audit.record("factor.revoked", org_id=alice.org_id, actor_id=admin.id, actor=admin.email,
                     subject_id=alice.id, details={"factor": "totp", "label": "phone", "by": "admin"})
        audit.record("user.role_changed", org_id=alice.org_id, actor_id=admin.id, actor=admin.email,
                     subject_id=alice.id, details={"from": "user", "to": "user"})         # not a kind shown
        audit.record("factor.enrolled", org_id=admin.org_id, actor_id=admin.id, actor=admin.email,
                     subject_id=admin.id, details={"factor": "totp"})                     # the admin's own
        db.session.commit()
    browser = FormBrowser(live_server.url)
    browser.get("/account/security")
    browser.login(seeded.user_email, seeded.password)
    rows = activity_on(browser.page)
    assert len(rows) == 2 and "Signed in" in rows[0], rows                  # (this sign-in, without an application)
    assert "Sign-in method removed: Authenticator app (by an administrator)" in rows[1]
    assert "—" in rows[1]                                                   # no request: no browser, no address


def test_the_activity_speaks_the_users_language(live_server, seeded):
    browser = FormBrowser(live_server.url)
    browser.get("/account/security?ui_locales=fr")
    browser.login(seeded.user_email, seeded.password)
    page = browser.get("/account/security?ui_locales=fr")
    assert "Activité récente" in page.text and any("Connexion" in row for row in activity_on(page))
    # An event and what it is about, in French typography (a space before the colon).
    rp = RelyingParty(live_server.url, seeded.first_party)
    browser.get(rp.authorization_url(prompt="login"))
    browser.login(seeded.user_email, seeded.password)
    page = browser.get("/account/security?ui_locales=fr")
    assert "Connexion : First" in activity_on(page)[0], activity_on(page)
