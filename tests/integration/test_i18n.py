"""English and French: the browser's Accept-Language, OIDC ui_locales, the account page's language form,
and the one catalogue (idp/translations) kept complete and compiled.

The pages are fetched over HTTP from the live provider; the French checked here is the product's
vocabulary (the French original for the admin pages). The catalogue tests fail as soon as a wrapped
string has no French, a translation is fuzzy, or the committed .mo lags behind the .po: run
scripts/translations.sh, translate, commit the three files together.
"""
from __future__ import annotations

import html
import re
from pathlib import Path

import pyotp
import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from fixtures.oidc import FormBrowser, past_new_recovery_codes

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = ROOT / "idp" / "translations"
PO = CATALOGUE / "fr" / "LC_MESSAGES" / "messages.po"
MO = CATALOGUE / "fr" / "LC_MESSAGES" / "messages.mo"
MFA = "urn:idp:acr:mfa"
FRENCH = "fr-FR,fr;q=0.9,en;q=0.5"
ENGLISH = "en-US,en;q=0.9"


def browser(live_server, language: str) -> FormBrowser:
    web = FormBrowser(live_server.url)
    web.http.headers["Accept-Language"] = language
    return web


def text(page) -> str:
    """The page's text with entities decoded (Jinja escapes the apostrophes of the French)."""
    return html.unescape(page.text)


def sign_in_to_account(web: FormBrowser, email: str, password: str) -> None:
    """The provider's own pages: /account/security asks for a login, then comes back."""
    web.get("/account/security")
    web.login(email, password)
    assert web.page.url.endswith("/account/security"), web.page.url


# --------------------------------------------------------------------------- login pages

def test_login_page_follows_accept_language(seeded, live_server, rp_factory):
    rp = rp_factory(seeded.first_party)
    french = browser(live_server, FRENCH).get(rp.authorization_url())
    page = text(french)
    assert '<html lang="fr" dir="ltr">' in page
    for words in ("Se connecter", "Mot de passe", "Annuler"):
        assert words in page, words
    english = text(browser(live_server, ENGLISH).get(rp.authorization_url()))
    assert "Sign in" in english and "Password" in english and "Mot de passe" not in english


@pytest.mark.parametrize("accept_language, expected", [
    ("en-GB,fr;q=0.5", "en"),  # English first: a French the browser also accepts does not win
    ("en-US,fr;q=0.9,de;q=0.8", "en"),
    ("fr-CA,en;q=0.1", "fr"),  # a regional French first: French, not the exact "en" further down
    ("de-CH,fr-CH;q=0.9,en;q=0.2", "fr"),  # the first language we speak, skipping those we don't
    ("de,*;q=0.5", "en"),
])
def test_the_browsers_first_language_we_speak_wins(seeded, live_server, accept_language, expected):
    """Accept-Language is read in the browser's order of preference, each tag by its language
    (RFC 4647 lookup): not "an exact tag anywhere in the list first", which let a language the
    browser accepts last beat a regional variant of the one it asks for first."""
    page = browser(live_server, accept_language).get("/login/expired")
    assert f'lang="{expected}"' in page.text, accept_language


def test_wrong_password_message_in_french(seeded, live_server, rp_factory):
    web = browser(live_server, FRENCH)
    web.get(rp_factory(seeded.first_party).authorization_url())
    page = web.login(seeded.user_email, "not the password")
    assert page.status == 401 and "Adresse e-mail ou mot de passe incorrect." in text(page)


def test_ui_locales_wins_over_an_english_browser_for_the_whole_login(seeded, live_server, rp_factory):
    rp = rp_factory(seeded.third_party)
    web = browser(live_server, ENGLISH)
    page = text(web.get(rp.authorization_url(ui_locales="fr-CA en")))
    assert "Mot de passe" in page and "Password" not in page
    consent = text(web.login(seeded.user_email, seeded.password))
    assert "Third souhaite accéder à votre compte" in consent and "Autoriser" in consent
    web.consent("allow")
    assert web.callback_params()["code"]


def test_ui_locales_lasts_as_long_as_its_login(seeded, live_server, rp_factory):
    """An application's ui_locales is that login's language, not the browser's from then on: the
    account page after it, and the next login without ui_locales, follow Accept-Language again."""
    rp = rp_factory(seeded.first_party)
    web = browser(live_server, ENGLISH)
    assert 'lang="fr"' in web.get(rp.authorization_url(ui_locales="fr")).text
    web.login(seeded.user_email, seeded.password)
    assert web.callback_params()["code"]
    assert 'lang="en"' in web.get("/account/security").text
    page = web.get(rp.authorization_url(prompt="login"))
    assert 'lang="en"' in page.text and "Password" in text(page)


