"""Every route of the app, in each state a browser can be in, with hostile input: never a 500.

The routes are the app's URL map (the plugins' blueprints included), so a route added later is
swept without being listed here; a path argument the sweep has no value for fails the test
(PATH_VALUES). Each route is called by an anonymous browser, a signed-in user, a signed-in admin
and a browser in the middle of a login, each with a CSRF token of its own, so that the forms are
read past their check. Every method is tried (HEAD, OPTIONS, PUT, DELETE and PATCH too), and the
hostile requests of `hostile_requests` are dealt out in turn over the routes, methods and states:
duplicated, empty, huge and non-UTF-8 parameters, NUL, bad percent-encoding, the wrong content
type, malformed and deeply nested JSON, multipart, a 1 MB body, malformed Authorization, DPoP,
Host and cookie headers. The path arguments get their known values and hostile ones.

Each answer must be under 500 with nothing logged at ERROR (a 500 the error handler caught, or a
failure of the handler itself), and a refused request (4xx) must change no row of any table but
the traces a refused guess leaves (REFUSAL_TRACES): triggers note every row written, whichever
connection wrote it, and a rollback takes its notes back with it.

A longer run (every hostile request for every path, method and state: about 100,000 requests,
some twenty minutes) found the raw query string of test_fuzz_endpoints; this is its representative
slice, some 2,000 requests per state. IDP_TEST_SWEEP_DEAL=43 deals the whole deck to each route
and method (about five times the requests).
"""
from __future__ import annotations

import base64
import io
import logging
import os
import re
from itertools import cycle
from types import SimpleNamespace

import pytest
from sqlalchemy import delete, select, text, update
from werkzeug.datastructures import MultiDict

from fixtures.database import backends, module_database
from fixtures.oidc import FAST_ARGON2, PASSWORD, seed

STATES = ("anonymous", "user", "admin", "mid_login")
METHODS = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE", "PATCH")
HOSTILE_PER_ROUTE = int(os.environ.get("IDP_TEST_SWEEP_DEAL", 4))  # per route, state and method it takes

# What the views read, from the query, the form or a JSON body.
FIELDS = ("client_id", "redirect_uri", "response_type", "scope", "state", "nonce", "prompt", "max_age",
          "code_challenge", "code_challenge_method", "acr_values", "login_hint", "ui_locales", "grant_type", "code",
          "refresh_token", "code_verifier", "token", "token_type_hint", "id_token_hint", "post_logout_redirect_uri",
          "username", "password", "version", "action", "request", "request_uri", "device_code", "user_code", "label",
          "confirm", "response", "postpone", "status", "q", "locale", "role", "admin", "all_factors", "allowed",
          "current", "email", "exempt", "exempt_reason", "exempt_until", "expires_in", "factors", "grace_days",
          "grace_logins", "name", "on", "seen", "wait", "registration", "client_assertion", "client_assertion_type")

# Path arguments: their values (None: the seeded data's, filled in by the test); the hostile ones go everywhere.
PATH_VALUES = {"user_id": None, "credential_id": None, "handle": None, "client_id": None,
               "name": ("totp", "push", "webauthn", "recovery_codes", "qr_recovery"), "pending_id": ("p",),
               "sid": ("s",), "token": ("t",), "activation_id": ("a",), "challenge_id": ("c",),
               "filename": ("style.css", "push.js", "webauthn.js")}
HOSTILE_PATH_VALUES = ("999", "0", "-1", str(2 ** 70), "%ff%fe", "%00", "%zz", "%2f", "..%2f..%2fetc", "\u00e9",
                       "a" * 100_000)

# What a refused request may write: a wrong password or code is counted, and recorded, as any guess.
REFUSAL_TRACES = {"failure_counters", "audit_events"}

JUNK = "\x00'\"<>%zz\u202e\U0001f600 "
MB = 1024 * 1024


