#!/usr/bin/env bash
# Installs what the test suite needs and is missing, saying what it installs.
# Nothing is skipped silently: a failed install fails the run.
#   - cmake (Pingora's zlib-ng build), jq + openssl (playback-api's shell recipe),
#     curl + bash (admin-api's curl examples), node (the documents' Node/fetch snippets)
#     from Debian with apt-get;
#   - python `requests` (the documents' Python snippets) with pip;
#   - axios (signed-channel-api's Node snippet) with npm, into tests/clients.
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
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "ensure-test-deps: apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

if ! python3 -c 'import requests' 2>/dev/null; then
  echo "ensure-test-deps: installing python requests"
  python3 -m pip install -q requests 2>/dev/null \
    || python3 -m pip install -q --break-system-packages requests \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-requests; }
fi

if [ -f tests/clients/package.json ] && [ ! -d tests/clients/node_modules/axios ]; then
  echo "ensure-test-deps: npm install (axios) in tests/clients"
  (cd tests/clients && npm install --no-audit --no-fund --silent)
fi
