"""A sign-out at the very moment this browser's session answers a login (prompt=none, an
application's silent check), on PostgreSQL. The login checked the session at the start of its
request; the sign-out revokes the session's codes and tells the clients it signed in. Without a
lock between the two, the code issued in between outlived the session it came from: live, and
its client never told (its session_clients row was written after the sign-out looked)."""
from __future__ import annotations

import threading

import pytest

from fixtures.database import postgres_base_url
from fixtures.oidc import FormBrowser, RelyingParty, password_login, seed
from fixtures.race import tabs_of

pytestmark = pytest.mark.skipif(postgres_base_url() is None, reason="needs IDP_TEST_DATABASE_URL (PostgreSQL)")


@pytest.mark.parametrize("when", ["before_the_check", "as_the_code_is_issued"])
def test_a_sign_out_while_the_session_answers_a_login_leaves_no_live_code(pg_server, monkeypatch, when):
    from idp.login import pipeline
    from idp.login import user as login_user

    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.first_party)
    browser = FormBrowser(pg_server.url)
    password_login(browser, rp, seeded.user_email, seeded.password)
    rp.exchange(browser.last_redirect)
    [other_tab] = tabs_of(browser, 1)

    reached, signed_out = threading.Event(), threading.Event()

    def once_signed_out(original):
        # The login's request has read the session (and, as the code is issued, checked it
        # again): the sign-out comes now, or, when it waits for this login, after it.
        def wrapper(*args, **kwargs):
            reached.set()
            signed_out.wait(timeout=2)
            return original(*args, **kwargs)
        return wrapper

    if when == "before_the_check":
        monkeypatch.setattr(login_user, "hold_for_sign_in", once_signed_out(login_user.hold_for_sign_in))
    else:
        monkeypatch.setattr(pipeline, "issue_code", once_signed_out(pipeline.issue_code))

    def sign_out():
        assert reached.wait(timeout=10)
        page = other_tab.get("/logout")
        other_tab.submit(page.form_with("csrf_token"))
        signed_out.set()

    thread = threading.Thread(target=sign_out)
    thread.start()
    browser.get(rp.authorization_url(prompt="none"))
    thread.join()
    callback = browser.callback_params()
    if when == "before_the_check":  # signed out first: no code, and the client is told so
        assert callback["error"] == "login_required" and callback["state"] == rp.state, callback
    else:  # the code first: the sign-out, which waited for it, withdrew it
        answer = rp.token_request({"grant_type": "authorization_code", "code": callback["code"],
                                   "redirect_uri": rp.client["redirect_uri"], "code_verifier": rp.verifier})
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant", answer.text


@pytest.mark.parametrize("when", ["before_the_check", "as_the_code_is_issued"])
def test_removing_an_applications_access_while_it_signs_the_user_in_leaves_it_no_code(pg_server, monkeypatch,
                                                                                     when):
    """The same moment, with "Remove access" on the security page: the application's silent
    login (its consent remembered) had read the consent at the start of its request."""
    from idp.login import pipeline
    from idp.login import user as login_user

    seeded = seed(pg_server)
    rp = RelyingParty(pg_server.url, seeded.third_party)
    browser = FormBrowser(pg_server.url)
    password_login(browser, rp, seeded.user_email, seeded.password)        # (consents)
    rp.exchange(browser.last_redirect)
    [other_tab] = tabs_of(browser, 1)
    page = other_tab.get("/account/security")
    remove = next(form for form in page.forms()
                  if form["action"].endswith(f"/applications/{seeded.third_party['client_id']}/remove"))

    reached, removed = threading.Event(), threading.Event()

    def once_removed(original):
        def wrapper(*args, **kwargs):
            reached.set()
            removed.wait(timeout=2)
            return original(*args, **kwargs)
        return wrapper

    if when == "before_the_check":
        monkeypatch.setattr(login_user, "hold_for_sign_in", once_removed(login_user.hold_for_sign_in))
    else:
        monkeypatch.setattr(pipeline, "issue_code", once_removed(pipeline.issue_code))

    def remove_access():
        assert reached.wait(timeout=10)
        other_tab.submit(remove)
        removed.set()

    thread = threading.Thread(target=remove_access)
    thread.start()
    browser.get(rp.authorization_url(prompt="none"))
    thread.join()
    callback = browser.callback_params()
    if when == "before_the_check":  # removed first: the login needs the user's consent again
        assert callback["error"] == "consent_required" and callback["state"] == rp.state, callback
    else:  # the code first: the removal, which waited for it, withdrew it
        answer = rp.token_request({"grant_type": "authorization_code", "code": callback["code"],
                                   "redirect_uri": rp.client["redirect_uri"], "code_verifier": rp.verifier})
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant", answer.text
