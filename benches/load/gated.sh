#!/usr/bin/env bash
# The gated hit path on one node vs on a fleet node (state.redis), same load as `make bench`
# (wrk -t1, benches/load/wrk_report.lua, CPU from /proc) — issue 13.
#
#   bash benches/load/gated.sh            # ~2 minutes
#   DURATION=10 REPEATS=3 bash benches/load/gated.sh
#
# Two sluice processes with the same config and media (a `dir:` bucket holding a gated
# content: master → media playlist → 16 KB segments), one on SQLite/memory, one on a real
# redis-server (AOF, appendfsync always: what README recommends). For each it issues a stream
# token, plays the entry playlist, takes the segment URL with its playback credential, then
# drives with wrk:
#   credential  GET /stream/h/v/seg.m4s?pc=…   a gated cache hit (what players send most):
#               0 Redis operations expected (the local, pub/sub-fed revocation set)
#   entry       GET /stream/h/master.m3u8?token=…   a playback start: 1 Redis round trip
#               (revocation + use count in one script) and the playlist rewrite
# and prints a markdown table: req/s, p50/p99, sluice CPU per 1,000 requests, Redis round
# trips per request (from sluice_redis_ops_total), the mean round trip as the request saw it
# (sluice_redis_op_duration_seconds), redis-server CPU, and the fleet/single ratios. The CPU
# model is printed first. Everything listens on free loopback ports; every process started
# here is killed on exit.
#
# Knobs: THREADS (1), CONNS (50; 1 gives the added latency without queueing), DURATION (5 s
# per run), REPEATS (2), APPENDFSYNC (always; everysec shows what the fsync costs), KEEP_TMP=1,
# SLUICE_BIN (a built binary: skip the release build).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/benches/load"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
THREADS="${THREADS:-1}"; CONNS="${CONNS:-50}"; DURATION="${DURATION:-5}"; REPEATS="${REPEATS:-2}"
APPENDFSYNC="${APPENDFSYNC:-always}"

