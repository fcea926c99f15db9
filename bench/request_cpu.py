"""Server CPU per request of the browser login, measured in one process: no gunicorn, no load
generator sharing the cores, so that a change of a few tenths of a millisecond shows even on a
busy machine (bench/run.py's rates need the machine to itself).

    .venv/bin/python bench/request_cpu.py sqlite --setup         # a provider in /tmp/idp-request-cpu/sqlite
    .venv/bin/python bench/request_cpu.py sqlite --logins 60 --totp-logins 60
    .venv/bin/python bench/request_cpu.py postgresql --setup     # database idp_request_cpu (dropped first)
    .venv/bin/python bench/request_cpu.py postgresql --totp-logins 60 --profile "POST /login/<id> (code)"

`--setup` builds the provider as bench/run.py does (the real `idp` commands: init, an org, two
password users, `--totp-users` users with a TOTP credential, a first-party web client), with the
same lifted abuse limits (bench/README.md). A run then builds the app with `create_app()` and drives
bench/login_flow.py's `login_once` through werkzeug's test client, so every request goes through
the whole WSGI stack (idp.ops' middleware, session cookie, CSRF, Flask-Limiter, the views), and
prints per request type (the password POST and the code POST told apart as bench/run.py does, and
the GETs of their pages likewise):

- `cpu`: the request's CPU time on its thread (`time.thread_time`, as the access lines' `cpu_ms`);
- `sql`: statements sent to the database (SQLite's trace callback; psycopg cursors' execute calls),
  BEGIN and COMMIT included on SQLite;
- `sys`, `minflt`: the thread's system time and minor page faults (`getrusage(RUSAGE_THREAD)`);

a request that hashed a password has a second line, "besides the hash": each such request's CPU
less its own hashing, the part code changes can move (argon2id's own time drifts with the machine
by more than a change of a tenth of a millisecond);

then the argon2id verification's own CPU inside the password POST (user and system time, minor
faults) beside the same verification in a bare loop of this process. `--refresh N` adds N
refresh_token grants after each password login; `--client-credentials N` N client_credentials
grants (bench/run.py's), with `--baseline` as many of the baseline app's in this process,
alternating, printed beside ours; `--floor` a right-code POST of bench/code_post_floor.py's
bare app (Flask, Flask-WTF, Flask-Limiter, pyotp and the same statements on plain sqlite3: what
no design on these libraries goes below) after each TOTP login, printed as
"floor POST /login/<id> (code)". `--profile PREFIX` runs cProfile around the
requests whose type starts with PREFIX and prints their call counts (cProfile's times are wall
times, inflated by its own overhead: read them as proportions, and not for PostgreSQL's waits),
ordered by `--profile-sort` (`tottime` shows where the time is spent).

A TOTP code is accepted once per credential and 30 s step: the steps each user has spent are kept
in the set-up's directory (`spent.json`) so that consecutive runs do not replay them; with the
default 150 users a run can make about 150 TOTP logins per 30 s.
"""
from __future__ import annotations

import argparse
import cProfile
import heapq
import io
import json
import os
import pstats
import re
import resource
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from login_flow import Client, Endpoints, TotpPool, login_once  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ID_SEGMENT = re.compile(r"/[A-Za-z0-9_-]{20,}")
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/idp_request_cpu"


# ----------------------------------------------------------------------------- set-up

