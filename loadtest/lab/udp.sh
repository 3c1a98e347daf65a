#!/usr/bin/env bash
# Real UDP daemons from Debian's packages in the UDP lab's target namespaces.
#
#   SFLAB_PREFIX=sfu SFLAB_NET=10.218.0 SFLAB_MANIFEST=loadtest/lab/manifest-udp loadtest/lab.sh up 2
#   loadtest/lab/udp.sh up | down | status | truth
#
# t1 (.11): bind9 53, chrony 123, snmpd 161 (community public), memcached 11211
#           (UDP on), tftpd-hpa 69, avahi-daemon 5353; 514 dropped by nftables;
#           every other port closed (ICMP port unreachable).
# t2 (.12): snmpd 161 with another community (silent to v2c `public`, still
#           answering SNMPv3 engine discovery); 500 dropped.
# Each daemon gets a config this script writes under run-sfu/udp/, its own pid
# and data files there, and is started directly (no systemd, the system's /etc
# configs untouched). `down` stops exactly the pids it recorded, checked
# against their namespace. Needs root and the packages bind9 snmpd chrony
# memcached tftpd-hpa avahi-daemon (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")"
PREFIX=${SFLAB_PREFIX:-sfu}
NET=${SFLAB_NET:-10.218.0}
[[ $PREFIX =~ ^sf[a-z0-9]{1,4}$ && $PREFIX != sflab ]] || { echo "udp.sh: SFLAB_PREFIX must be a second lab's prefix (sfu)" >&2; exit 1; }
[[ $NET =~ ^10\.2(1[3-9]|2[0-9])\.0$ ]] || { echo "udp.sh: bad SFLAB_NET" >&2; exit 1; }
RUN=$PWD/run-$PREFIX/udp
T1=$NET.11 T2=$NET.12
NS1=$PREFIX-t1 NS2=$PREFIX-t2

die() { echo "udp.sh: $*" >&2; exit 1; }
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# start NAME NS CMD...: run CMD in NS in the background, record its pid.
start() {
    local name=$1 ns=$2; shift 2
    if [[ -f $RUN/$name.pid ]] && kill -0 "$(cat "$RUN/$name.pid")" 2>/dev/null; then return; fi
    setsid ip netns exec "$ns" "$@" </dev/null >>"$RUN/$name.log" 2>&1 &
    echo $! >"$RUN/$name.pid"
    echo "$ns" >"$RUN/$name.ns"
}

# The pid is ours if it still runs in the namespace it was started in.
ours() {
    local pid=$1 ns=$2
    [[ -e /proc/$pid ]] || return 1
    [[ $(ip netns identify "$pid" 2>/dev/null) == "$ns" ]]
}

write_configs() {
    mkdir -p "$RUN"/{named,snmp1,snmp2,chrony,tftp,avahi}
    chmod 0777 "$RUN/chrony" "$RUN/tftp"
    cat >"$RUN/named.conf" <<EOF2
options {
    directory "$RUN/named";
    pid-file none;
    session-keyfile none;
    listen-on port 53 { $T1; };
    listen-on-v6 { none; };
    recursion no;
    allow-query { any; };
    dnssec-validation no;
};
controls { };
EOF2
    cat >"$RUN/snmpd1.conf" <<EOF2
rocommunity public default
sysLocation scanfleet UDP lab
EOF2
    cat >"$RUN/snmpd2.conf" <<EOF2
rocommunity sflab-not-public default
EOF2
    cat >"$RUN/chrony.conf" <<EOF2
local stratum 10
allow $NET.0/24
bindaddress $T1
port 123
cmdport 0
driftfile $RUN/chrony/drift
pidfile $RUN/chrony/chronyd.pid
EOF2
    cat >"$RUN/avahi.conf" <<EOF2
[server]
host-name=lab-t1
domain-name=local
use-ipv4=yes
use-ipv6=no
allow-interfaces=eth0
enable-dbus=no
[publish]
publish-workstation=yes
publish-hinfo=no
[wide-area]
enable-wide-area=no
[reflector]
[rlimits]
EOF2
    cat >"$RUN/nft-t1.conf" <<EOF2
table ip sfudp
delete table ip sfudp
table ip sfudp {
    chain input {
        type filter hook input priority -5; policy accept;
        udp dport 514 drop
    }
}
EOF2
    sed 's/udp dport 514 drop/udp dport 500 drop/' "$RUN/nft-t1.conf" >"$RUN/nft-t2.conf"
}

