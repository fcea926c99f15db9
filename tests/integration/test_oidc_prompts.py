"""prompt, max_age, login_hint, consent memory, SSO sessions and sign-out."""
from __future__ import annotations

import time
from urllib.parse import quote

import pytest
import requests

from fixtures.oidc import FormBrowser, id_token_from_another_browser, password_login


def test_prompt_none_without_session_redirects_before_any_page(seeded, web, rp_factory):
    rp = rp_factory(seeded.first_party)
    page = web.get(rp.authorization_url(prompt="none"))
    assert page.text == "" and web.callback_params()["error"] == "login_required"
    assert web.callback_params()["state"] == rp.state
    assert web.callback_params()["iss"] == rp.metadata["issuer"]  # RFC 9207: on errors too


def test_every_error_redirect_names_the_issuer(seeded, web, rp_factory):
    rp = rp_factory(seeded.first_party)
    for params in ({"response_type": "token"}, {"max_age": "x"}, {"prompt": "none", "acr_values": "urn:idp:acr:mfa"}):
        web.get(rp.authorization_url(**params))
        callback = web.callback_params()
        assert callback["error"] and callback["iss"] == rp.metadata["issuer"], (params, callback)


def test_sso_session_answers_prompt_none_and_keeps_amr(seeded, web, rp_factory):
    rp = rp_factory(seeded.first_party)
    password_login(web, rp, seeded.user_email, seeded.password)
    first = rp.validate_id_token(rp.exchange(web.last_redirect)["id_token"])
    web.get(rp.authorization_url(prompt="none"))
    second = rp.validate_id_token(rp.exchange(web.last_redirect)["id_token"])
    assert second["sub"] == first["sub"] and second["auth_time"] == first["auth_time"]
    assert second["amr"] == ["pwd"] and second["sid"] == first["sid"]


def test_prompt_login_and_max_age_force_a_new_login(seeded, web, rp_factory):
    rp = rp_factory(seeded.first_party)
    password_login(web, rp, seeded.user_email, seeded.password)
    rp.exchange(web.last_redirect)
    page = web.get(rp.authorization_url(prompt="login"))
    assert page.form_with("password")
    time.sleep(1.1)
    page = web.get(rp.authorization_url(max_age="0"))
    assert page.form_with("password")
    web.get(rp.authorization_url(prompt="none", max_age="0"))
    assert web.callback_params()["error"] == "login_required"



def test_max_age_that_is_not_a_whole_number_is_an_invalid_request(seeded, web, rp_factory):
    """"\u00b2" passes str.isdigit but not int(): refused at /authorize, not a 500 after the password."""
    rp = rp_factory(seeded.first_party)
    for bad in ("\u00b2", "-1", "1.5", "soon"):
        page = web.get(rp.authorization_url(max_age=bad))
        assert page.text == "", bad
        params = web.callback_params()
        assert params["error"] == "invalid_request" and "max_age" in params["error_description"], bad


def test_login_hint_prefills_username(seeded, web, rp_factory):
    rp = rp_factory(seeded.first_party)
    page = web.get(rp.authorization_url(login_hint=seeded.user_email))
    assert page.form_with("password")["fields"]["username"] == seeded.user_email


def test_consent_is_remembered_per_scope_and_deny_returns_access_denied(seeded, web, rp_factory, live_server):
    from sqlalchemy import func, select

    from idp.db import db
    from idp.models import AuditEvent

    def granted():
        with live_server.context():
            return db.session.scalar(select(func.count()).select_from(AuditEvent)
                                     .where(AuditEvent.event == "consent.granted"))

    rp = rp_factory(seeded.third_party)
    web.get(rp.authorization_url())
    page = web.login(seeded.user_email, seeded.password)
    assert page.form_with("action"), "third-party clients ask for consent"
    web.consent("allow")
    rp.exchange(web.last_redirect)
    web.get(rp.authorization_url())
    assert web.callback_params().get("code"), "remembered consent skips the page"
    web.get(rp.authorization_url(prompt="none", scope="openid email profile offline_access"))
    # offline_access, never allowed, is dropped under prompt=none: the remembered consent still covers the rest
    assert web.callback_params().get("code")
    web.get(rp.authorization_url(prompt="consent"))
    web.consent("allow")  # asked again for what was granted: nothing changes, no second event
    assert web.callback_params().get("code") and granted() == 1
    web.get(rp.authorization_url(prompt="consent"))
    web.consent("deny")
    params = web.callback_params()
    assert params["error"] == "access_denied" and params["state"] == rp.state



