"""The CSP allows no inline style (`style-src 'self'`): the pages that drew with one (the admin's
2FA distribution bar, the admin pages' sheet, the WebAuthn pages' no-JavaScript rule) render in
Chromium without a violation, and still look as they should."""
from __future__ import annotations

from fixtures.browser import sign_in_at


def csp_violations(tab) -> list[str]:
    found: list[str] = []
    tab.on("console", lambda message: found.append(message.text) if "Content Security" in message.text else None)
    return found


def test_the_admins_security_page_draws_its_bar_without_inline_style(page, live_server, seeded):
    violations = csp_violations(page)
    sign_in_at(page, f"{live_server.url}/admin/security", seeded.admin_email, seeded.password)
    assert page.url.endswith("/admin/security"), page.url
    bar = page.locator("svg.bar[role=img]")
    assert bar.get_attribute("aria-label") and bar.locator("rect[fill^='#']").count() >= 1
    box = bar.bounding_box()
    assert box and box["width"] > 100 and 12 <= box["height"] <= 16, box
    # the admin sheet applies (a rule only admin.css holds: 32rem)
    assert page.locator("table.distribution").evaluate("e => getComputedStyle(e).maxWidth") == "512px"
    assert not violations, violations


def test_qr_codes_and_the_key_button_render_without_inline_style(page, live_server, seeded):
    violations = csp_violations(page)
    sign_in_at(page, f"{live_server.url}/account/security", seeded.user_email, seeded.password)
    with page.expect_navigation():
        page.click("button[data-add=totp]")
    assert page.locator(".totp-qr svg").count() == 1
    page.goto(f"{live_server.url}/account/security")
    with page.expect_navigation():
        page.click("button[data-add=webauthn]")
    button = page.locator("#webauthn-start")
    button.wait_for(state="visible")  # shown by its script, hidden without it
    assert button.is_enabled()
    assert not violations, violations
