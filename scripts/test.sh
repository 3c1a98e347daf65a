#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and property tests, and the
# integration tests against the namespace lab (and, as they arrive, RabbitMQ,
# Redis and moto). Run as root on Debian: `sudo scripts/test.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

# Only Debian's python3 on the PATH (no pyenv or other interpreter first), so that
# this run proves setup and the tests need nothing else: Python tools come from the
# virtualenv setup.sh makes with /usr/bin/python3.
CARGO_BIN=$(dirname "$(command -v cargo)")
export PATH="$CARGO_BIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

step "setup (python3 is $(command -v python3))"
scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
cargo build --workspace --all-targets --locked

step "lab up"
loadtest/lab.sh up 6
UDP_LAB=(env SFLAB_PREFIX=sfu SFLAB_NET=10.218.0 SFLAB_MANIFEST=loadtest/lab/manifest-udp)
FINDINGS_LAB=(env SFLAB_PREFIX=sff SFLAB_NET=10.219.0 SFLAB_MANIFEST=loadtest/lab/manifest.findings-1)
trap 'loadtest/lab.sh down >/dev/null 2>&1 || true; loadtest/daemons.sh down >/dev/null 2>&1 || true; SFLAB_PREFIX=sfp SFLAB_NET=10.217.0 loadtest/lab.sh down >/dev/null 2>&1 || true; "${UDP_LAB[@]}" loadtest/lab/udp.sh down >/dev/null 2>&1 || true; "${UDP_LAB[@]}" loadtest/lab.sh down >/dev/null 2>&1 || true; "${FINDINGS_LAB[@]}" loadtest/lab.sh down >/dev/null 2>&1 || true' EXIT
loadtest/daemons.sh up  # the real-daemon lab (sfd, 10.216.0.0/24): coordinator/tests/lab_daemons.rs
# the pacing lab (sfp, 10.217.0.0/24: mixed instance types, one 20%-loss host): coordinator/tests/pacing_lab.rs
SFLAB_PREFIX=sfp SFLAB_NET=10.217.0 SFLAB_MANIFEST=loadtest/lab/manifest.pacing loadtest/lab.sh up 5
# the UDP lab (sfu, 10.218.0.0/24: real bind9, chrony, snmpd, memcached, tftpd-hpa, avahi): coordinator/tests/udp_lab.rs
"${UDP_LAB[@]}" loadtest/lab.sh up 2
"${UDP_LAB[@]}" loadtest/lab/udp.sh up
# the findings lab (sff, 10.219.0.0/24: two hosts whose services coordinator/tests/findings_e2e.rs
# changes between two scans; the test applies manifest.findings-1 and -2 itself and takes it down)
"${FINDINGS_LAB[@]}" loadtest/lab.sh up 2
export SCANFLEET_LAB=1

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "$@"
else
  cargo test --workspace --locked --no-fail-fast "$@"
fi
