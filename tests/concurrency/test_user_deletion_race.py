"""A user deleted while they log in, on PostgreSQL (idp.users.delete): the deletion is started
and left uncommitted, holding the user's row as its DELETE does, the login's post runs until it
waits for that row, then the deletion commits. Whichever step the post was (the password that
names the user to the login, the second factor or the consent that signs them in), the login ends without a
code, a session or any row of the user's, and with an answer, not a server error."""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from urllib.parse import urljoin

import pyotp
import pytest
import requests
from sqlalchemy import create_engine, func, select

from fixtures.cli import ok, refused, run_idp
from fixtures.database import postgres_base_url
from fixtures.oidc import FormBrowser, RelyingParty, seed
from fixtures.race import blocked_by
from fixtures.totp import enrol_totp_during_login
from test_factor_races import _signed_in_to_account_page

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins" / "push"))
from authenticator.push import keys  # noqa: E402
from push_testkit import activation_code, enable_push, give_device, issue_activation_uri  # noqa: E402

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")

USER_TABLES = ("Credential", "FactorChallenge", "LoginTransaction", "UserSession", "SessionClient",
               "AuthorizationCode", "Token", "ConsentGrant", "PasswordReset", "DeviceAuthorization")


def deleted_while_it_waits(server, email: str, action) -> list:
    """Delete the user without committing, run `action` on a thread of its own until it waits for
    the deletion's locks, then commit and let it finish. What `action` returned, in a list."""
    from idp import users
    from idp.db import db
    from idp.models import User

    watcher, answers = create_engine(server.database_url), []
    with server.context(), watcher.connect() as watch:
        users.delete(db.session.scalar(select(User).where(User.email == email)), actor="cli")
        holder = db._dbapi().info.backend_pid
        waiting = threading.Thread(target=lambda: answers.append(action()))
        waiting.start()
        while waiting.is_alive() and not blocked_by(watch, holder):
            time.sleep(0.02)
        assert waiting.is_alive(), "it did not wait for the deletion"
        db.session.commit()
        waiting.join()
    watcher.dispose()
    return answers


def _admin_on_the_members_page(server, seeded, action: str):
    """The seeded member's id, the admin signed in, and the form of the member's `action` page
    (`delete`, `disable`), not posted yet."""
    from idp.db import db
    from idp.models import User

    with server.context():
        user_id = db.session.scalar(select(User.id).where(User.email == seeded.user_email))
    admin = FormBrowser(server.url)
    admin.get("/account/security")
    admin.login(seeded.admin_email, seeded.password)
    page = admin.get(f"/admin/users/{user_id}/{action}")
    return user_id, admin, next(f for f in page.forms() if f["action"].endswith(f"/users/{user_id}/{action}"))


def rows_of(server, user_id: int) -> dict[str, int]:
    from idp import models
    from idp.db import db

    with server.context():
        found = {name: db.session.scalar(select(func.count()).select_from(getattr(models, name))
                                         .where(getattr(models, name).user_id == user_id)) for name in USER_TABLES}
        found["User"] = db.session.scalar(select(func.count()).where(models.User.id == user_id))
        return found


@pytest.mark.parametrize("step", ["password_then_second_factor", "password_last", "totp_last", "consent"])
def test_a_deletion_while_the_login_waits_for_the_user_ends_the_login(pg_server, step):
    from idp.db import db
    from idp.models import User

    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.third_party if step == "consent" else seeded.first_party)
    secret = None
    if step not in ("password_last", "consent"):
        secret = enrol_totp_during_login(FormBrowser(pg_server.url), rp, seeded)[0]
    with pg_server.context():
        user_id = db.session.scalar(select(User.id).where(User.email == seeded.user_email))
    browser = FormBrowser(pg_server.url)
    browser.get(rp.authorization_url())
    if step == "consent":
        browser.login(seeded.user_email, seeded.password)
        form, values = browser.page.form_with("action"), {"action": "allow"}
    elif step == "totp_last":
        browser.login(seeded.user_email, seeded.password)
        form, values = browser.page.form_with("code"), {"code": pyotp.TOTP(secret).at(time.time() + 30)}
    else:
        form, values = browser.page.form_with("password"), {"username": seeded.user_email,
                                                            "password": seeded.password}

    [page] = deleted_while_it_waits(pg_server, seeded.user_email, lambda: browser.submit(form, values))

    assert not (browser.last_redirect and "code=" in browser.last_redirect), browser.last_redirect
    assert page.status < 500, page.text[:1500]
    assert rows_of(pg_server, user_id) == {name: 0 for name in (*USER_TABLES, "User")}


