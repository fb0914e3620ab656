-- wrk reporter for benches/load/run.sh: one machine-readable line per run, so the
-- script never has to parse wrk's human summary (units vary: us/ms/s, KB/MB/GB).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\"requests\":%d,\"bytes\":%d,\"duration_us\":%d,\"p50_us\":%d,\"p99_us\":%d," ..
    "\"socket_errors\":%d,\"non2xx\":%d}\n",
    summary.requests, summary.bytes, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