def test_consent_answered_by_a_session_names_the_account_and_offers_another(seeded, web, rp_factory):
    """On a shared computer the browser's session answers a new application's login with no page
    but consent: the page says whose account it is, and "Use another account" starts the same
    request from the password page, whose login replaces the session."""
    first = rp_factory(seeded.first_party)
    password_login(web, first, seeded.user_email, seeded.password)  # someone signed in earlier

    rp = rp_factory(seeded.third_party)
    page = web.get(rp.authorization_url())
    assert f"Signed in as {seeded.user_email}" in page.text
    form = page.form_with("action")
    page = web.submit(form, button=("action", "another_account"))
    assert page.form_with("password") and web.last_redirect is None
    page = web.login(seeded.admin_email, seeded.password)
    assert f"Signed in as {seeded.admin_email}" in page.text and "another_account" not in page.text
    web.consent("allow")
    params = web.callback_params()
    assert params["state"] == rp.state
    claims = rp.validate_id_token(rp.exchange(web.last_redirect)["id_token"])
    assert claims["email"] == seeded.admin_email

    stale = web.submit(form, button=("action", "allow"))  # the first consent page, posted late
    assert web.last_redirect is None and "Signed in as" not in stale.text

def test_first_party_skips_consent(seeded, web, rp_factory):
    rp = rp_factory(seeded.first_party)
    web.get(rp.authorization_url())
    web.login(seeded.user_email, seeded.password)
    assert web.callback_params()["code"]


def test_wrong_password_same_message_for_unknown_user(seeded, web, rp_factory):
    rp = rp_factory(seeded.first_party)
    web.get(rp.authorization_url())
    wrong = web.login(seeded.user_email, "nope")
    wrong_text = wrong.find(r'class="error" role="alert">([^<]+)<')
    unknown = web.login("nobody@acme.test", "nope")
    assert wrong.status == unknown.status == 401
    assert wrong_text and wrong_text == unknown.find(r'class="error" role="alert">([^<]+)<')
    assert web.last_redirect is None


def test_session_cookie_rotates_at_login_and_holds_no_secrets(seeded, web, rp_factory):
    rp = rp_factory(seeded.first_party)
    web.get(rp.authorization_url())
    before = web.http.cookies.get("idp_session")
    web.login(seeded.user_email, seeded.password)
    after = web.http.cookies.get("idp_session")
    assert before and after and before != after
    import base64
    import zlib

    payload = after.split(".")[0 if not after.startswith(".") else 1]
    raw = base64.urlsafe_b64decode(payload + "==")
    text = zlib.decompress(raw).decode() if after.startswith(".") else raw.decode()
    assert seeded.password not in text and "code" not in text and "nonce" not in text


def test_rp_initiated_logout_with_id_token_hint(seeded, web, rp_factory, live_server):
    from sqlalchemy import select

    from idp.db import db
    from idp.models import AuditEvent

    rp = rp_factory(seeded.first_party)
    password_login(web, rp, seeded.user_email, seeded.password)
    token = rp.exchange(web.last_redirect)
    web.get(f"{rp.metadata['end_session_endpoint']}?id_token_hint={token['id_token']}"
            f"&post_logout_redirect_uri={rp.client['post_logout_redirect_uri']}&state=bye")
    assert web.last_redirect == f"{rp.client['post_logout_redirect_uri']}?state=bye"
    web.get(rp.authorization_url(prompt="none"))
    assert web.callback_params()["error"] == "login_required"
    web.get(f"{rp.metadata['end_session_endpoint']}?client_id={rp.client['client_id']}")  # nothing left to end
    with live_server.context():
        ended = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "login.signed_out")).all()
        assert [(e.org_id, e.actor_id == e.subject_id) for e in ended] == [(seeded.org_id, True)]



def test_an_expired_id_token_hint_still_signs_out_and_returns(seeded, web, rp_factory, live_server):
    """RP-Initiated Logout 1.0, section 2: the hint may be past its `exp` (an application's own
    session outlives its ID token's hour); it is still the client's proof (README)."""
    from joserfc import jwt

    from idp.oidc import keys

    rp = rp_factory(seeded.first_party)
    password_login(web, rp, seeded.user_email, seeded.password)
    claims = rp.validate_id_token(rp.exchange(web.last_redirect)["id_token"])
    claims.update(iat=claims["iat"] - 7200, exp=claims["iat"] - 3600)
    with live_server.context():
        kid, key = keys.signing_key("ES256")
        expired = jwt.encode({"alg": "ES256", "kid": kid}, dict(claims), key)
    back = rp.client["post_logout_redirect_uri"]
    web.get(f"{rp.metadata['end_session_endpoint']}?id_token_hint={expired}&post_logout_redirect_uri={back}&state=old")
    assert web.last_redirect == f"{back}?state=old"
    web.get(rp.authorization_url(prompt="none"))
    assert web.callback_params()["error"] == "login_required"


