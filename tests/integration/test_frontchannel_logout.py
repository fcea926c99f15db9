"""OpenID Connect Front-Channel Logout 1.0 (idp.oidc.frontchannel): a client registered with a
front-channel logout URI gets a hidden frame of that page, `iss` and `sid` in its query, on the
signed-out page of a browser that signs out here; the sign-out then goes on to the client it
returns to. Over HTTP here; in Chromium (frames loaded, then on to the client) in
tests/browser/test_frontchannel_logout_browser.py."""
from __future__ import annotations

import json
import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import requests
from fixtures.oidc import callback_base, set_client, signed_in


def register(live_server, client: dict, uri: str | None) -> None:
    set_client(live_server, client, frontchannel_logout_uri=uri)


def sid_of(rp, tokens: dict) -> str:
    return rp.validate_id_token(tokens["id_token"])["sid"]


def frames_of(page) -> tuple[list[str], str]:
    """The frames the signed-out page loads, and where it goes on to ("" for nowhere)."""
    holder = re.search(r'<div id="frontchannel-logout"[^>]*>', page.text).group(0)
    frames = json.loads(unescape(re.search(r'data-frames="([^"]*)"', holder).group(1)))
    return frames, unescape(re.search(r'data-continue="([^"]*)"', holder).group(1))


def test_discovery_says_so(live_server):
    metadata = requests.get(f"{live_server.url}/.well-known/openid-configuration", timeout=10).json()
    assert metadata["frontchannel_logout_supported"] is True
    assert metadata["frontchannel_logout_session_supported"] is True


def test_an_rp_initiated_logout_frames_each_client_that_asked_then_returns(live_server, seeded, rp_factory):
    front = f"{callback_base()}/third/frontchannel-logout?app=third"
    register(live_server, seeded.third_party, front)
    browser, third, third_tokens = signed_in(live_server, seeded, rp_factory, seeded.third_party)
    _, first, first_tokens = signed_in(live_server, seeded, rp_factory, seeded.first_party, browser)  # SSO: same session
    sid = sid_of(third, third_tokens)
    assert sid_of(first, first_tokens) == sid
    back = first.client["post_logout_redirect_uri"]
    page = browser.get(f"{first.metadata['end_session_endpoint']}?id_token_hint={first_tokens['id_token']}"
                       f"&post_logout_redirect_uri={back}&state=bye")
    assert page.status == 200 and browser.last_redirect is None           # a page, not the redirect yet
    frames, continue_to = frames_of(page)
    [frame] = frames
    assert frame.startswith(f"{callback_base()}/third/frontchannel-logout?")
    assert parse_qs(urlsplit(frame).query) == {"app": ["third"], "iss": [live_server.url], "sid": [sid]}
    assert continue_to == f"{back}?state=bye"
    csp = page.headers["Content-Security-Policy"]
    assert f"frame-src {callback_base()}" in csp and "frame-ancestors 'none'" in csp
    # The session did end: its access token is withdrawn, and the next login asks again.
    assert first.userinfo(first_tokens["access_token"]).status_code == 401
    browser.get(first.authorization_url(prompt="none"))
    assert "error=login_required" in browser.last_redirect


def test_a_plain_sign_out_frames_them_too(live_server, seeded, rp_factory):
    register(live_server, seeded.third_party, f"{callback_base()}/third/frontchannel-logout")
    browser, third, tokens = signed_in(live_server, seeded, rp_factory, seeded.third_party)
    confirm = browser.get("/logout")
    page = browser.submit(confirm.forms()[0])
    frames, continue_to = frames_of(page)
    assert [urlsplit(frame).path for frame in frames] == ["/third/frontchannel-logout"]
    assert parse_qs(urlsplit(frames[0]).query)["sid"] == [sid_of(third, tokens)]
    assert continue_to == "" and "You can close this window." in page.text


def test_no_frame_for_a_client_the_session_did_not_sign_in(live_server, seeded, rp_factory):
    """The first-party client's session never signed the third-party client in: its logout
    returns straight away, as without front-channel logout."""
    register(live_server, seeded.third_party, f"{callback_base()}/third/frontchannel-logout")
    browser, first, tokens = signed_in(live_server, seeded, rp_factory, seeded.first_party)
    back = first.client["post_logout_redirect_uri"]
    browser.get(f"{first.metadata['end_session_endpoint']}?id_token_hint={tokens['id_token']}"
                f"&post_logout_redirect_uri={back}&state=bye")
    assert browser.last_redirect == f"{back}?state=bye"


def test_a_client_whose_uri_was_cleared_gets_no_frame(live_server, seeded, rp_factory):
    register(live_server, seeded.third_party, f"{callback_base()}/third/frontchannel-logout")
    browser, third, tokens = signed_in(live_server, seeded, rp_factory, seeded.third_party)
    register(live_server, seeded.third_party, None)
    back = third.client["post_logout_redirect_uri"]
    browser.get(f"{third.metadata['end_session_endpoint']}?id_token_hint={tokens['id_token']}"
                f"&post_logout_redirect_uri={back}")
    assert browser.last_redirect == back
