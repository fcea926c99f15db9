"""CSP form-action in a real browser: Chromium checks against it every redirect that follows a
form's POST, down to wherever the client's own callback sends its user. So the pages whose form
may end at a client (a login's steps, the logout confirmation, the form_post response page) have
none (idp/security/headers.py): the clients' callbacks run at http://127.0.0.1, the provider at
http://localhost, and an application's home elsewhere again."""
from __future__ import annotations

from urllib.parse import urlsplit

from fixtures.oidc import ONWARDS_HOME_ORIGIN, RelyingParty, callback_base, id_token_from_another_browser


def test_a_password_login_posts_its_way_to_the_client(seeded, page, rp_factory):
    rp = rp_factory(seeded.first_party)
    violations = []
    page.on("console", lambda message: violations.append(message.text) if "form-action" in message.text else None)
    page.goto(rp.authorization_url())
    page.fill("#username", seeded.user_email)
    page.fill("#password", seeded.password)
    page.click("button.primary")
    page.wait_for_url(f"{callback_base()}/**")
    assert "code=" in page.url and not violations


def test_the_logout_confirmation_posts_its_way_to_the_client(seeded, page, rp_factory, live_server):
    rp = rp_factory(seeded.first_party)
    someone_elses = id_token_from_another_browser(live_server, rp, seeded.admin_email, seeded.password)
    page.goto(rp.authorization_url())
    page.fill("#username", seeded.user_email)
    page.fill("#password", seeded.password)
    page.click("button.primary")
    page.wait_for_url(f"{callback_base()}/**")
    back = rp.client["post_logout_redirect_uri"]
    page.goto(f"{rp.metadata['end_session_endpoint']}?id_token_hint={someone_elses}"
              f"&post_logout_redirect_uri={back}&state=bye")
    page.click("button.primary")
    page.wait_for_url(f"{back}?state=bye")


def test_a_form_post_response_submits_itself_to_the_client(seeded, page, rp_factory):
    """response_mode=form_post: the page's script POSTs the code to the client as it loads."""
    rp = rp_factory(seeded.first_party)
    violations = []
    page.on("console", lambda message: violations.append(message.text) if "Content Security" in message.text else None)
    page.goto(rp.authorization_url(response_mode="form_post"))
    page.fill("#username", seeded.user_email)
    page.fill("#password", seeded.password)
    with page.expect_request(lambda request: request.url == rp.client["redirect_uri"]) as sent:
        page.click("button.primary")
    callback = sent.value
    assert callback.method == "POST" and not violations
    assert "code=" in callback.post_data and f"state={rp.state}" in callback.post_data
    page.wait_for_url(rp.client["redirect_uri"])


def test_a_logout_posted_from_the_clients_site_signs_the_browser_out(seeded, page, rp_factory):
    """RP-Initiated Logout by POST from the client's own page (another site: 127.0.0.1, the
    provider being localhost). Chromium sends no SameSite=Lax cookie with that POST: answered
    as a GET (a 303), which carries them, the session ends before the browser returns to the
    client. Answered by the POST itself, the session was not found: the cookie was dropped, but
    the session lived on, with the access tokens issued through it (and no client was told)."""
    from html import escape

    rp = rp_factory(seeded.first_party)
    page.goto(rp.authorization_url())
    page.fill("#username", seeded.user_email)
    page.fill("#password", seeded.password)
    page.click("button.primary")
    page.wait_for_url(f"{callback_base()}/**")
    tokens = rp.exchange(page.url)
    back = rp.client["post_logout_redirect_uri"]
    fields = {"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": back, "state": "bye"}
    clients_page = f"{callback_base()}/first/sign-out"
    page.route(clients_page, lambda route: route.fulfill(status=200, content_type="text/html", body=(
        f'<form method="post" action="{escape(rp.metadata["end_session_endpoint"])}">'
        + "".join(f'<input type="hidden" name="{name}" value="{escape(value)}">' for name, value in fields.items())
        + '<button type="submit">Sign out</button></form>')))
    page.goto(clients_page)
    page.click("button")
    page.wait_for_url(f"{back}?state=bye")
    assert rp.userinfo(tokens["access_token"]).status_code == 401        # withdrawn with the session
    page.goto(rp.authorization_url(prompt="none"))
    page.wait_for_url(f"{callback_base()}/**")
    assert "error=login_required" in page.url, page.url


