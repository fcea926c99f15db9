"""The `idp` command, run as a real subprocess against a real database (CONTRACT.md, "The `idp` command").

Every command: exit 0 on success; on bad input one line on stderr, a non-zero
exit and nothing written. Each test runs on SQLite and, when
IDP_TEST_DATABASE_URL is set, on PostgreSQL too.
"""
from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine

from fixtures.cli import Db, ok, refused

from idp.db import utcnow
from idp.models import Client, Organization, SigningKey, User
from idp.security.tokens import sha256_hex

PASSWORD = "correct horse battery"


# ---------------------------------------------------------------- helpers

@pytest.fixture
def acme(db):
    with db.engine.begin() as conn:
        conn.execute(Organization.__table__.insert().values(name="Acme", require_2fa=False, created_at=utcnow()))
    return "Acme"


def add_user(idp, url, *extra, email="alice@example.com", org="Acme", password=PASSWORD + "\n"):
    return idp("user", "add", "--org", org, "--email", email, "--password-stdin", *extra,
               database_url=url, input=password)


def add_client(idp, url, *extra):
    return idp("client", "add", "--name", "App", *extra, database_url=url)


# ---------------------------------------------------------------- the command itself

def test_help_needs_no_database(idp, tmp_path):
    result = ok(idp("--help", database_url="postgresql+psycopg://nobody@127.0.0.1:1/none"))
    for command in ("init", "serve", "org", "user", "client", "keys", "factor"):
        assert command in result.stdout
    # Where the settings come from, all three (cron jobs need IDP_CONFIG: docs/operations.md).
    assert all(source in result.stdout for source in ("config/default.toml", "IDP_CONFIG", "IDP_*"))


def test_the_installed_console_script_runs_commands_and_refuses_in_one_line(idp, sqlite_url):
    """The suite's other commands are forked from a server that did the imports
    (fixtures.cli_forks); this is the console script itself, as an operator runs it."""
    ok(idp("init", database_url=sqlite_url, fresh=True))
    assert "create one with `idp org add`" in ok(idp("org", "list", database_url=sqlite_url, fresh=True)).stdout
    refused(idp("org", "add", " ", database_url=sqlite_url, fresh=True), "empty")
    refused(idp("frobnicate", database_url=sqlite_url, fresh=True), "frobnicate")


def test_unknown_command_is_one_line(idp, sqlite_url):
    refused(idp("frobnicate", database_url=sqlite_url), "frobnicate")


def test_usage_error_is_one_line(idp, sqlite_url):
    refused(idp("user", "add", "--email", "a@example.com", database_url=sqlite_url), "--org")


def test_unreachable_database_is_one_line(idp):
    refused(idp("init", database_url="postgresql+psycopg://nobody@127.0.0.1:1/none"), "database")


def test_bad_configuration_is_one_line(idp, sqlite_url):
    refused(idp("init", database_url=sqlite_url, env={"IDP_ENV": "production"}), "configuration")


# What Python makes of the bytes b"a\xff" on a command line (PEP 383): a lone surrogate.
NOT_UTF8 = "a\udcff"


@pytest.mark.parametrize("args", [
    ("user", "add", "--org", NOT_UTF8, "--email", "a@example.com", "--password-stdin"),
    ("user", "list", "--org", NOT_UTF8),
    ("policy", "show", "--org", NOT_UTF8),
    ("policy", "require-all", "--org", NOT_UTF8, "on"),
    ("policy", "user", NOT_UTF8, "--require"),
    ("policy", "user", "alice@example.com", "--exempt", "--reason", NOT_UTF8),
    ("keys", "withdraw", NOT_UTF8),
    ("client", "add", "--name", "App", "--redirect-uri", "https://a.example/cb",
     "--backchannel-logout-uri", f"https://a.example/bc{NOT_UTF8}"),
    ("client", "add", "--name", "App", "--redirect-uri", "https://a.example/cb", "--jwks-uri",
     f"https://a.example/jwks{NOT_UTF8}"),
    ("org", "add", NOT_UTF8, "--help"),  # refused before anything else, help included
])
def test_a_command_line_that_is_not_utf8_is_refused_in_one_line(sqlite_only_url, idp, db, acme, args):
    before = db.counts()
    refused(idp(*args, database_url=sqlite_only_url, input=PASSWORD + "\n"), "command line is not UTF-8")
    assert db.counts() == before


def test_the_console_script_refuses_argument_bytes_that_are_not_utf8(sqlite_only_url, db, acme):
    import subprocess

    from fixtures.cli import Result, clean_env, idp_command

    args = [b"user", b"list", b"--org", b"a\xff"]
    completed = subprocess.run(idp_command() + args, capture_output=True, env=clean_env(sqlite_only_url, None),
                               timeout=60)
    refused(Result(tuple(map(repr, args)), completed.returncode, completed.stdout.decode(),
                   completed.stderr.decode()), "command line is not UTF-8")


def test_an_encoding_error_past_the_command_line_is_one_line_too():
    """The backstop: text from elsewhere (a file, a plugin's input) that cannot be encoded."""
    from idp.cli import _refusal

    assert _refusal(UnicodeEncodeError("utf-8", NOT_UTF8, 1, 2, "surrogates not allowed")) == (
        "input that is not UTF-8 text")


# ---------------------------------------------------------------- init

