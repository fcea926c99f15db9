"""A wrong code's page, and the password page every login begins with, are rendered from a
stencil (idp.login.stencil): the same bytes as the template's own rendering, in English and in
French, with a client name that escaping changes, from the stencil's first use (when it is made)
and from a kept one."""
from __future__ import annotations

import re

import pytest

from fixtures.oidc import FormBrowser, seed, start_server
from fixtures.totp import enrol_totp_during_login

FRENCH = "fr-FR,fr;q=0.9"
CSRF = re.compile(r'name="csrf_token" value="[^"]+"')


def _steady(headers) -> dict:
    """A response's headers but those that differ from one response to the next."""
    return {name: value for name, value in headers.items()
            if name.lower() not in ("date", "x-request-id", "set-cookie", "content-length", "x-ratelimit-remaining",
                                    "x-ratelimit-reset", "retry-after")}


@pytest.fixture
def server(migrated_database_url):
    # Enough wrong codes for every page below without a lockout (the user's counter).
    server = start_server(migrated_database_url, {"ratelimit.factor_failures_before_lockout": 100,
                                                  "ratelimit.factor_ip_failures_before_lockout": 100})
    yield server
    server.stop()


def _rename_client(server, client_id: str, name: str) -> None:
    from idp.db import db
    from idp.models import Client
    from sqlalchemy import update

    with server.context():  # (before any login reads it: the client's cached copy is made then)
        db.session.execute(update(Client).where(Client.client_id == client_id).values(name=name))
        db.session.commit()


def _step_pages(server, seeded, client: dict, language: str | None, monkeypatch) -> list:
    """The code page and a wrong code's page, four times at one login: rendered from the template
    (stencils off), then with the stencils on: seen (rendered), made, kept."""
    from idp.login import stencil
    from fixtures.oidc import RelyingParty

    browser = FormBrowser(server.url)
    if language:
        browser.http.headers["Accept-Language"] = language
    rp = RelyingParty(server.url, client)
    browser.get(rp.authorization_url())
    page = browser.login(seeded.user_email, seeded.password)
    rounds = []
    for stencils in (False, True, True, True):
        with monkeypatch.context() as patch:
            if not stencils:
                patch.setattr(stencil, "render", lambda *args: None)
            elif not rounds[-1:] or rounds[-1][2] is False:
                stencil.clear()
            shown = browser.get(page.url)
            page = browser.submit(shown.form_with("code"), {"code": "000000"})
            rounds.append((shown, page, stencils))
    return rounds


@pytest.mark.parametrize("language", [None, FRENCH])
def test_the_code_pages_are_the_templates_pages(server, monkeypatch, language):
    from idp.login import stencil
    from fixtures.oidc import RelyingParty

    seeded = seed(server)
    enrol_totp_during_login(FormBrowser(server.url), RelyingParty(server.url, seeded.first_party), seeded)
    _rename_client(server, seeded.third_party["client_id"], 'Third <"Tools"> & Co\'s')
    for client in (seeded.first_party, seeded.third_party):
        (shown, wrong, _), *stenciled = _step_pages(server, seeded, client, language, monkeypatch)
        assert shown.status == 200 and wrong.status == 401
        assert sum(1 for page in stencil._stencils.values() if page) == 2, "the page's and the error's"
        for again, again_wrong, _ in stenciled:  # the same pages but for the CSRF token (signed with its time)
            assert again.status == 200 and again_wrong.status == 401
            assert CSRF.sub("", again.text) == CSRF.sub("", shown.text)
            assert CSRF.sub("", again_wrong.text) == CSRF.sub("", wrong.text)
            for made, rendered in ((again, shown), (again_wrong, wrong)):  # (the same headers: Vary, CSP...)
                assert sorted(made.headers) == sorted(rendered.headers)
                assert _steady(made.headers) == _steady(rendered.headers)
            assert "Zq9" not in again.text + again_wrong.text
            # The token filled in is this browser's own (a code posted with it is checked: 401, not 400).
            assert CSRF.search(again_wrong.text).group(0) != 'name="csrf_token" value="Zq9stencilcsrftokenMark"'
        if client is seeded.third_party:
            assert "Third &lt;&#34;Tools&#34;&gt; &amp; Co&#39;s" in again_wrong.text
        if language:
            assert 'lang="fr' in again_wrong.text and "Ce code est incorrect" in again_wrong.text


@pytest.mark.parametrize("language", [None, FRENCH])
def test_the_password_page_is_the_templates_page(server, monkeypatch, language):
    from idp.login import stencil
    from fixtures.oidc import RelyingParty

    seeded = seed(server)
    _rename_client(server, seeded.third_party["client_id"], 'Third <"Tools"> & Co\'s')
    for client in (seeded.first_party, seeded.third_party):
        browser = FormBrowser(server.url)
        if language:
            browser.http.headers["Accept-Language"] = language
        first = browser.get(RelyingParty(server.url, client).authorization_url())
        pages = []
        for stencils in (False, True, True, True):  # rendered (stencils off), then seen, made, kept
            with monkeypatch.context() as patch:
                if not stencils:
                    patch.setattr(stencil, "render", lambda *args: None)
                elif len(pages) == 1:
                    stencil.clear()
                pages.append(browser.get(first.url))
        rendered, *stenciled = pages
        assert rendered.status == 200 and 'autocomplete="current-password"' in rendered.text
        assert any(stencil._stencils.values()), "a stencil was made"
        for page in stenciled:
            assert page.status == 200 and CSRF.sub("", page.text) == CSRF.sub("", rendered.text)
            assert sorted(page.headers) == sorted(rendered.headers)
            assert _steady(page.headers) == _steady(rendered.headers)
            assert "Zq9" not in page.text
        if client is seeded.third_party:
            assert "Third &lt;&#34;Tools&#34;&gt; &amp; Co&#39;s" in pages[-1].text
        # The form of the kept stencil's page signs in (its CSRF token is this browser's).
        browser.login(seeded.user_email, seeded.password)
        assert browser.page.status < 400 and 'autocomplete="current-password"' not in browser.page.text


def test_a_password_page_that_shows_an_address_is_rendered_each_time(server):
    """A login_hint (and a wrong password's page) shows the address: never from a stencil."""
    from idp.login import stencil
    from fixtures.oidc import RelyingParty

    seeded = seed(server)
    stencil.clear()
    for _ in range(3):
        browser = FormBrowser(server.url)
        page = browser.get(RelyingParty(server.url, seeded.first_party).authorization_url(
            login_hint="someone@example.org"))
        assert 'value="someone@example.org"' in page.text
    page = browser.login(seeded.user_email, "not the password")
    assert page.status == 401 and f'value="{seeded.user_email}"' in page.text
    assert not any(stencil._stencils.values())
