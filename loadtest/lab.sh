#!/usr/bin/env bash
# scanfleet network-namespace test lab. See loadtest/lab/README.md.
#
#   lab.sh up N              build/repair the lab with exactly N target hosts
#   lab.sh down [--purge]    stop the lab's recorded processes, delete its namespaces
#   lab.sh status            exit 0 iff the lab is up and every manifest service listens
#   lab.sh inventory         JSON array of assets (scanfleet inventory format)
#   lab.sh truth [--all]     ground truth, JSON lines (open ports; --all adds closed/filtered)
#   lab.sh exec -- CMD...    run CMD in the scanner namespace
#   lab.sh packets I [--reset]   packets target I received from the scanner 10.213.0.2
#   lab.sh relay PORT        expose the host's 127.0.0.1:PORT at 127.0.0.1:PORT in the scanner ns
#   lab.sh relay-stop PORT   stop that relay
#
# Safety: the lab only ever creates namespaces named sflab-*, veth pairs
# between them and a bridge inside sflab-br. Nothing here configures an
# interface, route, sysctl or firewall of the host's own namespace; every
# `ip` call is `ip -n <lab ns>` or `ip netns ...`.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB=$HERE/lab
# A second, separate lab (own namespaces, subnet and run directory) for work that
# must not disturb the standard one: SFLAB_PREFIX=sfx SFLAB_NET=10.215.0 lab.sh up 2.
PREFIX=${SFLAB_PREFIX:-sflab}
[[ $PREFIX =~ ^sf[a-z0-9]{1,4}$ ]] || { echo "lab.sh: SFLAB_PREFIX must be sf plus 1-4 of [a-z0-9]" >&2; exit 1; }
export SFLAB_NET=${SFLAB_NET:-10.213.0}
[[ $SFLAB_NET =~ ^10\.2(1[3-9]|2[0-9])\.0$ ]] || { echo "lab.sh: SFLAB_NET must be 10.213.0 .. 10.229.0" >&2; exit 1; }
if [[ $PREFIX == sflab ]]; then RUN=$LAB/run; else RUN=$LAB/run-$PREFIX; fi
MANIFEST=${SFLAB_MANIFEST:-$LAB/manifest}
SERVICES=$LAB/services.py
LOCK=$RUN/lab.lock
STATE=$RUN/state

NS_BR=$PREFIX-br
NS_SCAN=$PREFIX-scan
NS_T=$PREFIX-t
NET=$SFLAB_NET
BR_IP=$NET.1
SCAN_IP=$NET.2
MAXN=244
# MACs mirror the IPv4 address: 02:53:46:4c:00:<last octet> for the lab end
# (br0, the scanner's and the targets' eth0), 02:53:46:4c:01:<octet> for the
# bridge-side veth ports.
MAC_PREFIX=02:53:46:4c

die() { echo "lab.sh: $*" >&2; exit 1; }
say() { echo "lab.sh: $*" >&2; }

PY=
# resolve the interpreter once (python3 may be a pyenv shim): the services
# process then is the python process itself and its command line is stable
resolve_py() { PY=$(python3 -c 'import sys; print(sys.executable)') && [[ -x $PY ]] || die "python3 not found"; }
py() { "$PY" "$SERVICES" --manifest "$MANIFEST" "$@"; }

ns_exists() { [[ -e /run/netns/$1 ]] && ip netns exec "$1" true 2>/dev/null; }
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
mac() { printf '%s:%02x:%02x' "$MAC_PREFIX" "$1" "$2"; }

lock() {  # lock ex|sh
    mkdir -p "$RUN"
    exec 9>>"$LOCK"
    local mode=-x
    [[ $1 == sh ]] && mode=-s
    flock "$mode" -w 600 9 || die "could not lock $LOCK"
}

