"""The password login a browser performs, as a load generator: authorize -> login form -> code ->
token -> userinfo, with PKCE S256, state and nonce; plus the threads that repeat it.

Only the public behaviour is assumed (CONTRACT.md): HTML forms reached by redirects, fields
`username` and `password`, every hidden input posted back (CSRF token, transaction id and
version), a consent form answered with `action=allow` should one appear. The generator stops
at the redirect to the client's redirect_uri and takes the code from its query.
"""
from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import requests


class FormParser(HTMLParser):
    """Collects the first <form>'s action, method and inputs (with submit buttons' names/values)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self._current: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self._current = {"action": attrs.get("action") or "", "method": (attrs.get("method") or "get").lower(),
                             "inputs": [], "buttons": []}
            self.forms.append(self._current)
        elif self._current is not None and tag in ("input", "button"):
            kind = (attrs.get("type") or ("submit" if tag == "button" else "text")).lower()
            name = attrs.get("name")
            if not name:
                return
            if kind == "submit":
                self._current["buttons"].append((name, attrs.get("value", "")))
            elif kind not in ("checkbox", "radio") or "checked" in attrs:
                self._current["inputs"].append((name, attrs.get("value") or ""))

    def handle_endtag(self, tag):
        if tag == "form":
            self._current = None


class FlowError(Exception):
    pass


@dataclass
class Client:
    client_id: str
    client_secret: str
    redirect_uri: str


@dataclass
class Endpoints:
    authorization: str
    token: str
    userinfo: str

    @classmethod
    def discover(cls, base_url: str) -> "Endpoints":
        doc = requests.get(base_url + "/.well-known/openid-configuration", timeout=10).json()
        return cls(doc["authorization_endpoint"], doc["token_endpoint"], doc["userinfo_endpoint"])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def login_once(endpoints: Endpoints, client: Client, username: str, password: str,
               http: requests.Session | None = None) -> dict:
    """One full login from a fresh browser; returns the token response (with refresh_token)."""
    http = http or requests.Session()
    http.cookies.clear()
    # Each login comes from its own client address, as real users do: the bench tells the provider
    # (server.trusted_proxies = 127.0.0.1) that it is a proxy forwarding for 10.x.y.z, so per-address
    # rate limits see many users rather than one address hammering the login form.
    http.headers["X-Forwarded-For"] = "10.%d.%d.%d" % tuple(os.urandom(3))
    verifier = _b64(os.urandom(32))
    state, nonce = _b64(os.urandom(12)), _b64(os.urandom(12))
    query = urlencode({
        "response_type": "code", "client_id": client.client_id, "redirect_uri": client.redirect_uri,
        "scope": "openid email profile offline_access", "state": state, "nonce": nonce,
        "code_challenge": _b64(hashlib.sha256(verifier.encode()).digest()), "code_challenge_method": "S256",
    })
    response = http.get(f"{endpoints.authorization}?{query}", allow_redirects=False, timeout=30)
    location = None
    for _step in range(12):
        if response.is_redirect:
            location = urljoin(response.url, response.headers["Location"])
            if location.startswith(client.redirect_uri):
                break
            response = http.get(location, allow_redirects=False, timeout=30)
            continue
        if response.status_code >= 400 and "<form" not in response.text:
            raise FlowError(f"{response.status_code} at {urlsplit(response.url).path}")
        parser = FormParser()
        parser.feed(response.text)
        form = next((f for f in parser.forms if f["method"] == "post"), None)
        if form is None:
            raise FlowError(f"no form at {urlsplit(response.url).path} ({response.status_code})")
        names = {name for name, _ in form["inputs"]}
        data = dict(form["inputs"])
        if "password" in names:
            if response.status_code >= 400 or location == ("posted", response.url):
                raise FlowError(f"login form shown again ({response.status_code}): wrong password or rate limited")
            data["username"], data["password"] = username, password
            location = ("posted", response.url)
        elif ("action", "allow") in form["buttons"]:
            data["action"] = "allow"
        elif form["buttons"]:
            data.setdefault(*form["buttons"][0])
        response = http.post(urljoin(response.url, form["action"] or response.url), data=data,
                             allow_redirects=False, timeout=30)
    else:
        raise FlowError("too many steps before the redirect back to the client")
    params = parse_qs(urlsplit(location).query)
    if "code" not in params:
        raise FlowError(f"redirected back without a code: {params.get('error')}")
    if params.get("state") != [state]:
        raise FlowError("state mismatch")
    token = http.post(endpoints.token, data={
        "grant_type": "authorization_code", "code": params["code"][0], "redirect_uri": client.redirect_uri,
        "code_verifier": verifier}, auth=(client.client_id, client.client_secret), timeout=30)
    if token.status_code != 200:
        raise FlowError(f"token endpoint {token.status_code}: {token.text[:200]}")
    tokens = token.json()
    info = http.get(endpoints.userinfo, headers={"Authorization": f"Bearer {tokens['access_token']}"}, timeout=30)
    if info.status_code != 200 or "sub" not in info.json():
        raise FlowError(f"userinfo {info.status_code}")
    return tokens


@dataclass
class LoginRun:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    refresh_tokens: list[str] = field(default_factory=list)
    seconds: float = 0.0
    client_cpu: float = 0.0


def run_logins(endpoints: Endpoints, client: Client, users: list[tuple[str, str]], concurrency: int,
               duration: float | None = None, count: int | None = None) -> LoginRun:
    """`concurrency` threads, each a fresh browser per login, for `duration` seconds or `count` logins."""
    result = LoginRun()
    lock = threading.Lock()
    deadline = time.monotonic() + duration if duration else None
    remaining = [count if count is not None else -1]

    def worker(index: int) -> None:
        http = requests.Session()
        n = index
        while True:
            with lock:
                if remaining[0] == 0:
                    return
                remaining[0] -= 1
            if deadline and time.monotonic() >= deadline:
                return
            username, password = users[n % len(users)]
            n += concurrency
            started = time.perf_counter()
            try:
                tokens = login_once(endpoints, client, username, password, http)
            except (FlowError, requests.RequestException, ValueError, KeyError) as exc:
                with lock:
                    result.errors.append(str(exc)[:200])
                time.sleep(0.05)
                continue
            elapsed = time.perf_counter() - started
            with lock:
                result.latencies.append(elapsed)
                if tokens.get("refresh_token"):
                    result.refresh_tokens.append(tokens["refresh_token"])

    cpu_before, started = time.process_time(), time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.monotonic() - started
    result.client_cpu = time.process_time() - cpu_before
    return result
