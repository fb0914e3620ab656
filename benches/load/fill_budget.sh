#!/usr/bin/env bash
# Memory of concurrent slow cold fills against a small cache budget (issue 12).
#
#   bash benches/load/fill_budget.sh
#
# What it does:
#  1. builds sluice (release) unless SLUICE_BIN names a binary;
#  2. starts a slow loopback origin (python3 asyncio): OBJECTS distinct objects of SIZE bytes,
#     each sent with its Content-Length in 64 KiB pieces over SECONDS;
#  3. starts sluice with `cache.memory_bytes` = BUDGET and asks for every object at once
#     (OBJECTS concurrent curl clients, all cold);
#  4. samples `sluice_cache_bytes` / `sluice_cache_inflight_bytes` while the fills run, checks
#     every answer is a 200 of SIZE bytes, and prints the CPU model, sluice's peak RSS (VmHWM)
#     and the bound it must stay under: 2 x BUDGET + 64 MB.
#
# Everything listens on 127.0.0.1 on free ports; every process started here is killed on exit;
# each step is bounded by `timeout`.
#
# Knobs (environment): OBJECTS (200), SIZE (2000000), SECONDS_PER_OBJECT (10), BUDGET
# (20971520), THREADS (2), SLUICE_BIN, KEEP_TMP=1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
OBJECTS="${OBJECTS:-200}"
SIZE="${SIZE:-2000000}"
SECONDS_PER_OBJECT="${SECONDS_PER_OBJECT:-10}"
BUDGET="${BUDGET:-20971520}"
THREADS="${THREADS:-2}"

log() { printf '\033[1m[fill-budget]\033[0m %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v curl >/dev/null || die "needs curl"
command -v python3 >/dev/null || die "needs python3"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [[ -n "${SLUICE_BIN:-}" ]]; then
  SLUICE="$SLUICE_BIN"
else
  log "building sluice (release)"
  (cd "$ROOT" && timeout 3600 cargo build --release --quiet --bin sluice)
  SLUICE="$TARGET_DIR/release/sluice"
fi
[[ -x "$SLUICE" ]] || die "no binary at $SLUICE"

TMP="$(mktemp -d /tmp/sluice-fill-budget.XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  [[ "${KEEP_TMP:-0}" == 1 ]] && log "kept $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
ORIGIN_PORT="$(free_port)"
EDGE_PORT="$(free_port)"
ADMIN_PORT="$(free_port)"

# --- slow origin --------------------------------------------------------------------------
cat >"$TMP/origin.py" <<'EOF'
import asyncio, os, sys
port, size, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
PIECE = 64 * 1024
body = os.urandom(size)
pieces = max(1, -(-size // PIECE))
pause = seconds / pieces

async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head:
                return
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: video/iso.segment\r\n"
                         b"content-length: %d\r\n\r\n" % size)
            for i in range(pieces):
                writer.write(body[i * PIECE:(i + 1) * PIECE])
                await writer.drain()
                await asyncio.sleep(pause)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()

asyncio.run(main())
EOF
timeout 900 python3 "$TMP/origin.py" "$ORIGIN_PORT" "$SIZE" "$SECONDS_PER_OBJECT" &
PIDS+=($!)
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$ORIGIN_PORT") 2>/dev/null && break
  sleep 0.1
done

# --- sluice -------------------------------------------------------------------------------
mkdir -p "$TMP/state"
cat >"$TMP/sluice.yaml" <<EOF
listen:
  edge: 127.0.0.1:$EDGE_PORT
  admin: 127.0.0.1:$ADMIN_PORT
state:
  sqlite: $TMP/state/sluice.db
server:
  threads: $THREADS
  pid_file: $TMP/sluice.pid
  upgrade_sock: $TMP/upgrade.sock
  grace_period_seconds: 0
  graceful_shutdown_timeout_seconds: 1
log:
  access_log: false
origins:
  bucket: http://127.0.0.1:$ORIGIN_PORT
  read_timeout: 60s
stream:
  prefetch: 0
cache:
  memory_bytes: $BUDGET
  max_object_bytes: 4194304
EOF
(cd "$ROOT" && exec timeout 900 "$SLUICE" serve -c "$TMP/sluice.yaml" >"$TMP/sluice.log" 2>&1) &
PIDS+=($!)
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$ADMIN_PORT/health" >/dev/null 2>&1 && break
  sleep 0.1
done
SLUICE_PID="$(pgrep -f -n "$SLUICE serve -c $TMP/sluice.yaml" || true)"
[[ -n "$SLUICE_PID" ]] || die "sluice did not start: $(cat "$TMP/sluice.log")"
idle_kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$SLUICE_PID/status")

# --- load ---------------------------------------------------------------------------------
log "$OBJECTS concurrent cold objects of $SIZE bytes over ${SECONDS_PER_OBJECT}s each, budget $BUDGET"
: >"$TMP/samples"
(
  while kill -0 "$SLUICE_PID" 2>/dev/null; do
    curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" |
      awk '/^sluice_cache_bytes /{b=$2} /^sluice_cache_inflight_bytes /{i=$2} END{print b, i}' >>"$TMP/samples"
    sleep 0.2
  done
) &
SAMPLER=$!
PIDS+=($SAMPLER)
start=$(date +%s.%N)
seq 0 $((OBJECTS - 1)) | timeout 600 xargs -P "$OBJECTS" -I{} \
  curl -s -o /dev/null -w '%{http_code} %{size_download}\n' \
  "http://127.0.0.1:$EDGE_PORT/stream/bench/o{}.m4s" >"$TMP/answers"
elapsed=$(python3 -c "import time; print(round(time.time() - $start, 1))")
kill "$SAMPLER" 2>/dev/null || true

ok=$(grep -c "^200 $SIZE\$" "$TMP/answers" || true)
peak_kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$SLUICE_PID/status")
metrics="$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics")"
uncached=$(awk '/^sluice_cache_uncached_total\{reason="over_budget"\}/ {print $2}' <<<"$metrics")
read -r max_bytes max_inflight < <(awk 'BEGIN{b=0;i=0} {if ($1>b) b=$1; if ($2>i) i=$2} END{print b, i}' "$TMP/samples")
bound_mb=$(( (2 * BUDGET) / 1000000 + 64 ))
cpu="$(awk -F: '/model name/ {sub(/^ /, "", $2); print $2; exit}' /proc/cpuinfo)"

cat <<EOF
CPU: $cpu ($(nproc) cores), sluice threads: $THREADS, binary: $SLUICE
objects: $OBJECTS x $SIZE bytes, each over ${SECONDS_PER_OBJECT}s; budget: $BUDGET bytes; run: ${elapsed}s
complete 200 answers: $ok / $OBJECTS
streamed through uncached (over_budget): ${uncached:-0}
sluice_cache_bytes peak (sampled): $max_bytes; sluice_cache_inflight_bytes peak: $max_inflight
RSS idle: $((idle_kb / 1024)) MB; peak (VmHWM): $((peak_kb / 1024)) MB; bound 2 x budget + 64 MB: $bound_mb MB
EOF
[[ "$ok" == "$OBJECTS" ]] || die "not every answer was complete"
(( peak_kb / 1024 <= bound_mb )) || die "peak RSS over the bound"
