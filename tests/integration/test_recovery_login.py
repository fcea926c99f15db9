"""A user who lost every factor gets back in with a recovery code from an admin: the login offers
"Use a recovery code from your administrator" under "I can't use my usual method", takes the
code once, and goes on into registering a new factor before the user reaches the application."""
from __future__ import annotations

import html
import re

import pyotp
import pytest

from fixtures.oidc import FormBrowser
from recovery_kit import admin_browser, audit_events, enable_recovery, issue_on_admin_page, user_id

MFA = "urn:idp:acr:mfa"


@pytest.fixture
def server(live_server):
    return enable_recovery(live_server)


def enrol_totp(web: FormBrowser, page) -> str:
    """On an enrolment page: pick the authenticator app if asked, scan (read) the key, confirm a code."""
    choose = [f for f in page.forms() if f["action"].endswith("/factor/totp")]
    if choose:
        page = web.submit(choose[0])
    key = page.find(r'<code>([A-Z2-7 ]+)</code>')
    assert key, page.text[:3000]
    secret = key.replace(" ", "")
    page = web.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).now(), "label": "New phone"})
    if "data-recovery-codes" in page.text:  # recovery codes shown once after a first factor
        web.submit(page.forms()[0])
    return secret


def enrolled_with_totp(server, seeded, rp) -> str:
    """The seeded user, in a browser of their own, signs in asking for MFA and enrols TOTP: its secret."""
    web = FormBrowser(server.url)
    web.get(rp.authorization_url(acr_values=MFA))
    secret = enrol_totp(web, web.login(seeded.user_email, seeded.password))
    finish(web, rp)
    return secret


def finish(web: FormBrowser, rp):
    if web.last_redirect is None and web.page.text and 'name="action"' in web.page.text:
        web.consent("allow")
    return rp.validate_id_token(rp.exchange(web.last_redirect)["id_token"])


def test_admin_recovery_code_lets_a_user_who_lost_every_factor_in_and_into_enrolment(server, seeded, rp_factory):
    rp = rp_factory(seeded.first_party)
    # Alice has a TOTP app (and recovery codes)... and then loses the phone and the paper.
    web = FormBrowser(server.url)
    web.get(rp.authorization_url(acr_values=MFA))
    lost_secret = enrol_totp(web, web.login(seeded.user_email, seeded.password))
    finish(web, rp)

    # Before an admin issues a code, the login does not offer it.
    probe = FormBrowser(server.url)
    probe.get(rp.authorization_url())
    page = probe.login(seeded.user_email, seeded.password)
    assert not [f for f in page.forms() if f["action"].endswith("/factor/qr_recovery")]

    admin = admin_browser(server, seeded)
    issued = issue_on_admin_page(admin, user_id(server, seeded.user_email), valid_for="3600")

    web = FormBrowser(server.url)
    web.get(rp.authorization_url())
    page = web.login(seeded.user_email, seeded.password)
    assert "I can't use my usual method" in html.unescape(page.text)
    assert "Use a recovery code from your administrator" in page.text
    [choose] = [f for f in page.forms() if f["action"].endswith("/factor/qr_recovery")]
    page = web.submit(choose)
    assert page.form_with("code")
    # A wrong code shows the same form again and moves nothing forward.
    page = web.submit(page.form_with("code"), {"code": "00000-00000-00000-00000-00000"})
    assert page.status == 401 and web.last_redirect is None and page.form_with("code")
    # The admin's code, typed as a person might: into enrolment of a new factor.
    page = web.submit(page.form_with("code"), {"code": issued["secret"].lower()})
    assert web.last_redirect is None, "the login must not finish before a new factor is set up"
    assert "no longer accepts" not in page.text  # (a recovery, not a factor the organization stopped taking)
    new_secret = enrol_totp(web, page)
    assert new_secret != lost_secret
    claims = finish(web, rp)
    assert "pwd" in claims["amr"] and "otp" in claims["amr"]

    [(actor, details)] = audit_events(server, "login.recovery_used")
    assert actor == seeded.user_email and details["factor"] == "qr_recovery" and details["then_enrol"] is True

    # Used once: the next login offers no administrator code, and the new TOTP app works.
    again = FormBrowser(server.url)
    again.get(rp.authorization_url())
    page = again.login(seeded.user_email, seeded.password)
    assert not [f for f in page.forms() if f["action"].endswith("/factor/qr_recovery")]
    totp_forms = [f for f in page.forms() if f["action"].endswith("/factor/totp")]
    if totp_forms:
        page = again.submit(totp_forms[0])
    import time

    code = pyotp.TOTP(new_secret).at(int(time.time()) + 30)  # the enrolment spent the current step
    again.submit(page.form_with("code"), {"code": code})
    assert "otp" in finish(again, rp)["amr"]


