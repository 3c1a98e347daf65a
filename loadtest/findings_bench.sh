#!/usr/bin/env bash
# Findings for a million results: time and peak RSS of `scanfleet findings` on a
# synthetic history (coordinator/tests/findings_bench.rs writes it), streamed
# (--format jsonl, csv) and sorted (--format table), in release builds.
#   loadtest/findings_bench.sh [RESULTS]      (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
DIR="$(mktemp -d /tmp/sf-findings-bench.XXXXXX)"
trap 'rm -rf "$DIR"' EXIT
cargo build --release -p scanfleet-coordinator --bin scanfleet >/dev/null
FINDINGS_BENCH_DIR="$DIR" FINDINGS_BENCH_RESULTS="$N" \
  cargo test --release -p scanfleet-coordinator --test findings_bench -- --ignored --nocapture 2>&1 | grep -E "wrote|test result"
du -sh "$DIR" | sed 's/^/history size: /'
for fmt in jsonl csv table; do
  /usr/bin/time -v target/release/scanfleet findings sf-bench --state-dir "$DIR" --format "$fmt" \
    >"$DIR/out.$fmt" 2>"$DIR/time.$fmt"
  secs=$(grep "Elapsed (wall clock)" "$DIR/time.$fmt" | awk '{print $NF}')
  rss=$(grep "Maximum resident set size" "$DIR/time.$fmt" | awk '{print $NF}')
  lines=$(wc -l <"$DIR/out.$fmt")
  echo "findings --format $fmt: $lines lines, wall $secs, peak RSS $((rss / 1024)) MB"
done
