"""bench/harness.py's server CPU: a gunicorn worker that exits during a scenario (killed at its
timeout, crashed, replaced) keeps its CPU in the figure. Summing only the workers alive at each
reading lost it, and the difference of two readings could even go negative."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from harness import Server  # noqa: E402

# A stand-in for a gunicorn master: one worker, which waits for a line, burns 0.3 s of CPU and
# exits; the master reaps it (as gunicorn's arbiter does) and says so.
MASTER = """
import os, sys, time
worker = os.fork()
if worker == 0:
    sys.stdin.readline()
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    os._exit(0)
print("started", flush=True)
os.waitpid(worker, 0)
print("reaped", flush=True)
sys.stdin.readline()
"""


def test_a_worker_that_exits_between_the_readings_keeps_its_cpu():
    process = subprocess.Popen([sys.executable, "-c", MASTER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True)
    server = Server("fake", [], {}, 0, process=process)
    try:
        assert process.stdout.readline() == "started\n"
        deadline = time.monotonic() + 10
        while not server.workers() and time.monotonic() < deadline:
            time.sleep(0.01)
        before = server.cpu()

        process.stdin.write("go\n")
        process.stdin.flush()
        assert process.stdout.readline() == "reaped\n"
        after, alive = server.cpu(), server.workers()
    finally:
        process.kill()
        process.wait()

    assert not alive
    assert after - before >= 0.25