def test_the_users_page_shows_an_admins_recovery_code_but_only_an_admin_changes_or_revokes_it(server, seeded):
    """DESIGN.md: only admins manage other users' 2FA, and a work account's recovery QR code is
    issued by its admin. The user sees it on their security page, with who issued it, but a
    rename or removal posted anyway is a 403 that changes nothing; the admin still revokes it."""
    admin = admin_browser(server, seeded)
    issue_on_admin_page(admin, user_id(server, seeded.user_email))
    web = FormBrowser(server.url)
    web.get("/account/security")
    page = web.login(seeded.user_email, seeded.password)
    [code_id] = re.findall(r'<tr data-credential="(\d+)" data-factor="qr_recovery">', page.text)
    assert "Issued by your administrator: only an administrator can change or revoke it." in page.text
    assert f"/credentials/{code_id}/rename" not in page.text and f'data-remove="{code_id}"' not in page.text
    csrf = [f for f in page.forms() if "csrf_token" in f["fields"]][0]["fields"]["csrf_token"]  # the page's token

    renamed = web.http.post(f"{server.url}/account/security/credentials/{code_id}/rename",
                            data={"csrf_token": csrf, "label": "mine now"}, allow_redirects=False)
    confirm = web.http.get(f"{server.url}/account/security/credentials/{code_id}/confirm-removal",
                           allow_redirects=False)
    removed = web.http.post(f"{server.url}/account/security/credentials/{code_id}/remove",
                            data={"csrf_token": csrf}, allow_redirects=False)
    for response in (renamed, confirm, removed):
        assert response.status_code == 403
        assert "only an administrator can change or revoke it" in html.unescape(response.text)
    assert not audit_events(server, "factor.renamed") and not audit_events(server, "factor.removed")
    page = web.get("/account/security")
    assert re.findall(r'<tr data-credential="(\d+)" data-factor="qr_recovery">', page.text) == [code_id]
    assert "mine now" not in page.text

    revoke = [f for f in admin.get(f"/admin/users/{user_id(server, seeded.user_email)}/recovery-qr").forms()
              if f["action"].endswith(f"/recovery-qr/{code_id}/revoke")][0]
    admin.submit(revoke)
    assert [details["credential_id"] for _actor, details in audit_events(server, "recovery_qr.revoked")] == \
        [int(code_id)]


def test_after_a_reset_a_required_user_with_an_admins_code_proves_it_before_enrolling(server, seeded, rp_factory):
    """The lost-phone runbook (docs/operations.md): the admin resets every factor and issues a
    recovery QR code. The next login asks for that code before the user enrols a new factor:
    whoever knows only the password enrols nothing."""
    from sqlalchemy import update

    from idp.db import db
    from idp.models import User

    rp = rp_factory(seeded.first_party)
    enrolled_with_totp(server, seeded, rp)
    with server.context():
        db.session.execute(update(User).where(User.email == seeded.user_email).values(mfa_setting="required"))
        db.session.commit()

    admin = admin_browser(server, seeded)
    target = user_id(server, seeded.user_email)
    confirm = admin.get(f"/admin/users/{target}/reset-factors")
    assert admin.submit(next(f for f in confirm.forms() if f["action"].endswith("/reset-factors"))).status == 200
    issued = issue_on_admin_page(admin, target, valid_for="3600")

    password_only = FormBrowser(server.url)
    password_only.get(rp.authorization_url())
    page = password_only.login(seeded.user_email, seeded.password)
    # the only way on: the administrator's code (no enrolment page, no key to scan)
    assert "Use a recovery code from your administrator" in page.text, page.text[:2000]
    assert "Set up two-factor authentication" not in page.text and 'class="totp-key"' not in page.text
    page = password_only.submit(page.form_with("code"), {"code": issued["secret"]})
    assert password_only.last_redirect is None
    enrol_totp(password_only, page)
    assert "otp" in finish(password_only, rp)["amr"]