def test_a_refresh_waiting_for_the_deletion_gets_invalid_grant(pg_server):
    """The deletion holds the refresh token's row (its DELETE); the refresh that waits for it finds
    it gone, and stores no successor."""
    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.first_party)
    browser = FormBrowser(pg_server.url)
    browser.get(rp.authorization_url(scope="openid email offline_access"))
    browser.login(seeded.user_email, seeded.password)
    tokens = rp.exchange(browser.last_redirect)
    from idp.db import db
    from idp.models import User

    with pg_server.context():
        user_id = db.session.scalar(select(User.id).where(User.email == seeded.user_email))

    [answer] = deleted_while_it_waits(pg_server, seeded.user_email, lambda: rp.token_request(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}))

    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant", answer.text
    assert rows_of(pg_server, user_id) == {name: 0 for name in (*USER_TABLES, "User")}


def deleted_once_it_waits_for_the_user(server, email: str, action) -> list:
    """Hold the user's row (as the deletion's sign-out stamp does, from its UPDATE to its commit),
    run `action` on a thread of its own until it waits for that lock, then delete the user and
    commit: what a request that checked the user before the deletion began, and writes after it
    committed, meets. What `action` returned, in a list."""
    from idp import users
    from idp.db import db
    from idp.factors import directory
    from idp.models import User

    watcher, answers = create_engine(server.database_url), []
    with server.context(), watcher.connect() as watch:
        user = db.session.scalar(select(User).where(User.email == email))
        directory.lock_user(user.id)
        holder = db._dbapi().info.backend_pid
        waiting = threading.Thread(target=lambda: answers.append(action()))
        waiting.start()
        while waiting.is_alive() and not blocked_by(watch, holder):
            time.sleep(0.02)
        assert waiting.is_alive(), "it did not wait for the user's lock"
        users.delete(user, actor="cli")
        db.session.commit()
        waiting.join()
    watcher.dispose()
    return answers


def test_a_push_request_begun_as_the_user_is_deleted_is_an_answer_not_a_server_error(pg_server):
    """The login's push page takes the user's lock (plugins/push: the fatigue limit), then stores
    the request. A deletion that committed while it waited left no user for the request's
    foreign key: the login ends (the expired page, or the methods page), with no 500."""
    from idp.db import db
    from idp.models import User

    enable_push(pg_server)
    seeded = seed(pg_server)
    give_device(pg_server, seeded.user_email)
    with pg_server.context():
        user_id = db.session.scalar(select(User.id).where(User.email == seeded.user_email))
    rp = RelyingParty(pg_server.url, seeded.first_party)
    browser = FormBrowser(pg_server.url)
    page = browser.get(rp.authorization_url())
    form = page.form_with("password")
    posted = browser.http.post(urljoin(page.url, form["action"]),
                               data={**form["fields"], "username": seeded.user_email, "password": seeded.password},
                               allow_redirects=False)
    assert posted.status_code in (302, 303), posted.text[:1500]
    step_page = posted.headers["Location"]               # the second factor's page: its GET begins the push

    [page] = deleted_once_it_waits_for_the_user(pg_server, seeded.user_email, lambda: browser.get(step_page))

    assert page.status < 500, page.text[:1500]
    assert 'data-push-number' not in page.text
    assert not (browser.last_redirect and "code=" in browser.last_redirect), browser.last_redirect
    assert rows_of(pg_server, user_id) == {name: 0 for name in (*USER_TABLES, "User")}


def test_an_enrolment_finished_on_the_security_page_as_the_user_is_deleted_stores_nothing(pg_server):
    from idp.db import db
    from idp.models import User

    seeded, browser, page = _signed_in_to_account_page(pg_server)
    with pg_server.context():
        user_id = db.session.scalar(select(User.id).where(User.email == seeded.user_email))
    page = browser.submit([f for f in page.forms() if f["action"].endswith("/add/totp")][0])
    key = page.find(r'<code>([A-Z2-7 ]+)</code>').replace(" ", "")
    form, code = page.form_with("code"), pyotp.TOTP(key).now()

    [page] = deleted_once_it_waits_for_the_user(pg_server, seeded.user_email,
                                                lambda: browser.submit(form, {"code": code, "label": "Second"}))

    assert page.status < 500, page.text[:1500]
    assert "Authenticator app added." not in page.text
    assert rows_of(pg_server, user_id) == {name: 0 for name in (*USER_TABLES, "User")}