def setup(kind: str, workdir: Path, totp_users: int, postgres_url: str) -> None:
    from run import UNLIMITED, fresh_postgres_database, idp_cli

    url = f"sqlite:///{workdir / 'idp.sqlite'}" if kind == "sqlite" else fresh_postgres_database(postgres_url)
    if kind == "sqlite":
        for leftover in workdir.glob("idp.sqlite*"):
            leftover.unlink()
    env = dict(os.environ, IDP_DATABASE_URL=url, IDP_ISSUER="http://127.0.0.1:3199",
               IDP_SECRET_KEY=secrets.token_urlsafe(48), IDP_ENV="development", **UNLIMITED)
    env.pop("IDP_SERVER__TRUSTED_PROXIES", None)
    idp_cli(env, "init")
    idp_cli(env, "org", "add", "bench")
    users = []
    for i in range(2):
        email, password = f"bench{i}@bench.test", secrets.token_urlsafe(18)
        idp_cli(env, "user", "add", "--org", "bench", "--email", email, "--name", f"Bench {i}", "--password-stdin",
                stdin=password + "\n")
        users.append((email, password))
    import pyotp

    totp = [(f"totp{i}@bench.test", secrets.token_urlsafe(18), pyotp.random_base32()) for i in range(totp_users)]
    lines = "".join(json.dumps({"org": "bench", "email": e, "password": p, "secret": s}) + "\n" for e, p, s in totp)
    out = subprocess.run([sys.executable, str(REPO / "bench" / "seed_totp.py")], env=env, input=lines,
                         capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        raise SystemExit(f"seeding TOTP users failed: {out.stderr.strip()[-400:]}")
    redirect_uri = "http://127.0.0.1:9/callback"
    web = json.loads(idp_cli(env, "client", "add", "--name", "bench-web", "--redirect-uri", redirect_uri,
                             "--first-party", "--grant-type", "authorization_code", "--grant-type", "refresh_token"))
    service = json.loads(idp_cli(env, "client", "add", "--name", "bench-service", "--redirect-uri", redirect_uri,
                                 "--grant-type", "client_credentials"))
    (workdir / "spent.json").unlink(missing_ok=True)
    (workdir / "setup.json").write_text(json.dumps({
        "env": {k: v for k, v in env.items() if k.startswith("IDP_")}, "users": users, "totp": totp,
        "client": [web["client_id"], web["client_secret"], redirect_uri],
        "service": [service["client_id"], service["client_secret"]]}))


# ----------------------------------------------------------------------------- the test client as a browser

class _Response:
    """What login_once reads of a `requests` response."""

    def __init__(self, response, url: str) -> None:
        self._response, self.url = response, url
        self.status_code, self.headers = response.status_code, response.headers
        self.is_redirect = response.status_code in (301, 302, 303, 307, 308) and "Location" in response.headers

    @property
    def text(self) -> str:
        return self._response.get_data(as_text=True)

    def json(self):
        return self._response.get_json()


class TestClientBrowser:
    """login_once's `http`: get/post on werkzeug's test client, from 127.0.0.1, cookies kept."""

    def __init__(self, app) -> None:
        self.client = app.test_client()
        self.cookies = self

    def clear(self) -> None:  # login_once's `http.cookies.clear()`: a fresh browser
        self.client._cookies.clear()

    def _send(self, method: str, url: str, auth=None, headers=None, data=None):
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        headers = dict(headers or {})
        if auth:
            import base64

            headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        response = self.client.open(parts.path + (f"?{parts.query}" if parts.query else ""), method=method,
                                    headers=headers, data=data, environ_base={"REMOTE_ADDR": "127.0.0.1"})
        return _Response(response, url)

    def get(self, url, allow_redirects=False, timeout=None, headers=None, auth=None):
        return self._send("GET", url, auth, headers)

    def post(self, url, data=None, allow_redirects=False, timeout=None, headers=None, auth=None):
        return self._send("POST", url, auth, headers, data)


def client_credentials(args, recorded, http, endpoints, workdir: Path, figures: dict) -> None:
    """`--client-credentials N` grants through the provider's whole stack; with `--baseline`, as
    many through the baseline app (bare Flask + Authlib, its own SQLite file), in the same
    process and alternating with ours, so that both see the same load."""
    import base64

    service_id, service_secret = recorded["service"]
    ours = {"Authorization": "Basic " + base64.b64encode(f"{service_id}:{service_secret}".encode()).decode(),
            "Content-Type": "application/x-www-form-urlencoded"}
    baseline = None
    if args.baseline:
        import importlib.util

        os.environ["DB"] = str(workdir / "baseline.sqlite")
        spec = importlib.util.spec_from_file_location("baseline_app", "/work/shared/baseline/app.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        inner = module.app.wsgi_app
        timings = figures.setdefault("baseline POST /oauth/token (client_credentials)", [])

        def measured(environ, start_response):  # timed as ours are: inside the test client's call
            cpu = time.thread_time()
            result = list(inner(environ, start_response))
            timings.append(((time.thread_time() - cpu) * 1000, 0, 0.0, 0))
            return result

        module.app.wsgi_app = measured
        baseline = module.app.test_client()
        theirs = {"Authorization": "Basic " + base64.b64encode(b"conf:conf-secret").decode(),
                  "Content-Type": "application/x-www-form-urlencoded"}
    body = "grant_type=client_credentials"
    token_path = endpoints.token.split("://", 1)[-1].split("/", 1)[-1]
    for _ in range(args.client_credentials):
        response = http.client.post("/" + token_path, data=body, headers=ours,
                                    environ_base={"REMOTE_ADDR": "127.0.0.1"})
        assert response.status_code == 200, response.get_data(as_text=True)
        if baseline is not None:
            response = baseline.post("/oauth/token", data=body, headers=theirs)
            assert response.status_code == 200, response.get_data(as_text=True)


# ----------------------------------------------------------------------------- counting

class StatementCounter:
    """Statements sent to the database, by every connection of the process."""

    def __init__(self, kind: str) -> None:
        self.count = 0
        if kind == "sqlite":
            from sqlalchemy import event
            from sqlalchemy.engine import Engine

            event.listen(Engine, "connect", self._trace)
        else:
            import psycopg

            for name in ("execute", "executemany"):
                original = getattr(psycopg.Cursor, name)
                setattr(psycopg.Cursor, name, self._counted(original))

    def _trace(self, dbapi_connection, _record) -> None:
        if hasattr(dbapi_connection, "set_trace_callback"):
            dbapi_connection.set_trace_callback(self._one)

    def _one(self, _sql) -> None:
        self.count += 1

    def _counted(self, original):
        def execute(cursor, *args, **kwargs):
            self.count += 1
            return original(cursor, *args, **kwargs)
        return execute


def _thread_usage() -> tuple[float, float, int]:
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime, usage.ru_stime, usage.ru_minflt


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=("sqlite", "postgresql"))
    parser.add_argument("--setup", action="store_true", help="build the provider (and nothing else)")
    parser.add_argument("--dir", help="set-up directory (default /tmp/idp-request-cpu/KIND)")
    parser.add_argument("--postgres-url", default=os.environ.get("IDP_REQUEST_CPU_DATABASE_URL", DEFAULT_POSTGRES))
    parser.add_argument("--totp-users", type=int, default=150)
    parser.add_argument("--logins", type=int, default=40, help="password-only logins")
    parser.add_argument("--totp-logins", type=int, default=40, help="password + TOTP logins")
    parser.add_argument("--wrong-codes", type=int, default=2, help="wrong codes posted before the right one")
    parser.add_argument("--refresh", type=int, default=0, help="refresh_token grants after each password login")
    parser.add_argument("--client-credentials", type=int, default=0,
                        help="client_credentials grants (bench/run.py's request: HTTP Basic, no scope)")
    parser.add_argument("--floor", action="store_true",
                        help="after each TOTP login, a right-code POST of bench/code_post_floor.py's bare app")
    parser.add_argument("--baseline", action="store_true",
                        help="with --client-credentials: also the baseline's grants (/work/shared/baseline/app.py, "
                             "its SQLite store in the set-up's directory) in this process, alternating")
    parser.add_argument("--profile", default="", help="cProfile the requests whose type starts with this")
    parser.add_argument("--profile-sort", default="cumulative", help="pstats order: cumulative, tottime, calls...")
    parser.add_argument("--profile-lines", type=int, default=40, help="how many lines of each profile to print")
    args = parser.parse_args(argv)
    workdir = Path(args.dir or f"/tmp/idp-request-cpu/{args.kind}")
    workdir.mkdir(parents=True, exist_ok=True)
    if args.setup:
        setup(args.kind, workdir, args.totp_users, args.postgres_url)
        print(f"set up in {workdir}")
        return 0
    if not (workdir / "setup.json").exists():
        raise SystemExit(f"no set-up in {workdir}: run with --setup first")
    recorded = json.loads((workdir / "setup.json").read_text())
    os.environ.update(recorded["env"])
    import logging

    from idp.app import create_app
    from idp.security import passwords as passwords_module

    app = create_app()
    logging.getLogger("idp.access").setLevel(logging.WARNING)  # this prints its own table
    logging.getLogger("idp.audit").setLevel(logging.WARNING)
    statements = StatementCounter(args.kind)

    argon2: list[tuple[float, float, float, int]] = []
    verify = passwords_module.Passwords.verify

    def measured_verify(self, stored_hash, password):
        before, cpu = _thread_usage(), time.thread_time()
        try:
            return verify(self, stored_hash, password)
        finally:
            after = _thread_usage()
            argon2.append(((time.thread_time() - cpu) * 1000, (after[0] - before[0]) * 1000,
                           (after[1] - before[1]) * 1000, after[2] - before[2]))

    passwords_module.Passwords.verify = measured_verify

    figures: dict[str, list[tuple[float, int, float, int]]] = {}
    profiles: dict[str, list[cProfile.Profile]] = {}
    posts: dict[str, int] = {}
    inner = app.wsgi_app

    def measured_app(environ, start_response):
        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        key = f"{method} {ID_SEGMENT.sub('/<id>', path)}"
        if method == "POST" and path.startswith("/login/") and path.count("/") == 2:
            seen = posts[path] = posts.get(path, 0) + 1
            key += " (password)" if seen == 1 else " (code)"
        elif method == "GET" and path.startswith("/login/") and path.count("/") == 2:
            key += " (code page)" if posts.get(path) else " (password page)"
        body = environ.get("wsgi.input")
        if path.endswith("/token") and hasattr(body, "getvalue"):
            for grant, label in ((b"grant_type=refresh_token", " (refresh)"),
                                 (b"grant_type=client_credentials", " (client_credentials)")):
                if grant in body.getvalue():
                    key += label
        statuses: list[str] = []

        def respond(status, headers, exc_info=None):
            statuses.append(status[:3])
            return start_response(status, headers, exc_info)

        profile = cProfile.Profile() if args.profile and key.startswith(args.profile) else None
        hashes = len(argon2)
        count, before, cpu = statements.count, _thread_usage(), time.thread_time()
        if profile:
            profile.enable()
        try:
            result = list(inner(environ, respond))
        finally:
            if profile:
                profile.disable()
        cpu, after = (time.thread_time() - cpu) * 1000, _thread_usage()
        key = f"{key} {statuses[-1] if statuses else '?'}"
        figures.setdefault(key, []).append((cpu, statements.count - count, (after[1] - before[1]) * 1000,
                                            after[2] - before[2]))
        if len(argon2) > hashes:  # the same request less its own hashing: the part the code changes
            hashed = sum(entry[0] for entry in argon2[hashes:])
            figures.setdefault(f"{key} besides the hash", []).append(
                (cpu - hashed, statements.count - count, (after[1] - before[1]) * 1000, after[2] - before[2]))
        if profile:
            profiles.setdefault(key, []).append(profile)
        return result

    app.wsgi_app = measured_app  # inside idp.ops' middleware (app.wsgi_app is what Flask.__call__ runs)
    issuer = recorded["env"]["IDP_ISSUER"]
    http = TestClientBrowser(app)
    discovery = http.get(issuer + "/.well-known/openid-configuration").json()
    endpoints = Endpoints(discovery["authorization_endpoint"], discovery["token_endpoint"],
                          discovery["userinfo_endpoint"])
    client = Client(*recorded["client"])
    for i in range(args.logins):
        tokens = login_once(endpoints, client, *recorded["users"][i % len(recorded["users"])], http=http)
        refresh_token = tokens.get("refresh_token")
        for _ in range(args.refresh):
            refresh_token = http.post(endpoints.token, auth=(client.client_id, client.client_secret), data={
                "grant_type": "refresh_token", "refresh_token": refresh_token}).json()["refresh_token"]
    if args.client_credentials:
        client_credentials(args, recorded, http, endpoints, workdir, figures)
    spent_path = workdir / "spent.json"
    spent = json.loads(spent_path.read_text()) if spent_path.exists() else {}
    pool = TotpPool([tuple(user) for user in recorded["totp"]])
    for user in pool.users:
        user.next_step = spent.get(user.email, 0)
    pool.free = [(user.next_step, index) for index, user in enumerate(pool.users)]
    heapq.heapify(pool.free)
    floor = None
    if args.floor:
        from code_post_floor import Floor

        floor = Floor(workdir, args.totp_logins)
        floor.measure_into(figures.setdefault("floor POST /login/<id> (code) 302", []))
    for _ in range(args.totp_logins):
        lease = pool.acquire(time.monotonic() + 60)
        if lease is None:
            raise SystemExit("no TOTP user with an unspent step: wait, or --setup with more --totp-users")
        try:
            login_once(endpoints, client, lease.user.email, lease.user.password, http=http, totp_code=lease.code,
                       wrong_codes=args.wrong_codes)
        finally:
            pool.release(lease)
            spent[lease.user.email] = lease.user.next_step
            spent_path.write_text(json.dumps(spent))
        if floor is not None:
            floor.post_next()

    print(f"{args.kind}: medians per request type (cpu, sys in ms)")
    print(f"{'request':40} {'n':>5} {'cpu':>7} {'mean':>7} {'sql':>4} {'sys':>6} {'minflt':>6}")
    for key, rows in sorted(figures.items()):
        print(f"{key:40} {len(rows):5} {statistics.median(r[0] for r in rows):7.2f} "
              f"{statistics.mean(r[0] for r in rows):7.2f} {statistics.median(r[1] for r in rows):4.0f} "
              f"{statistics.median(r[2] for r in rows):6.2f} {statistics.median(r[3] for r in rows):6.0f}")
    if argon2:
        passwords = app.extensions["idp.passwords"]
        stored = passwords.hash("correct horse battery staple")
        bare = []
        for _ in range(20):
            cpu = time.thread_time()
            verify(passwords, stored, "correct horse battery staple")
            bare.append((time.thread_time() - cpu) * 1000)
        print(f"argon2id verification inside the password POST (n={len(argon2)}): "
              f"cpu {statistics.median(r[0] for r in argon2):.2f} ms (user {statistics.median(r[1] for r in argon2):.2f}, "
              f"sys {statistics.median(r[2] for r in argon2):.2f}, minor faults {statistics.median(r[3] for r in argon2):.0f}); "
              f"in a bare loop of this process: {statistics.median(bare):.2f} ms")
    for key, collected in profiles.items():
        stats = pstats.Stats(collected[0])
        for profile in collected[1:]:
            stats.add(profile)
        out = io.StringIO()
        stats.stream = out
        stats.sort_stats(args.profile_sort).print_stats(args.profile_lines)
        print(f"\nprofile of {key}: {stats.total_calls / len(collected):.0f} Python calls per request "
              f"over {len(collected)}\n{out.getvalue()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