@pytest.mark.parametrize("with_code", [True, False], ids=["admins-code", "no-code"])
def test_a_grace_period_gives_nothing_back_after_an_admins_reset(server, seeded, rp_factory, with_code):
    """Grace is for users newly required, who never had a second factor. After an admin's reset
    (a lost phone), whoever knows only the password is neither let in with "Set up later" nor
    past the admin's recovery QR code to enrol a factor of their own; required anew later
    (exempted, then required again), the user gets a fresh grace period."""
    from datetime import timedelta

    from sqlalchemy import update

    from idp.db import db, utcnow
    from idp.models import Organization, User
    from idp.policy import settings as policy_settings

    rp = rp_factory(seeded.first_party)
    enrolled_with_totp(server, seeded, rp)
    with server.context():
        db.session.execute(update(Organization).where(Organization.id == seeded.org_id).values(grace_logins=3))
        db.session.execute(update(User).where(User.email == seeded.user_email).values(
            mfa_setting="required", required_since=utcnow() - timedelta(days=300)))
        db.session.commit()

    admin = admin_browser(server, seeded)
    target = user_id(server, seeded.user_email)
    confirm = admin.get(f"/admin/users/{target}/reset-factors")
    assert admin.submit(next(f for f in confirm.forms() if f["action"].endswith("/reset-factors"))).status == 200
    if with_code:
        issue_on_admin_page(admin, target, valid_for="3600")

    password_only = FormBrowser(server.url)
    password_only.get(rp.authorization_url())
    page = password_only.login(seeded.user_email, seeded.password)
    assert "Set up later" not in page.text and password_only.last_redirect is None, page.text[:2000]
    if with_code:
        assert "Use a recovery code from your administrator" in page.text and 'class="totp-key"' not in page.text
    else:  # the runbook without a code: the next login enrols, as with no grace configured
        assert "<h1>Set up two-factor authentication</h1>" in page.text, page.text[-2500:]

    with server.context():  # exempted, then required again: a fresh grace period
        for mode in ("exempt", "required"):
            policy_settings.set_user_requirement(target, mode, None, None, policy_settings.Actor.cli())
    again = FormBrowser(server.url)
    again.get(rp.authorization_url())
    page = again.login(seeded.user_email, seeded.password)
    if with_code:  # the admin's code still comes first, grace or not
        assert "Use a recovery code from your administrator" in page.text, page.text[:2000]
    else:
        assert "Set up later" in page.text, page.text[:2000]


def test_a_required_user_left_with_recovery_codes_alone_enrols_after_using_one(server, seeded, rp_factory):
    """Recovery codes that outlived every second factor (a factor whose plugin was uninstalled,
    say): the login asks for one, then for a new factor, as after an admin's code; it never ends
    on the password and a recovery code alone."""
    from sqlalchemy import update

    from idp.db import db
    from idp.factors.registry import current_registry
    from idp.models import User

    rp = rp_factory(seeded.first_party)
    web = FormBrowser(server.url)
    web.get(rp.authorization_url(acr_values=MFA))
    page = web.login(seeded.user_email, seeded.password)
    choose = [f for f in page.forms() if f["action"].endswith("/factor/totp")]
    page = web.submit(choose[0]) if choose else page
    secret = page.find(r'<code>([A-Z2-7 ]+)</code>').replace(" ", "")
    page = web.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).now(), "label": "Phone"})
    codes = [c for c in html.unescape(page.find(r"<pre class=\"codes\" data-recovery-codes>([^<]+)</pre>")).split()]
    web.submit(page.forms()[0])
    finish(web, rp)
    with server.context():
        uid = db.session.scalar(select_user_id(seeded.user_email))
        store = current_registry().store
        [totp] = [c for c in store.list(uid) if c.factor == "totp"]
        store.revoke(uid, totp.id)  # the factor alone, its recovery codes left behind
        db.session.execute(update(User).where(User.id == uid).values(mfa_setting="required"))
        db.session.commit()

    again = FormBrowser(server.url)
    again.get(rp.authorization_url())
    page = again.login(seeded.user_email, seeded.password)
    choose = [f for f in page.forms() if f["action"].endswith("/factor/recovery_codes")]
    page = again.submit(choose[0]) if choose else page
    again.submit(page.form_with("code"), {"code": codes[0]})
    page = again.past_recovery_notice()
    assert again.last_redirect is None, "no code to the client before a new factor is set up"
    enrol_totp(again, page)
    assert "otp" in finish(again, rp)["amr"]