def onwards_client(live_server) -> dict:
    """A first-party client whose callback and logout return send the browser on to the
    application's home, on another origin (an authentication proxy at auth.example sending its
    user to app.example): fixtures.oidc's callback server answers /onwards/ with a 303 there."""
    from idp.db import db
    from idp.models import Client
    from idp.security.tokens import random_token, sha256_hex

    client = {"client_id": f"onwards-{random_token(6)}", "client_secret": random_token(32),
              "redirect_uri": f"{callback_base()}/onwards/callback",
              "post_logout_redirect_uri": f"{callback_base()}/onwards/bye"}
    with live_server.context():
        db.session.add(Client(client_id=client["client_id"], secret_hash=sha256_hex(client["client_secret"]),
                              name="Onwards", redirect_uris=[client["redirect_uri"]],
                              post_logout_redirect_uris=[client["post_logout_redirect_uri"]],
                              grant_types=["authorization_code", "refresh_token"], first_party=True))
        db.session.commit()
    return client


def _home(client: dict) -> str:
    return f"{ONWARDS_HOME_ORIGIN}:{urlsplit(client['redirect_uri']).port}/home"


def _sign_in(page, url: str, seeded) -> None:
    page.goto(url)
    page.fill("#username", seeded.user_email)
    page.fill("#password", seeded.password)
    page.click("button.primary")


def test_a_login_reaches_wherever_the_clients_callback_sends_its_user(seeded, page, live_server):
    client = onwards_client(live_server)
    _sign_in(page, RelyingParty(live_server.url, client).authorization_url(), seeded)
    page.wait_for_url(_home(client))


def test_a_form_post_response_reaches_wherever_the_clients_callback_sends_its_user(seeded, page, live_server):
    client = onwards_client(live_server)
    _sign_in(page, RelyingParty(live_server.url, client).authorization_url(response_mode="form_post"), seeded)
    page.wait_for_url(_home(client))


def test_a_logout_reaches_wherever_the_clients_return_page_sends_its_user(seeded, page, live_server):
    client = onwards_client(live_server)
    rp = RelyingParty(live_server.url, client)
    someone_elses = id_token_from_another_browser(live_server, rp, seeded.admin_email, seeded.password)
    _sign_in(page, rp.authorization_url(), seeded)
    page.wait_for_url(_home(client))
    page.goto(f"{rp.metadata['end_session_endpoint']}?id_token_hint={someone_elses}"
              f"&post_logout_redirect_uri={client['post_logout_redirect_uri']}&state=bye")
    page.click("button.primary")
    page.wait_for_url(f"{_home(client)}")


def test_the_consent_page_sends_a_native_app_on_to_its_private_use_scheme(seeded, page, live_server):
    """RFC 8252 7.1: the consent page's "Allow" is a form POST answered by a 302 to
    com.example.app:/cb?code=... Chromium checks that redirect against the page's form-action:
    under `form-action 'self'` it stops it (a CSP error in the console, no request for the
    app's URI); under none, it hands the URI on to the system (the request seen below, aborted
    then: no app claims the scheme here)."""
    from urllib.parse import parse_qs, urlsplit

    from idp import clients
    from idp.db import db

    app_uri = "com.example.app:/cb"
    with live_server.context():
        row, _secret = clients.register(clients.Registration(name="Mobile App", redirect_uris=(app_uri,), public=True))
        db.session.commit()
        client_id = row.client_id
    rp = RelyingParty(live_server.url, {"client_id": client_id, "client_secret": None, "redirect_uri": app_uri})
    violations = []
    page.on("console", lambda message: violations.append(message.text) if "Content Security" in message.text else None)
    page.goto(rp.authorization_url())
    page.fill("#username", seeded.user_email)
    page.fill("#password", seeded.password)
    page.click("button.primary")
    allow = page.locator('button[name="action"][value="allow"]')
    allow.wait_for()
    with page.expect_request(lambda request: request.url.startswith(f"{app_uri}?")) as sent:
        allow.click()
    attempted = sent.value
    assert attempted.redirected_from is not None and attempted.redirected_from.method == "POST"
    params = {name: values[0] for name, values in parse_qs(urlsplit(attempted.url).query).items()}
    assert params["state"] == rp.state and params["iss"] == live_server.url and params["code"]
    assert not violations
    assert rp.exchange(attempted.url)["id_token"]  # the code the app would have received, with PKCE
