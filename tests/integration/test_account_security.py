"""The user's own security page: sign in to it, add TOTP, rename, remove, regenerate, recent-login checks."""
from __future__ import annotations

import html
import re
import time
from datetime import timedelta

import pyotp
from sqlalchemy import select, update

from fixtures.oidc import FormBrowser


def sign_in_to_account(web: FormBrowser, seeded) -> None:
    page = web.get("/account/security")
    page = web.login(seeded.user_email, seeded.password)
    assert "/account/security" in page.url and page.status == 200, page.text[:500]


def add_totp(web: FormBrowser) -> str:
    page = web.submit([f for f in web.page.forms() if f["action"].endswith("/add/totp")][0])
    secret = page.find(r'<code>([A-Z2-7 ]+)</code>').replace(" ", "")
    web.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).now(), "label": "Work phone"})
    return secret


def removal_forms(web: FormBrowser, page) -> list[dict]:
    """The security page's Remove links lead to a confirmation page each: its form, per method."""
    forms = []
    for href in re.findall(r'data-remove="\d+"\s+href="([^"]+)"', page.text):
        forms.append([f for f in web.get(href).forms() if f["action"].endswith("/remove")][0])
    return forms


def audit_events(server, event: str) -> int:
    from idp.db import db
    from idp.models import AuditEvent

    with server.context():
        return len(db.session.scalars(select(AuditEvent).where(AuditEvent.event == event)).all())


def test_anonymous_visitor_signs_in_and_comes_back(seeded, web):
    sign_in_to_account(web, seeded)
    assert "No second factor yet" in web.page.text


def test_add_totp_shows_recovery_codes_once_then_lists_it(seeded, web, live_server):
    sign_in_to_account(web, seeded)
    add_totp(web)
    assert "data-recovery-codes" in web.page.text
    page = web.get("/account/security")
    assert "Work phone" in page.text and 'data-factor="recovery_codes"' in page.text
    assert 'data-2fa-status="active_voluntary"' in page.text
    assert audit_events(live_server, "factor.enrolled") == 1
    from idp.db import db
    from idp.models import AuditEvent

    with live_server.context():  # the set of codes now valid was created with it: the log says so
        event = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "factor.enrolled")).one()
        assert event.details["recovery_codes_issued"] == 10


def test_rename_and_remove(seeded, web, live_server):
    sign_in_to_account(web, seeded)
    add_totp(web)
    page = web.get("/account/security")
    rename = [f for f in page.forms() if f["action"].endswith("/rename") and f["fields"].get("label") == "Work phone"][0]
    page = web.submit(rename, {"label": "Old phone"})
    assert "Old phone" in page.text
    again = [f for f in page.forms() if f["action"].endswith("/rename") and f["fields"].get("label") == "Old phone"][0]
    page = web.submit(again, {"label": "Old phone"})  # the same name again: no change, no second event
    assert audit_events(live_server, "factor.renamed") == 1
    remove = removal_forms(web, page)[0]
    page = web.submit(remove)
    assert "Old phone" not in page.text and 'data-2fa-status="not_active"' in page.text
    assert audit_events(live_server, "factor.removed") == 1


def test_removing_asks_first_and_the_last_factor_takes_the_recovery_codes_with_it(seeded, web, live_server):
    """A removal cannot be undone: a page of its own asks first, and says when 2FA would be off.
    With no second factor left, recovery codes have nothing to stand in for: they go too."""
    sign_in_to_account(web, seeded)
    add_totp(web)
    page = web.get("/account/security")
    href = re.search(r'data-remove="\d+"\s+href="([^"]+)"', page.text).group(1)
    confirm = web.get(href)
    assert "Remove Authenticator app “Work phone”?" in confirm.text
    assert "your last second factor" in confirm.text and "recovery codes will stop working" in confirm.text
    assert "Work phone" in web.get("/account/security").text, "asking removed nothing"
    page = web.submit([f for f in confirm.forms() if f["action"].endswith("/remove")][0])
    assert "Authenticator app removed." in page.text
    assert 'data-factor="recovery_codes"' not in page.text and "No second factor yet" in page.text
    from idp.db import db
    from idp.models import AuditEvent

    with live_server.context():
        [event] = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "factor.removed")).all()
        assert event.details["recovery_codes_revoked"] == 10


