"""A password changed (by the user, by an admin) or an account disabled ends what the old state
allowed: every other session and every token of the user (idp.users), audited once.

Over HTTP against a live server, with an independent OIDC client for the tokens.
"""
from __future__ import annotations

import pytest
from sqlalchemy import select, update

from fixtures.oidc import PASSWORD, FormBrowser, password_login

NEW_PASSWORD = "a brand new passphrase"


def signed_in(live_server, seeded, rp_factory, email: str, password: str | None = None):
    """A browser signed in as `email` through the first-party client, and that login's tokens."""
    browser = FormBrowser(live_server.url)
    rp = rp_factory(seeded.first_party)
    password_login(browser, rp, email, password or seeded.password, scope="openid email profile offline_access")
    return browser, rp, rp.exchange(browser.last_redirect)


def events(live_server, name: str) -> list:
    from idp.db import db
    from idp.models import AuditEvent

    with live_server.context():
        return db.session.scalars(select(AuditEvent).where(AuditEvent.event == name)).all()


def user_row(live_server, email: str):
    from idp.db import db
    from idp.models import User

    with live_server.context():
        row = db.session.scalar(select(User).where(User.email == email))
        db.session.expunge(row)
        return row


def tokens_dead(rp, tokens: dict) -> bool:
    refreshed = rp.token_request({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    return refreshed.status_code == 400 and rp.userinfo(tokens["access_token"]).status_code == 401


def change_form(browser: FormBrowser):
    page = browser.get("/account/password")
    assert page.status == 200, page.text[:500]
    return page.form_with("current")


def can_sign_in(live_server, seeded, rp_factory, email: str, password: str) -> bool:
    browser = FormBrowser(live_server.url)
    browser.get(rp_factory(seeded.first_party).authorization_url())
    browser.login(email, password)
    return browser.last_redirect is not None and "code=" in browser.last_redirect


# ---------------------------------------------------------------- the user's own change

def test_a_user_changes_their_password_and_every_session_ends_this_one_too(live_server, seeded, rp_factory):
    """This browser too: a thief's copy of its cookie would otherwise live on (the session it
    kept was the same row)."""
    here, rp, here_tokens = signed_in(live_server, seeded, rp_factory, seeded.user_email)
    elsewhere, _, elsewhere_tokens = signed_in(live_server, seeded, rp_factory, seeded.user_email)
    thief = FormBrowser(live_server.url)
    thief.http.cookies.update(here.http.cookies)
    page = here.submit(change_form(here), {"current": seeded.password, "password": NEW_PASSWORD,
                                           "confirm": NEW_PASSWORD})
    assert page.status == 200 and "/login/" in page.url and "sign in with the new one" in page.text
    for browser in (here, elsewhere, thief):
        assert "/login/" in browser.get("/account/security").url
    assert tokens_dead(rp, here_tokens) and tokens_dead(rp, elsewhere_tokens)   # every app signs in again
    assert can_sign_in(live_server, seeded, rp_factory, seeded.user_email, NEW_PASSWORD)
    assert not can_sign_in(live_server, seeded, rp_factory, seeded.user_email, seeded.password)
    [event] = events(live_server, "user.password_changed")
    assert event.actor == seeded.user_email and event.details["by"] == "self"
    assert event.details["sessions_ended"] == 2 and event.details["tokens_revoked"] == 2


@pytest.mark.parametrize("values, status, message", [
    ({"current": "not my password"}, 401, "not your current password"),
    ({"confirm": NEW_PASSWORD + "x"}, 400, "The two passwords differ"),
    ({"password": "short", "confirm": "short"}, 400, "at least 8 characters"),
    ({"password": "tab\there ok", "confirm": "tab\there ok"}, 400, "control characters"),
    # The current password again: no change, so no sign-out everywhere and no "password changed" mail.
    ({"password": PASSWORD, "confirm": PASSWORD}, 400, "must differ from the current one"),
])
def test_a_refused_change_changes_nothing(live_server, seeded, rp_factory, values, status, message):
    browser, rp, tokens = signed_in(live_server, seeded, rp_factory, seeded.user_email)
    before = user_row(live_server, seeded.user_email).password_hash
    page = browser.submit(change_form(browser), {"current": seeded.password, "password": NEW_PASSWORD,
                                                 "confirm": NEW_PASSWORD, **values})
    assert page.status == status and message in page.text, page.text[:1500]
    assert user_row(live_server, seeded.user_email).password_hash == before
    assert rp.userinfo(tokens["access_token"]).status_code == 200
    assert events(live_server, "user.password_changed") == []


def test_wrong_current_passwords_share_the_logins_lockout(live_server, seeded, rp_factory):
    """A borrowed session is no way round the login form's guessing limit (10 per account)."""
    browser, _, _ = signed_in(live_server, seeded, rp_factory, seeded.user_email)
    statuses = [browser.submit(change_form(browser), {"current": f"guess {n}", "password": NEW_PASSWORD,
                                                      "confirm": NEW_PASSWORD}).status for n in range(11)]
    assert statuses[:10] == [401] * 10 and statuses[10] == 429
    page = browser.submit(change_form(browser), {"current": seeded.password, "password": NEW_PASSWORD,
                                                 "confirm": NEW_PASSWORD})
    assert page.status == 429 and "Too many attempts" in page.text        # the right one waits too
    assert len(events(live_server, "password_change.password_failed")) == 10


def test_the_change_needs_a_session_and_a_csrf_token(live_server, seeded, rp_factory):
    stranger = FormBrowser(live_server.url)
    assert "/login/" in stranger.get("/account/password").url
    browser, _, _ = signed_in(live_server, seeded, rp_factory, seeded.user_email)
    response = browser.http.post(f"{live_server.url}/account/password", allow_redirects=False,
                                 data={"current": seeded.password, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert response.status_code == 400
    assert events(live_server, "user.password_changed") == []


# ---------------------------------------------------------------- the admin's pages

def admin_page(admin: FormBrowser, live_server, email: str, action: str):
    user_id = user_row(live_server, email).id
    page = admin.get(f"/admin/users/{user_id}/{action}")
    assert page.status == 200, page.text[:500]
    return page


def test_an_admin_disables_an_account_and_everything_of_it_ends(live_server, seeded, rp_factory):
    admin, _, _ = signed_in(live_server, seeded, rp_factory, seeded.admin_email)
    victim, rp, tokens = signed_in(live_server, seeded, rp_factory, seeded.user_email)
    page = admin_page(admin, live_server, seeded.user_email, "disable")
    page = admin.submit(next(f for f in page.forms() if f["action"].endswith("/disable")))
    assert page.status == 200 and 'data-account="disabled"' in page.text
    assert "/login/" in victim.get("/account/security").url and tokens_dead(rp, tokens)
    assert not can_sign_in(live_server, seeded, rp_factory, seeded.user_email, seeded.password)
    [event] = events(live_server, "user.disabled")
    assert event.actor == seeded.admin_email and event.details == {"sessions_ended": 1, "tokens_revoked": 1}

    page = admin_page(admin, live_server, seeded.user_email, "enable")
    page = admin.submit(next(f for f in page.forms() if f["action"].endswith("/enable")))
    assert 'data-account="enabled"' in page.text and len(events(live_server, "user.enabled")) == 1
    assert can_sign_in(live_server, seeded, rp_factory, seeded.user_email, seeded.password)
    assert tokens_dead(rp, tokens)                                         # enabling brings nothing back


def test_a_code_issued_before_the_account_was_disabled_buys_nothing(live_server, seeded, rp_factory):
    admin, _, _ = signed_in(live_server, seeded, rp_factory, seeded.admin_email)
    victim = FormBrowser(live_server.url)
    rp = rp_factory(seeded.first_party)
    password_login(victim, rp, seeded.user_email, seeded.password)   # a code, not yet exchanged
    page = admin_page(admin, live_server, seeded.user_email, "disable")
    admin.submit(next(f for f in page.forms() if f["action"].endswith("/disable")))
    admin.submit(next(f for f in admin_page(admin, live_server, seeded.user_email, "enable").forms()
                      if f["action"].endswith("/enable")))
    code = victim.callback_params()["code"]
    exchanged = rp.token_request({"grant_type": "authorization_code", "code": code,
                                  "redirect_uri": rp.client["redirect_uri"], "code_verifier": rp.verifier})
    assert exchanged.status_code == 400 and exchanged.json()["error"] == "invalid_grant"


def test_an_admin_sets_a_new_password(live_server, seeded, rp_factory):
    admin, _, _ = signed_in(live_server, seeded, rp_factory, seeded.admin_email)
    _, rp, tokens = signed_in(live_server, seeded, rp_factory, seeded.user_email)
    page = admin_page(admin, live_server, seeded.user_email, "password")
    form = page.form_with("confirm")
    assert admin.submit(form, {"password": NEW_PASSWORD, "confirm": "typo"}).status == 400
    page = admin.submit(admin_page(admin, live_server, seeded.user_email, "password").form_with("confirm"),
                        {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert page.status == 200 and "flash-success" in page.text
    assert tokens_dead(rp, tokens)
    assert can_sign_in(live_server, seeded, rp_factory, seeded.user_email, NEW_PASSWORD)
    [event] = events(live_server, "user.password_changed")
    assert event.details["by"] == "admin" and event.actor == seeded.admin_email


def test_an_admins_new_password_for_a_member_is_hashed_with_no_transaction_open(live_server, seeded, rp_factory,
                                                                              monkeypatch):
    """The hash comes before the access checks: they began the transaction that sets the password
    (the member's row held), which on SQLite held the database's write lock through argon2. A
    refused password is not hashed, and the checks and the event still come in one transaction."""
    from fixtures.database import writes_while_hashing

    admin, _, _ = signed_in(live_server, seeded, rp_factory, seeded.admin_email)
    while_hashing = writes_while_hashing(live_server, monkeypatch)
    refused = admin.submit(admin_page(admin, live_server, seeded.user_email, "password").form_with("confirm"),
                           {"password": "short", "confirm": "short"})
    assert refused.status == 400 and while_hashing == [] and events(live_server, "user.password_changed") == []
    page = admin.submit(admin_page(admin, live_server, seeded.user_email, "password").form_with("confirm"),
                        {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert page.status == 200 and "flash-success" in page.text and while_hashing == [True]
    [event] = events(live_server, "user.password_changed")
    assert event.details["by"] == "admin" and event.actor == seeded.admin_email
    assert can_sign_in(live_server, seeded, rp_factory, seeded.user_email, NEW_PASSWORD)


def test_an_admins_new_password_is_not_hashed_for_a_user_they_may_not_give_one(live_server, seeded, rp_factory,
                                                                            monkeypatch):
    """The access checks come before the hash (argon2's CPU): a user of another organization or
    none (404), the admin themselves (their security page), another admin (403) get their answer
    with no password hashed, and nothing changed."""
    from fixtures.database import writes_while_hashing
    from idp.db import db
    from idp.models import Organization, User

    with live_server.context():
        other = Organization(name="Other")
        db.session.add(other)
        db.session.flush()
        stranger = User(public_id="stranger-sub", org_id=other.id, email="bob@other.test", password_hash="x")
        peer = User(public_id="peer-sub", org_id=seeded.org_id, email="dave@acme.test", password_hash="x",
                    role="admin")
        db.session.add_all([stranger, peer])
        db.session.commit()
        stranger_id, peer_id = stranger.id, peer.id
    admin, _, _ = signed_in(live_server, seeded, rp_factory, seeded.admin_email)
    own_id = user_row(live_server, seeded.admin_email).id
    csrf_token = admin.get("/admin/security").forms()[0]["fields"]["csrf_token"]
    while_hashing = writes_while_hashing(live_server, monkeypatch)
    for user_id, status in [(stranger_id, 404), (999_999, 404), (own_id, 302), (peer_id, 403)]:
        response = admin.http.post(f"{live_server.url}/admin/users/{user_id}/password", allow_redirects=False,
                                   data={"csrf_token": csrf_token, "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
        assert response.status_code == status, (user_id, response.status_code)
    assert while_hashing == [] and events(live_server, "user.password_changed") == []
    assert user_row(live_server, "bob@other.test").password_hash == "x"
    assert user_row(live_server, "dave@acme.test").password_hash == "x"


def test_right_to_left_names_and_addresses_are_isolated_on_the_admin_pages(live_server, seeded, rp_factory):
    """A member's name in Arabic beside "(disabled)", or an address inside a confirmation's or a
    flash message's sentence, reordered the text around it: each is shown in <bdi>, HTML's isolate."""
    from idp.db import db
    from idp.models import User

    with live_server.context():
        db.session.execute(update(User).where(User.email == seeded.user_email).values(name="سارة", disabled=True))
        db.session.commit()
    admin, _, _ = signed_in(live_server, seeded, rp_factory, seeded.admin_email)
    assert "<bdi>سارة</bdi></a> <span class=\"muted\">" in admin.get("/admin/users").text
    user_id = user_row(live_server, seeded.user_email).id
    page = admin.get(f"/admin/users/{user_id}/enable")
    assert f"<p><bdi>{seeded.user_email}</bdi> " in page.text
    assert "<h1><bdi>سارة</bdi></h1>" in admin.get(f"/admin/users/{user_id}").text
    page = admin.get(f"/admin/users/{user_id}/sign-out")
    page = admin.submit(next(f for f in page.forms() if f["action"].endswith("/sign-out")))
    assert f"<bdi>{seeded.user_email}</bdi> was signed out everywhere." in page.text  # a flash, through the cookie


def test_an_admin_does_not_disable_themselves_nor_reach_another_organization(live_server, seeded, rp_factory):
    from idp.db import db
    from idp.models import Organization, User

    admin, _, _ = signed_in(live_server, seeded, rp_factory, seeded.admin_email)
    own_id = user_row(live_server, seeded.admin_email).id
    page = admin.get(f"/admin/users/{own_id}/disable")
    assert "security page" in page.text and 'data-account=' not in page.text
    with live_server.context():
        other = Organization(name="Other")
        db.session.add(other)
        db.session.flush()
        stranger = User(public_id="stranger-sub", org_id=other.id, email="bob@other.test", password_hash="x")
        db.session.add(stranger)
        db.session.commit()
        stranger_id = stranger.id
    for action in ("disable", "enable", "password"):
        assert admin.get(f"/admin/users/{stranger_id}/{action}").status == 404
    csrf_token = admin.get("/admin/security").forms()[0]["fields"]["csrf_token"]
    response = admin.http.post(f"{live_server.url}/admin/users/{stranger_id}/disable", allow_redirects=False,
                               data={"csrf_token": csrf_token})
    assert response.status_code == 404
    assert not user_row(live_server, seeded.admin_email).disabled and not user_row(live_server, "bob@other.test").disabled
    assert events(live_server, "user.disabled") == []


# ---------------------------------------------------------------- roles

def test_an_admin_makes_another_admin_and_the_operator_takes_it_back(live_server, seeded, rp_factory):
    """Promoting a member is the admin's; demoting another admin is the operator's
    (idp.admin.access.peer_admin_refused; tests/integration/test_admin_peer_admins.py)."""
    from fixtures.cli import ok, run_idp

    admin, _, _ = signed_in(live_server, seeded, rp_factory, seeded.admin_email)
    member, _, _ = signed_in(live_server, seeded, rp_factory, seeded.user_email)
    assert member.http.get(f"{live_server.url}/admin/users", allow_redirects=False).status_code == 403
    page = admin_page(admin, live_server, seeded.user_email, "role")
    form = next(f for f in page.forms() if f["action"].endswith("/role"))
    assert form["fields"]["role"] == "admin"
    page = admin.submit(form)
    assert 'data-role="admin"' in page.text
    assert member.http.get(f"{live_server.url}/admin/users", allow_redirects=False).status_code == 200
    again = admin.submit(form)                       # the same form posted twice: now another admin's role
    assert again.status == 403 and 'id="peer-admin-refused"' in again.text
    user_id = user_row(live_server, seeded.user_email).id
    assert admin.http.get(f"{live_server.url}/admin/users/{user_id}/role").status_code == 403
    ok(run_idp("user", "set-role", "--email", seeded.user_email, "--role", "user",
               database_url=live_server.database_url))
    assert 'data-role="user"' in admin.get(f"/admin/users/{user_id}").text
    assert member.http.get(f"{live_server.url}/admin/users", allow_redirects=False).status_code == 403
    assert [(e.details["from"], e.details["to"], e.actor) for e in events(live_server, "user.role_changed")] == [
        ("user", "admin", seeded.admin_email), ("admin", "user", "cli")]


def test_an_admin_does_not_change_their_own_role(live_server, seeded, rp_factory):
    admin, _, _ = signed_in(live_server, seeded, rp_factory, seeded.admin_email)
    own_id = user_row(live_server, seeded.admin_email).id
    page = admin.get(f"/admin/users/{own_id}/role")
    assert "security page" in page.text
    csrf = admin.get("/admin/security").forms()[0]["fields"]["csrf_token"]
    admin.http.post(f"{live_server.url}/admin/users/{own_id}/role", data={"csrf_token": csrf, "role": "user"})
    assert user_row(live_server, seeded.admin_email).role == "admin" and events(live_server, "user.role_changed") == []


# ---------------------------------------------------------------- new users

def test_an_admin_adds_a_user_to_their_organization(live_server, seeded, rp_factory):
    from idp.db import db
    from idp.models import Organization, User

    admin, _, _ = signed_in(live_server, seeded, rp_factory, seeded.admin_email)
    with live_server.context():  # an address of another organization's: the same answer as one of ours
        other = Organization(name="Other")
        db.session.add(other)
        db.session.flush()
        db.session.add(User(public_id="stranger-sub", org_id=other.id, email="bob@other.test", password_hash="x"))
        db.session.commit()
    form = admin.get("/admin/users/new").form_with("confirm")
    values = {"email": " Carol@Acme.test ", "name": "Carol", "how": "password", "password": NEW_PASSWORD,
              "confirm": NEW_PASSWORD}
    for bad, message in (({"email": "not an address"}, "Invalid e-mail address"),
                         ({"email": seeded.user_email}, "already in use"),
                         ({"email": "bob@other.test"}, "already in use"),
                         ({"password": "short", "confirm": "short"}, "at least 8 characters"),
                         ({"confirm": "typo"}, "The two passwords differ")):
        page = admin.submit(form, {**values, **bad})
        assert page.status == 400 and message in page.text, page.text[:1500]
    page = admin.submit(form, values)
    assert page.status == 200 and "carol@acme.test" in page.text and 'data-role="user"' in page.text
    carol = user_row(live_server, "carol@acme.test")
    assert carol.org_id == seeded.org_id and carol.name == "Carol" and carol.role == "user"
    assert can_sign_in(live_server, seeded, rp_factory, "carol@acme.test", NEW_PASSWORD)
    [event] = events(live_server, "user.created")
    assert event.actor == seeded.admin_email and event.subject_id == carol.id


def test_a_new_users_password_is_hashed_with_no_transaction_open(live_server, seeded, rp_factory, monkeypatch):
    """The hash comes before the look-up of the address: that look-up began a transaction, which
    on SQLite held the database's write lock through argon2 (every other request waiting)."""
    from fixtures.database import writes_while_hashing

    admin, _, _ = signed_in(live_server, seeded, rp_factory, seeded.admin_email)
    form = admin.get("/admin/users/new").form_with("confirm")
    while_hashing = writes_while_hashing(live_server, monkeypatch)
    page = admin.submit(form, {"email": "carol@acme.test", "name": "Carol", "how": "password",
                               "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert page.status == 200 and user_row(live_server, "carol@acme.test") is not None
    assert while_hashing == [True]


def test_only_an_admin_adds_users(live_server, seeded, rp_factory):
    member, _, _ = signed_in(live_server, seeded, rp_factory, seeded.user_email)
    assert member.http.get(f"{live_server.url}/admin/users/new", allow_redirects=False).status_code == 403
    csrf = member.get("/account/security").forms()[0]["fields"]["csrf_token"]
    response = member.http.post(f"{live_server.url}/admin/users/new", allow_redirects=False,
                                data={"csrf_token": csrf, "email": "mallory@acme.test", "password": NEW_PASSWORD,
                                      "confirm": NEW_PASSWORD, "admin": "y"})
    assert response.status_code == 403 and events(live_server, "user.created") == []


# ---------------------------------------------------------------- what was under way

@pytest.mark.parametrize("change", ["password", "disable"])
def test_a_login_under_way_ends_when_the_password_changes_or_the_account_is_disabled(
        live_server, seeded, rp_factory, change):
    """The attacker typed the old password and waits on the consent page (or a push approval):
    the admin's change must end that login too, not only the finished ones."""
    admin, _, _ = signed_in(live_server, seeded, rp_factory, seeded.admin_email)
    attacker = FormBrowser(live_server.url)
    attacker.get(rp_factory(seeded.third_party).authorization_url())
    consent = attacker.login(seeded.user_email, seeded.password)
    assert consent.form_with("action")
    if change == "password":
        admin.submit(admin_page(admin, live_server, seeded.user_email, "password").form_with("confirm"),
                     {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    else:
        page = admin_page(admin, live_server, seeded.user_email, "disable")
        admin.submit(next(f for f in page.forms() if f["action"].endswith("/disable")))
    page = attacker.consent("allow")
    assert attacker.last_redirect is None and "/login/expired" in page.url
    assert "/login/" in attacker.get("/account/security").url
    assert events(live_server, "login.succeeded")[-1].subject_id != user_row(live_server, seeded.user_email).id


def test_a_token_of_a_login_older_than_the_sign_out_is_dead_even_unrevoked(live_server, seeded, rp_factory):
    """A refresh racing the sign-out can store a successor just after the UPDATE that revoked the
    others (it inherits its login's auth_time): tokens of a login older than the sign-out are
    refused wherever they are presented. Here the escaped successor is made by hand."""
    import requests
    from sqlalchemy import update

    from idp import users
    from idp.db import db
    from idp.models import Token, User

    _, rp, tokens = signed_in(live_server, seeded, rp_factory, seeded.user_email)
    with live_server.context():
        user = db.session.scalar(select(User).where(User.email == seeded.user_email))
        users.set_password(user, NEW_PASSWORD, actor="cli")
        db.session.commit()
        # the login happened in an earlier second than the sign-out (its one-second granularity)
        db.session.execute(update(Token).values(revoked_at=None, auth_time=Token.auth_time - 2))
        db.session.commit()
    assert rp.userinfo(tokens["access_token"]).status_code == 401
    refreshed = rp.token_request({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    auth = (rp.client["client_id"], rp.client["client_secret"])
    introspected = requests.post(rp.metadata["introspection_endpoint"], auth=auth,
                                               data={"token": tokens["access_token"]}, timeout=5).json()
    assert introspected == {"active": False}


def test_a_rehash_at_login_never_overwrites_a_password_set_meanwhile(live_server, seeded):
    """The login read the old hash, ran argon2 (tens of ms), then stored the rehash: an admin's
    new password stored in between came undone, the old password working again."""
    from idp.db import db
    from idp.login import user as login_user

    row = user_row(live_server, seeded.user_email)
    with live_server.context():
        assert not login_user.store_password_hash(row.id, "$argon2id$rehash", previous_hash="$argon2id$stale")
        db.session.commit()
    assert user_row(live_server, seeded.user_email).password_hash == row.password_hash


def test_an_admins_stale_session_signs_in_again_before_handing_over_an_account(live_server, seeded, rp_factory):
    """A stolen or forgotten admin session must not set a password, a role or disable anyone:
    these pages want a full login within login.recent_login, as a user's own factor changes do."""
    from datetime import timedelta

    from idp.db import db
    from idp.models import UserSession

    admin, _, _ = signed_in(live_server, seeded, rp_factory, seeded.admin_email)
    form = admin_page(admin, live_server, seeded.user_email, "password").form_with("confirm")
    with live_server.context():
        for row in db.session.scalars(select(UserSession)).all():
            row.login_started_at -= timedelta(minutes=6)
        db.session.commit()
    page = admin.submit(form, {"password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert page.form_with("password") and "/login/" in page.url
    user_id = user_row(live_server, seeded.user_email).id
    for action in ("disable", "enable", "role"):
        assert "/login/" in admin.get(f"/admin/users/{user_id}/{action}").url
    assert "/login/" in admin.get("/admin/users/new").url
    assert events(live_server, "user.password_changed") == []
    page = admin.login(seeded.admin_email, seeded.password)    # both steps again: back to the page
    assert "/admin/users/" in page.url and page.status == 200


def test_forms_read_posted_fields_only_not_files_or_json(live_server, seeded, rp_factory):
    """A password sent as a file upload was a 500 (a FileStorage has no length), and a JSON body
    with the CSRF token in a header reached the validators as numbers and lists."""
    browser, _, _ = signed_in(live_server, seeded, rp_factory, seeded.user_email)
    csrf = change_form(browser)["fields"]["csrf_token"]
    url = f"{live_server.url}/account/password"
    as_file = browser.http.post(url, data={"csrf_token": csrf, "confirm": NEW_PASSWORD},
                                files={"current": ("x", b"secret"), "password": ("y", b"z" * 10)})
    assert as_file.status_code == 400
    for body in ({"current": 123, "password": True, "confirm": [1]}, [1, 2], "text", 5):
        answer = browser.http.post(url, json=body, headers={"X-CSRFToken": csrf})
        assert answer.status_code == 400, (body, answer.status_code)
    login = FormBrowser(live_server.url)
    form = login.get(rp_factory(seeded.first_party).authorization_url()).form_with("password")
    posted = login.http.post(form["action"], data={k: v for k, v in form["fields"].items() if k != "password"},
                             files={"password": ("p", seeded.password.encode())})
    assert posted.status_code == 400 and events(live_server, "user.password_changed") == []
