#!/usr/bin/env bash
# Run every cargo-fuzz target in fuzz/ for SECONDS each, bounded.
#
#   scripts/fuzz.sh SECONDS            # all targets
#   FUZZ_TARGETS="envelope port_spec" scripts/fuzz.sh 60
#
# Installs cargo-fuzz from crates.io when it is missing. libFuzzer builds need
# nightly compiler features; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept
# them, so no nightly toolchain is needed. Built without a sanitizer (`-s none`):
# the decoders are safe Rust, and ASan would only halve the executions; debug
# assertions and overflow checks stay on (cargo-fuzz's default).
#
# Corpora grow in fuzz/corpus/TARGET (gitignored) from fuzz/seeds/TARGET;
# crashes land in fuzz/artifacts/TARGET. Each run appends one line per target to
# fuzz/corpus/history.tsv (date, target, seconds, executions, result), from which
# the running totals in loadtest/RESULTS.md are added up.
#
# Prints per target the executions and whether a crash (panic, overflow, OOM,
# per-input timeout, or the whole run hanging past its bound) was found; exits 1
# when any target crashed, 2 on a usage or build error.
set -euo pipefail

usage() {
    echo "usage: $0 SECONDS   (each fuzz target runs for SECONDS)" >&2
    exit 2
}
[[ $# -eq 1 && $1 =~ ^[1-9][0-9]*$ ]] || usage
secs=$1

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/fuzz"
export RUSTC_BOOTSTRAP=1
# Per-input limits: one input taking 10 s is a hang; 2 GiB of RSS is an OOM.
per_input_timeout=10
rss_limit_mb=2048
# The whole run of one target: its time, plus room to load the corpus and exit.
hard_limit=$((secs + 60))

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

echo "== building fuzz targets"
build_start=$(date +%s)
cargo fuzz build -s none || { echo "fuzz build failed" >&2; exit 2; }
echo "   built in $(($(date +%s) - build_start)) s"
bin_dir=target/$(rustc -vV | sed -n 's/^host: //p')/release

if [[ -n ${FUZZ_TARGETS:-} ]]; then
    read -r -a targets <<<"$FUZZ_TARGETS"
else
    mapfile -t targets < <(cargo fuzz list)
fi

mkdir -p corpus logs
rm -f logs/*.log
stamp=$(date -u +%Y-%m-%dT%H:%M:%SZ)
failed=()
total_execs=0
printf '%-16s %14s %10s  %s\n' target executions exec/s result
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    seeds=()
    [[ -d seeds/$t ]] && seeds=("seeds/$t")
    log="logs/$t.log"
    rc=0
    # The binary built above, not `cargo fuzz run`: that would rebuild (and eat
    # the time bound) whenever a source in the shared tree changed meanwhile.
    timeout -k 10 "$hard_limit" \
        "$bin_dir/$t" -artifact_prefix="artifacts/$t/" \
        -max_total_time="$secs" -timeout="$per_input_timeout" \
        -rss_limit_mb="$rss_limit_mb" -print_final_stats=1 \
        "corpus/$t" "${seeds[@]}" >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    execs=${execs:-0}
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
        result="HANG (run killed after ${hard_limit} s)"
    elif [[ $rc -ne 0 ]]; then
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        kind=$(grep -m1 -oE 'deadly signal|panicked at|out-of-memory|timeout after|ERROR: libFuzzer: [a-z-]+' "$log" || true)
        result="CRASH (${kind:-exit $rc}) ${artifact:-see fuzz/$log}"
    else
        result="ok, no crash"
    fi
    [[ $result == ok* ]] || failed+=("$t")
    printf '%-16s %14s %10s  %s\n' "$t" "$execs" "${speed:-?}" "$result"
    printf '%s\t%s\t%s\t%s\t%s\n' "$stamp" "$t" "$secs" "$execs" "${result%% *}" >>corpus/history.tsv
    total_execs=$((total_execs + execs))
done
echo "== $total_execs executions in ${#targets[@]} targets, ${#failed[@]} crashed${failed:+: ${failed[*]}}"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "   logs in fuzz/logs/, reproduce with: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none TARGET artifacts/TARGET/FILE" >&2
    exit 1
fi
