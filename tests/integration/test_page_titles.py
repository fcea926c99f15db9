"""Page titles name the method a login step is about, and say "Error:" first when the page
shows one (the first thing a screen reader reads on a page that came back refused)."""
from __future__ import annotations

import html
import re

import pyotp

from fixtures.oidc import FormBrowser
from fixtures.totp import MFA, enrol_totp_during_login


def title(page) -> str:
    return html.unescape(re.search(r"<title>(.*?)</title>", page.text, re.S).group(1)).strip()


def wrong_code(secret: str) -> str:
    return "000000" if pyotp.TOTP(secret).now() != "000000" else "111111"


def test_enrolment_and_challenge_titles_name_the_method_and_the_error(live_server, seeded, rp_factory):
    rp = rp_factory(seeded.first_party)
    web = FormBrowser(live_server.url)
    web.get(rp.authorization_url(acr_values=MFA))
    assert title(web.page) == "Sign in"
    page = web.login(seeded.user_email, "not the password")
    assert title(page) == "Error: Sign in"
    page = web.login(seeded.user_email, seeded.password)
    choose = [f for f in page.forms() if f["action"].endswith("/factor/totp")]
    if choose:
        page = web.submit(choose[0])
    assert title(page) == "Authenticator app – Set up two-factor authentication"
    secret = page.find(r"<code[^>]*>([A-Z2-7 ]+)</code>").replace(" ", "")
    page = web.submit(page.form_with("code"), {"code": wrong_code(secret)})
    assert title(page) == "Error: Authenticator app – Set up two-factor authentication"
    codes = web.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).now()})
    web.submit(codes.forms()[0])
    assert web.last_redirect

    web = FormBrowser(live_server.url)
    web.http.headers["Accept-Language"] = "fr"
    web.get(rp.authorization_url(prompt="login"))
    page = web.login(seeded.user_email, seeded.password)
    assert title(page) == "Application d'authentification – Authentification à 2 facteurs"
    page = web.submit(page.form_with("code"), {"code": wrong_code(secret)})
    assert title(page) == "Erreur : Application d'authentification – Authentification à 2 facteurs"


def test_a_form_with_field_errors_says_error_in_its_title(live_server, seeded, rp_factory):
    from test_form_focus import signed_in

    web = signed_in(live_server, seeded, rp_factory, seeded.user_email)
    page = web.get("/account/password")
    assert title(page) == "Change your password"
    page = web.submit(page.form_with("confirm"), {"current": seeded.password, "password": "a new passphrase!",
                                                  "confirm": "typo"})
    assert title(page) == "Error: Change your password"


def test_the_account_pages_add_names_the_method(live_server, seeded, rp_factory):
    web = FormBrowser(live_server.url)
    enrol_totp_during_login(web, rp_factory(seeded.first_party), seeded)
    page = web.get("/account/security")
    add = [f for f in page.forms() if f["action"].endswith("/add/webauthn")]
    page = web.submit(add[0])
    assert title(page) == "Security key or passkey – Add a sign-in method", title(page)
