"""Push approval benchmark (issue 6): how fast the waiting browser moves on after the phone
approves, and how many browsers one instance keeps waiting at once.

    .venv/bin/python bench/push_latency.py                       # sqlite, sqlite+redis, postgresql, postgresql+redis
    .venv/bin/python bench/push_latency.py --targets sqlite --logins 50 --waiters 100

For each target the provider runs under `gunicorn -w 2 -k gthread --threads 64` (options below),
its users each with one push device registered over HTTP (protocol v1, the companion app's
`authenticator.push` modules as the device). A browser is a `requests.Session`:
GET /authorize -> login form -> POST username/password -> the push page (number read from
`data-push-number`, status URL from `data-poll-url`) -> long-poll `GET <status>?wait=20` in a
thread until it is no longer pending -> POST the page's form -> redirect with `code=`.

1. latency: `--logins` logins, `--latency-concurrency` at a time. Each browser's long-poll is
   started, the device waits `--settle` s (so the poll is waiting inside the server), fetches
   its pending challenge (GET /challenges) and approves it with the number. Measured from the
   moment the approve POST returns (a) to the moment the browser's long-poll returns
   "approved", (b) to the moment its form POST returns the redirect with `code=`. Also given:
   (a) from the moment the approve POST is sent, and the approve POST's own duration.
2. waiters: for each N in `--waiters`, N browsers are brought to the push page (`--stage-threads`
   at a time), then all N start long-polling at once, are held `--hold` s, then every one is
   approved (`--answer-threads` devices at a time). Reported: errors (any non-2xx, timeout,
   connection failure, or a login that does not end with a code), approve -> approved and
   approve -> code percentiles, the approve POSTs' durations, and the workers' RSS and
   thread count during the hold.

Limits changed for the bench (every request comes from 127.0.0.1, users log in many times):
the run.py abuse limits (IDP_RATELIMIT__*), factors.push.max_challenges (a user gets more than
5 pushes per 10 minutes over the runs) and factors.push.challenge_ttl = 300 (staging 1,000
logins takes longer than the default 60 s). Writes bench/results/<date>-push.md and .json.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness import Server  # noqa: E402
from login_flow import Client, Endpoints, _b64, parse_forms  # noqa: E402
from run import UNLIMITED, fresh_postgres_database, idp_cli  # noqa: E402

from authenticator.push import keys  # noqa: E402
from authenticator.push.client import PushClient  # noqa: E402

RESULTS_DIR = REPO / "bench" / "results"
PORT = 3120
NUMBER = re.compile(r'data-push-number="(\d+)"')
POLL_URL = re.compile(r'data-poll-url="([^"]*)"')
PUSH_LIMITS = {
    "IDP_FACTORS__PUSH__MAX_CHALLENGES": "1000000",
    "IDP_FACTORS__PUSH__CHALLENGE_TTL": "300",
}


class FlowError(Exception):
    pass


# ----------------------------------------------------------------------------- the browser


@dataclass
class Browser:
    """One login from a fresh browser, stopped on the push page."""

    email: str
    http: requests.Session
    user_agent: str
    state: str
    page_url: str = ""
    number: str = ""
    poll_url: str = ""
    form: dict = field(default_factory=dict)
    # filled by the long-poll thread
    polls: int = 0
    poll_done: float = 0.0
    poll_status: str = ""
    error: str = ""
    code_at: float = 0.0

    def wait_and_finish(self, redirect_uri: str) -> None:
        """What the page's script does: long-poll, then submit the form at once."""
        self.long_poll()
        if self.error or self.poll_status != "approved":
            return
        try:
            self.code_at = self.finish(redirect_uri)
        except Exception as exc:
            self.error = f"finish {type(exc).__name__}: {exc}"

    def long_poll(self, wait: int = 20, give_up: float = 120.0) -> None:
        """Long-poll until the status is no longer pending; records the moment it returns."""
        deadline = time.monotonic() + give_up
        try:
            while time.monotonic() < deadline:
                response = self.http.get(self.poll_url, params={"wait": wait}, timeout=wait + 40)
                self.polls += 1
                if response.status_code != 200:
                    self.error = f"poll {response.status_code}"
                    return
                status = response.json().get("status")
                if status != "pending":
                    self.poll_done, self.poll_status = time.monotonic(), status
                    return
            self.error = "poll: still pending at give-up"
        except requests.RequestException as exc:
            self.error = f"poll {type(exc).__name__}"

    def finish(self, redirect_uri: str) -> float:
        """POST the push page's form; the moment the redirect with code= comes back."""
        data = dict(self.form["inputs"])
        response = self.http.post(urljoin(self.page_url, self.form["action"] or self.page_url), data=data,
                                  allow_redirects=False, timeout=60)
        for _ in range(6):
            if not response.is_redirect:
                raise FlowError(f"form POST answered {response.status_code}, not a redirect")
            location = urljoin(response.url, response.headers["Location"])
            if location.startswith(redirect_uri):
                params = parse_qs(urlsplit(location).query)
                if "code" not in params or params.get("state") != [self.state]:
                    raise FlowError(f"redirect back without code/state: {params.get('error')}")
                return time.monotonic()
            response = self.http.get(location, allow_redirects=False, timeout=60)
        raise FlowError("too many redirects after the push page")


