#!/usr/bin/env python3
"""Turn the JSON lines written by benches/load/run.sh into the markdown report.

Every figure is the median over the repeats; the ratio column is sluice/nginx of those
medians (for req/s and MB/s higher is better for sluice, for latency, CPU and RSS lower is).

Usage: report.py RESULTS.jsonl
"""
import json
import statistics
import sys
from collections import defaultdict

SIZE_ORDER = {"pl": 0, "16k": 1, "60k": 2, "256k": 3, "1m": 4, "2m": 5}


def object_label(size):
    """The table label of a size token of run.sh (`pl`: the live playlist)."""
    if size == "pl":
        return "live playlist (~1 KB)"
    return size.upper().replace("K", " KB").replace("M", " MB")


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, digits=None):
    if x is None:
        return "–"
    if digits is None:
        digits = 0 if abs(x) >= 100 else (1 if abs(x) >= 10 else 2)
    return f"{x:,.{digits}f}"


def ratio(a, b):
    if a is None or not b:
        return "–"
    return f"**{a / b:.2f}×**"


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    info = next((r for r in rows if r["kind"] == "info"), {})
    wrk = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["kind"] == "wrk":
            wrk[(r["size"], r["conns"])][r["server"]].append(r)

    out = []
    out.append(f"Machine: {info.get('nproc', '?')} cores, {info.get('cpu', '?')}, "
               f"Linux {info.get('kernel', '?')}; {info.get('nginx', 'nginx ?')}; "
               f"wrk -t1 over loopback; {info.get('threads', '?')} worker(s) each; "
               f"{info.get('repeats', '?')} alternating repeats of {info.get('duration', '?')}s, "
               f"medians. Mode: {info.get('mode', '?')}.")
    out.append("")
    out.append("Cache hits (each cell: sluice / nginx, then the sluice/nginx ratio):")
    out.append("")
    out.append("| object | conns | req/s | MB/s | p50 ms | p99 ms | CPU s per 1k req | peak RSS MB |")
    out.append("|---|---|---|---|---|---|---|---|")
    metrics = [("req_s", None), ("mb_s", None), ("p50_ms", 2), ("p99_ms", 2),
               ("cpu_s_per_1k", 3), ("hwm_mb", 1)]
    for (size, conns) in sorted(wrk, key=lambda k: (SIZE_ORDER.get(k[0], 9), k[1])):
        by = wrk[(size, conns)]
        cells = []
        for m, d in metrics:
            s = med([r.get(m) for r in by.get("sluice", [])])
            n = med([r.get(m) for r in by.get("nginx", [])])
            cells.append(f"{fmt(s, d)} / {fmt(n, d)} {ratio(s, n)}")
        errs = sum(r.get("socket_errors", 0) + r.get("non2xx", 0)
                   for srv in by.values() for r in srv)
        label = object_label(size)
        out.append(f"| {label}{' (errors: %d)' % errs if errs else ''} | {conns} | "
                   + " | ".join(cells) + " |")
    out.append("")
    out.append("CPU per request, user + system µs (sluice / nginx), 50 conns:")
    out.append("")
    for (size, conns) in sorted(wrk, key=lambda k: (SIZE_ORDER.get(k[0], 9), k[1])):
        if conns != 50:
            continue
        by = wrk[(size, conns)]
        cell = []
        for srv in ("sluice", "nginx"):
            u = med([r.get("user_us_per_req") for r in by.get(srv, [])])
            y = med([r.get("sys_us_per_req") for r in by.get(srv, [])])
            cell.append(f"{fmt(u, 1)} + {fmt(y, 1)}")
        out.append(f"- {size}: " + " / ".join(cell))
    out.append("")

    iperf = next((r for r in rows if r["kind"] == "iperf"), None)
    if iperf:
        lim = iperf["mb_s"]
        parts = []
        for conns in sorted(c for (s, c) in wrk if s == "1m"):
            for srv in ("sluice", "nginx"):
                v = med([r["mb_s"] for r in wrk[("1m", conns)].get(srv, [])])
                if v:
                    parts.append(f"{srv} at {conns} conns {fmt(v)} MB/s = **{v / lim:.2f}×**")
        out.append(f"Loopback limit (iperf3, 1 stream): {fmt(lim)} MB/s. 1 MB hits as a "
                   f"fraction of it: " + "; ".join(parts) + ".")
        out.append("")

    px = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["kind"] == "proxy":
            px[r["object"]][r["server"]].append(r)
    if px:
        has_mf = any("mediaflow" in by for by in px.values())
        out.append("The ctx path, 50 conns: sluice `/api/proxy?url&ctx` (cached, playlist "
                   "rewritten per request)"
                   + (" / mediaflow-proxy-light (`/proxy/hls/manifest.m3u8`, `/proxy/stream`; "
                      "fetches from the origin each time), then the sluice/mediaflow ratio:"
                      if has_mf else " (set MEDIAFLOW_BIN for mediaflow-proxy-light's row):"))
        out.append("")
        out.append("| object | req/s | p50 ms | p99 ms | CPU s per 1k req |")
        out.append("|---|---|---|---|---|")
        for obj in sorted(px, key=lambda o: SIZE_ORDER.get(o, 9)):
            by = px[obj]
            cells = []
            for m, d in [("req_s", None), ("p50_ms", 2), ("p99_ms", 2), ("cpu_s_per_1k", 3)]:
                s_ = med([r.get(m) for r in by.get("sluice", [])])
                if has_mf:
                    n = med([r.get(m) for r in by.get("mediaflow", [])])
                    cells.append(f"{fmt(s_, d)} / {fmt(n, d)} {ratio(s_, n)}")
                else:
                    cells.append(fmt(s_, d))
            errs = sum(r.get("errors", 0) for srv in by.values() for r in srv)
            label = object_label(obj)
            out.append(f"| {label}{' (errors: %d)' % errs if errs else ''} | " + " | ".join(cells) + " |")
        out.append("")

    co = [r for r in rows if r["kind"] == "coalesce"]
    if co:
        out.append("Coalescing: concurrent requests for one cold 2 MB object "
                   "(origin fetches counted in the origin's access log):")
        out.append("")
        out.append("| server | requests | complete 200s | origin fetches | first byte p50 / max ms | last byte p50 / max ms |")
        out.append("|---|---|---|---|---|---|")
        for r in co:
            out.append(f"| {r['server']} | {r['requests']} | {r['ok']} | **{r['origin_fetches']}** | "
                       f"{r['ttfb_p50_ms']} / {r['ttfb_max_ms']} | {r['total_p50_ms']} / {r['total_max_ms']} |")
        out.append("")

    mem = next((r for r in rows if r["kind"] == "memory"), None)
    if mem:
        out.append(f"Memory (sluice, `cache.memory_bytes` = 256 MiB): idle RSS "
                   f"**{mem['idle_rss_mb']:.1f} MB**; after caching {mem['objects']} × 1 MB objects "
                   f"({mem['stored_mb']:.1f} MB stored, per `sluice_cache_bytes`) RSS grew "
                   f"{mem['rss_growth_mb']:.1f} MB = **{mem['rss_growth_mb'] / mem['stored_mb']:.2f}×** "
                   f"the bytes stored.")
        out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
