"""Accessibility (WCAG 2.1 AA) of the provider's pages in headless Chromium.

Every page a user or an admin meets is checked for what a screen reader and a keyboard need:

    one <h1>, a non-empty <title>, <html lang>; every field has an accessible name; no id twice;
    every table has header cells, none of them empty; every link, button and field is reached
    by Tab, with a visible focus; a form's error is announced (role=alert) and named by its
    field (aria-invalid, aria-describedby); the 2FA shields have a text alternative.

axe-core runs as well (rules tagged wcag2a, wcag2aa, wcag21a, wcag21aa) when the environment
variable IDP_TEST_AXE_JS names its axe.min.js (`npm install axe-core`: the suite does not depend
on npm); without it those checks are skipped and the plain ones above still run.
"""
from __future__ import annotations

import os
from pathlib import Path

import pyotp
import pytest

from fixtures.browser import screenshot, sign_in_at


@pytest.fixture
def database_url(sqlite_url) -> str:
    """The pages are the same HTML on either database: walked once, on SQLite (the PostgreSQL
    runs of these walks doubled a minute of CI for nothing)."""
    return sqlite_url


pytestmark = pytest.mark.browser

AXE_JS = os.environ.get("IDP_TEST_AXE_JS", "")
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def axe_available() -> bool:
    return bool(AXE_JS) and Path(AXE_JS).is_file()


# The page's structure in one evaluation: headings, title, language, unnamed fields, repeated
# ids, tables without headers or with empty ones.
STRUCTURE = """() => {
  const named = el => {
    if (el.getAttribute('aria-label') || el.getAttribute('aria-labelledby') || el.closest('label')) return true;
    return !!(el.id && document.querySelector(`label[for="${CSS.escape(el.id)}"]`));
  };
  const ids = [...document.querySelectorAll('[id]')].map(e => e.id);
  return {
    h1: [...document.querySelectorAll('h1')].map(e => e.textContent.trim()),
    title: document.title.trim(),
    lang: document.documentElement.getAttribute('lang') || '',
    unnamed: [...document.querySelectorAll('input, select, textarea')]
      .filter(e => !['hidden', 'submit', 'button', 'reset'].includes(e.type) && !named(e))
      .map(e => e.outerHTML.slice(0, 160)),
    duplicateIds: [...new Set(ids.filter((id, i) => ids.indexOf(id) !== i))],
    tablesWithoutHeaders: [...document.querySelectorAll('table')].filter(t => !t.querySelector('th'))
      .map(t => t.className),
    emptyHeaders: [...document.querySelectorAll('th')].filter(th => !th.textContent.trim())
      .map(th => th.closest('table').className),
  };
}"""

# Every element a keyboard user must reach: visible links, buttons, fields and summaries. A group of
# radio buttons is one stop (the browser's rule: Tab reaches its checked button, or its first when
# none is, and the arrow keys move within it).
FOCUSABLE = """() => [...document.querySelectorAll(
    'a[href], button, input:not([type=hidden]), select, textarea, summary')]
  .filter(e => !e.disabled && !e.hidden && e.getClientRects().length && getComputedStyle(e).visibility !== 'hidden'
          && !(e.closest('details:not([open])') && e.tagName !== 'SUMMARY'))
  .filter(e => {
    if (e.type !== 'radio' || !e.name) return true;
    const group = [...(e.form || document).querySelectorAll('input[type=radio]')].filter(r => r.name === e.name);
    return e === (group.find(r => r.checked) || group[0]);
  })
  .map(e => {
    e.dataset.a11yKey = e.dataset.a11yKey || Math.random().toString(36).slice(2);
    return e.dataset.a11yKey;
  })"""

FOCUSED = """() => {
  const e = document.activeElement;
  if (!e || e === document.body) return null;
  const s = getComputedStyle(e);
  return {key: e.dataset.a11yKey || null, what: e.outerHTML.slice(0, 120), type: e.type || '',
          focusVisible: e.matches(':focus-visible'),
          ring: (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0) || (s.boxShadow || 'none') !== 'none'};
}"""


