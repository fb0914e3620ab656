#!/usr/bin/env bash
# Installs what the test suite needs and is missing, saying what it installs.
# Debian packages via apt-get (root); nothing is skipped silently: a failed install fails.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }
have cmake || need_apt+=(cmake)

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "ensure-test-deps: installing ${need_apt[*]} with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