def test_one_recovery_code_is_not_removed_on_its_own(seeded, web, live_server):
    """Recovery codes go as a set (new ones replace it): the removal of one of them, posted as a
    method's removal, is refused and changes nothing."""
    from idp.db import db
    from idp.models import Credential

    sign_in_to_account(web, seeded)
    add_totp(web)
    with live_server.context():
        code_id = db.session.scalars(select(Credential.id).where(Credential.factor == "recovery_codes")).first()
    page = web.get("/account/security")
    csrf = next(f for f in page.forms() if "csrf_token" in f["fields"])["fields"]["csrf_token"]
    page = web.submit({"action": f"{live_server.url}/account/security/credentials/{code_id}/remove",
                       "fields": {"csrf_token": csrf}})
    assert "No such method." in page.text
    assert audit_events(live_server, "factor.removed") == 0
    with live_server.context():
        assert db.session.get(Credential, code_id).revoked_at is None


def test_new_recovery_codes_are_confirmed_first(seeded, web):
    sign_in_to_account(web, seeded)
    add_totp(web)
    page = web.get("/account/security")
    confirm = web.get(re.search(r'href="([^"]*/security/recovery-codes)"', page.text).group(1))
    assert "Your current recovery codes will stop working" in confirm.text
    shown = web.submit([f for f in confirm.forms() if f["action"].endswith("/recovery-codes")][0])
    assert "data-recovery-codes" in shown.text


def test_no_recovery_codes_without_a_second_factor(seeded, web, live_server):
    """The page offers no button then, and the form posted anyway makes nothing: codes made
    without a factor would be kept by the first enrolment instead of a fresh set, a way past the
    second step planted by whoever held a password-only session."""
    from idp.db import db
    from idp.models import Credential

    sign_in_to_account(web, seeded)
    form = {"action": web.base_url + "/account/security/recovery-codes", "fields": web.page.forms()[0]["fields"]}
    page = web.submit(form)
    assert page.status == 403 and "add a sign-in method first" in page.text
    with live_server.context():
        assert db.session.scalars(select(Credential).where(Credential.factor == "recovery_codes")).all() == []
    assert audit_events(live_server, "recovery_codes.regenerated") == 0
    add_totp(web)  # the first factor brings a fresh set, shown once
    assert "data-recovery-codes" in web.page.text


def test_required_user_cannot_remove_last_factor(seeded, web, live_server):
    from idp.db import db
    from idp.models import User

    sign_in_to_account(web, seeded)
    add_totp(web)
    with live_server.context():
        db.session.execute(update(User).where(User.email == seeded.user_email).values(mfa_setting="required"))
        db.session.commit()
    page = web.get("/account/security")
    href = re.search(r'data-remove="(\d+)"\s+href="([^"]+)"', page.text)
    csrf = page.forms()[0]["fields"]["csrf_token"]
    # The page that asks to confirm says so at once, not "two-factor authentication will be off"
    # with a Remove button that the removal then refuses.
    confirm = web.get(href.group(2))
    assert confirm.status == 403 and "add another method before removing your last one" in confirm.text
    assert "will be off" not in confirm.text and not [f for f in confirm.forms() if f["action"].endswith("/remove")]
    answer = web.http.post(f"{live_server.url}/account/security/credentials/{href.group(1)}/remove",
                           data={"csrf_token": csrf}, allow_redirects=True)
    assert "add another method before removing your last one" in answer.text and "Work phone" in answer.text
    assert audit_events(live_server, "factor.removed") == 0