def select_user_id(email: str):
    from sqlalchemy import select

    from idp.models import User

    return select(User.id).where(User.email == email)


def test_the_whole_recovery_uri_pasted_at_the_login_works(server, seeded, rp_factory):
    """docs/recovery.md 1.2: the user types the secret, or pastes what the QR code holds (a phone's
    camera shows the idp-recovery:// URI, some 200 characters): the login takes either."""
    rp = rp_factory(seeded.first_party)
    admin = admin_browser(server, seeded)
    issued = issue_on_admin_page(admin, user_id(server, seeded.user_email), valid_for="3600")
    assert len(issued["uri"]) > 100

    web = FormBrowser(server.url)
    web.get(rp.authorization_url(acr_values=MFA))  # (a user with no factor yet, asked for one)
    page = web.login(seeded.user_email, seeded.password)
    assert "Use a recovery code from your administrator" in page.text  # (the only method: shown at once)
    [field_max] = re.findall(r'<input id="code" name="code"[^>]*maxlength="(\d+)"', page.text)
    assert int(field_max) >= len(issued["uri"]), "the browser would cut the pasted URI short"
    page = web.submit(page.form_with("code"), {"code": issued["uri"]})
    assert page.status == 200 and web.last_redirect is None, (page.status, page.text[:2000])
    enrol_totp(web, page)
    assert "otp" in finish(web, rp)["amr"]
    [(_actor, details)] = audit_events(server, "login.recovery_used")
    assert details["factor"] == "qr_recovery"


def test_a_code_that_no_longer_works_is_named_as_such_at_the_login(server, seeded, rp_factory):
    """The user types an old code (revoked by the admin, who issued another; or one already used):
    the page says so and what to do, in the plugin's words, not the core's "That request expired. A
    new one has been started." or "Wait for the next one", and the attempt is in the audit log."""
    rp = rp_factory(seeded.first_party)
    admin = admin_browser(server, seeded)
    target = user_id(server, seeded.user_email)
    old = issue_on_admin_page(admin, target, valid_for="3600")
    [revoke] = [f for f in admin.get(f"/admin/users/{target}/recovery-qr").forms()
                if f["action"].endswith("/revoke")]
    admin.submit(revoke)
    new = issue_on_admin_page(admin, target, valid_for="3600")

    web = FormBrowser(server.url)
    web.get(rp.authorization_url(acr_values=MFA))
    page = web.login(seeded.user_email, seeded.password)
    page = web.submit(page.form_with("code"), {"code": old["secret"]})
    text = html.unescape(page.text)
    assert page.status == 401 and web.last_redirect is None
    assert "That recovery code was revoked by an administrator. Ask your administrator for a new one." in text
    assert "A new one has been started" not in text and page.form_with("code")
    page = web.submit(page.form_with("code"), {"code": new["secret"]})
    assert page.status == 200 and web.last_redirect is None
    enrol_totp(web, page)
    finish(web, rp)

    newer = issue_on_admin_page(admin, target, valid_for="3600")  # (a code to reach the step with)
    again = FormBrowser(server.url)
    again.get(rp.authorization_url())
    page = again.login(seeded.user_email, seeded.password)
    [choose] = [f for f in page.forms() if f["action"].endswith("/factor/qr_recovery")]
    page = again.submit(again.submit(choose).form_with("code"), {"code": new["secret"]})
    text = html.unescape(page.text)
    assert page.status == 401 and "That recovery code was already used. Ask your administrator for a new one." in text
    assert "Wait for the next one" not in text
    assert [d["reason"] for _a, d in audit_events(server, "login.second_factor_failed")] == ["code_revoked", "replayed"]
    assert newer["secret"]  # still unused