# target indices whose namespace exists, ascending
up_targets() {
    local f
    for f in /run/netns/"$NS_T"*; do
        [[ -e $f ]] || continue
        f=${f##*/"$NS_T"}
        [[ $f =~ ^[0-9]+$ ]] && echo "$f"
    done | sort -n
}

# ---------------------------------------------------------------- processes

# alive PID: exists and is not a zombie
alive() {
    local st
    [[ -r /proc/$1/stat ]] || return 1
    st=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) || return 1
    [[ $st != Z ]]
}

# ours PIDFILE EXPECT [NS]: pidfile names a live process whose command line
# contains EXPECT (and that lives in namespace NS, if given)
ours() {
    local pidf=$1 expect=$2 ns=${3:-} pid cmd
    [[ -s $pidf ]] || return 1
    pid=$(tr -dc 0-9 <"$pidf")
    [[ -n $pid ]] && alive "$pid" || return 1
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmd == *"$expect"* ]] || return 1
    if [[ -n $ns && -e /run/netns/$ns ]]; then
        [[ $(stat -L -c %i "/proc/$pid/ns/net" 2>/dev/null) == $(stat -L -c %i "/run/netns/$ns") ]] || return 1
    fi
    echo "$pid"
}

# stop_pidfile PIDFILE EXPECT NS group|single: TERM (the process group if it
# leads one), wait, KILL; only ever the recorded, verified pid
stop_pidfile() {
    local pidf=$1 expect=$2 ns=$3 how=$4 pid target k
    if pid=$(ours "$pidf" "$expect" "$ns"); then
        target=$pid
        if [[ $how == group && $(ps -o pgid= -p "$pid" | tr -d ' ') == "$pid" ]]; then
            target=-$pid
        fi
        kill -TERM -- "$target" 2>/dev/null || true
        for ((k = 0; k < 50; k++)); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            say "pid $pid ($expect) ignored TERM, sending KILL"
            kill -KILL -- "$target" 2>/dev/null || true
        fi
    fi
    rm -f "$pidf"
}

# wait_listen NS IP PORT...: until every IP:PORT listens in NS (10 s)
wait_listen() {
    local ns=$1 ip=$2 k p missing
    shift 2
    for ((k = 0; k < 100; k++)); do
        missing=
        local listening
        listening=$(nsx "$ns" ss -Htln 2>/dev/null | awk '{print $4}')
        for p in "$@"; do
            grep -qx -- "$ip:$p" <<<"$listening" || missing+=" $p"
        done
        [[ -z $missing ]] && return 0
        sleep 0.1
    done
    say "$ns: not listening on$missing"
    return 1
}

# ---------------------------------------------------------------- building

ensure_ns() {
    local ns=$1
    if [[ -e /run/netns/$ns ]] && ! ip netns exec "$ns" true 2>/dev/null; then
        ip netns delete "$ns" 2>/dev/null || rm -f "/run/netns/$ns"
    fi
    if [[ ! -e /run/netns/$ns ]]; then
        ip netns add "$ns"
    fi
    # no IPv6 at all in the lab: no RA, DAD, MLD or link-local chatter
    if [[ -e /proc/sys/net/ipv6 ]]; then
        nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    fi
    ip -n "$ns" link set lo up
}

ensure_bridge() {
    ensure_ns "$NS_BR"
    nsx "$NS_BR" sysctl -qw net.ipv4.ip_forward=0 net.ipv4.conf.all.forwarding=0 net.ipv4.conf.default.forwarding=0
    if ! ip -n "$NS_BR" link show br0 >/dev/null 2>&1; then
        ip -n "$NS_BR" link add br0 address "$(mac 0 1)" type bridge stp_state 0
    fi
    ip -n "$NS_BR" addr replace "$BR_IP/24" dev br0
    ip -n "$NS_BR" link set br0 up
}

