"""The benchmark's report: the markdown tables, the targets of issue 3 checked against a run, and
the latest-figures section of bench/README.md."""
from __future__ import annotations

import datetime
import os
import re
import statistics
import sys
from pathlib import Path

from harness import HASHED, Result

REPO = Path(__file__).resolve().parent.parent


def fmt(value: float, digits: int = 1) -> str:
    return "n/a" if value != value else f"{value:,.{digits}f}"


def find(results, target, scenario, c):
    return next((r for r in results if r.target == target and r.scenario == scenario and r.concurrency == c), None)


def targets_section(results: list[Result], argon: dict) -> list[str]:
    """Issue 3's targets, each checked against this run's figures."""
    lines = ["| target | figure | by server CPU per op | goal | met |", "| --- | --- | --- | --- | --- |"]
    base_cc = find(results, "baseline", "client_credentials", 16)

    def ratio_row(label, r, base, goal, extra_ok=True, extra=""):
        if r is None or base is None or not r.ops or not base.ops:
            lines.append(f"| {label} | not measured | | {goal} | - |")
            return
        ratio = r.rate / base.rate
        needed = float(goal.split("%")[0].split()[-1]) / 100
        ok = ratio >= needed and extra_ok
        by_cpu = server_cpu(base) / server_cpu(r) if server_cpu(r) else float("nan")
        lines.append(f"| {label} | {r.rate:,.0f}/s = {ratio * 100:.0f}% of baseline {base.rate:,.0f}/s{extra} "
                     f"| {by_cpu * 100:.0f}% ({server_cpu_text(r)} vs {server_cpu_text(base)} ms) "
                     f"| {goal} | {'yes' if ok else '**no**'} |")

    for target in sorted({r.target for r in results if r.target != "baseline"}):
        ratio_row(f"{target}: client_credentials c16", find(results, target, "client_credentials", 16), base_cc,
                  ">= 80% of baseline client_credentials")
        refresh = find(results, target, "refresh_token", 16)
        p99_ok = refresh is not None and refresh.p99_ms < 25
        ratio_row(f"{target}: refresh_token c16", refresh, base_cc, ">= 60% of baseline client_credentials, p99 < 25 ms",
                  p99_ok, f", p99 {fmt(refresh.p99_ms) if refresh else 'n/a'} ms")
        for doc in ("discovery", "jwks"):
            ratio_row(f"{target}: {doc} c16", find(results, target, doc, 16), find(results, "baseline", doc, 16),
                      ">= 90% of baseline")
        logins = [r for r in results if r.target == target and r.scenario == "login" and r.ops]
        if logins and argon:
            best = max(logins, key=lambda r: r.rate)
            cpu = statistics.median(r.cpu_ms_per_op for r in logins)
            hashed = [h for h in (hashing_per_login(r) for r in logins) if h is not None]
            if hashed:  # the verification as it ran inside the logins, under their load
                hash_ms = statistics.median(hashed)
                budget = hash_ms + 8
                lines.append(f"| {target}: login server CPU | {cpu:.1f} ms per login (median over concurrencies), "
                             f"{hash_ms:.1f} ms of it the argon2id verification | {cpu - hash_ms:.1f} ms besides it | "
                             f"<= one argon2id (as it ran: {hash_ms:.1f} ms; "
                             f"{argon['cpu_ms_per_hash']:.1f} ms alone on one core) + 8 ms = {budget:.1f} ms | "
                             f"{'yes' if cpu <= budget else '**no**'} |")
            else:  # a provider whose access lines do not say (--provider-tree of an older one)
                budget = argon["cpu_ms_per_hash"] + 8
                lines.append(f"| {target}: login server CPU | {cpu:.1f} ms per login (median over concurrencies) | | "
                             f"<= one argon2id ({argon['cpu_ms_per_hash']:.1f} ms CPU) + 8 ms = {budget:.1f} ms | "
                             f"{'yes' if cpu <= budget else '**no**'} |")
            share = best.rate / argon["all_cores"]
            lines.append(f"| {target}: login rate | {best.rate:.1f}/s (c{best.concurrency}) = {share * 100:.0f}% of "
                         f"argon2-only {argon['all_cores']:.1f}/s | | >= 60% | {'yes' if share >= 0.6 else '**no**'} |")
        else:
            lines.append(f"| {target}: logins | not measured | | CPU <= argon2 + 8 ms; rate >= 60% of argon2-only | - |")
    return lines


