#!/usr/bin/env bash
# Fleet load test: shards/s and results/s through RabbitMQ and through SQS (moto)
# into Redis with several worker processes, next to redis-benchmark and a plain
# publish/consume baseline of the same queue, measured in the same run; peak RSS
# and CPU per worker; and a correctness check (every (ip, port) in Redis exactly
# once, no failed shard, empty dead-letter queue).
#
#   loadtest/fleet_load.sh [--workers W] [--shards S] [--target CIDR] [--ports P]
#                          [--repeat R] [--backends rabbitmq,sqs] [--amqp-messages N]
#                          [--sqs-messages N] [--timeout SECS] [--debug]
#
# Defaults: 3 workers x --concurrency 2; per backend 3 scans (the table shows the
# median) of 256 shards: 127.1.0.0/22 (1024 addresses) x ports 1-1000 = 1,024,000
# results each; 3 baselines of 20,000 messages on RabbitMQ and, on SQS, of as many
# messages as the scan has shards (moto's cost per request grows with the depth of
# the queue, so the baseline keeps the scan's depth). Each scan and each baseline
# phase is bounded by --timeout (600 s), the whole run by 8 times that plus 10 min.
# Prints a table; writes loadtest/out/fleet-load-*.md and .json. Release binaries
# (built first unless SKIP_BUILD=1); --debug uses the debug ones, for trying the
# script out only. About 2 minutes with the defaults on 2 cores.
#
# Needs RabbitMQ on 127.0.0.1:5672 (guest/guest, rabbitmqctl on this machine),
# Redis on 127.0.0.1:6379, moto_server (PyPI `moto[server]`) and redis-benchmark
# (Debian `redis-tools`, installed when missing). Nothing shared is restarted: the
# run makes its own RabbitMQ vhost sfload-<pid> and its own moto_server on a free
# port, and removes both, its workers, its queues and its Redis keys on exit.
#
# NETWORK SAFETY: workers run with the hidden --synthetic-probes flag (LOAD TESTS
# ONLY): they send no packet and make the results up. Targets must be in
# 127.0.0.0/8 all the same (the driver refuses anything else).
set -euo pipefail
cd "$(dirname "$0")/.."

workers=3 shards=256 target=127.1.0.0/22 ports=1-1000 backends=rabbitmq,sqs repeat=3
amqp_messages=20000 sqs_messages= limit=600 profile=release
argv="$*"
while [ $# -gt 0 ]; do
  case "$1" in
    --workers) workers=$2; shift 2 ;;
    --shards) shards=$2; shift 2 ;;
    --target) target=$2; shift 2 ;;
    --ports) ports=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --backends) backends=$2; shift 2 ;;
    --amqp-messages) amqp_messages=$2; shift 2 ;;
    --sqs-messages) sqs_messages=$2; shift 2 ;;
    --timeout) limit=$2; shift 2 ;;
    --debug) profile=debug; shift ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "fleet_load: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

command -v redis-benchmark >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-tools >&2; }
for c in redis-cli redis-benchmark rabbitmqctl moto_server python3 curl; do
  command -v "$c" >/dev/null || { echo "fleet_load: $c missing" >&2; exit 2; }
done
redis-cli -h 127.0.0.1 -p 6379 PING >/dev/null || { echo "fleet_load: Redis is not answering on 127.0.0.1:6379" >&2; exit 2; }

if [ "$profile" = release ] && [ -z "${SKIP_BUILD:-}" ]; then
  timeout 3600 cargo build --release --locked --bin scanfleet --bin scanfleet-worker --example queue_baseline >&2
elif [ "$profile" = debug ] && [ -z "${SKIP_BUILD:-}" ]; then
  timeout 3600 cargo build --locked --bin scanfleet --bin scanfleet-worker --example queue_baseline >&2
fi
bin=target/$profile
for b in "$bin/scanfleet" "$bin/scanfleet-worker" "$bin/examples/queue_baseline"; do
  [ -x "$b" ] || { echo "fleet_load: $b missing" >&2; exit 2; }
done

run_id=sfload-$$
vhost=$run_id
work=$(mktemp -d /tmp/sfload.XXXXXX)
pidfile=$work/workers.pids
: >"$pidfile"
moto_pid= moto_wrapper=
cleanup() {
  local rc=$?
  # Workers the driver started (it stops them itself; this is for a driver that died).
  while read -r pid; do
    if [ -n "$pid" ] && grep -qa scanfleet-worker "/proc/$pid/cmdline" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done <"$pidfile"
  if [ -n "$moto_wrapper" ]; then
    kill -TERM "$moto_wrapper" 2>/dev/null || true
    [ -n "$moto_pid" ] && kill -TERM "$moto_pid" 2>/dev/null || true
    wait "$moto_wrapper" 2>/dev/null || true
  fi
  if [[ ",$backends," == *,rabbitmq,* ]]; then
    timeout 60 rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

overall=$((limit * 8 + 600))
export SCANFLEET_JOB_SECRET=${SCANFLEET_JOB_SECRET:-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')}
backend_args=() message_args=()
moto_arg=()
if [[ ",$backends," == *,rabbitmq,* ]]; then
  timeout 60 rabbitmqctl -q add_vhost "$vhost" >/dev/null
  timeout 60 rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null
  backend_args+=(--backend "rabbitmq=amqp://guest:guest@127.0.0.1:5672/$vhost")
  message_args+=(--baseline-messages "rabbitmq=$amqp_messages")
fi
if [[ ",$backends," == *,sqs,* ]]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  timeout "$((overall + 120))" moto_server -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
  moto_wrapper=$!
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/moto-api/" >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -fs "http://127.0.0.1:$port/moto-api/" >/dev/null || { echo "fleet_load: moto_server did not start: $(tail -5 "$work/moto.log")" >&2; exit 1; }
  moto_pid=$(pgrep -P "$moto_wrapper" | head -1 || true)
  export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
  backend_args+=(--backend "sqs=sqs://$run_id-fleet")
  message_args+=(--baseline-messages "sqs=${sqs_messages:-$shards}")
  moto_arg=(--moto-pid "${moto_pid:-$moto_wrapper}")
fi
[ ${#backend_args[@]} -gt 0 ] || { echo "fleet_load: --backends: expected rabbitmq and/or sqs" >&2; exit 2; }

mkdir -p loadtest/out
timeout "$overall" python3 loadtest/fleet_load.py \
  "${backend_args[@]}" "${message_args[@]}" "${moto_arg[@]}" \
  --workers "$workers" --shards "$shards" --target "$target" --ports "$ports" --repeat "$repeat" \
  --timeout "$limit" --bin-dir "$bin" --pidfile "$pidfile" --baseline-queue-suffix=-base \
  --command "loadtest/fleet_load.sh${argv:+ $argv}"
