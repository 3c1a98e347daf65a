#!/usr/bin/env bash
# Recall under loss (issue 10) on the pacing lab (prefix sfp; see loadtest/pacing_bench.sh
# for how it is brought up; this script never brings a lab up or down): RUNS full SYN
# sweeps (-p-, default settings) of the host that drops 20 % of the scanner's packets
# (manifest.pacing host 5, c5.large, 10.217.0.15), embedded, then RUNS in a three-worker
# RabbitMQ fleet (own vhost on 127.0.0.1:5672, Redis 127.0.0.1:6379, workers inside
# sfp-scan) where the busy worker is killed with kill -9 mid-scan in every run. Prints
# per run the open ports found, and per mode how many runs found all of them. Removes
# its vhost, its scans' Redis keys, the relays it started and its processes at the end.
#
#   loadtest/recall.sh [RUNS] [MODES]       (defaults: 20 embedded,fleet)
#   BIN=.../scanfleet WORKER_BIN=.../scanfleet-worker loadtest/recall.sh   (no build;
#       else cargo build --release in this tree, unless SKIP_BUILD=1)
# Needs root, rabbitmqctl, redis-cli, socat. Writes loadtest/out/recall-*.md.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
modes=${2:-embedded,fleet}
[[ $runs =~ ^[0-9]+$ ]] && ((runs >= 1 && runs <= 50)) || { echo "usage: loadtest/recall.sh [RUNS 1-50] [embedded,fleet]" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "recall: run as root (network namespaces, raw sockets)" >&2; exit 2; }
for c in rabbitmqctl redis-cli socat nft; do
  command -v "$c" >/dev/null || { echo "recall: $c missing: run scripts/setup.sh" >&2; exit 2; }
done
if [[ -z ${BIN:-} || -z ${WORKER_BIN:-} ]]; then
  [[ -n ${SKIP_BUILD:-} ]] || cargo build --release --locked -p scanfleet-coordinator -p scanfleet-worker >&2
  BIN=${BIN:-$PWD/target/release/scanfleet}
  WORKER_BIN=${WORKER_BIN:-$PWD/target/release/scanfleet-worker}
fi
[[ -x $BIN && -x $WORKER_BIN ]] || { echo "recall: $BIN or $WORKER_BIN missing" >&2; exit 2; }
for ns in sfp-scan sfp-t5; do
  [[ -e /run/netns/$ns ]] || { echo "recall: namespace $ns missing: bring the pacing lab up" >&2; exit 2; }
done
exec timeout 3000 python3 loadtest/recall.py --bin "$BIN" --worker-bin "$WORKER_BIN" --runs "$runs" --modes "$modes"
