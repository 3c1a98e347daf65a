#!/usr/bin/env bash
# scanfleet real-daemon lab: Debian's servers in network namespaces. See
# loadtest/lab/README.md ("The real-daemon lab") and loadtest/lab/daemons.manifest.
#
#   daemons.sh up          build/repair the lab and start every daemon of the manifest
#   daemons.sh down        stop the daemons (recorded PIDs only), then the lab
#   daemons.sh status      exit 0 iff the lab is up and every daemon port listens
#   daemons.sh truth       ground truth, JSON lines (daemons from dpkg + configs, plus the odd cases)
#   daemons.sh inventory   the hosts as a scanfleet inventory (JSON array)
#   daemons.sh capture [DIR]  store each daemon's raw greeting / first reply
#                          (default worker/tests/fixtures/greetings)
#   daemons.sh exec -- CMD...  run CMD in the scanner namespace
#
# The lab itself (namespaces, bridge, scanner, nftables, the Python odd cases)
# is loadtest/lab.sh's second-lab mechanism with prefix SFLAB_PREFIX (default
# sfd) and subnet SFLAB_NET (default 10.216.0). Each daemon runs in its host's
# namespace, in the foreground under its own session, with a config written
# under loadtest/lab/run-PREFIX/tI/NAME/ (never /etc) and a private mount
# namespace whose /run and /var/spool are fresh tmpfs, so no daemon sees or
# writes the host's sockets, PID files or spools. PIDs are recorded with their
# start time; `down` stops only those process groups.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
LABDIR=$HERE/lab
export SFLAB_PREFIX=${SFLAB_PREFIX:-sfd}
export SFLAB_NET=${SFLAB_NET:-10.216.0}
[[ $SFLAB_PREFIX =~ ^sf[a-z0-9]{1,4}$ && $SFLAB_PREFIX != sflab ]] || { echo "daemons.sh: SFLAB_PREFIX must be sf plus 1-4 of [a-z0-9], not the standard lab's sflab" >&2; exit 1; }
[[ $SFLAB_NET =~ ^10\.2(1[4-9]|2[0-9])\.0$ ]] || { echo "daemons.sh: SFLAB_NET must be 10.214.0 .. 10.229.0 (10.213.0 is the standard lab's)" >&2; exit 1; }
DMANIFEST=${SFLAB_DAEMONS_MANIFEST:-$LABDIR/daemons.manifest}
RUN=$LABDIR/run-$SFLAB_PREFIX
export SFLAB_MANIFEST=$RUN/lab.manifest
NET=$SFLAB_NET
NS_T=$SFLAB_PREFIX-t
NS_SCAN=$SFLAB_PREFIX-scan
START_TIMEOUT=${SFD_START_TIMEOUT:-30}   # seconds a daemon gets to listen on all its ports
LOCK=$RUN/daemons.lock

die() { echo "daemons.sh: $*" >&2; exit 1; }
say() { echo "daemons.sh: $*" >&2; }

PY=
resolve_py() { PY=$(python3 -c 'import sys; print(sys.executable)') && [[ -x $PY ]] || die "python3 not found"; }
dpy() { "$PY" "$LABDIR/daemons.py" --manifest "$DMANIFEST" --net "$NET" "$@"; }
lab() { "$HERE/lab.sh" "$@" 8>&-; }  # the lab's processes must not inherit our lock

lock() {
    mkdir -p "$RUN"
    exec 8>>"$LOCK"
    flock -x -w 600 8 || die "could not lock $LOCK"
}

# ---------------------------------------------------------------- processes

starttime() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null; }
alive() {
    local st
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $st && $st != Z ]]
}
netns_ino() { stat -L -c %i "$1" 2>/dev/null; }

