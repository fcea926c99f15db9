"""Prometheus metrics: the names other modules increment, and the `/metrics` exposition.

Names (all prefixed `idp_`):

- `idp_http_requests_total{endpoint, method, status}`: every response. `endpoint` is the
  Flask URL rule (`/oauth/token`, `/users/<int:user_id>`), never the raw path, and
  `<unmatched>` for 404s, so the label set stays bounded whatever clients send.
- `idp_http_request_duration_seconds{endpoint, method}`: latency histogram, measured from the
  moment the WSGI server hands the request over to the moment the response is built.
- `idp_logins_total{outcome}`: password logins. Use `LOGINS.labels(outcome=...).inc()` with a
  short fixed word: the login pipeline uses `success`, `bad_password` (wrong password, unknown
  or disabled account) and `locked` (posted during a lockout); add others the same way, never
  free text.
- `idp_token_grants_total{grant_type}`: tokens issued by the token endpoint, by grant
  (`authorization_code`, `refresh_token`, `client_credentials`,
  `urn:ietf:params:oauth:grant-type:device_code`). Use
  `count_grant(grant_type)` after the token is saved.
- `idp_backchannel_logouts_total{outcome}`: logout tokens sent to clients (idp.oidc.backchannel),
  once each whatever the attempts: `delivered`, `refused` (the client answered 4xx) or `failed`
  (no answer, or 5xx, three times).

Usage from other modules::

    from idp.ops import metrics
    metrics.LOGINS.labels(outcome="success").inc()
    metrics.count_grant("refresh_token")

With several gunicorn workers each process counts on its own; set the environment variable
PROMETHEUS_MULTIPROC_DIR to an empty, writable directory before the server starts and
prometheus_client keeps the values in per-process files that `/metrics` adds up (its
"multiprocess mode"). prometheus_client decides this at import time, so the variable must be
in the environment of the gunicorn master, not set later.
"""
from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import REGISTRY


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")


if multiprocess_dir() and not os.path.isdir(multiprocess_dir()):
    # /run (where operations.md puts it) is emptied at every boot: a directory not made again
    # would keep the provider from starting at all, with prometheus_client's FileNotFoundError
    # on its first metric below. Missing, it is as empty as the docs ask; one that cannot be
    # made is one line from `idp` (an OSError) and the last line of gunicorn's traceback. Made
    # for the workers' user alone: its files are the counts /metrics keeps from the public.
    os.makedirs(multiprocess_dir(), mode=0o700, exist_ok=True)

# Latency buckets for an identity provider: sub-millisecond token grants up to argon2-bound
# logins of tens of milliseconds and the occasional slow database.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

HTTP_REQUESTS = Counter(
    "idp_http_requests", "HTTP responses by URL rule, method and status.", ("endpoint", "method", "status"))
HTTP_LATENCY = Histogram(
    "idp_http_request_duration_seconds", "Time to build a response, by URL rule and method.",
    ("endpoint", "method"), buckets=LATENCY_BUCKETS)
LOGINS = Counter("idp_logins", "Password logins by outcome.", ("outcome",))
TOKEN_GRANTS = Counter("idp_token_grants", "Tokens issued by the token endpoint, by grant type.", ("grant_type",))
# argon2id with OWASP's parameters takes 15-50 ms of CPU on a server core; above, a tuning to watch.
PASSWORD_HASH_CPU = Histogram(
    "idp_password_hash_cpu_seconds", "CPU time of each password hash made or verified, on its thread.",
    buckets=(0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5))
BACKCHANNEL_LOGOUTS = Counter("idp_backchannel_logouts", "Back-channel logout deliveries by outcome, retries included.",
                              ("outcome",))

# Methods outside this set are counted as "other": the method is client-chosen text.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# label children cached by key: `.labels()` takes a lock and builds a tuple on every call,
# which adds up on the token endpoint. The keys are bounded (rules x methods x statuses).
_request_children: dict[tuple[str, str, int], tuple] = {}


def observe_request(endpoint: str, method: str, status: int, seconds: float) -> None:
    """Count one response and its latency (called once per request by idp.ops)."""
    if method not in KNOWN_METHODS:
        method = "other"  # before the cache's key too: a client sending made-up methods would grow it
    key = (endpoint, method, status)
    children = _request_children.get(key)
    if children is None:
        label_method = method
        children = (HTTP_REQUESTS.labels(endpoint, label_method, str(status)),
                    HTTP_LATENCY.labels(endpoint, label_method))
        _request_children[key] = children
    children[0].inc()
    children[1].observe(seconds)


_grant_children: dict[str, object] = {}


def count_grant(grant_type: str) -> None:
    """Count one issued token (TOKEN_GRANTS, with its label child cached: grant types are few)."""
    child = _grant_children.get(grant_type)
    if child is None:
        child = _grant_children[grant_type] = TOKEN_GRANTS.labels(grant_type=grant_type)
    child.inc()


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric: this process's, or all workers' in multiprocess mode."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def child_exit(server, worker) -> None:  # pragma: no cover - called by gunicorn
    """gunicorn `child_exit` hook: drop a dead worker's live gauges in multiprocess mode."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
