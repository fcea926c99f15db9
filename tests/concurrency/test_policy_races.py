"""The last grace login over HTTP, on PostgreSQL: logins pressing "Set up later" at the same moment
spend it once; a code exchange is not held up by a policy change of its user; a requirement made while
the user removes their last second factor leaves them with it."""
from __future__ import annotations

import re

import pytest

from fixtures.database import postgres_base_url
from fixtures.oidc import FormBrowser, RelyingParty, seed
from fixtures.race import blocked_by, tabs_of
from test_factor_races import _at_once, _live_credentials, _signed_in_to_account_page

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")


def _required_in_grace(server, grace_logins: int):
    """The seeded user, required from now on, with `grace_logins` logins to postpone enrolment."""
    from sqlalchemy import update

    from idp.db import db, utcnow
    from idp.models import Organization, User

    seeded = seed(server)
    with server.context():
        db.session.execute(update(Organization).where(Organization.id == seeded.org_id)
                           .values(grace_logins=grace_logins))
        db.session.execute(update(User).where(User.email == seeded.user_email)
                           .values(mfa_setting="required", required_since=utcnow()))
        db.session.commit()
    return seeded


def test_the_last_grace_login_is_spent_once(pg_server):
    from sqlalchemy import select

    from idp.db import db
    from idp.models import AuditEvent, User

    seeded = _required_in_grace(pg_server, grace_logins=1)
    rp = RelyingParty(pg_server.url, seeded.first_party)
    browsers = []
    for _ in range(8):
        browser = FormBrowser(pg_server.url)
        browser.get(rp.authorization_url())
        page = browser.login(seeded.user_email, seeded.password)
        assert "Set up later" in page.text, page.text
        browsers.append(browser)
    _at_once([(b, b.page.form_with("postpone"), {"postpone": "1"}) for b in browsers])
    assert sum(1 for b in browsers if b.last_redirect and "code=" in b.last_redirect) == 1
    with pg_server.context():
        user = db.session.scalar(select(User).where(User.email == seeded.user_email))
        postponed = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "login.enrolment_postponed")).all()
    assert user.logins_since_required == 1 and len(postponed) == 1


def test_one_set_up_later_posted_twice_at_once_spends_one_grace_login(pg_server):
    """A double click on "Set up later": the second copy waits for the first, then finds the
    login moved on. One login, one grace login spent, one event."""
    from sqlalchemy import select

    from idp.db import db
    from idp.models import AuditEvent, User

    seeded = _required_in_grace(pg_server, grace_logins=10)
    rp = RelyingParty(pg_server.url, seeded.first_party)
    browser = FormBrowser(pg_server.url)
    browser.get(rp.authorization_url())
    page = browser.login(seeded.user_email, seeded.password)
    form = page.form_with("postpone")
    tabs = tabs_of(browser, 4)
    _at_once([(tab, form, {"postpone": "1"}) for tab in tabs])
    assert sum(1 for tab in tabs if tab.last_redirect and "code=" in tab.last_redirect) == 1
    with pg_server.context():
        user = db.session.scalar(select(User).where(User.email == seeded.user_email))
        postponed = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "login.enrolment_postponed")).all()
    assert user.logins_since_required == 1 and len(postponed) == 1


def test_a_code_exchange_does_not_wait_for_a_policy_change_of_its_user(pg_server):
    """An admin's change of a user's 2FA requirement holds the user's row till it commits; the
    user's code exchange, whose token rows reference that row (a foreign key takes FOR KEY SHARE),
    goes through meanwhile. With FOR UPDATE (idp.policy.settings before) it waited: the test sees
    its backend blocked by the policy change's (pg_blocking_pids), not a duration."""
    import threading
    import time

    from sqlalchemy import create_engine, select, text

    from idp.db import db
    from idp.models import User
    from idp.policy import settings

    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.first_party)
    browser = FormBrowser(pg_server.url)
    browser.get(rp.authorization_url())
    browser.login(seeded.user_email, seeded.password)
    assert "code=" in (browser.last_redirect or "")
    watcher = create_engine(pg_server.database_url)
    with pg_server.context():
        user_id = db.session.scalar(select(User.id).where(User.email == seeded.user_email))
        assert settings.set_user_requirement(user_id, settings.REQUIRED, None, None, settings.Actor.cli(),
                                             commit=False)
        holder = db.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        answers = []
        exchange = threading.Thread(target=lambda: answers.append(rp.exchange(browser.last_redirect)))
        exchange.start()
        blocked = False
        with watcher.connect() as watch:
            while exchange.is_alive() and not blocked:
                blocked = blocked_by(watch, holder)
                time.sleep(0.02)
        db.session.commit()  # the policy change ends: a blocked exchange goes on now
        exchange.join()
    watcher.dispose()
    assert not blocked, "the code exchange waited for the policy change's lock on the user's row"
    assert answers and answers[0].get("access_token")


def _requirement_while_the_last_factor_goes(server, require):
    """The user (one TOTP, 2FA optional) confirms removing it while an administrator's change that
    requires 2FA holds the user's row, uncommitted (`require(user_id, org_id)`, commit=False); the
    change commits once the removal waits for that row. Returns the removal's page and the user."""
    import threading
    import time

    from sqlalchemy import create_engine, select, text

    from idp.db import db
    from idp.models import User

    seeded, browser, page = _signed_in_to_account_page(server)
    confirmation = re.search(r'data-remove="\d+"\s+href="([^"]+)"', page.text).group(1)
    removal = [f for f in browser.get(confirmation).forms() if f["action"].endswith("/remove")][0]
    watcher = create_engine(server.database_url)
    with server.context():
        user = db.session.scalar(select(User).where(User.email == seeded.user_email))
        assert require(user.id, user.org_id)
        holder = db.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
        pages = []
        remover = threading.Thread(target=lambda: pages.append(browser.submit(removal)))
        remover.start()
        blocked = False
        with watcher.connect() as watch:
            while remover.is_alive() and not blocked:
                blocked = blocked_by(watch, holder)
                time.sleep(0.02)
        db.session.commit()
        remover.join()
    watcher.dispose()
    assert blocked, "the removal did not wait for the administrator's change"
    with server.context():
        user = db.session.scalar(select(User).where(User.email == seeded.user_email))
    return pages[0], user


@pytest.mark.parametrize("who", ["everyone", "the_user"])
def test_2fa_required_while_the_user_removes_their_last_factor_keeps_it(pg_server, who):
    """An administrator requiring 2FA (for everyone, or for this user) while the user removes their
    only second factor: the removal, which waited for the change, judges the requirement the change
    committed and refuses; the user is left required with the factor, never required without one."""
    from idp.policy import settings

    def require(user_id, org_id):
        if who == "everyone":
            return settings.set_org_requirement(org_id, True, settings.Actor.cli(), commit=False)
        return settings.set_user_requirement(user_id, settings.REQUIRED, None, None, settings.Actor.cli(),
                                             commit=False)

    page, user = _requirement_while_the_last_factor_goes(pg_server, require)
    assert "add another method before removing your last one" in page.text, page.text
    assert user.second_factor_count == 1
    assert _live_credentials(pg_server, user.email)["totp"] == 1
