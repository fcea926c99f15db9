"""Operations: health and readiness probes, Prometheus metrics, JSON logs with request ids, proxy trust.

The app is the real one from `create_app` when it builds; the ops wiring is also exercised on a
bare Flask app so these tests do not depend on the OIDC blueprints.
"""
from __future__ import annotations

import logging
import os
import re
import stat
import subprocess
import sys

import pytest
from flask import Flask, jsonify, request
from sqlalchemy import create_engine

from idp import ops
from idp.config import load_settings
from idp.db import db
from fixtures.logs import json_lines
from idp.ops import metrics
from idp.ops.proxy import TrustedProxies, parse_networks


def build_app(tmp_path, **overrides):
    """A Flask app wired exactly as create_app wires ops (settings, db, ops.init_app)."""
    values = {"server.database_url": f"sqlite:///{tmp_path / 'ops.sqlite'}"}
    values.update(overrides)
    settings = load_settings(values)
    app = Flask("ops-test")
    db.init_app(app, settings.database_url)
    ops.init_app(app, settings)

    @app.get("/whoami")
    def whoami():
        return jsonify(remote_addr=request.remote_addr, scheme=request.scheme, host=request.host)

    @app.get("/items/<int:item_id>")
    def item(item_id):
        return jsonify(id=item_id)

    @app.get("/boom")
    def boom():
        raise RuntimeError("boom")

    @app.get("/handles/<handle>/items/<int:item_id>")
    def handle_item(handle, item_id):
        return jsonify(id=item_id)

    @app.post("/handles/<handle>/cancel")
    def handle_cancel(handle):
        return jsonify(cancelled=True)

    return app


@pytest.fixture
def app(tmp_path):
    return build_app(tmp_path)


@pytest.fixture
def client(app):
    return app.test_client()


# ------------------------------------------------------------------ health and readiness

def test_healthz_answers_without_database(client, monkeypatch):
    monkeypatch.setattr(db, "engine", None)
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_ok_when_database_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "database": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


def test_readyz_503_json_when_database_unreachable(client, monkeypatch, tmp_path):
    unreachable = create_engine(f"sqlite:///{tmp_path / 'missing-dir' / 'x.sqlite'}")
    monkeypatch.setattr(db, "engine", unreachable)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.is_json
    assert response.get_json() == {"status": "unavailable", "database": "unreachable"}


def test_readyz_503_when_the_configured_redis_is_unreachable(client):
    """Redis holds the login forms' rate limits and lockouts: without it every login POST fails,
    while /readyz said ready."""
    import redis

    client.application.extensions["idp.redis"] = redis.Redis.from_url("redis://127.0.0.1:1/0",
                                                                      socket_connect_timeout=1)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "database": "ok", "redis": "unreachable"}


def test_readyz_names_redis_when_it_answers(client):
    import os

    import redis

    url = os.environ.get("IDP_TEST_REDIS_URL")
    if not url:
        pytest.skip("IDP_TEST_REDIS_URL is not set")
    client.application.extensions["idp.redis"] = redis.Redis.from_url(url)
    assert client.get("/readyz").get_json() == {"status": "ready", "database": "ok", "redis": "ok"}


# ------------------------------------------------------------------ metrics