def test_init_migrates_and_creates_signing_keys(database_url, idp):
    first = ok(idp("init", database_url=database_url))
    assert "0001_initial" in first.stdout and "created signing key" in first.stdout
    db = Db(database_url)
    keys_before = db.rows(SigningKey)
    assert {k["alg"] for k in keys_before} >= {"ES256"}

    second = ok(idp("init", database_url=database_url))
    assert "created signing key" not in second.stdout
    assert db.rows(SigningKey) == keys_before
    [event] = db.events("signing_key.created")  # the first run's keys, audited once
    assert event["actor"] == "cli" and {k["kid"] for k in event["details"]["keys"]} == {k["kid"] for k in keys_before}
    db.engine.dispose()


def test_init_refuses_a_database_at_a_revision_it_does_not_know_in_one_line(database_url, idp):
    """A newer build's database (an upgrade rolled back), or another application's Alembic
    history: one line naming the revision and nothing changed, not Alembic's traceback."""
    from sqlalchemy import text

    ok(idp("init", database_url=database_url))
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0002_from_the_future'"))
    result = refused(idp("init", database_url=database_url), "revision '0002_from_the_future'")
    assert "does not know" in result.stderr and "Traceback" not in result.stderr
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT version_num FROM alembic_version")) == "0002_from_the_future"
    engine.dispose()


def test_init_leaves_a_schema_that_matches_the_models(url):
    from idp.schema import current_revision, differences, head_revision

    assert current_revision(url) == head_revision()
    assert differences(url) == [], "the migration is stale: run `make migration`"


def test_init_refuses_an_sqlite_database_whose_users_table_would_reuse_ids(sqlite_url, idp):
    """A database made before the users table was AUTOINCREMENT (the one revision rewritten in
    place) passed Alembic's comparison, which does not see it, and gave a deleted user's id to
    the next user (idp.users.delete): it is a difference, which `idp init` names."""
    import sqlite3

    from idp.schema import differences

    ok(idp("init", database_url=sqlite_url))
    path = sqlite_url.removeprefix("sqlite:///")
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA writable_schema = ON")  # the table as the earlier build created it
    connection.execute("UPDATE sqlite_master SET sql = replace(sql, ' AUTOINCREMENT', '') WHERE name = 'users'")
    connection.commit()
    connection.close()

    assert differences(sqlite_url) == [("modify_sqlite_autoincrement", "users", True)]
    refused(idp("init", database_url=sqlite_url), "earlier build", "modify_sqlite_autoincrement users")


# ---------------------------------------------------------------- org

def test_org_add(url, idp, db):
    result = ok(idp("org", "add", "  Acme Corp  ", "--json", database_url=url))
    document = json.loads(result.stdout)
    assert document["name"] == "Acme Corp"
    assert [r["name"] for r in db.rows(Organization)] == ["Acme Corp"]
    assert db.events("org.created")[0]["actor"] == "cli"


@pytest.mark.parametrize("name, message", [("", "empty"), ("   ", "empty"), ("x" * 201, "longer")])
def test_org_add_refuses_bad_names(sqlite_only_url, idp, db, name, message):
    before = db.counts()
    refused(idp("org", "add", name, database_url=sqlite_only_url), message)
    assert db.counts() == before


def test_org_add_refuses_a_duplicate(url, idp, db, acme):
    before = db.counts()
    refused(idp("org", "add", "Acme", database_url=url), "already exists")
    assert db.counts() == before


# ---------------------------------------------------------------- user

def test_user_add(url, idp, db, acme):
    result = ok(add_user(idp, url, "--name", "Alice", "--json", email="  Alice@Example.COM "))
    document = json.loads(result.stdout)
    assert document["email"] == "alice@example.com" and document["role"] == "user"
    (row,) = db.rows(User)
    assert row["email"] == "alice@example.com" and row["name"] == "Alice"
    assert row["password_hash"].startswith("$argon2id$") and PASSWORD not in row["password_hash"]
    assert row["public_id"] == document["sub"] and "alice" not in row["public_id"]
    (event,) = db.events("user.created")
    assert event["actor"] == "cli" and event["subject_id"] == row["id"]


@pytest.mark.parametrize("command", ["add", "set-password"])
def test_user_passwords_are_hashed_with_no_transaction_open(url, idp, db, acme, monkeypatch, command):
    """The command's checks (the organization, the user) read in a transaction, which on SQLite
    holds the database's write lock: the servers' every request waited through argon2 (and
    through an operator typing the password). A refused password is not hashed at all."""
    from fixtures.cli import run_idp_here
    from fixtures.database import writes_while_calling

    from idp.security.passwords import Passwords

    if command == "set-password":
        ok(add_user(idp, url))
    args = (("user", "add", "--org", "Acme", "--email", "alice@example.com") if command == "add"
            else ("user", "set-password", "--email", "alice@example.com")) + ("--password-stdin",)
    while_hashing = writes_while_calling(Passwords, "hash", url, monkeypatch)
    before = db.counts()
    assert run_idp_here(*args, database_url=url, monkeypatch=monkeypatch, input="short\n") == 1
    assert while_hashing == [] and db.counts() == before
    assert run_idp_here(*args, database_url=url, monkeypatch=monkeypatch, input="another long password\n") == 0
    assert while_hashing == [True]
    assert len(db.events("user.created" if command == "add" else "user.password_changed")) == 1


def test_user_add_admin(url, idp, db, acme):
    ok(add_user(idp, url, "--admin"))
    assert db.rows(User)[0]["role"] == "admin"