def test_ui_locales_speaks_over_the_language_form_for_its_login_only(seeded, live_server, rp_factory):
    rp = rp_factory(seeded.first_party)
    web = browser(live_server, ENGLISH)
    sign_in_to_account(web, seeded.user_email, seeded.password)
    web.submit(web.page.form_with("locale"), {"locale": "fr"})
    page = web.get(rp.authorization_url(ui_locales="en", prompt="login"))
    assert 'lang="en"' in page.text and "Password" in text(page)
    web.login(seeded.user_email, seeded.password)
    assert 'lang="fr"' in web.get("/account/security").text  # the form's choice stands


def test_ui_locales_naming_no_supported_language_keeps_the_browser_language(seeded, live_server, rp_factory):
    rp = rp_factory(seeded.first_party)
    page = text(browser(live_server, FRENCH).get(rp.authorization_url(ui_locales="de")))
    assert "Mot de passe" in page


def test_ui_locales_naming_no_supported_language_keeps_the_sessions_choice(seeded, live_server):
    """docs/translations.md: ui_locales, then the session's choice, then Accept-Language. (A page
    /authorize renders itself, whose own query holds the ui_locales: an unknown client's.)"""
    web = browser(live_server, ENGLISH)
    sign_in_to_account(web, seeded.user_email, seeded.password)
    web.submit(web.page.form_with("locale"), {"locale": "fr"})
    page = web.get("/authorize?response_type=code&client_id=nobody&scope=openid&ui_locales=de")
    assert page.status == 400 and 'lang="fr"' in page.text


def test_consent_page_in_french(seeded, live_server, rp_factory):
    web = browser(live_server, FRENCH)
    web.get(rp_factory(seeded.third_party).authorization_url(scope="openid email profile offline_access"))
    page = text(web.login(seeded.user_email, seeded.password))
    for words in ("Autoriser l'accès ?", "Third souhaite accéder à votre compte", "Savoir qui vous êtes",
                  "Voir votre adresse e-mail", "Voir votre nom et votre organisation", "Autoriser", "Refuser",
                  "Connexion à Third"):
        assert words in page, words


def test_totp_enrolment_and_challenge_in_french(seeded, live_server, rp_factory):
    rp = rp_factory(seeded.first_party)
    web = browser(live_server, FRENCH)
    web.get(rp.authorization_url(acr_values=MFA))
    page = web.login(seeded.user_email, seeded.password)
    choose = [f for f in page.forms() if f["action"].endswith("/factor/totp")]
    if choose:
        page = web.submit(choose[0])
    enrol = text(page)
    for words in ("Scannez ce code avec votre application d'authentification, ou saisissez la clé manuellement.",
                  "Code affiché par l'application", "Nommer cette application d'authentification (facultatif)",
                  "SHA1, 6 chiffres, 30 s"):  # one sentence per language, not pieces
        assert words in enrol, words
    # The key is read as itself, named by the visible "Key:" (no aria-label on a <code>: axe's
    # aria-prohibited-attr, and a screen reader could read the label instead of the key).
    assert re.search(r"Clé : <code>[A-Z2-7 ]+</code>", enrol)
    secret = page.find(r'<code>([A-Z2-7 ]+)</code>').replace(" ", "")
    wrong = web.submit(page.form_with("code"), {"code": "000000" if pyotp.TOTP(secret).now() != "000000" else "111111"})
    assert "Ce code est incorrect. Réessayez." in text(wrong)
    codes = web.submit(wrong.form_with("code"), {"code": pyotp.TOTP(secret).now()})
    assert "Sauvegardez vos codes de récupération" in text(codes)
    web.submit(codes.forms()[0])
    assert web.last_redirect

    again = browser(live_server, FRENCH)
    again.get(rp.authorization_url())
    challenge = text(again.login(seeded.user_email, seeded.password))
    for words in ("Saisissez le code à 6 chiffres de votre application d'authentification",
                  "Je ne peux pas utiliser ma méthode habituelle", "Codes de récupération"):
        assert words in challenge, words


# --------------------------------------------------------------------------- account page

