"""WebAuthn end to end in headless Chromium with a virtual authenticator: enrol during login, then sign in with it."""
from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from fixtures.browser import screenshot, virtual_authenticator
from fixtures.oidc import callback_base


def _password(tab, email, password):
    """Sign in with the password and wait for the next page: a locator counted right after the click
    could still be reading the login page (a busy machine's CI saw it, then waited for a #label that
    no click would ever bring)."""
    tab.fill("#username", email)
    tab.fill("#password", password)
    with tab.expect_navigation():
        tab.click("button.primary")


def _wait_for_script(tab) -> None:
    """Until webauthn.js listens (it then shows its button): Enter pressed before that posts the
    form as a page without JavaScript would, with no credential (a busy machine's CI saw it)."""
    tab.locator("#webauthn-start").wait_for()


def _callback_code(tab) -> str:
    tab.wait_for_url(f"{callback_base()}/**")
    return parse_qs(urlparse(tab.url).query)["code"][0]


def test_enrol_a_passkey_during_login_then_sign_in_with_it(seeded, page, rp_factory):
    rp = rp_factory(seeded.first_party)
    virtual_authenticator(page)

    page.goto(rp.authorization_url(acr_values="urn:idp:acr:mfa"))
    _password(page, seeded.user_email, seeded.password)
    page.locator("form[action$='/factor/webauthn'] button").first.click()
    page.fill("#label", "Virtual key")
    _wait_for_script(page)
    screenshot(page, "webauthn-enrol")
    page.press("#label", "Enter")  # submitting the form starts the prompt (it used to post an empty response)
    page.wait_for_selector("[data-recovery-codes]")
    screenshot(page, "webauthn-recovery-codes")
    page.click("button.primary")
    code = _callback_code(page)
    rp.state = parse_qs(urlparse(page.url).query)["state"][0]
    claims = rp.validate_id_token(rp.exchange(page.url)["id_token"])
    assert "mfa" in claims["amr"] and "pwd" in claims["amr"]
    assert {"hwk", "swk"} & set(claims["amr"])
    assert code

    # The challenge page starts the ceremony by itself when it loads (the button is the fallback).
    page.goto(rp.authorization_url(prompt="login"))
    _password(page, seeded.user_email, seeded.password)
    _callback_code(page)
    claims = rp.validate_id_token(rp.exchange(page.url)["id_token"])
    assert "mfa" in claims["amr"]

    # The same authenticator again, from the security page: the browser refuses (excludeCredentials),
    # and the page says why, rather than "try again", which could never work.
    page.goto(f"{rp.issuer}/account/security")
    page.locator("form[action$='/add/webauthn'] button").first.click()
    page.click("#webauthn-start")
    page.wait_for_selector("#webauthn-status.error")
    assert "already registered" in page.locator("#webauthn-status").inner_text()
    # The button, disabled during the prompt, has the focus back for the next try.
    assert page.evaluate("document.activeElement.id") == "webauthn-start"


def test_user_verification_required_end_to_end(migrated_database_url, page):
    """factors.webauthn.user_verification = "required" in a real browser: a key that verifies its
    user (PIN/biometrics) enrols and signs in; a key that cannot makes the browser refuse, and the
    page says so rather than hanging."""
    from fixtures.oidc import RelyingParty, seed, start_server

    server = start_server(migrated_database_url, {"factors.webauthn.user_verification": "required"})
    try:
        seeded = seed(server)
        rp = RelyingParty(server.url, seeded.first_party)
        cdp, authenticator_id = virtual_authenticator(page, user_verification=False)
        page.goto(rp.authorization_url(acr_values="urn:idp:acr:mfa"))
        _password(page, seeded.user_email, seeded.password)
        page.locator("form[action$='/factor/webauthn'] button").first.click()
        page.fill("#label", "Key without a PIN")
        _wait_for_script(page)
        page.press("#label", "Enter")
        page.wait_for_selector("#webauthn-status.error")
        # (the browser's NotAllowedError: the page says what may be missing, not "not registered")
        assert "PIN" in page.locator("#webauthn-status").inner_text()
        screenshot(page, "webauthn-uv-required-refused")

        cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": authenticator_id})
        virtual_authenticator(page, user_verification=True)
        page.click("#webauthn-start")
        page.wait_for_selector("[data-recovery-codes]")
        page.click("button.primary")
        _callback_code(page)
        rp.state = parse_qs(urlparse(page.url).query)["state"][0]
        claims = rp.validate_id_token(rp.exchange(page.url)["id_token"])
        assert "mfa" in claims["amr"]

        page.goto(rp.authorization_url(prompt="login"))
        _password(page, seeded.user_email, seeded.password)
        _callback_code(page)
    finally:
        server.stop()
