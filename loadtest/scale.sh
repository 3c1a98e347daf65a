#!/usr/bin/env bash
# Scale simulation (issue 14): a synthetic estate of 10,000 accounts x 3 regions
# (loadtest/scale_sim.py) through scope, zones, planning and publishing to RabbitMQ
# (a vhost of its own on 127.0.0.1:5672) and to SQS (moto's server), with the
# release coordinator in fleet mode, detached: no worker runs, nothing is probed.
# For 20,000 and 200,000 targets: wall time and peak memory of the whole publish
# path, shards and messages on the queue, and the 200k/20k ratios.
#   loadtest/scale.sh            (needs root for rabbitmqctl; builds release unless SKIP_BUILD=1)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "scale: run as root (rabbitmqctl)" >&2; exit 2; }
BIN=${BIN:-target/release/scanfleet}
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --locked --bin scanfleet >&2
VENV=/opt/scanfleet/venv
export SCANFLEET_JOB_SECRET=scale-sim-secret-0123456789abcdef0123
tmp=$(mktemp -d)
vhost=sfscale-$$
moto_pid=
cleanup() {
  rabbitmqctl delete_vhost "$vhost" >/dev/null 2>&1 || true
  [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null || true
  for id in $(cat "$tmp"/ids 2>/dev/null); do
    redis-cli --scan --pattern "scanfleet:{$id}:*" | xargs -r redis-cli del >/dev/null
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
rabbitmqctl add_vhost "$vhost" >/dev/null
rabbitmqctl set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null
moto_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$tmp/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 50); do curl -s "http://127.0.0.1:$moto_port" >/dev/null && break; sleep 0.2; done

run() { # label N queue-url [env...]
  local label=$1 n=$2 q=$3; shift 3
  local out="$tmp/$label-$n"
  env "$@" /usr/bin/time -v "$BIN" scan --inventory "$tmp/inv-$n.json" -p 1-100 \
    --queue "$q" --redis redis://127.0.0.1:6379 --detach --progress never --max-targets 1000000 \
    >"$out.id" 2>"$out.err" || { cat "$out.err" >&2; exit 1; }
  cat "$out.id" >>"$tmp/ids"
  local wall rss shards
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$out.err")
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$out.err")
  shards=$(grep -o '[0-9]* shards published for [0-9]* targets' "$out.err" | head -1)
  printf '%-9s %7d  wall %-8s  peak %6d MB  %s\n' "$label" "$n" "$wall" $((rss / 1024)) "$shards"
  echo "$label $n $wall $rss" >>"$tmp/figures"
}

echo "scale: generating estates" >&2
for n in 20000 200000; do python3 loadtest/scale_sim.py "$n" >"$tmp/inv-$n.json"; done
printf '%-9s %7s  %s\n' stage targets "figures (scanfleet scan --detach: load, scope, zones, plan, publish)"
for n in 20000 200000; do
  run rabbitmq "$n" "amqp://guest:guest@127.0.0.1:5672/$vhost"
  run sqs "$n" "sqs://sfscale-$n" AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port" \
    AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
done
echo
echo "messages on RabbitMQ: $(rabbitmqctl list_queues -q -p "$vhost" name messages | awk '$1 !~ /dead/ {s+=$2} END {print s}')"
python3 - "$tmp/figures" <<'PY'
import sys
def secs(w):
    p = [float(x) for x in w.split(":")]
    return sum(v * 60 ** i for i, v in enumerate(reversed(p)))
f = {}
for line in open(sys.argv[1]):
    label, n, wall, rss = line.split()
    f[(label, int(n))] = (secs(wall), int(rss))
for label in ("rabbitmq", "sqs"):
    a, b = f[(label, 20000)], f[(label, 200000)]
    print(f"{label}: 200k/20k wall {b[0] / max(a[0], 0.01):.1f}x, peak memory {b[1] / a[1]:.1f}x (linear: 10x)")
PY
