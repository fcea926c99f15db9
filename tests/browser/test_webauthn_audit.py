"""WebAuthn in headless Chromium, as an attacker and a demanding user try it: a key copied into a
second authenticator (a clone, through the DevTools protocol), a prompt that finds no key (what a
cancel gives the page: NotAllowedError), the page without JavaScript, a passkey and a second
labelled key. Served at http://localhost:<port> (a secure context)."""
from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from sqlalchemy import select

from fixtures.browser import screenshot, virtual_authenticator
from fixtures.oidc import callback_base


def _password(tab, email, password):
    tab.fill("#username", email)
    tab.fill("#password", password)
    with tab.expect_navigation():
        tab.click("button.primary")


def _enrol_during_login(tab, rp, seeded, label="Virtual key") -> list[str]:
    """Sign in with acr mfa, register a key on the enrolment page; the recovery codes shown."""
    tab.goto(rp.authorization_url(acr_values="urn:idp:acr:mfa"))
    _password(tab, seeded.user_email, seeded.password)
    tab.locator("form[action$='/factor/webauthn'] button").first.click()
    tab.fill("#label", label)
    tab.locator("#webauthn-start").wait_for()
    tab.click("#webauthn-start")
    tab.wait_for_selector("[data-recovery-codes]")
    codes = tab.locator("[data-recovery-codes]").inner_text().split()
    tab.click("button.primary")
    tab.wait_for_url(f"{callback_base()}/**")
    return codes


def _claims(tab, rp) -> dict:
    tab.wait_for_url(f"{callback_base()}/**")
    rp.state = parse_qs(urlparse(tab.url).query)["state"][0]
    return rp.validate_id_token(rp.exchange(tab.url)["id_token"])


def _events(server, name: str) -> list:
    from idp.db import db
    from idp.models import AuditEvent

    with server.context():
        return db.session.scalars(select(AuditEvent.details).where(AuditEvent.event == name)).all()


def _stored_count(server) -> int:
    from idp.db import db
    from idp.models import Credential

    with server.context():
        return db.session.scalars(select(Credential.counter).where(Credential.factor == "webauthn")).one()


def test_a_key_copied_into_another_authenticator_is_caught_as_a_clone(seeded, page, chromium, rp_factory,
                                                                       live_server):
    rp = rp_factory(seeded.first_party)
    cdp, authenticator = virtual_authenticator(page)
    _enrol_during_login(page, rp, seeded)
    page.goto(rp.authorization_url(prompt="login"))
    _password(page, seeded.user_email, seeded.password)
    _claims(page, rp)
    [original] = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert original["signCount"] == _stored_count(live_server) > 0

    # The clone: the same private key in another browser, its count behind the original's.
    context = chromium.new_context(locale="en-US")
    try:
        thief = context.new_page()
        thief.set_default_timeout(15000)
        thief_cdp, thief_authenticator = virtual_authenticator(thief)
        thief_cdp.send("WebAuthn.addCredential", {"authenticatorId": thief_authenticator, "credential": {
            **{k: original[k] for k in ("credentialId", "isResidentCredential", "rpId", "privateKey", "userHandle")},
            "signCount": 0}})
        thief.goto(rp.authorization_url(prompt="login"))
        _password(thief, seeded.user_email, seeded.password)
        thief.wait_for_selector("#step-error")
        assert "may have been cloned" in thief.locator("#step-error").inner_text()
        screenshot(thief, "webauthn-clone-caught")
        assert not thief.url.startswith(callback_base())
    finally:
        context.close()
    [event] = _events(live_server, "webauthn.clone_suspected")
    assert event["stored_sign_count"] == original["signCount"] and event["presented_sign_count"] == 1

    # The key is suspended for its owner too: not asked for, the recovery codes offered instead.
    page.goto(rp.authorization_url(prompt="login"))
    _password(page, seeded.user_email, seeded.password)
    assert page.locator("input[name=code]").count() == 1
    assert page.locator("#webauthn-options").count() == 0
    assert not page.url.startswith(callback_base())


