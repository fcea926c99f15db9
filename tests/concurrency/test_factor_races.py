"""Exactly once over HTTP, on PostgreSQL: one TOTP code and one recovery code posted by 10 browsers at once."""
from __future__ import annotations

import re
import time

import pyotp
import pytest

from fixtures.database import postgres_base_url
from fixtures.oidc import FormBrowser, RelyingParty, seed, start_server
from fixtures.race import at_once, tabs_of
from fixtures.totp import at_totp_enrolment, enrol_totp_during_login

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")

RACERS = 10


def _pg_server(postgres_url, overrides):
    from sqlalchemy import create_engine

    from idp import schema

    engine = create_engine(postgres_url)
    schema.upgrade(engine)
    engine.dispose()
    return start_server(postgres_url, overrides)


@pytest.fixture
def pg_server(postgres_url):
    server = _pg_server(postgres_url, {"ratelimit.factor_failures_before_lockout": 100})
    yield server
    server.stop()


@pytest.fixture
def pg_server_with_lockout(postgres_url):
    """The default limit: 5 wrong codes per user, then a growing wait."""
    server = _pg_server(postgres_url, {"ratelimit.factor_failures_before_lockout": 5})
    yield server
    server.stop()


def _on_code_page(server, rp, seeded, recovery: bool = False) -> FormBrowser:
    browser = FormBrowser(server.url)
    browser.get(rp.authorization_url())
    page = browser.login(seeded.user_email, seeded.password)
    if recovery:
        page = browser.submit([f for f in page.forms() if f["action"].endswith("/factor/recovery_codes")][0])
    assert page.form_with("code")
    return browser


def _at_once(submissions) -> None:
    """Post every (browser, form, values) at the same moment, one thread each."""
    at_once(len(submissions), lambda i: submissions[i][0].submit(*submissions[i][1:]))


def _race(browsers, code) -> int:
    """Each browser posts `code` on its code page at once; how many got back to the client with a code."""
    _at_once([(b, b.page.form_with("code"), {"code": code}) for b in browsers])
    for browser in browsers:
        browser.past_recovery_notice()
    return sum(1 for b in browsers if b.last_redirect and "code=" in b.last_redirect)


def test_same_totp_code_from_ten_browsers_is_accepted_once(pg_server):
    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.first_party)
    secret, _codes = enrol_totp_during_login(FormBrowser(pg_server.url), rp, seeded)
    browsers = [_on_code_page(pg_server, rp, seeded) for _ in range(RACERS)]
    assert _race(browsers, pyotp.TOTP(secret).at(time.time() + 30)) == 1


def test_same_recovery_code_from_ten_browsers_is_accepted_once(pg_server):
    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.first_party)
    _secret, codes = enrol_totp_during_login(FormBrowser(pg_server.url), rp, seeded)
    browsers = [_on_code_page(pg_server, rp, seeded, recovery=True) for _ in range(RACERS)]
    assert _race(browsers, codes[0]) == 1


def test_ten_recovery_codes_posted_at_once_through_one_login_spend_one_and_say_so_once(pg_server):
    """One login page, one tab posting ten different codes at once: one moves the login on. The
    others' spends roll back with their lost moves, and so do their events: the audit log's
    "recovery code used" names exactly the codes that no longer work."""
    from sqlalchemy import select

    from idp.db import db
    from idp.models import AuditEvent, Credential

    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.first_party)
    _secret, codes = enrol_totp_during_login(FormBrowser(pg_server.url), rp, seeded)
    browser = _on_code_page(pg_server, rp, seeded, recovery=True)
    form = browser.page.form_with("code")
    tabs = tabs_of(browser, RACERS)
    _at_once([(tab, form, {"code": code}) for tab, code in zip(tabs, codes[:RACERS], strict=True)])
    # Every tab now shows the login where it stands: one code accepted, nine left; one Continue moves it on.
    assert all('data-recovery-codes-remaining="9"' in tab.page.text for tab in tabs)
    for tab in tabs:
        tab.past_recovery_notice()
    assert sum(1 for tab in tabs if tab.last_redirect and "code=" in tab.last_redirect) == 1
    with pg_server.context():
        used = set(db.session.scalars(select(Credential.id).where(Credential.factor == "recovery_codes",
                                                                  Credential.used_at.is_not(None))))
        told = [e.details["credential_id"] for e in db.session.scalars(
            select(AuditEvent).where(AuditEvent.event == "login.recovery_used"))]
    assert len(used) == 1 and told == list(used)


