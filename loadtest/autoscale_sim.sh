#!/usr/bin/env bash
# Autoscaling simulation: the scaling rule of terraform/scaling.tf (target tracking on
# backlog per instance = ApproximateNumberOfMessagesVisible / GroupInServiceInstances,
# plus the step policy that scales out from zero) applied to the depth of a REAL SQS
# queue (moto_server) during a REAL fleet scan, starting and stopping REAL
# scanfleet-worker processes (SIGTERM to scale in: they drain). Then the same scan on a
# fixed fleet of max_size workers, for comparison. Prints a table over time and the
# drain time and worker-seconds of both, and their ratio.
#
#   loadtest/autoscale_sim.sh [--max-size N] [--target-value V] [--min-size N]
#       [--from-zero-capacity N] [--scale-out-cooldown S] [--scale-in-cooldown S]
#       [--interval S] [--target CIDR] [--ports P] [--run-timeout S] [--time-limit S]
#       [--bin-dir DIR] [--runs autoscaled,fixed]
#
# Rule parameters: backlog_per_instance_target, zones.*.min_size, max_size and
# scale_from_zero_capacity are read from the defaults in terraform/variables.tf unless
# given as arguments; this script passes --max-size 4 by default (terraform's default
# is 10; this machine has 2 cores). terraform sets no cooldown or warmup, so those are
# arguments only (defaults: scale-out 0 s, scale-in 4 s, evaluation every 2 s: time
# compressed, AWS evaluates 1-minute CloudWatch datapoints).
#
# Scan (loopback only; nothing listens there, so every port is closed): 127.1.0.0/26
# x ports 1-2000, connect mode, --shard-size 1 = 64 shards. Bounded: each run
# --run-timeout (130 s), the whole script --time-limit (300 s), at most 40 worker
# launches per run. Cleans up its workers, moto_server, its queues and the Redis keys
# of its scans on exit. Needs Redis on 127.0.0.1:6379 and moto_server.
set -euo pipefail
cd "$(dirname "$0")/.."

max_size=4 time_limit=300 bin_dir=target/debug
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --max-size) max_size=$2; shift 2 ;;
    --time-limit) time_limit=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    --target)
      case "$2" in 127.*) ;; *) echo "autoscale_sim: --target must be in 127.0.0.0/8" >&2; exit 2 ;; esac
      pass+=("$1" "$2"); shift 2 ;;
    --target-value|--min-size|--from-zero-capacity|--scale-out-cooldown|--scale-in-cooldown|--interval|--ports|--run-timeout|--runs)
      pass+=("$1" "$2"); shift 2 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "autoscale_sim: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

PY=/usr/bin/python3
for c in redis-cli moto_server curl openssl "$PY"; do
  command -v "$c" >/dev/null || { echo "autoscale_sim: $c missing" >&2; exit 2; }
done
redis-cli -h 127.0.0.1 -p 6379 PING >/dev/null || { echo "autoscale_sim: Redis is not answering on 127.0.0.1:6379" >&2; exit 2; }
for b in scanfleet scanfleet-worker; do
  [ -x "$bin_dir/$b" ] || { echo "autoscale_sim: $bin_dir/$b missing (cargo build --bins)" >&2; exit 2; }
done

work=$(mktemp -d /tmp/sfsim.XXXXXX)
# Own copies of the binaries: a build running meanwhile may replace target/*.
mkdir -p "$work/bin"
cp "$bin_dir/scanfleet" "$bin_dir/scanfleet-worker" "$work/bin/"
pidfile=$work/workers.pids scanfile=$work/scans
: >"$pidfile"; : >"$scanfile"
queue=sfsim-$$
moto_pid= port=

delete_queue() { # name: SQS DeleteQueue through moto's query API
  curl -fs -o /dev/null -X POST "http://127.0.0.1:$port/" \
    -H "Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0" \
    --data-urlencode Action=DeleteQueue --data-urlencode Version=2012-11-05 \
    --data-urlencode "QueueUrl=http://127.0.0.1:$port/123456789012/$1" && echo "deleted queue $1" >&2 || true
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # Workers the driver started (it stops them itself; this is for a driver that died).
  while read -r pid; do
    if [ -n "$pid" ] && grep -qa scanfleet-worker "/proc/$pid/cmdline" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done <"$pidfile"
  sleep 0.5
  while read -r pid; do
    if [ -n "$pid" ] && grep -qa scanfleet-worker "/proc/$pid/cmdline" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done <"$pidfile"
  if [ -n "$moto_pid" ]; then
    delete_queue "$queue"; delete_queue "$queue-dlq"
    kill -TERM "$moto_pid" 2>/dev/null || true
    wait "$moto_pid" 2>/dev/null || true
  fi
  while read -r sid; do
    [ -n "$sid" ] || continue
    n=0
    while read -r key; do
      [ -n "$key" ] && redis-cli -h 127.0.0.1 -p 6379 DEL "$key" >/dev/null && n=$((n + 1))
    done < <(redis-cli -h 127.0.0.1 -p 6379 --scan --pattern "scanfleet:{$sid}*")
    echo "deleted $n Redis keys of $sid" >&2
  done <"$scanfile"
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
timeout "$((time_limit + 60))" moto_server -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$port/moto-api/" >/dev/null 2>&1 && break
  sleep 0.2
done
curl -fs "http://127.0.0.1:$port/moto-api/" >/dev/null || { echo "autoscale_sim: moto_server did not start: $(tail -5 "$work/moto.log")" >&2; exit 1; }

export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
export SCANFLEET_JOB_SECRET=$(openssl rand -hex 32)
export SCANFLEET_REDIS=redis://127.0.0.1:6379
export SCANFLEET_LOG=${SCANFLEET_LOG:-info}
echo "moto_server on 127.0.0.1:$port, queue sqs://$queue, binaries $bin_dir ($(sha256sum "$work/bin/scanfleet-worker" | cut -c1-12))"
timeout 60 "$work/bin/scanfleet" queues init --queue "sqs://$queue"

timeout "$time_limit" "$PY" loadtest/autoscale_sim.py \
  --endpoint "$AWS_ENDPOINT_URL" --queue-name "$queue" --bin-dir "$work/bin" --work "$work" \
  --pidfile "$pidfile" --scanfile "$scanfile" --tf-dir terraform --max-size "$max_size" "${pass[@]}"