def test_a_phone_registering_as_its_user_is_deleted_is_refused_not_a_server_error(pg_server):
    from idp.db import db
    from idp.models import User

    enable_push(pg_server)
    seeded = seed(pg_server)
    with pg_server.context():
        user_id = db.session.scalar(select(User.id).where(User.email == seeded.user_email))
    code = activation_code(issue_activation_uri(pg_server, seeded.user_email))
    phone = keys.new_private_key()
    audience = pg_server.url + "/factors/push/v1/register"

    def register():
        token = keys.registration_token(phone, audience=audience, code=code, name="phone")
        return requests.post(audience, json={"registration": token}, timeout=30)

    [answer] = deleted_once_it_waits_for_the_user(pg_server, seeded.user_email, register)

    assert 400 <= answer.status_code < 500, answer.text
    assert rows_of(pg_server, user_id) == {name: 0 for name in (*USER_TABLES, "User")}


def test_an_enrolment_begun_on_the_security_page_as_the_user_is_deleted_is_an_answer(pg_server):
    """"Add" takes the user's lock, then stores the pending enrolment (a row keyed by the user)."""
    from idp.db import db
    from idp.models import User

    seeded, browser, page = _signed_in_to_account_page(pg_server)
    with pg_server.context():
        user_id = db.session.scalar(select(User.id).where(User.email == seeded.user_email))
    form = [f for f in page.forms() if f["action"].endswith("/add/totp")][0]

    [page] = deleted_once_it_waits_for_the_user(pg_server, seeded.user_email, lambda: browser.submit(form))

    assert page.status < 500, page.text[:1500]
    assert "/login/" in page.url, page.url                               # the session ended with the account
    assert rows_of(pg_server, user_id) == {name: 0 for name in (*USER_TABLES, "User")}


def test_the_last_two_admins_deleted_at_once_with_the_command_leave_one(pg_server):
    """Two operators delete the organization's last two admins at the same moment: the second
    deletion waits for the first's lock on the organization's row, then counts the admins again
    and is refused (idp.users._keep_an_admin); the organization keeps an admin."""
    from idp.db import db
    from idp.models import User

    seeded = seed(pg_server)
    url = pg_server.database_url
    ok(run_idp("user", "add", "--org", "Acme", "--email", "second@acme.test", "--password-stdin",
               input="correct horse battery\n", database_url=url))
    ok(run_idp("user", "set-role", "--email", "second@acme.test", "--role", "admin", database_url=url))

    [second] = deleted_while_it_waits(pg_server, seeded.admin_email, lambda: run_idp(
        "user", "delete", "--email", "second@acme.test", "--yes", database_url=url))

    refused(second, "only administrator")
    with pg_server.context():
        admins = db.session.scalars(select(User.email).where(User.role == "admin")).all()
    assert admins == ["second@acme.test"]


@pytest.mark.parametrize("prompt", [None, "none"])
def test_a_single_sign_on_as_the_user_is_deleted_issues_no_code(pg_server, prompt):
    """A browser still signed in asks for a code (another application, or prompt=none) while the
    deletion holds the user's row: the sign-in waits for it, then finds no user to sign in."""
    from idp.db import db
    from idp.models import User

    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.first_party)
    browser = FormBrowser(pg_server.url)
    browser.get(rp.authorization_url())
    browser.login(seeded.user_email, seeded.password)
    assert browser.last_redirect and "code=" in browser.last_redirect
    with pg_server.context():
        user_id = db.session.scalar(select(User.id).where(User.email == seeded.user_email))
    url = rp.authorization_url(**({"prompt": prompt} if prompt else {}))

    [page] = deleted_once_it_waits_for_the_user(pg_server, seeded.user_email, lambda: browser.get(url))

    assert page.status < 500, page.text[:1500]
    assert not (browser.last_redirect and "code=" in browser.last_redirect), browser.last_redirect
    assert rows_of(pg_server, user_id) == {name: 0 for name in (*USER_TABLES, "User")}


