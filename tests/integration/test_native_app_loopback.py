"""RFC 8252 7.3: a native app's loopback redirect URI matches on any port.

The app registers `http://127.0.0.1/native/callback` (or `http://[::1]/...`) and, at each login,
listens on whatever port the operating system gives it: the provider must accept that port,
and only that part may differ. `localhost` (a name) and every other host match exactly.
"""
from __future__ import annotations

import requests

from fixtures.oidc import FormBrowser, RelyingParty, callback_base, password_login


def _native_client(live_server, *registered: str, first_party: bool = False) -> str:
    from idp.db import db
    from idp.models import Client
    from idp.security.tokens import random_token

    client_id = f"native-{random_token(6)}"
    with live_server.context():
        db.session.add(Client(client_id=client_id, secret_hash=None, name="Native", redirect_uris=list(registered),
                              post_logout_redirect_uris=[], grant_types=["authorization_code"], public=True,
                              first_party=first_party))
        db.session.commit()
    return client_id


def test_a_registered_loopback_ip_uri_matches_on_the_port_of_the_moment(seeded, live_server):
    port = int(callback_base().rsplit(":", 1)[1])
    client_id = _native_client(live_server, "http://127.0.0.1/native/callback")
    rp = RelyingParty(live_server.url, {"client_id": client_id, "client_secret": None,
                                        "redirect_uri": f"http://127.0.0.1:{port}/native/callback"})
    web = FormBrowser(live_server.url)
    params = password_login(web, rp, seeded.user_email, seeded.password)
    assert "code" in params and web.last_redirect.startswith(f"http://127.0.0.1:{port}/native/callback?")
    claims = rp.validate_id_token(rp.exchange(web.last_redirect)["id_token"])
    assert claims["amr"] == ["pwd"]


