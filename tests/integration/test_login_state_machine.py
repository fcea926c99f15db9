"""A randomized, stateful walk through the browser login pipeline (idp/login/), over HTTP.

Hypothesis's stateful testing drives two browsers (cookie jars), each with tabs that remember
every page of their login, stale ones included, against one live server. Four users per
example: one holding TOTP, recovery codes and a phone for push approvals (registered through
the real activation, by the companion app's own client), one with a password only, one required
to enrol (long ago: no grace left), one newly required (in the organization's grace period:
"Set up later"). The rules are what a browser (or someone at it, or at the phone) does: begin a
login at /authorize (first- or third-party client, acr_values=mfa, prompt=login, max_age=0, the
same request again), reload a tab, post the password form (right, wrong, another user's), post a
code (right, wrong, replayed, another user's, a recovery code, a used one), choose another method
(push from the code page), answer on the phone (the number the page shows, a wrong one, deny,
report fraud; a request already closed), poll the push page's status, press its Continue, postpone
enrolment, post an old page's form, post a form of the other browser's login (a stolen handle),
cancel, allow or deny consent, go back to a finished login's page, redeem a code once or twice;
and what the clock does: the grace period runs out (its stored start moved back), a login
transaction outlives its 10 minutes (its stored row aged), an admin resumes suspended push.

After every step (docs/architecture.md, "One request through the provider"):
  - no 5xx, nothing logged at ERROR, and only the answers the docs describe (a page, a 4xx,
    a redirect);
  - a post that cannot move the login (a form of another version, another browser's, a wrong
    or spent code, a wrong password) changes nothing of the login's row;
  - a login moves past a step only on what that step needs (the user's password, a fresh code
    of that user's, an unused recovery code, an enrolment proven with its own secret, a
    postponement while the grace lasts);
  - a login passes push only after the phone approved that login's own request with the number
    its page showed, and no fraud report came after; a fraud report suspends push for the user
    (no request is sent while it holds);
  - an expired login is refused cleanly (the "expired" page, no answer to the client) and its
    row does not change whatever is posted to it; the phone is not asked to answer it;
  - one code at most per authorization request, redeemed once at most; an ID token of a user
    holding a second factor (or of a request asking for one) says so (`amr` holds `mfa`); one
    without `mfa` for a user in grace is issued only while the grace lasts;
  - the database agrees: one code per nonce, at most one TOTP credential per user, the TOTP
    counter where the accepted codes left it, the grace logins counted once per postponement.

Not covered: WebAuthn (no authenticator is simulated here), parallel posts (tests/concurrency/),
a push request's own 60 s running out, refresh tokens.

Bounded for CI: 60 walks of up to 40 steps, derandomized (the same walks every run), some 30 s.
To hunt, IDP_TEST_LOGIN_WALKS=<n> runs n random walks (IDP_TEST_LOGIN_STEPS=<m> steps each) with
no time limit; `-s` prints which moves the walks made. (Runs of 400 to 800 walks of 60 to 80 steps,
on SQLite and PostgreSQL, found nothing the provider did wrong; nor, with push, grace and expiry
added, some 80 minutes of 250 to 500 walks of 60 to 80 steps on both.) The walks must replay the
same whatever the server's random values: a rule chooses among what the walk met in the order
it met it, never in an order of handles or numbers, or Hypothesis reports a flaky strategy.
"""
from __future__ import annotations

import base64
import collections
import html
import itertools
import json
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import parse_qs, urljoin, urlparse

import pyotp
import pytest
import requests
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule, \
    run_state_machine_as_test
from sqlalchemy import func, select, update

from authenticator.push import keys as push_keys
from authenticator.push.client import ChallengeUnavailable, PushClient

from fixtures.oidc import PASSWORD, FormBrowser, Page, RelyingParty, seed, start_server
from fixtures.totp import enrol_totp_during_login

MFA = "urn:idp:acr:mfa"
WALKS = int(os.environ.get("IDP_TEST_LOGIN_WALKS", 60))
STEPS = int(os.environ.get("IDP_TEST_LOGIN_STEPS", 40))
# What a step of a login may answer (docs/architecture.md): a page, a redirect, a refusal.
# 503 (a plugin that failed) and 429 (a limit, raised out of reach below) are not expected here.
ANSWERS = {200, 202, 302, 303, 400, 401, 403, 409}
# No lockout or request rate gets in the way of a walk: the model does not count guesses.
UNLIMITED = {"ratelimit.login_posts_per_ip": "1000000 per minute",
             **{f"ratelimit.{name}_failures_before_lockout": 1_000_000_000
                for name in ("password", "password_ip", "factor", "factor_ip")},
             "factors.push.device_requests": "1000000 per minute"}
# The organization's grace period ("Set up later", docs/policy.md): a user newly required may
# postpone enrolment for GRACE_DAYS days or GRACE_LOGINS logins, whichever runs out first.
GRACE_DAYS, GRACE_LOGINS = 30, 2
# The odd moves (an old page, another browser's login, a wrong answer) one time in four: a walk
# gets far enough into a login for them to matter.
RARELY = st.sampled_from([False, False, False, True])
MOSTLY = st.sampled_from([True, True, True, False])
SEEN: collections.Counter = collections.Counter()  # what the walks did (printed with -s)


class ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record) -> None:
        self.records.append(record)


@dataclass
class World:
    """What the walks share: one live server, its clients, the error log."""

    server: object
    seeded: object
    rps: dict
    errors: ErrorLog
    serial: itertools.count = field(default_factory=itertools.count)


@dataclass
class User:
    kind: str  # "totp" (and push, and recovery codes), "pwd", "enrol" (no grace left), "grace"
    email: str
    id: int
    public_id: str
    secret: str | None = None  # TOTP, once held
    counter: int = 0  # the last TOTP step accepted
    codes: list = field(default_factory=list)
    used_codes: set = field(default_factory=set)
    factor_since: float | None = None  # when the user came to hold a second factor (model time)
    phone: PushClient | None = None  # a registered push device
    postponed: int = 0  # logins that postponed enrolment
    grace_over_at: float | None = None  # when the walk moved the grace's start out of reach


@dataclass
class Login:
    """One authorization request, known by its `state`."""

    state: str
    browser: int
    client: str
    mfa: bool
    nonce: str
    verifier: str
    started: float
    url: str = ""
    handles: list = field(default_factory=list)  # its login transactions (the same request sent again: several)
    codes: list = field(default_factory=list)  # codes the client received
    issued_at: float | None = None
    errors: list = field(default_factory=list)


