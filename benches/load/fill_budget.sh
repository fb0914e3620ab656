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
#     and the bound it must stay under: 2 x BUDGET + 64 MB;
#  5. the HTTP/2 row: a fresh sluice with `cache.memory_bytes` = H2_BUDGET and a TLS listener;
#     H2_CONNS connections (`benches/h2_stall.rs`) each open H2_STREAMS streams on as many
#     cold objects, with a zero flow-control window, and never read; held H2_HOLD seconds
#     (past the origin's SECONDS_PER_OBJECT). Prints how the streams were answered and the
#     peak RSS against 2 x H2_BUDGET + 64 MB. With the default `limits:` 8 x 64 streams is
#     exactly one client's share (max_connections_per_ip 512).
#
# Everything listens on 127.0.0.1 on free ports; every process started here is killed on exit;
# each step is bounded by `timeout`.
#
# Knobs (environment): OBJECTS (200), SIZE (2000000), SECONDS_PER_OBJECT (10), BUDGET
# (20971520), THREADS (2), H2_BUDGET (16777216), H2_CONNS (8), H2_STREAMS (64), H2_HOLD (15),
# ROWS ("h1 h2"), SLUICE_BIN, KEEP_TMP=1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
OBJECTS="${OBJECTS:-200}"
SIZE="${SIZE:-2000000}"
SECONDS_PER_OBJECT="${SECONDS_PER_OBJECT:-10}"
BUDGET="${BUDGET:-20971520}"
THREADS="${THREADS:-2}"
H2_BUDGET="${H2_BUDGET:-16777216}"
H2_CONNS="${H2_CONNS:-8}"
H2_STREAMS="${H2_STREAMS:-64}"
H2_HOLD="${H2_HOLD:-15}"
ROWS="${ROWS:-h1 h2}"

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
if [[ "$ROWS" == *h2* ]]; then
  log "building the HTTP/2 stalling client (benches/h2_stall.rs)"
  (cd "$ROOT" && timeout 3600 cargo bench --quiet --bench h2_stall --no-run)
fi
h2_stall() { (cd "$ROOT" && cargo bench --quiet --bench h2_stall -- "$@"); }

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
requests = open(sys.argv[4], "a")  # one line per request: the origin fetches
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
            requests.write("GET\n")
            requests.flush()
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
timeout 900 python3 "$TMP/origin.py" "$ORIGIN_PORT" "$SIZE" "$SECONDS_PER_OBJECT" "$TMP/origin.log" &
PIDS+=($!)
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$ORIGIN_PORT") 2>/dev/null && break
  sleep 0.1
done

# --- sluice -------------------------------------------------------------------------------
CPU="$(awk -F: '/model name/ {sub(/^ /, "", $2); print $2; exit}' /proc/cpuinfo)"
SLUICE_PID=""
# start_sluice BUDGET [extra listen lines]: a fresh sluice; sets SLUICE_PID and idle_kb.
start_sluice() {
  local budget="$1" listen_extra="${2:-}"
  rm -rf "$TMP/state" && mkdir -p "$TMP/state"
  cat >"$TMP/sluice.yaml" <<EOF
listen:
  edge: 127.0.0.1:$EDGE_PORT
  admin: 127.0.0.1:$ADMIN_PORT
$listen_extra
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
  memory_bytes: $budget
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
}
stop_sluice() {
  kill "$SLUICE_PID" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$SLUICE_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$SLUICE_PID" 2>/dev/null || true
}
# sample: metrics every 0.2 s into $TMP/samples while sluice runs (in the background: SAMPLER).
sample() {
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
}
peaks() {
  awk 'BEGIN{b=0;i=0} {if ($1>b) b=$1; if ($2>i) i=$2} END{print b, i}' "$TMP/samples"
}
uncached_now() {
  curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" |
    awk '/^sluice_cache_uncached_total\{reason="over_budget"\}/ {print $2}'
}
failed=0
echo "CPU: $CPU ($(nproc) cores), sluice threads: $THREADS, binary: $SLUICE"

