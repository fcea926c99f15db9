"""Every page says where the person is and offers a way on or back (the UX audit's dead ends)."""
from __future__ import annotations

import html
import re

from fixtures.oidc import FormBrowser, password_login

FRENCH = "fr-FR,fr;q=0.9,en;q=0.5"


def test_the_logout_confirmation_says_who_and_offers_to_stay(seeded, web, rp_factory, live_server):
    rp = rp_factory(seeded.first_party)
    password_login(web, rp, seeded.user_email, seeded.password)
    page = web.get("/logout")
    assert f"You are signed in as <bdi>{seeded.user_email}</bdi>" in page.text
    assert 'href="/">Stay signed in</a>' in page.text
    signed_out = web.submit(page.forms()[0])
    assert "You are signed out" in signed_out.text and "/account/security" in signed_out.text


def test_the_bad_request_page_is_in_the_readers_language(live_server):
    web = FormBrowser(live_server.url)
    web.http.headers["Accept-Language"] = FRENCH
    page = web.get("/authorize?response_type=code&client_id=nope&redirect_uri=http://127.0.0.1:1/cb&scope=openid")
    text = html.unescape(page.text)
    assert page.status == 400 and "L'application n'est pas enregistrée auprès de ce fournisseur." in text
    assert "invalid_client" in text  # kept for the application's developers, below


def test_after_a_wrong_password_the_password_field_has_the_focus(seeded, web, rp_factory):
    rp = rp_factory(seeded.first_party)
    web.get(rp.authorization_url())
    def focused(text: str) -> list[str]:
        return re.findall(r'<input id="(\w+)"[^>]*\bautofocus\b', text)

    assert focused(web.page.text) == ["username"]
    page = web.login(seeded.user_email, "not the password")
    assert page.status == 401 and focused(page.text) == ["password"]


def test_adding_a_method_has_a_title_a_heading_and_a_way_back(seeded, web):
    web.get("/account/security")
    web.login(seeded.user_email, seeded.password)
    page = web.submit([f for f in web.page.forms() if f["action"].endswith("/add/totp")][0])
    assert "<title>Authenticator app – Add a sign-in method</title>" in page.text
    assert "<h1>Add: Authenticator app</h1>" in page.text
    assert '<p class="cancel"><a href="/account/security">Cancel</a></p>' in page.text


def test_admin_pages_lead_to_the_admins_own_security_and_sign_out(seeded, web):
    web.get("/account/security")
    web.login(seeded.admin_email, seeded.password)
    page = web.get("/admin/users")
    assert 'href="/account/security">My security</a>' in page.text and 'href="/logout">Sign out</a>' in page.text