def test_only_the_port_of_a_loopback_ip_may_differ(seeded, live_server):
    client_id = _native_client(live_server, "http://127.0.0.1/native/callback", "http://localhost/native/callback",
                               "http://[::1]:8000/native/callback?app=1")
    accepted = ("http://127.0.0.1:53211/native/callback", "http://[::1]:1234/native/callback?app=1")
    refused = ("http://127.0.0.1:53211/native/callback/", "http://127.0.0.1:53211/native/other",
               "http://localhost:53211/native/callback", "https://127.0.0.1:53211/native/callback",
               "http://127.0.0.1:53211/native/callback?x=1", "http://[::1]:1234/native/callback",
               "http://user@127.0.0.1:53211/native/callback", "http://127.0.0.1:53211/native/call%0Aback")
    for redirect_uri, expected in [(uri, True) for uri in accepted] + [(uri, False) for uri in refused]:
        answer = requests.get(f"{live_server.url}/authorize", allow_redirects=False, timeout=10, params={
            "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": "openid",
            "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "code_challenge_method": "S256"})
        if expected:
            assert answer.status_code in (302, 303), (redirect_uri, answer.status_code)
        else:
            assert answer.status_code == 400 and "Location" not in answer.headers, redirect_uri


def _silent_authorize(web: FormBrowser, rp: RelyingParty, **params):
    """A second authorization request in the browser that signed in and consented."""
    web.get(rp.authorization_url(**params))
    return web


def test_a_native_apps_remembered_consent_lets_no_code_through_silently(seeded, live_server):
    """RFC 8252 8.6: any program on the device can listen on a loopback port (or claim a private-use
    scheme) and send a native app's client_id. So a remembered consent is not enough: the user
    sees the consent page at every login of it, and prompt=none gets consent_required."""
    port = int(callback_base().rsplit(":", 1)[1])
    client_id = _native_client(live_server, "http://127.0.0.1/native/callback")
    rp = RelyingParty(live_server.url, {"client_id": client_id, "client_secret": None,
                                        "redirect_uri": f"http://127.0.0.1:{port}/native/callback"})
    web = FormBrowser(live_server.url)
    assert "code" in password_login(web, rp, seeded.user_email, seeded.password)  # consented once

    _silent_authorize(web, rp)
    assert web.last_redirect is None and web.page.status == 200
    assert web.page.form_with("action") and "data-signed-in-as" in web.page.text  # the consent page, again
    web.consent("allow")
    assert "code" in web.callback_params()

    _silent_authorize(web, rp, prompt="none")
    assert web.callback_params()["error"] == "consent_required"


def _signed_in_to_a_first_party_native_app(seeded, live_server) -> tuple[FormBrowser, RelyingParty]:
    """A browser that signed in with the password to a first-party public client at a loopback
    redirect URI (no consent page after a typed password), and that client."""
    port = int(callback_base().rsplit(":", 1)[1])
    client_id = _native_client(live_server, "http://127.0.0.1/native/callback", first_party=True)
    rp = RelyingParty(live_server.url, {"client_id": client_id, "client_secret": None,
                                        "redirect_uri": f"http://127.0.0.1:{port}/native/callback"})
    web = FormBrowser(live_server.url)
    assert "code" in password_login(web, rp, seeded.user_email, seeded.password, consent=False)
    return web, rp


def test_a_first_party_native_app_is_not_answered_by_the_session_unseen(seeded, live_server):
    """RFC 8252 8.6 for the organization's own native app, which never asks for consent: any
    program on the device can start a login with its client_id and listen on a loopback port, so
    a browser's session does not answer it without a page (the consent page: the user sees which
    application they are signing in to), and prompt=none gets consent_required. A login in which
    the user types their password is that interaction already: no consent page after it."""
    web, rp = _signed_in_to_a_first_party_native_app(seeded, live_server)

    _silent_authorize(web, rp)
    assert web.last_redirect is None and web.page.form_with("action"), "the session answers it only through a page"
    web.consent("allow")
    claims = rp.validate_id_token(rp.exchange(web.last_redirect)["id_token"])
    assert claims["amr"] == ["pwd"]

    _silent_authorize(web, rp, prompt="none")
    assert web.callback_params()["error"] == "consent_required"


def test_a_first_party_native_apps_page_is_not_remembered_as_a_consent(seeded, live_server):
    """The page a session-answered login of the organization's own native app shows (RFC 8252
    8.6's interaction) is no consent to remember: a first-party client never asks, and nothing
    reads one for it. Remembered, it listed the app under "Applications with access" as allowed
    on that day, long after its tokens ended (the list's rule: a first-party application is
    there while it holds a live token), and logged a consent.granted for an application that
    needs none."""
    from sqlalchemy import func, select

    from idp.db import db
    from idp.models import AuditEvent, ConsentGrant

    web, rp = _signed_in_to_a_first_party_native_app(seeded, live_server)
    _silent_authorize(web, rp)
    web.consent("allow")
    assert "code" in web.callback_params()
    with live_server.context():
        assert db.session.scalar(select(func.count()).select_from(ConsentGrant)) == 0
        assert db.session.scalar(select(func.count()).select_from(AuditEvent)
                                 .where(AuditEvent.event == "consent.granted")) == 0
    _silent_authorize(web, rp)
    assert web.last_redirect is None and web.page.form_with("action"), "asked again at the next such login"


def test_a_first_party_client_at_an_https_uri_is_answered_by_the_session(seeded, live_server):
    """The organization's own public client at its own https origin: the session answers it
    with no page, prompt=none included, as before."""
    client_id = _native_client(live_server, "https://app.example/callback", first_party=True)
    rp = RelyingParty(live_server.url, {"client_id": client_id, "client_secret": None,
                                        "redirect_uri": "https://app.example/callback"})
    web = FormBrowser(live_server.url)
    assert "code" in password_login(web, rp, seeded.user_email, seeded.password, consent=False)
    _silent_authorize(web, rp, prompt="none")
    assert "code" in web.callback_params()


def test_a_public_client_at_an_https_uri_keeps_its_remembered_consent(seeded, live_server):
    """An https redirect URI is the client's own origin: only it receives the code, so the
    remembered consent answers (the same rule as for a confidential client)."""
    client_id = _native_client(live_server, "https://app.example/callback")
    rp = RelyingParty(live_server.url, {"client_id": client_id, "client_secret": None,
                                        "redirect_uri": "https://app.example/callback"})
    web = FormBrowser(live_server.url)
    assert "code" in password_login(web, rp, seeded.user_email, seeded.password)

    _silent_authorize(web, rp, prompt="none")
    assert "code" in web.callback_params() and web.last_redirect.startswith("https://app.example/callback?")