class Audit:
    """Checks one page after another; with `axe`, axe-core's findings are gathered and reported together."""

    def __init__(self, axe: bool) -> None:
        self.use_axe = axe
        self.axe: dict[str, list[str]] = {}

    def check(self, tab, name: str, *, keyboard: bool = True) -> None:
        tab.wait_for_load_state("load")
        found = tab.evaluate(STRUCTURE)
        try:
            assert len(found["h1"]) == 1, f"{name}: {len(found['h1'])} <h1> ({found['h1']})"
            assert found["title"], f"{name}: empty <title>"
            assert found["lang"], f"{name}: no lang on <html>"
            assert not found["unnamed"], f"{name}: fields without an accessible name: {found['unnamed']}"
            assert not found["duplicateIds"], f"{name}: ids used twice: {found['duplicateIds']}"
            assert not found["tablesWithoutHeaders"], f"{name}: tables without headers: {found['tablesWithoutHeaders']}"
            assert not found["emptyHeaders"], f"{name}: empty header cells in: {found['emptyHeaders']}"
            if keyboard:
                check_keyboard(tab, name)
        except AssertionError:
            screenshot(tab, f"a11y-{name}")
            raise
        if self.use_axe:
            violations = run_axe(tab)
            if violations:
                self.axe[name] = violations

    def assert_axe_clean(self) -> None:
        assert not self.axe, "axe-core (WCAG 2.1 A/AA) found:\n" + "\n".join(
            f"  {page}: {line}" for page, lines in self.axe.items() for line in lines)


def run_axe(tab) -> list[str]:
    tab.add_script_tag(path=AXE_JS)
    violations = tab.evaluate("""async tags => {
      const result = await axe.run(document, {runOnly: {type: 'tag', values: tags}});
      return result.violations.map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))}));
    }""", AXE_TAGS)
    return [f"{v['id']} ({v['impact']}): {', '.join(v['nodes'][:5])}" for v in violations]


