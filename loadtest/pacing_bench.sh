#!/usr/bin/env bash
# Pacing benchmark (issue 10) on the pacing lab (prefix sfp, 10.217.0.11-15, built by
#   SFLAB_PREFIX=sfp SFLAB_NET=10.217.0 SFLAB_MANIFEST=loadtest/lab/manifest.pacing loadtest/lab.sh up 5
# and left up; this script never brings a lab up or down). In one run, all inside the
# sfp-scan namespace against 10.217.0.11-15:
#   scanfleet scan --inventory INV -p- --mode syn --no-service-detection   (default pacing:
#       the inventory carries the instance types, budgets come from data/instance-network.csv)
#   nmap -n -Pn -sS -p- --min-rate RATE
#   masscan -p0-65535 --rate RATE --wait 2 (with the veth's adapter and router MACs)
# Prints wall times, recall/precision against `lab.sh truth`, the ratios
# scanfleet/nmap and scanfleet/masscan, and per target the max packets/s measured on the
# target side (nftables counter scanner_rx, sampled every second) against the target's
# budget and ceiling. Writes the report to loadtest/out/pacing-bench-*.md.
#
#   loadtest/pacing_bench.sh [RATE]          (default RATE 5000)
#   BIN=/path/to/release/scanfleet loadtest/pacing_bench.sh   (no build; else
#       cargo build --release in this tree, unless SKIP_BUILD=1 with target/release present)
# Needs root, nmap, masscan.
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-5000}
[[ $rate =~ ^[0-9]+$ ]] || { echo "usage: loadtest/pacing_bench.sh [RATE]" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "pacing_bench: run as root (network namespaces, raw sockets)" >&2; exit 2; }
for c in nmap masscan nft; do
  command -v "$c" >/dev/null || { echo "pacing_bench: $c missing: run scripts/setup.sh" >&2; exit 2; }
done
if [[ -z ${BIN:-} ]]; then
  BIN=$PWD/target/release/scanfleet
  [[ -n ${SKIP_BUILD:-} ]] || cargo build --release --locked --bin scanfleet >&2
fi
[[ -x $BIN ]] || { echo "pacing_bench: $BIN missing" >&2; exit 2; }
for ns in sfp-scan sfp-br sfp-t1 sfp-t2 sfp-t3 sfp-t4 sfp-t5; do
  [[ -e /run/netns/$ns ]] || { echo "pacing_bench: namespace $ns missing: bring the pacing lab up (see the header)" >&2; exit 2; }
done
exec python3 loadtest/pacing_bench.py --bin "$BIN" --rate "$rate"