def start_login(endpoints: Endpoints, client: Client, email: str, password: str) -> Browser:
    """authorize -> login form -> password POST -> the push page."""
    import hashlib
    from urllib.parse import urlencode

    ua = f"push-bench/{secrets.token_hex(8)}"
    http = requests.Session()
    http.headers["User-Agent"] = ua
    verifier = _b64(os.urandom(32))
    state = _b64(os.urandom(12))
    query = urlencode({
        "response_type": "code", "client_id": client.client_id, "redirect_uri": client.redirect_uri,
        "scope": "openid email", "state": state, "nonce": _b64(os.urandom(12)),
        "code_challenge": _b64(hashlib.sha256(verifier.encode()).digest()), "code_challenge_method": "S256",
    })
    browser = Browser(email, http, ua, state)
    response = http.get(f"{endpoints.authorization}?{query}", allow_redirects=False, timeout=60)
    posted = False
    for _ in range(8):
        if response.is_redirect:
            response = http.get(urljoin(response.url, response.headers["Location"]), allow_redirects=False,
                                timeout=60)
            continue
        number = NUMBER.search(response.text)
        if number:
            form = next((f for f in parse_forms(response.text) if f["method"] == "post"), None)
            poll = POLL_URL.search(response.text)
            if form is None or not poll or not poll.group(1):
                raise FlowError("push page without a form or a poll URL")
            browser.page_url, browser.number, browser.form = response.url, number.group(1), form
            browser.poll_url = urljoin(response.url, poll.group(1).replace("&amp;", "&"))
            return browser
        if response.status_code >= 400 or posted:
            raise FlowError(f"{response.status_code} at {urlsplit(response.url).path} (no push number)")
        form = next((f for f in parse_forms(response.text) if f["method"] == "post"), None)
        if form is None or "password" not in {n for n, _ in form["inputs"]}:
            raise FlowError(f"no login form at {urlsplit(response.url).path}")
        data = dict(form["inputs"])
        data["username"], data["password"] = email, password
        posted = True
        response = http.post(urljoin(response.url, form["action"] or response.url), data=data,
                             allow_redirects=False, timeout=60)
    raise FlowError("too many steps before the push page")


# ----------------------------------------------------------------------------- the device


def challenge_for(device: PushClient, browser: Browser) -> str:
    """The pending challenge of this browser's login (matched on its unique User-Agent)."""
    for challenge in device.pending(wait=0):
        if (challenge.get("context") or {}).get("user_agent") == browser.user_agent:
            return challenge["id"]
    raise FlowError("the device sees no pending challenge for this login")


# ----------------------------------------------------------------------------- server set-up


def rss_and_threads(pids: list[int]) -> tuple[float, int]:
    rss_kib, threads = 0, 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss_kib += int(line.split()[1])
                elif line.startswith("Threads:"):
                    threads += int(line.split()[1])
        except OSError:
            pass
    return rss_kib / 1024, threads


def established(port: int) -> int:
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"], capture_output=True,
                         text=True)
    return len([text for text in out.stdout.splitlines() if text.strip()])


