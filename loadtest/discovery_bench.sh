#!/usr/bin/env bash
# Discovery benchmark through moto's server: an organization of ACCOUNTS member
# accounts with instances in two regions each is seeded through the AWS SDK,
# then discovered end to end (ListAccounts, AssumeRole per account, every
# Describe call per account-region) at each concurrency level.
#   loadtest/discovery_bench.sh [ACCOUNTS] [CONCURRENCY,...]   (defaults: 1000, 16,64)
# Prints a table with wall time and API calls (requests, and attempts including
# retries); writes it to loadtest/out/discovery_bench.md. The test behind it is
# coordinator/tests/aws_bench.rs; it starts its own moto_server on a free port.
set -euo pipefail
cd "$(dirname "$0")/.."
accounts=${1:-1000}
concurrency=${2:-16,64}
command -v "${SCANFLEET_MOTO_SERVER:-moto_server}" >/dev/null || {
  echo "discovery_bench: moto_server missing: pip install 'moto[server]' (or set SCANFLEET_MOTO_SERVER)" >&2
  exit 2
}
mkdir -p loadtest/out
out=loadtest/out/discovery_bench.md
{
  echo "# Discovery benchmark ($(date -u +%Y-%m-%dT%H:%MZ))"
  echo
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo);" \
    "moto $(python3 -c 'import moto; print(moto.__version__)' 2>/dev/null || echo '?');" \
    "debug build of scanfleet-coordinator."
  echo
} >"$out"
SCANFLEET_BENCH_ACCOUNTS=$accounts \
SCANFLEET_BENCH_CONCURRENCY=$concurrency \
SCANFLEET_BENCH_OUT=$PWD/$out.table \
  cargo test -p scanfleet-coordinator --test aws_bench -- --ignored --nocapture discovery_benchmark >&2
cat "$out.table" >>"$out"
rm -f "$out.table"
cat "$out"
