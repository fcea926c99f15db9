"""Front-Channel Logout 1.0 in a real browser (idp.oidc.frontchannel): the signed-out page's
script loads each client's logout page in a hidden frame (the provider at http://localhost, the
clients at http://127.0.0.1: another site, which the page's CSP frame-src names), then goes on
to the client the sign-out returns to; a client that never answers holds it up only for the
page's wait."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from fixtures.oidc import callback_base, set_client


def register(live_server, client: dict, uri: str | None) -> None:
    set_client(live_server, client, frontchannel_logout_uri=uri)


def signed_in(page, rp, seeded) -> dict:
    page.goto(rp.authorization_url())
    page.fill("#username", seeded.user_email)
    page.fill("#password", seeded.password)
    page.click("button.primary")
    page.wait_for_url(f"{callback_base()}/**")
    if "/consent" in page.url:  # (never for the first-party client)
        page.click("button.primary")
    return rp.exchange(page.url)


def test_the_signed_out_page_loads_the_clients_frame_then_returns(seeded, page, rp_factory, live_server):
    front = f"{callback_base()}/first/frontchannel-logout"
    register(live_server, seeded.first_party, front)
    rp = rp_factory(seeded.first_party)
    loaded, violations = [], []
    page.on("console", lambda message: violations.append(message.text) if "Content Security" in message.text else None)
    page.route(f"{front}?*", lambda route: (loaded.append(route.request.url),
                                            route.fulfill(status=200, content_type="text/html", body="bye")))
    tokens = signed_in(page, rp, seeded)
    back = rp.client["post_logout_redirect_uri"]
    page.goto(f"{rp.metadata['end_session_endpoint']}?id_token_hint={tokens['id_token']}"
              f"&post_logout_redirect_uri={back}&state=bye")
    page.wait_for_url(f"{back}?state=bye")
    [frame] = loaded
    assert parse_qs(urlsplit(frame).query) == {"iss": [live_server.url],
                                               "sid": [rp.validate_id_token(tokens["id_token"])["sid"]]}
    assert not violations


def test_a_client_that_never_answers_holds_the_sign_out_up_only_for_the_wait(seeded, page, rp_factory, live_server,
                                                                              monkeypatch):
    from idp.oidc import frontchannel

    monkeypatch.setattr(frontchannel, "WAIT_SECONDS", 1)
    front = f"{callback_base()}/first/frontchannel-logout"
    register(live_server, seeded.first_party, front)
    rp = rp_factory(seeded.first_party)
    asked = []
    page.route(f"{front}?*", lambda route: asked.append(route.request.url))  # never answered
    tokens = signed_in(page, rp, seeded)
    back = rp.client["post_logout_redirect_uri"]
    page.goto(f"{rp.metadata['end_session_endpoint']}?id_token_hint={tokens['id_token']}"
              f"&post_logout_redirect_uri={back}&state=bye")
    page.wait_for_url(f"{back}?state=bye")
    assert len(asked) == 1