def seed(env: dict, users: list[tuple[str, str]]) -> dict[str, str]:
    lines = "".join(json.dumps({"org": "bench", "email": e, "password": p}) + "\n" for e, p in users)
    out = subprocess.run([sys.executable, str(REPO / "bench" / "seed_push.py")], env=env, input=lines,
                         capture_output=True, text=True, cwd=REPO, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"seeding push users failed: {out.stderr.strip()[-600:]}")
    return {d["email"]: d["activation_uri"] for d in map(json.loads, out.stdout.splitlines()) if d}


def register_devices(uris: dict[str, str], threads: int = 8) -> dict[str, PushClient]:
    def one(item):
        email, uri = item
        query = parse_qs(urlsplit(uri).query)
        device = PushClient(query["endpoint"][0], keys.new_private_key())
        device.register(query["code"][0], f"bench phone {email}")
        return email, device

    with cf.ThreadPoolExecutor(threads) as pool:
        return dict(pool.map(one, uris.items()))


def prepare_database(args, kind: str, workdir: Path) -> tuple[dict, list, dict, Client]:
    """A fresh database for `kind` ("sqlite"/"postgresql"): schema, org, users, clients, devices."""
    if kind == "sqlite":
        database_url = f"sqlite:///{workdir / 'idp-push.sqlite'}"
    else:
        database_url = fresh_postgres_database(args.postgres_url)
    env = dict(os.environ, IDP_DATABASE_URL=database_url, IDP_ISSUER=f"http://127.0.0.1:{PORT}",
               IDP_SECRET_KEY=secrets.token_urlsafe(48), IDP_ENV="development", **UNLIMITED, **PUSH_LIMITS)
    env.pop("IDP_SERVER__TRUSTED_PROXIES", None)
    env.pop("IDP_REDIS_URL", None)
    idp_cli(env, "init")
    idp_cli(env, "org", "add", "bench")
    users = [(f"push{i}@bench.test", secrets.token_urlsafe(18)) for i in range(args.users)]
    started = time.monotonic()
    uris = seed(env, users)
    redirect_uri = "http://127.0.0.1:9/callback"
    web = json.loads(idp_cli(env, "client", "add", "--name", "bench-web", "--redirect-uri", redirect_uri,
                             "--first-party", "--grant-type", "authorization_code"))
    print(f"  seeded {len(uris)} users in {time.monotonic() - started:.0f} s", flush=True)
    return env, users, uris, Client(web["client_id"], web["client_secret"], redirect_uri)


def start_server(args, env: dict, name: str, redis: bool, workdir: Path) -> Server:
    env = dict(env)
    if redis:
        env["IDP_REDIS_URL"] = args.redis_url
    prom = workdir / f"prometheus-{name.replace('+', '-')}"
    shutil.rmtree(prom, ignore_errors=True)
    prom.mkdir()
    env["PROMETHEUS_MULTIPROC_DIR"] = str(prom)
    argv = [str(Path(sys.executable).parent / "gunicorn"), "-w", str(args.workers), "-k", "gthread",
            "--threads", str(args.threads), "--worker-connections", str(args.worker_connections),
            "--backlog", "2048", "--timeout", "120", "-b", f"127.0.0.1:{PORT}", "idp.app:create_app()"]
    server = Server(name, argv, env, PORT, cwd=str(REPO), log_path=workdir / f"{name.replace('+', '-')}.log")
    server.start()
    server.argv_text = " ".join(argv[1:])
    return server


# ----------------------------------------------------------------------------- measurements


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def summary(values_s: list[float]) -> dict:
    ms = [v * 1000 for v in values_s]
    return {"n": len(ms), "p50_ms": pct(ms, 50), "p99_ms": pct(ms, 99), "max_ms": max(ms) if ms else float("nan"),
            "min_ms": min(ms) if ms else float("nan"), "mean_ms": statistics.fmean(ms) if ms else float("nan")}