def test_one_enrolment_form_posted_by_ten_requests_at_once_adds_one_credential(pg_server):
    """A double (or tenfold) submission of the enrolment form: the credential, its recovery codes
    and the move to the next step commit together, once."""
    from sqlalchemy import func, select

    from idp.db import db
    from idp.models import Credential, User

    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.first_party)
    browser = FormBrowser(pg_server.url)
    page, key = at_totp_enrolment(browser, rp, seeded)
    form, code = page.form_with("code"), pyotp.TOTP(key).now()
    clones = tabs_of(browser, RACERS)
    _at_once([(clone, form, {"code": code, "label": "Phone"}) for clone in clones])
    assert sum("data-recovery-codes" in c.page.text for c in clones) == 1
    with pg_server.context():
        user_id = db.session.scalar(select(User.id).where(User.email == seeded.user_email))
        counts = dict(db.session.execute(select(Credential.factor, func.count()).where(Credential.user_id == user_id)
                                         .group_by(Credential.factor)).all())
    assert counts == {"totp": 1, "recovery_codes": 10}


def _signed_in_to_account_page(pg_server):
    """A user with TOTP, just signed in (recent enough to add and regenerate), on /account/security."""
    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.first_party)
    browser = FormBrowser(pg_server.url)
    enrol_totp_during_login(browser, rp, seeded)
    rp.exchange(browser.last_redirect)
    return seeded, browser, browser.get("/account/security")


def _live_credentials(pg_server, email) -> dict[str, int]:
    from sqlalchemy import func, select

    from idp.db import db
    from idp.models import Credential, User

    with pg_server.context():
        user_id = db.session.scalar(select(User.id).where(User.email == email))
        return dict(db.session.execute(
            select(Credential.factor, func.count()).where(Credential.user_id == user_id,
                                                          Credential.revoked_at.is_(None))
            .group_by(Credential.factor)).all())


def test_one_account_page_enrolment_finished_ten_times_at_once_adds_one_credential(pg_server):
    """The pending enrolment is claimed before the credential is stored: the other nine submissions
    wait on the claim, find it finished and store nothing (they used to commit a credential each)."""
    seeded, browser, page = _signed_in_to_account_page(pg_server)
    page = browser.submit([f for f in page.forms() if f["action"].endswith("/add/totp")][0])
    key = page.find(r'<code>([A-Z2-7 ]+)</code>').replace(" ", "")
    form, code = page.form_with("code"), pyotp.TOTP(key).now()
    clones = tabs_of(browser, RACERS)
    _at_once([(clone, form, {"code": code, "label": "Second"}) for clone in clones])
    assert sum("Authenticator app added." in c.page.text for c in clones) == 1
    assert _live_credentials(pg_server, seeded.user_email) == {"totp": 2, "recovery_codes": 10}


def test_a_single_credential_factor_enrolled_in_several_tabs_at_once_keeps_one(pg_server):
    """A factor that keeps one credential (`allow_multiple = False`), begun in several tabs while
    the user held none and finished in all of them at once: each finish takes the user's row
    first, so the later ones see the credential stored and are refused (`one_too_many`)."""
    import html
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
    from test_single_credential_factor import MailboxFactor, begun_a_while_ago

    class SlowMailbox(MailboxFactor):
        def finish_enrolment(self, user, state, response, ctx):
            time.sleep(0.2)  # (what a real one does here: a round trip to its mail service, say)
            return super().finish_enrolment(user, state, response, ctx)

    pg_server.app.extensions["idp.factors"].register(SlowMailbox)
    seeded, browser, page = _signed_in_to_account_page(pg_server)
    add = next(form for form in page.forms() if form["action"].endswith("/add/mailbox"))
    tabs = tabs_of(browser, 4)
    forms = []
    for tab in tabs:  # begun one after the other, each well after the one before (no double click)
        forms.append(tab.submit(add).form_with("code"))
        begun_a_while_ago(pg_server)
    _at_once([(tab, form, {"code": "123456"}) for tab, form in zip(tabs, forms, strict=True)])
    added = [tab for tab in tabs if "Code by e-mail added." in html.unescape(tab.page.text)]
    refused = [tab for tab in tabs if "You already have this method." in html.unescape(tab.page.text)]
    assert len(added) == 1 and len(refused) == 3, [tab.page.status for tab in tabs]
    assert _live_credentials(pg_server, seeded.user_email)["mailbox"] == 1