def check_keyboard(tab, name: str) -> None:
    """Tab from the top of the page to its end: every link, button and field is reached, each with a
    visible focus (an outline or a shadow)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:  # let the page's autofocus happen first, so that it does not move the focus during the walk
        tab.wait_for_function("() => { const a = document.querySelector('[autofocus]');"
                              " return !a || document.activeElement === a; }", timeout=2000)
    except PlaywrightTimeout:
        pass
    wanted = set(tab.evaluate(FOCUSABLE))
    # Start from the top: a focus point before everything (the page may have focused a field itself).
    tab.evaluate("""() => { const start = document.createElement('span'); start.tabIndex = -1; start.id = 'a11y-start';
                            document.body.prepend(start); start.focus(); }""")
    reached, without_ring = set(), []
    for _ in range(len(wanted) * 4 + 10):  # a date field takes a few stops (day, month, year, picker)
        tab.keyboard.press("Tab")
        focused = tab.evaluate(FOCUSED)
        if focused is None or focused["key"] is None:  # past the last element
            break
        if focused["key"] in reached and focused["type"] != "date":
            break
        reached.add(focused["key"])
        # A date field's own picker button draws Chromium's ring, which the field's style does not show.
        if not focused["ring"] and not (focused["type"] == "date" and not focused["focusVisible"]):
            without_ring.append(focused["what"])
    tab.evaluate("() => document.getElementById('a11y-start').remove()")
    assert not without_ring, f"{name}: focus not visible on {without_ring}"
    missed = wanted - reached
    if missed:
        what = tab.evaluate("keys => keys.map(k => document.querySelector(`[data-a11y-key='${k}']`).outerHTML"
                            ".slice(0, 120))", sorted(missed))
        raise AssertionError(f"{name}: not reached by Tab: {what}")


def assert_error_linked(tab, name: str, field: str) -> None:
    """The form's error is announced (role=alert), and the field says it is invalid and which text
    describes it."""
    alerts = tab.locator("[role=alert]")
    assert alerts.count() >= 1 and alerts.first.inner_text().strip(), f"{name}: no error with role=alert"
    element = tab.locator(field)
    assert element.get_attribute("aria-invalid") == "true", f"{name}: {field} has no aria-invalid=true"
    described_by = (element.get_attribute("aria-describedby") or "").split()
    assert described_by, f"{name}: {field} has no aria-describedby"
    for ref in described_by:
        target = tab.locator(f"[id='{ref}']")
        assert target.count() == 1 and target.get_attribute("role") == "alert", f"{name}: {field} -> #{ref}"


@pytest.fixture(params=["plain", "axe"])
def audit(request) -> Audit:
    """Each walk runs twice: with the plain checks only, and with axe-core too (skipped without it)."""
    if request.param == "axe" and not axe_available():
        pytest.skip("axe-core not run: set IDP_TEST_AXE_JS to an axe.min.js (npm install axe-core)")
    return Audit(axe=request.param == "axe")


def in_own_browser(chromium, audit: Audit, walk) -> None:
    """Run `walk(new_tab)` on the session's Chromium (tests/fixtures/browser.py); `new_tab(locale)`
    opens a page in a new context, closed afterwards. For axe, the page's CSP (no inline script)
    is bypassed so that axe can be injected."""
    contexts = []

    def new_tab(locale: str = "en-US"):
        context = chromium.new_context(locale=locale, viewport={"width": 1200, "height": 900},
                                       bypass_csp=audit.use_axe)
        contexts.append(context)
        tab = context.new_page()
        tab.set_default_timeout(15000)
        return tab

    try:
        walk(new_tab)
    finally:
        for context in contexts:
            context.close()


def wait_for_focus(tab, element_id: str) -> None:
    tab.wait_for_function("id => document.activeElement && document.activeElement.id === id", arg=element_id,
                          timeout=5000)


def submit(tab, selector: str) -> None:
    with tab.expect_navigation():
        tab.locator(selector).evaluate("e => e.form.requestSubmit()")


def submit_unchecked(tab, values: dict[str, str]) -> None:
    """Fill the fields (selector -> value) and post their form with the browser's own validation
    off, as a browser without it would: the server's error is what is checked."""
    tab.evaluate("() => { for (const form of document.forms) form.noValidate = true; }")
    for selector, value in values.items():
        tab.fill(selector, value)
    submit(tab, selector)


def test_sign_in_error_and_plain_pages(chromium, audit, live_server, seeded, rp_factory):
    in_own_browser(chromium, audit, lambda new_tab: walk_sign_in(audit, new_tab, live_server, seeded, rp_factory))


def walk_sign_in(audit, new_tab, live_server, seeded, rp_factory):
    base = live_server.url
    tab = new_tab()

    tab.goto(rp_factory(seeded.third_party).authorization_url())
    audit.check(tab, "login")
    # Typing starts in the e-mail field; Tab goes on to the password, then to the button.
    tab.reload()
    wait_for_focus(tab, "username")  # autofocus: applied once the page is rendered
    tab.keyboard.press("Tab")
    assert tab.evaluate("document.activeElement.id") == "password"
    tab.keyboard.press("Tab")
    assert tab.evaluate("document.activeElement.type") == "submit"

    tab.fill("#username", seeded.user_email)
    tab.fill("#password", "not the password")
    with tab.expect_navigation():
        tab.click("button.primary")
    wait_for_focus(tab, "password")  # back where the mistake is
    assert_error_linked(tab, "login-wrong-password", "#password")
    audit.check(tab, "login-wrong-password")

    tab.fill("#password", seeded.password)
    with tab.expect_navigation():
        tab.click("button.primary")
    audit.check(tab, "consent")  # a third-party client asks
    with tab.expect_navigation():
        tab.click("button[value=allow]")
    assert "code=" in tab.url, tab.url
    walk_device(audit, tab, live_server, seeded)  # signed in: the session answers the device's login

    tab.goto(f"{base}/logout")
    audit.check(tab, "logout-confirm")
    with tab.expect_navigation():
        tab.click("button.primary")
    audit.check(tab, "logged-out")

    for path, name in (("/login/expired", "expired"), ("/no-such-page", "404"),
                       ("/authorize?response_type=code&client_id=no-such-client&redirect_uri=http://127.0.0.1:1/cb"
                        "&scope=openid", "400-unknown-client")):
        tab.goto(f"{base}{path}")
        audit.check(tab, name)
    tab.goto(f"{base}/no-such-page")
    assert tab.title() != "404" and "404" in tab.title()  # the title says what happened, not only the code

    walk_password_reset(audit, new_tab(), live_server, seeded, rp_factory)  # last: it changes the password

    french = new_tab("fr-FR")
    french.goto(f"{base}/login/expired")
    assert french.evaluate("document.documentElement.lang") == "fr"
    audit.assert_axe_clean()