def test_a_prompt_that_finds_no_key_says_so_counts_nothing_and_can_be_tried_again(seeded, page, rp_factory,
                                                                                    live_server):
    """What the page gets when the user cancels the browser's prompt (or the key is not there):
    NotAllowedError. Nothing is posted, so nothing is counted; the button starts it again."""
    rp = rp_factory(seeded.first_party)
    cdp, authenticator = virtual_authenticator(page)
    _enrol_during_login(page, rp, seeded)
    [credential] = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    cdp.send("WebAuthn.clearCredentials", {"authenticatorId": authenticator})

    page.goto(rp.authorization_url(prompt="login"))
    _password(page, seeded.user_email, seeded.password)
    page.wait_for_selector("#webauthn-status.error")  # the prompt began by itself and failed
    status = page.locator("#webauthn-status").inner_text()
    screenshot(page, "webauthn-prompt-cancelled")
    assert "another method" in status, status
    assert page.locator("#webauthn-start").is_enabled()
    assert page.locator("input[name=code]").count() == 0  # not switched away by itself...
    assert page.locator("form[action$='/factor/recovery_codes'] button").count() == 1  # ...but offered
    assert _events(live_server, "login.second_factor_failed") == []

    cdp.send("WebAuthn.addCredential", {"authenticatorId": authenticator, "credential": credential})
    page.click("#webauthn-start")
    assert "mfa" in _claims(page, rp)["amr"]


def test_without_javascript_the_key_page_says_why_and_offers_the_other_methods(seeded, page, chromium, rp_factory):
    rp = rp_factory(seeded.first_party)
    virtual_authenticator(page)
    codes = _enrol_during_login(page, rp, seeded)

    context = chromium.new_context(locale="en-US", java_script_enabled=False)
    try:
        tab = context.new_page()
        tab.set_default_timeout(15000)
        tab.goto(rp.authorization_url())
        _password(tab, seeded.user_email, seeded.password)
        assert "needs JavaScript" in tab.content()
        assert not tab.locator("#webauthn-start").is_visible()
        screenshot(tab, "webauthn-without-javascript")
        tab.click("details summary")  # "I can't use my usual method" (a <details>: no script needed)
        with tab.expect_navigation():
            tab.locator("form[action$='/factor/recovery_codes'] button").click()
        tab.fill("input[name=code]", codes[0])
        with tab.expect_navigation():
            tab.locator("input[name=code]").press("Enter")
        tab.locator("form button").first.click()  # past "n recovery codes left"
        tab.wait_for_url(f"{callback_base()}/**")
    finally:
        context.close()


def test_a_passkey_signs_in_and_a_second_labelled_key_is_listed(seeded, page, rp_factory, live_server):
    """A discoverable credential (resident key) is what the enrolment asks for; the ID token's amr
    says what was done: hwk (a device-bound key), user, mfa, with the password's pwd."""
    rp = rp_factory(seeded.first_party)
    cdp, authenticator = virtual_authenticator(page, resident_key=True, user_verification=True)
    _enrol_during_login(page, rp, seeded, label="Laptop passkey")
    [credential] = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert credential["isResidentCredential"]
    page.goto(rp.authorization_url(prompt="login"))
    _password(page, seeded.user_email, seeded.password)
    assert set(_claims(page, rp)["amr"]) == {"pwd", "hwk", "user", "mfa"}
    [event] = [e for e in _events(live_server, "login.second_factor") if e.get("factor") == "webauthn"]
    assert event["user_verified"] is True

    # A second key, on the security page, from another authenticator (a security key on USB).
    cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": authenticator})
    virtual_authenticator(page, resident_key=False, user_verification=False)
    page.goto(f"{rp.issuer}/account/security")
    page.locator("form[action$='/add/webauthn'] button").first.click()
    page.fill("#label", "Desk key")
    page.click("#webauthn-start")
    page.wait_for_url(f"{rp.issuer}/account/security**")
    page.wait_for_selector("text=Desk key")
    text = page.locator("main").inner_text()
    assert "Laptop passkey" in text and "Desk key" in text
    screenshot(page, "webauthn-two-keys")

    # user_verification = "preferred" (the default): the key without a PIN signs in with a touch;
    # the amr is the same (RFC 8176 has no value for "verified, by whatever means"), the audit says.
    page.goto(rp.authorization_url(prompt="login"))
    _password(page, seeded.user_email, seeded.password)
    assert set(_claims(page, rp)["amr"]) == {"pwd", "hwk", "user", "mfa"}
    verified = [e["user_verified"] for e in _events(live_server, "login.second_factor") if e.get("factor") == "webauthn"]
    assert sorted(verified) == [False, True]