@dataclass
class Tab:
    browser: int
    login: Login | None
    pages: list = field(default_factory=list)  # every page shown, oldest first

    @property
    def page(self) -> Page | None:
        return self.pages[-1] if self.pages else None


@dataclass
class Answer:
    page: Page
    to_client: str | None
    chain: list


class Browser:
    """A cookie jar that follows redirects inside the provider, keeping every status it saw."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = requests.Session()

    def go(self, method: str, url: str, data: dict | None = None) -> Answer:
        response = self.http.request(method, urljoin(self.base_url, url), data=data, allow_redirects=False,
                                     timeout=30)
        chain = [(method, response.url, response.status_code)]
        while response.is_redirect:
            location = urljoin(response.url, response.headers["Location"])
            if not location.startswith(self.base_url):
                return Answer(Page(location, response.status_code, ""), location, chain)
            response = self.http.get(location, allow_redirects=False, timeout=30)
            chain.append(("GET", response.url, response.status_code))
        return Answer(Page(response.url, response.status_code, response.text, response.headers), None, chain)


def handle_of(url: str) -> str | None:
    match = re.match(r"^/login/([^/]+)$", urlparse(url).path)
    return match.group(1) if match and match.group(1) != "expired" else None


def handle_under(url: str) -> str | None:
    """The login a URL acts on: /login/<handle> and everything under it (its forms, its poll)."""
    match = re.match(r"^/login/([^/]+)(?:/|$)", urlparse(url).path)
    return match.group(1) if match and match.group(1) != "expired" else None


_FORMS: dict[int, tuple[Page, list]] = {}


def forms_of(page: Page | None) -> list[dict]:
    if page is None or not page.text:
        return []
    cached = _FORMS.get(id(page))
    if cached is None or cached[0] is not page:
        cached = _FORMS[id(page)] = (page, page.forms())
    return cached[1]


def step_form(page: Page | None, action_suffix: str = "") -> dict | None:
    """The page's form posting to its own login step (or to `action_suffix` under it)."""
    for form in forms_of(page):
        handle = handle_of(page.url)
        if handle and urlparse(form["action"]).path == f"/login/{handle}{action_suffix}" and form["method"] == "post":
            return form
    return None


PAGE_KINDS = {
    "password": lambda page, form: form is not None and "password" in form["fields"],
    "code": lambda page, form: form is not None and "code" in form["fields"] and "<code>" not in page.text,
    "enrol": lambda page, form: form is not None and "code" in form["fields"] and "<code>" in page.text,
    "notice": lambda page, form: form is not None and "data-recovery-codes" in page.text,
    "consent": lambda page, form: form is not None and any(n == "action" for n, _ in form["buttons"]),
    "push": lambda page, form: form is not None and "data-push-number" in page.text,
    "postpone": lambda page, form: postpone_form(page) is not None,
    "step": lambda page, form: handle_of(page.url) is not None and bool(csrf_of(page)),
}


def postpone_form(page: Page | None) -> dict | None:
    """The enrolment page's "Set up later" (shown while the grace lasts)."""
    handle = handle_of(page.url) if page is not None else None
    for form in forms_of(page):
        if handle and any(name == "postpone" for name, _ in form["buttons"]) \
                and urlparse(form["action"]).path == f"/login/{handle}":
            return form
    return None


def push_challenge_of(page: Page) -> str | None:
    """The push page's request, as the phone lists it: "<expires_at>-<number>"."""
    return page.find(r'data-push-challenge="([^"]+)"')


def csrf_of(page: Page) -> dict:
    """The page's CSRF token (any form's), as a form field."""
    for form in forms_of(page):
        if "csrf_token" in form["fields"]:
            return {"csrf_token": form["fields"]["csrf_token"]}
    return {}


