"""The login a browser performs, as a load generator: authorize -> login form -> (TOTP code form)
-> code -> token -> userinfo, with PKCE S256, state and nonce; plus the threads that repeat it.

Only the public behaviour is assumed (CONTRACT.md): HTML forms reached by redirects, fields
`username` and `password`, then `code` for a second factor, every hidden input posted back (CSRF
token, transaction id and version), a consent form answered with `action=allow` should one appear.
The generator stops at the redirect to the client's redirect_uri and takes the code from its query.

TOTP users come from a `TotpPool`: a code is accepted once per credential per 30 s time step,
so every login takes a user that no other thread holds and a step of that user's that is still
unused and inside the server's +-1 step window (see `TotpPool.acquire`).
"""
from __future__ import annotations

import base64
import hashlib
import heapq
import html
import os
import re
import threading
import time
from dataclasses import dataclass, field
from http.client import HTTPException
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import requests

from lean_http import Browser


_FORM = re.compile(r"<form\b([^>]*)>(.*?)</form\s*>", re.S | re.I)
_FIELD = re.compile(r"<(input|button)\b([^>]*)>", re.I)
_ATTRIBUTE = re.compile(r"""([^\s"'>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?""")


def _attributes(text: str) -> dict[str, str | None]:
    """A tag's attributes, names lower-cased, values unescaped; None for a bare one (`checked`)."""
    found = {}
    for match in _ATTRIBUTE.finditer(text):
        name, double, single, bare = match.groups()
        value = double if double is not None else single if single is not None else bare
        found.setdefault(name.lower(), None if value is None else html.unescape(value))
    return found


def parse_forms(page: str) -> list[dict]:
    """Every <form> of a page: its action, method, the inputs a browser would post (unchecked
    checkboxes and radios left out) and its submit buttons' (name, value) pairs.

    Regular expressions over our own templates rather than `html.parser`, which cost the
    generator about half a millisecond per page (the generator's CPU is taken from the server
    it measures). tests/integration/test_bench_generator.py holds it to html.parser's reading of the
    provider's real pages.
    """
    forms = []
    for form_attributes, body in _FORM.findall(page):
        attributes = _attributes(form_attributes)
        form = {"action": attributes.get("action") or "", "method": (attributes.get("method") or "get").lower(),
                "inputs": [], "buttons": []}
        for tag, field_attributes in _FIELD.findall(body):
            field = _attributes(field_attributes)
            name = field.get("name")
            if not name:
                continue
            kind = (field.get("type") or ("submit" if tag.lower() == "button" else "text")).lower()
            if kind == "submit":
                form["buttons"].append((name, field.get("value") or ""))
            elif kind not in ("checkbox", "radio") or "checked" in field:
                form["inputs"].append((name, field.get("value") or ""))
        forms.append(form)
    return forms


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
               http: Browser | None = None, totp_code=None, wrong_codes: int = 0) -> dict:
    """One full login from a fresh browser; returns the token response (with refresh_token).

    `totp_code()` gives the code to type when the code form appears (called at that moment);
    `wrong_codes` wrong codes are posted first (each must come back as the form again, 401)."""
    http = http or Browser()
    http.cookies.clear()
    # Every login comes from 127.0.0.1: the bench raises the per-address limits through IDP_RATELIMIT__*
    # (bench/run.py) rather than pretending to be a proxy.
    verifier = _b64(os.urandom(32))
    state, nonce = _b64(os.urandom(12)), _b64(os.urandom(12))
    query = urlencode({
        "response_type": "code", "client_id": client.client_id, "redirect_uri": client.redirect_uri,
        "scope": "openid email profile offline_access", "state": state, "nonce": nonce,
        "code_challenge": _b64(hashlib.sha256(verifier.encode()).digest()), "code_challenge_method": "S256",
    })
    response = http.get(f"{endpoints.authorization}?{query}", allow_redirects=False, timeout=30)
    location = None
    code_posts, expected_wrong = 0, _b64(os.urandom(3))
    for _step in range(12):
        if response.is_redirect:
            location = urljoin(response.url, response.headers["Location"])
            if location.startswith(client.redirect_uri):
                break
            response = http.get(location, allow_redirects=False, timeout=30)
            continue
        if response.status_code >= 400 and "<form" not in response.text:
            raise FlowError(f"{response.status_code} at {urlsplit(response.url).path}")
        form = next((f for f in parse_forms(response.text) if f["method"] == "post"), None)
        if form is None:
            raise FlowError(f"no form at {urlsplit(response.url).path} ({response.status_code})")
        names = {name for name, _ in form["inputs"]}
        data = dict(form["inputs"])
        if "code" in names and totp_code is not None:
            if code_posts > wrong_codes or (code_posts and response.status_code != 401):
                raise FlowError(f"code form shown again ({response.status_code}) after {code_posts} codes")
            right = totp_code() if code_posts == wrong_codes else None
            data["code"] = right or wrong_code(expected_wrong)
            code_posts += 1
        elif "code" in names:
            raise FlowError("a second factor was asked for a password-only user")
        elif "password" in names:
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


def wrong_code(seed: str) -> str:
    """Six digits that are not a valid code (barring a one-in-a-million clash with the window)."""
    return str(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:4], "big") % 1_000_000).zfill(6)


