#!/usr/bin/env bash
# Load benchmark: sluice vs nginx proxy_cache on one machine, over loopback (issue 7).
#
#   make bench                      # full run (~8 minutes)
#   QUICK=1 bash benches/load/run.sh   # short run (~2 minutes)
#
# What it does, in one run:
#  1. builds sluice (release), writes 16 KB / 256 KB / 1 MB / 2 MB segments and a playlist
#     into a temp dir and serves them with an origin nginx on a free port;
#  2. starts sluice (cache on, access log off) and nginx from Debian's package with the
#     equivalent config (proxy_cache + proxy_cache_lock, keepalive to the origin, access log
#     off), each with THREADS workers (default 1);
#  3. warms both caches, then drives each with `wrk -t1 --latency` at fixed connection counts,
#     alternating sluice/nginx for REPEATS rounds;
#  4. records req/s, MB/s, p50/p99, CPU seconds per 1,000 requests (utime+stime of every
#     server process, nginx master and workers included) and peak RSS (VmHWM), and prints a
#     markdown table of medians with sluice/nginx ratios;
#  5. coalescing: CONCURRENCY clients ask for one cold 2 MB object at once, on each server;
#     prints the origin fetch count for each;
#  6. iperf3 over loopback (one stream), the 1 MB-hit rate as a fraction of it, and the idle
#     RSS of sluice with a 256 MiB cache budget.
#
# Everything listens on 127.0.0.1 on ports that are free; every process started here is
# killed on exit (trap); every step is bounded by `timeout`. Run as root so apt-get can
# install nginx, wrk and iperf3 when missing. Results are noisy on small shared machines:
# read the ratios, not the absolute numbers.
#
# Knobs (environment): QUICK=1, THREADS (1), WORK_STEALING (false), LISTENER_TASKS (4), REPEATS, DURATION (seconds per wrk run),
# CONNS ("50 500"), SIZES ("pl 16k 60k 256k 1m 2m"; `pl` = a ~1 KB live playlist, 60k = an LL-HLS part),
# SLUICE_BIN (a prebuilt sluice instead of building this tree), WRITE_BUFFER (sluice's
# `listen.write_buffer`; unset: its default), CONCURRENCY (1000), KEEP_TMP=1,
# PROFILE=1 (perf-record each server during the first repeat; reports land next to the table
# in $CARGO_TARGET_DIR/bench-load/perf-*.txt).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/benches/load"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
THREADS="${THREADS:-1}"
if [[ "${QUICK:-0}" == 1 ]]; then
  MODE=quick
  REPEATS="${REPEATS:-2}"; DURATION="${DURATION:-3}"; CONNS="${CONNS:-50}"
  SIZES="${SIZES:-pl 16k 60k 1m}"; CONCURRENCY="${CONCURRENCY:-1000}"; IPERF_SECS=3
else
  MODE=full
  REPEATS="${REPEATS:-3}"; DURATION="${DURATION:-6}"; CONNS="${CONNS:-50 500}"
  SIZES="${SIZES:-pl 16k 60k 256k 1m 2m}"; CONCURRENCY="${CONCURRENCY:-1000}"; IPERF_SECS=5
fi