# running PIDFILE NS: the pid file ("PID STARTTIME") names a live process,
# started at that time, in namespace NS; prints the PID
running() {
    local pidf=$1 ns=$2 pid st
    [[ -s $pidf ]] || return 1
    read -r pid st <"$pidf" || return 1
    [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" || return 1
    [[ $(starttime "$pid") == "$st" ]] || return 1
    [[ -e /run/netns/$ns && $(netns_ino "/proc/$pid/ns/net") == $(netns_ino "/run/netns/$ns") ]] || return 1
    echo "$pid"
}

# stop_recorded PIDFILE NS NAME: TERM the recorded process group, wait 10 s, KILL
stop_recorded() {
    local pidf=$1 ns=$2 name=$3 pid k
    if pid=$(running "$pidf" "$ns"); then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for ((k = 0; k < 100; k++)); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid"; then
            say "$name (pid $pid) ignored TERM for 10 s, sending KILL"
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        fi
        # children of the group that outlive the leader (worker processes)
        for ((k = 0; k < 50; k++)); do
            pgrep -g "$pid" >/dev/null 2>&1 || break
            sleep 0.1
        done
        pgrep -g "$pid" >/dev/null 2>&1 && kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$pidf"
}

# listening NS PROTO IP PORT: PROTO tcp|udp
listening() {
    local flag=-Htln
    [[ $2 == udp ]] && flag=-Hluln
    ip netns exec "$1" ss $flag 2>/dev/null | awk '{print $4}' | grep -qx -- "$3:$4"
}

# ---------------------------------------------------------------- per-daemon configs
#
# conf_NAME writes the config into $D and sets CMD (the foreground command),
# optionally PRE (shell run in the private mount namespace before exec).
# Ports come from the manifest: $PORT_<n> for the n-th port of the daemon line.

pre_private='mount -t tmpfs -o mode=755,size=64m sfd-run /run && mount -t tmpfs -o mode=755,size=64m sfd-spool /var/spool'

ensure_cert() {
    local dir=$RUN/t$I/tls
    [[ -s $dir/cert.pem && -s $dir/key.pem ]] && return 0
    mkdir -p "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 825 \
        -keyout "$dir/key.pem.tmp" -out "$dir/cert.pem.tmp" \
        -subj "/CN=t$I.$SFLAB_PREFIX.scanfleet.test/O=scanfleet daemon lab" \
        -addext "subjectAltName=DNS:t$I.$SFLAB_PREFIX.scanfleet.test,IP:$IP" \
        -addext "basicConstraints=critical,CA:FALSE" \
        -addext "extendedKeyUsage=serverAuth" >/dev/null 2>&1 || die "openssl failed for t$I"
    chmod 644 "$dir/key.pem.tmp"  # read by unprivileged workers inside the lab only
    mv "$dir/key.pem.tmp" "$dir/key.pem"
    mv "$dir/cert.pem.tmp" "$dir/cert.pem"
}

conf_sshd() {
    [[ -s $D/ssh_host_ed25519_key ]] || ssh-keygen -q -t ed25519 -N '' -C "sfd-t$I" -f "$D/ssh_host_ed25519_key"
    [[ -s $D/ssh_host_ecdsa_key ]] || ssh-keygen -q -t ecdsa -N '' -C "sfd-t$I" -f "$D/ssh_host_ecdsa_key"
    cat >"$D/sshd_config" <<EOF
Port $PORT_1
ListenAddress $IP
HostKey $D/ssh_host_ed25519_key
HostKey $D/ssh_host_ecdsa_key
PidFile none
UsePAM no
PermitRootLogin no
PasswordAuthentication yes
KbdInteractiveAuthentication no
X11Forwarding no
EOF
    PRE='mkdir -p -m 755 /run/sshd'
    CMD=(/usr/sbin/sshd -D -e -f "$D/sshd_config")
}

conf_nginx() {
    ensure_cert
    mkdir -p "$D/www" "$D/tmp"
    echo "<html><head><title>sfd t$I nginx</title></head><body>scanfleet daemon lab</body></html>" >"$D/www/index.html"
    cat >"$D/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
user www-data;
pid $D/nginx.pid;
error_log $D/error.log;
events { worker_connections 256; }
http {
    include /etc/nginx/mime.types;
    access_log off;
    client_body_temp_path $D/tmp/body;
    proxy_temp_path $D/tmp/proxy;
    fastcgi_temp_path $D/tmp/fastcgi;
    uwsgi_temp_path $D/tmp/uwsgi;
    scgi_temp_path $D/tmp/scgi;
    server {
        listen $IP:$PORT_1;
        root $D/www;
        index index.html;
    }
    server {
        listen $IP:$PORT_2 ssl;
        ssl_certificate $RUN/t$I/tls/cert.pem;
        ssl_certificate_key $RUN/t$I/tls/key.pem;
        root $D/www;
        index index.html;
    }
}
EOF
    CMD=(/usr/sbin/nginx -p "$D/" -e "$D/error.log" -c "$D/nginx.conf")
}

conf_squid() {
    chown proxy:proxy "$D"
    cat >"$D/squid.conf" <<EOF
http_port $IP:$PORT_1
pid_filename $D/squid.pid
cache_log $D/cache.log
access_log none
cache_store_log none
netdb_filename none
coredump_dir $D
cache_mem 8 MB
cache_effective_user proxy
pinger_enable off
logfile_rotate 0
shutdown_lifetime 1 seconds
visible_hostname t$I.$SFLAB_PREFIX.scanfleet.test
acl lab src $NET.0/24
http_access allow lab
http_access deny all
EOF
    CMD=(/usr/sbin/squid -N -f "$D/squid.conf")
}

conf_memcached() {
    echo "-l $IP -p $PORT_1 -U 0 -m 64 -c 256 -u memcache" >"$D/memcached.args"
    CMD=(/usr/bin/memcached -l "$IP" -p "$PORT_1" -U 0 -m 64 -c 256 -u memcache)
}

conf_etcd() {
    mkdir -p "$D/data"
    chown etcd:etcd "$D/data"
    chmod 700 "$D/data"
    cat >"$D/etcd.yml" <<EOF
name: sfd-t$I
data-dir: $D/data
listen-client-urls: http://$IP:$PORT_1
advertise-client-urls: http://$IP:$PORT_1
listen-peer-urls: http://127.0.0.1:2380
initial-advertise-peer-urls: http://127.0.0.1:2380
initial-cluster: sfd-t$I=http://127.0.0.1:2380
initial-cluster-state: new
log-outputs: [stderr]
EOF
    CMD=(setpriv --reuid etcd --regid etcd --init-groups -- /usr/bin/etcd --config-file "$D/etcd.yml")
}

conf_vsftpd() {
    mkdir -p "$D/empty" "$D/anon"
    chmod 755 "$D/empty" "$D/anon"
    echo "scanfleet daemon lab" >"$D/anon/README"
    cat >"$D/vsftpd.conf" <<EOF
listen=YES
listen_ipv6=NO
listen_address=$IP
listen_port=$PORT_1
background=NO
anonymous_enable=YES
anon_root=$D/anon
no_anon_password=YES
local_enable=NO
write_enable=NO
secure_chroot_dir=$D/empty
seccomp_sandbox=NO
xferlog_enable=NO
vsftpd_log_file=$D/vsftpd.log
pasv_min_port=40000
pasv_max_port=40100
EOF
    CMD=(/usr/sbin/vsftpd "$D/vsftpd.conf")
}

conf_telnetd() {
    echo "$IP:$PORT_1 stream tcp nowait root /usr/sbin/telnetd telnetd" >"$D/inetd.conf"
    CMD=(/usr/sbin/inetd -i "$D/inetd.conf")
}

conf_opensmtpd() {
    cat >"$D/smtpd.conf" <<EOF
listen on $IP port $PORT_1 hostname mail.t$I.$SFLAB_PREFIX.scanfleet.test
action "local" mbox
match from any for local action "local"
EOF
    chmod 644 "$D/smtpd.conf"
    CMD=(/usr/sbin/smtpd -d -f "$D/smtpd.conf")
}

conf_apache2() {
    mkdir -p "$D/www" "$D/runtime"
    echo "<html><head><title>sfd t$I apache2</title></head><body>scanfleet daemon lab</body></html>" >"$D/www/index.html"
    local m=/usr/lib/apache2/modules
    cat >"$D/apache2.conf" <<EOF
ServerRoot $D
ServerName t$I.$SFLAB_PREFIX.scanfleet.test
Listen $IP:$PORT_1
PidFile $D/apache2.pid
DefaultRuntimeDir $D/runtime
Mutex file:$D/runtime default
ErrorLog $D/error.log
LogLevel warn
User www-data
Group www-data
LoadModule mpm_event_module $m/mod_mpm_event.so
LoadModule authz_core_module $m/mod_authz_core.so
LoadModule dir_module $m/mod_dir.so
LoadModule mime_module $m/mod_mime.so
TypesConfig /etc/mime.types
DocumentRoot $D/www
DirectoryIndex index.html
<Directory $D/www>
    Require all granted
</Directory>
EOF
    CMD=(/usr/sbin/apache2 -d "$D" -f "$D/apache2.conf" -DFOREGROUND)
}

conf_dovecot() {
    mkdir -p "$D/state" "$D/mail"
    : >"$D/users"
    cat >"$D/dovecot.conf" <<EOF
protocols = imap pop3
listen = $IP
base_dir = /run/dovecot
state_dir = $D/state
log_path = /dev/stderr
ssl = no
auth_mechanisms = plain
passdb {
  driver = passwd-file
  args = $D/users
}
userdb {
  driver = passwd-file
  args = $D/users
}
mail_location = maildir:$D/mail/%u
service imap-login {
  inet_listener imap {
    port = $PORT_2
  }
  inet_listener imaps {
    port = 0
  }
}
service pop3-login {
  inet_listener pop3 {
    port = $PORT_1
  }
  inet_listener pop3s {
    port = 0
  }
}
EOF
    CMD=(/usr/sbin/dovecot -F -c "$D/dovecot.conf")
}

conf_rsyncd() {
    mkdir -p "$D/pub"
    echo "scanfleet daemon lab" >"$D/pub/README"
    cat >"$D/rsyncd.conf" <<EOF
address = $IP
port = $PORT_1
use chroot = no
log file = $D/rsyncd.log
[pub]
    path = $D/pub
    comment = scanfleet daemon lab
    read only = yes
EOF
    CMD=(/usr/bin/rsync --daemon --no-detach --config="$D/rsyncd.conf")
}

conf_bind9() {
    mkdir -p "$D/cache"
    chown bind:bind "$D/cache"
    local zone=t$I.$SFLAB_PREFIX.scanfleet.test
    cat >"$D/$zone.zone" <<EOF
\$TTL 300
@   IN SOA ns.$zone. hostmaster.$zone. ( 1 3600 600 86400 300 )
    IN NS  ns.$zone.
ns  IN A   $IP
EOF
    cat >"$D/named.conf" <<EOF
options {
    directory "$D/cache";
    pid-file "$D/cache/named.pid";
    session-keyfile "$D/cache/session.key";
    managed-keys-directory "$D/cache";
    listen-on port $PORT_1 { $IP; };
    listen-on-v6 { none; };
    recursion no;
    allow-query { any; };
    dnssec-validation no;
};
controls { };
zone "$zone" { type primary; file "$D/$zone.zone"; };
EOF
    CMD=(/usr/sbin/named -g -4 -u bind -c "$D/named.conf")
}

conf_haproxy() {
    cat >"$D/haproxy.cfg" <<EOF
global
    maxconn 256
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend web
    bind $IP:$PORT_1
    default_backend app
backend app
    server app1 127.0.0.1:8081
listen stats
    bind $IP:$PORT_2
    stats enable
    stats uri /
EOF
    CMD=(/usr/sbin/haproxy -db -f "$D/haproxy.cfg")
}

conf_snmpd() {
    mkdir -p "$D/persist"
    chown Debian-snmp:Debian-snmp "$D/persist"
    cat >"$D/snmpd.conf" <<EOF
agentaddress udp:$IP:$PORT_1
rocommunity public default
sysLocation scanfleet daemon lab t$I
sysContact lab@t$I.$SFLAB_PREFIX.scanfleet.test
EOF
    CMD=(env SNMP_PERSISTENT_DIR="$D/persist" MIBS= /usr/sbin/snmpd -f -Lo -C -c "$D/snmpd.conf" -u Debian-snmp -g Debian-snmp -p "$D/snmpd.pid")
}

conf_slapd() {
    mkdir -p "$D/db"
    chown openldap:openldap "$D/db"
    cat >"$D/slapd.conf" <<EOF
include /etc/ldap/schema/core.schema
pidfile $D/db/slapd.pid
argsfile $D/db/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
suffix "dc=t$I,dc=$SFLAB_PREFIX,dc=scanfleet,dc=test"
rootdn "cn=admin,dc=t$I,dc=$SFLAB_PREFIX,dc=scanfleet,dc=test"
directory $D/db
maxsize 16777216
EOF
    chmod 644 "$D/slapd.conf"
    CMD=(/usr/sbin/slapd -d 0 -u openldap -g openldap -h "ldap://$IP:$PORT_1/" -f "$D/slapd.conf")
}

conf_samba() {
    mkdir -p "$D/run" "$D/lock" "$D/state" "$D/cache" "$D/private" "$D/ncalrpc" "$D/bind-dns" "$D/share"
    echo "scanfleet daemon lab" >"$D/share/README"
    cat >"$D/smb.conf" <<EOF
[global]
    workgroup = SFDLAB
    netbios name = SFD-T$I
    server role = standalone server
    interfaces = $IP/24
    bind interfaces only = yes
    smb ports = $PORT_1
    disable netbios = yes
    pid directory = $D/run
    lock directory = $D/lock
    state directory = $D/state
    cache directory = $D/cache
    private dir = $D/private
    ncalrpc dir = $D/ncalrpc
    binddns dir = $D/bind-dns
    log file = $D/log.%m
    log level = 1
    map to guest = bad user
    load printers = no
    printing = bsd
    printcap name = /dev/null
    disable spoolss = yes
[public]
    path = $D/share
    read only = yes
    guest ok = yes
EOF
    CMD=(/usr/sbin/smbd --foreground --no-process-group --debug-stdout -s "$D/smb.conf")
}

conf_postgresql() {
    local bin=/usr/lib/postgresql/15/bin
    mkdir -p "$D/sock"
    chown postgres:postgres "$D/sock"
    if [[ ! -s $D/data/PG_VERSION ]]; then
        rm -rf "$D/data"
        mkdir -p "$D/data"
        chown postgres:postgres "$D/data"
        chmod 700 "$D/data"
        timeout 120 setpriv --reuid postgres --regid postgres --init-groups -- \
            "$bin/initdb" -D "$D/data" -U postgres -E UTF8 --auth-local=peer --auth-host=scram-sha-256 -N \
            >>"$D/initdb.log" 2>&1 || die "postgresql: initdb failed (log: $D/initdb.log)"
        echo "host all all $NET.0/24 scram-sha-256" >>"$D/data/pg_hba.conf"
    fi
    CMD=(setpriv --reuid postgres --regid postgres --init-groups -- "$bin/postgres" -D "$D/data"
        -c "listen_addresses=$IP" -c "port=$PORT_1" -c "unix_socket_directories=$D/sock"
        -c shared_buffers=16MB -c logging_collector=off)
}

conf_mariadb() {
    cat >"$D/my.cnf" <<EOF
[mariadbd]
user = mysql
datadir = $D/data
bind-address = $IP
port = $PORT_1
socket = $D/mysqld.sock
pid-file = $D/mysqld.pid
skip-name-resolve
innodb_buffer_pool_size = 16M
init-file = $D/init.sql
EOF
    # an application account for the lab's clients, as a real deployment has: without
    # any account for the client's host MariaDB answers with an error, not its greeting
    cat >"$D/init.sql" <<EOF
CREATE USER IF NOT EXISTS 'app'@'$NET.%' IDENTIFIED BY 'sfd-lab-not-a-secret';
EOF
    chmod 644 "$D/my.cnf" "$D/init.sql"
    chown mysql:mysql "$D"
    if [[ ! -d $D/data/mysql ]]; then
        rm -rf "$D/data"
        timeout 120 /usr/bin/mariadb-install-db --defaults-file="$D/my.cnf" --skip-test-db \
            --auth-root-authentication-method=socket >>"$D/install-db.log" 2>&1 ||
            die "mariadb: mariadb-install-db failed (log: $D/install-db.log)"
    fi
    CMD=(/usr/sbin/mariadbd --defaults-file="$D/my.cnf")
}

conf_redis() {
    cat >"$D/redis.conf" <<EOF
bind $IP
port $PORT_1
protected-mode no
daemonize no
save ""
appendonly no
dir $D
maxmemory 64mb
maxmemory-policy allkeys-lru
EOF
    CMD=(/usr/bin/redis-server "$D/redis.conf")
}

conf_mosquitto() {
    cat >"$D/mosquitto.conf" <<EOF
listener $PORT_1 $IP
allow_anonymous true
persistence false
log_dest stderr
user mosquitto
EOF
    chmod 644 "$D/mosquitto.conf"
    CMD=(/usr/sbin/mosquitto -c "$D/mosquitto.conf")
}

# ---------------------------------------------------------------- start / stop

# start_daemon I IP NAME PORTS: write NAME's config (restart it if the config
# changed), start it unless it runs, wait until it listens on every port
start_daemon() {
    I=$1 IP=$2
    local name=$3 ports=$4 ns=$NS_T$1 k p
    D=$RUN/t$I/$name
    mkdir -p "$D"
    local pidf=$D/daemon.pid log=$D/daemon.log
    local n=0 list=()
    IFS=, read -r -a list <<<"$ports"
    for p in "${list[@]}"; do
        n=$((n + 1))
        printf -v "PORT_$n" '%s' "${p%/*}"
    done
    PRE=: CMD=()
    declare -F "conf_$name" >/dev/null || die "$name: no such daemon in daemons.sh"
    "conf_$name"
    local sig
    local f
    sig=$({
        for f in "$D"/*.conf "$D"/*.cfg "$D"/*.yml "$D"/*_config "$D"/my.cnf; do [[ -f $f ]] && cat "$f"; done
        printf '%q ' "$PRE" "${CMD[@]}"
    } | sha256sum | cut -c1-16)
    if running "$pidf" "$ns" >/dev/null; then
        if [[ -f $D/daemon.sig && $(<"$D/daemon.sig") == "$sig" ]]; then
            return 0
        fi
        say "t$I $name: config changed, restarting"
        stop_recorded "$pidf" "$ns" "$name"
    fi
    rm -f "$pidf"
    echo "=== $(date -u +%FT%TZ) start: ${CMD[*]}" >>"$log"
    # setsid: own session and process group (stopped as a group); ip netns exec:
    # the host's namespace and a private mount namespace; sh: private /run and
    # /var/spool, then exec the daemon (the recorded PID is the daemon's).
    (exec setsid ip netns exec "$ns" /bin/sh -c "$pre_private && $PRE && exec \"\$@\"" sh "${CMD[@]}") \
        </dev/null >>"$log" 2>&1 8>&- 9>&- &
    local pid=$!
    sleep 0.05
    alive "$pid" || { tail -n 15 "$log" >&2; die "$name on t$I exited at once (log: $log)"; }
    echo "$pid $(starttime "$pid")" >"$pidf"
    echo "$sig" >"$D/daemon.sig"
    local deadline=$((SECONDS + START_TIMEOUT)) missing
    while :; do
        missing=
        for p in "${list[@]}"; do
            listening "$ns" "${p#*/}" "$IP" "${p%/*}" || missing+=" $p"
        done
        [[ -z $missing ]] && break
        if ! alive "$pid"; then
            tail -n 15 "$log" >&2
            rm -f "$pidf"
            die "$name on t$I ($IP) exited before listening on$missing (log: $log)"
        fi
        if ((SECONDS >= deadline)); then
            tail -n 15 "$log" >&2
            die "$name on t$I ($IP) not listening on$missing after ${START_TIMEOUT}s (log: $log; still running, pid $pid: daemons.sh down stops it)"
        fi
        sleep 0.2
    done
}

cmd_up() {
    command -v setpriv >/dev/null || die "needs setpriv (util-linux)"
    lock
    mkdir -p "$RUN"
    dpy check || { echo "daemons.sh: manifest $DMANIFEST is invalid" >&2; exit 2; }
    dpy lab-manifest >"$SFLAB_MANIFEST.tmp"
    mv "$SFLAB_MANIFEST.tmp" "$SFLAB_MANIFEST"
    local n
    n=$(dpy hosts)
    lab up "$n"
    local i ip name ports
    while IFS=$'\t' read -r i ip name ports; do
        [[ -n $i ]] || continue
        start_daemon "$i" "$ip" "$name" "$ports"
        say "t$i $ip $name: up ($ports)"
    done < <(dpy plan)
    # daemons the manifest no longer lists
    local f
    for f in "$RUN"/t*/*/daemon.pid; do
        [[ -e $f ]] || continue
        name=${f%/daemon.pid}
        name=${name##*/}
        i=${f#"$RUN"/t}
        i=${i%%/*}
        dpy plan | awk -F'\t' -v i="$i" -v n="$name" '$1==i && $3==n {found=1} END{exit !found}' && continue
        say "t$i $name: not in the manifest any more, stopping"
        stop_recorded "$f" "$NS_T$i" "$name"
    done
    say "up: $(dpy plan | wc -l) daemons on $NET.11-$NET.$((10 + n)); scanner $NET.2 ($NS_SCAN)"
}

stop_all() {
    local f name i
    for f in "$RUN"/t*/*/daemon.pid; do
        [[ -e $f ]] || continue
        name=${f%/daemon.pid}
        name=${name##*/}
        i=${f#"$RUN"/t}
        i=${i%%/*}
        stop_recorded "$f" "$NS_T$i" "$name"
    done
}

cmd_down() {
    lock
    stop_all
    if [[ -s $SFLAB_MANIFEST ]]; then lab down; fi
    say "down"
}

cmd_status() {
    local ok=0 i ip name ports p line pidf
    lab status >/dev/null 2>&1 || { echo "lab ($SFLAB_PREFIX): DOWN or DEGRADED (loadtest/lab.sh status with SFLAB_PREFIX=$SFLAB_PREFIX SFLAB_NET=$NET SFLAB_MANIFEST=$SFLAB_MANIFEST)"; ok=1; }
    while IFS=$'\t' read -r i ip name ports; do
        pidf=$RUN/t$i/$name/daemon.pid
        line=
        if running "$pidf" "$NS_T$i" >/dev/null; then line="pid $(cut -d' ' -f1 "$pidf")"; else line="NOT RUNNING"; ok=1; fi
        for p in ${ports//,/ }; do
            if [[ -e /run/netns/$NS_T$i ]] && listening "$NS_T$i" "${p#*/}" "$ip" "${p%/*}"; then line+=" $p:up"; else line+=" $p:DOWN"; ok=1; fi
        done
        printf '  %-8s %-12s %-11s %s\n' "t$i" "$ip" "$name" "$line"
    done < <(dpy plan)
    if ((ok == 0)); then echo "status: OK"; else echo "status: DEGRADED"; fi
    return "$ok"
}

cmd_truth() {
    local odd
    odd=$(lab truth) || die "lab.sh truth failed (is the lab up? daemons.sh up)"
    dpy truth --lab-truth <(echo "$odd")
}

cmd_capture() {
    local out=${1:-$ROOT/worker/tests/fixtures/greetings}
    mkdir -p "$out"
    out=$(cd "$out" && pwd)
    cmd_status >/dev/null || die "the daemon lab is not fully up (daemons.sh status)"
    ip netns exec "$NS_SCAN" "$PY" "$LABDIR/daemons.py" --manifest "$DMANIFEST" --net "$NET" capture --out "$out"
}

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }

[[ $EUID -eq 0 ]] || die "must run as root (network namespaces)"
cmd=${1:-}
(($#)) && shift
resolve_py
case $cmd in
up) cmd_up "$@" ;;
down) cmd_down "$@" ;;
status) cmd_status "$@" ;;
truth) cmd_truth "$@" ;;
inventory) lab inventory ;;
capture) cmd_capture "$@" ;;
exec) [[ ${1:-} == -- ]] && shift; (($#)) || die "usage: daemons.sh exec -- CMD..."; exec ip netns exec "$NS_SCAN" "$@" ;;
-h | --help | help) usage ;;
*) usage >&2; exit 2 ;;
esac
