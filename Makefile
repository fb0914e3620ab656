# The two commands: `make run` (sluice on conf/sluice.yaml) and `make test` (the whole suite).
# Each first installs what is missing on a fresh Debian machine (as root, via apt-get).

SHELL := /bin/bash
APT_PACKAGES_BUILD := cmake

.PHONY: run test deps test-deps bench bench-gated release

deps:
	@missing=""; for p in $(APT_PACKAGES_BUILD); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "make: installing$$missing (Pingora's zlib-ng build needs cmake)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

test-deps: deps
	@bash scripts/ensure-test-deps.sh

# The commit goes into sluice_build_info{commit} (README "Operating sluice").
release: deps
	SLUICE_BUILD_COMMIT=$$(git rev-parse --short=12 HEAD 2>/dev/null) cargo build --release

run: release
	./target/release/sluice serve -c conf/sluice.yaml

# The suite twice: sluice in the foreground, then every integration test again with sluice
# as the daemon the shipped systemd unit runs (server.daemon: true; tests/common Mode).
test: test-deps
	cargo test --no-fail-fast
	SLUICE_TEST_MODE=daemon cargo test --no-fail-fast --test '*'

# Cache hits vs nginx (playlist, 16 KB, 60 KB part, ... 2 MB), the ctx path (/api/proxy; vs
# mediaflow-proxy-light when MEDIAFLOW_BIN names its binary), then gated hits vs ungated.
bench: deps
	bash benches/load/run.sh
	bash benches/load/gated.sh

# The gated hit path on one node vs a Redis fleet node (README "Running a fleet").
bench-gated: deps
	bash benches/load/gated.sh