def test_user_set_password_disable_enable(url, idp, db, acme):
    """The operator's door to idp.users: each change audited once (actor cli), no event for a no-op.
    (What the changes end, sessions and tokens, is tested over HTTP: test_account_lifecycle.py.)"""
    ok(add_user(idp, url))
    (before,) = db.rows(User)
    result = ok(idp("user", "set-password", "--email", "Alice@Example.com", "--password-stdin",
                    database_url=url, input="another long password\n"))
    assert "new password for alice@example.com" in result.stdout
    (after,) = db.rows(User)
    assert after["password_hash"] != before["password_hash"] and after["password_hash"].startswith("$argon2id$")
    (event,) = db.events("user.password_changed")
    assert event["actor"] == "cli" and event["details"]["by"] == "cli" and event["subject_id"] == after["id"]

    assert "is disabled" in ok(idp("user", "disable", "--email", "alice@example.com", database_url=url)).stdout
    assert "already disabled" in ok(idp("user", "disable", "--email", "alice@example.com", database_url=url)).stdout
    assert db.rows(User)[0]["disabled"] is True and len(db.events("user.disabled")) == 1
    assert "is enabled" in ok(idp("user", "enable", "--email", "alice@example.com", database_url=url)).stdout
    assert "was not disabled" in ok(idp("user", "enable", "--email", "alice@example.com", database_url=url)).stdout
    assert db.rows(User)[0]["disabled"] is False and len(db.events("user.enabled")) == 1


def test_a_password_may_hold_any_character_a_keyboard_types(sqlite_only_url, idp, db, acme):
    """A non-breaking space (French keyboards type one before ':'), an ideographic space, an emoji
    sequence: refused as \"control characters\" by str.isprintable until now."""
    ok(add_user(idp, sqlite_only_url, password="mot\u00a0de passe\u3000👩\u200d👧\n"))


def test_user_set_role_never_leaves_an_organization_without_an_admin(url, idp, db, acme):
    ok(add_user(idp, url, "--admin", email="boss@example.com"))
    ok(add_user(idp, url, email="alice@example.com"))
    refused(idp("user", "set-role", "--email", "boss@example.com", "--role", "user", database_url=url),
            "only administrator")
    refused(idp("user", "disable", "--email", "boss@example.com", database_url=url), "only administrator")
    assert "alice@example.com is now an admin" in ok(
        idp("user", "set-role", "--email", "alice@example.com", "--role", "admin", database_url=url)).stdout
    assert "already was an admin" in ok(
        idp("user", "set-role", "--email", "alice@example.com", "--role", "admin", database_url=url)).stdout
    ok(idp("user", "set-role", "--email", "boss@example.com", "--role", "user", database_url=url))
    assert {r["email"]: r["role"] for r in db.rows(User)} == {"boss@example.com": "user", "alice@example.com": "admin"}
    refused(idp("user", "disable", "--email", "alice@example.com", database_url=url), "only administrator")
    assert [(e["details"]["from"], e["details"]["to"], e["actor"]) for e in db.events("user.role_changed")] == [
        ("user", "admin", "cli"), ("admin", "user", "cli")]


@pytest.mark.parametrize("args, password, message", [
    (("set-password", "--email", "nobody@example.com", "--password-stdin"), "another long password\n", "no user"),
    (("set-password", "--email", "alice@example.com", "--password-stdin"), "short\n", "at least 8"),
    (("set-password", "--email", "alice@example.com", "--password-stdin"), "bell\a in it ok\n", "control characters"),
    (("set-password", "--email", "alice@example.com", "--password-stdin"), "        \n", "only spaces"),
    (("set-password", "--email", "alice@example.com"), "another long password\n", "--password-stdin"),
    (("disable", "--email", "nobody@example.com"), "", "no user"),
    (("enable", "--email", "not-an-email"), "", "invalid e-mail"),
])
def test_user_changes_refuse_bad_input(sqlite_only_url, idp, db, acme, args, password, message):
    ok(add_user(idp, sqlite_only_url))
    before, rows = db.counts(), db.rows(User)
    refused(idp("user", *args, database_url=sqlite_only_url, input=password), message)
    assert db.counts() == before and db.rows(User) == rows


def test_password_never_in_argv(sqlite_only_url, idp):
    result = idp("user", "add", "--org", "Acme", "--email", "a@example.com", "--password", PASSWORD,
                 database_url=sqlite_only_url)
    refused(result)


@pytest.mark.parametrize("extra, kwargs, message", [
    ((), {"email": "not-an-email"}, "invalid e-mail"),
    ((), {"email": "a@b"}, "invalid e-mail"),
    ((), {"email": "a b@example.com"}, "invalid e-mail"),
    ((), {"email": "a@exa_mple.com"}, "invalid e-mail"),
    ((), {"org": "Nope"}, "unknown organization"),
    ((), {"password": ""}, "no password"),
    ((), {"password": "short\n"}, "at least"),
    (("--name", "x" * 201), {}, "at most 200"),
])
def test_user_add_refuses_bad_input(sqlite_only_url, idp, db, acme, extra, kwargs, message):
    before = db.counts()
    refused(add_user(idp, sqlite_only_url, *extra, **kwargs), message)
    assert db.counts() == before


def test_user_add_requires_password_stdin(sqlite_only_url, idp, db, acme):
    before = db.counts()
    result = idp("user", "add", "--org", "Acme", "--email", "a@example.com", database_url=sqlite_only_url,
                 input=PASSWORD + "\n")
    refused(result, "--password-stdin")
    assert db.counts() == before


