"""Every page a person meets, fetched by a French browser: no English left on it.

One walk with `Accept-Language: fr` through the login (password, its errors, the forced enrolment,
the recovery codes shown once, consent, the second factor and a recovery code, with their errors),
the forgotten password (the request, the mailed link, the new password, the used link), logout, a
device's sign-in, the account's pages (the enrolment of each method, the password change, the
confirmations), the admin pages (their forms' validation messages included) and the error pages.

Each page fails on the English it still shows, read from its text and from the attributes a
person reads or hears (title, aria-label, placeholder, alt):

- a catalogue message's English (a message the catalogue translates, shown untranslated: a
  string translated at import time, in another locale, or formatted before translation);
- an English word no catalogue message explains: a string never marked for translation (a
  template's text, a flash message, a form's validation message, an exception's text).

Not read: what is the user's or the application's (e-mail addresses, names, browsers' user
agents) and the audit log's event names and details (identifiers, docs/translations.md); the
audit log's events are read in words, each event's label.
"""
from __future__ import annotations

import html
import re
import time
from html.parser import HTMLParser
from pathlib import Path

import pyotp
from babel.messages.pofile import read_po

from fixtures.device import allow_device_grant, ask_for_codes
from fixtures.oidc import FormBrowser, Page, callback_base, set_client
from fixtures.totp import MFA

PO = Path(__file__).resolve().parents[2] / "idp" / "translations" / "fr" / "LC_MESSAGES" / "messages.po"
FRENCH = "fr-FR,fr;q=0.9"

# Words that are English and not French; a French page has none of them (a user agent, an e-mail
# address and the like are removed first: see `readable`).
ENGLISH_WORDS = re.compile(
    r"\b(the|your|you|this|these|with|must|please|field|required|invalid|was|were|has|have|been|not|and|"
    r"should|cannot|enter|again|sign|signed|password|account|method|is|are|of|to|for|in|will|here|only|"
    r"when|what|which|where|from|by|or|it|its|value|number|between|characters|longer|valid|choose|"
    r"expired|wrong|error|try|back|home|request|too|many|wait)\b", re.IGNORECASE)
NOT_TEXT = re.compile(r"\S+@\S+|python-requests/\S+|\b(Third|First|Acme|Alice|Admin)\b|https?://\S+")


class _Readable(HTMLParser):
    """A page's text as a person meets it: its text nodes and the attributes read aloud or shown."""

    SPOKEN = ("title", "aria-label", "placeholder", "alt")
    # <option>: the language form names each language in itself (and the audit filter's
    # suggestions are event names, their label attribute read below).
    UNREAD_TAGS = ("script", "style", "option")
    # The audit log's event names and details: identifiers, shown as they are stored.
    UNREAD_CLASSES = {"event-name", "details"}
    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipped = 0
        self._open: list[tuple[str, bool]] = []  # the open elements, and whether each hides its text

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        unread = tag in self.UNREAD_TAGS or bool(set((values.get("class") or "").split()) & self.UNREAD_CLASSES)
        if tag not in self.VOID:
            self._open.append((tag, unread))
            self._skipped += unread
        self.parts += [value for name, value in attrs if name in (*self.SPOKEN, "label") and value]

    def handle_endtag(self, tag):
        while self._open:  # (an element left open closes with its parent)
            name, unread = self._open.pop()
            self._skipped -= unread
            if name == tag:
                break

    def handle_data(self, data):
        if not self._skipped and data.strip():
            self.parts.append(data.strip())


def readable(page: Page) -> str:
    parser = _Readable()
    parser.feed(page.text)
    return NOT_TEXT.sub(" ", "\n".join(parser.parts))


def english_of_the_catalogue() -> set[str]:
    """The pieces (between placeholders) of every message whose French differs from its English,
    of two words or more."""
    with PO.open("rb") as handle:
        catalogue = read_po(handle, locale="fr")
    pieces = set()
    for message in catalogue:
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        for english in ids:
            for piece in re.split(r"%\(\w+\)[sd]|\{\w+\}", english):
                piece = piece.strip(" .:,;–-()\"'")
                if len(piece.split()) >= 2 and not any(piece in french for french in strings):
                    pieces.add(piece)
    return pieces


