"""bench/run.py's merge of a point's slices: the p50 and p99 of a wrk point are those of all its
requests, from wrk's histograms (bench/lua/report.lua), not an average of the slices' own. One
slow slice of three puts its tail in the point's p99, which an average dilutes (the refresh
target asks for a p99 under 25 ms)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from harness import Result, latency_counts  # noqa: E402
from run import merge  # noqa: E402


def _slice(counts: list[tuple[int, int]], p50_ms: float, p99_ms: float) -> Result:
    ops = sum(count for _, count in counts)
    piece = Result("provider/sqlite", "refresh_token", 16, ops, 1.0, p50_ms, p99_ms, 1.0)
    piece.latency_counts = counts
    return piece


def test_a_wrk_point_takes_its_percentiles_from_every_request_of_its_slices():
    slow = _slice([(10_000, 970), (40_000, 30)], 10.0, 40.0)  # 3% of its requests at 40 ms
    quick = [_slice([(10_000, 1000)], 10.0, 10.0) for _ in range(2)]

    point = merge([slow, *quick])

    assert point.ops == 3000
    assert point.p50_ms == 10.0
    assert point.p99_ms == 40.0  # 30 of 3,000 requests took 40 ms; the slices' mean p99 was 20


def test_wrk_histogram_is_read_from_report_lua_line():
    stdout = "Running 1s test\nBENCH_JSON {}\nBENCH_LATENCIES 310:1,331:2,10302:5\n"

    assert latency_counts(stdout) == [(310, 1), (331, 2), (10302, 5)]
    assert latency_counts("BENCH_LATENCIES \n") == []
    assert latency_counts("no such line") == []