def hostile_requests(csrf: str) -> list[tuple[str, dict]]:
    """(label, the test client's arguments). `csrf` is the state's token, sent in the forms so
    that what follows the CSRF check is read too."""
    token = {"csrf_token": csrf}
    basic = lambda raw: "Basic " + base64.b64encode(raw).decode()  # noqa: E731
    deck = [
        ("duplicated", {"query_string": MultiDict([(n, v) for n in FIELDS for v in ("a", "b")]),
                        "data": MultiDict([(n, v) for n in FIELDS for v in ("a", "b")] + list(token.items()))}),
        ("empty", {"query_string": dict.fromkeys(FIELDS, ""), "data": {**dict.fromkeys(FIELDS, ""), **token}}),
        ("junk", {"query_string": dict.fromkeys(FIELDS, JUNK), "data": {**dict.fromkeys(FIELDS, JUNK * 3), **token}}),
        ("huge numbers", {"query_string": dict.fromkeys(FIELDS, "-" + "9" * 30),
                          "data": {**dict.fromkeys(FIELDS, "9" * 30), **token}}),
        ("raw query", {"environ_overrides": {"QUERY_STRING": "client_id=%ff\xff&\xfe=%&ui_locales=\xff&a=%e9%"}}),
        ("256 KB query", {"query_string": {"client_id": "a" * 256 * 1024, "ui_locales": "b" * 1000}}),
        ("raw form", {"data": f"csrf_token={csrf}&username=%ff\xff&code=\xff\x00&label=%00&action=%zz&q=%".encode(
            "latin-1"), "content_type": "application/x-www-form-urlencoded"}),
        ("unknown charset", {"data": f"csrf_token={csrf}&username=x".encode(),
                             "content_type": "application/x-www-form-urlencoded; charset=ebcdic-xx"}),
        ("json lists", {"json": {**dict.fromkeys(FIELDS, [1, {"a": None}]), **token}}),
        ("json numbers", {"json": {**dict.fromkeys(FIELDS, 1e308), **token}}),
        ("json array", {"json": [1, 2, 3]}),
        ("malformed json", {"data": b'{"a": \xff, ', "content_type": "application/json"}),
        ("json surrogate", {"data": b'{"registration": "\\ud800", "request": NaN, "email": "\\u0000"}',
                            "content_type": "application/json"}),
        ("deep json", {"data": b"[" * 100_000 + b"]" * 100_000, "content_type": "application/json"}),
        ("deep json object", {"data": b'{"a":' * 40_000 + b"1" + b"}" * 40_000, "content_type": "application/json"}),
        ("multipart", {"data": {**{n: (b"\xff\x00", "f\xff.bin") for n in FIELDS[:20]}, **token},
                       "content_type": "multipart/form-data"}),
        ("broken multipart", {"data": b'--b\r\nContent-Disposition: form-data; name="a\r\n\r\n\xff',
                              "content_type": "multipart/form-data; boundary=b"}),
        ("multipart without boundary", {"data": b"a=b", "content_type": "multipart/form-data"}),
        ("junk content type", {"data": b"a=b", "content_type": "\xff/\x00; charset=\"'"}),
        ("1 MB body", {"data": b"a=" + b"x" * MB, "content_type": "application/x-www-form-urlencoded"}),
        ("binary body", {"data": b"\xff\xfe\x00" * 100, "content_type": "text/plain"}),
        ("Basic without colon", {"headers": {"Authorization": basic(b"no-colon")}}),
        ("Basic not base64", {"headers": {"Authorization": "Basic !!!***"}}),
        ("Basic not UTF-8", {"headers": {"Authorization": basic(b"\xff\xfe:\xff")}}),
        ("Basic empty", {"headers": {"Authorization": "Basic "}}),
        ("Basic percent junk", {"headers": {"Authorization": basic(b"%zz%ff:%00")}}),
        ("100 KB Bearer", {"headers": {"Authorization": "Bearer " + "A" * 100_000}}),
        ("Bearer alone", {"headers": {"Authorization": "Bearer"}}),
        ("junk DPoP", {"headers": {"Authorization": "DPoP abc", "DPoP": "a.b.c"}}),
        ("two DPoP", {"headers": [("DPoP", "a.b.c"), ("DPoP", "\xff" * 10)]}),
        ("junk Authorization", {"headers": {"Authorization": "\xff\xfe \x01"}}),
        ("empty Host", {"headers": {"Host": ""}}),
        ("long Host label", {"headers": {"Host": "a" * 70 + ".example"}}),
        ("Host port", {"headers": {"Host": "localhost:99999999"}}),
        ("Host not UTF-8", {"headers": {"Host": "\xff\xfe:x"}}),
        ("Host with user", {"headers": {"Host": "evil@localhost"}}),
        ("forged cookie", {"headers": {"Cookie": "idp_session=eyJmb28iOiJiYXIifQ.Zz.abcdef"}}),
        ("junk cookie", {"headers": {"Cookie": "\xff\xfe=\xff; ;;; =; idp_session=\xff"}}),
        ("junk languages", {"headers": {"Accept-Language": "\xff;q=x, *;q=1e9, zz-ZZ-@@@, fr;q=-1"}}),
        ("JSON wanted", {"headers": {"Accept": "application/json"}}),
        ("junk headers", {"headers": {"User-Agent": "\xff" * 5000, "X-Forwarded-For": "\xff, 999.1.1.1, ::zz",
                                      "X-Request-ID": "\xff\t", "Origin": "\xff", "Referer": "http://[::1",
                                      "Accept": "\xff/\xff;q=abc"}}),
        ("junk conditions", {"headers": {"If-Modified-Since": "garbage\xff", "If-None-Match": "\xff",
                                         "Range": "bytes=99-1,\xff", "If-Range": "\xff"}}),
        ("chunked junk", {"headers": {"Transfer-Encoding": "chunked"}, "data": b"zz\r\n"}),
    ]
    # The hostile headers come with the form's token (and so a body, whatever the method).
    return [(label, {"data": token, **arguments} if set(arguments) == {"headers"} else arguments)
            for label, arguments in deck]


