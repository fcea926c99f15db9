"""`idp client list | show | update | rotate-secret | remove`, `idp org list`, `idp user list`,
run as real subprocesses against a real database (docs/contract-extensions.md).

Rows the commands read are inserted directly (each `idp` run costs about a second); what the
commands write is read back directly. Over HTTP, what a rotated secret and a removed client
still open: test_client_lifecycle.py.
"""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from fixtures.cli import Db, ok, refused

from idp.db import utcnow
from idp.models import AuthorizationCode, Client, ConsentGrant, LoginTransaction, Organization, Token, User
from idp.security.tokens import sha256_hex

REGISTRATION_KEYS = {"client_id", "name", "public", "first_party", "token_endpoint_auth_methods", "grant_types",
                     "redirect_uris", "post_logout_redirect_uris", "scope", "id_token_alg", "backchannel_logout_uri",
                     "frontchannel_logout_uri",
                     "jwk_thumbprints", "jwks_uri", "require_pushed_authorization_requests", "dpop_bound_access_tokens", "created_at",
                     "previous_secret_expires_at"}


def insert(db: Db, model, **values) -> int:
    with db.engine.begin() as conn:
        return conn.execute(model.__table__.insert().values(**values)).inserted_primary_key[0]


def insert_client(db: Db, client_id: str, *, public: bool = False, **values) -> str:
    values = {"name": client_id.title(), "redirect_uris": [f"https://{client_id}.example/cb"],
              "post_logout_redirect_uris": [], "grant_types": ["authorization_code", "refresh_token"],
              "id_token_alg": "ES256", **values}
    insert(db, Client, client_id=client_id, secret_hash=None if public else sha256_hex("old secret"), public=public,
           **values)
    return client_id


def client_row(db: Db, client_id: str):
    rows = db.rows(Client, Client.client_id == client_id)
    return rows[0] if rows else None


# ---------------------------------------------------------------- list, show

def test_client_list_and_show(url, idp, db):
    insert_client(db, "wiki", first_party=True, post_logout_redirect_uris=["https://wiki.example/"])
    insert_client(db, "spa", public=True, redirect_uris=["http://localhost:3000/cb", "http://localhost:3000/cb2"])

    listed = json.loads(ok(idp("client", "list", "--json", database_url=url)).stdout)
    assert [c["client_id"] for c in listed] == ["wiki", "spa"]
    assert all(set(c) == REGISTRATION_KEYS for c in listed)
    wiki, spa = listed
    assert (wiki["public"], wiki["first_party"], wiki["token_endpoint_auth_methods"]) == (
        False, True, ["client_secret_basic", "client_secret_post"])
    assert (spa["public"], spa["token_endpoint_auth_methods"], spa["redirect_uris"]) == (
        True, ["none"], ["http://localhost:3000/cb", "http://localhost:3000/cb2"])
    assert wiki["created_at"].endswith("Z")

    text = ok(idp("client", "list", database_url=url)).stdout
    assert "wiki  confidential  first-party" in text and "spa  public  third-party" in text
    assert "http://localhost:3000/cb, http://localhost:3000/cb2" in text

    shown = json.loads(ok(idp("client", "show", "wiki", "--json", database_url=url)).stdout)
    assert shown == wiki
    text = ok(idp("client", "show", "wiki", database_url=url)).stdout
    assert "secret_hash" not in text and sha256_hex("old secret") not in text  # never a secret, nor its hash
    assert ["previous_secret_expires_at", "-"] in [line.split() for line in text.splitlines()]
    text = ok(idp("client", "show", "spa", database_url=url)).stdout
    assert ["token_endpoint_auth_methods", "none"] in [line.split() for line in text.splitlines()]


def test_client_list_of_no_clients(sqlite_only_url, idp):
    assert json.loads(ok(idp("client", "list", "--json", database_url=sqlite_only_url)).stdout) == []


# ---------------------------------------------------------------- update