def sample(text, name, **labels):
    """The value of one sample line in the exposition, or 0."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0 if wanted else None


def test_metrics_counts_requests_by_rule_not_path(client):
    before = sample(client.get("/metrics").get_data(as_text=True), "idp_http_requests_total",
                    endpoint="/items/<int:item_id>", method="GET", status="200")
    client.get("/items/1")
    client.get("/items/2")
    client.get("/no/such/page/123")
    text = client.get("/metrics").get_data(as_text=True)
    assert sample(text, "idp_http_requests_total", endpoint="/items/<int:item_id>", method="GET",
                  status="200") == before + 2
    assert 'endpoint="/items/1"' not in text
    assert sample(text, "idp_http_requests_total", endpoint="<unmatched>", method="GET", status="404") >= 1
    assert "idp_http_request_duration_seconds_bucket" in text


def test_metrics_unknown_methods_are_bounded(client):
    client.open("/items/1", method="BREW")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'method="BREW"' not in text
    assert sample(text, "idp_http_requests_total", method="other", status="405") >= 1
    cached = len(metrics._request_children)
    for made_up in ("BREWA", "BREWB", "BREWC"):  # nor does each one keep an entry of its own
        client.open("/items/1", method=made_up)
    assert len(metrics._request_children) == cached


def test_login_and_grant_counters_are_exposed(client):
    metrics.LOGINS.labels(outcome="success").inc()
    metrics.TOKEN_GRANTS.labels(grant_type="client_credentials").inc()
    text = client.get("/metrics").get_data(as_text=True)
    assert sample(text, "idp_logins_total", outcome="success") >= 1
    assert sample(text, "idp_token_grants_total", grant_type="client_credentials") >= 1
    assert client.get("/metrics").headers["Content-Type"].startswith("text/plain")


def test_metrics_restricted_to_configured_networks(tmp_path):
    app = build_app(tmp_path, **{"ops.metrics_networks": ["10.1.0.0/16"]})
    client = app.test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 404
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200


@pytest.mark.parametrize("forwarding", [{"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"},
                                        {"X-Real-IP": "203.0.113.9"}])
def test_metrics_refused_through_a_proxy_left_out_of_the_trusted_ones(tmp_path, forwarding):
    """nginx on the same host, not in server.trusted_proxies: every client seems to be 127.0.0.1,
    which ops.metrics_networks allows. The headers the proxy adds say it relayed the request."""
    client = build_app(tmp_path).test_client()
    loopback = {"REMOTE_ADDR": "127.0.0.1"}
    assert client.get("/metrics", environ_base=loopback).status_code == 200  # a scraper on the host
    assert client.get("/metrics", headers=forwarding, environ_base=loopback).status_code == 404
    trusted = build_app(tmp_path, **{"server.trusted_proxies": ["127.0.0.1"]}).test_client()
    assert trusted.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"}, environ_base=loopback).status_code == 404
    assert trusted.get("/metrics", headers={"X-Forwarded-For": "10.1.2.3"}, environ_base=loopback).status_code == 200


def test_metrics_can_be_disabled(tmp_path):
    app = build_app(tmp_path, **{"ops.metrics_enabled": False})
    assert app.test_client().get("/metrics").status_code == 404


def test_multiprocess_mode_adds_up_processes(tmp_path):
    """With PROMETHEUS_MULTIPROC_DIR set (gunicorn workers), /metrics sums every process's counts."""
    script = (
        "import os, sys\n"
        "from idp.ops import metrics\n"
        "metrics.LOGINS.labels(outcome='success').inc(int(sys.argv[1]))\n"
        "if sys.argv[1] == '2': sys.stdout.write(metrics.exposition()[0].decode())\n"
    )
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    subprocess.run([sys.executable, "-c", script, "3"], env=env, check=True)
    out = subprocess.run([sys.executable, "-c", script, "2"], env=env, check=True, capture_output=True, text=True)
    assert sample(out.stdout, "idp_logins_total", outcome="success") == 5.0


def test_a_missing_multiprocess_directory_is_made_rather_than_refusing_to_start(tmp_path):
    """/run is emptied at every boot: with the directory gone, every worker died at import on
    prometheus_client's FileNotFoundError ("Worker failed to boot"), and so did every `idp` command."""
    script = (
        "from idp.ops import metrics\n"
        "metrics.LOGINS.labels(outcome='success').inc()\n"
        "print(metrics.exposition()[0].decode())\n"
    )
    missing = tmp_path / "run" / "idp-metrics"
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(missing))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert missing.is_dir() and sample(out.stdout, "idp_logins_total", outcome="success") == 1.0
    # The workers' counts (login outcomes, error rates: operations.md keeps /metrics private) are
    # for the workers' user alone, whatever the umask.
    assert stat.S_IMODE(missing.stat().st_mode) == 0o700


# ------------------------------------------------------------------ request id and logs

def test_request_id_generated_and_echoed(client):
    first = client.get("/healthz").headers["X-Request-ID"]
    second = client.get("/healthz").headers["X-Request-ID"]
    assert len(first) == 32 and first != second


def test_valid_incoming_request_id_is_kept(client):
    response = client.get("/healthz", headers={"X-Request-ID": "abc-123.xyz"})
    assert response.headers["X-Request-ID"] == "abc-123.xyz"


@pytest.mark.parametrize("bad", ["x" * 200, "has space", "tab\there", "<script>", "é", ""])
def test_invalid_incoming_request_id_is_replaced(client, bad):
    response = client.get("/healthz", headers={"X-Request-ID": bad})
    assert response.headers["X-Request-ID"] != bad
    assert len(response.headers["X-Request-ID"]) == 32