up() {
    for b in named snmpd chronyd memcached in.tftpd avahi-daemon; do
        command -v "$b" >/dev/null || [[ -x /usr/sbin/$b ]] || die "$b missing: apt-get install bind9 snmpd chrony memcached tftpd-hpa avahi-daemon"
    done
    ip netns list | grep -qw "$NS1" && ip netns list | grep -qw "$NS2" ||
        die "$NS1/$NS2 missing: bring the lab up first (SFLAB_PREFIX=$PREFIX SFLAB_NET=$NET SFLAB_MANIFEST=loadtest/lab/manifest-udp loadtest/lab.sh up 2)"
    write_configs
    nsx "$NS1" nft -f "$RUN/nft-t1.conf"
    nsx "$NS2" nft -f "$RUN/nft-t2.conf"
    start named "$NS1" /usr/sbin/named -g -4 -c "$RUN/named.conf"
    start snmpd1 "$NS1" env SNMP_PERSISTENT_DIR="$RUN/snmp1" /usr/sbin/snmpd -f -C -c "$RUN/snmpd1.conf" -Lf "$RUN/snmpd1.log.d" "udp:$T1:161"
    start snmpd2 "$NS2" env SNMP_PERSISTENT_DIR="$RUN/snmp2" /usr/sbin/snmpd -f -C -c "$RUN/snmpd2.conf" -Lf "$RUN/snmpd2.log.d" "udp:$T2:161"
    start chronyd "$NS1" /usr/sbin/chronyd -d -x -f "$RUN/chrony.conf"
    start memcached "$NS1" /usr/bin/memcached -u nobody -l "$T1" -p 11211 -U 11211 -m 16
    start tftpd "$NS1" /usr/sbin/in.tftpd -L -u nobody -a "$T1:69" -s "$RUN/tftp"
    start avahi "$NS1" /usr/sbin/avahi-daemon -f "$RUN/avahi.conf" --no-drop-root --no-chroot --no-rlimits --no-proc-title
    # Wait (bounded) until each daemon has bound its port.
    local want=("$NS1 $T1:53" "$NS1 $T1:123" "$NS1 $T1:161" "$NS1 $T1:11211" "$NS1 $T1:69" "$NS1 :5353" "$NS2 $T2:161")
    for _ in $(seq 1 50); do
        local missing=0
        for w in "${want[@]}"; do
            set -- $w
            nsx "$1" ss -Hlun | grep -q -- "$2 " || missing=1
        done
        [[ $missing == 0 ]] && { echo "udp.sh: up: UDP daemons listening on $T1 and $T2"; return 0; }
        sleep 0.2
    done
    status
    die "some daemons did not bind (logs in $RUN/*.log)"
}

down() {
    for f in "$RUN"/*.pid; do
        [[ -f $f ]] || continue
        local name pid ns
        name=$(basename "$f" .pid) pid=$(cat "$f") ns=$(cat "$RUN/$name.ns" 2>/dev/null || true)
        if [[ -n $ns ]] && ours "$pid" "$ns"; then
            kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 25); do [[ -e /proc/$pid ]] || break; sleep 0.2; done
        fi
        rm -f "$f" "$RUN/$name.ns"
    done
    for ns in "$NS1" "$NS2"; do
        ip netns list | grep -qw "$ns" && nsx "$ns" nft delete table ip sfudp 2>/dev/null || true
    done
    echo "udp.sh: down"
}

status() {
    for ns in "$NS1" "$NS2"; do
        echo "$ns:"; nsx "$ns" ss -Hlun 2>/dev/null | awk '{print "  udp " $4}'
    done
}

# The expected state of every UDP port the lab test scans, JSON lines.
truth() {
    local t1='53:open:dns 123:open:ntp 161:open:snmp 11211:open:memcached 69:open:tftp 5353:open:mdns 514:open|filtered: 9:closed: 1900:closed: 137:closed:'
    local t2='161:open:snmp 500:open|filtered: 53:closed: 9:closed:'
    for e in $t1; do IFS=: read -r p s n <<<"$e"; printf '{"ip":"%s","port":%s,"state":"%s","service":%s}\n' "$T1" "$p" "$s" "$([[ -n $n ]] && echo "\"$n\"" || echo null)"; done
    for e in $t2; do IFS=: read -r p s n <<<"$e"; printf '{"ip":"%s","port":%s,"state":"%s","service":%s}\n' "$T2" "$p" "$s" "$([[ -n $n ]] && echo "\"$n\"" || echo null)"; done
}

case ${1:-} in
    up) up ;;
    down) down ;;
    status) status ;;
    truth) truth ;;
    *) echo "usage: udp.sh up|down|status|truth" >&2; exit 2 ;;
esac
