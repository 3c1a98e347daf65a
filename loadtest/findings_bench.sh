#!/usr/bin/env bash
# Findings for a million results: time and peak RSS of `scanfleet findings` on a
# synthetic history (coordinator/tests/findings_bench.rs writes it), streamed
# (--format jsonl, csv) and sorted (--format table).
#   loadtest/findings_bench.sh [RESULTS]      (default 1000000)
# Environment:
#   SCANFLEET_BIN=PATH   the scanfleet binary to measure (default: build this tree's
#                        release binary, in ${CARGO_TARGET_DIR:-target}/release)
#   GEN_PROFILE=debug    build and run the history generator in the debug profile
#                        (default release; its time is not measured)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
TARGET="${CARGO_TARGET_DIR:-target}"
GEN_PROFILE="${GEN_PROFILE:-release}"
case "$GEN_PROFILE" in
  release) GEN_FLAGS=(--release) ;;
  debug) GEN_FLAGS=() ;;
  *) echo "findings_bench.sh: GEN_PROFILE must be release or debug" >&2; exit 2 ;;
esac
if [[ -n "${SCANFLEET_BIN:-}" ]]; then
  BIN="$SCANFLEET_BIN"
else
  cargo build --release -p scanfleet-coordinator --bin scanfleet >/dev/null
  BIN="$TARGET/release/scanfleet"
fi
[[ -x "$BIN" ]] || { echo "findings_bench.sh: $BIN is not an executable" >&2; exit 2; }
DIR="$(mktemp -d /tmp/sf-findings-bench.XXXXXX)"
trap 'rm -rf "$DIR"' EXIT
echo "binary: $BIN"
FINDINGS_BENCH_DIR="$DIR" FINDINGS_BENCH_RESULTS="$N" \
  cargo test "${GEN_FLAGS[@]}" -p scanfleet-coordinator --test findings_bench -- --ignored --nocapture 2>&1 |
  grep -E "wrote|test result"
du -sh "$DIR" | sed 's/^/history size: /'
for fmt in jsonl csv table; do
  /usr/bin/time -v "$BIN" findings sf-bench --state-dir "$DIR" --format "$fmt" \
    >"$DIR/out.$fmt" 2>"$DIR/time.$fmt" || { cat "$DIR/time.$fmt" >&2; exit 1; }
  secs=$(grep "Elapsed (wall clock)" "$DIR/time.$fmt" | awk '{print $NF}')
  rss=$(grep "Maximum resident set size" "$DIR/time.$fmt" | awk '{print $NF}')
  lines=$(wc -l <"$DIR/out.$fmt")
  echo "findings --format $fmt: $lines lines, wall $secs, peak RSS $((rss / 1024)) MB"
done
