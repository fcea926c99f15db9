"""Deleting a user (idp.users.delete), by an admin on the user's page or with `idp user delete`:
the account and everything keyed by it go in one transaction, what was live ends as a sign-out
everywhere ends it (the applications told by back-channel logout), and only the audit log keeps
naming the person, whose pages still render without them.

Over HTTP against a live server, with an independent OIDC client for the tokens, and the `idp`
command as a process of its own.
"""
from __future__ import annotations

import csv
import io

import time

import pyotp
import pytest
import requests
from sqlalchemy import func, select

from fixtures.cli import ok, refused, run_idp
from fixtures.oidc import FormBrowser, password_login, set_client
from fixtures.redis_server import private_redis
from fixtures.totp import enrol_totp_during_login
from test_account_lifecycle import can_sign_in, events, user_row
from test_backchannel_logout import Receiver, decoded, quick_retries  # noqa: F401 (an autouse fixture)

# Every table with a foreign key to users.id (idp/models): after a deletion none holds a row of the user's.
USER_TABLES = ("Credential", "FactorChallenge", "LoginTransaction", "UserSession", "SessionClient",
               "AuthorizationCode", "Token", "ConsentGrant", "PasswordReset", "DeviceAuthorization")


def test_every_table_keyed_by_a_user_is_checked_here():
    """A table given a foreign key to users.id later must be deleted from by idp.users.delete
    too, and checked by these tests: this list is the models' own."""
    from idp import models

    keyed = {mapper.class_.__name__ for mapper in models.Base.registry.mappers
             if any(fk.column.table.name == "users" for fk in mapper.local_table.foreign_keys)}
    assert keyed == set(USER_TABLES)


def rows_of(live_server, user_id: int) -> dict[str, int]:
    """The rows keyed by `user_id` in each table that has one, and the user's own row."""
    from idp import models
    from idp.db import db

    with live_server.context():
        found = {name: db.session.scalar(select(func.count()).select_from(getattr(models, name))
                                         .where(getattr(models, name).user_id == user_id)) for name in USER_TABLES}
        found["User"] = db.session.scalar(select(func.count()).select_from(models.User)
                                          .where(models.User.id == user_id))
        return found


def signed_in(live_server, seeded, rp_factory, client: dict):
    """A browser signed in as the seeded user to `client`, and that login's tokens (a refresh token too)."""
    browser, rp = FormBrowser(live_server.url), rp_factory(client)
    password_login(browser, rp, seeded.user_email, seeded.password, scope="openid email profile offline_access")
    return browser, rp, rp.exchange(browser.last_redirect)


def admin_browser(live_server, seeded, rp_factory) -> FormBrowser:
    browser = FormBrowser(live_server.url)
    password_login(browser, rp_factory(seeded.first_party), seeded.admin_email, seeded.password)
    return browser


def delete_form(admin: FormBrowser, user_id: int) -> dict:
    page = admin.get(f"/admin/users/{user_id}/delete")
    assert page.status == 200, page.text[:1500]
    return next(f for f in page.forms() if f["action"].endswith(f"/users/{user_id}/delete"))


