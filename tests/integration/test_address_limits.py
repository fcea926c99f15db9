"""Per-address limits behind a trusted proxy, with IPv6 clients: one /64 is one budget
(idp.security.guess_keys), since a host may take any address of its /64."""
from __future__ import annotations

import pytest
import requests

from fixtures.oidc import RelyingParty, seed, start_server
from test_pushed_requests import authorization_params, par_url


@pytest.fixture
def proxied_server(migrated_database_url):
    server = start_server(migrated_database_url, {"ratelimit.login_posts_per_ip": "3 per minute",
                                                  "server.trusted_proxies": ["127.0.0.1"]})
    server.seeded = seed(server)
    yield server
    server.stop()


def test_the_addresses_of_one_ipv6_64_share_one_budget(proxied_server):
    client = proxied_server.seeded.public
    rp = RelyingParty(proxied_server.url, client)

    def push_from(address: str) -> int:
        return requests.post(par_url(proxied_server), data=dict(authorization_params(rp), client_id=client["client_id"]),
                             headers={"X-Forwarded-For": address}, timeout=10).status_code

    assert [push_from(f"2001:db8:1:2::{n}") for n in ("a", "b", "c", "d")] == [201, 201, 201, 429]
    assert push_from("2001:db8:1:3::a") == 201  # the next /64: someone else
    assert push_from("198.51.100.7") == 201


def test_new_anonymous_logins_are_limited_per_address_and_signed_in_browsers_are_not(proxied_server):
    """Each GET /authorize of a browser with no session stores a login: at the login forms' rate
    per address, counted apart. prompt=none (no page, no row) and a signed-in browser's
    requests (answered by its session) are not counted."""
    from fixtures.oidc import FormBrowser, password_login

    seeded = proxied_server.seeded
    rp = RelyingParty(proxied_server.url, seeded.first_party)

    def start_from(address: str, **params):
        return requests.get(rp.authorization_url(**params), headers={"X-Forwarded-For": address},
                            allow_redirects=False, timeout=10)

    assert [start_from("198.51.100.7").status_code for _ in range(3)] == [302, 302, 302]
    refused = start_from("198.51.100.7")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
    assert "Too many requests" in refused.text and "Location" not in refused.headers
    silent = start_from("198.51.100.7", prompt="none")
    assert silent.status_code == 302 and "error=login_required" in silent.headers["Location"]
    assert start_from("198.51.100.8").status_code == 302  # someone else

    browser = FormBrowser(proxied_server.url)  # from 127.0.0.1: one anonymous start, one form post
    assert password_login(browser, rp, seeded.user_email, seeded.password)["code"]
    for _ in range(4):
        browser.get(rp.authorization_url())
        assert browser.callback_params()["code"]


def test_logins_begun_for_the_providers_own_pages_are_limited_per_address_too(proxied_server):
    """An anonymous GET of /account/security (or an admin page) stores a login to come back from,
    as /authorize does: at the same rate per address, counted apart from /authorize's. (An audit
    stored thirty in a row, each with a 2 KiB page to come back to.) Signed in, nothing is counted."""
    from sqlalchemy import func, select

    from fixtures.oidc import FormBrowser, password_login
    from idp.db import db
    from idp.models import LoginTransaction

    def stored() -> int:
        with proxied_server.context():
            return db.session.scalar(select(func.count()).select_from(LoginTransaction))

    def visit(address: str, n: int):
        return requests.get(f"{proxied_server.url}/account/security?n={n}&pad={'a' * 1900}", allow_redirects=False,
                            headers={"X-Forwarded-For": address}, timeout=10)

    before = stored()
    answers = [visit("198.51.100.7", n) for n in range(5)]
    assert [a.status_code for a in answers] == [302, 302, 302, 429, 429]
    assert int(answers[-1].headers["Retry-After"]) > 0 and "Too many requests" in answers[-1].text
    assert stored() - before == 3
    assert visit("198.51.100.8", 0).status_code == 302  # someone else
    rp = RelyingParty(proxied_server.url, proxied_server.seeded.first_party)
    assert requests.get(rp.authorization_url(), headers={"X-Forwarded-For": "198.51.100.7"},
                        allow_redirects=False, timeout=10).status_code == 302  # /authorize's own count

    browser = FormBrowser(proxied_server.url)  # from 127.0.0.1, signed in: its pages count nothing
    password_login(browser, rp, proxied_server.seeded.user_email, proxied_server.seeded.password)
    for _ in range(5):
        assert browser.get("/account/security").status == 200


def test_a_query_prompt_beside_a_pushed_request_does_not_exempt_its_login(proxied_server):
    """With request_uri (or request), the query's prompt is not the request's: such a login is
    counted whatever the query says."""
    from test_pushed_requests import by_reference, push

    seeded = proxied_server.seeded
    client = seeded.first_party  # confidential: its pushes are not limited
    rp = RelyingParty(proxied_server.url, client)
    statuses = []
    for _ in range(4):
        uri = push(proxied_server, client, authorization_params(rp)).json()["request_uri"]
        statuses.append(requests.get(by_reference(proxied_server, client["client_id"], uri, prompt="none"),
                                     headers={"X-Forwarded-For": "198.51.100.9"}, allow_redirects=False,
                                     timeout=10).status_code)
    assert statuses == [302, 302, 302, 429]


def test_switching_methods_at_a_login_is_limited_per_address(proxied_server):
    """Each switch begins a challenge or an enrolment: at the enrolment step, a push activation
    (a row and a `push.activation_issued` event) per switch to push. Without a limit one password
    opened any number of them. (Push and the app's code in turn: push chosen again at once is the
    same click's second copy, which shows the activation begun, enrol.choose.)"""
    from sqlalchemy import func, select

    from fixtures.oidc import FormBrowser
    from fixtures.totp import MFA
    from idp.db import db
    from idp.models import AuditEvent
    from recovery_kit import enable_recovery

    enable_recovery(proxied_server)
    seeded = proxied_server.seeded
    web = FormBrowser(proxied_server.url)
    web.get(RelyingParty(proxied_server.url, seeded.first_party).authorization_url(acr_values=MFA))
    page = web.login(seeded.user_email, seeded.password)
    switch_to = {name: form for form in page.forms() for name in ("push", "totp")
                 if form["action"].endswith(f"/factor/{name}")}
    statuses = [web.http.post(switch_to[name]["action"], data=switch_to[name]["fields"],
                              allow_redirects=False).status_code
                for name in ("push", "totp", "push", "totp")]
    assert statuses == [302, 302, 302, 429]
    with proxied_server.context():
        issued = db.session.scalar(select(func.count()).select_from(AuditEvent)
                                   .where(AuditEvent.event == "push.activation_issued"))
        db.session.rollback()
    assert issued == 2