def test_a_device_code_refused_by_a_signed_in_user_as_they_are_deleted_is_an_answer(pg_server):
    """"No" on a device's confirmation records the browser's signed-in user as the one who
    refused: a user deleted meanwhile leaves that foreign key nothing to name."""
    from fixtures.device import allow_device_grant, ask_for_codes

    from idp.db import db
    from idp.models import User

    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.first_party)
    browser = FormBrowser(pg_server.url)
    browser.get(rp.authorization_url())
    browser.login(seeded.user_email, seeded.password)              # signed in in this browser
    with pg_server.context():
        user_id = db.session.scalar(select(User.id).where(User.email == seeded.user_email))
    allow_device_grant(pg_server, seeded.first_party)
    codes = ask_for_codes(pg_server, seeded.first_party).json()
    page = browser.get(f"/device?user_code={codes['user_code']}")
    page = browser.submit(page.form_with("user_code"), {"user_code": codes["user_code"]})
    form = page.form_with("action")

    [page] = deleted_while_it_waits(pg_server, seeded.user_email,
                                    lambda: browser.submit(form, button=("action", "deny")))

    assert page.status < 500, page.text[:1500]
    assert rows_of(pg_server, user_id) == {name: 0 for name in (*USER_TABLES, "User")}


def test_a_user_deleted_twice_at_once_is_deleted_and_audited_once(pg_server):
    """Two operators (or two admins) delete the same user at the same moment: the second waits
    for the first, then finds nobody to delete: refused, and no second `user.deleted` event
    saying it deleted someone (with nothing ended)."""
    from idp.db import db
    from idp.models import AuditEvent

    seeded = seed(pg_server)

    [second] = deleted_while_it_waits(pg_server, seeded.user_email, lambda: run_idp(
        "user", "delete", "--email", seeded.user_email, "--yes", database_url=pg_server.database_url))

    refused(second, "no user with e-mail")
    with pg_server.context():
        deletions = db.session.scalars(select(AuditEvent.actor).where(AuditEvent.event == "user.deleted")).all()
    assert deletions == ["cli"]


def test_an_admin_deleting_a_user_the_operator_deletes_at_that_moment_gets_a_404(pg_server):
    from idp.db import db
    from idp.models import AuditEvent

    seeded = seed(pg_server)
    user_id, admin, form = _admin_on_the_members_page(pg_server, seeded, "delete")

    [page] = deleted_while_it_waits(pg_server, seeded.user_email,
                                    lambda: admin.submit(form, {"email": seeded.user_email}))

    assert page.status == 404, page.text[:1500]
    with pg_server.context():
        deletions = db.session.scalars(select(AuditEvent.actor).where(AuditEvent.event == "user.deleted")).all()
    assert deletions == ["cli"]


def test_an_enrolment_finished_at_login_as_the_user_is_deleted_is_an_answer(pg_server):
    """The login's enrolment step takes the user's lock, then stores the credential: a deletion
    that committed meanwhile leaves it no user, and the login no row to move."""
    from fixtures.totp import at_totp_enrolment

    from idp.db import db
    from idp.models import User

    seeded = seed(pg_server)
    with pg_server.context():
        user_id = db.session.scalar(select(User.id).where(User.email == seeded.user_email))
    browser = FormBrowser(pg_server.url)
    page, secret = at_totp_enrolment(browser, RelyingParty(pg_server.url, seeded.first_party), seeded)
    form, code = page.form_with("code"), pyotp.TOTP(secret).now()

    [page] = deleted_once_it_waits_for_the_user(pg_server, seeded.user_email,
                                                lambda: browser.submit(form, {"code": code, "label": "Phone"}))

    assert page.status < 500, page.text[:1500]
    assert not (browser.last_redirect and "code=" in browser.last_redirect), browser.last_redirect
    assert rows_of(pg_server, user_id) == {name: 0 for name in (*USER_TABLES, "User")}


@pytest.mark.parametrize("action", ["regenerate", "rename", "remove"])
def test_a_change_on_the_security_page_as_the_user_is_deleted_is_an_answer(pg_server, action):
    """The security page's changes take the user's lock, then write or refuse and show the page
    again: for a user deleted meanwhile, an answer (the page, or sign in again), not a 500."""
    from idp.db import db
    from idp.models import User

    seeded, browser, page = _signed_in_to_account_page(pg_server)
    with pg_server.context():
        user_id = db.session.scalar(select(User.id).where(User.email == seeded.user_email))
    if action == "regenerate":
        page = browser.get("/account/security/recovery-codes")
        form, values = [f for f in page.forms() if f["action"].endswith("/security/recovery-codes")][0], {}
    elif action == "rename":
        form, values = [f for f in page.forms() if f["action"].endswith("/rename")][0], {"label": "Renamed"}
    else:
        credential = page.find(r'/security/credentials/(\d+)/rename')
        page = browser.get(f"/account/security/credentials/{credential}/confirm-removal")
        form, values = [f for f in page.forms() if f["action"].endswith(f"/credentials/{credential}/remove")][0], {}

    [page] = deleted_once_it_waits_for_the_user(pg_server, seeded.user_email, lambda: browser.submit(form, values))

    assert page.status < 500, page.text[:1500]
    assert rows_of(pg_server, user_id) == {name: 0 for name in (*USER_TABLES, "User")}