def test_user_add_refuses_a_password_that_is_not_utf8_text(sqlite_only_url, db, acme):
    import subprocess

    from fixtures.cli import Result, clean_env, idp_command

    before = db.counts()
    args = ["user", "add", "--org", "Acme", "--email", "a@example.com", "--password-stdin"]
    completed = subprocess.run(idp_command() + args, input=b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\n",
                               capture_output=True, env=clean_env(sqlite_only_url, None), timeout=60)
    refused(Result(tuple(args), completed.returncode, completed.stdout.decode(), completed.stderr.decode()),
            "not UTF-8")
    assert db.counts() == before


@pytest.mark.parametrize("args, message", [
    (("user", "add", "--org", "Acme", "--email", "b@example.com", "--password-stdin"), "stdin is closed"),
    (("user", "set-password", "--email", "alice@example.com", "--password-stdin"), "stdin is closed"),
    (("client", "add", "--name", "App", "--jwks", "-"), "stdin is closed"),
    (("factor", "totp", "import", "--user", "alice@example.com", "--secret-stdin"), "standard input is closed"),
], ids=["user-add", "set-password", "client-add-jwks", "totp-import"])
def test_a_closed_stdin_is_one_line_and_writes_nothing(sqlite_only_url, idp, db, acme, args, message):
    """`<&-`: Python has no sys.stdin at all (was an AttributeError or RuntimeError traceback)."""
    import os
    import subprocess

    from fixtures.cli import Result, clean_env, idp_command

    ok(add_user(idp, sqlite_only_url))
    before = db.counts()
    completed = subprocess.run(idp_command() + list(args), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               env=clean_env(sqlite_only_url, None), timeout=60, preexec_fn=lambda: os.close(0))
    refused(Result(args, completed.returncode, completed.stdout, completed.stderr), message)
    assert db.counts() == before


def test_user_add_refuses_a_duplicate_email_in_any_case(url, idp, db, acme):
    ok(add_user(idp, url))
    before = db.counts()
    refused(add_user(idp, url, email="ALICE@example.com"), "already exists")
    assert db.counts() == before


# ---------------------------------------------------------------- client

def test_client_add_confidential(url, idp, db):
    result = ok(add_client(idp, url, "--redirect-uri", "https://app.example/cb",
                           "--redirect-uri", "http://127.0.0.1:8000/cb",
                           "--post-logout-redirect-uri", "https://app.example/"))
    document = json.loads(result.stdout)
    assert set(document) == {"client_id", "client_secret"}
    (row,) = db.rows(Client)
    assert row["client_id"] == document["client_id"]
    assert row["secret_hash"] == sha256_hex(document["client_secret"])  # stored hashed, never plain
    assert len(document["client_secret"]) >= 43  # 32 random bytes, urlsafe
    assert row["redirect_uris"] == ["https://app.example/cb", "http://127.0.0.1:8000/cb"]
    assert row["post_logout_redirect_uris"] == ["https://app.example/"]
    assert row["grant_types"] == ["authorization_code", "refresh_token"]
    assert not row["public"] and not row["first_party"]
    assert db.events("client.created")[0]["actor"] == "cli"


def test_client_add_public_first_party(url, idp, db):
    result = ok(add_client(idp, url, "--redirect-uri", "http://localhost:9000/cb", "--public", "--first-party"))
    document = json.loads(result.stdout)
    assert set(document) == {"client_id"}
    (row,) = db.rows(Client)
    assert row["public"] and row["first_party"] and row["secret_hash"] is None


def test_client_created_event_records_every_security_setting(url, idp, db):
    """An admin reading the log can tell what was registered: who may get tokens through the
    client (its redirect and logout URIs, grants, scopes), how it authenticates and signs."""
    confidential = json.loads(ok(add_client(idp, url, "--redirect-uri", "https://app.example/cb",
                                            "--post-logout-redirect-uri", "https://app.example/",
                                            "--first-party", "--id-token-alg", "RS256")).stdout)
    public = json.loads(ok(add_client(idp, url, "--redirect-uri", "http://localhost:9000/cb", "--public")).stdout)
    created = {e["details"]["client_id"]: e for e in db.events("client.created")}
    assert created[confidential["client_id"]]["details"] == {
        "client_id": confidential["client_id"], "name": "App", "public": False, "first_party": True,
        "token_endpoint_auth_methods": ["client_secret_basic", "client_secret_post"],
        "grant_types": ["authorization_code", "refresh_token"], "redirect_uris": ["https://app.example/cb"],
        "post_logout_redirect_uris": ["https://app.example/"], "scope": "openid profile email offline_access",
        "id_token_alg": "RS256", "backchannel_logout_uri": None, "frontchannel_logout_uri": None,
        "jwk_thumbprints": [],
        "jwks_uri": None, "require_pushed_authorization_requests": False, "dpop_bound_access_tokens": False}
    details = created[public["client_id"]]["details"]
    assert (details["public"], details["token_endpoint_auth_methods"], details["id_token_alg"]) == (
        True, ["none"], "ES256")
    assert all(e["actor"] == "cli" for e in created.values())


def test_client_add_client_credentials_only(url, idp, db):
    result = ok(add_client(idp, url, "--grant-type", "client_credentials"))
    assert "client_secret" in json.loads(result.stdout)
    assert db.rows(Client)[0]["grant_types"] == ["client_credentials"]