@dataclass
class TotpUser:
    email: str
    password: str
    secret: str           # base32
    next_step: int = 0    # lowest time step this user has not spent yet


@dataclass
class TotpLease:
    user: TotpUser
    step: int             # usable when acquired; code() picks again when the code is typed
    pool: "TotpPool"
    posted: bool = False
    index: int = 0        # the user's position in the pool

    def code(self) -> str:
        """The code, for the lowest step usable now: a login slow enough under load (seconds at c64)
        would otherwise post a step that has left the window since the user was taken."""
        import pyotp

        self.step = self.pool._usable_step(self.user, time.time())  # the user is ours: at most current+1
        self.posted = True
        return pyotp.TOTP(self.user.secret).at(self.step * PERIOD)


PERIOD = 30


class TotpPool:
    """TOTP bench users, each held by one thread at a time, each step of each user spent once.

    The provider accepts a code of the steps current-1, current and current+1 (its clock is this
    machine's) and only for a step above the credential's last accepted one. `acquire` picks a
    free user that has an unspent step in the window; when the code form appears, `code()` takes
    that user's lowest unspent step still valid for the POST: current-1 only while at least
    `margin` seconds of the current step remain, never beyond current+1. So each user supplies at most one login per 30 s in steady
    state (three at once when fresh): the pool must hold several times the logins per 30 s the
    provider can do, or threads wait (`waited` seconds, reported) and the rate measures the pool.
    """

    def __init__(self, users: list[tuple[str, str, str]], margin: float = 10.0) -> None:
        self.users = [TotpUser(*u) for u in users]
        self.margin = margin
        # The free users by their lowest unspent step (then by position): the head is the user
        # `acquire` wants, found without a scan of all of them (which cost the generator a
        # quarter of a millisecond per login).
        self.free = [(user.next_step, index) for index, user in enumerate(self.users)]
        heapq.heapify(self.free)
        self.lock = threading.Lock()
        self.waited = 0.0

    def _usable_step(self, user: TotpUser, now: float) -> int | None:
        current = int(now // PERIOD)
        lowest = current - 1 if (current + 1) * PERIOD - now >= self.margin else current
        step = max(user.next_step, lowest)
        return step if step <= current + 1 else None

    def acquire(self, deadline: float | None) -> TotpLease | None:
        started = time.monotonic()
        while True:
            with self.lock:
                if self.free:
                    index = self.free[0][1]
                    step = self._usable_step(self.users[index], time.time())
                    if step is not None:
                        heapq.heappop(self.free)
                        self.waited += time.monotonic() - started
                        return TotpLease(self.users[index], step, self, index=index)
            if deadline and time.monotonic() >= deadline:
                with self.lock:
                    self.waited += time.monotonic() - started
                return None
            time.sleep(0.02)

    def release(self, lease: TotpLease) -> None:
        with self.lock:
            if lease.posted:  # spent, whether accepted or not
                lease.user.next_step = max(lease.user.next_step, lease.step + 1)
            heapq.heappush(self.free, (lease.user.next_step, lease.index))


@dataclass
class LoginRun:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    refresh_tokens: list[str] = field(default_factory=list)
    seconds: float = 0.0
    client_cpu: float = 0.0
    waited: float = 0.0   # seconds threads waited for a usable TOTP step (TotpPool)


def _failure(exc: Exception) -> str:
    """A failed login's error line: the flow's own message, or an unforeseen exception's type and message."""
    foreseen = isinstance(exc, (FlowError, OSError, HTTPException, ValueError, KeyError))
    return (str(exc) if foreseen else f"{type(exc).__name__}: {exc}")[:200]


def run_logins(endpoints: Endpoints, client: Client, users: list[tuple[str, str]] | TotpPool, concurrency: int,
               duration: float | None = None, count: int | None = None, wrong_codes: int = 0) -> LoginRun:
    """`concurrency` threads, each a fresh browser per login, for `duration` seconds or `count` logins.
    `users` is a list of (e-mail, password) for password-only logins, or a TotpPool."""
    pool = users if isinstance(users, TotpPool) else None
    waited_before = pool.waited if pool else 0.0
    result = LoginRun()
    lock = threading.Lock()
    deadline = time.monotonic() + duration if duration else None
    remaining = [count if count is not None else -1]

    def worker(index: int) -> None:
        http = Browser()
        n = index
        while True:
            with lock:
                if remaining[0] == 0:
                    return
                remaining[0] -= 1
            if deadline and time.monotonic() >= deadline:
                return
            lease = None
            if pool is not None:
                lease = pool.acquire(deadline)
                if lease is None:
                    return
                username, password = lease.user.email, lease.user.password
            else:
                username, password = users[n % len(users)]
                n += concurrency
            started = time.perf_counter()
            try:
                tokens = login_once(endpoints, client, username, password, http,
                                    totp_code=lease.code if lease else None, wrong_codes=wrong_codes)
            except Exception as exc:  # every failure counted: a thread that died would only lower the rate
                with lock:
                    result.errors.append(_failure(exc))
                time.sleep(0.05)
                continue
            finally:
                if lease is not None:
                    pool.release(lease)
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
    result.waited = (pool.waited - waited_before) if pool else 0.0
    return result
