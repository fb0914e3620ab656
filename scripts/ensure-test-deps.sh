#!/usr/bin/env bash
# Installs what the test suite needs and is missing, saying what it installs.
# Nothing is skipped silently: a failed install fails the run.
#   - cmake (Pingora's zlib-ng build), jq + openssl (playback-api's shell recipe),
#     curl + bash (admin-api's curl examples), node (the documents' Node/fetch snippets)
#     from Debian with apt-get;
#   - python `requests` (the documents' Python snippets) with pip;
#   - chromium (the real-player test) from Debian;
#   - redis-server (the fleet tests start a real one per test; tests/shared_state.rs) from
#     Debian, its system service left stopped (the tests never use it);
#   - prometheus (promtool checks /metrics and the shipped rules; a real prometheus server
#     evaluates the dashboard's and the rules' queries; tests/operating.rs) from Debian, its
#     system service (and the node exporter it pulls in) left stopped;
#   - systemd (systemd-analyze verify/security on the shipped unit; tests/systemd_unit.rs);
#   - logrotate (the shipped systemd/sluice.logrotate rotates a running sluice's access log;
#     tests/logs.rs) from Debian;
#   - axios (signed-channel-api's Node snippet), hls.js and playwright-core (the real-player
#     test) with npm, into tests/clients.
set -euo pipefail
cd "$(dirname "$0")/.."

have() { command -v "$1" >/dev/null 2>&1; }
need_apt=()
have cmake || need_apt+=(cmake)
have jq || need_apt+=(jq)
have openssl || need_apt+=(openssl)
have curl || need_apt+=(curl)
have python3 || need_apt+=(python3 python3-pip)
have node || need_apt+=(nodejs npm)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
have redis-server || [ -n "${REDIS_SERVER:-}" ] || need_apt+=(redis-server)
{ [ -x /usr/bin/promtool ] && [ -x /usr/bin/prometheus ]; } || need_apt+=(prometheus)
# systemd-analyze verifies the shipped unit (tests/systemd_unit.rs); the unit's own command
# lines run without systemd.
have systemd-analyze || need_apt+=(systemd)
have logrotate || [ -x /usr/sbin/logrotate ] || need_apt+=(logrotate)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "ensure-test-deps: apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
# The package starts a system instance on 6379; the tests run their own on free ports.
if [[ " ${need_apt[*]} " == *" redis-server "* ]]; then
  service redis-server stop >/dev/null 2>&1 || true
fi
# Likewise prometheus (on 9090) and its node exporter: the tests start their own.
if [[ " ${need_apt[*]} " == *" prometheus "* ]]; then
  echo "ensure-test-deps: stopping the prometheus package's system services (tests run their own)"
  service prometheus stop >/dev/null 2>&1 || true
  service prometheus-node-exporter stop >/dev/null 2>&1 || true
fi

if ! python3 -c 'import requests' 2>/dev/null; then
  echo "ensure-test-deps: installing python requests"
  python3 -m pip install -q requests 2>/dev/null \
    || python3 -m pip install -q --break-system-packages requests \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-requests; }
fi

missing_mod=""
for m in axios hls.js playwright-core shaka-player; do
  [ -d "tests/clients/node_modules/$m" ] || missing_mod="$missing_mod $m"
done
if [ -n "$missing_mod" ]; then
  echo "ensure-test-deps: npm install in tests/clients (missing:$missing_mod)"
  (cd tests/clients && npm install --no-audit --no-fund --silent)
fi