def test_a_logout_naming_only_its_client_asks_and_stays_here(seeded, web, rp_factory):
    """Without an id_token_hint nothing tells the request from a planted link: the user is asked,
    and signed out stays on our page, the registered post_logout_redirect_uri not followed
    (RP-Initiated Logout 1.0, section 3; README: send the ID token)."""
    rp = rp_factory(seeded.first_party)
    password_login(web, rp, seeded.user_email, seeded.password)
    rp.exchange(web.last_redirect)
    page = web.get(f"{rp.metadata['end_session_endpoint']}?client_id={rp.client['client_id']}"
                   f"&post_logout_redirect_uri={rp.client['post_logout_redirect_uri']}&state=s")
    assert web.last_redirect is None and "Sign out?" in page.text
    page = web.submit(page.forms()[0])
    assert web.last_redirect is None and page.status == 200 and "signed out" in page.text
    web.get(rp.authorization_url(prompt="none"))
    assert web.callback_params()["error"] == "login_required"


def test_logout_with_someone_elses_id_token_asks_first(seeded, web, rp_factory, live_server):
    """A logout link planted with the attacker's own ID token (an <img> on any page) must not
    sign the victim out unasked."""
    rp = rp_factory(seeded.first_party)
    planted = id_token_from_another_browser(live_server, rp, seeded.admin_email, seeded.password)
    password_login(web, rp, seeded.user_email, seeded.password)
    rp.exchange(web.last_redirect)
    page = web.get(f"{rp.metadata['end_session_endpoint']}?id_token_hint={planted}"
                   f"&post_logout_redirect_uri={rp.client['post_logout_redirect_uri']}")
    assert web.last_redirect is None and "Sign out?" in page.text
    web.get(rp.authorization_url(prompt="none"))
    assert "code" in web.callback_params(), "still signed in"
    # Confirmed: signed out, and back to the client as it asked.
    page = web.get(f"{rp.metadata['end_session_endpoint']}?id_token_hint={planted}"
                   f"&post_logout_redirect_uri={rp.client['post_logout_redirect_uri']}&state=bye")
    web.submit(page.forms()[0])
    assert web.last_redirect == f"{rp.client['post_logout_redirect_uri']}?state=bye"
    web.get(rp.authorization_url(prompt="none"))
    assert web.callback_params()["error"] == "login_required"


def test_rp_initiated_logout_by_post(seeded, web, rp_factory, live_server):
    """RP-Initiated Logout 1.0, section 2: the end-session endpoint takes POST as well as GET. A
    client's form carries no CSRF token of ours; a POST naming another user's session is as
    suspect as such a link, and is confirmed first."""
    rp = rp_factory(seeded.first_party)
    planted = id_token_from_another_browser(live_server, rp, seeded.admin_email, seeded.password)
    password_login(web, rp, seeded.user_email, seeded.password)
    own = rp.exchange(web.last_redirect)["id_token"]
    endpoint, back = rp.metadata["end_session_endpoint"], rp.client["post_logout_redirect_uri"]

    web.last_redirect = None
    page = web._follow(web.http.post(endpoint, data={"id_token_hint": planted, "post_logout_redirect_uri": back,
                                                      "state": "s1"}, allow_redirects=False))
    assert web.last_redirect is None and "Sign out?" in page.text
    web.get(rp.authorization_url(prompt="none"))
    assert "code" in web.callback_params(), "still signed in"
    rp.exchange(web.last_redirect)

    web.last_redirect = None
    web._follow(web.http.post(endpoint, data={"id_token_hint": own, "post_logout_redirect_uri": back,
                                              "state": "s2"}, allow_redirects=False))
    assert web.last_redirect == f"{back}?state=s2"
    web.get(rp.authorization_url(prompt="none"))
    assert web.callback_params()["error"] == "login_required"