# ensure_link NS OCTET BRPORT: veth eth0 in NS <-> BRPORT on br0, address .OCTET
ensure_link() {
    local ns=$1 octet=$2 port=$3
    if ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
        ip -n "$NS_BR" link del "$port" 2>/dev/null || true
        ip -n "$NS_BR" link add "$port" address "$(mac 1 "$octet")" type veth \
            peer name eth0 address "$(mac 0 "$octet")" netns "$ns"
    fi
    ip -n "$NS_BR" link set "$port" master br0 up
    ip -n "$ns" addr replace "$NET.$octet/24" dev eth0
    ip -n "$ns" link set eth0 up
}

# apply_nft NS FILE [FAMILY]: load FILE (an atomic replace of table FAMILY
# sflab, default ip) unless it is what is loaded already, so re-running `up`
# keeps the counters
apply_nft() {
    local ns=$1 file=$2 fam=${3:-ip} applied=$2.applied
    if [[ -f $applied ]] && cmp -s "$file" "$applied" && nsx "$ns" nft list table "$fam" sflab >/dev/null 2>&1; then
        return 0
    fi
    nsx "$ns" nft -f "$file"
    cp "$file" "$applied"
}

ensure_scanner() {
    ensure_ns "$NS_SCAN"
    ensure_link "$NS_SCAN" 2 p-scan
    # masscan wants a router MAC; 10.213.0.1 (sflab-br) has ip_forward=0, so
    # off-link packets die there.
    ip -n "$NS_SCAN" route replace default via "$BR_IP" dev eth0
    nsx "$NS_SCAN" sysctl -qw \
        net.ipv4.ip_local_port_range="1024 60999" \
        net.ipv4.tcp_tw_reuse=1 \
        net.ipv4.tcp_fin_timeout=15 \
        net.core.somaxconn=4096 \
        net.ipv4.tcp_max_syn_backlog=4096 \
        net.ipv4.tcp_rmem="4096 131072 67108864" \
        net.ipv4.tcp_wmem="4096 65536 67108864" \
        net.ipv4.ping_group_range="0 2147483647"
    # net.core.[rw]mem_max/_default are read-only outside the initial netns on
    # this kernel (they mirror the host's values); the lab does not change the
    # host's. Try anyway for kernels where they are per-netns writable.
    nsx "$NS_SCAN" sysctl -qw net.core.rmem_max=67108864 net.core.wmem_max=67108864 >/dev/null 2>&1 || true
    local f=$RUN/scan/nft.conf
    mkdir -p "$RUN/scan"
    cat >"$f.tmp" <<EOF
# generated by lab.sh: a belt on top of the topology, the scanner's own
# sockets may only talk to the lab subnet and loopback (raw-packet tools such
# as masscan bypass this; for them the bridge namespace is the dead end)
table ip sflab
delete table ip sflab
table ip sflab {
	chain output {
		type filter hook output priority filter; policy accept;
		ip daddr != { $NET.0/24, 127.0.0.0/8 } counter drop comment "off-lab"
	}
}
EOF
    mv "$f.tmp" "$f"
    apply_nft "$NS_SCAN" "$f"
}

# ensure_bridge_l2 N: make frames the scanner sends to its router MAC (br0's)
# reach the target anyway. masscan (and any raw-packet scanner that uses the
# gateway's MAC for every destination) would otherwise have all its probes
# end at br0, where ip_forward=0 drops them. This is a pure L2 rewrite in
# the bridge's prerouting hook: destination MAC br0 -> the target's MAC, only
# for frames from p-scan to the lab's target addresses; no IP routing, no TTL
# change, no address translation. Addresses without a target stay unmatched
# (and die at br0 as before).
ensure_bridge_l2() {
    local n=$1 i elems=
    for ((i = 1; i <= n; i++)); do
        elems+="${elems:+, }$NET.$((10 + i)) : $(mac 0 $((10 + i)))"
    done
    local f=$RUN/br/nft.conf
    mkdir -p "$RUN/br"
    {
        echo "# generated by lab.sh up $n: see ensure_bridge_l2 in lab.sh"
        echo "table bridge sflab"
        echo "delete table bridge sflab"
        echo "table bridge sflab {"
        echo "	map router_to_target {"
        echo "		type ipv4_addr : ether_addr"
        echo "		elements = { $elems }"
        echo "	}"
        echo "	chain prerouting {"
        echo "		type filter hook prerouting priority filter; policy accept;"
        echo "		iifname \"p-scan\" ether daddr $(mac 0 1) ip daddr != $BR_IP counter ether daddr set ip daddr map @router_to_target comment \"router-MAC probes (masscan) -> target MAC\""
        echo "	}"
        echo "}"
    } >"$f.tmp"
    mv "$f.tmp" "$f"
    apply_nft "$NS_BR" "$f" bridge
}

