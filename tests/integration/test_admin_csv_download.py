"""The admin's "Download CSV" over real HTTP: an admin signed in through the login pages follows
the users page's link and gets every user of their organization (beyond the page's size, read in
several batches and sent chunked as they are read), a formula defused, nothing of another
organization; a member signed in the same way gets 403, nobody signed in is sent to sign in."""
from __future__ import annotations

import csv
import io
import re
from html import unescape

import pytest

from fixtures.oidc import FormBrowser, RelyingParty, password_login, seed, start_server


@pytest.fixture
def small_pages(migrated_database_url, monkeypatch):
    """A live server whose users list shows 2 users a page, its downloads read 3 rows a batch."""
    from idp.admin import export

    monkeypatch.setattr(export, "BATCH", 3)
    server = start_server(migrated_database_url, {"admin.page_size": 2})
    yield server
    server.stop()


def _people(server, org_id: int) -> None:
    from idp import audit
    from idp.db import db
    from idp.models import Organization, User
    from idp.security.tokens import random_token

    with server.context():
        other = Organization(name="Ölwerk Zürich")
        db.session.add(other)
        db.session.flush()
        names = {f"member{n}@acme.test": f"Member {n}" for n in range(5)}
        names["formula@acme.test"] = '=HYPERLINK("http://evil.test","click")'
        for email, name in names.items():
            db.session.add(User(public_id=random_token(16), org_id=org_id, email=email, name=name, password_hash="x"))
        stranger = User(public_id=random_token(16), org_id=other.id, email="stranger@other.test", name="S",
                        password_hash="x")
        db.session.add(stranger)
        db.session.flush()
        audit.record("user.created", org_id=other.id, actor="cli", subject_id=stranger.id, details={})
        db.session.commit()


def _csv(response) -> list[dict]:
    body = response.content.decode("utf-8")
    assert body.startswith("\ufeff")
    return list(csv.DictReader(io.StringIO(body[1:])))


def test_an_admin_downloads_every_user_of_their_organization_and_no_one_else(small_pages):
    seeded = seed(small_pages)
    _people(small_pages, seeded.org_id)

    admin = FormBrowser(small_pages.url)
    password_login(admin, RelyingParty(small_pages.url, seeded.first_party), seeded.admin_email, seeded.password)
    page = admin.get("/admin/users")
    assert page.status == 200 and len(re.findall(r'data-user-id="', page.text)) == 2
    link = unescape(re.search(r'<a href="([^"]+)" download', page.text).group(1))
    assert link == "/admin/users.csv"

    response = admin.http.get(small_pages.url + link, stream=True)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers.get("Transfer-Encoding") == "chunked"  # sent as read, no length known first
    assert re.fullmatch(r'attachment; filename="users-Acme-\d{4}-\d\d-\d\d\.csv"', response.headers["Content-Disposition"])
    rows = _csv(response)
    emails = [row["email"] for row in rows]
    assert sorted(emails) == sorted(["alice@acme.test", "admin@acme.test", "formula@acme.test"]
                                    + [f"member{n}@acme.test" for n in range(5)])
    formula = next(row for row in rows if row["email"] == "formula@acme.test")
    assert formula["name"] == '\'=HYPERLINK("http://evil.test","click")'

    events = _csv(admin.http.get(small_pages.url + "/admin/audit.csv"))
    assert events[0]["event"] == "admin.exported" and events[0]["actor"] == seeded.admin_email
    assert all(event["subject"] != "stranger@other.test" for event in events)
    assert admin.http.get(small_pages.url + "/admin/users.csv?status=nope").status_code == 400


def test_a_member_gets_403_and_nobody_signed_in_is_sent_to_sign_in(small_pages):
    seeded = seed(small_pages)

    member = FormBrowser(small_pages.url)
    password_login(member, RelyingParty(small_pages.url, seeded.first_party), seeded.user_email, seeded.password)
    for url in ("/admin/users.csv", "/admin/audit.csv"):
        assert member.http.get(small_pages.url + url, allow_redirects=False).status_code == 403
        anonymous = FormBrowser(small_pages.url).http.get(small_pages.url + url, allow_redirects=False)
        assert anonymous.status_code in (302, 303) and "csv" not in anonymous.headers.get("Content-Type", "")
