"""Servers under gunicorn, their CPU time from /proc, and wrk runs: the plumbing of bench/run.py.

Server CPU per operation is the gunicorn workers' user+system time (utime+stime in
/proc/<pid>/stat) consumed during a scenario, divided by the operations it completed; a worker
that exits meanwhile counts through its master's cutime+cstime. The load generator runs on the
same cores, so throughput is shared with it; CPU per operation is not.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

BENCH_DIR = Path(__file__).resolve().parent
LUA_DIR = BENCH_DIR / "lua"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# A login breakdown's key (bench/run.py's login_breakdown) for the part of its requests' cpu_ms
# that hashed a password: this prefix, then the request's key.
HASHED = "hashing: "


@dataclass
class Result:
    target: str            # "baseline", "provider/sqlite", "provider/postgresql"
    scenario: str          # "discovery", "jwks", "client_credentials", "refresh_token", "login"
    concurrency: int
    ops: int               # completed successful operations
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_op: float
    errors: int = 0
    note: str = ""
    db_cpu_ms_per_op: float = float("nan")  # PostgreSQL backends serving the provider (nan: in-process SQLite)

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # the command name may hold spaces: fields resume after the last ")"
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def db_cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU the database backends used in between (backends opened meanwhile count from zero)."""
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


def cpu_seconds(pids: list[int], reaped_children: bool = False) -> float:
    """The processes' user+system time; with `reaped_children`, that of the children they have
    waited for instead (cutime+cstime)."""
    first = 13 if reaped_children else 11  # utime, stime: fields 14 and 15 of stat; cutime, cstime: 16 and 17
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        total += int(fields[first]) + int(fields[first + 1])
    return total / CLOCK_TICKS


@dataclass
class Server:
    """A gunicorn master started by the bench; `workers()` are the processes whose CPU counts."""

    name: str
    argv: list[str]
    env: dict
    port: int
    cwd: str | None = None
    log_path: Path | None = None
    process: subprocess.Popen | None = field(default=None, repr=False)
    db_pids: object = None  # callable returning the PostgreSQL backend pids of this server's database

    def db_cpu(self) -> dict[int, float]:
        if self.db_pids is None:
            return {}
        return {pid: cpu_seconds([pid]) for pid in self.db_pids()}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_path: str = "/.well-known/openid-configuration", timeout: float = 60) -> None:
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdout=log, stderr=log,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}")
            try:
                if requests.get(self.base_url + ready_path, timeout=2).status_code == 200:
                    if len(self.workers()) >= 1:
                        return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready in {timeout}s; see {self.log_path}")

    def workers(self) -> list[int]:
        return children_of(self.process.pid) if self.process else []

    def cpu(self) -> float:
        """The live workers' CPU, and the master's reaped children's: the workers that exited (a
        timeout, a crash, a replacement). Without them a worker gone between two readings took
        its whole CPU out of the difference, which could go negative."""
        if not self.process:
            return 0.0
        return cpu_seconds(self.workers()) + cpu_seconds([self.process.pid], reaped_children=True)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # gunicorn: graceful stop of master and workers
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None


def ensure_wrk() -> str:
    """wrk drives the simple GET/POST scenarios for provider and baseline alike; install it if missing."""
    path = shutil.which("wrk")
    if path:
        return path
    print("wrk not found: installing it with apt-get", flush=True)
    for argv in (["apt-get", "install", "-y", "wrk"], ["apt-get", "update"], ["apt-get", "install", "-y", "wrk"]):
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        path = shutil.which("wrk")
        if path:
            return path
    raise RuntimeError("wrk is not installed and apt-get could not install it")


def run_wrk(server: Server, target: str, scenario: str, url_path: str, script: str, concurrency: int,
            duration: float, env_extra: dict | None = None, threads: int = 2) -> Result:
    threads = min(threads, concurrency)
    env = dict(os.environ, BENCH_LUA_DIR=str(LUA_DIR), BENCH_THREADS=str(threads), **(env_extra or {}))
    argv = [ensure_wrk(), f"-t{threads}", f"-c{concurrency}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
            "-s", str(LUA_DIR / script), server.base_url + url_path]
    db_before, cpu_before, started = server.db_cpu(), server.cpu(), time.monotonic()
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=duration + 60)
    cpu_after, db_after = server.cpu(), server.db_cpu()
    line = next((text for text in out.stdout.splitlines() if text.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no totals for {target} {scenario}: {out.stdout[-500:]} {out.stderr[-500:]}")
    data = json.loads(line.split(" ", 1)[1])
    lost = next((int(text.split()[1]) for text in out.stdout.splitlines() if text.startswith("BENCH_LOST ")), 0)
    socket_errors = data["connect"] + data["read"] + data["write"] + data["timeout"]
    errors = data["status"] + socket_errors + lost
    ok = max(0, data["requests"] - data["status"] - lost)
    seconds = data["duration_us"] / 1e6 or (time.monotonic() - started)
    starved = next((int(text.split()[1]) for text in out.stdout.splitlines() if text.startswith("BENCH_STARVED ")),
                   0)
    notes = []
    if socket_errors:
        notes.append(f"socket errors {socket_errors}")
    if starved:
        notes.append(f"{starved} requests sent without a live refresh token (failed grants emptied the pool)")
    note = "; ".join(notes)
    result = Result(target, scenario, concurrency, ok, seconds, data["p50_us"] / 1000, data["p99_us"] / 1000,
                    (cpu_after - cpu_before) * 1000 / ok if ok else float("nan"), errors, note)
    if server.db_pids is not None and ok:
        result.db_cpu_ms_per_op = db_cpu_delta(db_before, db_after) * 1000 / ok
    result.latency_counts = latency_counts(out.stdout)
    return result


def latency_counts(stdout: str) -> list[tuple[int, int]]:
    """wrk's latency histogram, from lua/report.lua's BENCH_LATENCIES line: (microseconds, requests) pairs."""
    line = next((text for text in stdout.splitlines() if text.startswith("BENCH_LATENCIES ")), "")
    pairs = line.split(" ", 1)[1].split(",") if line else []
    return [(int(value), int(count)) for value, count in (pair.split(":") for pair in pairs if pair)]
