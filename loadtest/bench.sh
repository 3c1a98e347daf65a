#!/usr/bin/env bash
# Side-by-side benchmark on the namespace lab: scanfleet's SYN sweep and service
# detection against nmap and masscan, same hosts, same run. Needs root.
#   loadtest/bench.sh [HOSTS] [RATE_PPS]      (defaults: 20 hosts, 50000 pps)
# Prints a table with wall time, packets/s, recall and precision against the
# lab's ground truth, peak memory and CPU, and the ratios; writes the report
# to loadtest/out/. Scan traffic stays inside the lab's namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
hosts=${1:-20}
rate=${2:-50000}
[ "$(id -u)" = 0 ] || { echo "bench: run as root (network namespaces, raw sockets)" >&2; exit 2; }
for c in nmap masscan /usr/bin/time; do
  command -v "$c" >/dev/null || { echo "bench: $c missing: run scripts/setup.sh" >&2; exit 2; }
done
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build --release --locked --bin scanfleet >&2
fi
loadtest/lab.sh up "$hosts" >&2
mkdir -p loadtest/out
exec python3 loadtest/bench.py --hosts "$hosts" --rate "$rate" --bin target/release/scanfleet
