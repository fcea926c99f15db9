"""NUL (0x00) wherever browsers, clients and devices send text: a clear 4xx and nothing written.

PostgreSQL's text (and JSONB) values cannot hold NUL: psycopg raises DataError before the query
is sent, where SQLite stores it. Each request below was a 500 on PostgreSQL. The edges now treat
such a value as naming nothing (idp.security.text.storable): an unknown client (invalid_client,
/authorize's error page), a wrong e-mail address, the device tokens' uniform 401, no such
challenge, activation or user. Labels and device names are display text: control characters are
dropped (idp.security.text.display_text). What still reaches the database is a 400 from
idp.errors, with the request's writes rolled back.

Each test runs on SQLite and, with IDP_TEST_DATABASE_URL, on PostgreSQL, and compares every row of
every table before and after the refused request.
"""
from __future__ import annotations

import pyotp
import pytest
import requests
from sqlalchemy import select

from authenticator.push import keys
from fixtures.oidc import FormBrowser
from recovery_kit import enable_recovery

NUL = "\x00"
JSON = {"Accept": "application/json"}


@pytest.fixture
def server(live_server):
    """The live server with push and recovery QR registered (before its first request)."""
    return enable_recovery(live_server)


def snapshot(server, skip: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Every row of every table but `skip`: what a refused request must leave as it was."""
    from idp.db import Base, db

    with server.context():
        rows = {table.name: sorted(repr(tuple(row)) for row in db.session.execute(select(table)))
                for table in Base.metadata.sorted_tables if table.name not in skip}
        db.session.remove()
    return rows


# What a refused guess leaves, as any wrong one: its counters, and its audit event (a password
# for no account is recorded too, so that it costs what a wrong one for an account costs).
GUESS_TRACES = ("failure_counters", "audit_events")


def unknown_address_refusals(server) -> list[tuple]:
    """The audit events of the refusals of addresses no account has: (event, reason, org, subject)."""
    from idp.db import db
    from idp.models import AuditEvent

    with server.context():
        rows = [(e.event, e.details.get("reason"), e.org_id, e.subject_id)
                for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
        db.session.remove()
    return rows


def new_challenge_types(server, before: dict) -> list:
    """The payload types of the factor_challenges rows added since `before`."""
    from idp.db import db
    from idp.models import FactorChallenge

    with server.context():
        rows = db.session.execute(select(FactorChallenge.__table__)).all()
        types = [row.payload_json.get("type") for row in rows if repr(tuple(row)) not in before["factor_challenges"]]
        db.session.remove()
    return types


def user_ref(server, email: str):
    from idp.factors import directory

    with server.context():
        return directory.find_user_by_email(email)


def credentials(server, email: str) -> list:
    from idp.factors.registry import current_registry

    with server.context():
        return current_registry().store.list(user_ref(server, email))


# --- the login form ----------------------------------------------------------------------------


def test_a_username_with_nul_is_a_wrong_address(server, seeded, web, rp_factory):
    rp = rp_factory(seeded.first_party)
    web.get(rp.authorization_url())
    for username in ("a\x00b@demo.example", seeded.user_email + NUL):
        before = snapshot(server, skip=GUESS_TRACES)  # the guess counts, as any wrong one
        page = web.login(username, seeded.password)
        assert page.status == 401 and "Incorrect e-mail or password." in page.text
        assert snapshot(server, skip=GUESS_TRACES) == before
    assert unknown_address_refusals(server) == [("login.password_failed", "unknown_account", None, None)] * 2
    web.login(seeded.user_email, seeded.password)
    assert web.callback_params()["code"]


# --- client ids: the OAuth endpoints, /authorize and /logout -------------------------------------


@pytest.mark.parametrize("path,form", [("/oauth/token", {"grant_type": "client_credentials"}),
                                       ("/oauth/revoke", {"token": "x" * 43}),
                                       ("/oauth/introspect", {"token": "x" * 43})])
def test_a_client_id_with_nul_is_an_unknown_client(server, seeded, path, form):
    """invalid_client, exactly as for an id nobody registered: 401 when the client authenticated
    with HTTP Basic (RFC 6749 5.2), in the form body (with or without a secret) the same as the
    unknown id gets."""
    url = server.url + path

    def attempts(client_id: str) -> list[requests.Response]:
        return [requests.post(url, data=form, auth=(client_id, "secret"), timeout=10),
                requests.post(url, data={**form, "client_id": client_id, "client_secret": "secret"}, timeout=10),
                requests.post(url, data={**form, "client_id": client_id}, timeout=10)]

    unknown = attempts("nobody")
    assert unknown[0].status_code == 401
    before = snapshot(server)
    for client_id in ("a\x00", seeded.third_party["client_id"] + NUL):
        for response, expected in zip(attempts(client_id), unknown, strict=True):
            assert response.status_code == expected.status_code, (client_id, response.status_code, response.text)
            assert response.json()["error"] == expected.json()["error"] == "invalid_client"
    assert snapshot(server) == before


def test_authorize_with_nul_in_client_id_is_the_error_page(server, seeded):
    before = snapshot(server)
    for client_id in ("a\x00", seeded.first_party["client_id"] + NUL):
        response = requests.get(server.url + "/authorize", params={
            "client_id": client_id, "response_type": "code", "redirect_uri": "http://x/", "scope": "openid"},
            allow_redirects=False, timeout=10)
        assert response.status_code == 400 and "Location" not in response.headers
        assert "<code>invalid_client</code>" in response.text
    assert snapshot(server) == before


# Every parameter of an authorization request but the two that say where an error may go.
AUTHORIZE_PARAMETERS = ("state", "nonce", "login_hint", "ui_locales", "acr_values", "max_age", "prompt", "claims",
                        "id_token_hint", "display", "claims_locales", "scope", "response_mode", "code_challenge")


def authorize_url(server, client: dict, **params) -> str:
    from urllib.parse import urlencode

    from authlib.oauth2.rfc7636 import create_s256_code_challenge

    query = {"client_id": client["client_id"], "response_type": "code", "redirect_uri": client["redirect_uri"],
             "scope": "openid email", "state": "the-state", "nonce": "the-nonce",
             "code_challenge": create_s256_code_challenge("v" * 43), "code_challenge_method": "S256", **params}
    return f"{server.url}/authorize?{urlencode(query)}"


def test_authorize_with_nul_in_another_parameter_answers_the_client(server, seeded, web):
    """Once the client and its redirect URI are known, a value no row can hold (was a 400 page on
    PostgreSQL, a login on SQLite) is the client's error to hear (RFC 6749 4.1.2.1): a redirect
    with invalid_request, the state as sent, and the issuer; nothing written."""
    from urllib.parse import parse_qs, urlsplit

    client = seeded.first_party
    before = snapshot(server)
    for name in AUTHORIZE_PARAMETERS:
        response = requests.get(authorize_url(server, client, **{name: f"a{NUL}b"}), allow_redirects=False,
                                timeout=10)
        location = response.headers.get("Location", "")
        assert response.status_code == 302 and location.startswith(client["redirect_uri"] + "?"), (name, location)
        answer = parse_qs(urlsplit(location).query)
        assert answer["error"] == ["invalid_request"] and answer["iss"] == [server.url], (name, answer)
        assert name in answer["error_description"][0]
        assert answer["state"] == [f"a{NUL}b" if name == "state" else "the-state"]
    assert snapshot(server) == before

    web.get(authorize_url(server, client))  # signed in: the session answers prompt=none
    web.login(seeded.user_email, seeded.password)
    before = snapshot(server)
    web.get(authorize_url(server, client, prompt="none", login_hint=f"a{NUL}"))
    assert web.callback_params()["error"] == "invalid_request"
    assert snapshot(server) == before


@pytest.mark.parametrize("name, length", [("state", 4097), ("login_hint", 4097), ("nonce", 513),
                                          ("claims", 32769)])
def test_authorize_with_an_oversized_parameter_answers_the_client(server, seeded, name, length):
    """Anyone may start a login, whose row stores the request: a value far longer than any client
    sends (a 200 KB state was stored) is the client's invalid_request, posted as a form may be."""
    from urllib.parse import parse_qs, urlsplit

    client = seeded.first_party
    before = snapshot(server)
    form = dict(parse_qs(urlsplit(authorize_url(server, client)).query), **{name: "x" * length})
    response = requests.post(server.url + "/authorize", data=form, allow_redirects=True, timeout=10)
    location = response.history[-1].headers.get("Location", "") if response.history else ""
    answer = parse_qs(urlsplit(location).query)
    assert answer.get("error") == ["invalid_request"] and name in answer["error_description"][0], location[:300]
    assert snapshot(server) == before


def test_logout_with_nul_in_client_id_is_an_unknown_client(server, seeded):
    uri = seeded.third_party["post_logout_redirect_uri"]
    unknown = requests.get(server.url + "/logout", params={"client_id": "nobody", "post_logout_redirect_uri": uri},
                           allow_redirects=False, timeout=10)
    before = snapshot(server)
    response = requests.get(server.url + "/logout", params={"client_id": "a\x00b", "post_logout_redirect_uri": uri},
                            allow_redirects=False, timeout=10)
    # (an address to come back to with no client to have registered it: an error page, nothing ended)
    assert response.status_code == unknown.status_code == 400 and "Location" not in response.headers
    assert snapshot(server) == before


# --- push devices ------------------------------------------------------------------------------


def push_endpoint(server) -> str:
    return server.url + "/factors/push/v1"


def activation_code(server, email: str) -> str:
    from idp.db import utcnow

    with server.context():
        push = server.app.extensions["idp.factors"].get("push")
        return push.issue_activation(user_ref(server, email), server.url, utcnow()).code


def register(server, key, code: str, name: str) -> requests.Response:
    token = keys.registration_token(key, audience=push_endpoint(server) + "/register", code=code, name=name)
    return requests.post(push_endpoint(server) + "/register", json={"registration": token}, timeout=10)


def test_a_device_name_keeps_no_control_characters(server, seeded):
    code = activation_code(server, seeded.user_email)
    before = snapshot(server)
    refused = register(server, keys.new_private_key(), code, "\x00\x01 ")
    assert refused.status_code == 400 and refused.json() == {"error": "invalid_request"}
    assert snapshot(server) == before, "nothing stored, the activation code not spent"

    response = register(server, keys.new_private_key(), code, "a\x00b")
    assert response.status_code == 201, response.text
    [device] = [c for c in credentials(server, seeded.user_email) if c.factor == "push"]
    assert device.label == "ab" and device.public["device_name"] == "ab"


def test_a_device_token_whose_kid_has_nul_gets_the_uniform_401(server, seeded):
    key = keys.new_private_key()
    assert register(server, key, activation_code(server, seeded.user_email), "Phone").status_code == 201
    audience = push_endpoint(server) + "/challenges"
    before = snapshot(server)
    for kid in ("a\x00", keys.device_id(key) + NUL):
        claims = {"iss": kid, "aud": audience, **keys._times(None)}
        token = keys.sign_jwt(key, {"alg": "ES256", "typ": "JWT", "kid": kid}, claims)
        response = requests.get(audience, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert response.status_code == 401 and response.json() == {"error": "invalid_device_request"}
    assert snapshot(server) == before


def test_a_challenge_id_with_nul_is_no_challenge(server, seeded):
    key = keys.new_private_key()
    assert register(server, key, activation_code(server, seeded.user_email), "Phone").status_code == 201
    audience = push_endpoint(server) + "/challenges/\x00/answer"
    token = keys.request_token(key, audience=audience, extra={"challenge": NUL, "decision": "deny"})
    before = snapshot(server)
    response = requests.post(push_endpoint(server) + "/challenges/%00/answer",
                             headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 404 and response.json() == {"error": "unknown_challenge"}
    # The one write of an authenticated device request: its jti, kept against replay.
    assert new_challenge_types(server, before) == ["jti"]
    del before["factor_challenges"]
    assert snapshot(server, skip=("factor_challenges",)) == before


def test_an_activation_id_with_nul_is_unknown(server, seeded):
    unknown = requests.get(push_endpoint(server) + "/activation/nope", timeout=10)
    before = snapshot(server)
    response = requests.get(push_endpoint(server) + "/activation/%00", timeout=10)
    assert response.status_code == unknown.status_code and response.json() == unknown.json() == {"status": "expired"}
    assert snapshot(server) == before


# --- recovery QR and personal recovery ---------------------------------------------------------


def recovery_request(server, path: str, **claims) -> requests.Response:
    """A request signed by a new phone's key (docs/recovery.md), posted to /factors/qr_recovery."""
    key = keys.new_private_key()
    base = server.url + "/factors/qr_recovery"
    token = keys.sign_jwt(key, {"alg": "ES256", "typ": "JWT", "jwk": keys.public_jwk(key)},
                          {"aud": base + path, **keys._times(None), "name": "New phone", **claims})
    return requests.post(base + path, json={"request": token}, timeout=10)


def test_recovery_with_nul_in_the_user_or_recovery_id_is_refused(server, seeded):
    # (Each signed request's jti is recorded first, refused or not: a replay guard's row.)
    before = snapshot(server, skip=("factor_challenges",))
    redeem = recovery_request(server, "/redeem", secret="ABCD-EFGH-IJKL-MNOP", user=seeded.user_email + NUL)
    assert redeem.status_code == 400 and redeem.json() == {"error": "invalid_recovery_code"}
    finish = recovery_request(server, "/personal/finish", recovery_id=NUL, code="123456")
    assert finish.status_code == 400 and finish.json() == {"error": "invalid_recovery"}
    assert snapshot(server, skip=("factor_challenges",)) == before


def test_personal_recovery_with_nul_in_the_email_is_a_wrong_address(server, seeded):
    before = snapshot(server, skip=GUESS_TRACES)  # the guess counts, as on the login form
    for email in ("a\x00@x", seeded.user_email + NUL):
        response = requests.post(server.url + "/factors/qr_recovery/personal/start",
                                 json={"email": email, "password": seeded.password}, timeout=10)
        assert response.status_code == 401 and response.json() == {"error": "invalid_credentials"}
    assert snapshot(server, skip=GUESS_TRACES) == before
    assert unknown_address_refusals(server) == [("recover.password_failed", "unknown_account", None, None)] * 2


def test_lone_surrogates_in_json_are_a_400_not_a_500(server, seeded):
    """A JSON body may spell a lone surrogate ("\\ud800"), which no UTF-8 encoder accepts: hashing
    the password or the lockout key would fail (on SQLite as on PostgreSQL): a wrong password."""
    before = snapshot(server, skip=GUESS_TRACES)  # the guess counts, as on the login form
    for body in ({"email": seeded.user_email, "password": "\ud800"}, {"email": "a\udcff@x", "password": "p"}):
        response = requests.post(server.url + "/factors/qr_recovery/personal/start", json=body, timeout=10)
        assert response.status_code == 401 and response.json() == {"error": "invalid_credentials"}
    assert snapshot(server, skip=GUESS_TRACES) == before
    assert unknown_address_refusals(server) == [("recover.password_failed", "unknown_account", None, None)] * 2


# --- signed in: the security page ----------------------------------------------------------------


def signed_in(server, seeded) -> FormBrowser:
    web = FormBrowser(server.url)
    web.get("/account/security")
    page = web.login(seeded.user_email, seeded.password)
    assert "/account/security" in page.url and page.status == 200, page.text[:500]
    return web


def enrol_totp(web: FormBrowser, label: str):
    page = web.submit([f for f in web.page.forms() if f["action"].endswith("/add/totp")][0])
    secret = page.find(r'<code>([A-Z2-7 ]+)</code>').replace(" ", "")
    return web.submit(page.form_with("code"), {"code": pyotp.TOTP(secret).now(), "label": label})


def test_credential_labels_keep_no_control_characters(server, seeded):
    web = signed_in(server, seeded)
    enrol_totp(web, "ab\x00cd")
    [totp] = [c for c in credentials(server, seeded.user_email) if c.factor == "totp"]
    assert totp.label == "abcd"

    page = web.get("/account/security")
    rename = [f for f in page.forms() if f["action"].endswith("/rename") and f["fields"].get("label") == "abcd"][0]
    response = web.http.post(rename["action"], data={**rename["fields"], "label": "a\x00b"}, allow_redirects=False)
    [label] = [c.label for c in credentials(server, seeded.user_email) if c.id == totp.id]
    assert response.status_code == 302 and label == "ab"  # the audit event's copy too (JSONB refuses NUL)


def test_an_enrolment_id_with_nul_is_unknown(server, seeded):
    web = signed_in(server, seeded)
    unknown = web.http.get(server.url + "/account/security/enrol/nope", allow_redirects=False)
    before = snapshot(server)
    response = web.http.get(server.url + "/account/security/enrol/%00", allow_redirects=False)
    assert response.status_code == unknown.status_code == 302
    assert response.headers["Location"] == unknown.headers["Location"]
    assert snapshot(server) == before


# --- the net: a DataError that gets through is a 400, its writes rolled back ---------------------


@pytest.fixture
def net_app(migrated_database_url):
    """An app with two extra views that write, then send the database a NUL: through the ORM
    (SQLAlchemy's DataError) and as a prebuilt statement on the DBAPI connection (psycopg's own).
    On SQLite, which stores NUL, the ORM view raises the error PostgreSQL would; the prebuilt
    statement's case is PostgreSQL's alone (an app on SQLite never loads psycopg)."""
    from idp.app import create_app
    from idp.db import db
    from idp.models import Organization, User

    app = create_app({"server.database_url": migrated_database_url, "server.json_logs": False})
    postgresql = migrated_database_url.startswith("postgresql")
    by_email = select(User.id).where(User.email == "a\x00b")

    def rename_then(fail):
        def view():
            user = db.session.scalars(select(User)).one()
            user.name = "changed"
            db.session.flush()
            fail()
            db.session.commit()
            return "written"
        return view

    def orm():
        from sqlalchemy.exc import DataError

        if not postgresql:
            raise DataError("SELECT", {}, ValueError("NUL"))
        db.session.execute(by_email)
        raise AssertionError("PostgreSQL took a NUL")

    def core():
        db.run(by_email, {})
        raise AssertionError("PostgreSQL took a NUL")

    def surrogate():
        "\ud800".encode()  # a lone surrogate from a JSON body, hashed or sent somewhere as UTF-8

    app.add_url_rule("/test-net/orm", "test_net_orm", rename_then(orm))
    app.add_url_rule("/test-net/core", "test_net_core", rename_then(core))
    app.add_url_rule("/test-net/surrogate", "test_net_surrogate", rename_then(surrogate))
    with app.app_context():
        org = Organization(name="Net")
        db.session.add(org)
        db.session.flush()
        db.session.add(User(public_id="net", org_id=org.id, email="net@example.test", name="before"))
        db.session.commit()
        db.session.remove()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.mark.parametrize("path", ["/test-net/orm", "/test-net/core", "/test-net/surrogate"])
def test_a_data_error_is_a_400_and_nothing_is_half_written(net_app, path, caplog):
    from idp.db import db
    from idp.models import User

    if path == "/test-net/core" and not net_app.extensions["idp.settings"].database_url.startswith("postgresql"):
        pytest.skip("psycopg's own DataError: PostgreSQL only")
    client = net_app.test_client()
    page = client.get(path)
    assert page.status_code == 400 and "text/html" in page.content_type
    assert client.get(path, headers=JSON).get_json() == {"error": "invalid_request"}
    assert any("the database refused a value" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
    with net_app.app_context():
        assert db.session.scalars(select(User.name)).one() == "before"
        db.session.remove()
    # The request's session was rolled back, not left failed: the next request works.
    assert client.get("/.well-known/openid-configuration").status_code == 200


def test_the_html_and_json_answers_match_the_other_errors(net_app):
    """Under /oauth/ and /factors/ the answer is JSON without asking, like idp.errors' others."""
    net_app.add_url_rule("/factors/test-net", "test_net_factors", net_app.view_functions["test_net_orm"])
    response = net_app.test_client().get("/factors/test-net")
    assert response.status_code == 400 and response.get_json() == {"error": "invalid_request"}
