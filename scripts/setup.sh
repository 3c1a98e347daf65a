#!/usr/bin/env bash
# Prepare a Debian machine for scanfleet's tests and lab: install what is missing,
# start the services the tests talk to when they are not running. Idempotent.
# Needs root (apt-get, network namespaces). Fails loudly.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (package installs and network namespaces need it)"

# Debian packages: the lab (iproute2, nftables, socat, openssl, python3), the
# services (redis, rabbitmq), the benchmark anchors (nmap, masscan), the
# operations checks (docker-compose to validate the compose file, prometheus for
# promtool and a real Prometheus server), and the export checks (chromium for the
# HTML report's browser test, ndiff and xmllint for nmap XML; nmap ships the DTD).
need=()
for pair in ip:iproute2 nft:nftables socat:socat openssl:openssl redis-server:redis-server \
            redis-cli:redis-tools rabbitmq-server:rabbitmq-server nmap:nmap masscan:masscan \
            setpriv:util-linux /usr/bin/python3:python3 ps:procps /usr/bin/time:time curl:curl \
            docker-compose:docker-compose promtool:prometheus chromium:chromium ndiff:ndiff \
            xmllint:libxml2-utils; do
  cmd=${pair%%:*} pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
# The UDP lab's real daemons (loadtest/lab/udp.sh). policy-rc.d exit 101 keeps
# them from starting on install; the lab starts them with its own configs.
for pair in /usr/sbin/named:bind9 /usr/sbin/snmpd:snmpd /usr/sbin/chronyd:chrony \
            /usr/bin/memcached:memcached /usr/sbin/in.tftpd:tftpd-hpa /usr/sbin/avahi-daemon:avahi-daemon; do
  cmd=${pair%%:*} pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Daemons installed for the labs must not start on the host's addresses.
  [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod 0755 /usr/sbin/policy-rc.d; }
  apt-get update -qq || die "apt-get update"
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || die "apt-get install ${need[*]}"
fi

# Real daemons for the second lab (loadtest/daemons.sh, service detection): Debian's
# servers, each run by the lab inside a network namespace with a config the lab
# writes. Installing them must not start them on the host (its loopback already has
# PostgreSQL 5432, MariaDB 3306, Redis 6379, RabbitMQ 5672, Mosquitto 1883, NATS
# 4222): a policy-rc.d that answers 101 ("action forbidden") is in place during the
# install, and afterwards the host must listen on nothing new.
DAEMON_PKGS=(openssh-server nginx apache2 vsftpd opensmtpd dovecot-imapd dovecot-pop3d
             memcached slapd samba bind9 etcd-server squid haproxy inetutils-telnetd
             openbsd-inetd rsync postgresql mariadb-server redis-server mosquitto snmpd)
missing=()
for pkg in "${DAEMON_PKGS[@]}"; do
  [ "$(dpkg-query -W -f '${db:Status-Abbrev}' "$pkg" 2>/dev/null)" = "ii " ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing lab daemons ${missing[*]} (not started on the host)"
  listen_before=$(ss -Htlnu | awk '{print $1, $5}' | sort -u)
  made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# scanfleet setup.sh: no service starts during this install\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  grep -qx 'exit 101' /usr/sbin/policy-rc.d || die "/usr/sbin/policy-rc.d exists but does not forbid service starts (exit 101); not installing daemons"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update"
  rc=0
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
  [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ "$rc" = 0 ] || die "apt-get install ${missing[*]}"
  new=$(comm -13 <(echo "$listen_before") <(ss -Htlnu | awk '{print $1, $5}' | sort -u))
  [ -z "$new" ] || die "installing the lab daemons started listeners on the host: $new"
fi

# moto's AWS server (EC2, STS, Organizations, SQS) for the AWS and SQS tests, in a
# virtualenv of its own made with Debian's python3 (Debian's python refuses a
# system-wide pip install, PEP 668), linked onto the PATH as moto_server.
# python-hcl2 and checkov check the terraform module (no provider can be fetched).
VENV=/opt/scanfleet/venv
PY_TOOLS=('moto[server]' 'python-hcl2' 'checkov')
if [ ! -x "$VENV/bin/moto_server" ] || [ ! -x "$VENV/bin/checkov" ] || ! "$VENV/bin/python" -c 'import hcl2' >/dev/null 2>&1; then
  log "installing ${PY_TOOLS[*]} from PyPI into $VENV"
  if ! /usr/bin/python3 -m venv --help >/dev/null 2>&1 || ! /usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update"
    apt-get install -y -qq --no-install-recommends python3-venv >/dev/null || die "apt-get install python3-venv"
  fi
  mkdir -p "$(dirname "$VENV")"
  /usr/bin/python3 -m venv "$VENV" || die "python3 -m venv $VENV"
  "$VENV/bin/pip" install -q "${PY_TOOLS[@]}" || die "pip install ${PY_TOOLS[*]} into $VENV"
fi
# The virtualenv must be Debian's python3 with the tools importable.
[ "$("$VENV/bin/python" -c 'import sys; print(sys.base_prefix)')" = /usr ] || \
  die "$VENV is not built on Debian's /usr/bin/python3: remove it and run setup again"
"$VENV/bin/python" -c 'import moto, hcl2' || die "moto or python-hcl2 missing in $VENV"
ln -sf "$VENV/bin/moto_server" /usr/local/bin/moto_server
[ "$(command -v moto_server)" = /usr/local/bin/moto_server ] || \
  log "note: another moto_server comes first on the PATH: $(command -v moto_server)"

command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust 1.95 (rustup)"

# Services, started the way the machine image starts them, only when not running.
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "starting redis-server on 127.0.0.1:6379"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || die "redis-server did not start"
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || die "redis-server is not answering on 6379"
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
  log "starting rabbitmq-server (5672)"
  rabbitmq-server -detached || die "rabbitmq-server did not start"
  for _ in $(seq 120); do (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null && break; sleep 0.5; done
  (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null || die "rabbitmq is not listening on 5672 after 60 s"
fi
log "ready"