def walk_device(audit, tab, live_server, seeded):
    """A device's sign-in (RFC 8628) from a signed-in browser: the code, a wrong one, the
    confirmation, approved; then another device, denied."""
    from fixtures.device import allow_device_grant, ask_for_codes

    allow_device_grant(live_server, seeded.third_party)
    tab.goto(f"{live_server.url}/device")
    audit.check(tab, "device-code")
    submit_unchecked(tab, {"#user_code": "BCDF-GHJK"})
    assert_error_linked(tab, "device-code-error", "#user_code")
    audit.check(tab, "device-code-error")
    tab.fill("#user_code", ask_for_codes(live_server, seeded.third_party).json()["user_code"])
    submit(tab, "#user_code")
    audit.check(tab, "device-confirm")
    with tab.expect_navigation():
        tab.click("button[value=allow]")
    audit.check(tab, "device-approved")
    assert tab.url.endswith("/device/approved"), tab.url
    tab.goto(ask_for_codes(live_server, seeded.third_party).json()["verification_uri_complete"])
    submit(tab, "#user_code")
    with tab.expect_navigation():
        tab.click("button[value=deny]")
    audit.check(tab, "device-denied")


def walk_password_reset(audit, tab, live_server, seeded, rp_factory):
    """"Forgot your password?" from a login's password page, to the new password and back."""
    tab.goto(rp_factory(seeded.third_party).authorization_url())
    with tab.expect_navigation():
        tab.click("p.forgot a")
    audit.check(tab, "forgot-password")
    submit_unchecked(tab, {"#username": ""})
    audit.check(tab, "forgot-password-error")
    assert_error_linked(tab, "forgot-password-error", "#username")
    tab.fill("#username", seeded.user_email)
    submit(tab, "#username")
    audit.check(tab, "reset-link-sent")
    link = mailed_link(live_server)
    tab.goto(link)
    audit.check(tab, "reset-choose")
    submit_unchecked(tab, {"#password": "short", "#confirm": "short"})
    audit.check(tab, "reset-choose-error")
    assert_error_linked(tab, "reset-choose-error", "#password")
    tab.fill("#password", "a brand new passphrase")
    tab.fill("#confirm", "a brand new passphrase")
    submit(tab, "#password")
    audit.check(tab, "password-changed")
    assert tab.locator("a[href^='/login/']").count() == 1  # back to the login in progress
    tab.goto(link)
    audit.check(tab, "reset-dead-link")


def mailed_link(live_server, timeout: float = 10.0) -> str:
    """The last reset link the development notifier (`[mail] host = "console"`) kept (security
    notices, idp.security_notices, go through it too)."""
    import re
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        notifier = live_server.app.extensions.get("idp.notifier")
        links = [found.group(0) for message in (notifier.sent if notifier is not None else ())
                 if (found := re.search(r"http://\S+/password/reset/\S+", message.body))]
        if links:
            return links[-1]
        time.sleep(0.05)
    raise AssertionError("no reset link was mailed")


def test_account_security_factors_and_second_factor_pages(chromium, audit, live_server, seeded, rp_factory):
    in_own_browser(chromium, audit, lambda new_tab: walk_account(audit, new_tab, live_server, seeded, rp_factory))