def test_a_logout_posted_from_the_clients_site_signs_out_the_browser_that_brought_it(seeded, web, rp_factory):
    """A browser sends no cookie of ours with a POST from the client's site (SameSite=Lax): the
    POST alone cannot tell who is signed in. It is answered with a 303 to the same request as
    a GET (a top-level navigation, which carries the cookies), which signs this browser out and
    returns to the client; before, the client was sent back "signed out" and the session lived."""
    rp = rp_factory(seeded.first_party)
    password_login(web, rp, seeded.user_email, seeded.password)
    tokens = rp.exchange(web.last_redirect)
    own = tokens["id_token"]
    back = rp.client["post_logout_redirect_uri"]
    cross_site = requests.post(rp.metadata["end_session_endpoint"], allow_redirects=False, timeout=5,
                               data={"id_token_hint": own, "post_logout_redirect_uri": back, "state": "s4"})
    assert cross_site.status_code == 303 and "Set-Cookie" not in cross_site.headers
    web.get(cross_site.headers["Location"])                                  # the browser follows, with its cookies
    assert web.last_redirect == f"{back}?state=s4"
    assert rp.userinfo(tokens["access_token"]).status_code == 401          # withdrawn with the session
    web.get(rp.authorization_url(prompt="none"))
    assert web.callback_params()["error"] == "login_required"


def test_the_logout_confirmation_keeps_a_posted_request(seeded, web, rp_factory, live_server):
    rp = rp_factory(seeded.first_party)
    planted = id_token_from_another_browser(live_server, rp, seeded.admin_email, seeded.password)
    password_login(web, rp, seeded.user_email, seeded.password)
    rp.exchange(web.last_redirect)
    back = rp.client["post_logout_redirect_uri"]
    page = web._follow(web.http.post(rp.metadata["end_session_endpoint"], allow_redirects=False,
                                     data={"id_token_hint": planted, "post_logout_redirect_uri": back, "state": "s3"}))
    web.submit(page.forms()[0])
    assert web.last_redirect == f"{back}?state=s3"


def test_the_error_page_does_not_say_what_the_link_says(seeded, live_server):
    """Authlib's descriptions quote the request: a crafted link would put its sentence on our page."""
    bait = "SECURITY NOTICE: your account is locked, call +1 555 0100"
    cid = seeded.first_party["client_id"]
    for query in (f"client_id={cid}&response_type=code&redirect_uri=https://rp.example/cb {bait}",
                  f"client_id={cid}&response_type={bait}&redirect_uri=https://rp.example/{bait}"):
        page = requests.get(f"{live_server.url}/authorize?{query}", allow_redirects=False, timeout=5)
        assert page.status_code == 400 and "SECURITY NOTICE" not in page.text, query


def test_the_consent_page_shows_only_scopes_the_client_may_have(seeded, web, rp_factory):
    rp = rp_factory(seeded.third_party)
    web.get(rp.authorization_url(scope="openid email Read_and_delete_all_your_mail"))
    page = web.login(seeded.user_email, seeded.password)
    assert "Read_and_delete_all_your_mail" not in page.text and "See your e-mail address" in page.text


def test_logout_refuses_unregistered_post_logout_redirect(seeded, web, rp_factory):
    rp = rp_factory(seeded.first_party)
    password_login(web, rp, seeded.user_email, seeded.password)
    token = rp.exchange(web.last_redirect)
    for unregistered in ("https://evil.example/", rp.client["post_logout_redirect_uri"] + "?x=1"):
        page = web.get(f"{rp.metadata['end_session_endpoint']}?id_token_hint={token['id_token']}"
                       f"&post_logout_redirect_uri={quote(unregistered)}")
        # Neither redirected nor silently signed out (the OpenID conformance suite wants an error
        # or a question): an error page, and the session stays.
        assert web.last_redirect is None and page.status == 400 and "still signed in" in page.text
    web.get(rp.authorization_url(prompt="none"))
    assert "code" in web.callback_params()


