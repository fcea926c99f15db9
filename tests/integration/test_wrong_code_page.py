"""A wrong code's page is rendered from a stencil (idp.login.stencil): the same bytes as the
template's own rendering, in English and in French, with a client name that escaping changes,
from the stencil's first use (when it is made) and from a kept one."""
from __future__ import annotations

import re

import pytest

from fixtures.oidc import FormBrowser, seed, start_server
from fixtures.totp import enrol_totp_during_login

FRENCH = "fr-FR,fr;q=0.9"
CSRF = re.compile(r'name="csrf_token" value="[^"]+"')


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


def _wrong_code_pages(server, seeded, client: dict, language: str | None, monkeypatch) -> list:
    """Three wrong codes at one login: the template rendered (stencils off), then the stencil made,
    then the stencil kept."""
    from idp.login import stencil
    from fixtures.oidc import RelyingParty

    browser = FormBrowser(server.url)
    if language:
        browser.http.headers["Accept-Language"] = language
    rp = RelyingParty(server.url, client)
    browser.get(rp.authorization_url())
    page = browser.login(seeded.user_email, seeded.password)
    pages = []
    with monkeypatch.context() as off:
        off.setattr(stencil, "render", lambda *args: None)
        page = browser.submit(page.form_with("code"), {"code": "000000"})
        pages.append(page)
    stencil.clear()
    for _ in range(2):
        page = browser.submit(page.form_with("code"), {"code": "000000"})
        pages.append(page)
    return pages


@pytest.mark.parametrize("language", [None, FRENCH])
def test_wrong_code_page_is_the_templates_page(server, monkeypatch, language):
    from idp.login import stencil

    seeded = seed(server)
    web = FormBrowser(server.url)
    from fixtures.oidc import RelyingParty

    enrol_totp_during_login(web, RelyingParty(server.url, seeded.first_party), seeded)
    _rename_client(server, seeded.third_party["client_id"], 'Third <"Tools"> & Co\'s')
    for client in (seeded.first_party, seeded.third_party):
        rendered, made, kept = _wrong_code_pages(server, seeded, client, language, monkeypatch)
        assert rendered.status == made.status == kept.status == 401
        assert any(page for page in stencil._stencils.values()), "the stencil was used"
        # The same page but for the CSRF token (signed anew at each request, with its time).
        assert CSRF.sub("", made.text) == CSRF.sub("", rendered.text)
        assert CSRF.sub("", kept.text) == CSRF.sub("", rendered.text)
        assert made.headers["Content-Security-Policy"] == rendered.headers["Content-Security-Policy"]
        assert "Zq9" not in kept.text
        if client is seeded.third_party:
            assert "Third &lt;&#34;Tools&#34;&gt; &amp; Co&#39;s" in kept.text
        if language:
            assert 'lang="fr' in kept.text and "Ce code est incorrect" in kept.text
        # The token filled in is this browser's: the next code is accepted with it.
        token = CSRF.search(kept.text).group(0)
        assert token != 'name="csrf_token" value="Zq9stencilcsrftokenMark"'