def test_access_log_is_one_json_object_per_line(client, log_stream):
    response = client.get("/items/7?q=1", headers={"X-Request-ID": "req-42"},
                          environ_base={"REMOTE_ADDR": "192.0.2.5"})
    assert response.status_code == 200
    entries = [e for e in json_lines(log_stream) if e["logger"] == "idp.access"]
    assert len(entries) == 1
    entry = entries[0]
    assert set(entry) >= {"time", "level", "message", "logger", "request_id", "method", "path", "status",
                          "duration_ms", "remote_addr"}
    assert entry["request_id"] == "req-42"
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/items/7", 200)
    assert entry["remote_addr"] == "192.0.2.5"
    assert entry["level"] == "INFO" and entry["time"].endswith("Z")
    assert isinstance(entry["duration_ms"], float)
    assert isinstance(entry["cpu_ms"], float) and 0 <= entry["cpu_ms"] < 1000


def test_a_password_hash_s_cpu_is_in_its_access_line_and_the_metrics(app, client, log_stream):
    """`hash_cpu_ms`: the part of a request's `cpu_ms` spent hashing passwords (what a login's CPU
    is besides its hash), and `idp_password_hash_cpu_seconds` counts every hash."""
    from idp.security.passwords import Passwords

    passwords = Passwords(time_cost=1, memory_cost=1024, on_hashed=ops.password_hashed)
    stored = passwords.hash("secret")  # outside any request: the metric alone

    @app.post("/sign-in")
    def sign_in():
        return jsonify(ok=passwords.verify(stored, "secret") and not passwords.verify(None, "secret"))

    def hashes() -> float:
        text = client.get("/metrics").get_data(as_text=True)
        return float(re.search(r"^idp_password_hash_cpu_seconds_count (\S+)$", text, re.M).group(1))

    before = hashes()
    assert client.post("/sign-in").get_json() == {"ok": True}
    assert hashes() == before + 2
    entries = [e for e in json_lines(log_stream) if e["logger"] == "idp.access"]
    signed_in = next(e for e in entries if e["path"] == "/sign-in")
    assert 0 < signed_in["hash_cpu_ms"] <= signed_in["cpu_ms"]
    assert all("hash_cpu_ms" not in e for e in entries if e["path"] != "/sign-in")


def test_application_logs_carry_the_request_id(app, log_stream):
    @app.get("/noisy")
    def noisy():
        logging.getLogger("idp.something").warning("careful", extra={"fields": {"client_id": "c1"}})
        return "ok"

    app.test_client().get("/noisy", headers={"X-Request-ID": "rid-1"})
    entry = next(e for e in json_lines(log_stream) if e["logger"] == "idp.something")
    assert entry["request_id"] == "rid-1" and entry["client_id"] == "c1" and entry["message"] == "careful"


def test_gunicorns_own_log_format_still_works(app):
    """gunicorn's error log formats `%(process)d` with a handler of its own: the records we make
    cheaper must still carry it (a worker's warning, such as a request line too long, was a
    "--- Logging error ---" traceback)."""
    import io

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] [%(levelname)s] %(message)s"))
    handler.handleError = lambda record: (_ for _ in ()).throw(AssertionError("the record did not format"))
    logger = logging.getLogger("gunicorn.error.test")
    logger.addHandler(handler)
    try:
        logger.warning("Invalid request from ip=%s", "127.0.0.1")
    finally:
        logger.removeHandler(handler)
    assert f"[{os.getpid()}] [WARNING] Invalid request from ip=127.0.0.1" in stream.getvalue()


def test_server_error_is_logged_and_keeps_request_id(app, log_stream):
    app.testing = False
    response = app.test_client().get("/boom", headers={"X-Request-ID": "rid-500"})
    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "rid-500"
    entries = json_lines(log_stream)
    access = next(e for e in entries if e["logger"] == "idp.access")
    assert access["status"] == 500
    assert any("exception" in e and e.get("request_id") == "rid-500" for e in entries)


def test_probes_are_not_in_the_info_access_log(client, log_stream):
    client.get("/healthz")
    assert not [e for e in json_lines(log_stream) if e["logger"] == "idp.access"]


# ------------------------------------------------------------------ no secrets in the logged paths

