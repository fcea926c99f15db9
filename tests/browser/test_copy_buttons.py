"""The Copy buttons beside a secret (templates/_copy.html, static/copy.js) say what they did.

In headless Chromium against the live server: clicking Copy puts the text on the clipboard and
"Copied" in the live region beside the button (role=status, aria-live=polite), which a screen
reader reads out and everyone sees; in French the words are French (they come from the page, not
the script); a clipboard that refuses gets "Not copied", in the same region. The pages keep their
CSP: the script is a file of the site's own, no inline script.
"""
from __future__ import annotations

import pyotp
import pytest

from fixtures.browser import sign_in_at


@pytest.fixture
def database_url(sqlite_url) -> str:
    """The pages are the same HTML on either database."""
    return sqlite_url


pytestmark = pytest.mark.browser

# A clipboard that refuses every write, as a browser does when the page may not write to it.
REFUSING_CLIPBOARD = """Object.defineProperty(navigator, 'clipboard', {value: {
  writeText: () => Promise.reject(new DOMException('refused', 'NotAllowedError'))}});"""


def new_tab(chromium, locale: str, *, clipboard: bool = True):
    context = chromium.new_context(locale=locale)
    if clipboard:
        context.grant_permissions(["clipboard-read", "clipboard-write"])
    else:
        context.add_init_script(REFUSING_CLIPBOARD)
    tab = context.new_page()
    tab.set_default_timeout(15000)
    return context, tab


def status_of(tab, target: str):
    """The live region of the Copy button of element `target`, checked to be one."""
    button = tab.locator(f"button[data-copy-target='{target}']")
    region = tab.locator(f"#{button.get_attribute('data-copy-status')}")
    assert region.get_attribute("role") == "status" and region.get_attribute("aria-live") == "polite"
    return button, region


def click_copy(tab, target: str, expected: str) -> None:
    button, region = status_of(tab, target)
    assert button.is_visible() and region.inner_text() == ""  # nothing said before the click
    button.click()
    region.filter(has_text=expected).wait_for()
    assert region.inner_text() == expected and region.is_visible()


def enrol_totp(tab, base: str) -> str:
    """From the security page to the authenticator app's enrolment page; returns its key."""
    tab.goto(f"{base}/account/security")
    with tab.expect_navigation():
        tab.click("button[data-add=totp]")
    return tab.locator(".totp-key code").inner_text().replace(" ", "")


def test_copy_announces_copied_in_french_and_in_english(chromium, live_server, seeded):
    base = live_server.url
    # French first: the user has no second factor yet, so the password alone signs in.
    context, tab = new_tab(chromium, "fr-FR")
    try:
        sign_in_at(tab, f"{base}/account/security", seeded.user_email, seeded.password)
        key = enrol_totp(tab, base)
        assert tab.locator("button[data-copy-target='totp-key']").inner_text() == "Copier"
        click_copy(tab, "totp-key", "Copié")
        assert tab.evaluate("navigator.clipboard.readText()") == key
    finally:
        context.close()

    context, tab = new_tab(chromium, "en-US")
    try:
        sign_in_at(tab, f"{base}/account/security", seeded.user_email, seeded.password)
        key = enrol_totp(tab, base)
        click_copy(tab, "totp-key", "Copied")
        assert tab.evaluate("navigator.clipboard.readText()") == key  # the key, without its grouping spaces
        # A second click says it again: the region is emptied, then filled (a change to announce).
        tab.evaluate("""() => { const region = document.getElementById('totp-key-copy-status');
            window.said = []; new MutationObserver(() => window.said.push(region.textContent))
              .observe(region, {childList: true, characterData: true, subtree: true}); }""")
        tab.locator("button[data-copy-target='totp-key']").click()
        tab.wait_for_function("() => window.said.length >= 2")
        assert tab.evaluate("window.said") == ["", "Copied"]

        tab.fill("#code", pyotp.TOTP(key).now())
        with tab.expect_navigation():
            tab.locator("#code").evaluate("e => e.form.requestSubmit()")
        codes = tab.locator("[data-recovery-codes]").inner_text().split()
        assert codes
        click_copy(tab, "recovery-codes", "Copied")
        assert tab.evaluate("navigator.clipboard.readText()").split() == codes
    finally:
        context.close()


def test_a_refused_copy_says_so(chromium, live_server, seeded):
    base = live_server.url
    for locale, expected in (("en-US", "Not copied: select the text and copy it yourself."),
                             ("fr-FR", "Copie impossible : sélectionnez le texte et copiez-le vous-même.")):
        context, tab = new_tab(chromium, locale, clipboard=False)
        try:
            sign_in_at(tab, f"{base}/account/security", seeded.user_email, seeded.password)
            enrol_totp(tab, base)
            click_copy(tab, "totp-key", expected)
            assert "error" in tab.locator("#totp-key-copy-status").get_attribute("class")
        finally:
            context.close()


def test_the_admins_recovery_qr_secret_has_a_copy_button(chromium, live_server, seeded):
    base = live_server.url
    context, tab = new_tab(chromium, "en-US")
    try:
        sign_in_at(tab, f"{base}/admin/users?q={seeded.user_email}", seeded.admin_email, seeded.password)
        with tab.expect_navigation():
            tab.locator("table.users a").first.click()
        tab.goto(f"{tab.url}/recovery-qr")
        with tab.expect_navigation():
            tab.locator("form[action$='/recovery-qr'] [type=submit]").click()
        secret = tab.locator("#recovery-secret").inner_text()
        click_copy(tab, "recovery-secret", "Copied")
        assert tab.evaluate("navigator.clipboard.readText()") == secret
    finally:
        context.close()


def test_the_push_activation_link_has_a_copy_button(chromium, live_server, seeded):
    base = live_server.url
    context, tab = new_tab(chromium, "fr-FR")
    try:
        sign_in_at(tab, f"{base}/account/security", seeded.user_email, seeded.password)
        with tab.expect_navigation():
            tab.click("button[data-add=push]")
        uri = tab.locator("[data-activation-uri]").inner_text()
        click_copy(tab, "push-activation-uri", "Copié")
        assert tab.evaluate("navigator.clipboard.readText()") == uri and uri.startswith("idp-push://")
    finally:
        context.close()