def latency_run(args, endpoints, client, users, devices) -> dict:
    samples = {"approve_to_poll": [], "approve_to_code": [], "sent_to_poll": [], "approve_post": []}
    errors: list[str] = []
    lock = threading.Lock()

    def one(index: int) -> None:
        email, password = users[index % len(users)]
        try:
            browser = start_login(endpoints, client, email, password)
            poller = threading.Thread(target=browser.long_poll, daemon=True)
            poller.start()
            time.sleep(args.settle)
            challenge = challenge_for(devices[email], browser)
            sent = time.monotonic()
            answer = devices[email].answer(challenge, "approve", browser.number)
            approved = time.monotonic()
            if answer.get("status") != "approved":
                raise FlowError(f"device answer {answer}")
            poller.join(90)
            if browser.error or browser.poll_status != "approved":
                raise FlowError(browser.error or f"poll ended {browser.poll_status!r}")
            code_at = browser.finish(client.redirect_uri)
            with lock:
                samples["approve_to_poll"].append(browser.poll_done - approved)
                samples["approve_to_code"].append(code_at - approved)
                samples["sent_to_poll"].append(browser.poll_done - sent)
                samples["approve_post"].append(approved - sent)
        except Exception as exc:  # counted, not fatal: the bench reports errors
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])

    started = time.monotonic()
    with cf.ThreadPoolExecutor(args.latency_concurrency) as pool:
        list(pool.map(one, range(args.logins)))
    result = {name: summary(values) for name, values in samples.items()}
    result.update(logins=args.logins, ok=len(samples["approve_to_code"]), errors=len(errors),
                  error_samples=sorted(set(errors))[:5], seconds=time.monotonic() - started,
                  poll_before_approve_return=sum(1 for v in samples["approve_to_poll"] if v < 0))
    return result


def waiters_run(args, server: Server, endpoints, client, users, devices, n: int) -> dict:
    """N browsers waiting at once on the push page, then all approved."""
    errors: list[str] = []
    lock = threading.Lock()

    def stage(index: int):
        email, password = users[index]
        try:
            return start_login(endpoints, client, email, password)
        except Exception as exc:
            with lock:
                errors.append(f"stage {type(exc).__name__}: {exc}"[:200])
            return None

    started = time.monotonic()
    with cf.ThreadPoolExecutor(args.stage_threads) as pool:
        browsers = [b for b in pool.map(stage, range(n)) if b is not None]
    staged_s = time.monotonic() - started
    rss0, threads0 = rss_and_threads(server.workers())
    pollers = [threading.Thread(target=b.wait_and_finish, args=(client.redirect_uri,), daemon=True)
               for b in browsers]
    for poller in pollers:
        poller.start()
    peak_rss, peak_threads, peak_conns = rss0, threads0, 0
    hold_until = time.monotonic() + args.hold
    while time.monotonic() < hold_until:
        rss, threads = rss_and_threads(server.workers())
        peak_rss, peak_threads = max(peak_rss, rss), max(peak_threads, threads)
        peak_conns = max(peak_conns, established(PORT))
        time.sleep(1)
    early = sum(1 for b in browsers if b.poll_done or b.error)  # ended before any approval: errors

    approvals: dict[int, tuple[float, float]] = {}

    def approve(index: int) -> None:
        browser = browsers[index]
        try:
            challenge = challenge_for(devices[browser.email], browser)
            sent = time.monotonic()
            answer = devices[browser.email].answer(challenge, "approve", browser.number)
            done = time.monotonic()
            if answer.get("status") != "approved":
                raise FlowError(f"device answer {answer}")
            approvals[index] = (sent, done)
        except Exception as exc:
            with lock:
                errors.append(f"approve {type(exc).__name__}: {exc}"[:200])

    answer_started = time.monotonic()
    with cf.ThreadPoolExecutor(args.answer_threads) as pool:
        list(pool.map(approve, range(len(browsers))))
    answer_s = time.monotonic() - answer_started
    for poller in pollers:
        poller.join(120)
    rss_end, _ = rss_and_threads(server.workers())

    to_poll, to_code, approve_post = [], [], []
    for index, browser in enumerate(browsers):
        if index not in approvals:
            continue
        sent, done = approvals[index]
        if browser.error or not browser.code_at:
            errors.append((browser.error or f"poll ended {browser.poll_status!r}")[:200])
            continue
        to_poll.append(browser.poll_done - done)
        to_code.append(browser.code_at - done)
        approve_post.append(done - sent)
    return {"waiters": n, "staged": len(browsers), "stage_seconds": staged_s, "answer_seconds": answer_s,
            "ok": len(to_code), "errors": n - len(to_code), "ended_before_approval": early,
            "error_samples": sorted(set(errors))[:6], "approve_to_poll": summary(to_poll),
            "approve_to_code": summary(to_code), "approve_post": summary(approve_post),
            "polls_per_browser": statistics.fmean([b.polls for b in browsers]) if browsers else 0,
            "workers_rss_mib_before": rss0, "workers_rss_mib_peak": peak_rss, "workers_rss_mib_after": rss_end,
            "workers_threads_peak": peak_threads, "connections_peak": peak_conns}