def server_cpu(r: Result) -> float:
    """CPU per operation of the whole server: its workers' and, with PostgreSQL, its database
    backends' (what SQLite does is in the workers' figure already, the baseline's as the provider's)."""
    db = r.db_cpu_ms_per_op
    return r.cpu_ms_per_op + (db if db == db else 0.0)


def server_cpu_text(r: Result) -> str:
    db = r.db_cpu_ms_per_op
    return f"{r.cpu_ms_per_op:.3f}" + (f" + {db:.3f} PostgreSQL" if db == db else "")


def hashing_per_login(r: Result) -> float | None:
    """CPU per login spent hashing the password (the access lines' hash_cpu_ms), or None when the
    provider's lines do not carry it."""
    breakdown = getattr(r, "breakdown", None) or {}
    values = [x for key, found in breakdown.items() if key.startswith(HASHED) for x in found]
    return sum(values) / r.ops if values and r.ops else None


def code_posts(r: Result | None, status: int) -> list[float]:
    """cpu_ms of the code form's POSTs answered with `status` (302 right code, 401 wrong code)."""
    if r is None or not getattr(r, "breakdown", None):
        return []
    return [x for key, values in r.breakdown.items() if key.startswith("POST /login/<id> ")
            and key.endswith(" (code)") and key.split()[2] == str(status) for x in values]


def totp_targets_section(results: list[Result]) -> list[str]:
    """Issue 4's targets: TOTP logins against password-only logins, and the code POST alone."""
    lines = ["| target | figure | goal | met |", "| --- | --- | --- | --- |"]
    for target in sorted({r.target for r in results if r.target != "baseline"}):
        for c in sorted({r.concurrency for r in results if r.scenario == "login_totp" and r.target == target}):
            totp, plain = find(results, target, "login_totp", c), find(results, target, "login", c)
            if not (totp and plain and totp.ops and plain.ops):
                lines.append(f"| {target}: TOTP login rate c{c} | not measured | >= 90% of password-only | - |")
                continue
            ratio = totp.rate / plain.rate
            lines.append(f"| {target}: TOTP login rate c{c} | {totp.rate:.1f}/s = {ratio * 100:.0f}% of password-only "
                         f"{plain.rate:.1f}/s; server CPU {totp.cpu_ms_per_op:.1f} vs {plain.cpu_ms_per_op:.1f} ms per "
                         f"login ({totp.cpu_ms_per_op - plain.cpu_ms_per_op:+.1f} ms) | >= 90% of password-only | "
                         f"{'yes' if ratio >= 0.9 else '**no**'} |")
        step = find(results, target, "totp_step", min((r.concurrency for r in results if r.scenario == "totp_step"
                                                        and r.target == target), default=0))
        right, wrong = code_posts(step, 302), code_posts(step, 401)
        if not right or not wrong:
            lines.append(f"| {target}: code POST CPU | not measured | right < 2 ms, wrong <= right | - |")
            continue
        r_med, w_med = statistics.median(right), statistics.median(wrong)
        where = " (+ PostgreSQL backend CPU, not attributable per request)" if target.endswith("postgresql") else ""
        lines.append(f"| {target}: code POST, right code (c{step.concurrency}) | {r_med:.2f} ms median, "
                     f"{statistics.mean(right):.2f} ms mean over {len(right)}{where} | < 2 ms | "
                     f"{'yes' if r_med < 2 else '**no**'} |")
        lines.append(f"| {target}: code POST, wrong code (c{step.concurrency}) | {w_med:.2f} ms median, "
                     f"{statistics.mean(wrong):.2f} ms mean over {len(wrong)} = {w_med / r_med * 100:.0f}% of right | "
                     f"<= right, < 2 ms | {'yes' if w_med <= r_med and w_med < 2 else '**no**'} |")
    return lines


