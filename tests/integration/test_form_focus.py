"""After a refused form, the focus is on the first field with an error (the macro `input` in
admin/_macros.html, and the TOTP enrolment page), not on the form's first field; a fresh form
keeps the autofocus its page gives its first field."""
from __future__ import annotations

import re

import pyotp

from fixtures.oidc import FormBrowser, password_login
from fixtures.totp import MFA

NEW_PASSWORD = "a brand new passphrase"


def focused(page) -> list[str]:
    """The ids of the page's inputs carrying autofocus (one at most, ideally)."""
    return [re.search(r'\bid="([^"]+)"', tag).group(1)
            for tag in re.findall(r"<input\b[^>]*>", page.text) if re.search(r"\sautofocus\b", tag)]


def signed_in(live_server, seeded, rp_factory, email: str) -> FormBrowser:
    browser = FormBrowser(live_server.url)
    password_login(browser, rp_factory(seeded.first_party), email, seeded.password)
    return browser


def test_change_password_focuses_the_field_in_error(live_server, seeded, rp_factory):
    web = signed_in(live_server, seeded, rp_factory, seeded.user_email)
    page = web.get("/account/password")
    assert focused(page) == ["current"]
    form = page.form_with("confirm")
    page = web.submit(form, {"current": seeded.password, "password": NEW_PASSWORD, "confirm": "typo"})
    assert page.status == 400 and focused(page) == ["confirm"]
    page = web.submit(form, {"current": "not it", "password": NEW_PASSWORD, "confirm": NEW_PASSWORD})
    assert page.status == 401 and focused(page) == ["current"]


def test_new_user_focuses_the_confirmation_when_it_is_the_error(live_server, seeded, rp_factory):
    admin = signed_in(live_server, seeded, rp_factory, seeded.admin_email)
    page = admin.get("/admin/users/new")
    assert focused(page) == ["email"]
    page = admin.submit(page.form_with("confirm"), {"email": "carol@acme.test", "how": "password",
                                                    "password": NEW_PASSWORD, "confirm": "typo"})
    assert page.status == 400 and focused(page) == ["confirm"]


def test_totp_enrolment_focuses_the_code_after_a_wrong_one(live_server, seeded, rp_factory):
    web = FormBrowser(live_server.url)
    web.get(rp_factory(seeded.first_party).authorization_url(acr_values=MFA))
    page = web.login(seeded.user_email, seeded.password)
    choose = [f for f in page.forms() if f["action"].endswith("/factor/totp")]
    if choose:
        page = web.submit(choose[0])
    assert focused(page) == []  # a fresh page: the QR code stays in view
    secret = page.find(r"<code[^>]*>([A-Z2-7 ]+)</code>").replace(" ", "")
    wrong = "000000" if pyotp.TOTP(secret).now() != "000000" else "111111"
    page = web.submit(page.form_with("code"), {"code": wrong})
    assert focused(page) == ["code"]