HANDLE = "Xq3vTz8LkP2mWn5rSa9dFb7hJc4gKe6u"  # the shape of a login handle (token_urlsafe(24))


def access_paths(stream) -> list[str]:
    return [e["path"] for e in json_lines(stream) if e["logger"] == "idp.access"]


def test_access_log_replaces_string_values_with_pseudonyms_and_keeps_ids(app, client, log_stream):
    """A login handle in the URL is a bearer-like value: the access line writes the rule's shape,
    the handle replaced by its pseudonym, the integer id as sent."""
    from idp.ops import PATH_REDACTOR

    client.get(f"/handles/{HANDLE}/items/7")
    client.get(f"/handles/{HANDLE}/items/8")
    pseudonym = app.extensions[PATH_REDACTOR].pseudonym(HANDLE)
    assert access_paths(log_stream) == [f"/handles/{pseudonym}/items/7", f"/handles/{pseudonym}/items/8"]
    assert HANDLE not in log_stream.getvalue()
    # bench/run.py's ID_SEGMENT collapses it like the handle it stands for.
    assert re.fullmatch(r"[A-Za-z0-9_-]{20,}", pseudonym) and pseudonym != HANDLE


def test_pseudonyms_agree_across_workers_and_change_with_the_secret_key(tmp_path):
    """Every worker (same secret key) writes the same pseudonym, so one login's requests can be
    followed whichever worker served them; another deployment's key gives another."""
    from idp.ops import PATH_REDACTOR

    def pseudonym(app):
        return app.extensions[PATH_REDACTOR].pseudonym(HANDLE)

    one, two = build_app(tmp_path / "1"), build_app(tmp_path / "2")
    other = build_app(tmp_path / "3", **{"server.secret_key": "another deployment's secret key"})
    assert pseudonym(one) == pseudonym(two) != pseudonym(other)


def test_paths_no_rule_matched_hide_id_like_segments(client, log_stream):
    """A GET of a POST-only handle URL (405) or a mangled one (404) matched no rule: segments that
    look like random ids are replaced, readable words are kept."""
    assert client.get(f"/handles/{HANDLE}/cancel").status_code == 405
    assert client.get(f"/handles/{HANDLE}/").status_code == 404
    assert client.get("/.well-known/openid-configuration-old/x").status_code == 404
    paths = access_paths(log_stream)
    assert HANDLE not in log_stream.getvalue()
    assert [p.split("/")[1] for p in paths[:2]] == ["handles", "handles"]
    assert all(re.fullmatch(r"/handles/[A-Za-z0-9_-]{22}/(cancel)?", p) for p in paths[:2])
    assert paths[2] == "/.well-known/openid-configuration-old/x"


def test_metrics_labels_carry_no_path_values(client):
    client.get(f"/handles/{HANDLE}/items/7")
    client.get(f"/handles/{HANDLE}/cancel")
    text = client.get("/metrics").get_data(as_text=True)
    assert HANDLE not in text
    assert sample(text, "idp_http_requests_total", endpoint="/handles/<handle>/items/<int:item_id>",
                  method="GET", status="200") >= 1


def test_error_lines_name_the_redacted_path(app, log_stream):
    """idp.errors' lines about a request (an unhandled error here) write the path as the access
    line does."""
    from idp import errors

    errors.init_app(app)

    @app.get("/handles/<handle>/boom")
    def handle_boom(handle):
        raise RuntimeError("boom")

    app.testing = False
    assert app.test_client().get(f"/handles/{HANDLE}/boom", headers={"Accept": "application/json"}).status_code == 500
    error = next(e for e in json_lines(log_stream) if e["logger"] == "idp.errors")
    assert error["message"].startswith("unhandled error on GET /handles/") and error["message"].endswith("/boom")
    assert HANDLE not in log_stream.getvalue()


def test_a_failed_statement_is_logged_without_its_parameters(app, log_stream):
    """A statement the database refuses (here a table that is not there; in real life a deadlock, a
    timeout, a restart) is an unhandled error whose line names its SQL, never the values it carried:
    a new password's argon2 hash, a user code (idp.db.make_engine hides them)."""
    from sqlalchemy import text

    from idp import errors

    errors.init_app(app)
    secret = "$argon2id$v=19$m=19456,t=2,p=1$not-for-the-log"

    @app.post("/store")
    def store():
        db.session.execute(text("UPDATE no_such_table SET password_hash = :hash"), {"hash": secret})

    app.testing = False
    assert app.test_client().post("/store", headers={"Accept": "application/json"}).status_code == 500
    error = next(e for e in json_lines(log_stream) if e["logger"] == "idp.errors")
    assert "no_such_table" in error["exception"]
    assert secret not in log_stream.getvalue()


