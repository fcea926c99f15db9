"""A minimal HTTP/1.1 browser for the login load generator: cookies, forms, no redirects followed.

The generator shares the two cores with the server it measures, so every millisecond of CPU it
spends is taken from the provider. `requests` costs about a millisecond per request in its own
layers (sessions, adapters, urllib3, cookie policy), and `http.client` spends much of its own
reading headers through the `email` package. This client writes the request and reads the
response on a plain socket: one connection per request (gunicorn's sync workers close it
anyway, so the response ends where the connection does), headers split by hand, cookies kept
by name for the one host, bodies form-encoded. Measured on a password login (five requests,
one form read), the generator's CPU per login: 4.0 ms with `http.client` and `html.parser`,
2.1 ms with this client and `login_flow.parse_forms`. tests/integration/test_bench_generator.py
holds both to what a browser does.
"""
from __future__ import annotations

import base64
import json
import socket
from http.client import RemoteDisconnected
from urllib.parse import urlencode, urlsplit


class Headers(dict):
    """Response headers, looked up case-insensitively (names are stored lower-cased)."""

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def get(self, name: str, default=None):
        return super().get(name.lower(), default)


class Response:
    __slots__ = ("status_code", "headers", "content", "url")

    def __init__(self, status_code: int, headers: Headers, content: bytes, url: str) -> None:
        self.status_code, self.headers, self.content, self.url = status_code, headers, content, url

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    @property
    def is_redirect(self) -> bool:
        return self.status_code in (301, 302, 303, 307, 308) and "location" in self.headers

    def json(self):
        return json.loads(self.content)


class Browser:
    """The subset of `requests.Session` the login generator uses."""

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}

    def get(self, url: str, *, headers: dict | None = None, allow_redirects: bool = False,
            timeout: float = 30) -> Response:
        return self.request("GET", url, headers=headers, timeout=timeout)

    def post(self, url: str, *, data: dict | None = None, auth: tuple[str, str] | None = None,
             headers: dict | None = None, allow_redirects: bool = False, timeout: float = 30) -> Response:
        headers = dict(headers or {})
        if auth is not None:
            headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        return self.request("POST", url, body=urlencode(data or {}).encode(), headers=headers, timeout=timeout)

    def request(self, method: str, url: str, *, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 30) -> Response:
        parts = urlsplit(url)
        target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
        lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close",
                 "Accept-Encoding: identity"]
        if self.cookies:
            lines.append("Cookie: " + "; ".join(f"{name}={value}" for name, value in self.cookies.items()))
        if body is not None:
            lines += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        with socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout) as connection:
            connection.sendall(payload)
            raw = _read_response(connection)
        if not raw:  # a worker that died or was killed in the middle of the request
            raise RemoteDisconnected(f"{parts.netloc} closed the connection without a response")
        head, _, content = raw.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        received = Headers()
        for line in header_lines:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "set-cookie":
                self._keep_cookie(value)
            received[name] = value
        length = received.get("content-length")
        if length is not None:
            content = content[:int(length)]
        return Response(int(status_line.split(" ", 2)[1]), received, content, url)

    def _keep_cookie(self, header: str) -> None:
        pair, _, attributes = header.partition(";")
        name, _, value = pair.strip().partition("=")
        lowered = attributes.lower()
        if "max-age=0" in lowered or "expires=thu, 01 jan 1970" in lowered or not value:
            self.cookies.pop(name, None)
        else:
            self.cookies[name] = value


def _read_response(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (`Connection: close`)."""
    chunks = []
    while chunk := connection.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)
