#!/usr/bin/env bash
# Service detection benchmark on the real-daemon lab (loadtest/daemons.sh):
# in one run, scanfleet (release build) and nmap -sV (-sU -sV for the UDP
# ports) scan the same daemon hosts and ports from the lab's scanner namespace;
# both answers are compared per port with `daemons.sh truth`.
#
#   loadtest/detect_bench.sh [--record]
#   BIN=/path/to/release/scanfleet loadtest/detect_bench.sh      (no build)
#   DAEMONS_SH=/other/tree/loadtest/daemons.sh loadtest/detect_bench.sh
#
# Prints the per-port table, names/products/versions right for each tool, wall
# times and their ratio, and the issue's goals (names right >= nmap's, products
# and versions right on >= 90 % of the ports that announce them, wall <= 0.05 x
# nmap); writes it to loadtest/out/detect_bench.md, and with --record appends it
# as a section to loadtest/RESULTS.md. Needs root and the daemon lab up
# (daemons.sh up). The scanfleet binary: $BIN (or $SCANFLEET_BIN); without it,
# cargo build --release in this tree, then target/release/scanfleet (SKIP_BUILD=1
# skips the build). DAEMONS_SH: the daemons.sh of the tree that brought the lab
# up (its run directory holds the lab's manifest; only status, truth and
# inventory are called). Bounded: each tool run is killed after 1200 s.
set -euo pipefail
cd "$(dirname "$0")/.."
record=0
[[ ${1:-} == --record ]] && record=1
[[ -z ${1:-} || $record == 1 ]] || { echo "usage: loadtest/detect_bench.sh [--record]" >&2; exit 2; }
export SFLAB_PREFIX=${SFLAB_PREFIX:-sfd} SFLAB_NET=${SFLAB_NET:-10.216.0}
SF=${BIN:-${SCANFLEET_BIN:-}}
if [[ -z $SF ]]; then
    [[ -n ${SKIP_BUILD:-} ]] || cargo build --release --locked --bin scanfleet >&2
    SF=$PWD/target/release/scanfleet
fi
[[ -x $SF ]] || { echo "detect_bench: $SF missing: cargo build --release -p scanfleet-coordinator -p scanfleet-worker" >&2; exit 2; }
command -v nmap >/dev/null || { echo "detect_bench: nmap missing (scripts/setup.sh)" >&2; exit 2; }
DAEMONS_SH=${DAEMONS_SH:-loadtest/daemons.sh}
"$DAEMONS_SH" status >/dev/null || { echo "detect_bench: the daemon lab is not up ($DAEMONS_SH status): loadtest/daemons.sh up" >&2; exit 2; }

out=$PWD/loadtest/out/detect_bench
mkdir -p "$out"
# scanfleet records each scan in its history: here in the run's directory, not the machine's
export SCANFLEET_STATE_DIR=$out/state
"$DAEMONS_SH" truth >"$out/truth.jsonl"
"$DAEMONS_SH" inventory >"$out/inventory.json"
py=$(command -v python3)
ports() { "$py" -c 'import json,sys; print(",".join(str(p) for p in sorted({json.loads(l)["port"] for l in open(sys.argv[1]) if json.loads(l)["protocol"]==sys.argv[2]})))' "$out/truth.jsonl" "$1"; }
tcp=$(ports tcp),8443   # 8443: the odd host's firewalled port (must not show open)
udp=$(ports udp)
ips=$("$py" -c 'import json,sys; print(" ".join(sorted({json.loads(l)["ip"] for l in open(sys.argv[1])}, key=lambda s: int(s.rsplit(".",1)[1]))))' "$out/truth.jsonl")
ns=$SFLAB_PREFIX-scan
now() { date +%s.%N; }
el() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", b-a}'; }

udp_flag=()
if "$SF" scan --help 2>/dev/null | grep -q -- '--udp-ports'; then udp_flag=(--udp-ports "$udp"); fi

sf_cmd="ip netns exec $ns $SF scan --inventory $out/inventory.json -p $tcp --format jsonl"
echo "detect_bench: scanfleet TCP: $sf_cmd" >&2
la_sf=$(cut -d' ' -f1-3 /proc/loadavg)
t0=$(now)
timeout 1200 ip netns exec "$ns" "$SF" scan --inventory "$out/inventory.json" -p "$tcp" --format jsonl \
    >"$out/scanfleet.jsonl" 2>"$out/scanfleet.err" || { tail "$out/scanfleet.err" >&2; exit 1; }