def test_client_update_replaces_what_is_given_and_records_the_changes(url, idp, db):
    insert_client(db, "wiki", post_logout_redirect_uris=["https://wiki.example/"])
    before = client_row(db, "wiki")
    result = ok(idp("client", "update", "wiki", "--name", "Wiki 2", "--redirect-uri", "https://wiki.example/a",
                    "--redirect-uri", "https://wiki.example/b", "--first-party", "--grant-type", "authorization_code",
                    "--grant-type", "client_credentials", "--id-token-alg", "rs256", database_url=url))
    assert "name: Wiki -> Wiki 2" in result.stdout
    row = client_row(db, "wiki")
    assert (row["name"], row["redirect_uris"], row["first_party"], row["grant_types"], row["id_token_alg"]) == (
        "Wiki 2", ["https://wiki.example/a", "https://wiki.example/b"], True,
        ["authorization_code", "client_credentials"], "RS256")
    assert (row["post_logout_redirect_uris"], row["secret_hash"]) == (["https://wiki.example/"], before["secret_hash"])
    [event] = db.events("client.updated")
    assert (event["actor"], event["subject_id"]) == ("cli", row["id"])
    assert event["details"] == {"client_id": "wiki", "changes": {
        "name": {"from": "Wiki", "to": "Wiki 2"},
        "first_party": {"from": False, "to": True},
        "grant_types": {"from": ["authorization_code", "refresh_token"],
                        "to": ["authorization_code", "client_credentials"]},
        "redirect_uris": {"from": ["https://wiki.example/cb"], "to": ["https://wiki.example/a", "https://wiki.example/b"]},
        "id_token_alg": {"from": "ES256", "to": "RS256"}}}

    again = ok(idp("client", "update", "wiki", "--third-party", "--name", "Wiki 2", database_url=url))
    assert "first_party: True -> False" in again.stdout
    assert len(db.events("client.updated")) == 2


def test_a_client_may_be_told_to_push_its_authorization_requests(sqlite_only_url, idp, db):
    created = json.loads(ok(idp("client", "add", "--name", "App", "--redirect-uri", "https://app.example/cb",
                                "--require-par", database_url=sqlite_only_url)).stdout)
    client_id = created["client_id"]
    assert client_row(db, client_id)["require_pushed_authorization_requests"] is True
    [event] = db.events("client.created")
    assert event["details"]["require_pushed_authorization_requests"] is True
    result = ok(idp("client", "update", client_id, "--no-require-par", database_url=sqlite_only_url))
    assert "require_pushed_authorization_requests: True -> False" in result.stdout
    assert client_row(db, client_id)["require_pushed_authorization_requests"] is False
    [event] = db.events("client.updated")
    assert event["details"]["changes"] == {"require_pushed_authorization_requests": {"from": True, "to": False}}


def test_a_client_may_be_told_to_take_dpop_bound_tokens_only(sqlite_only_url, idp, db):
    created = json.loads(ok(idp("client", "add", "--name", "Svc", "--grant-type", "client_credentials",
                                "--require-dpop", database_url=sqlite_only_url)).stdout)
    client_id = created["client_id"]
    assert client_row(db, client_id)["dpop_bound_access_tokens"] is True
    shown = json.loads(ok(idp("client", "show", client_id, "--json", database_url=sqlite_only_url)).stdout)
    assert shown["dpop_bound_access_tokens"] is True
    result = ok(idp("client", "update", client_id, "--no-require-dpop", database_url=sqlite_only_url))
    assert "dpop_bound_access_tokens: True -> False" in result.stdout


def test_a_device_client_needs_no_redirect_uri_and_is_registered_under_rfc_8628s_name(sqlite_only_url, idp, db):
    created = json.loads(ok(idp("client", "add", "--name", "TV", "--public", "--grant-type", "device_code",
                                "--grant-type", "refresh_token", database_url=sqlite_only_url)).stdout)
    device_code = "urn:ietf:params:oauth:grant-type:device_code"
    assert client_row(db, created["client_id"])["grant_types"] == [device_code, "refresh_token"]
    shown = json.loads(ok(idp("client", "show", created["client_id"], "--json", database_url=sqlite_only_url)).stdout)
    assert shown["grant_types"] == [device_code, "refresh_token"]
    # The full name is accepted too; moving the client to the code flow needs a redirect URI.
    ok(idp("client", "update", created["client_id"], "--grant-type", device_code, database_url=sqlite_only_url))
    refused(idp("client", "update", created["client_id"], "--grant-type", "authorization_code",
                database_url=sqlite_only_url), "redirect-uri")


def test_an_empty_id_token_alg_is_refused_not_taken_for_the_default(sqlite_only_url, idp, db):
    """`--id-token-alg ''` did move an RS256 client to the default, ES256: its relying party then
    refused every ID token."""
    insert_client(db, "wiki", id_token_alg="RS256")
    refused(idp("client", "update", "wiki", "--id-token-alg", "", database_url=sqlite_only_url), "algorithm ''")
    assert client_row(db, "wiki")["id_token_alg"] == "RS256" and db.events("client.updated") == []


