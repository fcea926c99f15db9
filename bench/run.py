"""Load benchmark: the provider under gunicorn on SQLite and PostgreSQL, beside the bare Flask +
Authlib baseline (../shared/baseline), same gunicorn settings, same load generators, one run.

    .venv/bin/python bench/run.py                 # everything, 10 s per point (about 8 minutes)
    .venv/bin/python bench/run.py --duration 3 --targets baseline,sqlite

Scenarios at each concurrency (default 4, 16, 64):
  discovery, jwks, client_credentials   wrk (provider and baseline alike)
  refresh_token                         wrk + lua/refresh.lua (rotating token pools; provider only)
  login                                 bench/login_flow.py threads: authorize -> form -> code ->
                                        token -> userinfo, a fresh browser per login (provider only)
  login_totp                            the same with a TOTP code page after the password (users
                                        from a TotpPool); its slices alternate with `login`'s
  totp_step                             TOTP logins posting two wrong codes before the right one, at
                                        the lowest concurrency only: the code POST's CPU, right and
                                        wrong, from the access lines
plus the argon2id verification rate of this machine with the configured parameters.

Throughput is completed operations per second, latency is per request (per whole login for
`login`), server CPU is the gunicorn workers' utime+stime over the scenario divided by the
completed operations. Writes bench/results/<date>.md (+ .json) and prints the same table.
"""
from __future__ import annotations

import argparse
import base64
import datetime
import functools
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

import argon2_rate  # noqa: E402
from harness import HASHED, Result, Server, db_cpu_delta, ensure_wrk, run_wrk  # noqa: E402
from login_flow import Client, Endpoints, TotpPool, login_once, run_logins  # noqa: E402
from report import fmt, report, update_readme  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BASELINE_DIR = REPO.parent / "shared" / "baseline"
RESULTS_DIR = REPO / "bench" / "results"
PORTS = {"baseline": 3110, "sqlite": 3111, "postgresql": 3112}
NO_LIMIT = "1000000 per 1 minute"
USERS = 4
WRONG_CODES = 2  # per login in the totp_step scenario
# The provider's abuse limits, lifted for the run (every request comes from 127.0.0.1): the login
# forms' POSTs per address (Flask-Limiter) and the lockouts after password and second-factor
# failures, per account/user and per address. Only totp_step fails on purpose (wrong codes).
UNLIMITED = {
    "IDP_RATELIMIT__LOGIN_POSTS_PER_IP": NO_LIMIT,
    "IDP_RATELIMIT__PASSWORD_FAILURES_BEFORE_LOCKOUT": "1000000000",
    "IDP_RATELIMIT__PASSWORD_IP_FAILURES_BEFORE_LOCKOUT": "1000000000",
    "IDP_RATELIMIT__FACTOR_FAILURES_BEFORE_LOCKOUT": "1000000000",
    "IDP_RATELIMIT__FACTOR_IP_FAILURES_BEFORE_LOCKOUT": "1000000000",
}


def gunicorn_argv(args, port: int, app: str, chdir: str | None = None) -> list[str]:
    """The one gunicorn command line every target gets."""
    argv = [str(Path(sys.executable).parent / "gunicorn"), "-w", str(args.workers), "-k", args.worker_class,
            "-b", f"127.0.0.1:{port}"]
    if args.worker_class == "gthread":
        argv += ["--threads", str(args.threads)]
    if chdir:
        argv += ["--chdir", chdir]
    return argv + [app]


# ----------------------------------------------------------------------------- targets

def start_baseline(args, workdir: Path) -> Server:
    if not (BASELINE_DIR / "app.py").exists():
        raise RuntimeError(f"baseline not found at {BASELINE_DIR} (shared/ must sit beside the repository)")
    port = PORTS["baseline"]
    db_path = workdir / "baseline.sqlite"
    env = dict(os.environ, STORE="sqlite", DB=str(db_path), ISSUER=f"http://127.0.0.1:{port}")
    server = Server("baseline", gunicorn_argv(args, port, "app:app", chdir=str(BASELINE_DIR)), env, port,
                    log_path=workdir / "baseline.log")
    server.start()
    server.info = {"token_path": "/oauth/token", "jwks_path": "/jwks",
                   "cc_basic": base64.b64encode(b"conf:conf-secret").decode(),
                   "cc_body": "grant_type=client_credentials&scope=api:read"}
    return server