def introspected(rp, token: str) -> dict:
    answer = requests.post(rp.metadata["introspection_endpoint"], data={"token": token},
                           auth=(rp.client["client_id"], rp.client["client_secret"]), timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def refreshed(rp, tokens: dict) -> requests.Response:
    return rp.token_request({"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]})


def add_member(live_server, email: str, org_name: str | None = None) -> int:
    """A user added with the `idp` command (in a new organization when `org_name` is given); their id."""
    if org_name:
        ok(run_idp("org", "add", org_name, database_url=live_server.database_url))
    ok(run_idp("user", "add", "--org", org_name or "Acme", "--email", email, "--password-stdin",
               input="correct horse battery\n", database_url=live_server.database_url))
    return user_row(live_server, email).id


def audit_pages_render(admin: FormBrowser, user_id: int) -> None:
    """Every page that shows audit events, about a user who is gone: no 500."""
    for path in ("/admin/audit", f"/admin/audit?user_id={user_id}", "/admin/audit?action=user.",
                 "/admin/audit?user=alice", "/admin/security", "/account/security"):
        page = admin.get(path)
        assert page.status == 200, (path, page.text[:1500])


# ---------------------------------------------------------------- the admin's page

def test_an_admin_deletes_a_member_and_everything_of_theirs_goes(live_server, seeded, rp_factory):
    receiver = Receiver()
    try:
        set_client(live_server, seeded.third_party, backchannel_logout_uri=receiver.url)
        victim, rp, tokens = signed_in(live_server, seeded, rp_factory, seeded.third_party)
        enrol_totp_during_login(FormBrowser(live_server.url), rp_factory(seeded.first_party), seeded)
        user = user_row(live_server, seeded.user_email)
        before = rows_of(live_server, user.id)
        assert before["Credential"] > 1 and before["UserSession"] >= 1 and before["Token"] >= 1
        assert before["ConsentGrant"] == 1 and before["SessionClient"] == 1

        admin = admin_browser(live_server, seeded, rp_factory)
        page = admin.get(f"/admin/users/{user.id}")
        assert 'id="delete-user"' in page.text
        page = admin.submit(delete_form(admin, user.id), {"email": seeded.user_email})
        assert page.status == 200 and page.url.endswith("/admin/users") and "was deleted" in page.text

        assert rows_of(live_server, user.id) == {name: 0 for name in (*USER_TABLES, "User")}
        assert admin.get(f"/admin/users/{user.id}").status == 404
        # What the applications held is dead, wherever it is presented.
        assert refreshed(rp, tokens).json()["error"] == "invalid_grant"
        assert rp.userinfo(tokens["access_token"]).status_code == 401
        assert introspected(rp, tokens["access_token"]) == {"active": False}
        assert introspected(rp, tokens["refresh_token"]) == {"active": False}
        assert "/login/" in victim.get("/account/security").url
        assert not can_sign_in(live_server, seeded, rp_factory, seeded.user_email, seeded.password)
        # The application was told, as by a sign-out everywhere, in the ID token's terms.
        [logout] = receiver.wait_for(1)
        id_token = decoded(live_server, tokens["id_token"])[1]
        assert decoded(live_server, logout)[1]["sub"] == id_token["sub"] == user.public_id
        assert decoded(live_server, logout)[1]["sid"] == id_token["sid"]

        [event] = events(live_server, "user.deleted")
        assert event.actor == seeded.admin_email and event.subject_id == user.id and event.org_id == seeded.org_id
        assert event.details["email"] == seeded.user_email and event.details["public_id"] == user.public_id
        assert event.details["by"] == "admin" and event.details["sessions_ended"] == 2
        assert event.details["credentials_deleted"] == before["Credential"]
        assert events(live_server, "user.signed_out_everywhere") == []       # one event says it all
        # The user's earlier events are kept, and every page that shows events still renders.
        assert events(live_server, "factor.enrolled")
        audit_pages_render(admin, user.id)
        page = admin.get(f"/admin/audit?user_id={user.id}")
        assert 'data-event="user.deleted"' in page.text and 'data-event="factor.enrolled"' in page.text
        assert "User deleted" in page.text and f'data-deleted-user="{user.id}"' in page.text
        assert f'value="{seeded.user_email}"' in page.text                  # the filter names whom it shows
        page = admin.get("/admin/audit?user=ALICE@acme")                    # found by address as before
        assert 'data-event="user.deleted"' in page.text and 'data-event="factor.enrolled"' in page.text
        # The page's CSV download names them as the page does, by the address the deletion kept.
        rows = list(csv.DictReader(io.StringIO(admin.get(f"/admin/audit.csv?user_id={user.id}").text.lstrip("\ufeff"))))
        assert {row["event"] for row in rows} >= {"user.deleted", "factor.enrolled"}
        assert {row["subject"] for row in rows} == {seeded.user_email}
    finally:
        receiver.stop()


@pytest.mark.parametrize("values", [{"email": "bob@acme.test"}, {"email": ""}, {"email": "alice@acme"}])
def test_a_wrong_confirmation_changes_nothing(live_server, seeded, rp_factory, values):
    _, rp, tokens = signed_in(live_server, seeded, rp_factory, seeded.first_party)
    user_id = user_row(live_server, seeded.user_email).id
    admin = admin_browser(live_server, seeded, rp_factory)
    page = admin.submit(delete_form(admin, user_id), values)
    assert page.status == 400 and 'aria-invalid="true"' in page.text, page.text[:1500]
    assert rows_of(live_server, user_id)["User"] == 1 and events(live_server, "user.deleted") == []
    assert rp.userinfo(tokens["access_token"]).status_code == 200


def test_the_deletion_needs_a_csrf_token(live_server, seeded, rp_factory):
    user_id = user_row(live_server, seeded.user_email).id
    admin = admin_browser(live_server, seeded, rp_factory)
    answer = admin.http.post(f"{live_server.url}/admin/users/{user_id}/delete", data={"email": seeded.user_email},
                             allow_redirects=False)
    assert answer.status_code == 400 and rows_of(live_server, user_id)["User"] == 1


def test_the_typed_address_is_read_as_the_login_form_reads_it(live_server, seeded, rp_factory):
    user_id = user_row(live_server, seeded.user_email).id
    admin = admin_browser(live_server, seeded, rp_factory)
    page = admin.submit(delete_form(admin, user_id), {"email": "  Alice@ACME.test "})
    assert page.status == 200 and rows_of(live_server, user_id)["User"] == 0


def test_an_admin_deletes_neither_themself_nor_another_admin_nor_another_organizations_user(
        live_server, seeded, rp_factory):
    admin = admin_browser(live_server, seeded, rp_factory)
    own_id = user_row(live_server, seeded.admin_email).id
    page = admin.get(f"/admin/users/{own_id}")
    assert 'id="delete-user"' not in page.text
    for answer in (admin.get(f"/admin/users/{own_id}/delete"),
                   admin.submit({"action": f"{live_server.url}/admin/users/{own_id}/delete", "method": "post",
                                 "fields": {**delete_form(admin, user_row(live_server, seeded.user_email).id)["fields"],
                                            "email": seeded.admin_email}})):
        assert answer.status == 200 and answer.url.endswith(f"/admin/users/{own_id}")
        assert "You cannot delete your own account" in answer.text

    peer_id = add_member(live_server, "peer@acme.test")
    ok(run_idp("user", "set-role", "--email", "peer@acme.test", "--role", "admin",
               database_url=live_server.database_url))
    assert admin.get(f"/admin/users/{peer_id}/delete").status == 403
    assert 'id="delete-user"' not in admin.get(f"/admin/users/{peer_id}").text

    stranger_id = add_member(live_server, "someone@globex.test", org_name="Globex")
    assert admin.get(f"/admin/users/{stranger_id}/delete").status == 404
    answer = admin.http.post(f"{live_server.url}/admin/users/{stranger_id}/delete",
                             data={"email": "someone@globex.test", "csrf_token": delete_form(
                                 admin, user_row(live_server, seeded.user_email).id)["fields"]["csrf_token"]},
                             allow_redirects=False)
    assert answer.status_code == 404
    assert all(rows_of(live_server, user_id)["User"] == 1 for user_id in (own_id, peer_id, stranger_id))
    assert events(live_server, "user.deleted") == []


def test_a_stale_admin_session_signs_in_again_before_deleting_anyone(live_server, seeded, rp_factory):
    """The same recent full login as the page's other actions (idp.admin.access.recent_login_required)."""
    from datetime import timedelta

    from idp.db import db
    from idp.models import UserSession

    user_id = user_row(live_server, seeded.user_email).id
    admin = admin_browser(live_server, seeded, rp_factory)
    form = delete_form(admin, user_id)
    with live_server.context():
        for row in db.session.scalars(select(UserSession)).all():
            row.login_started_at -= timedelta(minutes=6)
        db.session.commit()
    page = admin.submit(form, {"email": seeded.user_email})
    assert page.form_with("password") and "/login/" in page.url
    assert "/login/" in admin.get(f"/admin/users/{user_id}/delete").url
    assert rows_of(live_server, user_id)["User"] == 1 and events(live_server, "user.deleted") == []
    page = admin.login(seeded.admin_email, seeded.password)              # both steps again: back to the page
    assert page.url.endswith(f"/admin/users/{user_id}/delete") and page.status == 200


def test_a_member_cannot_reach_the_page(live_server, seeded, rp_factory):
    member, _, _ = signed_in(live_server, seeded, rp_factory, seeded.first_party)
    admin_id = user_row(live_server, seeded.admin_email).id
    assert member.get(f"/admin/users/{admin_id}/delete").status == 403


# ---------------------------------------------------------------- the `idp` command

def test_idp_user_delete(live_server, seeded, rp_factory):
    url = live_server.database_url
    _, rp, tokens = signed_in(live_server, seeded, rp_factory, seeded.first_party)
    user = user_row(live_server, seeded.user_email)
    refused(run_idp("user", "delete", "--email", seeded.user_email, database_url=url), "permanent", "--yes")
    refused(run_idp("user", "delete", "--email", "nobody@acme.test", "--yes", database_url=url),
            "no user with e-mail 'nobody@acme.test'")
    refused(run_idp("user", "delete", "--email", "not an address", "--yes", database_url=url))
    refused(run_idp("user", "delete", "--email", seeded.admin_email, "--yes", database_url=url),
            "only administrator")
    assert rows_of(live_server, user.id)["User"] == 1 and rp.userinfo(tokens["access_token"]).status_code == 200

    result = ok(run_idp("user", "delete", "--email", seeded.user_email.upper(), "--yes", database_url=url))
    assert result.stdout.strip() == (f"deleted {seeded.user_email} (sub {user.public_id}); "
                                     "1 session(s) ended, 1 token(s) revoked")
    assert rows_of(live_server, user.id) == {name: 0 for name in (*USER_TABLES, "User")}
    assert refreshed(rp, tokens).json()["error"] == "invalid_grant"
    assert rp.userinfo(tokens["access_token"]).status_code == 401
    [event] = events(live_server, "user.deleted")
    assert event.actor == "cli" and event.details["by"] == "cli" and event.details["email"] == seeded.user_email
    refused(run_idp("user", "delete", "--email", seeded.user_email, "--yes", database_url=url), "no user")
    listed = ok(run_idp("audit", "list", "--json", "--since", "1d", database_url=url)).stdout
    assert "user.deleted" in listed
    # The operator still finds the trail of someone who left by their address.
    import json

    trail = json.loads(ok(run_idp("audit", "list", "--user", seeded.user_email, "--json", database_url=url)).stdout)
    assert {e["event"] for e in trail} >= {"login.succeeded", "user.deleted"}
    assert {e["subject_id"] for e in trail} == {user.id} and {e["subject"] for e in trail} == {None}

    # The last admin goes once another admin is there; the events they wrote as an actor still render.
    add_member(live_server, "second@acme.test")
    ok(run_idp("user", "set-role", "--email", "second@acme.test", "--role", "admin", database_url=url))
    admin_id = user_row(live_server, seeded.admin_email).id
    ok(run_idp("user", "delete", "--email", seeded.admin_email, "--yes", database_url=url))
    assert rows_of(live_server, admin_id)["User"] == 0
    second = FormBrowser(live_server.url)
    password_login(second, rp_factory(seeded.first_party), "second@acme.test", "correct horse battery")
    audit_pages_render(second, admin_id)


def test_a_new_user_with_the_same_address_is_a_new_person(live_server, seeded, rp_factory):
    """Neither the `sub` nor the row id is given out again (on SQLite the users table is
    AUTOINCREMENT): the new account's activity is not the old one's, and an application cannot
    take the newcomer for the person who left."""
    _, rp, tokens = signed_in(live_server, seeded, rp_factory, seeded.first_party)
    old_sub = rp.validate_id_token(tokens["id_token"])["sub"]
    # The newest user, whose id SQLite would otherwise hand out again.
    old_id = add_member(live_server, "leaver@acme.test")
    leaver = FormBrowser(live_server.url)
    password_login(leaver, rp, "leaver@acme.test", "correct horse battery")
    leaver_sub = rp.validate_id_token(rp.exchange(leaver.last_redirect)["id_token"])["sub"]
    ok(run_idp("user", "delete", "--email", "leaver@acme.test", "--yes", database_url=live_server.database_url))
    ok(run_idp("user", "delete", "--email", seeded.user_email, "--yes", database_url=live_server.database_url))

    new_id = add_member(live_server, "leaver@acme.test")
    assert new_id > old_id
    newcomer = FormBrowser(live_server.url)
    password_login(newcomer, rp, "leaver@acme.test", "correct horse battery")
    new_sub = rp.validate_id_token(rp.exchange(newcomer.last_redirect)["id_token"])["sub"]
    assert new_sub not in (leaver_sub, old_sub) and user_row(live_server, "leaver@acme.test").public_id == new_sub
    assert newcomer.get("/account/security").status == 200
    # The leaver's events stay theirs: none of them is about the newcomer.
    logins = [e.subject_id for e in events(live_server, "login.succeeded")]
    assert logins.count(old_id) == 1 and logins.count(new_id) == 1


# ---------------------------------------------------------------- what was under way

def test_a_login_at_the_second_factor_does_not_complete_after_the_deletion(live_server, seeded, rp_factory):
    rp = rp_factory(seeded.first_party)
    secret = enrol_totp_during_login(FormBrowser(live_server.url), rp, seeded)[0]
    user_id = user_row(live_server, seeded.user_email).id
    browser = FormBrowser(live_server.url)
    browser.get(rp.authorization_url())
    browser.login(seeded.user_email, seeded.password)
    form = browser.page.form_with("code")                                  # the password posted: at the second step
    ok(run_idp("user", "delete", "--email", seeded.user_email, "--yes", database_url=live_server.database_url))
    page = browser.submit(form, {"code": pyotp.TOTP(secret).at(time.time() + 30)})
    assert not (browser.last_redirect and "code=" in browser.last_redirect), browser.last_redirect
    assert page.status in (200, 400, 404, 410) and "/account/security" not in page.url
    assert rows_of(live_server, user_id) == {name: 0 for name in (*USER_TABLES, "User")}
    logins = [e.subject_id for e in events(live_server, "login.succeeded")]
    assert logins.count(user_id) == 1                                      # the enrolment's, not this one


def test_a_code_issued_before_the_deletion_buys_nothing(live_server, seeded, rp_factory):
    browser = FormBrowser(live_server.url)
    rp = rp_factory(seeded.first_party)
    password_login(browser, rp, seeded.user_email, seeded.password)       # a code, not yet exchanged
    ok(run_idp("user", "delete", "--email", seeded.user_email, "--yes", database_url=live_server.database_url))
    exchanged = rp.token_request({"grant_type": "authorization_code", "code": browser.callback_params()["code"],
                                  "redirect_uri": rp.client["redirect_uri"], "code_verifier": rp.verifier})
    assert exchanged.status_code == 400 and exchanged.json()["error"] == "invalid_grant"


def test_a_logins_move_refused_for_another_reason_than_a_deleted_user_is_not_taken_for_one(live_server, seeded):
    """idp.login.transaction.advance catches the foreign key's refusal of a move that names a
    user deleted meanwhile (the login goes no further); any other integrity error of that
    statement is a fault, raised, not a login quietly ended."""
    from idp.db import db
    from idp.login import transaction
    from idp.login.transaction import State

    user_id = user_row(live_server, seeded.user_email).id
    with live_server.app.test_request_context():
        handle = transaction.begin({"params": {}}, "binding")
        row = handle.row
        with pytest.raises(Exception) as raised:                          # NOT NULL, not a foreign key
            transaction.advance(row, State.IDENTIFY, 1, State.SECOND_FACTOR, user_id=user_id, browser_binding=None)
        assert "null" in str(raised.value).lower() or "not-null" in str(raised.value).lower(), raised.value
        db.session.rollback()
        # The refusal it is there for: a user who is not there.
        assert transaction.advance(row, State.IDENTIFY, 1, State.SECOND_FACTOR, user_id=user_id + 1000) is False
        assert transaction.advance(row, State.IDENTIFY, 1, State.SECOND_FACTOR, user_id=user_id) is True


@pytest.fixture
def own_redis():
    """A redis-server of this test's own (the suite's shared one holds other tests' counters)."""
    yield from private_redis()


@pytest.mark.parametrize("with_redis", [False, True])
def test_the_failure_counters_keyed_by_the_person_go_with_them(live_server, seeded, request, with_redis):
    """Wrong passwords at their address, wrong codes of theirs, an admin's "address in use"
    answers: counted under keys that name the person (their id, their address's hash), in the
    database or, when configured, in Redis. The deletion clears them; an address's counters are
    the address's and stay."""
    from fixtures.oidc import start_server

    from idp import lockout, users
    from idp.db import db
    from idp.models import FailureCounter, User

    server = live_server
    if with_redis:
        server = start_server(live_server.database_url, {"server.redis_url": request.getfixturevalue("own_redis")})
    try:
        with server.app.test_request_context():
            user = db.session.scalar(select(User).where(User.email == seeded.user_email))
            mine = [f"factor:user:{user.id}", lockout.PasswordGuess.of(seeded.user_email, None).account,
                    f"factor:admin-taken-email:{user.id}"]
            lockout.fail([*mine, "factor:ip:203.0.113.9"])
            store = server.app.extensions.get("idp.redis")
            if with_redis:
                assert {k.decode() for k in store.keys("idp:fail:*")} == {f"idp:fail:{k}" for k in
                                                                          [*mine, "factor:ip:203.0.113.9"]}
            users.delete(user, actor="cli")
            db.session.commit()
        with server.app.test_request_context():
            if with_redis:
                assert {k.decode() for k in store.keys("*")} == {"idp:fail:factor:ip:203.0.113.9"}
            else:
                assert set(db.session.scalars(select(FailureCounter.key))) == {"factor:ip:203.0.113.9"}
    finally:
        if with_redis:
            server.stop()
