"""response_mode=form_post (OAuth 2.0 Form Post Response Mode; idp.oidc.response_mode): every
authorization response, the code and the errors alike, reaches the client as a form POSTed to
its redirect URI, never in the URL."""
from __future__ import annotations

from urllib.parse import urlencode

import requests

from fixtures.oidc import RelyingParty, callback_base


def posted(web, redirect_uri: str) -> dict:
    """The authorization response the page in `web` carries: the form's fields, after checking
    that it goes to `redirect_uri` by POST and that its page lets nothing else happen."""
    page = web.page
    assert page.status == 200 and web.last_redirect is None, (page.status, web.last_redirect)
    (form,) = page.forms()
    assert form["action"] == redirect_uri and form["method"] == "post"
    origin = callback_base()  # the clients' callbacks: another origin than the provider's
    csp = page.headers["Content-Security-Policy"]
    assert f"frame-ancestors {origin}" in csp and "form-action" not in csp  # (as a login's pages: headers.py)
    assert "X-Frame-Options" not in page.headers  # DENY would contradict the CSP
    assert page.headers["Cache-Control"] == "no-store"
    return form["fields"]


def test_the_code_is_posted_to_the_client_and_exchanged(seeded, web, rp_factory, live_server):
    rp = rp_factory(seeded.first_party)
    assert "form_post" in rp.metadata["response_modes_supported"]
    web.get(rp.authorization_url(response_mode="form_post"))
    web.login(seeded.user_email, seeded.password)
    fields = posted(web, rp.client["redirect_uri"])
    assert set(fields) == {"code", "state", "iss"}
    assert fields["state"] == rp.state and fields["iss"] == live_server.url
    tokens = rp.exchange(f"{rp.client['redirect_uri']}?{urlencode(fields)}")
    assert rp.validate_id_token(tokens["id_token"])["email"] == seeded.user_email


def test_errors_are_posted_too(seeded, web, rp_factory):
    third = rp_factory(seeded.third_party)
    web.get(third.authorization_url(response_mode="form_post", prompt="none"))  # no session yet
    assert posted(web, third.client["redirect_uri"])["error"] == "login_required"
    web.get(third.authorization_url(response_mode="form_post"))
    web.login(seeded.user_email, seeded.password)
    web.consent("deny")
    refused = posted(web, third.client["redirect_uri"])
    assert refused["error"] == "access_denied" and refused["state"] == third.state
    web.get(third.authorization_url(response_mode="form_post", prompt="bogus"))  # refused by the pipeline
    assert posted(web, third.client["redirect_uri"])["error"] == "invalid_request"
    plain = third.authorization_url(response_mode="form_post").replace("code_challenge_method=S256",
                                                                       "code_challenge_method=plain")
    web.get(plain)  # refused by Authlib's checks
    assert posted(web, third.client["redirect_uri"])["error"] == "invalid_request"


def test_a_session_answers_in_form_post(seeded, web, rp_factory):
    rp = rp_factory(seeded.first_party)
    web.get(rp.authorization_url())
    web.login(seeded.user_email, seeded.password)
    web.get(rp.authorization_url(response_mode="form_post", prompt="none"))
    assert set(posted(web, rp.client["redirect_uri"])) == {"code", "state", "iss"}


def test_a_redirect_uri_with_a_query_keeps_it_in_the_action(seeded, web, live_server):
    from idp.db import db
    from idp.models import Client
    from idp.security.tokens import random_token, sha256_hex

    redirect_uri = f"{callback_base()}/tenant/callback?tenant=a+b&empty="
    client = {"client_id": f"tenant-{random_token(6)}", "client_secret": random_token(32), "redirect_uri": redirect_uri}
    with live_server.context():
        db.session.add(Client(client_id=client["client_id"], secret_hash=sha256_hex(client["client_secret"]),
                              name="Tenant", redirect_uris=[redirect_uri], grant_types=["authorization_code"],
                              first_party=True))
        db.session.commit()
    rp = RelyingParty(live_server.url, client)
    web.get(rp.authorization_url(response_mode="form_post"))
    web.login(seeded.user_email, seeded.password)
    assert set(posted(web, redirect_uri)) == {"code", "state", "iss"}  # the URI's own parameters stay in it


def test_an_unknown_response_mode_is_refused_in_the_query(seeded, web, rp_factory, live_server):
    rp = rp_factory(seeded.first_party)
    web.get(rp.authorization_url(response_mode="fragment"))
    assert web.callback_params()["error"] == "invalid_request"
    pushed = requests.post(rp.metadata["pushed_authorization_request_endpoint"], timeout=5,
                           auth=(rp.client["client_id"], rp.client["client_secret"]),
                           data={"client_id": rp.client["client_id"], "response_type": "code", "scope": "openid",
                                 "redirect_uri": rp.client["redirect_uri"], "response_mode": "form_post",
                                 "code_challenge": "x" * 43, "code_challenge_method": "S256"})
    assert pushed.status_code == 201, pushed.text  # a pushed request may ask for it as well


def test_only_the_clients_origin_may_frame_the_page():
    """An IPv6 host cannot be named in a CSP source: the form may go to its scheme, but no site
    may frame the page then (every site of that scheme could)."""
    from idp.security.headers import csp_for_form_post

    assert "frame-ancestors https://app.example:8443" in csp_for_form_post("https://app.example:8443/cb?x=1")
    framed_by_none = csp_for_form_post("http://[::1]:9/cb")
    assert "frame-ancestors 'none'" in framed_by_none
    assert csp_for_form_post("com.example.app:/cb") is None  # (a native app's: form_post to it is refused)
    assert csp_for_form_post("https://Bücher.example/cb").endswith("frame-ancestors https://xn--bcher-kva.example")
    assert csp_for_form_post("https://a.example:99999/") is None and csp_for_form_post("javascript:alert(1)") is None
