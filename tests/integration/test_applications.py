"""Applications with access: the security page lists the applications a user consented to or
that hold a live token of theirs, and "Remove access" forgets the consent and revokes what the
application holds (idp.consents, idp/account/applications.py).

Over HTTP against a live server, with an independent OIDC client for the tokens.
"""
from __future__ import annotations

import re

from sqlalchemy import select

from fixtures.oidc import FormBrowser, password_login

OFFLINE = "openid email profile offline_access"


def events(live_server, name: str) -> list:
    from idp.db import db
    from idp.models import AuditEvent

    with live_server.context():
        return db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)).all()


def consents(live_server) -> list[tuple[str, str]]:
    from idp.db import db
    from idp.models import ConsentGrant

    with live_server.context():
        return [(row.client_id, row.scope) for row in db.session.scalars(select(ConsentGrant))]


def applications_on(page) -> dict[str, str]:
    """client_id -> the row's HTML, for each application the security page lists."""
    return dict(re.findall(r'<tr data-application="([^"]+)"(.*?)</tr>', page.text, re.S))


def refresh_error(rp, tokens: dict) -> str | None:
    answer = rp.token_request({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    return answer.json().get("error") if answer.status_code == 400 else None


def remove_form(page, client_id: str) -> dict:
    return next(f for f in page.forms() if f["action"].endswith(f"/applications/{client_id}/remove"))


def signed_in_to_both(live_server, seeded, rp_factory):
    """One browser signed in to the first-party client, then to the third-party one (which asks
    for consent; offline_access needs prompt=consent for it): the browser and each one's tokens."""
    browser = FormBrowser(live_server.url)
    first, third = rp_factory(seeded.first_party), rp_factory(seeded.third_party)
    password_login(browser, first, seeded.user_email, seeded.password, scope=OFFLINE)
    first_tokens = first.exchange(browser.last_redirect)
    browser.get(third.authorization_url(scope=OFFLINE, prompt="consent"))
    assert "wants to access your account" in browser.page.text
    browser.consent("allow")
    return browser, (first, first_tokens), (third, third.exchange(browser.last_redirect))


def test_the_page_lists_both_applications_and_removes_the_third_partys_access(live_server, seeded, rp_factory):
    browser, (first, first_tokens), (third, third_tokens) = signed_in_to_both(live_server, seeded, rp_factory)
    page = browser.get("/account/security")
    listed = applications_on(page)
    assert set(listed) == {seeded.first_party["client_id"], seeded.third_party["client_id"]}, page.text
    third_row, first_row = listed[seeded.third_party["client_id"]], listed[seeded.first_party["client_id"]]
    for row in (third_row, first_row):
        assert "See your e-mail address" in row and "stays signed in" in row and " UTC" in row
    assert "Third" in third_row and re.search(r"[A-Z][a-z]{2} \d{1,2}, \d{4}</td>", third_row)       # the day it was allowed
    assert "First" in first_row and "not asked (a trusted application)" in first_row

    page = browser.submit(remove_form(page, seeded.third_party["client_id"]))
    assert page.status == 200 and page.url.endswith("/account/security")
    assert "<bdi>Third</bdi> can no longer use your account" in page.text
    assert list(applications_on(page)) == [seeded.first_party["client_id"]]
    assert consents(live_server) == []
    assert refresh_error(third, third_tokens) == "invalid_grant"
    assert third.userinfo(third_tokens["access_token"]).status_code == 401
    assert refresh_error(first, first_tokens) is None                       # the other application keeps its access
    [event] = events(live_server, "consent.withdrawn")
    assert event.actor == seeded.user_email and event.actor_id == event.subject_id
    assert event.details == {"by": "self", "client_id": seeded.third_party["client_id"],
                             "scope": "email offline_access openid profile", "tokens_revoked": 1}

    # The browser is still signed in, but the application asks for consent again.
    browser.get(third.authorization_url(scope="openid email"))
    assert browser.last_redirect is None and "wants to access your account" in browser.page.text

    csrf = page.form_with("csrf_token")["fields"]["csrf_token"]
    again = browser.http.post(f"{live_server.url}/account/security/applications/{seeded.third_party['client_id']}"
                              "/remove", data={"csrf_token": csrf}, allow_redirects=False)
    assert again.status_code == 404 and len(events(live_server, "consent.withdrawn")) == 1   # nothing left to remove


def test_removing_a_first_party_application_signs_it_out(live_server, seeded, rp_factory):
    browser, (first, first_tokens), (third, third_tokens) = signed_in_to_both(live_server, seeded, rp_factory)
    page = browser.submit(remove_form(browser.get("/account/security"), seeded.first_party["client_id"]))
    assert "<bdi>First</bdi> can no longer use your account" in page.text
    assert list(applications_on(page)) == [seeded.third_party["client_id"]]
    assert refresh_error(first, first_tokens) == "invalid_grant"
    assert first.userinfo(first_tokens["access_token"]).status_code == 401
    assert refresh_error(third, third_tokens) is None
    [event] = events(live_server, "consent.withdrawn")
    assert event.details["scope"] is None and event.details["tokens_revoked"] == 1
    assert [client for client, _ in consents(live_server)] == [seeded.third_party["client_id"]]


def test_an_account_without_applications_says_so(live_server, seeded):
    browser = FormBrowser(live_server.url)
    browser.get("/account/security")
    browser.login(seeded.user_email, seeded.password)
    assert applications_on(browser.page) == {} and "No application has access" in browser.page.text


def test_another_users_application_cannot_be_removed(live_server, seeded, rp_factory):
    victim, _, (third, tokens) = signed_in_to_both(live_server, seeded, rp_factory)
    mallory = FormBrowser(live_server.url)
    mallory.get("/account/security")
    mallory.login(seeded.admin_email, seeded.password)
    csrf = mallory.page.form_with("csrf_token")["fields"]["csrf_token"]
    for client_id in (seeded.third_party["client_id"], seeded.first_party["client_id"], "made-up", "x" * 65,
                      "a%00b", "..%2F..%2Fsecurity"):
        answer = mallory.http.post(f"{live_server.url}/account/security/applications/{client_id}/remove",
                                   data={"csrf_token": csrf}, allow_redirects=False)
        assert answer.status_code == 404, (client_id, answer.status_code)
    assert refresh_error(third, tokens) is None and len(consents(live_server)) == 1
    assert events(live_server, "consent.withdrawn") == []


def test_removing_needs_a_csrf_token(live_server, seeded, rp_factory):
    browser, _, (third, tokens) = signed_in_to_both(live_server, seeded, rp_factory)
    path = f"/account/security/applications/{seeded.third_party['client_id']}/remove"
    assert browser.http.post(f"{live_server.url}{path}", allow_redirects=False).status_code == 400
    assert refresh_error(third, tokens) is None and len(consents(live_server)) == 1


def test_an_application_whose_tokens_expired_or_were_signed_out_is_not_listed(live_server, seeded, rp_factory):
    """Without a consent, only live tokens give access: after "Sign out everywhere" the first-party
    application is gone from the list, the third-party one stays (its consent is remembered)."""
    browser, _, _ = signed_in_to_both(live_server, seeded, rp_factory)
    confirm = browser.get("/account/security/sign-out-everywhere")
    browser.submit(next(f for f in confirm.forms() if f["action"].endswith("/sign-out-everywhere")))
    browser.get("/account/security")
    browser.login(seeded.user_email, seeded.password)
    listed = applications_on(browser.page)
    assert list(listed) == [seeded.third_party["client_id"]]
    assert "stays signed in" not in listed[seeded.third_party["client_id"]]
    assert "—" in listed[seeded.third_party["client_id"]]                     # no live token: not used since


# ---------------------------------------------------------------- the admin's user page

def user_id_of(live_server, email: str) -> int:
    from idp.db import db
    from idp.models import User

    with live_server.context():
        return db.session.scalar(select(User.id).where(User.email == email))


def admin_browser(live_server, email: str, password: str) -> FormBrowser:
    browser = FormBrowser(live_server.url)
    browser.get("/admin/users")
    browser.login(email, password)
    return browser


def test_an_admin_sees_a_users_applications_and_removes_one(live_server, seeded, rp_factory):
    _, (first, first_tokens), (third, third_tokens) = signed_in_to_both(live_server, seeded, rp_factory)
    admin = admin_browser(live_server, seeded.admin_email, seeded.password)
    user_id = user_id_of(live_server, seeded.user_email)
    page = admin.get(f"/admin/users/{user_id}")
    assert set(applications_on(page)) == {seeded.first_party["client_id"], seeded.third_party["client_id"]}
    path = f"/admin/users/{user_id}/applications/{seeded.third_party['client_id']}/remove"
    confirm = admin.get(path)
    assert confirm.status == 200 and "Third" in confirm.text and seeded.user_email in confirm.text
    assert third.userinfo(third_tokens["access_token"]).status_code == 200   # asking changed nothing
    page = admin.submit(next(f for f in confirm.forms() if f["action"].endswith("/remove")))
    assert page.status == 200 and "<bdi>Third</bdi> can no longer use the account of <bdi>alice@acme.test</bdi>" in page.text
    assert list(applications_on(page)) == [seeded.first_party["client_id"]]
    assert refresh_error(third, third_tokens) == "invalid_grant" and refresh_error(first, first_tokens) is None
    [event] = events(live_server, "consent.withdrawn")
    assert (event.actor, event.subject_id) == (seeded.admin_email, user_id)
    assert event.details["by"] == "admin" and event.details["tokens_revoked"] == 1
    assert admin.http.get(f"{live_server.url}{path}", allow_redirects=False).status_code == 404   # removed already


def test_an_admin_of_another_organization_cannot_remove_an_application(live_server, seeded, rp_factory):
    from idp.db import db
    from idp.models import Organization, User

    _, _, (third, tokens) = signed_in_to_both(live_server, seeded, rp_factory)
    with live_server.context():
        other = Organization(name="Other")
        db.session.add(other)
        db.session.flush()
        db.session.add(User(public_id="other-admin", org_id=other.id, email="boss@other.test", role="admin",
                            password_hash=live_server.app.extensions["idp.passwords"].hash(seeded.password)))
        db.session.commit()
    stranger = admin_browser(live_server, "boss@other.test", seeded.password)
    path = f"/admin/users/{user_id_of(live_server, seeded.user_email)}/applications/" \
           f"{seeded.third_party['client_id']}/remove"
    assert stranger.http.get(f"{live_server.url}{path}", allow_redirects=False).status_code == 404
    csrf = stranger.get("/account/security").form_with("csrf_token")["fields"]["csrf_token"]
    answer = stranger.http.post(f"{live_server.url}{path}", data={"csrf_token": csrf, "confirm": "1"},
                                allow_redirects=False)
    assert answer.status_code == 404 and refresh_error(third, tokens) is None
    assert events(live_server, "consent.withdrawn") == []


def test_an_application_made_third_party_after_the_login_is_not_called_trusted(live_server, seeded, rp_factory):
    """Its tokens came without asking, while it was first-party: the page does not vouch for it."""
    from idp.db import db
    from idp.models import Client

    browser, _, _ = signed_in_to_both(live_server, seeded, rp_factory)
    with live_server.context():
        db.session.scalar(select(Client).where(Client.client_id == seeded.first_party["client_id"])).first_party = False
        db.session.commit()
    row = applications_on(browser.get("/account/security"))[seeded.first_party["client_id"]]
    assert "trusted application" not in row and "—" in row