def test_an_empty_post_logout_redirect_uri_clears_the_list(sqlite_only_url, idp, db):
    insert_client(db, "wiki", post_logout_redirect_uris=["https://wiki.example/", "https://wiki.example/bye"],
                  backchannel_logout_uri="https://wiki.example/bc")
    result = ok(idp("client", "update", "wiki", "--post-logout-redirect-uri", "", "--backchannel-logout-uri", "",
                    database_url=sqlite_only_url))
    assert "post_logout_redirect_uris: https://wiki.example/, https://wiki.example/bye -> -" in result.stdout
    row = client_row(db, "wiki")
    assert (row["post_logout_redirect_uris"], row["backchannel_logout_uri"]) == ([], None)
    [event] = db.events("client.updated")
    assert (event["actor"], event["details"]["changes"]) == ("cli", {
        "post_logout_redirect_uris": {"from": ["https://wiki.example/", "https://wiki.example/bye"], "to": []},
        "backchannel_logout_uri": {"from": "https://wiki.example/bc", "to": None}})
    again = ok(idp("client", "update", "wiki", "--post-logout-redirect-uri", "", database_url=sqlite_only_url))
    assert "already had these settings" in again.stdout and len(db.events("client.updated")) == 1


def test_a_front_channel_logout_uri_is_at_a_redirect_uris_origin(sqlite_only_url, idp, db):
    """Our signed-out page frames it (idp.oidc.frontchannel): the client's own page, at the
    scheme, host and port of one of its redirect URIs (Front-Channel Logout 1.0, section 2),
    never a page the registration merely names. "" stops it."""
    insert_client(db, "wiki", redirect_uris=["https://wiki.example/cb"])
    for elsewhere in ("https://evil.example/logout", "http://wiki.example/logout", "https://wiki.example:8443/logout"):
        refused(idp("client", "update", "wiki", "--frontchannel-logout-uri", elsewhere, database_url=sqlite_only_url),
                "front-channel logout URI")
    assert client_row(db, "wiki")["frontchannel_logout_uri"] is None and db.events("client.updated") == []
    ok(idp("client", "update", "wiki", "--frontchannel-logout-uri", "https://wiki.example:443/logout?app=1",
           database_url=sqlite_only_url))
    assert client_row(db, "wiki")["frontchannel_logout_uri"] == "https://wiki.example:443/logout?app=1"
    # Its redirect URIs cannot move elsewhere while it names this one.
    refused(idp("client", "update", "wiki", "--redirect-uri", "https://new.example/cb", database_url=sqlite_only_url),
            "front-channel logout URI")
    ok(idp("client", "update", "wiki", "--frontchannel-logout-uri", "", database_url=sqlite_only_url))
    assert client_row(db, "wiki")["frontchannel_logout_uri"] is None
    changes = [event["details"]["changes"] for event in db.events("client.updated")]
    assert changes == [{"frontchannel_logout_uri": {"from": None, "to": "https://wiki.example:443/logout?app=1"}},
                       {"frontchannel_logout_uri": {"from": "https://wiki.example:443/logout?app=1", "to": None}}]


def test_client_update_to_the_same_settings_writes_nothing(sqlite_only_url, idp, db):
    insert_client(db, "wiki")
    result = ok(idp("client", "update", "wiki", "--name", "Wiki", database_url=sqlite_only_url))
    assert "already had these settings" in result.stdout
    assert db.events("client.updated") == []