@pytest.mark.parametrize("crit", [1, None, [1], [[]]])
def test_an_id_token_hint_with_a_header_that_cannot_be_read_is_a_bad_request(seeded, web, rp_factory, crit):
    """joserfc raises TypeError, not a JoseError, on a `crit` that is not a list of names: the
    logout request is invalid (400, the user still signed in), not a 500."""
    import base64
    import json

    def part(value) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    rp = rp_factory(seeded.first_party)
    password_login(web, rp, seeded.user_email, seeded.password)
    rp.exchange(web.last_redirect)
    hint = f"{part({'alg': 'ES256', 'crit': crit})}.{part({'sub': 'x'})}.AAAA"
    for method in (requests.get, requests.post):  # (a POST with no cookie is answered as a GET: a 303)
        answer = method(rp.metadata["end_session_endpoint"], timeout=5,
                        **{"params" if method is requests.get else "data": {"id_token_hint": hint}})
        assert answer.status_code == 400 and "not valid" in answer.text, (method, answer.status_code)
    answer = web.http.post(rp.metadata["end_session_endpoint"], data={"id_token_hint": hint}, timeout=5,
                           allow_redirects=False)                           # with the browser's cookies
    assert answer.status_code == 400 and "not valid" in answer.text
    web.get(rp.authorization_url(prompt="none"))
    assert "code" in web.callback_params(), "still signed in"


def test_unknown_client_and_unregistered_redirect_uri_get_a_400_page(seeded, live_server):
    base = f"{live_server.url}/authorize?response_type=code&scope=openid"
    unknown = requests.get(f"{base}&client_id=nope&redirect_uri=http://127.0.0.1:59999/x", allow_redirects=False, timeout=5)
    assert unknown.status_code == 400 and "Location" not in unknown.headers
    cid = seeded.first_party["client_id"]
    bad = requests.get(f"{base}&client_id={cid}&redirect_uri=https://evil.example/cb", allow_redirects=False, timeout=5)
    assert bad.status_code == 400 and "Location" not in bad.headers


def test_security_headers(live_server):
    page = requests.get(f"{live_server.url}/login/expired", timeout=5)
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert "form-action 'self';" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"


def test_a_logins_pages_leave_out_form_action(seeded, web, rp_factory):
    """Any login step's form may end, redirect after redirect, wherever the client's callback
    sends its user (tests/browser/test_form_action.py): no form-action there; the rest of the
    policy stands. Other pages keep form-action 'self' (test_security_headers)."""
    rp = rp_factory(seeded.first_party)
    web.get(rp.authorization_url())
    policy = web.http.get(web.page.url, timeout=5).headers["Content-Security-Policy"]
    assert "form-action" not in policy and "frame-ancestors 'none'" in policy and "script-src 'self'" in policy


def test_replayed_or_forged_login_form_issues_nothing(seeded, web, rp_factory):
    rp = rp_factory(seeded.first_party)
    web.get(rp.authorization_url())
    form = web.page.form_with("password")
    forged = web.submit(form, {"username": seeded.user_email, "password": seeded.password, "version": "999"})
    assert forged.status == 409 and web.last_redirect is None
    web.submit(form, {"username": seeded.user_email, "password": seeded.password})
    assert web.callback_params()["code"]
    replay = web.submit(form, {"username": seeded.user_email, "password": seeded.password})
    assert web.last_redirect is None and replay.status == 400, "a finished login must not issue a second code"


def test_transaction_is_bound_to_its_browser(seeded, web, live_server, rp_factory):
    rp = rp_factory(seeded.first_party)
    page = web.get(rp.authorization_url())
    thief = FormBrowser(live_server.url)
    stolen = thief.get(page.url)
    assert "password" not in stolen.text.lower() or stolen.status == 400


def test_password_guesses_lock_the_account_key_with_the_same_answer_for_unknown_accounts(seeded, web, rp_factory,
                                                                                         live_server):
    from sqlalchemy import select

    from idp.db import db
    from idp.models import AuditEvent

    rp = rp_factory(seeded.first_party)
    web.get(rp.authorization_url())
    statuses = {}
    for email in (seeded.user_email, "ghost@acme.test"):
        seen = []
        for _ in range(12):
            page = web.login(email, "wrong password")
            seen.append(page.status)
        statuses[email] = seen
    assert statuses[seeded.user_email] == statuses["ghost@acme.test"], "lockout must not reveal which accounts exist"
    assert statuses[seeded.user_email][:10] == [401] * 10 and statuses[seeded.user_email][-1] == 429
    page = web.login(seeded.user_email, seeded.password)
    assert page.status == 429 and web.last_redirect is None, "even the right password waits out the lockout"
    with live_server.context():  # each tenth wrong password started one: the unknown address's without an org
        locked = db.session.scalars(select(AuditEvent).where(AuditEvent.event == "login.locked_out")
                                    .order_by(AuditEvent.id)).all()
        assert [(e.details["step"], e.org_id) for e in locked] == [("password", seeded.org_id), ("password", None)]
