"""bench/report.py's targets table: each figure is the one its column says."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from harness import Result  # noqa: E402
from report import targets_section  # noqa: E402


def _grants(target: str, rate: float, cpu_ms: float, db_cpu_ms: float = float("nan")) -> Result:
    return Result(target, "client_credentials", 16, int(rate * 10), 10.0, 5.0, 10.0, cpu_ms,
                  db_cpu_ms_per_op=db_cpu_ms)


def test_the_ratio_by_server_cpu_counts_the_postgresql_backends_of_the_provider():
    """What a server could reach on cores of its own: the PostgreSQL provider needs its backends'
    CPU as well as its workers' (the baseline's SQLite, like the SQLite provider's, is in its
    workers' figure)."""
    results = [_grants("baseline", 2000, 0.70), _grants("provider/postgresql", 1500, 0.90, db_cpu_ms=0.20),
               _grants("provider/sqlite", 1700, 0.875)]

    rows = {line.split(" | ")[0]: line for line in targets_section(results, {})}

    postgresql = rows["| provider/postgresql: client_credentials c16"].split(" | ")
    assert postgresql[2] == "64% (0.900 + 0.200 PostgreSQL vs 0.700 ms)"  # 0.70 / 1.10; the workers alone: 78%
    sqlite = rows["| provider/sqlite: client_credentials c16"].split(" | ")
    assert sqlite[2] == "80% (0.875 vs 0.700 ms)"