@pytest.mark.parametrize("action", ["delete", "disable"])
def test_the_admin_page_takes_the_organizations_row_before_the_members(pg_server, action):
    """A deletion or a disabling takes the organization's row (idp.users._keep_an_admin), then the
    user's, as `idp user delete` and `idp user disable` do. The admin page took the member's row
    first (the peer-admin check's lock), then the organization's: the page and the command on one
    member at the same moment each held what the other waited for (a deadlock, one of them a
    500). Seen here: while the page waits for the organization's row, it holds no lock on the
    member."""
    from sqlalchemy import text

    from idp.db import db
    from idp.models import Organization

    seeded = seed(pg_server)
    user_id, admin, form = _admin_on_the_members_page(pg_server, seeded, action)
    values = {"email": seeded.user_email} if action == "delete" else {}

    watcher = create_engine(pg_server.database_url)
    with pg_server.context(), watcher.connect() as watch:
        db.session.execute(select(Organization.id).where(Organization.id == seeded.org_id).with_for_update())
        holder = db._dbapi().info.backend_pid
        posting = threading.Thread(target=lambda: admin.submit(form, values))
        posting.start()
        while posting.is_alive() and not blocked_by(watch, holder):
            time.sleep(0.02)
        assert posting.is_alive(), "the page did not wait for the organization's row"
        member_free = watch.execute(text("SELECT id FROM users WHERE id = :id FOR NO KEY UPDATE SKIP LOCKED"),
                                    {"id": user_id}).all()
        watch.rollback()
        db.session.commit()
        posting.join()
    watcher.dispose()
    assert member_free == [(user_id,)], "the page held the member's row while it waited for the organization's"
    assert admin.page.status < 500, admin.page.text[:1500]


def test_a_recovery_qr_code_issued_as_its_member_is_deleted_is_an_answer(pg_server):
    from idp.db import db
    from idp.models import User

    registry = pg_server.app.extensions["idp.factors"]
    if "qr_recovery" not in registry:
        from idp_plugins.qr_recovery.factor import QrRecoveryFactor

        registry.register(QrRecoveryFactor)
    seeded = seed(pg_server)
    with pg_server.context():
        alice = db.session.scalar(select(User.id).where(User.email == seeded.user_email))
    admin = FormBrowser(pg_server.url)
    admin.get("/account/security")
    admin.login(seeded.admin_email, seeded.password)
    form = admin.get(f"/admin/users/{alice}/recovery-qr").form_with("expires_in")

    [page] = deleted_once_it_waits_for_the_user(pg_server, seeded.user_email,
                                                lambda: admin.submit(form, {"expires_in": "86400"}))

    assert page.status < 500, page.text[:1500]
    assert rows_of(pg_server, alice) == {name: 0 for name in (*USER_TABLES, "User")}


def test_a_push_request_begun_as_the_user_is_disabled_ends_the_login(pg_server):
    """As above, the account disabled rather than deleted: the disabling expired the login, whose
    step cannot be kept. The page ends the login (the expired page), rather than wait for a step
    to be kept and then say that no method could begin (503)."""
    from fixtures.race import disabled_while_it_waits

    enable_push(pg_server)
    seeded = seed(pg_server)
    give_device(pg_server, seeded.user_email)
    rp = RelyingParty(pg_server.url, seeded.first_party)
    browser = FormBrowser(pg_server.url)
    page = browser.get(rp.authorization_url())
    form = page.form_with("password")
    posted = browser.http.post(urljoin(page.url, form["action"]),
                               data={**form["fields"], "username": seeded.user_email, "password": seeded.password},
                               allow_redirects=False)
    step_page, answers = posted.headers["Location"], []

    disabled_while_it_waits(pg_server, seeded.user_email, lambda: answers.append(browser.get(step_page)))

    [page] = answers
    assert page.status < 500, page.text[:1500]
    assert 'data-push-number' not in page.text
    assert not (browser.last_redirect and "code=" in browser.last_redirect), browser.last_redirect