def test_account_security_page_and_language_form(seeded, live_server):
    web = browser(live_server, FRENCH)
    sign_in_to_account(web, seeded.user_email, seeded.password)
    page = text(web.page)
    for words in ("Sécurité", "Vos méthodes de connexion", "Ajouter une méthode", "Application d'authentification",
                  "L'authentification à 2 facteurs est désactivée.", "Langue", "Se déconnecter"):
        assert words in page, words
    assert re.search(r'<option value="fr" lang="fr" selected>', web.page.text)

    # The user's choice beats the browser's language, on every page, until they change it again.
    web.http.headers["Accept-Language"] = FRENCH
    web.submit(web.page.form_with("locale"), {"locale": "en"})
    english = text(web.get("/account/security"))
    assert "Your sign-in methods" in english and "Vos méthodes de connexion" not in english
    assert re.search(r'<option value="en" lang="en" selected>', web.page.text)
    web.submit(web.page.form_with("locale"), {"locale": "fr"})
    assert "Vos méthodes de connexion" in text(web.get("/account/security"))
    assert stored_locale(live_server, seeded.user_email) == "fr", "e-mails to the user follow their choice"


def stored_locale(live_server, email: str) -> str | None:
    from sqlalchemy import select

    from idp.db import db
    from idp.models import User

    with live_server.context():
        return db.session.scalar(select(User.locale).where(User.email == email))


def test_language_choice_outlives_signing_out(seeded, live_server):
    web = browser(live_server, ENGLISH)
    sign_in_to_account(web, seeded.user_email, seeded.password)
    web.submit(web.page.form_with("locale"), {"locale": "fr"})
    page = web.submit(web.get("/logout").form_with("csrf_token"))
    assert "Vous êtes déconnecté" in text(page)


def _post_language(web, live_server, referrer: str, headers: dict | None = None) -> str | None:
    form = web.get("/account/security").form_with("locale")
    response = web.http.post(form["action"], data=dict(form["fields"], locale="fr"), allow_redirects=False,
                             headers={"Referer": referrer, **(headers or {})})
    assert response.status_code == 302
    return response.headers["Location"]


def test_language_form_goes_back_to_its_page_behind_a_proxy_that_drops_the_port(seeded, live_server):
    """nginx's `proxy_set_header Host $host` (docs/operations.md) sends the host without the issuer's
    port: the form still returns to the page it was on, as a path, since that page is the issuer's."""
    web = browser(live_server, ENGLISH)
    sign_in_to_account(web, seeded.user_email, seeded.password)
    page = f"{live_server.url}/account/security?tab=1"
    assert _post_language(web, live_server, page, {"Host": "localhost"}) == "/account/security?tab=1"
    assert _post_language(web, live_server, page) == "/account/security?tab=1"


def test_language_form_never_leaves_the_provider(seeded, live_server):
    web = browser(live_server, ENGLISH)
    sign_in_to_account(web, seeded.user_email, seeded.password)
    for referrer in ("https://evil.example/account/security", f"{live_server.url}//evil.example/x",
                     f"{live_server.url}/\\evil.example/x", "", "not a url", "http://[::1"):
        assert _post_language(web, live_server, referrer) == "/", referrer


def test_language_form_ignores_an_unknown_language(seeded, live_server):
    web = browser(live_server, FRENCH)
    sign_in_to_account(web, seeded.user_email, seeded.password)
    web.submit(web.page.form_with("locale"), {"locale": "xx"})
    assert "Vos méthodes de connexion" in text(web.get("/account/security"))


def test_error_pages_in_french(seeded, live_server):
    web = browser(live_server, FRENCH)
    page = web.get("/no-such-page")
    assert page.status == 404 and "Cette page n'existe pas." in text(page)


# --------------------------------------------------------------------------- admin pages

def test_admin_pages_use_the_french_originals_vocabulary(seeded, live_server):
    web = browser(live_server, FRENCH)
    sign_in_to_account(web, seeded.admin_email, seeded.password)
    security = text(web.get("/admin/security"))
    for words in ("Sécurité", "Utilisateurs", "Rendre obligatoire l'authentification à 2 facteurs pour tous"):
        assert words in security, words
    after = web.submit(web.page.form_with("on"))
    assert "Rendre optionnelle l'authentification à 2 facteurs pour tous" in text(after)
    assert "L'authentification à 2 facteurs est désormais obligatoire pour tous." in text(after)
    users = web.get("/admin/users")
    assert "Utilisateurs" in text(users)
    user_url = re.search(r'href="(/admin/users/\d+)"', users.text).group(1)
    assert "Activer l'authentification à 2 facteurs" in text(web.get(user_url))


# --------------------------------------------------------------------------- the catalogue