def id_token_claims(id_token: str) -> dict:
    payload = id_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class LoginWalk(RuleBasedStateMachine):
    world: World  # set by the test

    def __init__(self) -> None:
        super().__init__()
        self.browsers = [Browser(self.world.server.url), Browser(self.world.server.url)]
        self.tabs: list[Tab] = []
        self.logins: dict[str, Login] = {}
        self.users: dict[str, User] = {}
        self.owners: dict[str, int] = {}  # login handle -> the browser /authorize sent to it
        self.redeemed: set[str] = set()
        self.last_post = None
        self.forced: tuple[Tab, Page] | None = None
        self.exchanged: list[tuple[Login, str]] = []
        # The phone's answers, in order (a fraud report voids the approvals before it):
        self.moves = itertools.count(1)
        self.approved: dict[str, int] = {}  # challenge id -> when the phone approved it with its number
        self.reported_at = 0  # when the phone last reported fraud
        self.suspended = False  # push, by that report (until an admin resumes it)
        self.listed: list[dict] = []  # every request the phone listed
        self.push_passed: set[str] = set()  # logins (handles) seen past push, judged once
        self.expired: dict[str, dict] = {}  # handle -> its row when the walk aged it
        self.world.errors.records.clear()

    # --- the world of one walk -------------------------------------------------------------

    @initialize()
    def make_users(self) -> None:
        n = next(self.world.serial)
        for kind in ("totp", "pwd", "enrol", "grace"):
            self.users[kind] = self._new_user(f"walk{n}-{kind}-{secrets.token_hex(3)}@acme.test", kind)
        totp = self.users["totp"]
        helper = FormBrowser(self.world.server.url)
        seeded = type("Seeded", (), {"user_email": totp.email, "password": PASSWORD})
        totp.secret, totp.codes = enrol_totp_during_login(helper, self.world.rps["first"], seeded)
        totp.counter = self._db_counter(totp)
        totp.factor_since = 0.0
        totp.phone = self._register_phone(totp)

    def _new_user(self, email: str, kind: str) -> User:
        from idp.db import db, utcnow
        from idp.models import User as UserRow
        from idp.security.tokens import random_token

        server = self.world.server
        # Required long ago (the grace is over), or just now (the grace runs).
        required = {"enrol": {"mfa_setting": "required", "required_since": utcnow() - timedelta(days=GRACE_DAYS * 2)},
                    "grace": {"mfa_setting": "required", "required_since": utcnow()}}.get(kind, {})
        with server.context():
            row = UserRow(public_id=random_token(16), org_id=self.world.seeded.org_id, email=email, name=kind,
                          role="user", password_hash=server.app.extensions["idp.passwords"].hash(PASSWORD), **required)
            db.session.add(row)
            db.session.commit()
            return User(kind, email, row.id, row.public_id)

    def _register_phone(self, user: User) -> PushClient:
        """A phone for push approvals, as the companion app registers one: an activation code
        (what `idp push activate` or the security page's QR gives), redeemed over HTTP."""
        from idp.factors import directory
        from idp_plugins.push.protocol import utc_now

        server = self.world.server
        with server.context():
            factor = server.app.extensions["idp.factors"].get("push")
            uri = factor.issue_activation(directory.find_user_by_email(user.email), server.url, utc_now()).uri
        phone = PushClient(server.url + "/factors/push/v1", push_keys.new_private_key())
        phone.register(parse_qs(urlparse(uri).query)["code"][0], "Walk phone")
        return phone

    # --- reading the database (white-box, to judge what a request changed) -------------------

    def _row(self, handle: str | None):
        from idp.db import db
        from idp.models import LoginTransaction
        from idp.security.tokens import sha256_hex

        if handle is None:
            return None
        with self.world.server.context():
            row = db.session.get(LoginTransaction, sha256_hex(handle))
            if row is None:
                return None
            return {"state": row.state, "version": row.version, "user_id": row.user_id,
                    "steps": json.dumps(row.steps_done, sort_keys=True), "factor": row.factor_name,
                    "browser": row.browser_binding, "steps_done": list(row.steps_done or ()),
                    "challenge": ((row.factor_state or {}).get("state") or {}).get("challenge_id")
                    if row.factor_name == "push" else None}

    def _db_counter(self, user: User) -> int:
        from idp.db import db
        from idp.models import Credential

        with self.world.server.context():
            return db.session.scalar(select(func.max(Credential.counter)).where(
                Credential.user_id == user.id, Credential.factor == "totp", Credential.revoked_at.is_(None))) or 0

    def _user_by_id(self, user_id: int | None) -> User | None:
        return next((u for u in self.users.values() if u.id == user_id), None)

    def _user_by_sub(self, sub: str) -> User | None:
        return next((u for u in self.users.values() if u.public_id == sub), None)

    # --- doing things, and what every answer must be ------------------------------------------

    def _go(self, browser: int, method: str, url: str, data: dict | None = None) -> Answer:
        answer = self.browsers[browser].go(method, url, data)
        for hop_method, hop_url, status in answer.chain:
            assert status < 500, f"{hop_method} {hop_url}: {status}\n{answer.page.text[:3000]}"
            assert status in ANSWERS, f"{hop_method} {hop_url}: {status} is not an answer the docs describe"
        assert not self.world.errors.records, [r.getMessage() for r in self.world.errors.records]
        if handle_under(url) in self.expired:  # refused cleanly: the "expired" page, nothing told to the client
            assert answer.to_client is None and answer.page.status == 400, (
                f"{method} {url} of an expired login: {answer.chain}")
        if answer.to_client is not None:
            self._at_client(answer.to_client)
        handle = handle_of(answer.page.url)
        if handle is not None and answer.chain[-1][0] == "GET" and answer.page.status == 200:
            # A login's page is shown to its own browser only (another's is sent to /login/expired):
            # a new login a step began (the consent page's "use another account") is this browser's.
            assert self.owners.setdefault(handle, browser) == browser, "a login's page shown to another browser"
        return answer

    def _at_client(self, location: str) -> None:
        params = {k: v[0] for k, v in parse_qs(urlparse(location).query).items()}
        login = self.logins.get(params.get("state", ""))
        assert login is not None, f"a redirect to the client for no request of ours: {location}"
        if "code" in params:
            assert not login.codes, f"a second code for one authorization request: {login}"
            login.codes.append(params["code"])
            login.issued_at = time.time()
        else:
            assert "error" in params, location
            login.errors.append(params["error"])

    def _new_tab(self, browser: int, login: Login | None, answer: Answer) -> Tab:
        tab = Tab(browser, login, [answer.page])
        handle = handle_of(answer.page.url)
        if handle is not None:
            self.owners[handle] = browser
        if login is not None and handle is not None:
            login.handles.append(handle)
        self.tabs.append(tab)
        return tab

    def _tab(self, pick: int) -> Tab:
        return self.tabs[pick % len(self.tabs)]

    def _with_form(self, kind: str) -> list[tuple[Tab, list[Page]]]:
        """Tabs with pages holding a step form of `kind`, and those pages (oldest first)."""
        found = []
        for tab in self.tabs:
            pages = [p for p in tab.pages if PAGE_KINDS[kind](p, step_form(p))]
            if pages:
                found.append((tab, pages))
        return found

    def _pick(self, kind: str, pick: int, stale: bool) -> tuple[Tab, Page] | None:
        if self.forced is not None:  # (honest_step: this tab's current page)
            return self.forced
        found = self._with_form(kind)
        if not found:
            return None
        tab, pages = found[pick % len(found)]
        return tab, pages[0] if stale else pages[-1]

    def _post_judged(self, browser: int, tab: Tab, form: dict, values: dict, moves_by: str | None) -> Answer:
        """Post `form` (a page of `tab`) from `browser`, and judge the login row's change.

        `moves_by`: what this post proves, when it proves what its step needs ("password:<user>",
        "code", "enrolment", "consent"), else None: then the step must not move."""
        handle = handle_of(form["action"]) or handle_of(tab.page.url)
        before = self._row(handle)
        self.last_post = (browser, tab, form, values, moves_by, before)
        data = dict(form["fields"], **values)
        answer = self._go(browser, "POST", form["action"], data)
        tab.pages.append(answer.page)
        after = self._row(handle)
        if before is None or after is None:
            return answer
        own = self._owns(browser, handle)
        posted_version = str(data.get("version", ""))
        if not own or posted_version != str(before["version"]):
            assert (after["state"], after["user_id"], after["steps"]) == (
                before["state"], before["user_id"], before["steps"]), (
                f"a {'foreign' if not own else 'stale'} form moved the login: {before} -> {after}")
            if not own:
                assert after["version"] == before["version"], "another browser's post changed the login"
        moved = after["state"] != before["state"] or after["steps"] != before["steps"]
        postponed = [len([s for s in row["steps_done"] if s.get("method") == "postponed_enrolment"])
                     for row in (before, after)]
        if postponed[1] > postponed[0]:
            self._user_by_id(after["user_id"]).postponed += postponed[1] - postponed[0]
        SEEN[f"{before['state']} -> {after['state']}" + (" (foreign)" if not own else "")
              + (" (stale)" if posted_version != str(before["version"]) else "")] += 1
        if moved and after["state"] != "cancelled":
            assert moves_by is not None, f"the login moved without what its step needs: {before} -> {after}"
            if after["state"] == "done":
                self._second_factor_owed_is_proven(after)
            if moves_by.startswith("password:"):
                assert before["state"] == "identify"
                assert after["user_id"] == self.users[moves_by.split(":", 1)[1]].id, "signed in as someone else"
        return answer

    def _owns(self, browser: int, handle: str) -> bool:
        return self.owners.get(handle) == browser

    # --- rules -------------------------------------------------------------------------------

    @rule(browser=st.integers(0, 1), client=st.sampled_from(["first", "third"]), mfa=st.booleans(),
          prompt=st.sampled_from([None, None, "login", "max_age=0", "none"]))
    def start_login(self, browser, client, mfa, prompt):
        rp: RelyingParty = self.world.rps[client]
        extra = {}
        if mfa:
            extra["acr_values"] = MFA
        if prompt in ("login", "none"):
            extra["prompt"] = prompt
        elif prompt == "max_age=0":
            extra["max_age"] = "0"
        url = rp.authorization_url(**extra)
        login = Login(rp.state, browser, client, mfa, rp.nonce, rp.verifier, time.time(), url)
        self.logins[login.state] = login
        self._new_tab(browser, login, self._go(browser, "GET", url))

    @precondition(lambda self: self.tabs)
    @rule(pick=st.integers(0, 100))
    def same_request_again(self, pick):
        """The authorization request of a tab, sent again (a reload of /authorize): the same state and nonce."""
        tab = self._tab(pick)
        if tab.login is None:
            return
        answer = self._go(tab.browser, "GET", tab.login.url)
        self._new_tab(tab.browser, tab.login, answer)

    @precondition(lambda self: self.tabs)
    @rule(pick=st.integers(0, 100), back=st.integers(0, 5))
    def reload(self, pick, back):
        """GET a page the tab showed (the current one, or one further back: the browser's back button)."""
        tab = self._tab(pick)
        # (pages a GET showed: the answer to a POST is at the POST's address, which a reload posts again)
        pages = [p for p in tab.pages if urlparse(p.url).netloc == urlparse(self.world.server.url).netloc
                 and (handle_of(p.url) or urlparse(p.url).path in ("/authorize", "/login/expired"))]
        if not pages:
            return
        page = pages[-1 - back % len(pages)]
        answer = self._go(tab.browser, "GET", page.url)
        tab.pages.append(answer.page)
        if handle_of(page.url) and (self._row(handle_of(page.url)) or {}).get("state") in ("done", "cancelled"):
            assert answer.to_client is None and answer.page.status == 400, "a finished login's page shows again"

    @precondition(lambda self: self._with_form("password"))
    @rule(pick=st.integers(0, 100), who=st.sampled_from(["totp", "pwd", "enrol", "grace"]), right=MOSTLY,
          stale=RARELY, thief=RARELY)
    def password(self, pick, who, right, stale, thief):
        tab, page = self._pick("password", pick, stale)
        form = step_form(page)
        browser = 1 - tab.browser if thief else tab.browser
        values = {"username": self.users[who].email, "password": PASSWORD if right else PASSWORD + "!"}
        if thief:
            values.update(self._csrf_of(browser))
        self._post_judged(browser, tab, form, values, f"password:{who}" if right else None)

    def _csrf_of(self, browser: int) -> dict:
        """The CSRF token of `browser`'s own pages (a thief posts with the token of the browser it uses)."""
        for tab in reversed(self.tabs):
            if tab.browser == browser:
                for page in reversed(tab.pages):
                    if csrf_of(page):
                        return csrf_of(page)
        return {}

    @precondition(lambda self: self._with_form("code"))
    @rule(pick=st.integers(0, 100), kind=st.sampled_from(["right", "right", "right", "recovery", "wrong", "replayed", "other_user", "recovery",
                                                          "used_recovery"]),
          stale=RARELY, thief=RARELY)
    def code(self, pick, kind, stale, thief):
        tab, page = self._pick("code", pick, stale)
        form = step_form(page)
        before = self._row(handle_of(form["action"]))
        user = self._user_by_id(before["user_id"]) if before else None
        if user is None:
            return
        code, good = self._a_code(user, kind, before["factor"])
        browser = 1 - tab.browser if thief else tab.browser
        values = {"code": code, **(self._csrf_of(browser) if thief else {})}
        self._post_judged(browser, tab, form, values, "code" if good else None)
        after = self._row(handle_of(form["action"]))
        accepted = (after is not None and before["state"] == "second_factor" and after["steps"] != before["steps"])
        if accepted and kind == "right":
            user.counter = self._step_of(user, code)
        if accepted and kind == "recovery":
            user.used_codes.add(code)
        if user.secret:
            assert self._db_counter(user) == user.counter, "the TOTP counter is not where the accepted codes left it"

    def _a_code(self, user: User, kind: str, factor: str | None) -> tuple[str, bool]:
        """A code of `kind` for `user`, and whether it proves the factor in progress."""
        now = int(time.time()) // 30
        if kind == "right" and user.secret:
            fresh = [s for s in (now - 1, now, now + 1) if s > user.counter]
            step = fresh[0] if fresh else user.counter
            return pyotp.TOTP(user.secret).at(step * 30), bool(fresh) and factor == "totp" and step >= now - 1
        if kind == "replayed" and user.secret and user.counter:
            return pyotp.TOTP(user.secret).at(user.counter * 30), False
        if kind == "other_user":
            other = self.users["totp"] if user.kind != "totp" else self.users["enrol"]
            if other.secret:
                return pyotp.TOTP(other.secret).at(time.time() + 30), False
        unused = [c for c in user.codes if c not in user.used_codes]
        if kind == "recovery" and unused:
            return unused[0], factor == "recovery_codes"
        if kind == "used_recovery" and user.used_codes:
            return sorted(user.used_codes)[0], False
        return "000000" if kind != "wrong" else f"{secrets.randbelow(10 ** 6):06d}", False

    def _step_of(self, user: User, code: str) -> int:
        now = int(time.time()) // 30
        for step in range(now - 2, now + 3):
            if pyotp.TOTP(user.secret).at(step * 30) == code:
                return step
        raise AssertionError("the code posted is of no step near now")

    @precondition(lambda self: self._with_form("step"))
    @rule(pick=st.integers(0, 100), name=st.sampled_from(["totp", "recovery_codes", "webauthn", "push", "nothing"]),
          thief=RARELY)
    def choose_factor(self, pick, name, thief):
        tab, page = self._pick("step", pick, False)
        handle = handle_of(page.url)
        browser = 1 - tab.browser if thief else tab.browser
        csrf = self._csrf_of(browser) if thief else csrf_of(page)
        before = self._row(handle)
        answer = self._go(browser, "POST", f"/login/{handle}/factor/{name}", csrf)
        tab.pages.append(answer.page)
        after = self._row(handle)
        if before and after:
            assert (after["state"], after["steps"], after["user_id"]) == (
                before["state"], before["steps"], before["user_id"]), "choosing a method moved the login"

    @precondition(lambda self: self._with_form("enrol"))
    @rule(pick=st.integers(0, 100), right=MOSTLY, own_secret=MOSTLY, stale=RARELY)
    def enrol(self, pick, right, own_secret, stale):
        """The TOTP enrolment page: its code (of the page's secret, or of another)."""
        tab, page = self._pick("enrol", pick, stale)
        key = page.find(r"<code>([A-Z2-7 ]+)</code>")
        if not key:
            return
        secret = key.replace(" ", "") if own_secret else pyotp.random_base32()
        handle = handle_of(page.url)
        before = self._row(handle)
        user = self._user_by_id(before["user_id"]) if before else None
        code = pyotp.TOTP(secret).now() if right else "000000"
        answer = self._post_judged(tab.browser, tab, step_form(page), {"code": code, "label": "Walk"},
                                   "enrolment" if right and own_secret else None)
        after = self._row(handle)
        if user is not None and after is not None and before["state"] == "enrol" and after["state"] != "enrol" \
                and after["steps"] != before["steps"]:
            user.secret, user.counter = secret, int(time.time()) // 30
            user.counter = self._db_counter(user)
            user.factor_since = user.factor_since if user.factor_since is not None else time.time()
            listed = answer.page.find(r"<pre class=\"codes\" data-recovery-codes>([^<]+)</pre>")
            if listed:
                user.codes = [c for c in html.unescape(listed).split() if c]

    @precondition(lambda self: self._with_form("notice"))
    @rule(pick=st.integers(0, 100), stale=RARELY)
    def continue_past_notice(self, pick, stale):
        """The recovery codes' page (new codes shown once, or how many are left): its button."""
        tab, page = self._pick("notice", pick, stale)
        self._post_judged(tab.browser, tab, step_form(page), {}, "notice")

    @precondition(lambda self: self._with_form("consent"))
    @rule(pick=st.integers(0, 100), action=st.sampled_from(["allow", "allow", "deny", "another_account", "bogus"]), stale=RARELY,
          thief=RARELY)
    def consent(self, pick, action, stale, thief):
        tab, page = self._pick("consent", pick, stale)
        form = step_form(page)
        browser = 1 - tab.browser if thief else tab.browser
        values = {"action": action, **(self._csrf_of(browser) if thief else {})}
        self._post_judged(browser, tab, form, values, "consent" if action in ("allow", "another_account") else None)

    def _second_factor_owed_is_proven(self, row: dict) -> None:
        """A login done for a user holding a second factor has proven one (or a session did)."""
        user = self._user_by_id(row["user_id"])
        if user is None or user.factor_since is None:
            return
        kinds = {step.get("kind") for step in row["steps_done"]}
        if user.kind == "enrol":  # (no grace left: enrolled, never postponed)
            assert not any(step.get("method") == "postponed_enrolment" for step in row["steps_done"]), row
        sso_mfa = any(step.get("method") == "sso" and "mfa" in step.get("amr", ()) for step in row["steps_done"])
        assert kinds & {"second_factor", "recovery"} or sso_mfa, (
            f"consent reached without the second factor: {row}")

    @precondition(lambda self: self._with_form("step"))
    @rule(pick=st.integers(0, 100), who=st.sampled_from(["totp", "pwd", "enrol", "grace"]))
    def honest_step(self, pick, who):
        """What the tab's current page asks, done as its user would (so that walks get deep into
        logins): the password of `who`, TOTP set up, the right code (or a recovery code when
        no fresh TOTP step is left), past the codes' page, consent given."""
        found = [(tab, pages) for tab, pages in self._with_form("step") if pages[-1] is tab.page]
        if not found:
            return
        tab, _pages = found[pick % len(found)]
        page, index = tab.page, 0
        kinds = [kind for kind, test in PAGE_KINDS.items() if kind != "step" and test(page, step_form(page))]
        self.forced = (tab, page)
        try:
            self._honestly(tab, page, kinds, index, who)
        finally:
            self.forced = None

    def _honestly(self, tab: Tab, page: Page, kinds: list[str], index: int, who: str) -> None:
        row = self._row(handle_of(page.url))
        user = self._user_by_id(row["user_id"]) if row else None
        if "password" in kinds:
            self.password(index, who, True, False, False)
        elif "postpone" in kinds and user is not None and user.kind == "grace":  # what the grace is for
            self.postpone(index, False, False)
        elif "push" in kinds:  # approved on the phone; the page's script polls, then presses Continue
            if row and row["challenge"] not in self.approved:
                self.phone_answers(index, "right", False)
            self.push_poll(index, False)
            self.push_continue(index, False, False)
        elif "enrol" in kinds:
            self.enrol(index, True, True, False)
        elif "notice" in kinds:
            self.continue_past_notice(index, False)
        elif "consent" in kinds:
            self.consent(index, "allow", False, False)
        elif "code" in kinds:
            fresh = user is not None and user.secret and user.counter < int(time.time()) // 30 + 1
            if not fresh and row and row["factor"] != "recovery_codes":
                self.choose_factor(index, "recovery_codes", False)
            else:
                self.code(index, "right" if fresh else "recovery", False, False)
        elif any(form["action"].endswith("/factor/totp") for form in forms_of(page)):
            self.choose_factor(index, "totp", False)

    @precondition(lambda self: self._with_form("step"))
    @rule(pick=st.integers(0, 100), who=st.sampled_from(["totp", "pwd", "enrol", "grace"]))
    def honest_step_too(self, pick, who):
        """(The same, more likely: most of what a browser does is the honest next step.)"""
        self.honest_step(pick, who)

    @precondition(lambda self: self._with_form("step"))
    @rule(pick=st.integers(0, 100), who=st.sampled_from(["totp", "pwd", "enrol", "grace"]))
    def honest_step_again(self, pick, who):
        """(And again: the phone and the clock's rules would otherwise keep walks from finishing logins.)"""
        self.honest_step(pick, who)

    # --- push: the phone, and the page's poll and Continue --------------------------------------

    def _challenges(self, ids) -> dict[str, dict]:
        """The stored push requests `ids`: their login (a transaction id), number and status."""
        from idp.db import db
        from idp.models import FactorChallenge

        with self.world.server.context():
            rows = db.session.scalars(select(FactorChallenge).where(FactorChallenge.id.in_(list(ids))))
            return {row.id: {"login": row.transaction_id, "number": (row.payload_json or {}).get("number"),
                             "status": row.status} for row in rows}

    def _push_approved(self, row: dict | None) -> bool:
        """The login waits on a request the phone approved with its number, and no fraud report came after."""
        return bool(row) and row["factor"] == "push" and self.approved.get(row["challenge"], 0) > self.reported_at

    @precondition(lambda self: self.users and self.users["totp"].phone is not None)
    @rule(pick=st.integers(0, 100), decision=st.sampled_from(["right", "right", "wrong", "deny", "fraud"]),
          closed=RARELY)
    def phone_answers(self, pick, decision, closed):
        """The phone lists the requests waiting for it and answers one: approved with the number a
        page shows for it (or a wrong number), denied, reported as fraud; or one already closed."""
        from idp.security.tokens import sha256_hex

        user = self.users["totp"]
        listed = user.phone.pending()
        stored = self._challenges(c["id"] for c in listed)
        for challenge in listed:  # only what a live login waits on
            assert self._waits_on(challenge["id"], stored[challenge["id"]]["login"]), (
                f"the phone is asked to answer a request no login waits on: {challenge}")
        self.listed += [c for c in listed if c["id"] not in {seen["id"] for seen in self.listed}]
        if self.forced is not None:  # (honest_step: the request of this tab's page)
            txn = sha256_hex(handle_of(self.forced[1].url))
            listed = [c for c in listed if stored[c["id"]]["login"] == txn]
        elif closed:
            listed = [c for c in self.listed if c["id"] not in stored]
        if not listed:
            return
        challenge = listed[pick % len(listed)]
        # The number the user reads on a page showing this request (white-box: two requests may
        # expire in the same second); with none shown, or on purpose, a wrong one.
        digits = int(challenge.get("digits") or 2)
        right = self._challenges([challenge["id"]])[challenge["id"]]["number"]
        shown = any(push_challenge_of(p) == f"{challenge['expires_at']}-{right}" for tab in self.tabs for p in tab.pages)
        number = right if shown and decision == "right" else f"{(int(right) + 1) % 10 ** digits:0{digits}d}"
        try:
            answer = user.phone.answer(challenge["id"], "approve" if decision in ("right", "wrong") else decision,
                                       number if decision in ("right", "wrong") else None)
        except ChallengeUnavailable:
            answer = {"status": "closed"}
        if answer.get("already_counted"):  # this phone's earlier answer, told again: nothing new counted
            answer = {"status": "closed", "earlier": answer["status"]}
        SEEN[f"phone: {decision} -> {answer['status']}"] += 1
        when = next(self.moves)
        truth = self._challenges([challenge["id"]])[challenge["id"]]
        if answer["status"] != "closed" and decision != "fraud":  # (a report counts on any recent request)
            assert self._waits_on(challenge["id"], truth["login"]), f"a request no login waits on answered: {answer}"
        if answer["status"] == "approved":
            assert decision in ("right", "wrong") and number == truth["number"], "approved without its number"
            self.approved[challenge["id"]] = when
        elif answer["status"] != "closed" and decision in ("right", "wrong"):
            assert number != truth["number"], f"the right number refused: {answer}"
        if decision == "fraud":  # (a report on a request closed a moment ago counts too)
            self.reported_at, self.suspended = when, True
            assert self._push_suspended(user), f"a fraud report ({answer}) left push working"

    def _waits_on(self, challenge_id: str, transaction_id: str | None) -> bool:
        """A live login (not expired, still at the second factor) waits on this push request."""
        handle = next((h for h in self.owners if self._sha(h) == transaction_id), None)
        row = self._row(handle)
        return (handle not in self.expired and row is not None and row["state"] == "second_factor"
                and row["challenge"] == challenge_id)

    @staticmethod
    def _sha(handle: str) -> str:
        from idp.security.tokens import sha256_hex

        return sha256_hex(handle)

    def _push_suspended(self, user: User) -> bool:
        from idp.db import db
        from idp.models import User as UserRow

        with self.world.server.context():
            return db.session.get(UserRow, user.id).push_suspended_at is not None

    @precondition(lambda self: self._with_form("push"))
    @rule(pick=st.integers(0, 100), thief=RARELY)
    def push_poll(self, pick, thief):
        """The push page's script asking how the request went: it says, and moves nothing."""
        tab, page = self._pick("push", pick, False)
        handle = handle_of(page.url)
        browser = 1 - tab.browser if thief else tab.browser
        before = self._row(handle)
        response = self.browsers[browser].http.get(
            urljoin(self.world.server.url, html.unescape(page.find(r'data-poll-url="([^"]+)"'))), timeout=30)
        assert response.status_code in (200, 404, 410), (response.status_code, response.text[:300])
        status = response.json()["status"]
        SEEN[f"poll: {status}"] += 1
        after = self._row(handle)
        if before and after:
            assert (after["state"], after["version"], after["steps"]) == (
                before["state"], before["version"], before["steps"]), "a poll moved the login"
        own = self._owns(browser, handle) and handle not in self.expired
        if not own:
            assert status == "expired", f"a poll of another browser's (or an expired) login: {status}"
        if status == "approved":
            assert own and self._push_approved(after), f"a poll says approved: {after}, {self.approved}"
        elif status != "expired" and after and after["state"] == "second_factor":  # (signed out: expired)
            assert not self._push_approved(after), f"a poll says {status} of an approved request"

    @precondition(lambda self: self._with_form("push"))
    @rule(pick=st.integers(0, 100), stale=RARELY, thief=RARELY)
    def push_continue(self, pick, stale, thief):
        """The push page's Continue (which its script presses once the phone answered)."""
        tab, page = self._pick("push", pick, stale)
        form = step_form(page)
        browser = 1 - tab.browser if thief else tab.browser
        approved = self._push_approved(self._row(handle_of(form["action"])))
        self._post_judged(browser, tab, form, self._csrf_of(browser) if thief else {}, "push" if approved else None)

    @precondition(lambda self: self.suspended)
    @rule()
    def resume_push(self):
        """An admin lets push work again after the fraud report (docs/recovery.md)."""
        from idp.policy import settings as policy_settings

        with self.world.server.context():
            assert policy_settings.clear_push_suspension(self.users["totp"].id, policy_settings.Actor.cli())
        self.suspended = False

    # --- "Set up later", and the clock ---------------------------------------------------------

    def _in_grace(self, user: User, login: Login | None) -> bool:
        return (user.kind == "grace" and user.secret is None and user.grace_over_at is None
                and user.postponed < GRACE_LOGINS and not (login and login.mfa))

    @precondition(lambda self: self._with_form("postpone"))
    @rule(pick=st.integers(0, 100), stale=RARELY, thief=RARELY)
    def postpone(self, pick, stale, thief):
        """"Set up later" on the enrolment page: it lets the login on while the grace lasts."""
        tab, page = self._pick("postpone", pick, stale)
        before = self._row(handle_of(page.url))
        user = self._user_by_id(before["user_id"]) if before else None
        if user is None:
            return
        assert user.kind == "grace", f"'Set up later' offered to a user with no grace ({user.kind})"
        browser = 1 - tab.browser if thief else tab.browser
        values = {"postpone": "1", **(self._csrf_of(browser) if thief else {})}
        in_grace, postponed = self._in_grace(user, tab.login), user.postponed
        form = postpone_form(page)
        answer = self._post_judged(browser, tab, form, values, "postpone" if in_grace else None)
        live = (before["state"] == "enrol" and str(form["fields"].get("version")) == str(before["version"])
                and self._owns(browser, handle_of(page.url)) and answer.page.status != 400)  # (400: signed out)
        if in_grace and live:
            assert user.postponed > postponed, f"'Set up later' refused in the grace: {answer.page.status} " \
                f"{answer.page.find(r'<p class=.error.>([^<]*)')} {before}"
        SEEN[f"set up later ({'in grace' if in_grace else 'grace over'}{', stale' if stale else ''}"
             f"{', foreign' if thief else ''}): {'postponed' if user.postponed > postponed else 'refused'}"] += 1

    @precondition(lambda self: self.users and self.users["grace"].grace_over_at is None)
    @rule(now=RARELY)
    def grace_runs_out(self, now):
        """The grace's days pass (its stored start moved back): enrolment is owed from now on."""
        from idp.db import db, utcnow
        from idp.models import User as UserRow

        if not now:
            return
        user = self.users["grace"]
        with self.world.server.context():
            db.session.execute(update(UserRow).where(UserRow.id == user.id).values(
                required_since=utcnow() - timedelta(days=GRACE_DAYS, minutes=1)))
            db.session.commit()
        user.grace_over_at = time.time()

    @precondition(lambda self: self.tabs)
    @rule(pick=st.integers(0, 100), now=RARELY)
    def login_expires(self, pick, now):
        """A login transaction outlives its 10 minutes (its stored row aged)."""
        from idp.db import db, utcnow
        from idp.models import LoginTransaction

        # (in the order the walk met them: a walk replays the same whatever the handles' random letters)
        handles = [h for h in dict.fromkeys(handle_of(p.url) for tab in self.tabs for p in tab.pages)
                   if h and h not in self.expired]
        if not now or not handles:
            return
        handle = handles[pick % len(handles)]
        row = self._row(handle)
        if row is None or row["state"] in ("done", "cancelled"):
            return
        with self.world.server.context():
            db.session.execute(update(LoginTransaction).where(LoginTransaction.id == self._sha(handle)).values(
                created_at=utcnow() - timedelta(minutes=11), expires_at=utcnow() - timedelta(minutes=1)))
            db.session.commit()
        self.expired[handle] = self._row(handle)
        SEEN[f"expired at {row['state']}"] += 1

    @precondition(lambda self: self.last_post is not None)
    @rule()
    def post_again(self):
        """The last form posted, posted again (a double click, a retry): it may prove its step only
        if the first copy did not move the login (then this one is a form of an old version)."""
        browser, tab, form, values, moves_by, before = self.last_post
        now = self._row(handle_of(form["action"]))
        moved = before is not None and now is not None and (now["state"], now["steps"]) != (
            before["state"], before["steps"])
        if not moved and moves_by is None and self._push_approved(now):  # (the phone approved since)
            moves_by = "push"
        self._post_judged(browser, tab, form, values, None if moved else moves_by)

    @rule(browser=st.integers(0, 1))
    def sign_out(self, browser):
        """/logout, confirmed on its page: the browser's session ends (a login it answered must not
        finish from it)."""
        answer = self._go(browser, "GET", "/logout")
        form = next((f for f in forms_of(answer.page) if f["method"] == "post"), None)
        if form is not None:
            self._go(browser, "POST", form["action"], form["fields"])

    @precondition(lambda self: self._with_form("step"))
    @rule(pick=st.integers(0, 100), thief=RARELY)
    def cancel(self, pick, thief):
        tab, page = self._pick("step", pick, False)
        handle = handle_of(page.url)
        browser = 1 - tab.browser if thief else tab.browser
        csrf = self._csrf_of(browser) if thief else csrf_of(page)
        before = self._row(handle)
        answer = self._go(browser, "POST", f"/login/{handle}/cancel", csrf)
        tab.pages.append(answer.page)
        after = self._row(handle)
        if thief and before and after:
            assert (after["state"], after["version"]) == (before["state"], before["version"]), \
                "another browser cancelled the login"

    @precondition(lambda self: any(login.codes for login in self.logins.values()))
    @rule(pick=st.integers(0, 100), twice=st.booleans())
    def exchange(self, pick, twice):
        issued = [(login, code) for login in self.logins.values() for code in login.codes]
        login, code = issued[pick % len(issued)]
        self._redeem(login, code)
        if twice:
            self._redeem(login, code)

    def _redeem(self, login: Login, code: str) -> None:
        rp = self.world.rps[login.client]
        rp.verifier = login.verifier
        response = rp.token_request({"grant_type": "authorization_code", "code": code,
                                     "redirect_uri": rp.client["redirect_uri"], "code_verifier": login.verifier})
        assert response.status_code in (200, 400), (response.status_code, response.text)
        if code in self.redeemed:
            assert response.status_code == 400, "a code redeemed twice"
            return
        self.redeemed.add(code)
        if response.status_code != 200:
            assert response.json()["error"] == "invalid_grant", response.text
            return
        claims = id_token_claims(response.json()["id_token"])
        SEEN[f"code redeemed: amr {sorted(claims.get('amr', ()))}"] += 1
        assert claims["nonce"] == login.nonce
        user = self._user_by_sub(claims["sub"])
        assert user is not None, claims
        amr = set(claims.get("amr", ()))
        # (A code issued before the user came to hold a factor, redeemed after, proved what was owed then.)
        holds_factor = user.factor_since is not None and user.factor_since <= login.issued_at
        if login.mfa or user.kind == "enrol" or holds_factor:
            assert "mfa" in amr and claims.get("acr") == MFA, (
                f"a code for {user.kind} (mfa asked: {login.mfa}) with amr {sorted(amr)}")
        if user.kind == "grace" and "mfa" not in amr:  # postponed: only while the grace lasted
            assert user.grace_over_at is None or login.issued_at < user.grace_over_at, (
                "a code without a second factor after the grace ran out")

    # --- invariants ----------------------------------------------------------------------------

    @invariant()
    def database_agrees(self):
        if not self.users:
            return
        from idp.db import db
        from idp.models import AuthorizationCode, Credential

        ids = [u.id for u in self.users.values()]
        with self.world.server.context():
            per_nonce = db.session.execute(select(AuthorizationCode.nonce, func.count()).where(
                AuthorizationCode.user_id.in_(ids)).group_by(AuthorizationCode.nonce)).all()
            assert all(count == 1 for _nonce, count in per_nonce), f"codes per nonce: {per_nonce}"
            totp = db.session.execute(select(Credential.user_id, func.count()).where(
                Credential.user_id.in_(ids), Credential.factor == "totp", Credential.revoked_at.is_(None))
                .group_by(Credential.user_id)).all()
            assert all(count == 1 for _user, count in totp), f"TOTP credentials per user: {totp}"

    @invariant()
    def push_passed_only_on_an_approval(self):
        """A login past push: the phone approved that login's own request with its number, after
        the last fraud report. A suspended user is sent no request."""
        user = self.users.get("totp")
        if user is None:
            return
        from idp.db import db
        from idp.models import FactorChallenge, User as UserRow

        for handle in sorted(set(self.owners) - self.push_passed):
            row = self._row(handle)
            proofs = [s for s in (row or {}).get("steps_done", ()) if s.get("method") == "push"]
            if not proofs:
                continue
            self.push_passed.add(handle)
            SEEN["a login passed push"] += 1
            with self.world.server.context():
                approved = db.session.scalars(select(FactorChallenge.id).where(
                    FactorChallenge.transaction_id == self._sha(handle), FactorChallenge.status == "approved")).all()
            assert any(self.approved.get(c, 0) > self.reported_at for c in approved), (
                f"a login passed push without an approval of its own request: {row}, {approved}, {self.approved}")
        with self.world.server.context():
            since = db.session.get(UserRow, user.id).push_suspended_at
            if since is not None:
                sent = db.session.scalar(select(func.count()).select_from(FactorChallenge).where(
                    FactorChallenge.user_id == user.id, FactorChallenge.factor == "push",
                    FactorChallenge.created_at > since))
                assert not sent, "a push request sent while push is suspended"

    @invariant()
    def grace_counted_once_per_postponement(self):
        user = self.users.get("grace")
        if user is None:
            return
        from idp.db import db
        from idp.models import User as UserRow

        with self.world.server.context():
            assert db.session.get(UserRow, user.id).logins_since_required == user.postponed

    @invariant()
    def expired_logins_stay_as_they_were(self):
        for handle, then in self.expired.items():
            now = self._row(handle)
            assert now is None or (now["state"], now["version"], now["steps"], now["user_id"]) == (
                then["state"], then["version"], then["steps"], then["user_id"]), f"an expired login moved: {then} -> {now}"

    @invariant()
    def every_finished_login_answered_its_client(self):
        """A login transaction `done` told its client something (a code, or an error such as a
        replayed nonce's): nothing finished silently, half-way."""
        for login in self.logins.values():
            if login.codes or login.errors:
                continue
            for handle in login.handles:
                row = self._row(handle)
                assert row is None or row["state"] != "done", f"a login done with no answer to its client: {login}"

    def teardown(self):
        for login in list(self.logins.values()):
            for code in login.codes:
                if code not in self.redeemed:
                    self._redeem(login, code)