# ----------------------------------------------------------------------------- report


def f(value: float) -> str:
    return "-" if value != value else f"{value:,.1f}"


def render(meta: dict, results: list[dict]) -> str:
    lines = [f"# Push approval benchmark, {meta['date']}", "",
             f"Command: `{meta['command']}`", "",
             f"Server: `gunicorn {meta['gunicorn']}`. Machine: {meta['machine']}. Load generator (Python "
             "threads, requests) on the same cores. Limits changed for the bench: "
             + ", ".join(f"`{k}={v}`" for k, v in {**meta['limits']}.items()) + ".", "",
             "## Approval -> browser's next page (latency)", "",
             "Per login: from the moment the device's approve POST returns to the moment the browser's "
             "long-poll (`?wait=20`) returns `approved` (poll), and to the moment the browser's form POST "
             "returns the redirect with `code=` (code). Negative values: the poll came back before the "
             "approve POST's own response.", "",
             "| target | logins ok / run | approve -> poll p50 / p99 / max ms | approve -> code p50 / p99 / max ms "
             "| approve POST p50 / p99 ms | p99 code < 500 ms |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in results:
        lat = r.get("latency")
        if not lat or not lat["logins"]:
            continue
        a, c, p = lat["approve_to_poll"], lat["approve_to_code"], lat["approve_post"]
        lines.append(f"| {r['target']} | {lat['ok']} / {lat['logins']} ({lat['errors']} errors) | "
                     f"{f(a['p50_ms'])} / {f(a['p99_ms'])} / {f(a['max_ms'])} | "
                     f"{f(c['p50_ms'])} / {f(c['p99_ms'])} / {f(c['max_ms'])} | {f(p['p50_ms'])} / {f(p['p99_ms'])} | "
                     f"{'yes' if c['p99_ms'] < 500 and not lat['errors'] else '**no**'} |")
    lines += ["", "## Browsers waiting at once", "",
              "N browsers on the push page all long-polling, held, then all approved. ok = logins that ended "
              "with a code; errors = the rest (details below).", "",
              "| target | N | ok | errors | approve -> poll p50 / p99 / max ms | approve -> code p50 / p99 / max ms "
              "| approve POST p50 / p99 / max ms | workers RSS MiB before / peak | worker threads peak | "
              "connections peak |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        for w in r.get("waiters", []):
            a, c, p = w["approve_to_poll"], w["approve_to_code"], w["approve_post"]
            lines.append(f"| {r['target']} | {w['waiters']} | {w['ok']} | {w['errors']} | "
                         f"{f(a['p50_ms'])} / {f(a['p99_ms'])} / {f(a['max_ms'])} | "
                         f"{f(c['p50_ms'])} / {f(c['p99_ms'])} / {f(c['max_ms'])} | "
                         f"{f(p['p50_ms'])} / {f(p['p99_ms'])} / {f(p['max_ms'])} | "
                         f"{f(w['workers_rss_mib_before'])} / {f(w['workers_rss_mib_peak'])} | "
                         f"{w['workers_threads_peak']} | {w['connections_peak']} |")
    samples = [(r["target"], kind, s) for r in results
               for kind, block in [("latency", r.get("latency") or {})] + [(f"N={w['waiters']}", w)
                                                                          for w in r.get("waiters", [])]
               for s in block.get("error_samples", [])]
    if samples:
        lines += ["", "Error samples:", ""] + [f"- {t} {k}: `{s}`" for t, k, s in samples]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default="sqlite,sqlite+redis,postgresql,postgresql+redis")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--worker-connections", type=int, default=1000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--logins", type=int, default=200)
    parser.add_argument("--latency-concurrency", type=int, default=4)
    parser.add_argument("--settle", type=float, default=0.3)
    parser.add_argument("--waiters", default="100,1000", help="comma-separated N (each <= --users)")
    parser.add_argument("--waiters-on", default="postgresql+redis,sqlite",
                        help="targets that run the waiters test (all: every target)")
    parser.add_argument("--stage-threads", type=int, default=8)
    parser.add_argument("--answer-threads", type=int, default=32)
    parser.add_argument("--hold", type=float, default=10.0)
    parser.add_argument("--postgres-url", default=os.environ.get("IDP_BENCH_PUSH_DATABASE_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/idp_push_bench"))
    parser.add_argument("--keep-database", action="store_true", help="do not drop the PostgreSQL bench database")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    waiter_counts = [int(x) for x in args.waiters.split(",") if x.strip()]
    if waiter_counts and max(waiter_counts) > args.users:
        parser.error("--waiters larger than --users")
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    waiters_on = set(targets) if args.waiters_on == "all" else set(args.waiters_on.split(","))
    date = datetime.date.today().isoformat()
    output = Path(args.output) if args.output else RESULTS_DIR / f"{date}-push.md"
    results: list[dict] = []
    workdir = Path(tempfile.mkdtemp(prefix="idp-push-bench-"))
    prepared: dict[str, tuple] = {}
    devices_by_kind: dict[str, dict] = {}
    meta = {"date": date, "command": " ".join([".venv/bin/python", "bench/push_latency.py", *sys.argv[1:]]),
            "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
            "limits": {k: v for k, v in {**UNLIMITED, **PUSH_LIMITS}.items()}}
    try:
        for target in targets:
            kind, redis = target.split("+")[0], target.endswith("+redis")
            print(f"{target}:", flush=True)
            if kind not in prepared:
                prepared[kind] = prepare_database(args, kind, workdir)
            env, users, uris, client = prepared[kind]
            server = start_server(args, env, target, redis, workdir)
            meta["gunicorn"] = server.argv_text
            try:
                endpoints = Endpoints.discover(server.base_url)
                if kind not in devices_by_kind:
                    devices_by_kind[kind] = register_devices(uris)
                devices = devices_by_kind[kind]
                entry = {"target": target, "workers_rss_mib_start": rss_and_threads(server.workers())[0]}
                entry["latency"] = latency_run(args, endpoints, client, users, devices)
                entry["workers_rss_mib_after_latency"] = rss_and_threads(server.workers())[0]
                lat = entry["latency"]
                print(f"  latency: {lat['ok']}/{lat['logins']} ok, approve->poll p50 "
                      f"{lat['approve_to_poll']['p50_ms']:.1f} p99 {lat['approve_to_poll']['p99_ms']:.1f} ms, "
                      f"approve->code p50 {lat['approve_to_code']['p50_ms']:.1f} p99 "
                      f"{lat['approve_to_code']['p99_ms']:.1f} ms, errors {lat['errors']} {lat['error_samples'][:2]}",
                      flush=True)
                entry["waiters"] = []
                if target in waiters_on:
                    for n in waiter_counts:
                        w = waiters_run(args, server, endpoints, client, users, devices, n)
                        entry["waiters"].append(w)
                        print(f"  waiters N={n}: ok {w['ok']} errors {w['errors']} approve->code p50 "
                              f"{w['approve_to_code']['p50_ms']:.0f} p99 {w['approve_to_code']['p99_ms']:.0f} "
                              f"max {w['approve_to_code']['max_ms']:.0f} ms, approve POST p99 "
                              f"{w['approve_post']['p99_ms']:.0f} ms, RSS {w['workers_rss_mib_before']:.0f}->"
                              f"{w['workers_rss_mib_peak']:.0f} MiB, threads {w['workers_threads_peak']}, "
                              f"conns {w['connections_peak']} {w['error_samples'][:2]}", flush=True)
                results.append(entry)
            finally:
                server.stop()
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(render(meta, results))
            output.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    finally:
        if "postgresql" in prepared and not args.keep_database:
            import psycopg

            parts = urlsplit(args.postgres_url.replace("postgresql+psycopg://", "postgresql://"))
            with psycopg.connect(parts._replace(path="/postgres").geturl(), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{parts.path.lstrip("/")}" WITH (FORCE)')
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