@pytest.mark.parametrize("extra, message", [
    (("--redirect-uri", "https://a.example/cb", "--grant-type", "password"), "unknown grant type"),
    (("--redirect-uri", "https://a.example/cb", "--grant-type", "implicit"), "unknown grant type"),
    (("--redirect-uri", "/callback"), "absolute"),
    (("--redirect-uri", "ftp://a.example/cb"), "absolute"),
    (("--redirect-uri", "https:///cb"), "absolute"),
    (("--redirect-uri", "https://a.example/cb#frag"), "fragment"),
    (("--redirect-uri", "https://a.example/cb", "--redirect-uri", "https://a.example/x#"), "fragment"),
    (("--redirect-uri", "https://a.example:99999/cb"), "not a uri"),
    (("--redirect-uri", "https://*.example/cb"), "not a host name"),            # no wildcards: exact matching
    (("--redirect-uri", "https://bücher.example/cb"), "xn--"),
    (("--redirect-uri", "https://a.example@evil.example/cb"), "user name or password"),  # reads as a.example
    (("--redirect-uri", "https://a.example/cb", "--post-logout-redirect-uri", "https://u:p@a.example/"),
     "user name or password"),
    (("--redirect-uri", "https://a.example/cb", "--post-logout-redirect-uri", "logout"), "post-logout"),
    ((), "redirect-uri"),
    (("--redirect-uri", "https://a.example/cb", "--public", "--grant-type", "client_credentials"), "public"),
    (("--redirect-uri", "https://a.example/cb", "--grant-type", "refresh_token"), "authorization_code"),
    (("--redirect-uri", "https://a.example/cb", "--id-token-alg", "HS256"), "algorithm"),
    # Control characters would reach the terminal of whoever lists the clients (ESC sequences).
    # An empty value is refused, never taken for the default (nor, for --jwks-uri, for no keys).
    (("--redirect-uri", "https://a.example/cb", "--id-token-alg", ""), "algorithm ''"),
    (("--grant-type", "client_credentials", "--jwks-uri", ""), "invalid jwks_uri ''"),
    (("--redirect-uri", "https://a.example/cb", "--backchannel-logout-uri", ""), "back-channel logout uri ''"),
    (("--redirect-uri", "https://a.example/cb", "--post-logout-redirect-uri", ""), "post-logout redirect uri ''"),
    (("--redirect-uri", ""), "redirect uri ''"),
    (("--redirect-uri", "https://a.example/cb\x01"), "control characters"),
    (("--redirect-uri", "https://a.example/\x1b[2J\x1b[31mcb"), "control characters"),
    (("--redirect-uri", "https://a.example/cb", "--post-logout-redirect-uri", "https://a.example/\x9b2J"),
     "control characters"),
    (("--redirect-uri", "https://a.example/cb", "--backchannel-logout-uri", "https://a.example/bc\x07"),
     "control characters"),
    (("--grant-type", "client_credentials", "--jwks-uri", "https://a.example/jwks\x1b"), "control characters"),
    (("--redirect-uri", "https://a.example/cb\u2028"), "spaces"),
    (("--redirect-uri", "https://a.example/" + "x" * 100_000), "longer than 2000 characters"),
    (tuple(arg for n in range(51) for arg in ("--redirect-uri", f"https://a.example/cb{n}")), "at most 50 redirect"),
    (("--redirect-uri", "https://a.example/cb",
      *(arg for n in range(51) for arg in ("--post-logout-redirect-uri", f"https://a.example/{n}"))),
     "at most 50 post-logout"),
])
def test_client_add_refuses_bad_input(sqlite_only_url, idp, db, extra, message):
    before = db.counts()
    refused(add_client(idp, sqlite_only_url, *extra), message)
    assert db.counts() == before


@pytest.mark.parametrize("uri", ["http://my_app:8000/cb", "http://[::1]:8080/cb", "https://xn--bcher-kva.example/cb",
                                 "https://10.0.0.7/cb"])
def test_client_add_accepts_container_names_ip_literals_and_punycode(sqlite_only_url, idp, db, uri):
    ok(add_client(idp, sqlite_only_url, "--redirect-uri", uri))
    assert db.rows(Client)[0]["redirect_uris"] == [uri]


def test_production_accepts_http_redirect_uris_only_on_loopback(sqlite_url, idp):
    """RFC 9700 2.1: https, but for a native app's loopback server (RFC 8252 7.3)."""
    env = {"IDP_ENV": "production", "IDP_ISSUER": "https://idp.example", "IDP_SECRET_KEY": "s" * 40,
           "IDP_SECURITY__ENCRYPTION_KEYS": '["k1:' + "A" * 43 + '"]', "IDP_MAIL__HOST": "smtp.internal", "IDP_MAIL__STARTTLS": "true",
           "IDP_SECURITY__ARGON2_MEMORY_COST": "7168", "IDP_SECURITY__ARGON2_TIME_COST": "5"}
    ok(idp("init", database_url=sqlite_url, env=env))
    refused(idp("client", "add", "--name", "App", "--redirect-uri", "http://app.example/cb", database_url=sqlite_url,
                env=env), "use https")
    for uri in ("https://app.example/cb", "http://127.0.0.1:7000/cb", "http://localhost/cb", "http://[::1]/cb"):
        ok(idp("client", "add", "--name", "App", "--public", "--redirect-uri", uri, database_url=sqlite_url, env=env))