def test_after_an_admins_code_the_login_ends_only_with_a_new_factor_even_in_grace(server, seeded, rp_factory):
    """docs/recovery.md 1.2: after the administrator's code "the user reaches the application only
    after registering one". A user still in a grace period is asked for the code first (it is
    what they hold), and is then not offered "Set up later": the recovery ends with a factor."""
    from datetime import timedelta

    from sqlalchemy import update

    from idp.db import db, utcnow
    from idp.models import Organization, User

    rp = rp_factory(seeded.first_party)
    with server.context():
        db.session.execute(update(Organization).where(Organization.id == seeded.org_id).values(grace_logins=3))
        db.session.execute(update(User).where(User.email == seeded.user_email).values(
            mfa_setting="required", required_since=utcnow() - timedelta(minutes=5)))
        db.session.commit()
    issued = issue_on_admin_page(admin_browser(server, seeded), user_id(server, seeded.user_email), valid_for="3600")

    web = FormBrowser(server.url)
    web.get(rp.authorization_url())
    page = web.login(seeded.user_email, seeded.password)
    assert "Use a recovery code from your administrator" in page.text, page.text[:2000]
    page = web.submit(page.form_with("code"), {"code": issued["secret"]})
    assert page.status == 200 and web.last_redirect is None
    assert "Set up later" not in page.text, "a recovery that let the user in must end with a new factor"
    choose = [f for f in page.forms() if f["action"].endswith("/factor/totp")]
    page = web.submit(choose[0]) if choose else page
    assert "Set up later" not in page.text
    refused = web.submit(page.form_with("code"), {"postpone": "1"})  # posted anyway
    assert refused.status == 403 and web.last_redirect is None
    assert not audit_events(server, "login.enrolment_postponed")
    enrol_totp(web, refused)
    assert "otp" in finish(web, rp)["amr"]


@pytest.mark.parametrize("default_ttl, max_ttl, offered", [
    (900, 1800, ["900", "1800"]),                     # below an hour: the page offered nothing at all
    (7200, 172800, ["3600", "7200", "86400", "172800"]),  # the operator's default, preselected
])
def test_the_admin_page_offers_the_configured_validities(migrated_database_url, default_ttl, max_ttl, offered):
    """docs/recovery.md: a code expires after `factors.qr_recovery.default_ttl`, at most `max_ttl`.
    The admin page preselects that default and offers what the configuration allows."""
    from fixtures.oidc import seed, start_server

    server = enable_recovery(start_server(migrated_database_url, {
        "factors.qr_recovery.default_ttl": default_ttl, "factors.qr_recovery.max_ttl": max_ttl}))
    try:
        seeded = seed(server)
        admin = admin_browser(server, seeded)
        target = user_id(server, seeded.user_email)
        page = admin.get(f"/admin/users/{target}/recovery-qr")
        assert re.findall(r'<option[^>]*value="(\d+)"', page.text) == offered, page.text[-3000:]
        [selected] = re.findall(r'<option[^>]*selected[^>]*>', page.text)
        assert f'value="{default_ttl}"' in selected
        issued = issue_on_admin_page(admin, target, valid_for=str(max_ttl))
        assert "Give this to" in issued["page"].text
        too_long = admin.submit(admin.get(f"/admin/users/{target}/recovery-qr").form_with("expires_in"),
                                {"expires_in": "604800"})
        assert too_long.status == 400 and "Choose a shorter validity." in too_long.text
    finally:
        server.stop()


def test_the_only_code_revoked_while_its_page_is_open_is_told_as_such(server, seeded, rp_factory):
    """The administrator revokes the user's only code while the code page is open: the typed code
    is refused as a recovery method that no longer works, not with the push suspension's words."""
    rp = rp_factory(seeded.first_party)
    admin = admin_browser(server, seeded)
    target = user_id(server, seeded.user_email)
    issued = issue_on_admin_page(admin, target, valid_for="3600")
    web = FormBrowser(server.url)
    web.get(rp.authorization_url(acr_values=MFA))
    page = web.login(seeded.user_email, seeded.password)
    form = page.form_with("code")
    [revoke] = [f for f in admin.get(f"/admin/users/{target}/recovery-qr").forms() if f["action"].endswith("/revoke")]
    admin.submit(revoke)
    page = web.submit(form, {"code": issued["secret"]})
    text = html.unescape(page.text)
    assert page.status == 403 and web.last_redirect is None
    assert "This recovery method can no longer be used to sign in: it was used, it expired or an administrator " \
           "revoked it." in text
    assert "push approvals" not in text