def _signed_in_client(app, client: dict, email: str | None):
    """A test client at the password page of a login to `client`; signed in when `email` is given.
    Returns (the client, the login page's path, its CSRF token)."""
    from secrets import token_urlsafe

    browser = app.test_client()
    start = browser.get("/authorize", query_string={
        "client_id": client["client_id"], "redirect_uri": client["redirect_uri"], "response_type": "code",
        "scope": "openid", "nonce": token_urlsafe(8), "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256"})
    page = start.headers["Location"]
    csrf = _csrf_token(browser.get(page).get_data(as_text=True))
    if email is not None:
        signed = browser.post(page, data={"csrf_token": csrf, "version": "1", "username": email, "password": PASSWORD})
        assert signed.status_code == 302 and "code=" in signed.headers["Location"], signed.get_data(as_text=True)
    return browser, page, csrf


def _csrf_token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


@pytest.fixture(scope="module", params=backends())
def swept(request, tmp_path_factory):
    """The app, its seeded data, and the write notes' triggers."""
    from idp import schema
    from idp.app import create_app
    from idp.db import db
    from idp.models import User
    from idp.oidc import keys

    with module_database(request, tmp_path_factory, "sweep") as url:
        app = create_app({"server.database_url": url, "server.json_logs": False, "server.log_level": "WARNING",
                          "ratelimit.login_posts_per_ip": "1000000 per minute", **FAST_ARGON2})
        app.config["RATELIMIT_ENABLED"] = False
        with app.app_context():
            schema.upgrade(db.engine)
            keys.ensure_signing_key()
            db.session.remove()
        seeded = seed(SimpleNamespace(app=app, context=app.app_context))
        with app.app_context():
            users = {email: db.session.scalar(select(User).where(User.email == email))
                     for email in (seeded.user_email, seeded.admin_email)}
            rows = {email: {"disabled": False, "role": user.role, "password_hash": user.password_hash,
                            "tokens_valid_after": None} for email, user in users.items()}
            _note_writes(db.session, url.startswith("postgresql"))
            db.session.commit()
            db.session.remove()
        yield SimpleNamespace(app=app, seeded=seeded, users=rows, user_id=users[seeded.user_email].id)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def _note_writes(session, postgresql: bool) -> None:
    """Triggers that note the name of every table a row is written to, in `swept_writes`."""
    from idp.db import Base

    session.execute(text("CREATE TABLE swept_writes (table_name VARCHAR(64))"))
    if postgresql:
        session.execute(text("CREATE FUNCTION swept_note() RETURNS trigger LANGUAGE plpgsql AS "
                             "$$ BEGIN INSERT INTO swept_writes VALUES (TG_TABLE_NAME); RETURN NULL; END $$"))
    for table in Base.metadata.sorted_tables:
        if postgresql:
            session.execute(text(f"CREATE TRIGGER swept_note AFTER INSERT OR UPDATE OR DELETE ON {table.name} "
                                 "FOR EACH ROW EXECUTE FUNCTION swept_note()"))
            continue
        for operation in ("INSERT", "UPDATE", "DELETE"):
            session.execute(text(f"CREATE TRIGGER swept_{table.name}_{operation} AFTER {operation} ON {table.name} "
                                 f"BEGIN INSERT INTO swept_writes VALUES ('{table.name}'); END"))


def _tables_written(app) -> set[str]:
    """The tables written to since the last call (and the notes cleared)."""
    from idp.db import db

    with app.app_context():
        written = set(db.session.scalars(text("SELECT table_name FROM swept_writes")))
        if written:
            db.session.execute(text("DELETE FROM swept_writes"))
            db.session.commit()
        db.session.remove()
    return written


def _fresh_seed(swept) -> None:
    """The seeded users as seeded: a swept request may have disabled one, demoted the admin,
    changed a password or added a factor."""
    from idp.db import db
    from idp.models import Credential, User

    with swept.app.app_context():
        for email, row in swept.users.items():
            db.session.execute(update(User).where(User.email == email).values(**row))
        db.session.execute(delete(Credential).where(Credential.user_id == swept.user_id))
        db.session.commit()
        db.session.remove()