log() { printf '\033[1m[gated]\033[0m %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v redis-server >/dev/null || need+=(redis-server)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
if ((${#need[@]})); then
  [[ $(id -u) == 0 ]] || die "missing ${need[*]}; run as root or install them"
  log "installing ${need[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  timeout 300 apt-get update -qq
  timeout 600 apt-get install -y -qq "${need[@]}" >/dev/null
  service redis-server stop >/dev/null 2>&1 || true
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [[ -n "${SLUICE_BIN:-}" ]]; then
  SLUICE="$SLUICE_BIN"
else
  log "building sluice (release)"
  (cd "$ROOT" && timeout 1800 cargo build --release --quiet --bin sluice)
  SLUICE="$TARGET_DIR/release/sluice"
fi
[[ -x "$SLUICE" ]] || die "no binary at $SLUICE"

TMP="$(mktemp -d /tmp/sluice-gated.XXXXXX)"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  if [[ "${KEEP_TMP:-0}" == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_http() {
  local i
  for i in $(seq 1 150); do
    curl -s -o /dev/null --max-time 1 "$1" && return 0
    sleep 0.1
  done
  die "nothing answers at $1"
}

# --- media: one gated content ----------------------------------------------------------
MEDIA="$TMP/media/movie-bench"
mkdir -p "$MEDIA/v720"
head -c $((16 * 1024)) /dev/urandom >"$MEDIA/v720/seg.m4s"
# The same segment in an ungated folder: the baseline a gated hit is compared with.
mkdir -p "$TMP/media/open-bench/v720"
cp "$MEDIA/v720/seg.m4s" "$TMP/media/open-bench/v720/seg.m4s"
printf '#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=2800000,RESOLUTION=1280x720\nv720/playlist.m3u8\n' >"$MEDIA/master.m3u8"
{
  printf '#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:6\n#EXT-X-PLAYLIST-TYPE:VOD\n'
  for i in $(seq 1 10); do printf '#EXTINF:6.000,\nseg.m4s\n'; done
  printf '#EXT-X-ENDLIST\n'
} >"$MEDIA/v720/playlist.m3u8"

# --- redis-server as README recommends -------------------------------------------------
REDIS_PORT=$(free_port)
mkdir -p "$TMP/redis"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$TMP/redis" --appendonly yes \
  --appendfsync "$APPENDFSYNC" --save "" --daemonize no --logfile "$TMP/redis/redis.log" &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
for _ in $(seq 1 100); do
  [[ "$(printf 'PING\r\n' | timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$REDIS_PORT; cat >&3; head -c 7 <&3" 2>/dev/null)" == "+PONG"* ]] && break
  sleep 0.1
done

start_sluice() { # $1 name, $2 extra state lines -> EDGE_<name>, ADMIN_<name>, PID_<name>
  local name=$1 edge admin
  edge=$(free_port); admin=$(free_port)
  cat >"$TMP/$name.yaml" <<EOF
listen:
  edge: 127.0.0.1:$edge
  admin: 127.0.0.1:$admin
state:
  sqlite: $TMP/$name-state/sluice.db
$2
origins:
  bucket: dir:$TMP/media
cache:
  memory_bytes: $((64 * 1024 * 1024))
streaming:
  secret: bench-stream-secret-0123456789
  contents:
    - id: bench
      hash: movie-bench
      token_required: true
      max_uses: 4000000000
log:
  level: warn
  access_log: false
server:
  threads: $THREADS
  pid_file: $TMP/$name.pid
  upgrade_sock: $TMP/$name-upgrade.sock
  grace_period_seconds: 0
  graceful_shutdown_timeout_seconds: 1
EOF
  "$SLUICE" serve -c "$TMP/$name.yaml" >"$TMP/$name.log" 2>&1 &
  PIDS+=($!)
  eval "EDGE_$name=$edge ADMIN_$name=$admin PID_$name=$!"
  wait_http "http://127.0.0.1:$edge/health"
}

log "starting sluice single (SQLite) and fleet (redis on :$REDIS_PORT), $THREADS worker(s) each"
start_sluice single ""
start_sluice fleet "  redis: redis://127.0.0.1:$REDIS_PORT/0"

# token → entry → credential URL of a segment, per server.
prepare() { # $1 name -> prints "ENTRY_URL CRED_URL"
  local name=$1 edge key token
  edge=$(eval echo "\$EDGE_$name")
  for _ in $(seq 1 50); do
    key=$(sed -n 's/^Generated default admin API key: //p' "$TMP/$name.log" | head -1)
    [[ -n $key ]] && break
    sleep 0.1
  done
  [[ -n $key ]] || die "$name printed no admin key"
  token=$(curl -s -H "Authorization: Bearer $key" -H 'content-type: application/json' \
    -d '{"contentId":"bench"}' "http://127.0.0.1:$edge/api/v2/streaming/token" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["streamToken"])')
  python3 - "$edge" "$token" <<'EOF'
import sys, urllib.request, urllib.parse
edge, token = sys.argv[1], sys.argv[2]
entry = f"http://127.0.0.1:{edge}/stream/movie-bench/master.m3u8?token={token}"
def get(u):
    return urllib.request.urlopen(u, timeout=10).read().decode()
master = get(entry)
child = next(l for l in master.splitlines() if l and not l.startswith("#"))
child = urllib.parse.urljoin(entry, child)
media = get(child)
seg = next(l for l in media.splitlines() if l and not l.startswith("#"))
print(entry, urllib.parse.urljoin(child, seg))
EOF
}
read -r ENTRY_single CRED_single < <(prepare single)
read -r ENTRY_fleet CRED_fleet < <(prepare fleet)
for u in "$CRED_single" "$CRED_fleet"; do
  curl -s -o /dev/null --max-time 5 "$u"
  [[ "$(curl -s -o /dev/null -w '%{http_code}' "$u")" == 200 ]] || die "credential URL refused: $u"
done

redis_ops() { # $1 admin port: total Redis round trips and the summed/count entry latency
  curl -s --max-time 5 "http://127.0.0.1:$1/metrics" | python3 -c '
import sys
ops = 0.0; s = 0.0; n = 0.0
for l in sys.stdin:
    if l.startswith("sluice_redis_ops_total{"):
        ops += float(l.split()[-1])
    elif l.startswith("sluice_redis_op_duration_seconds_sum{op=\"entry\"}"):
        s = float(l.split()[-1])
    elif l.startswith("sluice_redis_op_duration_seconds_count{op=\"entry\"}"):
        n = float(l.split()[-1])
print(ops, s, n)'
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

RESULTS="$TMP/results.jsonl"
python3 - "$THREADS" "$CONNS" "$DURATION" "$REPEATS" "$(redis-server --version | awk '{print $3}')" "$APPENDFSYNC" >"$RESULTS" <<'EOF'
import json, os, sys
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(json.dumps({"kind": "info", "threads": int(sys.argv[1]), "conns": int(sys.argv[2]),
                  "duration": int(sys.argv[3]), "repeats": int(sys.argv[4]), "redis": sys.argv[5],
                  "appendfsync": sys.argv[6],
                  "nproc": os.cpu_count(), "cpu": cpu}))
EOF

url_of() { # $1 server, $2 path kind (ungated|credential|entry)
  case $2 in
    ungated) echo "http://127.0.0.1:$(eval echo "\$EDGE_$1")/stream/open-bench/v720/seg.m4s" ;;
    credential) eval echo "\$CRED_$1" ;;
    entry) eval echo "\$ENTRY_$1" ;;
  esac
}

run() { # $1 server, $2 path kind (ungated|credential|entry), $3 rep
  local srv=$1 kind=$2 rep=$3 url pid admin c0 c1 r0 r1 o0 o1 out
  url=$(url_of "$srv" "$kind")
  pid=$(eval echo "\$PID_$srv"); admin=$(eval echo "\$ADMIN_$srv")
  o0=$(redis_ops "$admin"); c0=$(ticks "$pid"); r0=$(ticks "$REDIS_PID")
  out=$(timeout $((DURATION + 30)) wrk -t1 -c"$CONNS" -d"${DURATION}s" --timeout 10s --latency \
    -s "$HERE/wrk_report.lua" "$url" | awk '/^WRKJSON/ {print $2}')
  c1=$(ticks "$pid"); r1=$(ticks "$REDIS_PID"); o1=$(redis_ops "$admin")
  [[ -n $out ]] || die "wrk produced no report for $srv $kind"
  python3 - "$srv" "$kind" "$rep" "$out" "$((c1 - c0))" "$((r1 - r0))" "$(getconf CLK_TCK)" "$o0" "$o1" <<'EOF' | tee -a "$RESULTS" >&2
import json, sys
srv, kind, rep, w, ticks, rticks, hz = sys.argv[1:8]
o0 = [float(x) for x in sys.argv[8].split()]; o1 = [float(x) for x in sys.argv[9].split()]
w = json.loads(w)
secs = w["duration_us"] / 1e6
req = max(w["requests"], 1)
n = o1[2] - o0[2]
print(json.dumps({"kind": "wrk", "server": srv, "path": kind, "rep": int(rep),
                  "req_s": w["requests"] / secs, "p50_ms": w["p50_us"] / 1000, "p99_ms": w["p99_us"] / 1000,
                  "cpu_s_per_1k": int(ticks) / int(hz) / req * 1000,
                  "redis_cpu_s_per_1k": (int(rticks) / int(hz) / req * 1000) if srv == "fleet" else 0.0,
                  "redis_ops_per_req": (o1[0] - o0[0]) / req,
                  "entry_rtt_ms": ((o1[1] - o0[1]) / n * 1000) if n > 0 else None,
                  "non2xx": w["non2xx"], "socket_errors": w["socket_errors"]}))
EOF
}

for srv in single fleet; do
  for kind in ungated credential entry; do
    url=$(url_of "$srv" "$kind")
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" == 200 ]] || die "$srv $kind: $url refused"
    timeout 20 wrk -t1 -c"$CONNS" -d1s "$url" >/dev/null
  done
done
log "runs: ungated, credential and entry paths, $REPEATS repeats × ${DURATION}s, $CONNS connections"
for rep in $(seq 1 "$REPEATS"); do
  if ((rep % 2)); then order="single fleet"; else order="fleet single"; fi
  for kind in ungated credential entry; do
    for srv in $order; do run "$srv" "$kind" "$rep"; done
  done
done

mkdir -p "$TARGET_DIR/bench-load"
python3 - "$RESULTS" <<'EOF' | tee "$TARGET_DIR/bench-load/gated.md"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
info = next(r for r in rows if r["kind"] == "info")
runs = [r for r in rows if r["kind"] == "wrk"]
print(f"CPU: {info['cpu']} ({info['nproc']} cores); sluice workers: {info['threads']}; "
      f"wrk -t1 -c{info['conns']}, {info['duration']} s × {info['repeats']} repeats (medians); "
      f"redis-server {info['redis']} (AOF, appendfsync {info['appendfsync']})\n")
def med(srv, kind, key):
    v = [r[key] for r in runs if r["server"] == srv and r["path"] == kind and r[key] is not None]
    return statistics.median(v) if v else None
print("| path | server | req/s | p50 ms | p99 ms | sluice CPU s/1k req | redis CPU s/1k req | redis round trips/req | entry round trip ms (mean) | non-2xx |")
print("|---|---|---|---|---|---|---|---|---|---|")
for kind in ("ungated", "credential", "entry"):
    for srv in ("single", "fleet"):
        rtt = med(srv, kind, "entry_rtt_ms")
        print(f"| {kind} | {srv} | {med(srv, kind, 'req_s'):,.0f} | {med(srv, kind, 'p50_ms'):.2f} | "
              f"{med(srv, kind, 'p99_ms'):.2f} | {med(srv, kind, 'cpu_s_per_1k'):.3f} | "
              f"{med(srv, kind, 'redis_cpu_s_per_1k'):.3f} | {med(srv, kind, 'redis_ops_per_req'):.3f} | "
              f"{'' if rtt is None else f'{rtt:.3f}'} | {int(sum(r['non2xx'] for r in runs if r['server']==srv and r['path']==kind))} |")
print()
for kind in ("credential", "entry"):
    s, f = med("single", kind, "req_s"), med("fleet", kind, "req_s")
    ps, pf = med("single", kind, "p50_ms"), med("fleet", kind, "p50_ms")
    cs, cf = med("single", kind, "cpu_s_per_1k"), med("fleet", kind, "cpu_s_per_1k")
    print(f"- {kind}: fleet/single req/s {f / s:.2f}, p50 {pf - ps:+.3f} ms, sluice CPU per request {cf / cs:.2f}×")
for srv in ("single", "fleet"):
    g, u = med(srv, "credential", "req_s"), med(srv, "ungated", "req_s")
    cg, cu = med(srv, "credential", "cpu_s_per_1k"), med(srv, "ungated", "cpu_s_per_1k")
    print(f"- gated hit (credential) / ungated hit, {srv}: req/s **{g / u:.2f}×**, CPU per request {cg / cu:.2f}×")
EOF
log "report saved to $TARGET_DIR/bench-load/gated.md"
