-- Shared by every scenario: print one JSON line of totals, and the latencies, that bench/harness.py parses.
-- Loaded with dofile() from the scenario scripts.
function report(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nBENCH_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50.0), latency:percentile(90.0), latency:percentile(99.0), latency.mean))
  -- Every latency recorded, as microseconds:requests pairs: bench/run.py pools a point's slices
  -- with them (the percentiles of the slices' own do not add up to the point's).
  local counts = {}
  for i = 1, #latency do
    local value, count = latency(i)
    counts[i] = string.format("%d:%d", value, count)
  end
  io.write("BENCH_LATENCIES " .. table.concat(counts, ",") .. "\n")
end