def _credential_of(app, user_id: int) -> int:
    """A TOTP credential of the user, added once the browsers are signed in (the password alone
    then no longer signs in)."""
    from idp.db import db
    from idp.factors import directory

    with app.app_context():
        credential = app.extensions["idp.factors"].get("totp").store.create(
            directory.get_user(user_id), "phone", {}, secret=b"s" * 20)
        db.session.commit()
        db.session.remove()
    return credential.id


def _browser_in(state: str, app, seeded):
    """(cookies, CSRF token, the login page's handle) of a browser in `state`."""
    email = {"user": seeded.user_email, "admin": seeded.admin_email}.get(state)
    client = seeded.third_party if state == "mid_login" else seeded.first_party
    browser, page, csrf = _signed_in_client(app, client, email)
    if email is not None:  # a new session once signed in: a new token
        csrf = _csrf_token(browser.get("/account/password").get_data(as_text=True))
    if state == "anonymous":
        browser = app.test_client()
        csrf = _csrf_token(browser.get("/device").get_data(as_text=True))
    cookies = [(c.key, c.value, c.domain, c.path) for c in browser._cookies.values()]
    return cookies, csrf, page.rsplit("/", 1)[1]


def _paths(rule, known: dict) -> list[str]:
    """The rule's path with the first of its values, then with each argument's other values and
    hostile ones in turn."""
    unknown = set(rule.arguments) - set(PATH_VALUES)
    assert not unknown, f"{rule.rule}: give the sweep values for {sorted(unknown)} (PATH_VALUES)"
    choices = {name: (known[name],) if PATH_VALUES[name] is None else PATH_VALUES[name] for name in rule.arguments}
    first = {name: values[0] for name, values in choices.items()}
    paths = [_fill(rule.rule, first)]
    for name in sorted(rule.arguments):
        paths += [_fill(rule.rule, {**first, name: value}) for value in choices[name][1:] + HOSTILE_PATH_VALUES]
    return paths


def _fill(rule: str, values: dict) -> str:
    return re.sub(r"<(?:[^<>]*:)?(\w+)>", lambda m: values[m.group(1)], rule)


@pytest.mark.parametrize("state", STATES)
def test_every_route_refuses_hostile_input_without_a_500(swept, state, caplog):
    app, seeded = swept.app, swept.seeded
    caplog.set_level(logging.ERROR)
    deck_size = len(hostile_requests(""))
    turns = cycle(range(STATES.index(state), STATES.index(state) + deck_size))  # each state starts elsewhere
    failures = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule):
        # A fresh browser in `state` for each route (the one before may have signed itself out),
        # and the deck dealt on with its CSRF token.
        _fresh_seed(swept)
        cookies, csrf, handle = _browser_in(state, app, seeded)
        deck = hostile_requests(csrf)
        known = {"user_id": str(swept.user_id), "credential_id": str(_credential_of(app, swept.user_id)), "handle": handle,
                 "client_id": seeded.third_party["client_id"]}
        _tables_written(app)
        path, *other_paths = _paths(rule, known)
        for method in METHODS:
            dealt = [deck[next(turns) % deck_size] for _ in range(HOSTILE_PER_ROUTE)] if method in rule.methods \
                else [("plain", {})]
            failures += filter(None, (_one_request(app, cookies, method, path, label, arguments, caplog)
                                      for label, arguments in dealt))
        method = sorted(rule.methods - {"HEAD", "OPTIONS"})[0]
        failures += filter(None, (_one_request(app, cookies, method, other_path, *deck[next(turns) % deck_size],
                                               caplog) for other_path in other_paths))
    assert not failures, "\n".join(failures[:40])


def _one_request(app, cookies, method: str, path: str, label: str, arguments: dict, caplog) -> str | None:
    browser = app.test_client()
    for key, value, domain, cookie_path in cookies:
        browser.set_cookie(key, value, domain=domain, path=cookie_path)
    if isinstance(arguments.get("data"), dict):  # files: a new one each time (the client closes them)
        arguments = {**arguments, "data": {name: (io.BytesIO(value[0]), value[1]) if isinstance(value, tuple) else value
                                           for name, value in arguments["data"].items()}}
    caplog.clear()
    try:
        response = browser.open(path, method=method, **arguments)
        response.get_data()
    except Exception as error:  # noqa: BLE001 - the error handler failed too: the server's own 500
        return f"{method} {path[:80]} ({label}): raised {error!r}"
    where = f"{method} {path[:80]} ({label}): {response.status_code}"
    errors = [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]
    if response.status_code >= 500 or errors:
        return f"{where} {errors}"
    written = _tables_written(app) - REFUSAL_TRACES
    if response.status_code >= 400 and written:
        return f"{where} wrote {sorted(written)}"
    return None