def idp_cli(env: dict, *argv: str, stdin: str | None = None, cwd: Path = REPO) -> str:
    command = [sys.executable, "-c", "import sys; from idp.cli import main; sys.exit(main())", *argv]
    out = subprocess.run(command, env=env, input=stdin, capture_output=True, text=True, cwd=cwd, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"idp {' '.join(argv)} failed: {out.stderr.strip()[-400:]}")
    return out.stdout


def postgres_backends(url: str):
    """A callable listing the backend pids connected to the bench database (their CPU is server CPU too)."""
    import psycopg

    parts = urlsplit(url.replace("postgresql+psycopg://", "postgresql://"))
    name, admin = parts.path.lstrip("/"), parts._replace(path="/postgres").geturl()

    def pids() -> list[int]:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            return [row[0] for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (name,))]

    return pids


def fresh_postgres_database(url: str) -> str:
    """Drop and create the bench database named in `url` (connecting to `postgres` to do it)."""
    import psycopg

    parts = urlsplit(url.replace("postgresql+psycopg://", "postgresql://"))
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return url


def provider_tree(args, env: dict, workdir: Path) -> Path:
    """The checkout whose `idp` and `plugins` the provider runs: this one, or `--provider-tree`
    (an A/B against another commit). That tree is the working directory of the provider's
    gunicorn, which puts its working directory first on sys.path (so PYTHONPATH alone would
    still run this checkout's code), and first on PYTHONPATH for the `idp` commands, beside a
    folder where `idp_plugins` is its `plugins/`."""
    if not args.provider_tree:
        return REPO
    tree = Path(args.provider_tree).resolve()
    links = workdir / "provider-tree-links"
    links.mkdir(exist_ok=True)
    if not (links / "idp_plugins").exists():
        (links / "idp_plugins").symlink_to(tree / "plugins")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), str(links), env.get("PYTHONPATH")]))
    return tree


def start_provider(args, kind: str, workdir: Path) -> Server:
    port = PORTS[kind]
    if kind == "sqlite":
        database_url = f"sqlite:///{workdir / 'idp.sqlite'}"
    else:
        database_url = fresh_postgres_database(args.postgres_url)
    prom_dir = workdir / f"prometheus-{kind}"
    shutil.rmtree(prom_dir, ignore_errors=True)
    prom_dir.mkdir()
    env = dict(os.environ, IDP_DATABASE_URL=database_url, IDP_ISSUER=f"http://127.0.0.1:{port}",
               IDP_SECRET_KEY=secrets.token_urlsafe(48), IDP_ENV="development",
               PROMETHEUS_MULTIPROC_DIR=str(prom_dir), **UNLIMITED)
    env.pop("IDP_SERVER__TRUSTED_PROXIES", None)  # no proxy: X-Forwarded-For is ignored
    tree = provider_tree(args, env, workdir)
    cli = functools.partial(idp_cli, cwd=tree)
    cli(env, "init")
    cli(env, "org", "add", "bench")
    users = []
    for i in range(USERS):
        email, password = f"bench{i}@bench.test", secrets.token_urlsafe(18)
        cli(env, "user", "add", "--org", "bench", "--email", email, "--name", f"Bench {i}", "--password-stdin",
                stdin=password + "\n")
        users.append((email, password))
    totp_users = []
    if {"login_totp", "totp_step"} & set(args.scenarios.split(",")):
        import pyotp

        totp_users = [(f"totp{i}@bench.test", secrets.token_urlsafe(18), pyotp.random_base32())
                      for i in range(args.totp_users)]
        lines = "".join(json.dumps({"org": "bench", "email": e, "password": p, "secret": s}) + "\n"
                        for e, p, s in totp_users)
        out = subprocess.run([sys.executable, str(REPO / "bench" / "seed_totp.py")], env=env, input=lines,
                             capture_output=True, text=True, cwd=tree, timeout=1800)
        if out.returncode != 0:
            raise RuntimeError(f"seeding TOTP users failed: {out.stderr.strip()[-400:]}")
    redirect_uri = "http://127.0.0.1:9/callback"
    web = json.loads(cli(env, "client", "add", "--name", "bench-web", "--redirect-uri", redirect_uri,
                             "--first-party", "--grant-type", "authorization_code", "--grant-type", "refresh_token"))
    cc = json.loads(cli(env, "client", "add", "--name", "bench-service", "--redirect-uri", redirect_uri,
                            "--grant-type", "client_credentials"))
    server = Server(f"provider/{kind}", gunicorn_argv(args, port, "idp.app:create_app()"), env, port, cwd=str(tree),
                    log_path=workdir / f"provider-{kind}.log")
    if kind == "postgresql":
        server.db_pids = postgres_backends(database_url)
    server.start()
    endpoints = Endpoints.discover(server.base_url)
    server.info = {
        "token_path": urlsplit(endpoints.token).path,
        "jwks_path": urlsplit(requests.get(server.base_url + "/.well-known/openid-configuration").json()["jwks_uri"]).path,
        "cc_basic": base64.b64encode(f"{cc['client_id']}:{cc['client_secret']}".encode()).decode(),
        "cc_body": "grant_type=client_credentials",
        "web_basic": base64.b64encode(f"{web['client_id']}:{web['client_secret']}".encode()).decode(),
        "endpoints": endpoints, "client": Client(web["client_id"], web["client_secret"], redirect_uri),
        "users": users, "refresh_tokens": [], "totp_pool": TotpPool(totp_users),
    }
    return server