def test_stale_login_must_confirm_both_steps_again(seeded, web, live_server):
    from idp.db import db
    from idp.models import UserSession

    sign_in_to_account(web, seeded)
    secret = add_totp(web)
    with live_server.context():
        for row in db.session.scalars(select(UserSession)).all():
            row.login_started_at -= timedelta(minutes=10)
        db.session.commit()
    page = web.get("/account/security")
    remove = removal_forms(web, page)[0]
    page = web.submit(remove)
    assert page.form_with("password"), "a stale session must sign in again before removing a factor"
    page = web.login(seeded.user_email, seeded.password)
    import time

    page = web.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).at(time.time() + 30)})
    assert "/account/security" in page.url
    assert "Work phone" in page.text, "nothing was removed by the request that asked for a new login"


def test_cannot_touch_another_users_credential(seeded, web, live_server):
    from idp.db import db
    from idp.models import Credential, User

    sign_in_to_account(web, seeded)
    add_totp(web)
    with live_server.context():
        mine = db.session.scalars(select(Credential.id)).all()
    other = FormBrowser(live_server.url)
    other.get("/account/security")
    other.login(seeded.admin_email, seeded.password)
    form = [f for f in other.page.forms() if f["action"].endswith("/locale")][0]
    for credential_id in mine:
        other.http.post(f"{live_server.url}/account/security/credentials/{credential_id}/remove",
                        data={"csrf_token": form["fields"]["csrf_token"]})
    with live_server.context():
        assert db.session.scalars(select(Credential).where(Credential.revoked_at.is_(None))).all()
        del User


def test_cancelling_the_sign_in_to_the_account_page_goes_home(seeded, web):
    """The provider's own login has no client to send an access_denied to."""
    page = web.get("/account/security")
    cancel = [f for f in page.forms() if f["action"].endswith("/cancel")][0]
    page = web.submit(cancel)
    assert page.status == 200 and page.url.rstrip("/") == web.base_url.rstrip("/")


def test_credential_ids_beyond_the_database_range_are_not_found(seeded, web):
    sign_in_to_account(web, seeded)
    add_totp(web)
    page = web.get("/account/security")
    csrf = [f for f in page.forms() if f["action"].endswith("/rename")][0]["fields"]["csrf_token"]
    for credential_id in (2**31, 2**63, 2**64, 0):  # ids are INTEGER columns (idp.db.MAX_ROW_ID)
        for action in ("rename", "remove"):
            response = web.http.post(f"{web.base_url}/account/security/credentials/{credential_id}/{action}",
                                     data={"csrf_token": csrf, "label": "x"}, allow_redirects=False)
            assert response.status_code == 404, (credential_id, action)
    assert "Work phone" in web.get("/account/security").text


def test_a_login_whose_password_step_is_old_is_not_recent(seeded, web, live_server):
    """"Both steps within the last 5 minutes": a second factor typed now does not make recent a
    password typed 6 minutes ago (the login transaction lives 10)."""
    from idp.db import db
    from idp.models import LoginTransaction

    sign_in_to_account(web, seeded)
    secret = add_totp(web)
    fresh = FormBrowser(web.base_url)
    fresh.get("/account/security")
    page = fresh.login(seeded.user_email, seeded.password)
    with live_server.context():
        for row in db.session.scalars(select(LoginTransaction)).all():
            row.steps_done = [dict(step, at=step["at"] - 360) for step in row.steps_done]
        db.session.commit()
    fresh.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).at(time.time() + 30)})
    page = fresh.get("/account/security")
    remove = removal_forms(fresh, page)[0]
    page = fresh.submit(remove)
    assert page.form_with("password"), "the password step was 6 minutes ago: sign in again"