# ------------------------------------------------------------------ proxy trust

FORWARDED = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "id.example.com"}


def test_forwarded_headers_ignored_without_trusted_proxies(client):
    seen = client.get("/whoami", headers=FORWARDED, environ_base={"REMOTE_ADDR": "10.0.0.2"}).get_json()
    assert seen == {"remote_addr": "10.0.0.2", "scheme": "http", "host": "localhost"}


def test_forwarded_headers_ignored_from_untrusted_peer(tmp_path):
    app = build_app(tmp_path, **{"server.trusted_proxies": ["10.0.0.0/24"]})
    seen = app.test_client().get("/whoami", headers=FORWARDED,
                                 environ_base={"REMOTE_ADDR": "203.0.113.50"}).get_json()
    assert seen == {"remote_addr": "203.0.113.50", "scheme": "http", "host": "localhost"}


def test_forwarded_headers_honoured_from_trusted_peer(tmp_path, log_stream):
    app = build_app(tmp_path, **{"server.trusted_proxies": ["10.0.0.0/24", "::1"]})
    client = app.test_client()
    seen = client.get("/whoami", headers=FORWARDED, environ_base={"REMOTE_ADDR": "10.0.0.9"}).get_json()
    assert seen == {"remote_addr": "198.51.100.7", "scheme": "https", "host": "id.example.com"}
    seen = client.get("/whoami", headers=FORWARDED, environ_base={"REMOTE_ADDR": "::1"}).get_json()
    assert seen["remote_addr"] == "198.51.100.7"
    access = [e for e in json_lines(log_stream) if e["logger"] == "idp.access"]
    assert access[0]["remote_addr"] == "198.51.100.7"


def test_a_proxy_on_a_unix_socket_is_trusted_when_named_unix(tmp_path):
    """gunicorn -b unix:...: the peer has no address. Unnamed, its forwarded headers are
    ignored (every client would be one nameless address); named "unix", they are applied."""
    nameless = {"REMOTE_ADDR": ""}
    plain = build_app(tmp_path, **{"server.trusted_proxies": ["10.0.0.0/24"]}).test_client()
    assert plain.get("/whoami", headers=FORWARDED, environ_base=nameless).get_json()["remote_addr"] == ""
    proxied = build_app(tmp_path, **{"server.trusted_proxies": ["unix"]}).test_client()
    seen = proxied.get("/whoami", headers=FORWARDED, environ_base=nameless).get_json()
    assert seen == {"remote_addr": "198.51.100.7", "scheme": "https", "host": "id.example.com"}
    direct = proxied.get("/whoami", headers=FORWARDED, environ_base={"REMOTE_ADDR": "203.0.113.50"}).get_json()
    assert direct["remote_addr"] == "203.0.113.50"  # "unix" trusts no address


def test_trusted_proxy_takes_only_the_entry_it_appended(tmp_path):
    app = build_app(tmp_path, **{"server.trusted_proxies": ["10.0.0.1"]})
    spoofed = {"X-Forwarded-For": "1.2.3.4, 198.51.100.7"}
    seen = app.test_client().get("/whoami", headers=spoofed, environ_base={"REMOTE_ADDR": "10.0.0.1"}).get_json()
    assert seen["remote_addr"] == "198.51.100.7"


def test_middleware_checks_peer_on_raw_wsgi():
    calls = []

    def inner(environ, start_response):
        calls.append((environ["REMOTE_ADDR"], environ["wsgi.url_scheme"]))
        return []

    middleware = TrustedProxies(inner, parse_networks(["192.168.1.0/24"]))
    base = {"HTTP_X_FORWARDED_FOR": "8.8.8.8", "HTTP_X_FORWARDED_PROTO": "https", "wsgi.url_scheme": "http",
            "SERVER_NAME": "x", "SERVER_PORT": "80", "HTTP_HOST": "x"}
    middleware(dict(base, REMOTE_ADDR="192.168.1.20"), lambda *a: None)
    middleware(dict(base, REMOTE_ADDR="192.168.2.20"), lambda *a: None)
    middleware(dict(base, REMOTE_ADDR="not-an-ip"), lambda *a: None)
    assert calls == [("8.8.8.8", "https"), ("192.168.2.20", "http"), ("not-an-ip", "http")]