def test_at_an_ip_address_the_page_says_keys_cannot_be_used_here(migrated_database_url, page):
    """The default development issuer (http://127.0.0.1:5000): the browser refuses the RP id
    (SecurityError, "This is an invalid domain"). The page said "Try again", which never works."""
    from fixtures.oidc import free_port, seed, start_server

    port = free_port()
    server = start_server(migrated_database_url, {"server.issuer": f"http://127.0.0.1:{port}"}, port=port)
    try:
        seeded = seed(server)
        virtual_authenticator(page)
        page.goto(f"http://127.0.0.1:{port}/account/security")
        _password(page, seeded.user_email, seeded.password)
        page.locator("form[action$='/add/webauthn'] button").first.click()
        page.locator("#webauthn-start").wait_for()
        page.click("#webauthn-start")
        page.wait_for_selector("#webauthn-status.error")
        assert "cannot be used at this address" in page.locator("#webauthn-status").inner_text()
    finally:
        server.stop()


def test_over_plain_http_at_a_host_name_the_page_says_keys_cannot_be_used_here(chromium, migrated_database_url):
    """http://idp.test (not localhost): not a secure context, so no WebAuthn at all. The page said
    "This browser does not support security keys or passkeys", which sent the user to another browser."""
    from fixtures.browser import CHROMIUM, CHROMIUM_ARGS
    from fixtures.oidc import free_port, seed, start_server

    port = free_port()
    server = start_server(migrated_database_url, {"server.issuer": f"http://idp.test:{port}"}, port=port)
    browser = chromium.browser_type.launch(executable_path=CHROMIUM, headless=True,
                                           args=CHROMIUM_ARGS + ["--host-resolver-rules=MAP idp.test 127.0.0.1"])
    try:
        seeded = seed(server)
        tab = browser.new_context(locale="en-US").new_page()
        tab.set_default_timeout(15000)
        tab.goto(f"http://idp.test:{port}/account/security")
        _password(tab, seeded.user_email, seeded.password)
        tab.locator("form[action$='/add/webauthn'] button").first.click()
        # (A function, as the suite's other waits: a bare expression is evaluated with eval, which the
        # page's CSP refuses when the first check runs in the page's own world.)
        tab.wait_for_function("() => document.getElementById('webauthn-status').textContent.length > 0")
        assert "cannot be used at this address" in tab.locator("#webauthn-status").inner_text()
    finally:
        browser.close()
        server.stop()


def test_a_key_without_a_pin_once_verification_is_required_is_told_what_is_missing(migrated_database_url, page):
    """A key registered under "preferred" without a PIN; the operator then sets user_verification =
    "required". The browser refuses to answer (NotAllowedError, nothing posted, nothing counted):
    the page names the PIN, and the recovery codes are there."""
    from fixtures.oidc import RelyingParty, free_port, seed, start_server

    port = free_port()
    server = start_server(migrated_database_url, port=port)
    try:
        seeded = seed(server)
        rp = RelyingParty(server.url, seeded.first_party)
        virtual_authenticator(page, resident_key=False, user_verification=False)
        _enrol_during_login(page, rp, seeded)
    finally:
        server.stop()
    server = start_server(migrated_database_url, {"factors.webauthn.user_verification": "required"}, port=port)
    try:
        page.goto(rp.authorization_url(prompt="login"))
        _password(page, seeded.user_email, seeded.password)
        page.wait_for_selector("#webauthn-status.error")
        assert "PIN" in page.locator("#webauthn-status").inner_text()
        assert page.locator("form[action$='/factor/recovery_codes'] button").count() == 1
        assert _events(server, "login.second_factor_failed") == []
    finally:
        server.stop()