def _po():
    with PO.open("rb") as handle:
        return read_po(handle, locale="fr")


def _translated(message) -> bool:
    strings = message.string if isinstance(message.string, tuple) else (message.string,)
    return all(strings)


def test_french_catalogue_has_no_untranslated_or_fuzzy_entry():
    catalog = _po()
    assert not catalog.fuzzy, "the .po header is marked fuzzy: pybabel compile would skip the whole catalogue"
    untranslated = [m.id for m in catalog if m.id and not _translated(m)]
    fuzzy = [m.id for m in catalog if m.id and m.fuzzy]
    assert not untranslated, f"untranslated: {untranslated}"
    assert not fuzzy, f"fuzzy (check, then remove the flag): {fuzzy}"


PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]|\{(\w+)\}")


def test_french_keeps_every_placeholder():
    """A placeholder lost or invented in the French would drop a value or fail at render time."""
    for message in _po():
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        wanted = {m.group(1) or m.group(2) for text_ in ids for m in PLACEHOLDER.finditer(text_)}
        for translation in strings:
            found = {m.group(1) or m.group(2) for m in PLACEHOLDER.finditer(translation)}
            assert found <= wanted and (found == wanted or isinstance(message.id, tuple)), (message.id, translation)


# A placeholder that takes a number of things (ngettext's `num`, or one named as a count).
COUNT = re.compile(r"%\((num|count|total|remaining|days|hours|minutes|seconds)\)[sd]"
                   r"|\{(num|count|total|remaining|days|hours|seconds)\}|\{minutes\} minutes")


def test_every_count_shown_is_a_plural_message():
    """A sentence with a number of things in it is an ngettext message, whatever the number
    usually is: "Distribution of the 1 users", "These 1 recovery codes" (factors.recovery_codes.count
    may be 1), and the languages with more than two forms (Polish, Russian: 2 and 5 differ)."""
    single = sorted(message.id for message in _po()
                    if message.id and not message.pluralizable and COUNT.search(message.id))
    assert not single, f"use ngettext (and %(num)s) for: {single}"