@pytest.mark.parametrize("trusted", [[], ["10.0.0.0/24"]], ids=["none named", "another named"])
def test_forwarded_headers_from_a_proxy_not_trusted_are_named_in_the_log_once(tmp_path, caplog, trusted):
    """A reverse proxy left out of server.trusted_proxies fails quietly (every client behind it is
    one address to the rate limits): its first X-Forwarded-For says so in the log, once per peer,
    for a few peers only (anyone on the internet may send the header)."""
    from idp.ops.proxy import WARNED_PEERS_MAX

    client = build_app(tmp_path, **{"server.trusted_proxies": trusted}).test_client()
    forwarded = {"X-Forwarded-For": "198.51.100.7"}
    with caplog.at_level(logging.WARNING, logger="idp.ops.proxy"):
        for _ in range(3):
            seen = client.get("/whoami", headers=forwarded, environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_json()
            assert seen["remote_addr"] == "127.0.0.1"  # still ignored
        client.get("/whoami", environ_base={"REMOTE_ADDR": "127.0.0.2"})  # no header: nothing to say
    warnings = [r.getMessage() for r in caplog.records if r.name == "idp.ops.proxy"]
    assert len(warnings) == 1
    assert "ignored X-Forwarded-For from 127.0.0.1" in warnings[0] and "server.trusted_proxies" in warnings[0]

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="idp.ops.proxy"):
        for n in range(WARNED_PEERS_MAX * 2):
            client.get("/whoami", headers=forwarded, environ_base={"REMOTE_ADDR": f"203.0.113.{n}"})
    warnings = [r.getMessage() for r in caplog.records if r.name == "idp.ops.proxy"]
    assert len(warnings) == WARNED_PEERS_MAX - 1  # 127.0.0.1 took the first
    assert warnings[-1].endswith("no more such warnings from this process")


@pytest.mark.parametrize("everyone", ["0.0.0.0/0", "::/0", "0.0.0.0"], ids=["ipv4", "ipv6", "0.0.0.0 as a range"])
def test_trusting_every_address_as_a_proxy_is_warned_of_at_start(tmp_path, caplog, everyone):
    """Every address trusted: any client that reaches the server chooses the address it is counted
    under (every per-address limit escaped) with one header. Development starts, saying so once;
    production refuses (tests/unit/test_config.py)."""
    with caplog.at_level(logging.WARNING, logger="idp.ops.proxy"):
        client = build_app(tmp_path, **{"server.trusted_proxies": ["10.0.0.0/24", everyone]}).test_client()
    warnings = [r.getMessage() for r in caplog.records if r.name == "idp.ops.proxy"]
    if everyone == "0.0.0.0":  # one address (strict=False keeps it a /32): nothing to say
        assert warnings == []
        return
    assert len(warnings) == 1 and f"server.trusted_proxies names {everyone}" in warnings[0], warnings
    assert "every address" in warnings[0] and "rate limits" in warnings[0]
    address = "203.0.113.9" if everyone == "0.0.0.0/0" else "2001:db8::9"
    seen = client.get("/whoami", headers={"X-Forwarded-For": "198.51.100.7"}, environ_base={"REMOTE_ADDR": address})
    assert seen.get_json()["remote_addr"] == "198.51.100.7"  # what the warning is about


def test_the_untrusted_proxy_warning_carries_the_request_id(tmp_path):
    """It was logged before the request had an id: the one warning line without `request_id`."""
    from idp.ops import logs

    seen = []

    class Capture(logging.Handler):
        def emit(self, record):
            seen.append(logs.request_id_var.get())

    handler = Capture(logging.WARNING)
    logging.getLogger("idp.ops.proxy").addHandler(handler)
    try:
        client = build_app(tmp_path).test_client()
        client.get("/whoami", headers={"X-Forwarded-For": "198.51.100.7", "X-Request-ID": "proxy-check-1"},
                   environ_base={"REMOTE_ADDR": "192.0.2.44"})
    finally:
        logging.getLogger("idp.ops.proxy").removeHandler(handler)
    assert seen == ["proxy-check-1"]