def test_finishing_an_enrolment_needs_a_recent_login_too(seeded, web, live_server):
    """The pending enrolment lives 10 minutes, the recent-login window 5: its last step checks again."""
    from idp.db import db
    from idp.models import UserSession

    sign_in_to_account(web, seeded)
    page = web.submit([f for f in web.page.forms() if f["action"].endswith("/add/totp")][0])
    secret = page.find(r'<code>([A-Z2-7 ]+)</code>').replace(" ", "")
    with live_server.context():
        for row in db.session.scalars(select(UserSession)).all():
            row.login_started_at -= timedelta(minutes=6)
        db.session.commit()
    page = web.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).now(), "label": "Late phone"})
    assert page.form_with("password"), "a stale session signs in again before the factor is added"
    assert "Late phone" not in web.get("/account/security").text


def totp_labels(page_text: str) -> list[str]:
    return re.findall(r'data-factor="totp">.*?<input name="label" value="([^"]*)"', page_text, re.S)


def test_two_methods_of_one_kind_never_share_a_name(seeded, web, live_server):
    """A second authenticator app given a name already in use is stored under a distinct one
    ("Work phone (2)"); renaming one to the other's name (in any case) is refused with a 400 and a
    message, and changes nothing."""
    sign_in_to_account(web, seeded)
    add_totp(web)
    web.get("/account/security")
    add_totp(web)  # named "Work phone" again in the enrolment form
    page = web.get("/account/security")
    labels = totp_labels(page.text)
    assert labels == ["Work phone", "Work phone (2)"]
    rename = [f for f in page.forms() if f["action"].endswith("/rename")
              and f["fields"].get("label") == "Work phone (2)"][0]
    refused = web.submit(rename, {"label": "WORK PHONE"})
    assert refused.status == 400
    assert "You already have one called “WORK PHONE”: choose another name." in html.unescape(refused.text)
    assert totp_labels(web.get("/account/security").text) == labels
    assert audit_events(live_server, "factor.renamed") == 0


TOO_LONG = "A name has at most 200 characters."


def test_a_name_longer_than_the_forms_maxlength_is_refused_not_cut(seeded, web, live_server):
    """Only a hand-made request sends more than the field's maxlength (200): the name was cut to
    200 characters and stored. It is refused with a message and changes nothing; what counts is
    the display text (an invisible character is no character of the name)."""
    sign_in_to_account(web, seeded)
    page = web.submit([f for f in web.page.forms() if f["action"].endswith("/add/totp")][0])
    secret = page.find(r'<code>([A-Z2-7 ]+)</code>').replace(" ", "")
    refused = web.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).now(), "label": "x" * 201})
    assert refused.status == 400 and TOO_LONG in html.unescape(refused.text)
    assert audit_events(live_server, "factor.enrolled") == 0
    web.submit(refused.form_with("code"), {"code": pyotp.TOTP(secret).now(), "label": "Work phone"})
    assert totp_labels(web.get("/account/security").text) == ["Work phone"]

    rename = [f for f in web.page.forms() if f["action"].endswith("/rename") and f["fields"].get("label") == "Work phone"][0]
    refused = web.submit(rename, {"label": "y" * 201})
    assert refused.status == 400 and TOO_LONG in html.unescape(refused.text)
    assert totp_labels(web.get("/account/security").text) == ["Work phone"]
    assert audit_events(live_server, "factor.renamed") == 0
    web.submit(rename, {"label": "y" * 200 + "\u200b"})
    assert totp_labels(web.get("/account/security").text) == ["y" * 200]


def test_a_right_to_left_name_is_isolated_from_the_text_around_it(seeded, web, live_server):
    """A name in Hebrew (or one ending in neutral characters) inside a sentence reordered it:
    "Remove Authenticator app “!טלפון”?" Each is shown in HTML's isolate, <bdi>; not in <title>,
    where a tag is text."""
    sign_in_to_account(web, seeded)
    add_totp(web)
    page = web.get("/account/security")
    rename = [f for f in page.forms() if f["action"].endswith("/rename") and f["fields"].get("label") == "Work phone"][0]
    page = web.submit(rename, {"label": "טלפון 2!"})
    assert ", <bdi>טלפון 2!</bdi></span>" in page.text  # the Rename and Remove buttons' words
    confirm = web.get(re.search(r'data-remove="\d+"\s+href="([^"]+)"', page.text).group(1))
    heading = re.search(r"<h1>(.*?)</h1>", confirm.text).group(1)
    assert heading.endswith("“<bdi>טלפון 2!</bdi>”?")
    assert "<bdi>" not in re.search(r"<title>(.*?)</title>", confirm.text, re.S).group(1)


