#!/usr/bin/env python3
"""Coalescing probe for benches/load/run.sh.

Opens N keep-alive connections to HOST:PORT first, then sends `GET PATH` on all of them
at once (one write each, after every connection is up) and reads every response to the
end. Prints one JSON line: how many completed with status 200 and the full body, and the
time from the burst to the first byte / to the last byte (p50 and max).

Usage: coalesce.py HOST PORT PATH N EXPECTED_BYTES TIMEOUT_S
"""
import asyncio
import json
import sys
import time


async def one(host, port, path, start_evt, expected, results):
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as e:
        results.append({"ok": False, "err": f"connect: {e}"})
        return
    await start_evt.wait()
    t0 = time.monotonic()
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: coalesce\r\n\r\n".encode())
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        ttfb = time.monotonic() - t0
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for ln in lines[1:]:
            if ":" in ln:
                k, v = ln.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        got = 0
        if "content-length" in hdrs:
            left = int(hdrs["content-length"])
            while left > 0:
                chunk = await reader.read(min(left, 1 << 18))
                if not chunk:
                    break
                got += len(chunk)
                left -= len(chunk)
        else:  # chunked
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.strip().split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                data = await reader.readexactly(size + 2)
                got += size
        total = time.monotonic() - t0
        results.append({"ok": status == 200 and got == expected, "status": status,
                        "bytes": got, "ttfb": ttfb, "total": total})
    except Exception as e:  # noqa: BLE001 - any failure is a failed request here
        results.append({"ok": False, "err": repr(e)})
    finally:
        writer.close()


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


async def main():
    host, port, path, n, expected, timeout = sys.argv[1:7]
    port, n, expected, timeout = int(port), int(n), int(expected), float(timeout)
    start_evt = asyncio.Event()
    results = []
    tasks = [asyncio.create_task(one(host, port, path, start_evt, expected, results))
             for _ in range(n)]
    # Let every connection finish its handshake before the burst.
    for _ in range(200):
        await asyncio.sleep(0.01)
        if all(t.done() for t in tasks):
            break
    await asyncio.sleep(0.5)
    start_evt.set()
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for t in pending:
        t.cancel()
    ok = [r for r in results if r.get("ok")]
    print(json.dumps({
        "requests": n,
        "ok": len(ok),
        "failed": n - len(ok),
        "errors": sorted({r.get("err", f"status {r.get('status')} bytes {r.get('bytes')}")
                          for r in results if not r.get("ok")})[:3],
        "ttfb_p50_ms": round(1000 * (pct([r["ttfb"] for r in ok], 50) or 0), 1),
        "ttfb_max_ms": round(1000 * (pct([r["ttfb"] for r in ok], 100) or 0), 1),
        "total_p50_ms": round(1000 * (pct([r["total"] for r in ok], 50) or 0), 1),
        "total_max_ms": round(1000 * (pct([r["total"] for r in ok], 100) or 0), 1),
    }))


if __name__ == "__main__":
    asyncio.run(main())