def test_forwarded_headers_from_a_trusted_proxy_say_nothing(tmp_path, caplog):
    client = build_app(tmp_path, **{"server.trusted_proxies": ["127.0.0.1"]}).test_client()
    with caplog.at_level(logging.WARNING, logger="idp.ops.proxy"):
        seen = client.get("/whoami", headers={"X-Forwarded-For": "198.51.100.7"},
                          environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_json()
    assert seen["remote_addr"] == "198.51.100.7"
    assert not [r for r in caplog.records if r.name == "idp.ops.proxy"]


def test_bad_trusted_proxy_entry_is_a_configuration_error(tmp_path):
    with pytest.raises(ValueError, match="not an IP address"):
        build_app(tmp_path, **{"server.trusted_proxies": ["proxy.example.com"]})


def test_create_app_serves_ops_endpoints(tmp_path, monkeypatch):
    """The real factory wires ops."""
    from idp.app import create_app

    app = create_app({"server.database_url": f"sqlite:///{tmp_path / 'full.sqlite'}"})
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    # A database `idp init` never made answers SELECT 1, but has no signing keys: not ready.
    unready = client.get("/readyz")
    assert unready.status_code == 503 and unready.get_json()["signing_keys"] == "unusable"
    assert "idp_http_requests_total" in client.get("/metrics").get_data(as_text=True)
    assert client.get("/healthz").headers["X-Request-ID"]


# ------------------------------------------------------------------ cached public documents

def build_document_app(tmp_path, ttl=5, set_cookie=False):
    app = build_app(tmp_path, **{"ops.cached_documents": ["/doc"], "ops.cached_documents_ttl": ttl})
    calls = []

    @app.get("/doc")
    def doc():
        calls.append(request.args.to_dict())
        response = jsonify(n=len(calls))
        response.headers["Cache-Control"] = "public, max-age=60"
        response.headers["X-Content-Type-Options"] = "nosniff"
        if set_cookie:
            response.set_cookie("c", "v")
        return response

    return app, calls


def test_documents_served_from_the_cache_with_their_own_request_id(tmp_path, log_stream):
    app, calls = build_document_app(tmp_path)
    client = app.test_client()
    first = client.get("/doc")
    second = client.get("/doc", headers={"X-Request-ID": "rid-cached"})
    assert len(calls) == 1
    assert first.get_data() == second.get_data() and second.get_json() == {"n": 1}
    assert second.headers["X-Request-ID"] == "rid-cached" != first.headers["X-Request-ID"]
    assert second.headers["Cache-Control"] == "public, max-age=60"
    assert second.headers["X-Content-Type-Options"] == "nosniff"
    assert second.headers["Content-Type"] == "application/json"
    assert int(second.headers["Content-Length"]) == len(second.get_data())
    access = [e for e in json_lines(log_stream) if e["logger"] == "idp.access"]
    assert [e["request_id"] for e in access][-1] == "rid-cached"
    assert access[-1]["path"] == "/doc" and access[-1]["status"] == 200
    text = client.get("/metrics").get_data(as_text=True)
    assert sample(text, "idp_http_requests_total", endpoint="/doc", method="GET", status="200") >= 2


def test_documents_with_query_or_other_methods_go_to_the_app(tmp_path):
    app, calls = build_document_app(tmp_path)
    client = app.test_client()
    client.get("/doc")
    client.get("/doc?x=1")
    client.head("/doc")
    assert len(calls) == 3


def test_documents_expire_after_the_ttl(tmp_path, monkeypatch):
    from idp.ops import documents

    app, calls = build_document_app(tmp_path, ttl=5)
    client = app.test_client()
    now = [1000.0]
    monkeypatch.setattr(documents.time, "monotonic", lambda: now[0])
    client.get("/doc")
    now[0] += 4
    assert client.get("/doc").get_json() == {"n": 1}
    now[0] += 2
    assert client.get("/doc").get_json() == {"n": 2}


def test_responses_setting_cookies_or_failing_are_not_cached(tmp_path):
    app, calls = build_document_app(tmp_path, set_cookie=True)
    client = app.test_client()
    client.get("/doc")
    client.get("/doc")
    assert len(calls) == 2


def test_discovery_and_jwks_are_cached_in_the_real_app(tmp_path):
    from idp.app import create_app

    app = create_app({"server.database_url": f"sqlite:///{tmp_path / 'docs.sqlite'}"})
    client = app.test_client()
    for path in ("/.well-known/openid-configuration", "/jwks"):
        first, second = client.get(path), client.get(path)
        if first.status_code != 200:
            continue  # JWKS needs `idp init` (a signing key); discovery always answers
        assert second.get_data() == first.get_data()
        assert second.headers["X-Request-ID"] != first.headers["X-Request-ID"]
        assert second.headers.get("X-Content-Type-Options") == "nosniff"


@pytest.mark.postgres
def test_readyz_on_postgresql(tmp_path, monkeypatch):
    url = os.environ.get("IDP_TEST_DATABASE_URL")
    if not url:
        pytest.skip("needs IDP_TEST_DATABASE_URL (PostgreSQL)")
    client = build_app(tmp_path, **{"server.database_url": url}).test_client()
    assert client.get("/readyz").status_code == 200
    monkeypatch.setattr(db, "engine", create_engine("postgresql+psycopg://postgres@127.0.0.1:1/none",
                                                    connect_args={"connect_timeout": 2}))
    response = client.get("/readyz")
    assert response.status_code == 503 and response.get_json()["database"] == "unreachable"


def test_a_canonical_url_redirect_names_no_host_from_the_request(live_server):
    """`/admin` redirects to `/admin/` by its path alone: a forged Host header (or a path that
    starts like another host's address) is not reflected in the Location a proxy may cache."""
    import http.client
    from urllib.parse import urlsplit

    address = urlsplit(live_server.url)
    for path, location in (("/admin?tab=users", "/admin/?tab=users"), ("///admin", "/admin/")):
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=10)
        try:
            connection.request("GET", path, headers={"Host": "evil.example"})
            response = connection.getresponse()
            assert (response.status, response.getheader("Location")) == (308, location)
        finally:
            connection.close()