def test_a_name_that_differs_only_by_an_invisible_character_is_the_name_in_use(seeded, web, live_server):
    """A soft hyphen (U+00AD) shows as nothing inside a word, and the Arabic letter mark (U+061C, a
    bidirectional mark as U+200F is) as nothing at all while it reorders the digits after it: both
    are dropped as the other invisible format characters are, so "Work" + U+00AD + " phone" is the
    name in use, refused as it is, not a second "Work phone" that no one can tell from the first."""
    sign_in_to_account(web, seeded)
    add_totp(web)
    web.get("/account/security")
    add_totp(web)
    page = web.get("/account/security")
    for invisible in ("\u00ad", "\u061c"):
        rename = [f for f in page.forms() if f["action"].endswith("/rename")
                  and f["fields"].get("label") == "Work phone (2)"][0]
        refused = web.submit(rename, {"label": f"Work{invisible} phone"})
        assert refused.status == 400, invisible
    assert audit_events(live_server, "factor.renamed") == 0
    rename = [f for f in web.get("/account/security").forms() if f["action"].endswith("/rename")
              and f["fields"].get("label") == "Work phone (2)"][0]
    web.submit(rename, {"label": "Home \u061c1-2"})
    assert totp_labels(web.get("/account/security").text) == ["Work phone", "Home 1-2"]


def test_a_name_of_invisible_characters_only_is_no_name(seeded, web, live_server):
    """A name typed at enrolment that holds nothing but characters display text drops (a zero-width
    space, a bidirectional override) is no name: the app gets the one the factor gives ("Authenticator
    app", then "Authenticator app 2"), as with an empty field, not an empty label each, shown alike."""
    sign_in_to_account(web, seeded)
    for name in ("\u200b", "\u202e "):
        page = web.submit([f for f in web.get("/account/security").forms() if f["action"].endswith("/add/totp")][0])
        secret = page.find(r'<code>([A-Z2-7 ]+)</code>').replace(" ", "")
        web.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).now(), "label": name})
    assert totp_labels(web.get("/account/security").text) == ["Authenticator app", "Authenticator app 2"]


def test_a_password_only_session_proves_the_second_factor_before_changing_factors(seeded, web, live_server):
    """An exempt user who set up TOTP all the same signs in with the password alone. Adding or
    removing a method then asks for that TOTP first: whoever knows the password must not add a
    factor of their own (which also made the session count as 2FA) nor remove the user's."""
    from idp.db import db
    from idp.models import User

    sign_in_to_account(web, seeded)
    secret = add_totp(web)
    with live_server.context():
        db.session.execute(update(User).where(User.email == seeded.user_email).values(mfa_setting="exempt"))
        db.session.commit()

    intruder = FormBrowser(live_server.url)
    sign_in_to_account(intruder, seeded)  # the password alone: exempt
    for form in ([f for f in intruder.page.forms() if f["action"].endswith("/add/totp")][0],
                 removal_forms(intruder, intruder.get("/account/security"))[0]):
        intruder.get("/account/security")
        page = intruder.submit(form)
        assert page.form_with("password"), page.text[:500]
        page = intruder.login(seeded.user_email, seeded.password)
        assert page.form_with("code") and "/account/security" not in page.url  # the TOTP, first
    assert audit_events(live_server, "factor.enrolled") == 1 and audit_events(live_server, "factor.removed") == 0

    page = intruder.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).at(time.time() + 30)})
    assert "/account/security" in page.url and "Work phone" in page.text  # proven: the page is theirs again