@pytest.mark.parametrize("args, message", [
    (("update", "nope", "--name", "X"), "unknown client 'nope'"),
    (("show", "nope"), "unknown client"),
    (("rotate-secret", "nope"), "unknown client"),
    (("remove", "nope"), "unknown client"),
    (("update", "wiki"), "nothing to change"),
    (("update", "wiki", "--name", " "), "empty"),
    (("update", "wiki", "--redirect-uri", "https://a.example/cb#x"), "fragment"),
    (("update", "wiki", "--post-logout-redirect-uri", "logout"), "post-logout"),
    (("update", "wiki", "--grant-type", "refresh_token"), "needs authorization_code or device_code"),
    (("update", "wiki", "--grant-type", "password"), "unknown grant type"),
    (("update", "wiki", "--id-token-alg", "HS256"), "algorithm"),
    (("update", "wiki", "--id-token-alg", ""), "algorithm ''"),
    (("update", "wiki", "--jwks-uri", ""), "register a new client"),
    (("update", "wiki", "--post-logout-redirect-uri", "", "--post-logout-redirect-uri", "https://wiki.example/"),
     "post-logout redirect uri ''"),
    (("update", "wiki", "--redirect-uri", ""), "redirect uri ''"),
    (("update", "spa", "--grant-type", "client_credentials"), "public client cannot use client_credentials"),
    (("rotate-secret", "spa"), "public"),
])
def test_client_commands_refuse_bad_input_and_change_nothing(sqlite_only_url, idp, db, args, message):
    insert_client(db, "wiki")
    insert_client(db, "spa", public=True)
    before, counts = db.rows(Client), db.counts()
    refused(idp("client", *args, database_url=sqlite_only_url), message)
    assert db.rows(Client) == before and db.counts() == counts


# ---------------------------------------------------------------- rotate-secret

def test_client_rotate_secret(url, idp, db):
    insert_client(db, "wiki")
    result = json.loads(ok(idp("client", "rotate-secret", "wiki", database_url=url)).stdout)
    assert set(result) == {"client_id", "client_secret"} and result["client_id"] == "wiki"
    assert len(result["client_secret"]) >= 43  # 32 random bytes, urlsafe
    row = client_row(db, "wiki")
    assert row["secret_hash"] == sha256_hex(result["client_secret"]) != sha256_hex("old secret")
    [event] = db.events("client.secret_rotated")
    assert (event["actor"], event["subject_id"], event["details"]) == ("cli", row["id"], {"client_id": "wiki"})
    assert result["client_secret"] not in json.dumps(event["details"])


def test_client_rotate_secret_with_a_grace_period_keeps_the_old_secret_working_till_then(idp, live_server):
    import requests

    from idp.db import db as app_db
    from idp.oidc.server import clients as cache

    with live_server.context():  # a client of the running server, with the secret "old secret"
        app_db.session.add(Client(client_id="svc", secret_hash=sha256_hex("old secret"), name="Svc",
                                  redirect_uris=[], grant_types=["client_credentials"]))
        app_db.session.commit()
    server_url = live_server.database_url

    def grant(secret: str) -> int:
        cache.entries.clear()  # what every worker sees once tokens.client_cache_ttl has passed
        return requests.post(f"{live_server.url}/oauth/token", auth=("svc", secret), timeout=10,
                             data={"grant_type": "client_credentials"}).status_code

    first = json.loads(ok(idp("client", "rotate-secret", "svc", "--grace", "1h", database_url=server_url)).stdout)
    assert first["previous_secret_expires_at"].endswith("Z")
    assert (grant("old secret"), grant(first["client_secret"]), grant("wrong")) == (200, 200, 401)
    shown = json.loads(ok(idp("client", "show", "svc", "--json", database_url=server_url)).stdout)
    assert shown["previous_secret_expires_at"] == first["previous_secret_expires_at"]
    [event] = Db(server_url).events("client.secret_rotated")
    assert event["details"]["previous_secret_expires_at"] == first["previous_secret_expires_at"]

    # Once the grace period is over, the old secret is refused.
    with live_server.context():
        from sqlalchemy import update

        app_db.session.execute(update(Client).values(previous_secret_expires_at=utcnow() - timedelta(seconds=1)))
        app_db.session.commit()
    assert (grant("old secret"), grant(first["client_secret"])) == (401, 200)

    # A rotation without --grace leaves one secret only; one secret at most is kept beside the new.
    second = json.loads(ok(idp("client", "rotate-secret", "svc", database_url=server_url)).stdout)
    assert "previous_secret_expires_at" not in second
    assert (grant(first["client_secret"]), grant(second["client_secret"])) == (401, 200)
    refused(idp("client", "rotate-secret", "svc", "--grace", "31d", database_url=server_url), "--grace")


# ---------------------------------------------------------------- remove