ensure_cert() {
    local i=$1 dir=$RUN/t$1/tls
    [[ -s $dir/cert.pem && -s $dir/key.pem ]] && return 0
    mkdir -p "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 825 \
        -keyout "$dir/key.pem.tmp" -out "$dir/cert.pem.tmp" \
        -subj "/CN=lab-t$i.scanfleet.test/O=scanfleet lab" \
        -addext "subjectAltName=DNS:lab-t$i.scanfleet.test,IP:$NET.$((10 + i))" \
        -addext "basicConstraints=critical,CA:FALSE" \
        -addext "extendedKeyUsage=serverAuth" >/dev/null 2>&1 || die "openssl failed for t$i"
    chmod 600 "$dir/key.pem.tmp"
    mv "$dir/key.pem.tmp" "$dir/key.pem"
    mv "$dir/cert.pem.tmp" "$dir/cert.pem"
}

# what the command line of host I's services process contains (whatever manifest it was started with)
services_expect() { echo " serve --index $1 --run-dir $RUN/t$1 "; }

# ensure_services I IP PYPORTS SIG: the services.py process of host I
ensure_services() {
    local i=$1 ip=$2 ports=$3 sig=$4 ns=$NS_T$1 dir=$RUN/t$1
    local pidf=$dir/services.pid expect
    expect=$(services_expect "$i")
    if [[ $ports == - ]]; then
        stop_pidfile "$pidf" "$expect" "$ns" group
        return 0
    fi
    if ours "$pidf" "$expect" "$ns" >/dev/null; then
        [[ -f $dir/services.sig && $(<"$dir/services.sig") == "$sig" ]] && return 0
        say "t$i: services changed in the manifest, restarting"
        stop_pidfile "$pidf" "$expect" "$ns" group
    fi
    rm -f "$pidf"
    (exec setsid ip netns exec "$ns" "$PY" "$SERVICES" --manifest "$MANIFEST" serve --index "$i" \
        --run-dir "$dir" --pidfile "$pidf") </dev/null >>"$dir/services.log" 2>&1 9>&- &
    local launched=$! k
    for ((k = 0; k < 200; k++)); do
        [[ -s $pidf && $(tr -dc 0-9 <"$pidf") == "$launched" ]] && break
        if ! alive "$launched"; then
            tail -n 20 "$dir/services.log" >&2 || true
            die "t$i: services.py exited during start (log: $dir/services.log)"
        fi
        sleep 0.05
    done
    [[ -s $pidf ]] || die "t$i: services.py did not become ready (log: $dir/services.log)"
    echo "$sig" >"$dir/services.sig"
}