def test_a_client_request_over_plain_http_is_a_clear_400(live_server, seeded, monkeypatch):
    """As in production (no AUTHLIB_INSECURE_TRANSPORT): a token request that reached the server
    over plain http for a public host, through a proxy left out of trusted_proxies say, is told
    so (it was a 500)."""
    import requests

    monkeypatch.delenv("AUTHLIB_INSECURE_TRANSPORT", raising=False)
    client = seeded.first_party
    answer = requests.post(f"{live_server.url}/oauth/token", headers={"Host": "id.example.test"}, timeout=10,
                           data={"grant_type": "client_credentials"},
                           auth=(client["client_id"], client["client_secret"]))
    assert answer.status_code == 400 and answer.headers["Cache-Control"] == "no-store"
    assert answer.json() == {"error": "invalid_request",
                             "error_description": "This endpoint must be reached over HTTPS."}


# ------------------------------------------------------------------ a Host werkzeug cannot bind

def _status_for_host(url: str, path: str, host: str, extra: str = "") -> str:
    """The status line of one HTTP/1.0 GET with a Host header of our choosing (no client sends this one)."""
    import socket

    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n{extra}\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.decode("latin-1").split("\r\n", 1)[0]


@pytest.mark.parametrize("path", ["/healthz", "/login/SeCrEtLoGiNhAnDlE0123456789abcdef", "/no-such-page"])
def test_a_host_with_a_label_over_63_characters_is_a_400(migrated_database_url, log_stream, path):
    """werkzeug cannot bind the URL map to it (IDNA: BadHost), so no page can build a URL: the error
    page's url_for failed, then the 500 page's, and the server answered its own 500 with Flask's
    "Exception on <raw path>" in the log (an audit found it), also through a trusted proxy's
    X-Forwarded-Host. A plain-text 400 instead."""
    from fixtures.oidc import start_server

    server = start_server(migrated_database_url, {"server.trusted_proxies": ["127.0.0.1"]})
    try:
        long_host = "a" * 64 + ".example"
        assert _status_for_host(server.url, path, long_host).split()[1] == "400"
        forwarded = _status_for_host(server.url, path, "localhost", f"X-Forwarded-Host: {long_host}\r\n")
        assert forwarded.split()[1] == "400"
    finally:
        server.stop()
    # (The test's werkzeug server logs its own request lines; what is looked for is the app's.)
    assert not [line for line in log_stream.getvalue().splitlines()
                if "SeCrEtLoGiNhAnDlE" in line and " werkzeug " not in line]
