"""Operations: liveness, readiness, Prometheus metrics, JSON logs with request ids, proxy trust.

`init_app(app, settings)` wires all of it (called by `idp.app.create_app`):

- `GET /healthz`: 200 as long as the process answers; touches nothing else.
- `GET /readyz`: 200 when the database answers `SELECT 1`, the encryption keys open the signing
  keys and, with `server.redis_url` set, Redis answers `PING`; else 503 with a JSON reason.
- `GET /metrics`: Prometheus text format (see `idp.ops.metrics` for the names). It reveals
  traffic patterns, so operators should not expose it publicly: `ops.metrics_networks`
  restricts it to listed addresses/CIDR ranges (by default loopback and private ranges);
  requests from elsewhere get 404, and so do requests relayed by a proxy that is not in
  `server.trusted_proxies` (their address is the proxy's).
- one access log line per request (`idp.access` logger, JSON, see `idp.ops.logs`, with the
  request's wall time `duration_ms` and the CPU time `cpu_ms` its thread spent; its `path` has the
  values that stand for secrets, such as login handles, replaced: `idp.ops.paths`), and the
  request id: a valid incoming `X-Request-ID` is kept, otherwise a random one is made; it is
  echoed in the `X-Request-ID` response header and attached to every log line.
- `X-Forwarded-*` trusted only from `server.trusted_proxies` (`idp.ops.proxy`).
- discovery and JWKS answered from a short-lived per-process copy of Flask's own response
  (`idp.ops.documents`, `ops.cached_documents`).
- the objects built at start-up frozen out of Python's full garbage collections when the
  process serves its first request (`idp.ops.gc_freeze`).

Per-request cost is kept to a few microseconds: a regex match, a clock read, two cached
metric children and one log line; nothing touches the database or takes a global lock.
"""
from __future__ import annotations

import json
import logging
import os
import re
import time

from flask import Flask, Response, abort, current_app, has_request_context, request
from sqlalchemy import text

from idp.db import db
from idp.ops import gc_freeze, logs, metrics
from idp.ops.documents import DocumentCache
from idp.ops.paths import PathRedactor
from idp.ops.proxy import TrustedProxies, address_in, parse_networks, warn_of_everyone
from idp.security import headers as security_headers

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+/=-]{1,128}")
# Probes and scrapes: counted in metrics, logged at DEBUG so they don't drown the access log.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
ENVIRON_START = "idp.ops.start"
ENVIRON_REQUEST_ID = "idp.ops.request_id"
ENVIRON_RULE = "idp.ops.rule"
ENVIRON_VIEW_ARGS = "idp.ops.view_args"
ENVIRON_HASH_CPU = "idp.ops.password_hash_cpu"
PATH_REDACTOR = "idp.ops.paths"  # app.extensions key: the app's PathRedactor (idp.errors logs with it)

access_log = logging.getLogger("idp.access")
log = logging.getLogger("idp.ops")