# ensure_redis I IP PORTS: one redis-server per redis port of host I
ensure_redis() {
    local i=$1 ip=$2 ports=$3 ns=$NS_T$1 dir=$RUN/t$1 p f keep
    # stop redis instances the manifest no longer lists
    for f in "$dir"/redis-*.pid; do
        [[ -e $f ]] || continue
        p=${f##*/redis-}
        p=${p%.pid}
        keep=0
        [[ $ports != - && ,$ports, == *,$p,* ]] && keep=1
        if ((!keep)); then
            stop_pidfile "$f" "redis-server $ip:$p" "$ns" single
            rm -rf "${dir:?}/redis-$p" "$dir/redis-$p.log"
        fi
    done
    [[ $ports == - ]] && return 0
    local IFS=,
    for p in $ports; do
        f=$dir/redis-$p.pid
        ours "$f" "redis-server $ip:$p" "$ns" >/dev/null && continue
        rm -f "$f"
        mkdir -p "$dir/redis-$p"
        nsx "$ns" redis-server --bind "$ip" --port "$p" --protected-mode no \
            --save "" --appendonly no --daemonize yes \
            --pidfile "$f" --dir "$dir/redis-$p" --logfile "$dir/redis-$p.log" \
            --maxmemory 64mb --maxmemory-policy allkeys-lru 9>&- </dev/null >/dev/null
        local k
        for ((k = 0; k < 100; k++)); do
            ours "$f" "redis-server $ip:$p" "$ns" >/dev/null && break
            sleep 0.05
        done
        ours "$f" "redis-server $ip:$p" "$ns" >/dev/null || die "t$i: redis-server on $p did not start (log: $dir/redis-$p.log)"
    done
}

ensure_target() {
    local i=$1 ip=$2 pyports=$3 tls=$4 redisports=$5 sig=$6 ns=$NS_T$1
    ensure_ns "$ns"
    ensure_link "$ns" $((10 + i)) "p-t$i"
    # no default route: targets only know the lab subnet.
    # Deterministic ICMP errors (icmp-admin ports answer every probe), big accept queues.
    nsx "$ns" sysctl -qw net.ipv4.icmp_ratelimit=0 net.ipv4.icmp_ratemask=0 \
        net.core.somaxconn=4096 net.ipv4.tcp_max_syn_backlog=4096
    apply_nft "$ns" "$RUN/t$i/nft.conf"
    ((tls)) && ensure_cert "$i"
    ensure_services "$i" "$ip" "$pyports" "$sig"
    ensure_redis "$i" "$ip" "$redisports"
}

stop_target_procs() {
    local i=$1 ns=$NS_T$1 dir=$RUN/t$1 ip=$NET.$((10 + $1)) f p
    stop_pidfile "$dir/services.pid" "$(services_expect "$i")" "$ns" group
    for f in "$dir"/redis-*.pid; do
        [[ -e $f ]] || continue
        p=${f##*/redis-}
        p=${p%.pid}
        stop_pidfile "$f" "redis-server $ip:$p" "$ns" single
    done
}

# delete_ns NS: warn about processes the lab did not start, then delete
delete_ns() {
    local ns=$1 pids
    [[ -e /run/netns/$ns ]] || return 0
    pids=$(ip netns pids "$ns" 2>/dev/null | paste -sd,) || true
    if [[ -n $pids ]]; then
        say "warning: $ns still has processes the lab did not start (not killed; the namespace lives on until they exit):"
        ps -o pid=,args= -p "$pids" 2>/dev/null | cut -c1-150 | sed 's/^/lab.sh:   /' >&2 || true
    fi
    ip netns delete "$ns"
}

cmd_up() {
    local n=${1:-}
    [[ $n =~ ^[0-9]+$ ]] && ((n >= 1 && n <= MAXN)) || die "usage: lab.sh up N   (1 <= N <= $MAXN)"
    command -v nft >/dev/null && command -v socat >/dev/null && command -v redis-server >/dev/null ||
        die "needs nft, socat, redis-server"
    lock ex
    local plan
    plan=$(py render --run-dir "$RUN" --hosts "1-$n") || die "manifest $MANIFEST is invalid"
    ensure_bridge
    ensure_scanner
    local i ip pyports tls redisports sig
    # hosts beyond N go first
    for i in $(up_targets); do
        if ((i > n)); then
            say "removing t$i (beyond N=$n)"
            stop_target_procs "$i"
            delete_ns "$NS_T$i"
            ip -n "$NS_BR" link del "p-t$i" 2>/dev/null || true
            rm -rf "${RUN:?}/t$i"
        fi
    done
    local d
    for d in "$RUN"/t[0-9]*; do  # state of hosts above N left from an earlier, bigger lab
        [[ -d $d ]] || continue
        i=${d##*/t}
        [[ $i =~ ^[0-9]+$ ]] && ((i > n)) && [[ ! -e /run/netns/$NS_T$i ]] || continue
        stop_target_procs "$i"
        rm -rf "${RUN:?}/t$i"
    done
    while IFS=$'\t' read -r i ip pyports tls redisports sig; do
        ensure_target "$i" "$ip" "$pyports" "$tls" "$redisports" "$sig"
    done <<<"$plan"
    ensure_bridge_l2 "$n"
    local bad=0
    while IFS=$'\t' read -r i ip pyports tls redisports sig; do
        local all=${pyports//-/}
        [[ $redisports != - ]] && all+=,$redisports
        # shellcheck disable=SC2086
        wait_listen "$NS_T$i" "$ip" ${all//,/ } || bad=1
    done <<<"$plan"
    echo "$n" >"$STATE"
    ((bad == 0)) || die "some services are not listening; see lab.sh status and $RUN/t*/*.log"
    say "up: bridge $BR_IP, scanner $SCAN_IP, targets $NET.11-$NET.$((10 + n)) (N=$n)"
}

cmd_down() {
    local purge=0
    [[ ${1:-} == --purge ]] && purge=1
    lock ex
    local f port i ns
    for f in "$RUN"/relay-*.host.pid; do
        [[ -e $f ]] || continue
        port=${f##*/relay-}
        relay_stop "${port%.host.pid}"
    done
    for i in $(up_targets); do stop_target_procs "$i"; done
    for f in "$RUN"/t*/services.pid "$RUN"/t*/redis-*.pid; do  # hosts whose namespace is already gone
        [[ -e $f ]] || continue
        i=${f#"$RUN"/t}
        i=${i%%/*}
        stop_target_procs "$i"
    done
    for ns in $(up_targets | sed "s/^/$NS_T/") "$NS_SCAN" "$NS_BR"; do
        delete_ns "$ns"
    done
    rm -f "$STATE" "$RUN"/*.sock "$RUN"/t*/nft.conf.applied "$RUN"/scan/nft.conf.applied "$RUN"/br/nft.conf.applied
    if ((purge)); then
        find "$RUN" -mindepth 1 -maxdepth 1 ! -name lab.lock -exec rm -rf {} +
    fi
    say "down"
}

cmd_status() {
    lock sh
    local ok=0 n=
    [[ -s $STATE ]] && n=$(<"$STATE")
    if [[ -z $n ]] || ! ns_exists "$NS_BR" || ! ns_exists "$NS_SCAN"; then
        echo "lab: DOWN"
        ip netns list 2>/dev/null | grep "^$PREFIX-" | sed 's/^/  leftover namespace: /' || true
        return 1
    fi
    echo "lab: N=$n  manifest=$MANIFEST"
    printf '  %-11s %-18s fwd=%s  %s\n' "$NS_BR" "$(ip -n "$NS_BR" -br -4 addr show br0 | awk '{print $3}')" \
        "$(nsx "$NS_BR" sysctl -n net.ipv4.ip_forward)" \
        "ports: $(ip -n "$NS_BR" -br link show master br0 | awk '{print $1}' | sed 's/@.*//' | wc -l)"
    printf '  %-11s %-18s %s  off-lab drops: %s\n' "$NS_SCAN" "$(ip -n "$NS_SCAN" -br -4 addr show eth0 2>/dev/null | awk '{print $3}')" \
        "$(ip -n "$NS_SCAN" route show default | head -1)" \
        "$(nsx "$NS_SCAN" nft list chain ip sflab output 2>/dev/null | awk '/off-lab/{for(i=1;i<=NF;i++) if($i=="packets") print $(i+1)}')"
    [[ $(ip -n "$NS_SCAN" -br -4 addr show eth0 2>/dev/null | awk '{print $3}') == "$SCAN_IP/24" ]] || ok=1
    local plan i ip pyports tls redisports sig
    plan=$(py render --hosts "1-$n") || return 1
    local types
    types=$(py inventory --hosts "1-$n" | "$PY" -c 'import json,sys; [print(a["id"], a["instance_type"], a["tags"].get("role","-")) for a in json.load(sys.stdin)]')
    while IFS=$'\t' read -r i ip pyports tls redisports sig; do
        local ns=$NS_T$i line p all listening
        if ! ns_exists "$ns"; then
            printf '  %-11s %-14s MISSING\n' "$ns" "$ip"
            ok=1
            continue
        fi
        all=${pyports//-/}
        [[ $redisports != - ]] && all+=,$redisports
        listening=$(nsx "$ns" ss -Htln 2>/dev/null | awk '{print $4}')
        line=
        for p in ${all//,/ }; do
            if grep -qx -- "$ip:$p" <<<"$listening"; then line+=" $p:up"; else line+=" $p:DOWN"; ok=1; fi
        done
        [[ $(ip -n "$ns" -br -4 addr show eth0 2>/dev/null | awk '{print $3}') == "$ip/24" ]] || { line+=" (address missing!)"; ok=1; }
        printf '  %-11s %-12s %-11s %-8s%s\n' "$ns" "$ip" "$(awk -v id="lab-t$i" '$1==id{print $2}' <<<"$types")" \
            "$(awk -v id="lab-t$i" '$1==id{print $3}' <<<"$types")" "$line"
    done <<<"$plan"
    local extra
    extra=$(up_targets | awk -v n="$n" '$1>n' | tr '\n' ' ')
    [[ -z $extra ]] || { echo "  extra target namespaces beyond N: $extra"; ok=1; }
    local f port
    for f in "$RUN"/relay-*.host.pid; do
        [[ -e $f ]] || continue
        port=${f##*/relay-}
        port=${port%.host.pid}
        if relay_ok "$port"; then echo "  relay $port: up"; else echo "  relay $port: BROKEN"; fi
    done
    if ((ok == 0)); then echo "status: OK"; else echo "status: DEGRADED"; fi
    return "$ok"
}

cmd_inventory() {
    lock sh
    py inventory --hosts "$(up_targets | paste -sd,)"
}

cmd_truth() {
    local all=()
    [[ ${1:-} == --all ]] && all=(--all)
    [[ -z ${1:-} || ${1:-} == --all ]] || die "usage: lab.sh truth [--all]"
    lock sh
    py truth --hosts "$(up_targets | paste -sd,)" "${all[@]}"
}

cmd_exec() {
    [[ ${1:-} == -- ]] && shift
    (($#)) || die "usage: lab.sh exec -- CMD..."
    ns_exists "$NS_SCAN" || die "lab is not up"
    exec ip netns exec "$NS_SCAN" "$@"
}

cmd_packets() {
    local i=${1:-} reset=${2:-}
    [[ $i =~ ^[0-9]+$ ]] || die "usage: lab.sh packets HOST_INDEX [--reset]"
    ns_exists "$NS_T$i" || die "target $i is not up"
    local verb=list
    [[ $reset == --reset ]] && verb=reset
    nsx "$NS_T$i" nft "$verb" counter ip sflab scanner_rx | awk '$1=="packets"{print $2; found=1} END{exit !found}'
}

# ---------------------------------------------------------------- relays

relay_ok() {
    local port=$1
    ours "$RUN/relay-$port.host.pid" "UNIX-LISTEN:$RUN/relay-$port.sock" >/dev/null &&
        ours "$RUN/relay-$port.scan.pid" "UNIX-CONNECT:$RUN/relay-$port.sock" "$NS_SCAN" >/dev/null
}

relay_stop() {
    local port=$1
    stop_pidfile "$RUN/relay-$port.scan.pid" "UNIX-CONNECT:$RUN/relay-$port.sock" "$NS_SCAN" group
    stop_pidfile "$RUN/relay-$port.host.pid" "UNIX-LISTEN:$RUN/relay-$port.sock" "" group
    rm -f "$RUN/relay-$port.sock"
}

# start_recorded PIDFILE EXPECT CMD...: start CMD in its own session, record its pid
start_recorded() {
    local pidf=$1 expect=$2 log=$3 k
    shift 3
    (exec setsid "$@") </dev/null >>"$log" 2>&1 9>&- &
    local pid=$!
    for ((k = 0; k < 100; k++)); do  # until setsid/ip netns exec have exec'd into the real program
        alive "$pid" || break
        [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == *"$expect"* ]] && break
        sleep 0.02
    done
    alive "$pid" || { tail -n 5 "$log" >&2; die "failed to start: $*"; }
    echo "$pid" >"$pidf"
}

cmd_relay() {
    local port=${1:-}
    [[ $port =~ ^[0-9]+$ ]] && ((port >= 1 && port <= 65535)) || die "usage: lab.sh relay PORT"
    lock ex
    ns_exists "$NS_SCAN" || die "lab is not up"
    local sock=$RUN/relay-$port.sock
    ((${#sock} < 100)) || die "socket path too long for AF_UNIX: $sock"
    if relay_ok "$port"; then
        say "relay $port already up"
        return 0
    fi
    relay_stop "$port"
    # host side: unix socket -> the host's loopback only
    start_recorded "$RUN/relay-$port.host.pid" "UNIX-LISTEN:$sock" "$RUN/relay-$port.log" \
        socat "UNIX-LISTEN:$sock,fork,unlink-early,mode=600" "TCP:127.0.0.1:$port"
    local k
    for ((k = 0; k < 100; k++)); do [[ -S $sock ]] && break; sleep 0.02; done
    [[ -S $sock ]] || die "relay $port: $sock did not appear"
    # scanner side: 127.0.0.1:PORT in sflab-scan -> the unix socket
    start_recorded "$RUN/relay-$port.scan.pid" "UNIX-CONNECT:$sock" "$RUN/relay-$port.log" \
        ip netns exec "$NS_SCAN" socat "TCP-LISTEN:$port,bind=127.0.0.1,fork,reuseaddr" "UNIX-CONNECT:$sock"
    wait_listen "$NS_SCAN" 127.0.0.1 "$port" || die "relay $port: not listening in $NS_SCAN"
    say "relay $port: $NS_SCAN 127.0.0.1:$port -> host 127.0.0.1:$port"
}

cmd_relay_stop() {
    local port=${1:-}
    [[ $port =~ ^[0-9]+$ ]] || die "usage: lab.sh relay-stop PORT"
    lock ex
    relay_stop "$port"
}

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }

[[ $EUID -eq 0 ]] || die "must run as root (network namespaces)"
cmd=${1:-}
(($#)) && shift
case $cmd in up | status | inventory | truth) resolve_py ;; esac
case $cmd in
up) cmd_up "$@" ;;
down) cmd_down "$@" ;;
status) cmd_status "$@" ;;
inventory) cmd_inventory "$@" ;;
truth) cmd_truth "$@" ;;
exec) cmd_exec "$@" ;;
packets) cmd_packets "$@" ;;
relay) cmd_relay "$@" ;;
relay-stop) cmd_relay_stop "$@" ;;
-h | --help | help) usage ;;
*) usage >&2; exit 2 ;;
esac
