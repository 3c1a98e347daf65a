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
"${UDP_LAB[@]}" loadtest/lab.sh up 2 && "${UDP_LAB[@]}" loadtest/lab/udp.sh up
trap 'loadtest/lab.sh down >/dev/null 2>&1 || true; "${UDP_LAB[@]}" loadtest/lab/udp.sh down >/dev/null 2>&1 || true; "${UDP_LAB[@]}" loadtest/lab.sh down >/dev/null 2>&1 || true' EXIT
export SCANFLEET_LAB=1

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "$@"
else
  cargo test --workspace --locked --no-fail-fast "$@"
fi