class RequestContext:
    """WSGI middleware around Flask, where every per-request chore happens on plain WSGI data.

    Before Flask runs: start the clocks, settle the request id, answer the cached public
    documents (idp.ops.documents) without entering Flask. As the response starts: add the
    request id and the security headers (idp.security.headers) to the header list. After the
    app returns: count the response and write the access line. Doing this here rather than in
    Flask's after_request hooks avoids werkzeug's Headers and the request proxies, which cost
    more than the work itself on a token grant.
    """

    def __init__(self, app, documents: DocumentCache | None = None, https: bool = False,
                 paths: PathRedactor | None = None) -> None:
        self.app = app
        self.documents = documents
        self.https = https
        self.paths = paths or PathRedactor("")

    def __call__(self, environ, start_response):
        gc_freeze.freeze_once()  # the start-up heap, out of full collections (idp.ops.gc_freeze)
        started = environ[ENVIRON_START] = time.perf_counter()
        # CPU time of this thread (about 1 us per read): the access line's cpu_ms says what a
        # request cost the server, apart from time spent waiting on the database or the GIL.
        cpu_started = time.thread_time()
        incoming = environ.get("HTTP_X_REQUEST_ID")
        if incoming and _VALID_REQUEST_ID.fullmatch(incoming):
            request_id = incoming
        else:
            request_id = os.urandom(16).hex()
        environ[ENVIRON_REQUEST_ID] = request_id
        token = logs.request_id_var.set(request_id)
        try:
            documents = self.documents
            if documents is not None and environ.get("PATH_INFO") in documents.paths:
                entry = documents.lookup(environ)
                if entry is not None:
                    start_response(entry.status, entry.headers + [(REQUEST_ID_HEADER, request_id)])
                    self._record(environ, environ["PATH_INFO"], 200, started, cpu_started, request_id,
                                 path=environ["PATH_INFO"])
                    return [entry.body]
            path = environ.get("PATH_INFO", "")
            statuses: list[str] = []

            def respond(status, headers, exc_info=None):
                security_headers.apply(headers, path, self.https)
                headers.append((REQUEST_ID_HEADER, request_id))
                statuses.append(status)
                return start_response(status, headers, exc_info)

            if documents is not None and documents.wants(environ):
                result = documents.fill(self.app, environ, respond)
            else:
                result = self.app(environ, respond)
            if statuses:
                rule = environ.get(ENVIRON_RULE)
                self._record(environ, rule.rule if rule is not None else "<unmatched>",
                             int(statuses[-1][:3]), started, cpu_started, request_id)
            return result
        finally:
            logs.request_id_var.reset(token)

    def _record(self, environ, endpoint: str, status: int, started: float, cpu_started: float, request_id: str,
                path: str | None = None) -> None:
        """Metrics and the access line for one response; `endpoint` is the URL rule (bounded labels),
        `path` the path to log when known in advance (else the request's, redacted)."""
        seconds = time.perf_counter() - started
        method = environ.get("REQUEST_METHOD", "GET")
        metrics.observe_request(endpoint, method, status, seconds)
        level = logging.DEBUG if endpoint in QUIET_PATHS else logging.INFO
        if access_log.isEnabledFor(level):
            record = logs.access_record(access_log.name, level, method, path or self._logged_path(environ), status,
                                        round(seconds * 1000, 2), environ.get("REMOTE_ADDR"), request_id)
            record.cpu_ms = round((time.thread_time() - cpu_started) * 1000, 2)
            hashed = environ.get(ENVIRON_HASH_CPU)
            if hashed is not None:
                record.hash_cpu_ms = round(hashed * 1000, 2)
            access_log.handle(record)


    def _logged_path(self, environ) -> str:
        """The request's path with the values that stand for secrets replaced (idp.ops.paths)."""
        rule = environ.get(ENVIRON_RULE)
        return self.paths.path(rule.rule if rule is not None else None, environ.get(ENVIRON_VIEW_ARGS),
                               environ.get("PATH_INFO", ""))


def password_hashed(cpu_seconds: float) -> None:
    """A password hash's CPU time (idp.security.passwords' `on_hashed`): into the
    `idp_password_hash_cpu_seconds` histogram, and the access line's `hash_cpu_ms` of the request
    that made it. What the argon2 parameters cost on this hardware under its real load, and the
    part of a login's `cpu_ms` that is the hash."""
    metrics.PASSWORD_HASH_CPU.observe(cpu_seconds)
    if has_request_context():
        environ = request.environ
        environ[ENVIRON_HASH_CPU] = environ.get(ENVIRON_HASH_CPU, 0.0) + cpu_seconds


def _note_rule(response: Response) -> Response:
    """after_request: leave the matched URL rule (the metrics label) and its values (for the
    access line's redacted path) where the middleware reads them."""
    request.environ[ENVIRON_RULE] = request.url_rule
    request.environ[ENVIRON_VIEW_ARGS] = request.view_args
    return response


def logged_path() -> str:
    """The current request's path as the logs write it (idp.ops.paths), for lines other than the
    access line that name the request (idp.errors)."""
    from flask import current_app

    paths = current_app.extensions.get(PATH_REDACTOR) or PathRedactor("")
    rule = request.url_rule
    return paths.path(rule.rule if rule is not None else None, request.view_args, request.path)


# Headers a reverse proxy adds to say whom it relays (RFC 7239's and the common ones).
_FORWARDING_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP")


def _relayed_by_unknown_proxy() -> bool:
    """Whether this request says a proxy relayed it, while no trusted proxy's headers were
    applied (idp.ops.proxy; ProxyFix leaves its mark in the environ). Its address is then the
    proxy's own, not the client's: a proxy on the same host or the private network, left out of
    `server.trusted_proxies`, would otherwise hand /metrics to anyone on the internet through
    `ops.metrics_networks`' loopback and private ranges."""
    return "werkzeug.proxy_fix.orig" not in request.environ and any(
        name in request.headers for name in _FORWARDING_HEADERS)