# ----------------------------------------------------------------------------- scenarios

PROVIDER_ONLY = ("login", "login_totp", "totp_step", "refresh_token")
ID_SEGMENT = re.compile(r"/[A-Za-z0-9_-]{20,}")


def access_lines_since(server: Server, offset: int) -> list[dict]:
    """The provider's JSON access lines written since `offset` of its log file."""
    entries = []
    with open(server.log_path, "rb") as log:
        log.seek(offset)
        for raw in log:
            if b'"idp.access"' not in raw:
                continue
            try:
                entries.append(json.loads(raw))
            except ValueError:
                continue
    return entries


def login_breakdown(entries: list[dict]) -> dict:
    """CPU per request type during the login points, from the access lines' cpu_ms.

    The login steps share one URL (`/login/<handle>`): the first POST of a handle is the password
    form's, the later ones the code form's (401: a wrong code shown the form again). The part of
    a request's cpu_ms spent hashing its password (the access line's `hash_cpu_ms`) is listed
    under the request's key prefixed with HASHED, apart from the requests' own figures."""
    table: dict[str, list[float]] = {}
    posts: dict[str, int] = {}
    for entry in entries:
        key = f"{entry['method']} {ID_SEGMENT.sub('/<id>', entry['path'])} {entry['status']}"
        if entry["method"] == "POST" and entry["path"].startswith("/login/") and entry["path"].count("/") == 2:
            seen = posts[entry["path"]] = posts.get(entry["path"], 0) + 1
            key += " (password)" if seen == 1 else " (code)"
        table.setdefault(key, []).append(float(entry.get("cpu_ms", 0.0)))
        if "hash_cpu_ms" in entry:
            table.setdefault(HASHED + key, []).append(float(entry["hash_cpu_ms"]))
    return table