log() { printf '\033[1m[bench]\033[0m %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- tools -------------------------------------------------------------------------------
need=()
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v iperf3 >/dev/null || need+=(iperf3)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
if ((${#need[@]})); then
  [[ $(id -u) == 0 ]] || die "missing ${need[*]}; run as root or install them"
  log "installing ${need[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  timeout 300 apt-get update -qq
  timeout 600 apt-get install -y -qq "${need[@]}" >/dev/null
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# --- build -------------------------------------------------------------------------------
if [[ -n "${SLUICE_BIN:-}" ]]; then
  SLUICE="$SLUICE_BIN"
  log "sluice binary from SLUICE_BIN: $SLUICE (not rebuilt)"
else
  log "building sluice (release)"
  (cd "$ROOT" && timeout 1800 cargo build --release --quiet --bin sluice)
  SLUICE="$TARGET_DIR/release/sluice"
fi
[[ -x "$SLUICE" ]] || die "no binary at $SLUICE"

# --- scratch dir, cleanup ----------------------------------------------------------------
TMP="$(mktemp -d /tmp/sluice-bench.XXXXXX)"
chmod 755 "$TMP" # nginx workers may run as another user than the one running this script
PIDS=()
# nginx: TERM to the master (it stops its workers), then KILL whatever is left of the
# master and the children it had, so no orphaned worker outlives the run.
stop_nginx() {
  local pidf=$1 master kids i
  [[ -f $pidf ]] || return 0
  master=$(cat "$pidf")
  kids=$(pgrep -P "$master" || true)
  kill -TERM "$master" 2>/dev/null || true
  for i in $(seq 1 30); do kill -0 "$master" 2>/dev/null || break; sleep 0.1; done
  # shellcheck disable=SC2086
  kill -KILL "$master" $kids 2>/dev/null || true
}
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  stop_nginx "$TMP/nginx.pid"
  stop_nginx "$TMP/origin.pid"
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  if [[ "${KEEP_TMP:-0}" == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT INT TERM

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
ORIGIN_PORT=$(free_port); SLUICE_PORT=$(free_port); ADMIN_PORT=$(free_port)
NGINX_PORT=$(free_port); IPERF_PORT=$(free_port); MEM_PORT=$(free_port); MEM_ADMIN=$(free_port)

# --- origin content ----------------------------------------------------------------------
MEDIA="$TMP/media/bench"
mkdir -p "$MEDIA" "$TMP/nginx-cache" "$TMP/ngx-tmp"
head -c $((16 * 1024)) /dev/urandom >"$MEDIA/seg-16k.m4s"
head -c $((60 * 1024)) /dev/urandom >"$MEDIA/seg-60k.m4s"
head -c $((256 * 1024)) /dev/urandom >"$MEDIA/seg-256k.m4s"
head -c $((1024 * 1024)) /dev/urandom >"$MEDIA/seg-1m.m4s"
head -c $((2 * 1024 * 1024)) /dev/urandom >"$MEDIA/seg-2m.m4s"
{
  printf '#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:6\n#EXT-X-PLAYLIST-TYPE:VOD\n'
  for i in $(seq 0 99); do printf '#EXTINF:6.000,\nseg-256k.m4s\n'; done
  printf '#EXT-X-ENDLIST\n'
} >"$MEDIA/index.m3u8"
# A live playlist (no ENDLIST): 6 segments of 2 s with program dates, ~1 KB — what a live
# player reloads every couple of seconds. Both servers cache it for about a second (sluice
# by its content, nginx by `proxy_cache_valid` below).
{
  printf '#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:1000\n'
  for i in $(seq 1000 1005); do
    printf '#EXT-X-PROGRAM-DATE-TIME:2026-11-29T12:%02d:%02d.000Z\n#EXTINF:2.000,\n1080p/segment-%010d.m4s\n' $((i / 30 % 60)) $((i * 2 % 60)) "$i"
  done
} >"$MEDIA/live.m3u8"
# Distinct names for cold objects (coalescing) and the memory fill: symlinks to one file.
for s in sluice nginx; do ln -s seg-2m.m4s "$MEDIA/cold-$s.m4s"; done
for i in $(seq 1 128); do ln -s seg-1m.m4s "$MEDIA/fill-$i.m4s"; done

cat >"$TMP/origin.conf" <<EOF
worker_processes 1;
daemon on;
user $(id -un);
pid $TMP/origin.pid;
error_log $TMP/origin-error.log warn;
events { worker_connections 8192; }
http {
  types { application/vnd.apple.mpegurl m3u8; video/iso.segment m4s; }
  log_format uri '\$request_uri';
  access_log $TMP/origin-access.log uri;
  client_body_temp_path $TMP/ngx-tmp/o-body; proxy_temp_path $TMP/ngx-tmp/o-proxy;
  fastcgi_temp_path $TMP/ngx-tmp/o-fcgi; uwsgi_temp_path $TMP/ngx-tmp/o-uwsgi;
  scgi_temp_path $TMP/ngx-tmp/o-scgi;
  sendfile on;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$ORIGIN_PORT backlog=4096;
    root $TMP/media;
  }
}
EOF

# nginx as the cache under test: the same job as sluice's /stream path (strip /stream, cache
# by scheme+host+path, lock on, keepalive upstream) and the same response headers sluice adds.
cat >"$TMP/nginx.conf" <<EOF
worker_processes $THREADS;
daemon on;
user $(id -un);
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
worker_rlimit_nofile 65536;
events { worker_connections 8192; }
http {
  types { application/vnd.apple.mpegurl m3u8; video/iso.segment m4s; }
  access_log off;
  client_body_temp_path $TMP/ngx-tmp/body; proxy_temp_path $TMP/ngx-tmp/proxy;
  fastcgi_temp_path $TMP/ngx-tmp/fcgi; uwsgi_temp_path $TMP/ngx-tmp/uwsgi;
  scgi_temp_path $TMP/ngx-tmp/scgi;
  sendfile on; tcp_nopush on;
  keepalive_requests 1000000;
  proxy_cache_path $TMP/nginx-cache levels=1:2 keys_zone=media:32m max_size=256m inactive=1d use_temp_path=off;
  upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX_PORT backlog=4096;
    location ~ ^/stream/.*\.m3u8\$ {
      rewrite ^/stream/(.*)\$ /\$1 break;
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache media;
      proxy_cache_key \$scheme\$proxy_host\$uri;
      proxy_cache_valid 200 1s;
      proxy_cache_lock on;
      add_header X-Cache-Status \$upstream_cache_status;
      add_header Access-Control-Allow-Origin *;
      add_header Access-Control-Expose-Headers "Content-Length, Content-Range, Accept-Ranges, x-cache-status";
      add_header Cache-Control "no-cache";
    }
    location /stream/ {
      proxy_pass http://origin/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache media;
      proxy_cache_key \$scheme\$proxy_host\$uri;
      proxy_cache_valid 200 1d;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 10s;
      proxy_cache_lock_age 10s;
      add_header X-Cache-Status \$upstream_cache_status;
      add_header Access-Control-Allow-Origin *;
      add_header Access-Control-Expose-Headers "Content-Length, Content-Range, Accept-Ranges, x-cache-status";
      add_header Cache-Control "public, max-age=31536000, immutable";
    }
  }
}
EOF

sluice_conf() { # $1 name, $2 edge port, $3 admin port
  cat >"$TMP/$1.yaml" <<EOF
listen:
  edge: 127.0.0.1:$2
  admin: 127.0.0.1:$3
${WRITE_BUFFER:+  write_buffer: $WRITE_BUFFER}
state:
  sqlite: $TMP/$1-state/sluice.db
origins:
  bucket: http://127.0.0.1:$ORIGIN_PORT
cache:
  enabled: true
  memory_bytes: $((256 * 1024 * 1024))
limits:
  # One loopback client stands for many players here (the coalescing burst opens 1,000).
  max_connections_per_ip: 4096
provider_auth:
  jwt_secret: bench-provider-jwt-secret-0123456789
providers:
  bench:
    allow_private: true
    channels:
      live: {url: "http://127.0.0.1:$ORIGIN_PORT/bench/live.m3u8", type: hls}
log:
  level: warn
  access_log: false
server:
  threads: $THREADS
  work_stealing: ${WORK_STEALING:-false}
  listener_tasks_per_fd: ${LISTENER_TASKS:-4}
  pid_file: $TMP/$1.pid
  upgrade_sock: $TMP/$1-upgrade.sock
  grace_period_seconds: 0
  graceful_shutdown_timeout_seconds: 1
EOF
}

wait_http() { # $1 url: wait up to 15 s for any HTTP answer
  local i
  for i in $(seq 1 150); do
    curl -s -o /dev/null --max-time 1 "$1" && return 0
    sleep 0.1
  done
  die "nothing answers at $1"
}

start_sluice() { # $1 name, $2 edge port, $3 admin port -> sets SPID
  sluice_conf "$1" "$2" "$3"
  "$SLUICE" serve -c "$TMP/$1.yaml" >"$TMP/$1.log" 2>&1 &
  SPID=$!
  PIDS+=("$SPID")
  wait_http "http://127.0.0.1:$2/health"
}

log "origin nginx on :$ORIGIN_PORT, sluice on :$SLUICE_PORT, nginx on :$NGINX_PORT ($THREADS worker(s) each, $MODE mode)"
timeout 10 "$NGINX" -c "$TMP/origin.conf" -e "$TMP/origin-error.log"
wait_http "http://127.0.0.1:$ORIGIN_PORT/bench/index.m3u8"
timeout 10 "$NGINX" -c "$TMP/nginx.conf" -e "$TMP/nginx-error.log"
wait_http "http://127.0.0.1:$NGINX_PORT/stream/bench/index.m3u8"
start_sluice sluice "$SLUICE_PORT" "$ADMIN_PORT"
SLUICE_PID=$SPID
NGINX_MASTER=$(cat "$TMP/nginx.pid")

# Every process of a server: sluice is one process (all its threads count in its stat);
# nginx is its master plus every child (workers, cache manager, cache loader).
server_pids() {
  case $1 in
    sluice) echo "$SLUICE_PID" ;;
    nginx) echo "$NGINX_MASTER" $(pgrep -P "$NGINX_MASTER" || true) ;;
    mediaflow) echo "$MF_PID" ;;
  esac
}
cpu_ticks() { # utime+stime (fields 14, 15) summed over the server's processes
  local t=0 p
  for p in $(server_pids "$1"); do
    [[ -r /proc/$p/stat ]] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$t"
}
hwm_kb() { # VmHWM summed over the server's processes
  local t=0 p
  for p in $(server_pids "$1"); do
    [[ -r /proc/$p/status ]] && t=$((t + $(awk '/^VmHWM/ {print $2}' "/proc/$p/status")))
  done
  echo "$t"
}
# The object a size token names: `pl` is the live playlist, the rest segments.
obj() { [[ $1 == pl ]] && echo "bench/live.m3u8" || echo "bench/seg-$1.m4s"; }
user_ticks() { # utime (field 14) summed over the server's processes
  local t=0 p
  for p in $(server_pids "$1"); do
    [[ -r /proc/$p/stat ]] && t=$((t + $(awk '{print $14}' "/proc/$p/stat")))
  done
  echo "$t"
}
port_of() { [[ $1 == sluice ]] && echo "$SLUICE_PORT" || echo "$NGINX_PORT"; }

RESULTS="$TMP/results.jsonl"
python3 - "$THREADS" "$REPEATS" "$DURATION" "$MODE" "$("$NGINX" -v 2>&1)" >"$RESULTS" <<'EOF'
import json, os, platform, sys
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(json.dumps({"kind": "info", "threads": int(sys.argv[1]), "repeats": int(sys.argv[2]),
                  "duration": int(sys.argv[3]), "mode": sys.argv[4],
                  "nginx": sys.argv[5].replace("nginx version: ", ""),
                  "nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release()}))
EOF

# --- warm both caches --------------------------------------------------------------------
log "warming both caches"
for srv in sluice nginx; do
  for size in $SIZES; do
    url="http://127.0.0.1:$(port_of $srv)/stream/$(obj "$size")"
    curl -s -o /dev/null --max-time 10 "$url"
    status=$(curl -s -o /dev/null -D - --max-time 10 "$url" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache-status" {print tolower($2)}')
    [[ $status == hit ]] || die "$srv: second request for $(obj "$size") was not a cache hit (x-cache-status: '$status')"
  done
done

run_wrk() { # $1 server, $2 size, $3 conns, $4 rep
  local srv=$1 size=$2 conns=$3 rep=$4 port c0 c1 u0 u1 out
  port=$(port_of "$srv")
  # Reset VmHWM (clear_refs 5, Linux ≥4.0) so each row's peak RSS is that run's own.
  for p in $(server_pids "$srv"); do echo 5 >"/proc/$p/clear_refs" 2>/dev/null || true; done
  c0=$(cpu_ticks "$srv"); u0=$(user_ticks "$srv")
  local perf_pid=""
  if [[ "${PROFILE:-0}" == 1 && $rep == 1 ]] && command -v perf >/dev/null; then
    # Sampling costs a little CPU on the profiled server: the rep-1 figures are then
    # slightly pessimistic for both servers alike; the medians use every repeat.
    perf record -q -F 499 -g -o "$TMP/perf-$srv-$size-$conns.data" \
      -p "$(server_pids "$srv" | tr ' ' ',')" -- sleep "$DURATION" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  out=$(timeout $((DURATION + 30)) wrk -t1 -c"$conns" -d"${DURATION}s" --timeout 10s --latency \
    -s "$HERE/wrk_report.lua" "http://127.0.0.1:$port/stream/$(obj "$size")" | awk '/^WRKJSON/ {print $2}')
  c1=$(cpu_ticks "$srv"); u1=$(user_ticks "$srv")
  if [[ -n $perf_pid ]]; then
    wait "$perf_pid" || true
    mkdir -p "$TARGET_DIR/bench-load"
    perf report -i "$TMP/perf-$srv-$size-$conns.data" --no-children --percent-limit 0.7 \
      --stdio -g none 2>/dev/null >"$TARGET_DIR/bench-load/perf-$srv-$size-$conns.txt" || true
    cp "$TMP/perf-$srv-$size-$conns.data" "$TARGET_DIR/bench-load/" 2>/dev/null || true
  fi
  [[ -n $out ]] || die "wrk produced no report for $srv $size c=$conns"
  python3 - "$srv" "$size" "$conns" "$rep" "$out" "$((c1 - c0))" "$(getconf CLK_TCK)" "$(hwm_kb "$srv")" "$((u1 - u0))" <<'EOF' | tee -a "$RESULTS" >&2
import json, sys
srv, size, conns, rep, w, ticks, hz, hwm, uticks = sys.argv[1:10]
w = json.loads(w)
secs = w["duration_us"] / 1e6
req = max(w["requests"], 1)
print(json.dumps({"kind": "wrk", "server": srv, "size": size, "conns": int(conns), "rep": int(rep),
                  "req_s": w["requests"] / secs, "mb_s": w["bytes"] / secs / 1e6,
                  "p50_ms": w["p50_us"] / 1000, "p99_ms": w["p99_us"] / 1000,
                  "cpu_s_per_1k": int(ticks) / int(hz) / req * 1000, "hwm_mb": int(hwm) / 1024,
                  "user_us_per_req": int(uticks) / int(hz) / req * 1e6,
                  "sys_us_per_req": (int(ticks) - int(uticks)) / int(hz) / req * 1e6,
                  "socket_errors": w["socket_errors"], "non2xx": w["non2xx"]}))
EOF
}

# A short unrecorded run per server and size warms connection pools and allocators.
for size in $SIZES; do
  for srv in sluice nginx; do
    timeout 20 wrk -t1 -c50 -d1s "http://127.0.0.1:$(port_of $srv)/stream/$(obj "$size")" >/dev/null
  done
done

# --- the hit runs: alternate the order every repeat --------------------------------------
log "hit runs: sizes [$SIZES], conns [$CONNS], $REPEATS repeats × ${DURATION}s"
for rep in $(seq 1 "$REPEATS"); do
  if ((rep % 2)); then order="sluice nginx"; else order="nginx sluice"; fi
  for size in $SIZES; do
    for conns in $CONNS; do
      for srv in $order; do run_wrk "$srv" "$size" "$conns" "$rep"; done
    done
  done
done

# --- the ctx path: /api/proxy vs mediaflow-proxy-light ----------------------------------
# The same live playlist (rewritten: every URI back through the proxy) and a 16 KB segment,
# through sluice's `/api/proxy?url&ctx` (cached) and, when MEDIAFLOW_BIN names a built
# mediaflow-proxy-light, through its `/proxy/hls/manifest.m3u8?d=` and `/proxy/stream?d=`
# (it caches nothing: each request goes to the origin). One worker each.
proxy_url() { # $1 server, $2 pl|16k -> the URL a player of that server asks for
  local o="http://127.0.0.1:$ORIGIN_PORT/$(obj "$2")"
  case $1 in
    sluice)
      if [[ $2 == pl ]]; then echo "http://127.0.0.1:$SLUICE_PORT$PROXY_PL"
      else echo "http://127.0.0.1:$SLUICE_PORT/api/proxy?url=$(python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(sys.argv[1],safe=""))' "$o")&ctx=$CTX"; fi ;;
    mediaflow)
      if [[ $2 == pl ]]; then echo "http://127.0.0.1:$MF_PORT/proxy/hls/manifest.m3u8?d=$o&api_password=bench"
      else echo "http://127.0.0.1:$MF_PORT/proxy/stream?d=$o&api_password=bench"; fi ;;
  esac
}
JWT=$(python3 - <<'PY'
import base64, hashlib, hmac, json, time
b = lambda x: base64.urlsafe_b64encode(x).rstrip(b"=").decode()
h = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
p = b(json.dumps({"sub": "bench", "exp": int(time.time()) + 3600}).encode())
sig = hmac.new(b"bench-provider-jwt-secret-0123456789", f"{h}.{p}".encode(), hashlib.sha256).digest()
print(f"{h}.{p}.{b(sig)}")
PY
)
PROXY_PL=$(curl -s --max-time 5 -H "Authorization: Bearer $JWT" "http://127.0.0.1:$SLUICE_PORT/api/providers/bench/channels/live/stream" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["url"])')
CTX=$(python3 -c 'import sys,urllib.parse as u; print(u.parse_qs(u.urlparse(sys.argv[1]).query)["ctx"][0])' "$PROXY_PL")
[[ -n $CTX ]] || die "no ctx from the provider stream endpoint"
PROXY_SERVERS="sluice"
if [[ -n "${MEDIAFLOW_BIN:-}" ]]; then
  [[ -x $MEDIAFLOW_BIN ]] || die "MEDIAFLOW_BIN=$MEDIAFLOW_BIN is not an executable"
  MF_PORT=$(free_port)
  APP__SERVER__HOST=127.0.0.1 APP__SERVER__PORT=$MF_PORT APP__SERVER__WORKERS=$THREADS \
    APP__AUTH__API_PASSWORD=bench RUST_LOG=error "$MEDIAFLOW_BIN" >"$TMP/mediaflow.log" 2>&1 &
  MF_PID=$!
  PIDS+=("$MF_PID")
  wait_http "http://127.0.0.1:$MF_PORT/health"
  PROXY_SERVERS="sluice mediaflow"
  log "mediaflow-proxy-light on :$MF_PORT ($MEDIAFLOW_BIN)"
else
  log "MEDIAFLOW_BIN unset: the /api/proxy rows are sluice's alone"
fi
for srv in $PROXY_SERVERS; do
  for what in pl 16k; do
    code=$(curl -s -o "$TMP/proxy-check" -w '%{http_code}' --max-time 10 "$(proxy_url "$srv" "$what")")
    [[ $code == 200 ]] || die "$srv: $(proxy_url "$srv" "$what") answered $code"
    if [[ $what == pl ]] && ! grep -q 'segment-0000001005' "$TMP/proxy-check"; then die "$srv: the proxied playlist is not the live one"; fi
    timeout 20 wrk -t1 -c50 -d1s "$(proxy_url "$srv" "$what")" >/dev/null
  done
done
log "/api/proxy runs: [$PROXY_SERVERS], $REPEATS repeats × ${DURATION}s, 50 conns"
for rep in $(seq 1 "$REPEATS"); do
  for what in pl 16k; do
    for srv in $PROXY_SERVERS; do
      c0=$(cpu_ticks "$srv")
      out=$(timeout $((DURATION + 30)) wrk -t1 -c50 -d"${DURATION}s" --timeout 10s --latency \
        -s "$HERE/wrk_report.lua" "$(proxy_url "$srv" "$what")" | awk '/^WRKJSON/ {print $2}')
      c1=$(cpu_ticks "$srv")
      [[ -n $out ]] || die "wrk produced no report for $srv /api/proxy $what"
      python3 - "$srv" "$what" "$rep" "$out" "$((c1 - c0))" "$(getconf CLK_TCK)" <<'PY' | tee -a "$RESULTS" >&2
import json, sys
srv, what, rep, w, ticks, hz = sys.argv[1:7]
w = json.loads(w)
secs = w["duration_us"] / 1e6
req = max(w["requests"], 1)
print(json.dumps({"kind": "proxy", "server": srv, "object": what, "rep": int(rep),
                  "req_s": w["requests"] / secs, "p50_ms": w["p50_us"] / 1000,
                  "p99_ms": w["p99_us"] / 1000, "cpu_s_per_1k": int(ticks) / int(hz) / req * 1000,
                  "errors": w["socket_errors"] + w["non2xx"]}))
PY
    done
  done
done

# --- coalescing ----------------------------------------------------------------------------
log "coalescing: $CONCURRENCY concurrent requests for one cold 2 MB object per server"
for srv in sluice nginx; do
  path="/stream/bench/cold-$srv.m4s"
  res=$(timeout 120 python3 "$HERE/coalesce.py" 127.0.0.1 "$(port_of $srv)" "$path" \
    "$CONCURRENCY" $((2 * 1024 * 1024)) 90)
  sleep 0.5
  fetches=$(grep -c "^/bench/cold-$srv.m4s\$" "$TMP/origin-access.log" || true)
  python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r.update(kind="coalesce", server=sys.argv[2], origin_fetches=int(sys.argv[3])); print(json.dumps(r))' \
    "$res" "$srv" "$fetches" | tee -a "$RESULTS" >&2
done

# --- loopback limit ------------------------------------------------------------------------
log "iperf3 loopback, one stream, ${IPERF_SECS}s"
timeout $((IPERF_SECS + 20)) iperf3 -s -1 -B 127.0.0.1 -p "$IPERF_PORT" >/dev/null 2>&1 &
PIDS+=($!)
sleep 0.5
timeout $((IPERF_SECS + 15)) iperf3 -c 127.0.0.1 -p "$IPERF_PORT" -t "$IPERF_SECS" -J >"$TMP/iperf.json"
python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(json.dumps({"kind":"iperf","mb_s":j["end"]["sum_received"]["bits_per_second"]/8e6}))' \
  "$TMP/iperf.json" | tee -a "$RESULTS" >&2

# --- memory: idle RSS and resident cache vs bytes stored ---------------------------------
log "memory: a fresh sluice with a 256 MiB budget, idle and after caching 128 × 1 MB"
kill -INT "$SLUICE_PID" 2>/dev/null || true # the bench instance is done; free its memory
start_sluice mem "$MEM_PORT" "$MEM_ADMIN"
MEM_PID=$SPID
sleep 2
idle_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$MEM_PID/status")
for i in $(seq 1 128); do echo "url = \"http://127.0.0.1:$MEM_PORT/stream/bench/fill-$i.m4s\""; echo "output = /dev/null"; done >"$TMP/fill.curl"
timeout 120 curl -s --parallel --parallel-max 8 -K "$TMP/fill.curl" 2>/dev/null
sleep 1
full_kb=$(awk '/^VmRSS/ {print $2}' "/proc/$MEM_PID/status")
stored=$(curl -s --max-time 5 "http://127.0.0.1:$MEM_ADMIN/metrics" | awk '/^sluice_cache_bytes / {print $2}')
python3 -c 'import json,sys; i,f,s=int(sys.argv[1]),int(sys.argv[2]),float(sys.argv[3] or 0); print(json.dumps({"kind":"memory","idle_rss_mb":i/1024,"objects":128,"stored_mb":s/1048576,"rss_growth_mb":(f-i)/1024}))' \
  "$idle_kb" "$full_kb" "${stored:-0}" | tee -a "$RESULTS" >&2

# --- report --------------------------------------------------------------------------------
mkdir -p "$TARGET_DIR/bench-load"
python3 "$HERE/report.py" "$RESULTS" | tee "$TARGET_DIR/bench-load/latest.md"
cp "$RESULTS" "$TARGET_DIR/bench-load/latest.jsonl"
log "report saved to $TARGET_DIR/bench-load/latest.md"