def signed_in_elsewhere(live_server, seeded, email: str) -> None:
    """A second session of `email`'s, from another browser, whose application redeems its code:
    the pages list the session with its button, and the application with its own."""
    from fixtures.oidc import FormBrowser, RelyingParty, password_login

    browser, rp = FormBrowser(live_server.url), RelyingParty(live_server.url, seeded.first_party)
    password_login(browser, rp, email, seeded.password)
    rp.exchange(browser.last_redirect)


def walk_account(audit, new_tab, live_server, seeded, rp_factory):
    base = live_server.url
    tab = new_tab()
    signed_in_elsewhere(live_server, seeded, seeded.user_email)
    sign_in_at(tab, f"{base}/account/security", seeded.user_email, seeded.password)
    assert tab.url.endswith("/account/security"), tab.url
    audit.check(tab, "account-security-empty")
    assert tab.locator("nav a[aria-current=page]").count() == 1
    # Where you're signed in: each other browser's button names the browser it signs out.
    assert tab.locator("table.sessions tbody tr").count() == 2
    assert tab.locator("button[data-end-session] .sr-only").first.inner_text().strip()
    # Applications with access: the button names the application it removes.
    assert tab.locator("table.applications tbody tr").count() == 1
    assert tab.locator("button[data-remove-application] .sr-only").inner_text().strip() == "First"
    tab.goto(f"{base}/account/security/sign-out-everywhere")
    audit.check(tab, "account-confirm-sign-out-everywhere")

    # The password change: its page, then a wrong current password (browser validation off).
    tab.goto(f"{base}/account/password")
    audit.check(tab, "account-password")
    submit_unchecked(tab, {"#current": "not my password", "#password": "a brand new passphrase",
                           "#confirm": "a brand new passphrase"})
    audit.check(tab, "account-password-wrong")
    assert_error_linked(tab, "account-password-wrong", "#current")
    tab.goto(f"{base}/account/security")

    # An authenticator app: the enrolment page, a wrong code, then the recovery codes shown once.
    with tab.expect_navigation():
        tab.click("button[data-add=totp]")
    audit.check(tab, "totp-enrol")
    qr = tab.locator(".totp-qr")
    assert qr.get_attribute("role") == "img" and qr.get_attribute("aria-label"), "the QR code has no text alternative"
    tab.fill("#code", "000000")
    submit(tab, "#code")
    audit.check(tab, "totp-enrol-wrong-code")
    assert_error_linked(tab, "totp-enrol-wrong-code", "#code")
    secret = tab.locator(".totp-key code").first.inner_text().replace(" ", "")
    tab.fill("#label", "Phone")
    tab.fill("#code", pyotp.TOTP(secret).now())
    submit(tab, "#code")
    audit.check(tab, "recovery-codes-shown")
    codes = tab.locator("[data-recovery-codes]").inner_text().split()
    assert codes

    tab.goto(f"{base}/account/security")
    audit.check(tab, "account-security-factors")
    # A method renamed to nothing: refused, the keyboard is back in that name field (not at the top of
    # the page), which the refusal describes, and the title says so first.
    field = "tr[data-factor=totp] form.rename input[name=label]"
    tab.fill(field, "")
    with tab.expect_navigation():
        tab.locator(f"{field} ~ button").click()
    tab.wait_for_function("s => document.activeElement === document.querySelector(s)", arg=field, timeout=5000)
    assert tab.title().startswith("Error"), tab.title()
    assert_error_linked(tab, "account-rename-refused", field)
    audit.check(tab, "account-rename-refused")
    tab.goto(f"{base}/account/security")
    with tab.expect_navigation():
        tab.locator("tr[data-factor=totp] a.danger").click()
    audit.check(tab, "account-confirm-remove")

    tab.goto(f"{base}/account/security")
    with tab.expect_navigation():
        tab.click("button[data-add=push]")
    audit.check(tab, "push-enrol")
    assert tab.locator(".qr[role=img]").get_attribute("aria-label")

    # A new browser signs in to the third-party client: the code page, a wrong code, the recovery code page.
    other = new_tab()
    sign_in_at(other, rp_factory(seeded.third_party).authorization_url(), seeded.user_email, seeded.password)
    if other.locator("form[action$='/factor/totp'] button").count() and not other.locator("#code").count():
        with other.expect_navigation():
            other.locator("form[action$='/factor/totp'] button").first.click()
    audit.check(other, "totp-challenge")
    other.fill("#code", "000000")
    with other.expect_navigation():
        other.locator("#code").press("Enter")
    audit.check(other, "totp-challenge-wrong")
    assert_error_linked(other, "totp-challenge-wrong", "#code")
    other.click("details summary")
    with other.expect_navigation():
        other.locator("details form[action$='/factor/recovery_codes'] button").click()
    audit.check(other, "recovery-code-challenge")
    other.fill("#code", codes[0])
    with other.expect_navigation():
        other.locator("#code").press("Enter")
    audit.check(other, "recovery-code-used")
    with other.expect_navigation():
        other.locator("button.primary").click()
    audit.check(other, "consent-after-2fa")
    audit.assert_axe_clean()