@pytest.fixture
def walk_world(migrated_database_url):
    server = start_server(migrated_database_url, UNLIMITED)
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    try:
        seeded = seed(server)
        with server.context():
            from idp.db import db
            from idp.models import Organization

            org = db.session.get(Organization, seeded.org_id)
            org.grace_days, org.grace_logins = GRACE_DAYS, GRACE_LOGINS
            db.session.commit()
        rps = {"first": RelyingParty(server.url, seeded.first_party), "third": RelyingParty(server.url,
                                                                                              seeded.third_party)}
        yield World(server, seeded, rps, errors)
    finally:
        logging.getLogger().removeHandler(errors)
        server.stop()


@pytest.mark.timeout(0 if os.environ.get("IDP_TEST_LOGIN_WALKS") else 240)  # a hunt takes what it takes
def test_random_walks_through_the_login(walk_world):
    LoginWalk.world = walk_world
    run_state_machine_as_test(LoginWalk, settings=settings(
        max_examples=WALKS, stateful_step_count=STEPS, deadline=None, derandomize=not os.environ.get(
            "IDP_TEST_LOGIN_WALKS"), suppress_health_check=list(HealthCheck), print_blob=True))
    print("\n".join(f"{count:6} {what}" for what, count in sorted(SEEN.items())))