def scenario_login(server: Server, concurrency: int, duration: float, scenario: str = "login") -> Result:
    info = server.info
    log_offset = server.log_path.stat().st_size if server.log_path else 0
    users = info["users"] if scenario == "login" else info["totp_pool"]
    db_before, cpu_before = server.db_cpu(), server.cpu()
    run = run_logins(info["endpoints"], info["client"], users, concurrency, duration=duration,
                     wrong_codes=WRONG_CODES if scenario == "totp_step" else 0)
    cpu, db_after = server.cpu() - cpu_before, server.db_cpu()
    info["refresh_tokens"].extend(run.refresh_tokens)
    ok = len(run.latencies)
    lat = sorted(run.latencies)
    note = f"generator CPU {run.client_cpu / run.seconds * 100:.0f}% of a core"
    if run.waited > 0.05 * concurrency * run.seconds:
        note += f"; threads waited {run.waited / (concurrency * run.seconds) * 100:.0f}% of the time for a usable TOTP step"
    if run.errors:
        note += f"; first error: {run.errors[0]}"
    result = Result(server.name, scenario, concurrency, ok, run.seconds,
                    lat[len(lat) // 2] * 1000 if lat else float("nan"),
                    lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else float("nan"),
                    cpu * 1000 / ok if ok else float("nan"), len(run.errors), note)
    if server.db_pids is not None and ok:
        result.db_cpu_ms_per_op = db_cpu_delta(db_before, db_after) * 1000 / ok
    result.latencies = run.latencies
    if server.log_path:
        result.breakdown = login_breakdown(access_lines_since(server, log_offset))
    return result


def merge_notes(notes: list[str]) -> str:
    """Slices' notes in one: the highest generator CPU share, each distinct other remark once."""
    parts, generator, duds, waited = [], [], 0, []
    for note in notes:
        for part in filter(None, (p.strip() for p in note.split("; "))):
            if part.startswith("generator CPU "):
                generator.append(int(part.split()[2].rstrip("%")))
            elif part.startswith("threads waited "):
                waited.append(int(part.split()[2].rstrip("%")))
            elif "without a live refresh token" in part:
                duds += int(part.split()[0])
            elif not part.startswith("first error") or not any(p.startswith("first error") for p in parts):
                parts.append(part)
    if generator:
        parts.insert(0, f"generator CPU up to {max(generator)}% of a core")
    if waited:
        parts.append(f"threads waited up to {max(waited)}% of the time for a usable TOTP step (in some slices)")
    if duds:
        parts.append(f"{duds} requests sent without a live refresh token (failed grants emptied the pool; "
                     f"their CPU is in the figure)")
    return "; ".join(dict.fromkeys(parts))


def percentile_of_counts(counts: list[tuple[int, int]], fraction: float) -> int:
    """The value at `fraction` of (value, how many) pairs, at the index the logins' latencies use:
    min(n - 1, int(n * fraction)) of the n values in order."""
    total = sum(count for _, count in counts)
    index, seen = min(total - 1, int(total * fraction)), 0
    for value, count in sorted(counts):
        seen += count
        if seen > index:
            return value
    raise ValueError("no values")


def merge(slices: list[Result]) -> Result:
    """One point from its interleaved slices: totals added, CPU re-divided, latencies pooled
    (the logins' own, wrk's histograms; the slices' percentiles weighted by operations only if a
    slice brought no histogram)."""
    done = [r for r in slices if r.ops]
    first = slices[0]
    if not done:
        return Result(first.target, first.scenario, first.concurrency, 0, sum(r.seconds for r in slices),
                      float("nan"), float("nan"), float("nan"), sum(r.errors for r in slices),
                      next((r.note for r in slices if r.note), ""))
    ops = sum(r.ops for r in done)
    latencies = sorted(x for r in done for x in getattr(r, "latencies", []) or [])
    histograms = [getattr(r, "latency_counts", None) for r in done]
    if latencies and len(latencies) == ops:
        p50, p99 = latencies[len(latencies) // 2] * 1000, latencies[min(ops - 1, int(ops * 0.99))] * 1000
    elif all(histograms):
        pooled = [pair for counts in histograms for pair in counts]
        p50, p99 = percentile_of_counts(pooled, 0.5) / 1000, percentile_of_counts(pooled, 0.99) / 1000
    else:
        p50 = sum(r.p50_ms * r.ops for r in done) / ops
        p99 = sum(r.p99_ms * r.ops for r in done) / ops
    merged = Result(first.target, first.scenario, first.concurrency, ops, sum(r.seconds for r in slices), p50, p99,
                    sum(r.cpu_ms_per_op * r.ops for r in done) / ops, sum(r.errors for r in slices),
                    merge_notes([r.note for r in slices]))
    breakdowns = [getattr(r, "breakdown", None) for r in slices if getattr(r, "breakdown", None)]
    if breakdowns:
        merged.breakdown = {}
        for table in breakdowns:
            for key, values in table.items():
                merged.breakdown.setdefault(key, []).extend(values)
    db = [r for r in done if r.db_cpu_ms_per_op == r.db_cpu_ms_per_op]
    if db:
        merged.db_cpu_ms_per_op = sum(r.db_cpu_ms_per_op * r.ops for r in db) / sum(r.ops for r in db)
    return merged


def scenario_refresh(server: Server, concurrency: int, duration: float, workdir: Path) -> Result:
    info = server.info
    needed = concurrency + max(2, concurrency // 4)
    pool = info["refresh_tokens"]
    errors: list[str] = []
    for _attempt in range(5):  # logins that fail (SQLite lock errors) are retried a few times
        if len(pool) >= needed:
            break
        top_up = run_logins(info["endpoints"], info["client"], info["users"], min(4, needed),
                            count=needed - len(pool))
        pool.extend(top_up.refresh_tokens)
        errors += top_up.errors
    if len(pool) < needed:
        raise RuntimeError(f"could not obtain refresh tokens: {errors[:1]}")
    tokens, info["refresh_tokens"] = pool[:needed], pool[needed:]
    token_file = workdir / f"refresh-{server.port}-{concurrency}.txt"
    token_file.write_text("\n".join(tokens) + "\n")
    return run_wrk(server, server.name, "refresh_token", info["token_path"], "refresh.lua", concurrency, duration,
                   {"BENCH_TOKENS": str(token_file), "BENCH_BASIC": info["web_basic"]})


def scenario_wrk(server: Server, scenario: str, concurrency: int, duration: float) -> Result:
    info = server.info
    if scenario == "discovery":
        return run_wrk(server, server.name, scenario, "/.well-known/openid-configuration", "get.lua", concurrency, duration)
    if scenario == "jwks":
        return run_wrk(server, server.name, scenario, info["jwks_path"], "get.lua", concurrency, duration)
    return run_wrk(server, server.name, scenario, info["token_path"], "client_credentials.lua", concurrency, duration,
                   {"BENCH_BASIC": info["cc_basic"], "BENCH_BODY": info["cc_body"]})


def failed(server_name: str, scenario: str, concurrency: int, exc: Exception) -> Result:
    return Result(server_name, scenario, concurrency, 0, 0.0, float("nan"), float("nan"), float("nan"), 0,
                  f"FAILED: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}")


# ----------------------------------------------------------------------------- main

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per point (default 10)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="each point is run in this many slices, alternating between targets (default 3)")
    parser.add_argument("--concurrency", default="4,16,64")
    parser.add_argument("--targets", default="baseline,sqlite,postgresql")
    parser.add_argument("--scenarios", default="discovery,jwks,client_credentials,login,login_totp,totp_step,"
                                                 "refresh_token")
    parser.add_argument("--totp-users", type=int, default=320,
                        help="TOTP bench users per provider (each gives one login per 30 s; default 320)")
    parser.add_argument("--postgres-url", default=os.environ.get(
        "IDP_BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/idp_bench"),
        help="a database the bench may drop and re-create")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-class", default="sync", choices=["sync", "gthread"])
    parser.add_argument("--threads", type=int, default=4, help="threads per worker with gthread")
    parser.add_argument("--argon2-seconds", type=float, default=5.0)
    parser.add_argument("--provider-tree", metavar="DIR",
                        help="run the provider from this checkout (an A/B against another commit: "
                             "git worktree add /tmp/old COMMIT); default: this one")
    parser.add_argument("--output", help="markdown file (default bench/results/<date>.md)")
    parser.add_argument("--update-readme", metavar="RESULTS_MD",
                        help="only re-render bench/README.md's latest-figures section from a saved results file")
    args = parser.parse_args(argv)
    if args.update_readme:
        saved = Path(args.update_readme)
        data = json.loads(saved.with_suffix(".json").read_text())
        fields = set(Result.__dataclass_fields__)
        results = [Result(**{k: (float("nan") if v == "nan" else v) for k, v in r.items() if k in fields})
                   for r in data["results"]]
        update_readme(saved.read_text(), saved, data["argon2"], results)
        return 0
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    targets = args.targets.split(",")
    scenarios = args.scenarios.split(",")
    started, t0 = datetime.datetime.now(datetime.timezone.utc), time.monotonic()
    ensure_wrk()
    load_at_start = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="idp-bench-"))
    print(f"work files and server logs in {workdir}", flush=True)

    argon = None
    if {"login", "login_totp", "totp_step"} & set(scenarios):
        print("measuring argon2id rate ...", flush=True)
        argon = argon2_rate.measure(args.argon2_seconds)
        print(f"  {argon['per_core']:.1f}/s per core, {argon['all_cores']:.1f}/s all cores", flush=True)

    servers: list[Server] = []
    results: list[Result] = []
    try:
        for target in targets:
            print(f"starting {target} ...", flush=True)
            try:
                server = start_baseline(args, workdir) if target == "baseline" else start_provider(args, target, workdir)
            except Exception as exc:  # one target failing must not lose the others' figures
                print(f"  {target} unavailable: {exc}", flush=True)
                for scenario in scenarios:
                    for c in concurrencies:
                        if target != "baseline" or scenario not in PROVIDER_ONLY:
                            results.append(failed(f"provider/{target}" if target != "baseline" else target,
                                                  scenario, c, exc))
                continue
            servers.append(server)
            scenario_wrk(server, "discovery", 4, 2)  # warm-up: imports, connections, caches
            if target != "baseline" and "login" in scenarios:
                try:
                    login_once(server.info["endpoints"], server.info["client"], *server.info["users"][0])
                except Exception as exc:
                    print(f"  warm-up login failed on {target}: {exc}", flush=True)
            if target != "baseline" and {"login_totp", "totp_step"} & set(scenarios):
                warm = run_logins(server.info["endpoints"], server.info["client"], server.info["totp_pool"], 1,
                                  count=1)
                if warm.errors:
                    print(f"  warm-up TOTP login failed on {target}: {warm.errors[0]}", flush=True)

        # Interleaved: each point runs on every target in turn, in `--rounds` short slices
        # (A B C A B C ...), so the drifts of this shared machine hit the provider and the
        # baseline alike: the ratios are what we judge.
        # login and login_totp are compared with each other: their slices alternate too.
        rounds = max(1, args.rounds)
        groups: list[list[str]] = []
        for scenario in scenarios:
            if scenario == "login_totp" and ["login"] in groups:
                groups[groups.index(["login"])].append(scenario)
            elif scenario == "login" and ["login_totp"] in groups:
                groups[groups.index(["login_totp"])].insert(0, scenario)
            else:
                groups.append([scenario])
        for group in groups:
            # totp_step measures single requests, not throughput: the lowest concurrency is enough
            for c in (concurrencies[:1] if group == ["totp_step"] else concurrencies):
                slices: dict[tuple[str, str], list[Result]] = {}
                for _round in range(rounds):
                    for scenario in group:
                        for server in servers:
                            if server.name == "baseline" and scenario in PROVIDER_ONLY:
                                continue
                            piece = args.duration / rounds
                            try:
                                if scenario in ("login", "login_totp", "totp_step"):
                                    result = scenario_login(server, c, piece, scenario)
                                elif scenario == "refresh_token":
                                    result = scenario_refresh(server, c, piece, workdir)
                                else:
                                    result = scenario_wrk(server, scenario, c, piece)
                            except Exception as exc:
                                result = failed(server.name, scenario, c, exc)
                            slices.setdefault((scenario, server.name), []).append(result)
                for (scenario, name), pieces in slices.items():
                    result = merge(pieces)
                    results.append(result)
                    print(f"  {scenario:18} {name:20} c{c:<3} {fmt(result.rate, 0):>8}/s  "
                          f"p50 {fmt(result.p50_ms, 2)} ms  p99 {fmt(result.p99_ms, 2)} ms  "
                          f"cpu {fmt(result.cpu_ms_per_op, 3)} ms/op  errors {result.errors} {result.note}", flush=True)
    finally:
        for server in servers:
            server.stop()

    if argon is not None:
        # Measured again now that the servers are idle: on a shared machine the rate drifts; the
        # login targets are judged against the mean of the two measurements (both are reported).
        again = argon2_rate.measure(args.argon2_seconds)
        print(f"argon2id again: {again['per_core']:.1f}/s per core, {again['all_cores']:.1f}/s all cores", flush=True)
        runs = [argon, again]
        argon = dict(argon, per_core=statistics.mean(r["per_core"] for r in runs),
                     all_cores=statistics.mean(r["all_cores"] for r in runs),
                     ms_per_hash=statistics.mean(r["ms_per_hash"] for r in runs),
                     cpu_ms_per_hash=statistics.mean(r["cpu_ms_per_hash"] for r in runs),
                     cpu_ms_per_hash_all_cores=statistics.mean(r["cpu_ms_per_hash_all_cores"] for r in runs),
                     runs=[(r["per_core"], r["all_cores"], r["cpu_ms_per_hash"]) for r in runs])
    args.load = (load_at_start, os.getloadavg())
    text = report(results, argon, args, started, time.monotonic() - t0)
    output = Path(args.output) if args.output else RESULTS_DIR / f"{started:%Y-%m-%d}.md"
    if not args.output and output.exists():  # an earlier run of the day stays for comparison
        output = RESULTS_DIR / f"{started:%Y-%m-%d-%H%M}.md"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    output.with_suffix(".json").write_text(json.dumps(
        {"argon2": argon, "results": [dict({k: v for k, v in vars(r).items() if k not in ("latencies", "latency_counts")},
                                           rate=r.rate)
                                      for r in results]}, indent=1, default=str))
    print("\n" + text)
    print(f"written to {output}")
    if not args.output:
        update_readme(text, output, argon, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