def test_admin_pages(chromium, audit, live_server, seeded):
    in_own_browser(chromium, audit, lambda new_tab: walk_admin(audit, new_tab, live_server, seeded))


def walk_admin(audit, new_tab, live_server, seeded):
    base = live_server.url
    tab = new_tab()
    signed_in_elsewhere(live_server, seeded, seeded.user_email)
    sign_in_at(tab, f"{base}/admin/users", seeded.admin_email, seeded.password)
    assert tab.url.endswith("/admin/users"), tab.url
    audit.check(tab, "admin-users")
    # The shields: an SVG hidden from screen readers, a text alternative, and the same text on hover.
    shields = tab.locator("table.users .shield")
    assert shields.count() >= 2
    for i in range(shields.count()):
        shield = shields.nth(i)
        assert shield.locator("svg").get_attribute("aria-hidden") == "true"
        assert shield.locator(".sr-only").inner_text().strip()
        assert shield.get_attribute("title")
    assert tab.locator("table.users thead th[scope=col]").count() == 5
    # The bulk change: each member's checkbox is labelled with the user (admins have none), and with
    # JavaScript a "select every member" box heads the column; a refusal is announced and focused.
    boxes = tab.locator("table.users input[name=user]")
    assert boxes.count() >= 1
    for i in range(boxes.count()):
        label = tab.locator(f"label[for='{boxes.nth(i).get_attribute('id')}']")
        assert label.inner_text().strip().startswith("Select ")
    select_all = tab.locator("table.users thead input[type=checkbox]")
    select_all.check()
    assert all(boxes.nth(i).is_checked() for i in range(boxes.count()))
    tab.check("#mode-2")  # waive
    submit_unchecked(tab, {"#exempt_until": "2001-01-01"})
    wait_for_focus(tab, "exempt_until")
    assert tab.title().startswith("Error"), tab.title()
    until = tab.locator("#exempt_until")  # described by its hint and its error (an alert)
    assert until.get_attribute("aria-invalid") == "true"
    described = (until.get_attribute("aria-describedby") or "").split()
    assert "bulk-until-hint" in described
    assert any(tab.locator(f"[id='{ref}']").get_attribute("role") == "alert" for ref in described), described
    audit.check(tab, "admin-users-bulk-error")
    tab.check("#mode-1")  # follow the organization's rule, as the users here already do: no change
    submit_unchecked(tab, {"#exempt_until": ""})
    assert tab.url.endswith("/admin/users"), tab.url
    assert "Nothing to change" in tab.locator(".flash").first.inner_text()
    audit.check(tab, "admin-users-bulk-done")
    # The keyboard's first stop skips the top bar: the next one is the page's first control.
    tab.goto(f"{base}/admin/users")
    tab.keyboard.press("Tab")
    assert tab.evaluate("document.activeElement.textContent") == "Skip to content"
    tab.keyboard.press("Enter")
    tab.keyboard.press("Tab")
    assert tab.evaluate("document.activeElement.textContent") == "Add a user"

    tab.goto(f"{base}/admin/users?q={seeded.user_email}")
    with tab.expect_navigation():
        tab.locator("table.users a").first.click()
    user_url = tab.url
    audit.check(tab, "admin-user")
    assert tab.locator("table.sessions tbody tr").count() == 1

    tab.goto(f"{base}/admin/security")
    audit.check(tab, "admin-security")
    assert tab.locator(".bar[role=img]").get_attribute("aria-label")
    assert tab.locator("table.distribution th[scope=row]").count() >= 4  # each status names its row
    for i in range(tab.locator("table.distribution .shield").count()):
        assert tab.locator("table.distribution .shield .sr-only").nth(i).inner_text().strip()

    # A field's error (browser validation off, as for a browser without it).
    submit_unchecked(tab, {"#grace_days": "999"})
    # One of the page's forms refused: the keyboard is taken to its field (the error is far down the
    # page), and the title says so first, as on the pages with one form.
    wait_for_focus(tab, "grace_days")
    assert tab.title().startswith("Error"), tab.title()
    audit.check(tab, "admin-security-grace-error")
    assert_error_linked(tab, "admin-security-grace-error", "#grace_days")
    # The allowed factors, none ticked: the keyboard starts at the first choice, which the error describes.
    tab.goto(f"{base}/admin/security")
    tab.uncheck("#all_factors")
    for box in tab.locator("input[name=factors]").all():
        box.uncheck()
    submit(tab, "#submit-factors")
    wait_for_focus(tab, "factors-0")
    assert tab.title().startswith("Error"), tab.title()
    described = tab.locator("fieldset:has(#factors-0)").get_attribute("aria-describedby")
    assert described and tab.locator(f"[id='{described}'][role=alert]").inner_text().strip()
    audit.check(tab, "admin-security-factors-error")

    tab.goto(f"{base}/admin/audit")
    audit.check(tab, "admin-audit")

    tab.goto(f"{base}/admin/users/new")
    audit.check(tab, "admin-new-user")
    submit_unchecked(tab, {"#email": "not an address", "#password": "a brand new passphrase",
                           "#confirm": "a brand new passphrase"})
    audit.check(tab, "admin-new-user-error")
    assert_error_linked(tab, "admin-new-user-error", "#email")
    tab.goto(f"{user_url}/password")
    audit.check(tab, "admin-set-password")
    tab.goto(f"{user_url}/disable")
    audit.check(tab, "admin-confirm-disable")
    tab.goto(f"{user_url}/sign-out")
    audit.check(tab, "admin-confirm-sign-out")
    tab.goto(f"{user_url}/delete")
    audit.check(tab, "admin-confirm-delete")
    submit_unchecked(tab, {"#email": "someone@else.example"})  # not the user's: the form again, nothing deleted
    audit.check(tab, "admin-confirm-delete-error")
    assert_error_linked(tab, "admin-confirm-delete-error", "#email")

    tab.goto(f"{user_url}/recovery-qr")
    audit.check(tab, "admin-recovery-qr")
    with tab.expect_navigation():
        tab.locator("form[action$='/recovery-qr'] [type=submit]").click()
    audit.check(tab, "admin-recovery-qr-issued")
    assert tab.locator(".issued .qr[role=img]").get_attribute("aria-label")
    recovery_qr_url = tab.url
    tab.goto(f"{user_url}/reset-factors")  # a confirmation page (its link shows once the user has factors)
    audit.check(tab, "admin-confirm-reset")
    tab.goto(recovery_qr_url)
    with tab.expect_navigation():
        tab.locator("table.outstanding button.danger").first.click()
    audit.check(tab, "admin-recovery-qr-revoked")
    assert tab.locator(".flash[role=status]").count() == 1
    audit.assert_axe_clean()


