"""`idp user show`: one account at a glance (idp.account_summary), read by the command as a real
subprocess from the database a live server writes."""
from __future__ import annotations

import json

from sqlalchemy import select

from fixtures.cli import ok, refused
from fixtures.oidc import FormBrowser, RelyingParty, password_login

FIREFOX_ON_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def test_an_account_with_a_method_a_session_and_an_application(live_server, seeded, idp):
    from idp.db import db
    from idp.factors.registry import current_registry
    from idp.models import User

    with live_server.context():
        alice = db.session.scalar(select(User).where(User.email == seeded.user_email))
        current_registry().store.for_factor("totp").create(alice.id, "phone", {"digits": 6}, secret=b"s" * 20)
        db.session.commit()
    browser = FormBrowser(live_server.url)
    browser.http.headers["User-Agent"] = FIREFOX_ON_LINUX
    third = RelyingParty(live_server.url, seeded.third_party)
    browser.get(third.authorization_url(scope="openid email offline_access", prompt="consent"))
    browser.login(seeded.user_email, seeded.password)
    assert browser.page.form_with("code")                                   # the second step, not taken

    document = json.loads(ok(idp("user", "show", "--email", seeded.user_email.upper(), "--json",
                                 database_url=live_server.database_url)).stdout)
    assert {k: document[k] for k in ("email", "org", "role", "disabled", "two_factor_status")} == {
        "email": seeded.user_email, "org": "Acme", "role": "user", "disabled": False,
        "two_factor_status": "active_voluntary"}
    [method] = document["methods"]
    assert (method["factor"], method["label"], method["last_used_at"]) == ("totp", "phone", None)
    assert method["created_at"].endswith("Z") and document["sessions"] == []   # the login stopped at its second step
    assert document["applications"] == [] and document["recovery"] == []


def test_sessions_and_applications_show_in_text_and_json(live_server, seeded, idp):
    browser = FormBrowser(live_server.url)
    browser.http.headers["User-Agent"] = FIREFOX_ON_LINUX
    third = RelyingParty(live_server.url, seeded.third_party)
    password_login(browser, third, seeded.user_email, seeded.password, scope="openid email offline_access",
                   prompt="consent")
    third.exchange(browser.last_redirect)

    document = json.loads(ok(idp("user", "show", "--email", seeded.user_email, "--json",
                                 database_url=live_server.database_url)).stdout)
    [session] = document["sessions"]
    assert session["browser"] == "Firefox on Linux" and session["ip"] == "127.0.0.1"
    [app] = document["applications"]
    assert (app["client_id"], app["name"], app["first_party"], app["offline"]) == (
        seeded.third_party["client_id"], "Third", False, True)
    assert app["scopes"] == ["openid", "email", "offline_access"] and app["allowed_at"].endswith("Z")

    text = ok(idp("user", "show", "--email", seeded.user_email, database_url=live_server.database_url)).stdout
    assert "organization Acme, user, enabled, 2FA not_active" in text
    assert "signed in: 1" in text and "Firefox on Linux  127.0.0.1" in text
    assert f"Third  ({seeded.third_party['client_id']})  allowed " in text and "stays signed in" in text


def test_an_unknown_or_malformed_address_is_one_line(sqlite_only_url, idp):
    refused(idp("user", "show", "--email", "nobody@example.com", database_url=sqlite_only_url), "no user")
    refused(idp("user", "show", "--email", "not-an-email", database_url=sqlite_only_url), "invalid e-mail")


def test_recovery_codes_owed_to_the_next_sign_in_show(live_server, seeded, idp):
    """A second factor given by `idp factor totp import` owes the user a set of recovery codes,
    shown once at their next sign-in: support sees that it is coming, in JSON and in text."""
    import pyotp

    url = live_server.database_url
    before = json.loads(ok(idp("user", "show", "--email", seeded.user_email, "--json", database_url=url)).stdout)
    assert before["recovery_codes_at_next_sign_in"] is False
    ok(idp("factor", "totp", "import", "--user", seeded.user_email, "--secret-stdin",
           input=pyotp.random_base32() + "\n", database_url=url))
    document = json.loads(ok(idp("user", "show", "--email", seeded.user_email, "--json", database_url=url)).stdout)
    assert document["recovery_codes_at_next_sign_in"] is True and document["recovery"] == []
    text = ok(idp("user", "show", "--email", seeded.user_email, database_url=url)).stdout
    assert "recovery codes: a new set, shown once at the next sign-in" in text
    # The factor reset (a lost phone) before that sign-in: nothing to prove, so no set is coming
    # then; the next enrolment brings one.
    ok(idp("user", "reset-factors", "--email", seeded.user_email, database_url=url))
    after = json.loads(ok(idp("user", "show", "--email", seeded.user_email, "--json", database_url=url)).stdout)
    assert after["recovery_codes_at_next_sign_in"] is False and after["methods"] == []