def test_production_commands_say_nothing_of_the_sender_a_server_warns_of(sqlite_url, idp):
    """The warning of a sender no relay delivers (the default, idp@localhost: test_mail_sender) is a
    server's, at start: the other commands' stderr holds their one-line errors alone."""
    env = {"IDP_ENV": "production", "IDP_ISSUER": "https://idp.example", "IDP_SECRET_KEY": "s" * 40,
           "IDP_SECURITY__ENCRYPTION_KEYS": '["k1:' + "A" * 43 + '"]', "IDP_MAIL__HOST": "smtp.internal",
           "IDP_MAIL__STARTTLS": "true", "IDP_SECURITY__ARGON2_MEMORY_COST": "7168",
           "IDP_SECURITY__ARGON2_TIME_COST": "5"}
    assert "mail.sender" not in ok(idp("init", database_url=sqlite_url, env=env)).stderr


def test_a_refused_uri_is_quoted_escaped_and_short(sqlite_only_url, idp):
    result = refused(add_client(idp, sqlite_only_url, "--redirect-uri", "https://a.example/\x1b]0;" + "x" * 5000),
                     "longer than 2000 characters")
    assert len(result.stderr) < 300 and "\x1b" not in result.stderr and "\\x1b" in result.stderr


def test_client_add_takes_50_redirect_uris_of_2000_characters(sqlite_only_url, idp, db):
    uris = [f"https://a.example/{n:02}" + "x" * (2000 - 20) for n in range(50)]
    ok(add_client(idp, sqlite_only_url, *(arg for uri in uris for arg in ("--redirect-uri", uri))))
    assert db.rows(Client)[0]["redirect_uris"] == uris


def test_client_add_refuses_an_empty_name(sqlite_only_url, idp, db):
    before = db.counts()
    refused(idp("client", "add", "--name", " ", "--redirect-uri", "https://a.example/cb", database_url=sqlite_only_url),
            "empty")
    assert db.counts() == before


# ---------------------------------------------------------------- keys

def test_keys_list_and_rotate(url, idp, db):
    listed = json.loads(ok(idp("keys", "list", "--json", database_url=url)).stdout)
    assert listed and all(k["status"] in ("active", "published") for k in listed)
    assert {"kid", "alg", "created_at", "retired_at", "remove_after", "status"} <= set(listed[0])
    assert ok(idp("keys", "list", database_url=url)).stdout.count("\n") == len(listed)

    rotated = json.loads(ok(idp("keys", "rotate", "--json", database_url=url)).stdout)
    assert rotated and not {k["kid"] for k in rotated} & {k["kid"] for k in listed}
    after = json.loads(ok(idp("keys", "list", "--json", database_url=url)).stdout)
    assert len(after) == len(listed) + len(rotated)  # old keys stay published
    old = [k for k in after if k["kid"] in {k["kid"] for k in listed}]
    assert all(k["retired_at"] and k["remove_after"] for k in old)
    (event,) = db.events("signing_key.rotated")
    assert event["actor"] == "cli" and {k["kid"] for k in event["details"]["new_keys"]} == {
        k["kid"] for k in rotated}
    # When the rotation takes effect, which the text said nowhere (only --json's activates_at).
    published = {k["kid"]: k["activates_at"] for k in after if k["status"] == "published"}
    text = ok(idp("keys", "list", database_url=url)).stdout
    assert published and all(f"signs from {at}" in text for at in published.values())
    again = ok(idp("keys", "rotate", database_url=url)).stdout
    assert again.count("; it signs from 20") == len(rotated)


def test_keys_rotate_generates_its_keys_with_no_transaction_open(url, db, monkeypatch):
    """Generating a key (an RSA key: tens to hundreds of milliseconds) came after the rotation's
    first read had begun its transaction, which on SQLite holds the database's write lock."""
    from fixtures.cli import run_idp_here
    from fixtures.database import writes_while_calling

    from idp.oidc import keys

    while_generating = writes_while_calling(keys, "_generate", url, monkeypatch)
    before = db.counts()
    assert run_idp_here("keys", "rotate", database_url=url, monkeypatch=monkeypatch) == 0
    assert while_generating == [True] * len(keys.SUPPORTED_ALGS)
    assert db.counts()["signing_keys"] == before["signing_keys"] + len(keys.SUPPORTED_ALGS)
    assert len(db.events("signing_key.rotated")) == 1


def test_keys_rotate_secrets(url, idp, db):
    result = ok(idp("keys", "rotate-secrets", database_url=url))
    assert "resealed" in result.stdout
    assert not db.events("secrets.resealed")  # every row was sealed with the current key: no change, no event


def test_keys_rotate_secrets_reseals_under_a_new_key(database_url, idp):
    import base64
    import os

    def key(name):
        return f"{name}:" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")

    k1, k2 = key("k1"), key("k2")
    ok(idp("init", database_url=database_url, env={"IDP_SECURITY__ENCRYPTION_KEYS": f'["{k1}"]'}))
    db = Db(database_url)
    assert {k["secret_key_id"] for k in db.rows(SigningKey)} == {"k1"}
    # A new key goes first; the old one stays in the ring until every row is resealed.
    ok(idp("keys", "rotate-secrets", database_url=database_url,
           env={"IDP_SECURITY__ENCRYPTION_KEYS": f'["{k2}", "{k1}"]'}))
    assert {k["secret_key_id"] for k in db.rows(SigningKey)} == {"k2"}
    [event] = db.events("secrets.resealed")
    assert event["actor"] == "cli" and event["details"]["signing_keys"] == len(db.rows(SigningKey))
    db.engine.dispose()