def test_pages_the_other_walks_miss_in_french(chromium, audit, live_server, seeded, rp_factory):
    """The home page, the forced enrolment's choice, the security key's enrolment, the recovery
    codes made again, a recovery QR code's sign-in page, the signed-out form's refusal: checked in French, the other walks' English
    pages' counterparts (longer words, other line breaks, <html lang="fr">)."""
    in_own_browser(chromium, audit, lambda new_tab: walk_french(audit, new_tab, live_server, seeded, rp_factory))


def walk_french(audit, new_tab, live_server, seeded, rp_factory):
    base = live_server.url
    tab = new_tab("fr-FR")
    tab.goto(f"{base}/")
    audit.check(tab, "home-fr")
    assert tab.evaluate("[document.documentElement.lang, document.documentElement.dir]") == ["fr", "ltr"]

    # A login that asks for MFA, by a user who has no second factor: the choice of a method first.
    sign_in_at(tab, rp_factory(seeded.first_party).authorization_url(acr_values="urn:idp:acr:mfa"),
               seeded.user_email, seeded.password)
    audit.check(tab, "enrol-choose-fr")
    # The skip link is the first Tab stop and leads past the header to the page's content.
    tab.evaluate("() => document.activeElement && document.activeElement.blur()")
    tab.keyboard.press("Tab")
    assert tab.evaluate("document.activeElement.className") == "skip-link"
    tab.keyboard.press("Enter")
    assert tab.evaluate("document.activeElement.id") == "content"
    with tab.expect_navigation():
        tab.locator("form[action$='/factor/totp'] button").click()
    audit.check(tab, "totp-enrol-at-login-fr")
    secret = tab.locator(".totp-key code").first.inner_text().replace(" ", "")
    tab.fill("#code", pyotp.TOTP(secret).now())
    submit(tab, "#code")
    audit.check(tab, "recovery-codes-at-login-fr")
    with tab.expect_navigation():
        tab.click("button.primary")  # "I saved them": back to the application, signed in

    tab.goto(f"{base}/account/security")
    with tab.expect_navigation():
        tab.click("button[data-add=webauthn]")
    audit.check(tab, "webauthn-enrol-fr")
    tab.goto(f"{base}/account/security/recovery-codes")
    audit.check(tab, "account-confirm-new-recovery-codes-fr")
    with tab.expect_navigation():
        tab.locator("form[action$='/recovery-codes'] button[type=submit]").click()
    audit.check(tab, "account-recovery-codes-fr")

    # An admin issues a recovery QR code; a new browser's sign-in offers it among the recovery methods.
    admin = new_tab("fr-FR")
    sign_in_at(admin, f"{base}/admin/users?q={seeded.user_email}", seeded.admin_email, seeded.password)
    with admin.expect_navigation():
        admin.locator("table.users a").first.click()
    admin.goto(f"{admin.url}/recovery-qr")
    with admin.expect_navigation():
        admin.locator("form[action$='/recovery-qr'] [type=submit]").click()
    audit.check(admin, "admin-recovery-qr-issued-fr")
    other = new_tab("fr-FR")
    sign_in_at(other, rp_factory(seeded.third_party).authorization_url(), seeded.user_email, seeded.password)
    other.click("details summary")
    with other.expect_navigation():
        other.locator("details form[action$='/factor/qr_recovery'] button").click()
    audit.check(other, "qr-recovery-challenge-fr")
    other.fill("#code", "AAAAA-BBBBB-CCCCC-DDDDD-EEEEE")
    with other.expect_navigation():
        other.locator("#code").press("Enter")
    audit.check(other, "qr-recovery-challenge-wrong-fr")
    assert_error_linked(other, "qr-recovery-challenge-wrong-fr", "#code")

    # A form posted without its CSRF token: the error page says what to do.
    tab.goto(f"{base}/password/forgot")
    tab.evaluate("() => document.querySelector('input[name=csrf_token]').remove()")
    tab.fill("#username", seeded.user_email)
    submit(tab, "#username")
    audit.check(tab, "csrf-refused-fr")
    audit.assert_axe_clean()