def report(results: list[Result], argon: dict | None, args, started: datetime.datetime, elapsed: float) -> str:
    lines = [f"# Benchmark {started:%Y-%m-%d %H:%M} UTC", "",
             f"Command: `.venv/bin/python bench/run.py {' '.join(sys.argv[1:])}`".replace("  ", " "), "",
             f"Machine: {os.cpu_count()} cores, {platform_line()}. gunicorn `-w {args.workers} -k {args.worker_class}`"
             f"{f' --threads {args.threads}' if args.worker_class == 'gthread' else ''} for every target; "
             f"{args.duration:g} s per point in {args.rounds} interleaved slices; wrk -t2 for discovery/JWKS/grants, Python threads for logins; "
             f"load generator on the same cores. Run took {elapsed / 60:.1f} min; load average "
             f"{args.load[0][0]:.1f} at the start, {args.load[1][0]:.1f} at the end (other work on the machine "
             f"shifts absolute rates; the ratios are taken point by point, interleaved).", ""]
    if argon:
        p = argon["params"]
        lines += [f"argon2id (t={p['time_cost']}, m={p['memory_cost']} KiB, p={p['parallelism']}): "
                  f"{argon['per_core']:.1f} verifications/s on one core ({argon['cpu_ms_per_hash']:.1f} ms CPU each), "
                  f"{argon['all_cores']:.1f}/s with one process per core"
                  + (f" ({argon['cpu_ms_per_hash_all_cores']:.1f} ms CPU each, every core hashing)"
                     if "cpu_ms_per_hash_all_cores" in argon else "")
                  + ": the ceiling for password logins "
                  f"(mean of the measurements before and after the scenarios: "
                  f"{'; '.join(f'{a:.1f}/s, {b:.1f}/s, {c:.1f} ms' for a, b, c in argon.get('runs', []))}).", ""]
    lines += ["## Targets (issue 3)", "",
              "Judged on throughput, as the issue states them. \"By server CPU per op\" is the same ratio computed "
              "from CPU per operation (baseline / provider; with PostgreSQL, its backends' CPU added to the "
              "workers'): what each server could reach on cores of its own, a steadier figure when other work "
              "shares the machine.", ""]
    lines += targets_section(results, argon)
    if any(r.scenario in ("login_totp", "totp_step") for r in results):
        lines += ["", "## Targets (issue 4)", "",
                  "TOTP logins (password, then the code page) against password-only logins, same concurrency, "
                  "slices alternating. The code POST's CPU is the access lines' `cpu_ms` of the code form's POST "
                  "(verification, replay guard's conditional UPDATE, lockout counters, audit, commit, and the "
                  "redirect or the re-rendered form) in the totp_step scenario, which posts two wrong codes "
                  "before the right one.", ""]
        lines += totp_targets_section(results)
    lines += ["", "## All figures", ""]
    base_by = {(r.scenario, r.concurrency): r for r in results if r.target == "baseline"}
    lines += ["| scenario | target | c | ops/s | vs baseline | p50 ms | p99 ms | server CPU ms/op | + PostgreSQL ms/op "
              "| errors | note |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    order = ["discovery", "jwks", "client_credentials", "refresh_token", "login", "login_totp", "totp_step"]
    for r in sorted(results, key=lambda r: (order.index(r.scenario), r.concurrency, r.target)):
        base = base_by.get((r.scenario, r.concurrency)) or base_by.get(("client_credentials", r.concurrency)) \
            if r.scenario not in ("login", "login_totp", "totp_step") else None
        vs = f"{r.rate / base.rate * 100:.0f}%" if base and base.ops and r.ops and r.target != "baseline" else ""
        lines.append(f"| {r.scenario} | {r.target} | {r.concurrency} | {fmt(r.rate, 0)} | {vs} | {fmt(r.p50_ms, 2)} | "
                     f"{fmt(r.p99_ms, 2)} | {fmt(r.cpu_ms_per_op, 3)} | "
                     f"{fmt(r.db_cpu_ms_per_op, 3) if r.db_cpu_ms_per_op == r.db_cpu_ms_per_op else ''} | {r.errors} | {r.note} |")
    lines += breakdown_section(results)
    lines += ["", "refresh_token is compared with the baseline's client_credentials (the baseline has no refresh grant). "
              "login latencies are per whole login (about eight requests); its CPU is per login. Server CPU is the "
              "gunicorn workers'; with PostgreSQL the backends' CPU is shown beside it (it is in-process with SQLite)."]
    return "\n".join(lines) + "\n"


def breakdown_section(results: list[Result]) -> list[str]:
    """Where a login's server CPU goes, per request type, from the access lines' cpu_ms (lowest concurrency)."""
    lines = []
    kinds = ("login", "login_totp", "totp_step")
    for r in sorted((r for r in results if r.scenario in kinds and getattr(r, "breakdown", None) and r.ops),
                    key=lambda r: (r.target, kinds.index(r.scenario), r.concurrency)):
        if any(x.target == r.target and x.scenario == r.scenario and x.concurrency < r.concurrency and
               getattr(x, "breakdown", None) and x.ops for x in results):
            continue
        lines += ["", f"### Where a login's CPU goes: {r.scenario}, {r.target}, c{r.concurrency} ({r.ops} logins)", "",
                  "From the access lines' `cpu_ms` (CPU of the serving thread; SQLite work is included, PostgreSQL's "
                  "is not). Requests per login and CPU per login by request type:", "",
                  "| request | per login | CPU ms per request (median) | CPU ms per login |", "| --- | --- | --- | --- |"]
        total = 0.0
        for key, values in sorted(r.breakdown.items(), key=lambda kv: -sum(kv[1])):
            if key.startswith(HASHED):
                continue
            per_login = sum(values) / r.ops
            total += per_login
            lines.append(f"| `{key}` | {len(values) / r.ops:.2f} | {statistics.median(values):.2f} | {per_login:.2f} |")
        lines.append(f"| all | | | {total:.2f} |")
        hashing = hashing_per_login(r)
        if hashing is not None:
            lines.append(f"| of which hashing the password (`hash_cpu_ms`) | | | {hashing:.2f} |")
            lines.append(f"| all besides the hash | | | {total - hashing:.2f} |")
    return lines


README_START, README_END = "<!-- bench:latest -->", "<!-- /bench:latest -->"


def update_readme(text: str, output: Path, argon, results) -> None:
    """Put the latest run's summary and target table between the markers of bench/README.md."""
    readme = REPO / "bench" / "README.md"
    if not readme.exists():
        return
    content = readme.read_text()
    if README_START not in content or README_END not in content:
        return
    head = text.split("## All figures")[0].strip().splitlines()
    summary = "\n".join(line if not line.startswith("## Targets") else f"**{line[3:]}**"
                        for line in head[1:]).strip()
    summary = re.sub(r"\n{3,}", "\n\n", summary)
    c16 = [r for r in results if r.concurrency == 16]
    rows = ["| scenario | target | ops/s | p50 ms | p99 ms | server CPU ms/op |", "| --- | --- | --- | --- | --- | --- |"]
    for r in c16:
        rows.append(f"| {r.scenario} | {r.target} | {fmt(r.rate, 0)} | {fmt(r.p50_ms, 2)} | {fmt(r.p99_ms, 2)} | "
                     f"{fmt(r.cpu_ms_per_op, 3)} |")
    block = (f"{README_START}\nLatest run: [{output.name}](results/{output.name}) (all concurrencies there).\n\n"
             + summary + "\n\nAt c16:\n\n" + "\n".join(rows) + f"\n{README_END}")
    start, end = content.index(README_START), content.index(README_END) + len(README_END)
    readme.write_text(content[:start] + block + content[end:])


def platform_line() -> str:
    try:
        model = next(text.split(":", 1)[1].strip() for text in Path("/proc/cpuinfo").read_text().splitlines()
                     if text.startswith("model name"))
    except (OSError, StopIteration):
        model = "unknown CPU"
    return f"{model}, Python {sys.version.split()[0]}"