def _grants_of(db: Db, client_id: str, user_id: int, serial: int) -> None:
    """What a client holds after a user signed in through it: a code, tokens, a consent, and a
    login of another browser in progress."""
    now = utcnow()
    insert(db, AuthorizationCode, code_hash=sha256_hex(f"code {client_id}"), client_id=client_id, user_id=user_id,
           redirect_uri="https://x.example/cb", scope="openid", auth_time=serial, amr=["pwd"], acr="pwd",
           expires_at=now + timedelta(minutes=1))
    insert(db, Token, access_token_hash=sha256_hex(f"access {client_id}"), refresh_token_hash=sha256_hex(f"r {client_id}"),
           client_id=client_id, user_id=user_id, scope="openid", family_id=client_id, issued_at=serial,
           access_expires_at=serial + 3600)
    insert(db, ConsentGrant, user_id=user_id, client_id=client_id, scope="openid")
    insert(db, LoginTransaction, id=sha256_hex(f"login {client_id}"), browser_binding="b", state="identify",
           authz_request={"params": {"client_id": client_id, "scope": "openid"}, "client_name": client_id}, expires_at=now + timedelta(minutes=10))


def test_client_remove_takes_everything_that_lets_the_client_act(url, idp, db):
    org_id = insert(db, Organization, name="Acme")
    user_id = insert(db, User, org_id=org_id, public_id="p1", email="a@acme.example", password_hash="x")
    insert_client(db, "wiki")
    insert_client(db, "other")
    for serial, client_id in enumerate(("wiki", "other")):
        _grants_of(db, client_id, user_id, serial)
    registration = json.loads(ok(idp("client", "show", "wiki", "--json", database_url=url)).stdout)
    wiki_id = client_row(db, "wiki")["id"]

    result = ok(idp("client", "remove", "wiki", database_url=url))
    assert "1 token(s), 1 code(s), 1 consent(s) deleted, 1 login(s) in progress ended" in result.stdout

    assert client_row(db, "wiki") is None and client_row(db, "other") is not None
    for model in (AuthorizationCode, Token, ConsentGrant):
        assert [r["client_id"] for r in db.rows(model)] == ["other"]
    logins = {r["authz_request"]["params"]["client_id"]: r["expires_at"] for r in db.rows(LoginTransaction)}
    assert logins["wiki"] <= utcnow() < logins["other"]
    [event] = db.events("client.removed")
    assert (event["actor"], event["subject_id"]) == ("cli", wiki_id)
    registration.pop("created_at"), registration.pop("previous_secret_expires_at")  # (not registration settings)
    assert event["details"] == {**registration, "codes_deleted": 1, "tokens_deleted": 1, "consents_deleted": 1,
                                "logins_ended": 1}


# ---------------------------------------------------------------- org list, user list

def test_org_list_and_user_list(url, idp, db):
    acme = insert(db, Organization, name="Acme", require_2fa=True)
    insert(db, Organization, name="Beta")
    for serial, (email, values) in enumerate((
            ("admin@acme.example", {"role": "admin", "name": "Ada", "second_factor_count": 1}),
            ("bob@acme.example", {"disabled": True}),
            ("carl@acme.example", {"mfa_setting": "exempt"}))):
        insert(db, User, org_id=acme, public_id=f"p{serial}", email=email, password_hash="x", **values)

    orgs = json.loads(ok(idp("org", "list", "--json", database_url=url)).stdout)
    assert orgs == [{"id": acme, "name": "Acme", "users": 3, "require_2fa": True},
                    {"id": acme + 1, "name": "Beta", "users": 0, "require_2fa": False}]
    assert "Beta  (id" in ok(idp("org", "list", database_url=url)).stdout

    people = json.loads(ok(idp("user", "list", "--org", "Acme", "--json", database_url=url)).stdout)
    assert [{k: v for k, v in p.items() if k != "created_at"} for p in people] == [
        {"email": "admin@acme.example", "name": "Ada", "role": "admin", "disabled": False,
         "two_factor_status": "active_required"},
        {"email": "bob@acme.example", "name": "", "role": "user", "disabled": True,
         "two_factor_status": "required_not_set_up"},
        {"email": "carl@acme.example", "name": "", "role": "user", "disabled": False, "two_factor_status": "not_active"}]
    assert all(p["created_at"].endswith("Z") for p in people)
    text = ok(idp("user", "list", "--org", "Acme", database_url=url)).stdout
    assert "bob@acme.example  user  disabled  2FA required_not_set_up" in text


def test_user_list_refuses_an_unknown_organization(sqlite_only_url, idp):
    refused(idp("user", "list", "--org", "Nope", database_url=sqlite_only_url), "unknown organization 'Nope'")

