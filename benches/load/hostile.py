#!/usr/bin/env python3
"""What hostile clients can hold on a running sluice (issue 12): connections held and RSS
under each attack, on a release build, with the default `limits:`.

  python3 benches/load/hostile.py [--bin target/release/sluice] [--quick]

Attacks, one after the other against one sluice (a dir: bucket, nothing else):
  idle       55 kept-alive connections idle after one answered request
  slowloris  300 connections sending a second header one byte every 5 s
  bigheader  300 connections each sending an unfinished 1 MB header
  flood      2,000 connections from one address (max_connections_per_ip: 512)

For each: connections still open at fixed times (client side: a socket the server has not
closed), sluice's RSS before, peak (sampled every 100 ms from /proc) and after. Prints the
CPU model with the table. Every socket is closed and sluice killed on exit.
"""
import argparse
import os
import resource
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Sampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, False

    def run(self):
        while not self.stop:
            self.peak = max(self.peak, rss_kb(self.pid))
            time.sleep(0.1)


def still_open(socks):
    """Sockets the server has not closed (no EOF/reset readable)."""
    n = 0
    for s in socks:
        try:
            p = select.poll()
            p.register(s, select.POLLIN)
            if not p.poll(0):
                n += 1
                continue
            data = s.recv(65536, socket.MSG_PEEK)
            if data and not data.startswith(b"HTTP/1.1 431") and not data.startswith(b"HTTP/1.1 503"):
                n += 1
        except OSError:
            pass
    return n


def connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setblocking(True)
    return s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/sluice"))
    ap.add_argument("--quick", action="store_true", help="shorter waits (keepalive 10 s)")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = tempfile.mkdtemp(prefix="sluice-hostile-")
    edge, admin = free_port(), free_port()
    keepalive = 10 if a.quick else 60
    cfg = os.path.join(tmp, "sluice.yaml")
    with open(cfg, "w") as f:
        f.write(
            f"listen:\n  edge: 127.0.0.1:{edge}\n  admin: 127.0.0.1:{admin}\n"
            f"state:\n  sqlite: {tmp}/state/sluice.db\n"
            f"origins:\n  bucket: dir:{ROOT}/demo/media\n"
            f"log:\n  access_log: false\n  level: warn\n"
            f"limits:\n  keepalive_timeout: {keepalive}s\n"
            f"server:\n  threads: 1\n  pid_file: {tmp}/pid\n  upgrade_sock: {tmp}/up.sock\n"
        )
    proc = subprocess.Popen([a.bin, "serve", "-c", cfg], cwd=ROOT,
                            stdout=open(os.path.join(tmp, "out.log"), "w"), stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", edge), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        cpu = "unknown"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        rows = []

        def attack(name, setup, checks):
            time.sleep(1)
            before = rss_kb(proc.pid)
            sampler = Sampler(proc.pid)
            sampler.start()
            t0 = time.time()
            socks = setup()
            counts = []
            for at in checks:
                delay = at - (time.time() - t0)
                if delay > 0:
                    time.sleep(delay)
                counts.append((at, still_open(socks)))
            sampler.stop = True
            sampler.join()
            after = rss_kb(proc.pid)
            for s in socks:
                try:
                    s.close()
                except OSError:
                    pass
            rows.append((name, len(socks), counts, before, sampler.peak, after))
            print(f"{name}: {counts} rss {before}->{sampler.peak}->{after} kB", file=sys.stderr)

        def idle():
            socks = []
            for _ in range(55):
                s = connect(edge)
                s.sendall(b"GET /health HTTP/1.1\r\nHost: b\r\n\r\n")
                s.recv(4096)
                socks.append(s)
            return socks

        def slowloris():
            socks = []
            for _ in range(300):
                s = connect(edge)
                s.sendall(b"GET /health HTTP/1.1\r\nHost: b\r\n\r\n")
                s.recv(4096)
                s.sendall(b"GET /health HTTP/1.1\r\nX-a: ")
                socks.append(s)

            def drip():
                for _ in range(6):
                    time.sleep(5)
                    for s in socks:
                        try:
                            s.send(b"a")
                        except OSError:
                            pass
            threading.Thread(target=drip, daemon=True).start()
            return socks

        def bigheader():
            socks = []
            chunk = b"X-Pad: " + b"p" * 8185 + b"\r\n"
            for _ in range(300):
                s = connect(edge)
                s.setblocking(False)
                s.send(b"GET /health HTTP/1.1\r\nHost: b\r\n")
                sent = 0
                while sent < 1024 * 1024:
                    try:
                        sent += s.send(chunk)
                    except BlockingIOError:
                        break
                    except OSError:
                        break
                socks.append(s)
            return socks

        def flood():
            socks = []
            for _ in range(2000):
                try:
                    socks.append(connect(edge))
                except OSError:
                    break
            return socks

        attack("idle keep-alive", idle, [5, keepalive + 10])
        attack("slowloris (1 B / 5 s)", slowloris, [5, 15, 30])
        attack("unfinished 1 MB headers", bigheader, [2, 15])
        attack("2,000 connections, one IP", flood, [2, 15])

        print(f"\nCPU: {cpu}; {os.path.relpath(a.bin, ROOT)}, 1 worker thread, default limits "
              f"(header_timeout 10s, keepalive_timeout {keepalive}s, max_header_bytes 64 KiB, "
              f"max_connections_per_ip 512)\n")
        print("| attack | connections opened | still open (s after start) | RSS before → peak → after |")
        print("|---|---|---|---|")
        for name, n, counts, before, peak, after in rows:
            held = ", ".join(f"{c} at {t}s" for t, c in counts)
            print(f"| {name} | {n} | {held} | {before // 1024} → {peak // 1024} → {after // 1024} MB |")
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