def _key(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


def test_compiled_catalogue_matches_the_po():
    with MO.open("rb") as handle:
        compiled = read_mo(handle)
    expected = {_key(m.id): _key(m.string) for m in _po() if m.id}
    found = {_key(m.id): _key(m.string) for m in compiled if m.id}
    assert found == expected, "idp/translations/fr/LC_MESSAGES/messages.mo is stale: run scripts/translations.sh"


def test_every_string_of_the_source_is_in_the_catalogue():
    """Extract from idp/ and plugins/ exactly as scripts/translations.sh does: nothing is missing from the .po."""
    with (ROOT / "babel.cfg").open() as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    keywords = dict(DEFAULT_KEYWORDS, _l=None, lazy_gettext=None, plural_text=(1, 2))
    extracted = set()
    for _filename, _lineno, message, _comments, _context in extract_from_dir(
            str(ROOT), method_map, options_map, keywords=keywords):
        extracted.add(message if isinstance(message, str) else tuple(m for m in message if m))
    in_po = {m.id for m in _po() if m.id}
    missing = sorted(map(str, extracted - in_po))
    assert not missing, f"not in the catalogue (run scripts/translations.sh, then translate): {missing}"


@pytest.mark.parametrize("folder", ["idp/admin/translations", "plugins"])
def test_one_catalogue_only(folder):
    assert not list((ROOT / folder).rglob("*.po")), "translations live in idp/translations only"


def test_labels_the_provider_gave_a_method_are_shown_in_the_readers_language(seeded, live_server, idp):
    """`idp factor totp import` without --label and an admin's recovery QR code name their
    credentials themselves: stored in English (the command line reads them so), shown translated."""
    import json

    from click.testing import CliRunner

    from fixtures.cli import ok
    from idp.factors.registry import current_registry, factor_group
    from recovery_kit import enable_recovery

    enable_recovery(live_server)
    with live_server.context():
        imported = CliRunner().invoke(factor_group(), ["totp", "import", "--user", seeded.user_email, "--secret-stdin"],
                                      input="JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n")
        assert imported.exit_code == 0, imported.output
        issued = CliRunner().invoke(current_registry().get("qr_recovery").cli_command(),
                                    ["issue", "--user", seeded.user_email])
        assert issued.exit_code == 0, issued.output
    web = browser(live_server, FRENCH)
    web.get("/account/security")
    page = web.login(seeded.user_email, seeded.password)
    web.submit(page.form_with("code"), {"code": pyotp.TOTP("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP").now()})
    assert "Sauvegardez vos codes de récupération" in web.page.text  # owed since the import, in French too
    assert len(past_new_recovery_codes(web)) == 10
    page = text(web.get("/account/security"))
    assert 'value="Application d\'authentification importée"' in page and "Code QR de récupération" in page
    assert "Imported authenticator" not in page and "Recovery QR code" not in page
    # The recovery QR code's expiry, as every moment on the page: the reader's date format, in UTC
    # (template_i18n.utc), not an ISO string.
    assert re.search(r"expire le : \d{1,2} [a-zéû]+\.? \d{4}, \d\d:\d\d UTC<", page), page
    assert not re.search(r"\d{4}-\d\d-\d\dT", page)
    # "Rename" pressed on the name as shown: it stays the factor's own, translated for each reader.
    web.submit([f for f in web.page.forms() if f["action"].endswith("/rename")][0])
    assert 'value="Application d\'authentification importée"' in text(web.get("/account/security"))
    document = json.loads(ok(idp("user", "show", "--email", seeded.user_email, "--json",
                                 database_url=live_server.database_url)).stdout)
    assert [m["label"] for m in document["methods"] if m["factor"] == "totp"] == ["Imported authenticator"]


def test_a_password_reset_begun_from_a_login_speaks_its_ui_locales(seeded, live_server, rp_factory):
    """The reset's pages do not load the login: its language goes along in their URLs."""
    rp = rp_factory(seeded.third_party)
    web = browser(live_server, ENGLISH)
    page = web.get(rp.authorization_url(ui_locales="fr"))
    forgot = web.get(page.find(r'href="(/login/[^"]+/forgot-password)"'))
    assert 'lang="fr"' in forgot.text and "ui_locales=fr" in forgot.url
    sent = web.submit(forgot.form_with("username"), {"username": "nobody@acme.test"})
    assert 'lang="fr"' in sent.text and "/password/forgot/sent" in sent.url



def test_a_logout_posted_with_ui_locales_speaks_it(seeded, live_server, rp_factory):
    """RP-Initiated Logout 1.0 section 2: ui_locales is a parameter of the logout request, which
    a POST sends in its body (read from the body only, as its other parameters)."""
    from fixtures.oidc import id_token_from_another_browser, password_login

    rp = rp_factory(seeded.first_party)
    planted = id_token_from_another_browser(live_server, rp, seeded.admin_email, seeded.password)
    web = browser(live_server, ENGLISH)
    password_login(web, rp, seeded.user_email, seeded.password)
    confirm = web._follow(web.http.post(rp.metadata["end_session_endpoint"], allow_redirects=False,
                                        data={"id_token_hint": planted, "ui_locales": "fr"}))
    assert '<html lang="fr" dir="ltr">' in confirm.text and "Se déconnecter ?" in text(confirm)
    signed_out = web.submit(confirm.form_with("csrf_token"))
    assert "Vous êtes déconnecté" in text(signed_out)


def test_a_recovery_qr_codes_end_is_said_in_the_admins_language(seeded, live_server):
    """The issued code's "until" is the one human format of a moment (idp.template_i18n.utc), not
    an ISO stamp in a French sentence."""
    from recovery_kit import admin_browser, enable_recovery, issue_on_admin_page, user_id

    enable_recovery(live_server)
    admin = admin_browser(live_server, seeded)
    admin.http.headers["Accept-Language"] = FRENCH
    page = text(issue_on_admin_page(admin, user_id(live_server, seeded.user_email))["page"])
    assert re.search(r"jusqu'au \d{1,2} [a-zéû]{3,4}\.? \d{4}, \d\d:\d\d UTC", page), page
    assert not re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", page)


def test_removing_a_method_the_user_did_not_name_names_it_once(seeded, live_server, rp_factory):
    from fixtures.totp import at_totp_enrolment

    web = browser(live_server, FRENCH)
    page, secret = at_totp_enrolment(web, rp_factory(seeded.first_party), seeded)
    codes = web.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).now(), "label": ""})
    web.submit(codes.forms()[0])
    account = web.get("/account/security")
    href = html.unescape(account.find(r'href="(/account/security/credentials/\d+/confirm-removal)"'))
    confirm = text(web.get(href))
    # The method's label is a capitalised name: quoted after "la méthode", not dropped mid-sentence
    # ("Supprimer Application d'authentification ?").
    assert "<h1>Supprimer la méthode « Application d'authentification » ?</h1>" in confirm, confirm
