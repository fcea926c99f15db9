"""Structured logs: one JSON object per line, carrying the request id of the request being served.

Every line has `time` (UTC, ISO 8601 with milliseconds), `level`, `logger`, `message`, and
`request_id` when logged while a request is served. The access line written after each
response (logger `idp.access`) adds `method`, `path` (with the values that stand for secrets,
such as login handles, replaced: idp.ops.paths), `status`, `duration_ms`, `cpu_ms` (the CPU time
the request's thread used: what it cost apart from waiting), `hash_cpu_ms` (the part of it spent
hashing passwords, on a request that did), `remote_addr`.
Other code adds fields the same way: `log.info("...", extra={"fields": {"client_id": cid}})`.

The request id lives in a context variable set by idp.ops's WSGI middleware, so any logger
anywhere (SQLAlchemy, Authlib, our modules) gets it without being handed the request.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("idp_request_id", default=None)

# The fields of a LogRecord that are not user data (everything else set through `extra`
# would be too surprising to dump, so only `extra={"fields": {...}}` is copied).
_ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "cpu_ms", "hash_cpu_ms", "remote_addr")


def with_request_id(target):
    """`target` wrapped to log with the request id of the request being served now, for a thread
    that works on the request's behalf after its answer (a reset link's look-up and mail, security
    notices, back-channel logouts): its lines, audit events included, name the request that asked,
    as the docs promise. A new thread starts without the request's context variables (and must not
    be given Flask's: the request is over by then), so the id alone is carried."""
    request_id = request_id_var.get()

    def run(*args, **kwargs):
        request_id_var.set(request_id)
        return target(*args, **kwargs)

    return run


_second_cache: list = [None, ""]


def iso_time(created: float) -> str:
    """UTC ISO 8601 with milliseconds; the formatted second is cached (thousands of lines share it)."""
    second = int(created)
    if _second_cache[0] != second:
        _second_cache[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second_cache[0] = second
    return f"{_second_cache[1]}.{int((created - second) * 1000):03d}Z"


_quote = json.encoder.encode_basestring_ascii  # a JSON string literal, in C


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line. Cheap: one dict, one json.dumps; the access line
    (one per request, see `access_record`) is assembled directly, in a quarter of the time."""

    def format(self, record: logging.LogRecord) -> str:
        if record.__dict__.get("access_line") and not record.exc_info:
            return self._access_line(record)
        entry = {
            "time": iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for name in _ACCESS_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        fields = record.__dict__.get("fields")
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"), default=str)


    @staticmethod
    def _access_line(record: logging.LogRecord) -> str:
        """The same keys and values as the general path would write, without building a dict."""
        extra = record.__dict__
        cpu = extra.get("cpu_ms")
        hashed = extra.get("hash_cpu_ms")
        remote = extra.get("remote_addr")
        return "".join((
            '{"time":"', iso_time(record.created), '","level":"', record.levelname,
            '","logger":', _quote(record.name), ',"message":', _quote(record.getMessage()),
            ',"request_id":', _quote(extra["request_id"]), ',"method":', _quote(extra["method"]),
            ',"path":', _quote(extra["path"]), ',"status":', str(int(extra["status"])),
            ',"duration_ms":', repr(float(extra["duration_ms"])),
            ',"cpu_ms":' + repr(float(cpu)) if cpu is not None else "",
            ',"hash_cpu_ms":' + repr(float(hashed)) if hashed is not None else "",
            ',"remote_addr":' + _quote(remote) if remote is not None else "",
            "}"))


class TextFormatter(logging.Formatter):
    """Plain text for development consoles, still carrying the request id, and the record's
    `fields` after the message as `key="value"` (JSON literals, so a line stays one line): the
    JSON lines carry them, and a developer reading `make run`'s console needs them as much
    (why an authorization request got the error page is only there: the page says it in
    fixed words, idp.oidc.views)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if not getattr(record, "request_id", None):
            record.request_id = request_id_var.get() or "-"
        line = super().format(record)
        fields = record.__dict__.get("fields")
        if not fields:
            return line
        text = " ".join(f"{key}={json.dumps(value, default=str, ensure_ascii=False)}" for key, value in fields.items())
        head, newline, rest = line.partition("\n")  # a traceback stays after the line it belongs to
        return f"{head} {text}{newline}{rest}"


def access_record(logger_name: str, level: int, method: str, path: str, status: int, duration_ms: float,
                  remote_addr: str | None, request_id: str | None) -> logging.LogRecord:
    """The access line's record, built directly: `Logger.log` would walk the stack to find the
    caller (findCaller), which is most of its cost and says nothing useful for an access line."""
    record = logging.LogRecord(logger_name, level, "", 0, "%s %s %s", (method, path, status), None)
    record.method, record.path, record.status = method, path, status
    record.duration_ms, record.remote_addr, record.request_id = duration_ms, remote_addr, request_id
    record.access_line = request_id is not None  # JsonFormatter's fast path (it needs the request id)
    return record


_HANDLER_MARK = "_idp_ops_handler"


def configure(level: str = "INFO", json_lines: bool = True, stream=None) -> logging.Handler:
    """Install one handler on the root logger, or update it (create_app may run many times).

    A later call without `stream` keeps the stream already in use, so a test can point the
    handler at a buffer once. Returns the handler.
    """
    # Neither format shows thread or process names; not collecting them saves a third of the
    # cost of every LogRecord (a thread lookup, multiprocessing's current process). The process
    # id stays: gunicorn's own error log formats `%(process)d` (None there was a "--- Logging
    # error ---" traceback for every warning of gunicorn's, e.g. a request line too long).
    logging.logThreads = logging.logMultiprocessing = False
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, _HANDLER_MARK, False)), None)
    if handler is None:
        handler = logging.StreamHandler(stream or sys.stderr)
        setattr(handler, _HANDLER_MARK, True)
        root.addHandler(handler)
    elif stream is not None:
        handler.setStream(stream)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root.setLevel(getattr(logging, str(level).upper(), logging.INFO))
    # Authlib logs whole token responses at DEBUG ("Issue token %r"): live access and refresh
    # tokens. Never below INFO, whatever `server.log_level` asks for the rest.
    logging.getLogger("authlib").setLevel(max(logging.INFO, root.level))
    return handler