class FrenchWalk:
    """Checks each page as the walk meets it; reports every page's leftovers together."""

    def __init__(self) -> None:
        self.english = english_of_the_catalogue()
        self.found: dict[str, list[str]] = {}
        self.pages = 0

    def check(self, name: str, page: Page) -> Page:
        assert page.text, f"{name}: no page ({page.status} {page.url})"
        assert re.search(r'<html lang="fr"', page.text), f"{name}: not in French ({page.url})"
        text = readable(page)
        leftovers = sorted({piece for piece in self.english if piece in text})
        leftovers += sorted({word.group(0) for word in ENGLISH_WORDS.finditer(text)})
        if leftovers:
            self.found[f"{name} ({page.status} {page.url})"] = leftovers
        self.pages += 1
        return page

    def browser(self, live_server) -> FormBrowser:
        web = FormBrowser(live_server.url)
        web.http.headers["Accept-Language"] = FRENCH
        return web


def mailed_reset_link(live_server, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        notifier = live_server.app.extensions.get("idp.notifier")
        links = [found.group(0) for message in (notifier.sent if notifier is not None else ())
                 if (found := re.search(r"http://\S+/password/reset/\S+", message.body))]
        if links:
            return links[-1]
        time.sleep(0.05)
    raise AssertionError("no reset link was mailed")


def test_no_english_is_left_on_the_pages_of_a_french_browser(live_server, seeded, rp_factory):
    walk = FrenchWalk()
    third = rp_factory(seeded.third_party)

    # A login that must set up a second factor, with its mistakes on the way.
    web = walk.browser(live_server)
    walk.check("login", web.get(third.authorization_url(acr_values=MFA)))
    walk.check("login-wrong-password", web.login(seeded.user_email, "not the password"))
    walk.check("login-empty", web.submit(web.page.form_with("password"), {"username": "", "password": ""}))
    page = walk.check("enrol", web.login(seeded.user_email, seeded.password))
    choose = [form for form in page.forms() if form["action"].endswith("/factor/totp")]
    if choose:
        page = walk.check("enrol-totp", web.submit(choose[0]))
    secret = page.find(r"<code>([A-Z2-7 ]+)</code>").replace(" ", "")
    walk.check("enrol-totp-wrong", web.submit(page.form_with("code"), {"code": "00000"}))
    walk.check("enrol-totp-empty", web.submit(web.page.form_with("code"), {"code": ""}))
    page = walk.check("recovery-codes", web.submit(web.page.form_with("code"), {"code": pyotp.TOTP(secret).now()}))
    codes = html.unescape(page.find(r"<pre class=\"codes\" data-recovery-codes>([^<]+)</pre>")).split()
    walk.check("consent", web.submit(page.forms()[0]))
    web.consent("allow")
    assert web.last_redirect

    # Another browser: the second factor, a wrong code, a recovery code instead. The client asks
    # for front-channel logout: that browser's sign-out page frames it (idp.oidc.frontchannel).
    set_client(live_server, seeded.third_party, frontchannel_logout_uri=f"{callback_base()}/third/frontchannel-logout")
    other = walk.browser(live_server)
    other.get(third.authorization_url(prompt="login"))
    page = walk.check("totp-challenge", other.login(seeded.user_email, seeded.password))
    walk.check("totp-challenge-wrong", other.submit(page.form_with("code"), {"code": "00000"}))
    choose = [form for form in other.page.forms() if form["action"].endswith("/factor/recovery_codes")]
    page = walk.check("recovery-code-challenge", other.submit(choose[0]))
    walk.check("recovery-code-wrong", other.submit(page.form_with("code"), {"code": "aaaa-bbbb"}))
    walk.check("recovery-code-used", other.submit(other.page.form_with("code"), {"code": codes[0]}))
    other.past_recovery_notice()
    assert other.last_redirect

    # The account's pages: each "add a method", the confirmations, the password change.
    account = walk.check("account", web.get("/account/security"))
    for form in account.forms():
        if "/account/security/add" in form["action"]:
            walk.check("account-add-" + form["action"].rsplit("/", 1)[-1], web.submit(form))
    for href in sorted(set(re.findall(r'href="(/account/[^"#?]+)"', account.text))):
        walk.check("account-link " + href, web.get(href))
    page = web.get("/account/password")
    walk.check("account-password-wrong", web.submit(page.form_with("confirm"), {
        "current": "not my password", "password": "a brand new passphrase", "confirm": "a brand new passphrase"}))
    walk.check("account-password-short", web.submit(web.page.form_with("confirm"), {
        "current": seeded.password, "password": "short", "confirm": "short"}))

    # A device's sign-in from the signed-in browser: a wrong code, the confirmation, approved, denied.
    allow_device_grant(live_server, seeded.third_party)
    page = walk.check("device", web.get("/device"))
    walk.check("device-wrong-code", web.submit(page.form_with("user_code"), {"user_code": "BCDF-GHJK"}))
    page = walk.check("device-confirm", web.submit(web.page.form_with("user_code"), {
        "user_code": ask_for_codes(live_server, seeded.third_party).json()["user_code"]}))
    walk.check("device-approved", web.submit(page.form_with("action"), button=("action", "allow")))
    page = web.get(ask_for_codes(live_server, seeded.third_party).json()["verification_uri_complete"])
    page = web.submit(page.form_with("user_code"))
    walk.check("device-denied", web.submit(page.form_with("action"), button=("action", "deny")))

    walk.check("logout", web.get("/logout"))
    walk.check("logged-out", web.submit(web.page.form_with("csrf_token")))
    other.get("/logout")
    page = walk.check("logged-out-frontchannel", other.submit(other.page.form_with("csrf_token")))
    assert 'id="frontchannel-logout"' in page.text

    # The forgotten password, begun from a login.
    reset = walk.browser(live_server)
    reset.get(third.authorization_url())
    page = walk.check("forgot", reset.get(html.unescape(reset.page.find(r'<p class="forgot"><a href="([^"]+)"'))))
    walk.check("forgot-empty", reset.submit(page.form_with("username"), {"username": ""}))
    walk.check("forgot-sent", reset.submit(reset.page.form_with("username"), {"username": seeded.user_email}))
    link = mailed_reset_link(live_server)
    page = walk.check("reset-choose", reset.get(link))
    walk.check("reset-choose-short", reset.submit(page.form_with("confirm"), {"password": "short", "confirm": "short"}))
    walk.check("reset-choose-differ", reset.submit(reset.page.form_with("confirm"), {
        "password": "a brand new passphrase", "confirm": "another passphrase"}))
    walk.check("reset-changed", reset.submit(reset.page.form_with("confirm"), {
        "password": "a brand new passphrase", "confirm": "a brand new passphrase"}))
    walk.check("reset-dead-link", reset.get(link))

    # The admin pages, and their forms' validation messages (WTForms' own among them).
    admin = walk.browser(live_server)
    admin.get("/account/security")
    admin.login(seeded.admin_email, seeded.password)
    users = walk.check("admin-users", admin.get("/admin/users"))
    # (Its "Download CSV" is a file, not a page: its French labels, tests/unit/admin/test_admin_export.py.)
    for href in sorted(set(re.findall(r'href="(/admin/[^"#?]+)"', users.text)) - {"/admin/users.csv"}):
        page = walk.check("admin " + href, admin.get(href))
        for user_href in sorted(set(re.findall(r'href="(/admin/users/\d+/[^"#?]+)"', page.text))):
            walk.check("admin " + user_href, admin.get(user_href))
    page = admin.get("/admin/security")
    grace = [form for form in page.forms() if "grace_days" in form["fields"]]
    if grace:
        walk.check("admin-grace-out-of-range", admin.submit(grace[0], {"grace_days": "999", "grace_logins": "x"}))
    page = admin.get("/admin/users/new")
    walk.check("admin-new-user-bad", admin.submit(page.form_with("email"), {
        "email": "not an address", "name": "x" * 300, "password": "short", "confirm": "short"}))

    # Error pages.
    walk.check("404", web.get("/no-such-page"))
    walk.check("expired", web.get("/login/expired"))
    walk.check("unknown-client", web.get("/authorize?response_type=code&client_id=nobody&scope=openid"
                                         "&redirect_uri=http://127.0.0.1:1/cb"))
    response = web.http.post(f"{live_server.url}/password/forgot", data={"username": "x"})  # no CSRF token
    walk.check("csrf", Page(response.url, response.status_code, response.text))
    response = web.http.put(f"{live_server.url}/login/expired")
    walk.check("405", Page(response.url, response.status_code, response.text))

    assert walk.pages >= 40
    assert not walk.found, "English on French pages:\n" + "\n".join(
        f"  {page}: {leftovers}" for page, leftovers in walk.found.items())