def test_new_recovery_codes_asked_ten_times_at_once_leave_one_set(pg_server):
    """A double-clicked "Generate new codes": each new set retires the one before it, the sets
    committed meanwhile included."""
    seeded, browser, page = _signed_in_to_account_page(pg_server)
    confirm = browser.get(re.search(r'href="([^"]*/security/recovery-codes)"', page.text).group(1))
    form = [f for f in confirm.forms() if f["action"].endswith("/recovery-codes")][0]
    _at_once([(clone, form, None) for clone in tabs_of(browser, RACERS)])
    assert _live_credentials(pg_server, seeded.user_email) == {"totp": 1, "recovery_codes": 10}


def test_a_required_user_removing_two_factors_at_once_keeps_one(pg_server):
    """Each removal counts what remains under a lock on the user's row: two removals at once must
    not each count the other's factor as the one that stays."""
    from sqlalchemy import func, select, update

    from idp.db import db
    from idp.models import Credential, User

    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.first_party)
    browser = FormBrowser(pg_server.url)
    enrol_totp_during_login(browser, rp, seeded)
    rp.exchange(browser.last_redirect)
    page = browser.get("/account/security")  # the login just made is recent: no new one asked
    page = browser.submit([f for f in page.forms() if f["action"].endswith("/add/totp")][0])
    second = page.find(r'<code>([A-Z2-7 ]+)</code>').replace(" ", "")
    browser.submit(page.form_with("code"), {"code": pyotp.TOTP(second).now(), "label": "Second"})
    with pg_server.context():
        db.session.execute(update(User).where(User.email == seeded.user_email).values(mfa_setting="required"))
        db.session.commit()
    page = browser.get("/account/security")
    confirmations = re.findall(r'data-remove="\d+"\s+href="([^"]+)"', page.text)
    removals = [[f for f in browser.get(href).forms() if f["action"].endswith("/remove")][0]
                for href in confirmations]
    assert len(removals) == 2
    clones = tabs_of(browser, len(removals))
    _at_once([(clone, form, None) for clone, form in zip(clones, removals, strict=True)])
    with pg_server.context():
        user = db.session.scalar(select(User).where(User.email == seeded.user_email))
        live = db.session.scalar(select(func.count()).select_from(Credential).where(
            Credential.user_id == user.id, Credential.factor == "totp", Credential.revoked_at.is_(None)))
    assert live == 1 and user.second_factor_count == 1


def test_wrong_codes_posted_at_once_through_many_logins_are_checked_up_to_the_limit(pg_server_with_lockout):
    """Someone with the password opens a dozen logins and posts one guess through each at the same
    moment: each guess is checked and counted one after the other, so the sixth and later wait."""
    server = pg_server_with_lockout
    seeded = seed(server)
    rp = RelyingParty(server.url, seeded.first_party)
    secret, _codes = enrol_totp_during_login(FormBrowser(server.url), rp, seeded)
    browsers = [_on_code_page(server, rp, seeded) for _ in range(RACERS + 2)]
    right = pyotp.TOTP(secret)
    wrong = next(f"{n:06d}" for n in range(1000000)
                 if f"{n:06d}" not in {right.at(time.time() + d) for d in (-30, 0, 30, 60)})
    _at_once([(b, b.page.form_with("code"), {"code": wrong}) for b in browsers])
    statuses = sorted(b.page.status for b in browsers)
    assert statuses.count(401) == 5 and statuses.count(429) == len(browsers) - 5, statuses