def healthz() -> Response:
    return Response('{"status":"ok"}', mimetype="application/json")


# (name, check) pairs the app's other parts add (`add_readiness_check`): run when the database
# answers, each returning None when fine, else what is wrong (for the log, never the caller).
READINESS_CHECKS = "idp.readiness_checks"


def add_readiness_check(app: Flask, name: str, check) -> None:
    app.extensions.setdefault(READINESS_CHECKS, []).append((name, check))


def readyz() -> Response:
    """Ready when the database answers and the checks other parts added pass (the signing keys
    open: idp.oidc.keys.readiness), and Redis answers too when one is configured
    (server.redis_url): without it the login forms' rate limits and lockouts fail, every login
    POST a 500."""
    state = {"status": "ready", "database": "ok"}
    try:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to reach the database means "not ready"
        log.warning("readiness check failed: %s", exc.__class__.__name__, extra={"fields": {"error": str(exc)[:300]}})
        state = {"status": "unavailable", "database": "unreachable"}
    if state["database"] == "ok":
        for name, check in current_app.extensions.get(READINESS_CHECKS, ()):
            problem = check()
            state[name] = "ok" if problem is None else "unusable"
            if problem is not None:
                log.warning("readiness check failed: %s: %s", name, problem)
                state["status"] = "unavailable"
    redis = current_app.extensions.get("idp.redis")
    if redis is not None:
        try:
            redis.ping()
            state["redis"] = "ok"
        except Exception as exc:  # any failure to reach Redis means "not ready" too
            log.warning("readiness check failed: Redis %s", exc.__class__.__name__,
                        extra={"fields": {"error": str(exc)[:300]}})
            state.update(status="unavailable", redis="unreachable")
    return Response(json.dumps(state, separators=(",", ":")), status=200 if state["status"] == "ready" else 503,
                    mimetype="application/json", headers={"Cache-Control": "no-store"})


def init_app(app: Flask, settings) -> None:
    ops = settings.section("ops")
    logs.configure(level=settings.get("server.log_level", "INFO"), json_lines=bool(settings.get("server.json_logs", True)))
    if not ops.get("access_log", True):
        access_log.setLevel(logging.WARNING)
    else:
        access_log.setLevel(logging.NOTSET)
    # The audit events' lines (idp.audit), at INFO like the access lines, but written whatever
    # server.log_level says: a level raised to WARNING to quiet the logs silently cut the SIEM's
    # feed, which ops.audit_log alone turns off.
    logging.getLogger("idp.audit").setLevel(logging.INFO if ops.get("audit_log", True) else logging.WARNING)

    documents = None
    if ops.get("cached_documents") and float(ops.get("cached_documents_ttl", 0)) > 0:
        documents = DocumentCache(ops.get("cached_documents"), float(ops.get("cached_documents_ttl")))
    # Proxy trust first, so that everything inside (logs, metrics, Flask) sees the real client.
    paths = app.extensions[PATH_REDACTOR] = PathRedactor(settings.secret_key)
    wsgi = RequestContext(app.wsgi_app, documents, https=settings.issuer.startswith("https://"), paths=paths)
    proxies = parse_networks(settings.trusted_proxies)
    warn_of_everyone(proxies)
    wsgi = TrustedProxies(wsgi, proxies)
    app.wsgi_app = wsgi
    app.after_request(_note_rule)

    app.add_url_rule("/healthz", "ops.healthz", healthz, methods=["GET"])
    app.add_url_rule("/readyz", "ops.readyz", readyz, methods=["GET"])

    if ops.get("metrics_enabled", True):
        allowed = parse_networks(ops.get("metrics_networks", ()))

        def metrics_view() -> Response:
            if allowed and (not address_in(allowed, request.remote_addr) or _relayed_by_unknown_proxy()):
                abort(404)
            body, content_type = metrics.exposition()
            return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})

        app.add_url_rule("/metrics", "ops.metrics", metrics_view, methods=["GET"])

    # Probes and scrapes must never be throttled by a default rate limit someone adds later.
    limiter = next(iter(app.extensions.get("limiter", ())), None)
    if limiter is not None:
        for view in ("ops.healthz", "ops.readyz", "ops.metrics"):
            if view in app.view_functions:
                limiter.exempt(app.view_functions[view])
