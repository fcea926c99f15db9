"""Layout on a phone (375 px wide) in headless Chromium: no page is wider than the screen.

A user with second factors (an authenticator app with a long name, recovery codes) and an
application with access opens Account > Security and the push enrolment page (its activation link is one long URI); an admin
opens the audit log, whose details and addresses used to push the table past the card.
"""
from __future__ import annotations

import pyotp
import pytest

from fixtures.browser import screenshot, sign_in_at
from fixtures.oidc import FormBrowser, RelyingParty, password_login


@pytest.fixture
def database_url(sqlite_url) -> str:
    """The pages are the same HTML on either database: walked once, on SQLite (the PostgreSQL
    runs of these walks doubled a minute of CI for nothing)."""
    return sqlite_url


pytestmark = pytest.mark.browser

PHONE = {"width": 375, "height": 800}
LONG_NAME = "My phone with a rather long name for the authenticator app"


def assert_fits(tab, what: str) -> None:
    """The page scrolls vertically only: nothing makes it wider than the viewport."""
    page_width, viewport = tab.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    if page_width > viewport:
        screenshot(tab, f"overflow-{what}")
    assert page_width <= viewport, f"{what}: the page is {page_width} px wide on a {viewport} px screen"


def test_security_audit_and_push_enrolment_fit_a_phone(chromium, page, live_server, seeded):
    base = live_server.url
    page.set_viewport_size(PHONE)
    # A third-party application with access (all four scopes), for the security page's table.
    browser, rp = FormBrowser(base), RelyingParty(base, seeded.third_party)
    password_login(browser, rp, seeded.user_email, seeded.password, scope="openid email profile offline_access",
                   prompt="consent")
    rp.exchange(browser.last_redirect)
    sign_in_at(page, f"{base}/account/security", seeded.user_email, seeded.password)
    assert page.url.endswith("/account/security"), page.url

    # An authenticator app, then the recovery codes shown once.
    with page.expect_navigation():
        page.click("button[data-add=totp]")
    assert_fits(page, "totp-enrol")
    box = page.locator(".totp-qr svg").bounding_box()  # scannable, and whole (the SVG carries a viewBox)
    assert box and 150 <= box["width"] <= 280 and abs(box["width"] - box["height"]) < 2, box
    screenshot(page, "phone-totp-enrol")
    secret = page.locator(".totp-key code").first.inner_text().replace(" ", "")
    page.fill("#label", LONG_NAME)
    page.fill("#code", pyotp.TOTP(secret).now())
    with page.expect_navigation():
        page.locator("#code").evaluate("e => e.form.requestSubmit()")
    assert page.locator("[data-recovery-codes]").count() == 1
    assert_fits(page, "recovery-codes")

    # Account > Security with its table of methods, in English and French.
    page.goto(f"{base}/account/security")
    assert page.locator("tr[data-factor=totp]").count() == 1
    assert page.locator("tr[data-factor=recovery_codes]").count() == 1
    assert page.locator("table.applications tbody tr li").count() == 4
    assert_fits(page, "account-security-en")
    screenshot(page, "phone-account-security")
    page.goto(f"{base}/account/security?ui_locales=fr")
    assert_fits(page, "account-security-fr")

    # The push enrolment page: a QR code and the long idp-push:// activation link.
    page.goto(f"{base}/account/security")
    with page.expect_navigation():
        page.click("button[data-add=push]")
    assert page.locator("[data-activation-uri]").inner_text().startswith("idp-push://")
    assert_fits(page, "push-enrol")

    # The admin's audit log (and users list) on a phone, in French.
    context = chromium.new_context(locale="fr-FR", viewport=PHONE)
    try:
        admin = context.new_page()
        admin.set_default_timeout(15000)
        sign_in_at(admin, f"{base}/admin/audit", seeded.admin_email, seeded.password)
        assert admin.url.endswith("/admin/audit"), admin.url
        assert admin.locator("tr[data-event='factor.enrolled']").count() >= 1
        assert_fits(admin, "admin-audit")
        admin.goto(f"{base}/admin/users")
        assert_fits(admin, "admin-users")
    finally:
        context.close()


def test_french_admin_forms_reflow_at_320_px(chromium, live_server, seeded):
    """WCAG 1.4.10 (reflow: 320 CSS px, a 1280 px screen at 400 %): the admin pages whose buttons are
    WTForms' <input type=submit>, in French. Such a button keeps its value on one line unless told
    otherwise: "Émettre un code QR de récupération" made the recovery QR page 352 px wide, and
    "Enregistrer les facteurs autorisés" the security page 323 px."""
    base = live_server.url
    # The user signed in elsewhere, with an application: the user page's sessions and applications tables.
    browser, rp = FormBrowser(base), RelyingParty(base, seeded.first_party)
    password_login(browser, rp, seeded.user_email, seeded.password)
    rp.exchange(browser.last_redirect)
    context = chromium.new_context(locale="fr-FR", viewport={"width": 320, "height": 800})
    try:
        tab = context.new_page()
        tab.set_default_timeout(15000)
        sign_in_at(tab, f"{base}/admin/users?q={seeded.user_email}", seeded.admin_email, seeded.password)
        with tab.expect_navigation():
            tab.locator("table.users a").first.click()
        user_url = tab.url
        for path, what in ((f"{user_url}/recovery-qr", "recovery-qr-fr"), (f"{base}/admin/security", "security-fr"),
                           (user_url, "user-fr")):
            tab.goto(path)
            assert tab.evaluate("document.documentElement.lang") == "fr"
            assert_fits(tab, what)
            for button in tab.locator("input[type=submit]").all():  # each whole, inside the page
                box = button.bounding_box()
                assert box and box["x"] >= 0 and box["x"] + box["width"] <= 320, (what, button.get_attribute("value"))
        # The user page's tables stack (one block per row) rather than scroll sideways: the sessions
        # table has nothing to focus, so a keyboard could not have scrolled it.
        tab.goto(user_url)
        assert tab.locator("table.sessions tbody tr").count() == 1
        assert tab.locator("table.applications tbody tr").count() == 1
        beyond = tab.evaluate("() => [...document.querySelectorAll('main td')]"
                              ".filter(td => td.getBoundingClientRect().right > window.innerWidth)"
                              ".map(td => td.closest('table').className + ': ' + td.textContent.trim())")
        assert not beyond, f"cells past the screen's edge at 320 px (to be scrolled to): {beyond}"
        # Each stacked cell's label, in French typography: "Adresse : 127.0.0.1", not "Adresse: ".
        label = tab.evaluate("() => getComputedStyle(document.querySelector('table.sessions td[data-label]'),"
                             " '::before').content")
        assert label == '"Adresse\u00a0: "', label
    finally:
        context.close()