def test_keys_rotate_refuses_a_key_ring_that_cannot_open_the_keys_in_use(sqlite_url, idp):
    """Run with another ring, rotate sealed new keys the servers could not open: five minutes
    later (the publish delay) every token request was a 500."""
    import base64
    import os

    def key(name):
        return f"{name}:" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")

    k1, k3 = key("k1"), key("k3")
    ok(idp("init", database_url=sqlite_url, env={"IDP_SECURITY__ENCRYPTION_KEYS": f'["{k1}"]'}))
    db = Db(sqlite_url)
    before = db.rows(SigningKey)
    refused(idp("keys", "rotate", database_url=sqlite_url, env={"IDP_SECURITY__ENCRYPTION_KEYS": f'["{k3}"]'}),
            "cannot open signing key", "'k1'")
    assert db.rows(SigningKey) == before and not db.events("signing_key.rotated")
    ok(idp("keys", "rotate", database_url=sqlite_url, env={"IDP_SECURITY__ENCRYPTION_KEYS": f'["{k3}", "{k1}"]'}))
    db.engine.dispose()


# ---------------------------------------------------------------- factor, demo

def test_factor_group_lists_plugin_commands(url, idp):
    ok(idp("factor", "--help", database_url=url))


def test_demo_seed_is_idempotent(url, idp, db, tmp_path):
    rp_config = tmp_path / "rp.json"
    first = json.loads(ok(idp("demo", "seed", "--json", "--rp-config", str(rp_config), database_url=url)).stdout)
    emails = {u["email"]: u for u in first["users"]}
    assert set(emails) == {"admin@demo.example", "user@demo.example"}
    assert emails["admin@demo.example"]["role"] == "admin"
    saved = json.loads(rp_config.read_text())
    assert saved["client_id"] == first["client"]["client_id"]
    assert first["client"]["redirect_uri"] == "http://127.0.0.1:5001/callback"
    counts = db.counts()

    second = json.loads(ok(idp("demo", "seed", "--json", "--rp-config", str(rp_config), database_url=url)).stdout)
    assert second["client"] == first["client"]  # same client, same (still valid) secret
    assert {k: v for k, v in db.counts().items() if k != "audit_events"} == {
        k: v for k, v in counts.items() if k != "audit_events"}
    assert second["device_client"] == first["device_client"]
    client, device = sorted(db.rows(Client), key=lambda row: row["name"] != "Demo relying party")
    assert client["secret_hash"] == sha256_hex(second["client"]["client_secret"])
    assert (device["client_id"], device["public"], device["secret_hash"]) == (
        first["device_client"]["client_id"], True, None)

    rp_config.unlink()  # the secret is lost: seeding again issues a new one for the same client
    third = json.loads(ok(idp("demo", "seed", "--json", "--rp-config", str(rp_config), database_url=url)).stdout)
    assert third["client"]["client_id"] == first["client"]["client_id"]
    assert db.rows(Client, Client.client_id == first["client"]["client_id"])[0]["secret_hash"] == sha256_hex(
        third["client"]["client_secret"])


def test_demo_seed_records_a_change_of_the_clients_uris(url, idp, db, tmp_path):
    """Seeding again with another --rp-url moves the demo client's redirect and logout URIs (its
    front-channel logout URI too): a
    change to who may receive its codes, recorded with what it was and what it became."""
    rp_config = tmp_path / "rp.json"
    ok(idp("demo", "seed", "--rp-config", str(rp_config), database_url=url))
    ok(idp("demo", "seed", "--rp-config", str(rp_config), database_url=url))
    assert db.events("client.updated") == []  # nothing changed
    ok(idp("demo", "seed", "--rp-config", str(rp_config), "--rp-url", "http://127.0.0.1:6001", database_url=url))
    [event] = db.events("client.updated")
    (client,) = db.rows(Client, Client.name == "Demo relying party")
    assert (event["actor"], event["subject_id"]) == ("cli", client["id"])
    assert event["details"] == {"client_id": client["client_id"], "changes": {
        "redirect_uris": {"from": ["http://127.0.0.1:5001/callback"], "to": ["http://127.0.0.1:6001/callback"]},
        "post_logout_redirect_uris": {"from": ["http://127.0.0.1:5001/"], "to": ["http://127.0.0.1:6001/"]},
        "frontchannel_logout_uri": {"from": "http://127.0.0.1:5001/frontchannel-logout",
                                    "to": "http://127.0.0.1:6001/frontchannel-logout"}}}


def test_demo_seed_never_leaves_the_database_with_a_secret_no_file_holds(url, idp, db, tmp_path):
    """The secret used to be rotated and committed before the file was written: when it could not
    be, the working secret was dead and the new one lost."""
    rp_config = tmp_path / "rp.json"
    first = json.loads(ok(idp("demo", "seed", "--json", "--rp-config", str(rp_config), database_url=url)).stdout)
    (tmp_path / "a-file").write_text("")
    unwritable = tmp_path / "a-file" / "rp.json"  # (a directory that cannot be: the test may run as root)
    before, events = db.rows(Client), db.counts()["audit_events"]

    refused(idp("demo", "seed", "--rp-config", str(unwritable), database_url=url), "cannot write", str(unwritable))
    assert db.rows(Client) == before and db.counts()["audit_events"] == events  # not rotated
    assert json.loads(rp_config.read_text())["client_secret"] == first["client"]["client_secret"]
    (client,) = db.rows(Client, Client.client_id == first["client"]["client_id"])
    assert client["secret_hash"] == sha256_hex(first["client"]["client_secret"])