def test_an_exempt_user_whose_factor_is_no_longer_accepted_proves_it_and_is_asked_nothing_more(seeded, live_server):
    """Re-authentication for the security page asks for a factor the user holds, even one of a
    kind the organization stopped accepting, and then lets the change go on: no enrolment of an
    accepted kind first (that belongs to sign-ins the policy requires 2FA for)."""
    import base64
    import os

    from idp.db import db
    from idp.factors.directory import commit, find_user_by_email
    from idp.factors.registry import current_registry
    from idp.models import Organization, User

    secret = os.urandom(20)
    with live_server.context():
        user = find_user_by_email(seeded.user_email)
        current_registry().get("totp").store.create(user, label="Old phone", secret=secret,
                                                   public={"digits": 6, "algorithm": "SHA1", "period": 30})
        commit()
        db.session.execute(update(User).where(User.id == user.id).values(mfa_setting="exempt"))
        db.session.execute(update(Organization).where(Organization.id == user.org_id)
                           .values(allowed_factors=["webauthn"]))
        db.session.commit()
    web = FormBrowser(live_server.url)
    sign_in_to_account(web, seeded)  # exempt: the password alone
    page = web.submit(removal_forms(web, web.page)[0])
    page = web.login(seeded.user_email, seeded.password)
    page = web.submit(page.form_with("code"), {"code": pyotp.TOTP(base64.b32encode(secret).decode()).now()})
    assert "/account/security" in page.url, page.text[:1000]
    page = web.submit(removal_forms(web, page)[0])
    assert "Old phone" not in page.text and audit_events(live_server, "factor.removed") == 1


def test_each_methods_name_field_and_buttons_say_which_method(seeded, web):
    """Two methods, two identical "Name", "Rename", "Remove": each carries its method (and name)
    for a screen reader, out of sight, as the sessions' "Sign out" buttons do."""
    sign_in_to_account(web, seeded)
    add_totp(web)
    page = web.get("/account/security")
    row = re.search(r'<tr data-credential="\d+" data-factor="totp">.*?</tr>', page.text, re.S).group(0)
    assert 'aria-label="Name: Authenticator app"' in row
    assert 'Rename<span class="sr-only"> Authenticator app, <bdi>Work phone</bdi></span></button>' in row
    assert 'Remove<span class="sr-only"> Authenticator app, <bdi>Work phone</bdi></span></a>' in row


def test_a_required_user_keeps_a_method_that_signs_in(seeded, web, live_server):
    """Beside the authenticator app, a security key suspended as a possible clone: it counts as
    2FA, but signs no one in. A required user cannot remove the app (left with recovery codes
    alone); once the key is usable, they can."""
    from idp.db import db
    from idp.factors.directory import commit, find_user_by_email
    from idp.factors.registry import current_registry
    from idp.models import Credential, User

    sign_in_to_account(web, seeded)
    add_totp(web)
    with live_server.context():
        key = current_registry().get("webauthn").store.create(
            find_user_by_email(seeded.user_email), label="Old key", lookup_key="a2V5LWlk",
            public={"suspected_clone_at": "2026-12-01T00:00:00+00:00"})
        db.session.execute(update(User).where(User.email == seeded.user_email).values(mfa_setting="required"))
        commit()
    page = web.get("/account/security")
    [remove_app] = [f for f in removal_forms(web, page) if f"/{key.id}/" not in f["action"]]
    page = web.submit(remove_app)
    assert "cannot be used to sign in at the moment" in page.text and "Work phone" in page.text, page.text[:3000]
    assert audit_events(live_server, "factor.removed") == 0
    with live_server.context():
        row = db.session.get(Credential, key.id)
        row.public_json = {k: v for k, v in row.public_json.items() if k != "suspected_clone_at"}
        db.session.commit()
    page = web.submit(remove_app)
    assert "Work phone" not in web.get("/account/security").text
    assert audit_events(live_server, "factor.removed") == 1