t1=$(now)
sf_udp_cmd="(no UDP scan: this scanfleet has no --udp-ports)"
if ((${#udp_flag[@]})); then
    sf_udp_cmd="ip netns exec $ns $SF scan --inventory $out/inventory.json ${udp_flag[*]} --format jsonl"
    echo "detect_bench: scanfleet UDP: $sf_udp_cmd" >&2
    timeout 1200 ip netns exec "$ns" "$SF" scan --inventory "$out/inventory.json" "${udp_flag[@]}" --format jsonl \
        >>"$out/scanfleet.jsonl" 2>>"$out/scanfleet.err" || { tail "$out/scanfleet.err" >&2; exit 1; }
fi
t2=$(now)
# shellcheck disable=SC2086
nm_cmd="ip netns exec $ns nmap -sV -Pn -n -p $tcp -oX $out/nmap-tcp.xml $ips"
echo "detect_bench: nmap TCP: $nm_cmd" >&2
la_nm=$(cut -d' ' -f1-3 /proc/loadavg)
# shellcheck disable=SC2086
timeout 1200 ip netns exec "$ns" nmap -sV -Pn -n -p "$tcp" -oX "$out/nmap-tcp.xml" $ips >"$out/nmap-tcp.txt"
t3=$(now)
nm_udp_cmd="ip netns exec $ns nmap -sU -sV -Pn -n -p $udp -oX $out/nmap-udp.xml $ips"
echo "detect_bench: nmap UDP: $nm_udp_cmd" >&2
# shellcheck disable=SC2086
timeout 1200 ip netns exec "$ns" nmap -sU -sV -Pn -n -p "$udp" -oX "$out/nmap-udp.xml" $ips >"$out/nmap-udp.txt"
t4=$(now)

# The UDP lab (loadtest/lab/udp.sh, prefix sfu), when it is up: more UDP daemons than
# sfd's two; scanfleet -sU vs nmap -sU -sV on the same ports, states and names.
UDP_SH=${UDP_SH:-loadtest/lab/udp.sh}
udp_lab=0
if [[ -e /run/netns/sfu-scan && -e /run/netns/sfu-t1 && -e /run/netns/sfu-t2 ]] && SFLAB_PREFIX=sfu SFLAB_NET=10.218.0 SFLAB_MANIFEST=loadtest/lab/manifest-udp "$UDP_SH" truth >"$out/udp-truth.jsonl" 2>/dev/null; then
    udp_lab=1
    uports=9,53,69,123,137,161,500,514,1900,5353,11211
    uips=10.218.0.11,10.218.0.12
    sfu_cmd="ip netns exec sfu-scan $SF scan -t $uips -sU -p $uports --all-states --format jsonl"
    echo "detect_bench: UDP lab, scanfleet: $sfu_cmd" >&2
    la_sfu=$(cut -d' ' -f1-3 /proc/loadavg)
    u0=$(now)
    timeout 1200 ip netns exec sfu-scan "$SF" scan -t "$uips" -sU -p "$uports" --all-states --format jsonl \
        >"$out/sfu-scanfleet.jsonl" 2>"$out/sfu-scanfleet.err" || { tail "$out/sfu-scanfleet.err" >&2; exit 1; }
    u1=$(now)
    nmu_cmd="ip netns exec sfu-scan nmap -sU -sV -Pn -n -p $uports -oX $out/sfu-nmap.xml ${uips//,/ }"
    echo "detect_bench: UDP lab, nmap: $nmu_cmd" >&2
    la_nmu=$(cut -d' ' -f1-3 /proc/loadavg)
    # shellcheck disable=SC2086
    timeout 1200 ip netns exec sfu-scan nmap -sU -sV -Pn -n -p "$uports" -oX "$out/sfu-nmap.xml" ${uips//,/ } >"$out/sfu-nmap.txt"
    u2=$(now)
fi

sf_wall=$(el "$t0" "$t2")
nm_wall=$(el "$t2" "$t4")
{
    echo "## Service detection on real Debian daemons ($(date -u +%Y-%m-%dT%H:%MZ))"
    echo
    echo "\`loadtest/detect_bench.sh\` on the real-daemon lab (\`loadtest/daemons.sh up\`:"
    echo "$(grep -c '"daemon": "' "$out/truth.jsonl") daemon ports of 20 Debian 12 daemons on 4 hosts, plus 2 odd ports),"
    echo "from the lab's scanner namespace. Machine: $(nproc) cores shared with other work;"
    echo "scanfleet: $SF ($("$SF" --version)), benchmark scripts at commit $(git rev-parse --short HEAD); $(nmap --version | head -1)."
    echo "Load average (1/5/15 min) when scanfleet started: $la_sf; when nmap started: $la_nm."
    echo
    echo "- scanfleet: \`$sf_cmd\`; UDP: \`$sf_udp_cmd\`"
    echo "  ($(el "$t0" "$t1") s TCP, $(el "$t1" "$t2") s UDP)"
    echo "- nmap: \`$nm_cmd\`; UDP: \`$nm_udp_cmd\`"
    echo "  ($(el "$t2" "$t3") s TCP, $(el "$t3" "$t4") s UDP)"
    echo
    "$py" loadtest/detect_bench.py "$out/truth.jsonl" "$out/scanfleet.jsonl" "$out/nmap-tcp.xml" "$out/nmap-udp.xml" \
        --sf-wall "$sf_wall" --nmap-wall "$nm_wall" 2>"$out/counts.json"
    if ((udp_lab)); then
        echo
        echo "### UDP lab (sfu): scanfleet -sU vs nmap -sU -sV"
        echo
        echo "- scanfleet: \`$sfu_cmd\` ($(el "$u0" "$u1") s; load average at start $la_sfu)"
        echo "- nmap: \`$nmu_cmd\` ($(el "$u1" "$u2") s; load average at start $la_nmu)"
        echo
        "$py" loadtest/detect_udp.py "$out/udp-truth.jsonl" "$out/sfu-scanfleet.jsonl" "$out/sfu-nmap.xml" \
            --ports "$uports" --ips "$uips" --sf-wall "$(el "$u0" "$u1")" --nmap-wall "$(el "$u1" "$u2")"
    fi
} >"$out/section.md"
cat "$out/section.md"
cp "$out/section.md" loadtest/out/detect_bench.md
if ((record)); then
    { echo; cat "$out/section.md"; } >>loadtest/RESULTS.md
    echo "detect_bench: appended to loadtest/RESULTS.md" >&2
fi