# --- HTTP/1.1 row: every object asked for at once by curl -----------------------------------
if [[ "$ROWS" == *h1* ]]; then
  start_sluice "$BUDGET"
  log "HTTP/1.1: $OBJECTS concurrent cold objects of $SIZE bytes over ${SECONDS_PER_OBJECT}s each, budget $BUDGET"
  sample
  start=$(date +%s.%N)
  seq 0 $((OBJECTS - 1)) | timeout 600 xargs -P "$OBJECTS" -I{} \
    curl -s -o /dev/null -w '%{http_code} %{size_download}\n' \
    "http://127.0.0.1:$EDGE_PORT/stream/bench/o{}.m4s" >"$TMP/answers"
  elapsed=$(python3 -c "import time; print(round(time.time() - $start, 1))")
  kill "$SAMPLER" 2>/dev/null || true
  ok=$(grep -c "^200 $SIZE\$" "$TMP/answers" || true)
  peak_kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$SLUICE_PID/status")
  uncached=$(uncached_now)
  read -r max_bytes max_inflight < <(peaks)
  bound_mb=$(( (2 * BUDGET) / 1000000 + 64 ))
  stop_sluice
  cat <<EOF
HTTP/1.1: $OBJECTS objects x $SIZE bytes, each over ${SECONDS_PER_OBJECT}s; budget: $BUDGET bytes; run: ${elapsed}s
  complete 200 answers: $ok / $OBJECTS
  streamed through uncached (over_budget): ${uncached:-0}
  sluice_cache_bytes peak (sampled): $max_bytes; sluice_cache_inflight_bytes peak: $max_inflight
  RSS idle: $((idle_kb / 1024)) MB; peak (VmHWM): $((peak_kb / 1024)) MB; bound 2 x budget + 64 MB: $bound_mb MB
EOF
  [[ "$ok" == "$OBJECTS" ]] || { log "error: not every answer was complete"; failed=1; }
  (( peak_kb / 1024 <= bound_mb )) || { log "error: HTTP/1.1 peak RSS over the bound"; failed=1; }
fi

# --- HTTP/2 row: stalled streams (zero window) on cold objects ------------------------------
if [[ "$ROWS" == *h2* ]]; then
  TLS_PORT="$(free_port)"
  mkdir -p "$TMP/pki"
  h2_stall pki "$TMP/pki"
  start_sluice "$H2_BUDGET" "  edge_tls:
    address: 127.0.0.1:$TLS_PORT
    cert: $TMP/pki/cert.pem
    key: $TMP/pki/key.pem"
  streams=$((H2_CONNS * H2_STREAMS))
  : >"$TMP/origin.log"
  log "HTTP/2: $H2_CONNS connections x $H2_STREAMS stalled streams (zero window) on $H2_STREAMS cold objects of $SIZE bytes, budget $H2_BUDGET, held ${H2_HOLD}s"
  sample
  answered="$(timeout 600 bash -c "$(declare -f h2_stall); ROOT='$ROOT'; h2_stall load 127.0.0.1:$TLS_PORT '$TMP/pki' $H2_CONNS $H2_STREAMS '/stream/bench/s{i}.m4s' $H2_HOLD")" ||
    { log "error: the HTTP/2 client failed"; failed=1; }
  kill "$SAMPLER" 2>/dev/null || true
  peak_kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$SLUICE_PID/status")
  read -r max_bytes max_inflight < <(peaks)
  uncached=$(uncached_now)
  fetches=$(grep -c . "$TMP/origin.log" 2>/dev/null || echo "?")
  bound_mb=$(( (2 * H2_BUDGET) / 1000000 + 64 ))
  stop_sluice
  cat <<EOF
HTTP/2: $H2_CONNS connections x $H2_STREAMS streams ($streams), zero window, held ${H2_HOLD}s; budget: $H2_BUDGET bytes
  $answered
  origin fetches: $fetches; streamed through uncached (over_budget): ${uncached:-0}
  sluice_cache_bytes peak (sampled): $max_bytes; sluice_cache_inflight_bytes peak: $max_inflight
  RSS idle: $((idle_kb / 1024)) MB; peak (VmHWM): $((peak_kb / 1024)) MB; bound 2 x budget + 64 MB: $bound_mb MB
EOF
  (( peak_kb / 1024 <= bound_mb )) || { log "error: HTTP/2 peak RSS over the bound"; failed=1; }
fi
exit "$failed"
