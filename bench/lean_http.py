"""A minimal HTTP/1.1 browser for the login load generator: cookies, forms, no redirects followed.

`requests` costs about a millisecond of CPU per request in its own layers (sessions, adapters,
urllib3, cookie policy); the generator shares the two cores with the server it measures, so
every millisecond it spends is taken from the provider. This client does what `login_once`
needs with `http.client` and nothing else: one connection per request (gunicorn's sync workers
close it anyway), cookies kept by name for the one host, bodies form-encoded.
"""
from __future__ import annotations

import base64
import http.client
import json
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
        target = parts.path + ("?" + parts.query if parts.query else "")
        sent = {"Host": parts.netloc, "Connection": "close", "Accept-Encoding": "identity"}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{name}={value}" for name, value in self.cookies.items())
        if body is not None:
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        sent.update(headers or {})
        connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
        try:
            connection.request(method, target or "/", body=body, headers=sent)
            raw = connection.getresponse()
            content = raw.read()
            received = Headers((name.lower(), value) for name, value in raw.getheaders())
            for name, value in raw.getheaders():
                if name.lower() == "set-cookie":
                    self._keep_cookie(value)
        finally:
            connection.close()
        return Response(raw.status, received, content, url)

    def _keep_cookie(self, header: str) -> None:
        pair, _, attributes = header.partition(";")
        name, _, value = pair.strip().partition("=")
        lowered = attributes.lower()
        if "max-age=0" in lowered or "expires=thu, 01 jan 1970" in lowered or not value:
            self.cookies.pop(name, None)
        else:
            self.cookies[name] = value
