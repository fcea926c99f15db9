"""bench/login_flow.py's threads count every login that fails: a thread that died on an unexpected
exception would only lower the rate, with no error in the row (the bench's figures must not hide
a server that drops connections or answers what the generator cannot read)."""
from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import login_flow  # noqa: E402
from login_flow import Client, Endpoints, run_logins  # noqa: E402


def _server_that_hangs_up() -> str:
    """A listening socket that reads each request and closes the connection without an answer
    (what a gunicorn worker killed in the middle of a request leaves the client with)."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}"


def _endpoints(base: str) -> Endpoints:
    return Endpoints(base + "/authorize", base + "/oauth/token", base + "/oauth/userinfo")


def test_a_connection_closed_without_a_response_is_a_failed_login():
    base = _server_that_hangs_up()

    run = run_logins(_endpoints(base), Client("id", "secret", "http://127.0.0.1:9/callback"), [("u@x.test", "pw")],
                     concurrency=1, count=3)

    assert len(run.errors) == 3 and not run.latencies
    assert "closed the connection without a response" in run.errors[0]


def test_any_exception_of_a_login_is_counted_not_a_thread_lost(monkeypatch):
    def broken(*args, **kwargs):
        raise TypeError("something the generator did not foresee")

    monkeypatch.setattr(login_flow, "login_once", broken)

    run = run_logins(_endpoints("http://127.0.0.1:9"), Client("id", "secret", "http://127.0.0.1:9/callback"),
                     [("u@x.test", "pw")], concurrency=2, count=4)

    assert len(run.errors) == 4
    assert run.errors[0] == "TypeError: something the generator did not foresee"