def test_demo_seed_takes_a_config_that_is_not_a_json_object_for_none(url, idp, db, tmp_path):
    rp_config = tmp_path / "rp.json"
    first = json.loads(ok(idp("demo", "seed", "--json", "--rp-config", str(rp_config), database_url=url)).stdout)
    rp_config.write_text("[]")
    again = json.loads(ok(idp("demo", "seed", "--json", "--rp-config", str(rp_config), database_url=url)).stdout)
    assert again["client"]["client_id"] == first["client"]["client_id"]
    assert again["client"]["client_secret"] != first["client"]["client_secret"]  # not known: issued again
    saved = json.loads(rp_config.read_text())
    (client,) = db.rows(Client, Client.client_id == first["client"]["client_id"])
    assert client["secret_hash"] == sha256_hex(saved["client_secret"]) == sha256_hex(again["client"]["client_secret"])
    assert rp_config.stat().st_mode & 0o777 == 0o600
    assert [path.name for path in tmp_path.iterdir() if "rp.json" in path.name] == ["rp.json"]  # none staged left


def test_demo_seed_is_refused_in_production(sqlite_url, idp):
    env = {"IDP_ENV": "production", "IDP_ISSUER": "https://idp.example", "IDP_SECRET_KEY": "s" * 40,
           "IDP_SECURITY__ENCRYPTION_KEYS": '["k1:' + "A" * 43 + '"]', "IDP_MAIL__HOST": "smtp.internal", "IDP_MAIL__STARTTLS": "true",
           # production refuses the fixture's fast argon2: the cheapest row of OWASP's table
           "IDP_SECURITY__ARGON2_MEMORY_COST": "7168", "IDP_SECURITY__ARGON2_TIME_COST": "5"}
    ok(idp("init", database_url=sqlite_url, env=env))
    refused(idp("demo", "seed", database_url=sqlite_url, env=env), "production")


# ---------------------------------------------------------------- serve

def test_serve_answers_until_stopped(sqlite_only_url):
    import requests

    from fixtures.cli import start_serving

    server, base = start_serving(sqlite_only_url)
    try:
        response = requests.get(f"{base}/.well-known/openid-configuration", timeout=2)
        assert response.status_code == 200
        assert response.json()["issuer"] == base
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_serve_refuses_a_bad_port(sqlite_only_url, idp):
    refused(idp("serve", "--port", "70000", database_url=sqlite_only_url), "port")


def test_init_refuses_a_database_made_by_an_earlier_build_of_the_schema(sqlite_only_url, idp):
    """Before the first release the one revision is rewritten: a database made by an earlier build
    sat "at head" without the newest columns, and idp init said all was well."""
    with create_engine(sqlite_only_url).begin() as conn:
        conn.exec_driver_sql("ALTER TABLE users DROP COLUMN tokens_valid_after")
    refused(idp("init", database_url=sqlite_only_url), "earlier build", "users.tokens_valid_after", "recreate")


def _schema_check(url):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "idp.schema", "check", url], capture_output=True, text=True,
                          timeout=120)


def test_schema_check_tells_an_operator_what_is_wrong_in_one_line(sqlite_only_url, tmp_path):
    """README offers `python -m idp.schema check URL` to an operator beside `idp init`: it told them
    to `make migration` (a developer's step, impossible from a wheel) for a database made by an
    earlier build, and answered an unknown revision or an unreachable database with a traceback."""
    with create_engine(sqlite_only_url).begin() as conn:
        conn.exec_driver_sql("ALTER TABLE users DROP COLUMN tokens_valid_after")
    older = _schema_check(sqlite_only_url)
    assert older.returncode == 1 and "earlier build" in older.stderr and "recreate" in older.stderr
    with create_engine(sqlite_only_url).begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0002_from_the_future'")
    newer = _schema_check(sqlite_only_url)
    assert newer.returncode == 1 and "Traceback" not in newer.stderr
    assert newer.stderr.splitlines() == [newer.stderr.strip()] and "'0002_from_the_future'" in newer.stderr
    unreachable = _schema_check("postgresql+psycopg://idp:s3cret@127.0.0.1:1/idp")
    assert unreachable.returncode == 1 and "Traceback" not in unreachable.stderr
    assert unreachable.stderr.startswith("error: database: ") and "s3cret" not in unreachable.stderr
    assert len(unreachable.stderr.strip().splitlines()) == 1


def test_a_command_on_a_database_without_schema_says_to_run_init(sqlite_url, idp):
    """Run from cron's empty environment (or with IDP_CONFIG forgotten), a command opened a new
    empty SQLite file and failed on "no such table"."""
    refused(idp("purge", database_url=sqlite_url), "has no schema", "idp init")
    refused(idp("user", "add", "--org", "Acme", "--email", "a@example.com", "--password-stdin",
                database_url=sqlite_url, input=PASSWORD + "\n"), "has no schema")
    ok(idp("init", database_url=sqlite_url))
    ok(idp("purge", database_url=sqlite_url))
