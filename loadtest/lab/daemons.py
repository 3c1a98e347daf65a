#!/usr/bin/env python3
"""The real-daemon lab's manifest, ground truth and greeting capture (stdlib only).

Used by loadtest/daemons.sh:
  daemons.py --manifest M --net N check|hosts|plan|lab-manifest
  daemons.py --manifest M --net N truth [--lab-truth FILE]
  daemons.py --manifest M --net N capture --out DIR     (run in the scanner namespace)

The truth of a daemon port: its service name (the manifest), the product (the
daemon's own name for itself, below), the version (the upstream part of the
installed Debian package's version), the package, and which of product and
version the daemon tells an unauthenticated client (`announces`).
"""

import argparse
import json
import os
import re
import shlex
import socket
import ssl
import struct
import subprocess
import sys
import time

# name -> Debian package, product, what it announces on the wire (per port when
# it differs): "product", "version"
DAEMONS = {
    "sshd": dict(pkg="openssh-server", product="OpenSSH", announces=["product", "version"]),
    "nginx": dict(pkg="nginx", product="nginx", announces=["product", "version"]),
    "squid": dict(pkg="squid", product="squid", announces=["product", "version"]),
    "memcached": dict(pkg="memcached", product="memcached", announces=["product", "version"]),
    "etcd": dict(pkg="etcd-server", product="etcd", announces=["product", "version"]),
    "vsftpd": dict(pkg="vsftpd", product="vsftpd", announces=["product", "version"]),
    "telnetd": dict(pkg="inetutils-telnetd", product="inetutils telnetd", announces=[]),
    "opensmtpd": dict(pkg="opensmtpd", product="OpenSMTPD", announces=["product"]),
    "apache2": dict(pkg="apache2", product="Apache", announces=["product", "version"]),
    "dovecot": dict(pkg="dovecot-core", product="Dovecot", announces=["product"]),
    "rsyncd": dict(pkg="rsync", product="rsync", announces=["product"]),
    "bind9": dict(pkg="bind9", product="BIND", announces=["product", "version"]),
    # the frontend answers 503 from its own error page (no Server header); the
    # stats page prints "HAProxy version X"
    "haproxy": dict(pkg="haproxy", product="HAProxy", announces={0: [], 1: ["product", "version"]}),
    # sysObjectID (and the SNMPv3 engine ID) carry net-snmp's enterprise number 8072
    "snmpd": dict(pkg="snmpd", product="net-snmp", announces=["product"]),
    "slapd": dict(pkg="slapd", product="OpenLDAP", announces=[]),
    "samba": dict(pkg="samba", product="Samba", announces=[]),
    "mosquitto": dict(pkg="mosquitto", product="Mosquitto", announces=["product", "version"]),
    "mariadb": dict(pkg="mariadb-server", product="MariaDB", announces=["product", "version"]),
    "postgresql": dict(pkg="postgresql-15", product="PostgreSQL", announces=[]),
    "redis": dict(pkg="redis-server", product="Redis", announces=["product", "version"]),
}

PORT_RE = re.compile(r"^(\d{1,5})/(tcp|udp)=([a-z0-9][a-z0-9.+-]*)$")


class ManifestError(Exception):
    pass


def parse(path):
    """-> (hosts: {index: [(name, [(port, proto, service)])]}, lab_lines, max_index)"""
    hosts, lab_lines, cur = {}, [], None
    seen = {}
    with open(path) as f:
        for no, raw in enumerate(f, 1):
            line = raw.strip()
            where = f"{path}:{no}"
            if not line or line.startswith("#"):
                continue
            words = shlex.split(line)
            if words[0] == "host":
                if len(words) < 2 or not words[1].isdigit():
                    raise ManifestError(f"{where}: the daemon lab needs numbered hosts ('host INDEX ...')")
                cur = int(words[1])
                if not 1 <= cur <= 244:
                    raise ManifestError(f"{where}: host index {cur} not in 1..244")
                hosts.setdefault(cur, [])
                lab_lines.append(line)
            elif words[0] == "daemon":
                if cur is None:
                    raise ManifestError(f"{where}: 'daemon' before any 'host'")
                if len(words) < 3:
                    raise ManifestError(f"{where}: usage: daemon NAME PORT/PROTO=SERVICE...")
                name = words[1]
                if name not in DAEMONS:
                    raise ManifestError(f"{where}: unknown daemon {name!r} (known: {', '.join(sorted(DAEMONS))})")
                ports = []
                for w in words[2:]:
                    m = PORT_RE.match(w)
                    if not m or not 1 <= int(m.group(1)) <= 65535:
                        raise ManifestError(f"{where}: {w!r} is not PORT/tcp=SERVICE or PORT/udp=SERVICE")
                    key = (cur, int(m.group(1)), m.group(2))
                    if key in seen:
                        raise ManifestError(f"{where}: port {w} of host {cur} already used at line {seen[key]}")
                    seen[key] = no
                    ports.append((int(m.group(1)), m.group(2), m.group(3)))
                if any(d == name for d, _ in hosts[cur]):
                    raise ManifestError(f"{where}: daemon {name} twice on host {cur}")
                hosts[cur].append((name, ports))
            else:
                if cur is None:
                    raise ManifestError(f"{where}: {words[0]!r} before any 'host'")
                m = re.match(r"^(\d+)/tcp$", words[0])
                if m:
                    key = (cur, int(m.group(1)), "tcp")
                    if key in seen:
                        raise ManifestError(f"{where}: port {words[0]} of host {cur} already used at line {seen[key]}")
                    seen[key] = no
                lab_lines.append(line)
    if not hosts:
        raise ManifestError(f"{path}: no hosts")
    n = max(hosts)
    missing = [i for i in range(1, n + 1) if i not in hosts]
    if missing:
        raise ManifestError(f"{path}: hosts must be 1..{n} without gaps; missing {missing}")
    return hosts, lab_lines, n


def upstream(debver):
    """The upstream part of a Debian version: no epoch, no Debian revision, no repack suffix."""
    v = debver.split(":", 1)[1] if re.match(r"^\d+:", debver) else debver
    if "-" in v:
        v = v.rsplit("-", 1)[0]
    v = re.sub(r"[+~](dfsg|ds)\d*$", "", v)
    return v


def installed(pkg):
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${db:Status-Abbrev}\t${Version}", pkg],
                             capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise SystemExit("daemons.py: dpkg-query not found (a Debian machine is needed)")
    st, _, ver = out.stdout.partition("\t")
    if out.returncode != 0 or not st.startswith("ii"):
        raise SystemExit(f"daemons.py: package {pkg} is not installed (scripts/setup.sh installs it)")
    return ver


def announces_of(name, idx):
    a = DAEMONS[name]["announces"]
    return a.get(idx, []) if isinstance(a, dict) else a


def truth(hosts, net, lab_truth):
    rows = []
    for i in sorted(hosts):
        ip = f"{net}.{10 + i}"
        for name, ports in hosts[i]:
            d = DAEMONS[name]
            debver = installed(d["pkg"])
            for idx, (port, proto, service) in enumerate(ports):
                rows.append(dict(ip=ip, port=port, protocol=proto, service=service, product=d["product"],
                                 version=upstream(debver), package=d["pkg"], package_version=debver,
                                 daemon=name, announces=announces_of(name, idx)))
    if lab_truth:
        with open(lab_truth) as f:
            for line in f:
                if not line.strip():
                    continue
                v = json.loads(line)
                rows.append(dict(ip=v["ip"], port=v["port"], protocol="tcp", service=v.get("service"),
                                 product=None, version=None, package=None, package_version=None,
                                 daemon=None, announces=[]))
    rows.sort(key=lambda r: (tuple(int(x) for x in r["ip"].split(".")), r["port"], r["protocol"]))
    for r in rows:
        r["host"] = f"t{int(r['ip'].rsplit('.', 1)[1]) - 10}"
        print(json.dumps(r))


# ---------------------------------------------------------------- capture

MAX = 65536


def recv_all(s, idle=0.6, total=4.0, until_close=False, limit=MAX):
    """Read until the peer is idle for `idle` s (or closes), at most `total` s and `limit` bytes."""
    buf = b""
    end = time.monotonic() + total
    while len(buf) < limit:
        left = end - time.monotonic()
        if left <= 0:
            break
        s.settimeout(min(left, total if until_close else idle) if buf or until_close else left)
        try:
            chunk = s.recv(limit - len(buf))
        except (socket.timeout, TimeoutError):
            break
        except ssl.SSLError:
            break
        if not chunk:
            break
        buf += chunk
    return buf


def tcp(ip, port, timeout=5.0):
    s = socket.create_connection((ip, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def banner(ip, port):
    with tcp(ip, port) as s:
        return recv_all(s, idle=0.8, total=4.0)


def request(ip, port, data, until_close=False, first_wait=4.0):
    with tcp(ip, port) as s:
        s.sendall(data)
        return recv_all(s, idle=0.8, total=first_wait, until_close=until_close)


def http_get(ip, port, path="/", tls=False):
    req = f"GET {path} HTTP/1.1\r\nHost: {ip}\r\nUser-Agent: scanfleet-capture\r\nConnection: close\r\n\r\n".encode()
    s = tcp(ip, port)
    try:
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s, server_hostname=None)
        s.sendall(req)
        return recv_all(s, until_close=True, total=5.0)
    finally:
        s.close()


def ber_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def tlv(tag, body):
    return bytes([tag]) + ber_len(len(body)) + body


def ber_int(v):
    return tlv(0x02, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True))


def ber_oid(dotted):
    parts = [int(x) for x in dotted.split(".")]
    out = bytes([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        enc = [p & 0x7F]
        p >>= 7
        while p:
            enc.append(0x80 | (p & 0x7F))
            p >>= 7
        out += bytes(reversed(enc))
    return tlv(0x06, out)


LDAP_BIND = tlv(0x30, ber_int(1) + tlv(0x60, ber_int(3) + tlv(0x04, b"") + tlv(0x80, b"")))
# rootDSE: base "", scope base, deref never, no limits, (objectClass=*), attributes * and +
LDAP_ROOTDSE = tlv(0x30, ber_int(2) + tlv(0x63, tlv(0x04, b"") + tlv(0x0A, b"\x00") + tlv(0x0A, b"\x00")
                                        + ber_int(0) + ber_int(0) + tlv(0x01, b"\x00")
                                        + tlv(0x87, b"objectClass")
                                        + tlv(0x30, tlv(0x04, b"*") + tlv(0x04, b"+"))))


def smb2_negotiate():
    dialects = [0x0202, 0x0210, 0x0300, 0x0302]
    hdr = (b"\xfeSMB" + struct.pack("<HHIHHIIQIIQ", 64, 0, 0, 0, 1, 0, 0, 0, 0xFEFF, 0, 0) + b"\x00" * 16)
    body = struct.pack("<HHHHI", 36, len(dialects), 1, 0, 0) + b"scanfleet-captur" + b"\x00" * 8
    body += b"".join(struct.pack("<H", d) for d in dialects)
    msg = hdr + body
    return struct.pack(">I", len(msg)) + msg


def dns_version_bind(txid=0x5346):
    q = struct.pack(">HHHHHH", txid, 0x0000, 1, 0, 0, 0) + b"\x07version\x04bind\x00" + struct.pack(">HH", 16, 3)
    return q


def snmp_get(community=b"public", reqid=0x5346):
    binds = b"".join(tlv(0x30, ber_oid(o) + b"\x05\x00") for o in ("1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.2.0"))
    pdu = tlv(0xA0, ber_int(reqid) + ber_int(0) + ber_int(0) + tlv(0x30, binds))
    return tlv(0x30, ber_int(1) + tlv(0x04, community) + pdu)


def mqtt_connect(client=b"scanfleet-capture"):
    vh = b"\x00\x04MQTT\x04\x02\x00\x3c"
    pl = struct.pack(">H", len(client)) + client
    body = vh + pl
    return b"\x10" + bytes([len(body)]) + body


def mqtt_subscribe(topic=b"$SYS/broker/version"):
    body = struct.pack(">H", 1) + struct.pack(">H", len(topic)) + topic + b"\x00"
    return b"\x82" + bytes([len(body)]) + body


def pg_startup(user=b"scanfleet", db=b"scanfleet"):
    body = struct.pack(">I", 196608) + b"user\x00" + user + b"\x00database\x00" + db + b"\x00\x00"
    return struct.pack(">I", len(body) + 4) + body


PG_SSLREQUEST = struct.pack(">II", 8, 80877103)


def udp_query(ip, port, data, timeout=3.0):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, (ip, port))
        try:
            return s.recvfrom(MAX)[0]
        except (socket.timeout, TimeoutError):
            return b""


def captures_for(name, service, idx, ip, port, proto):
    """-> [(fixture stem, request description, bytes)]"""
    out = []
    if name == "sshd":
        out.append(("ssh", "none (greeting)", banner(ip, port)))
    elif name == "nginx":
        tls = service == "https"
        out.append((f"{service}-nginx", "TLS, then GET / HTTP/1.1" if tls else "GET / HTTP/1.1",
                    http_get(ip, port, tls=tls)))
    elif name in ("apache2", "haproxy"):
        stem = f"http-{name}" + ("-stats" if name == "haproxy" and idx == 1 else "")
        out.append((stem, "GET / HTTP/1.1", http_get(ip, port)))
    elif name == "squid":
        out.append(("http-proxy", "GET / HTTP/1.1 (not a proxy request)", http_get(ip, port)))
    elif name == "memcached":
        out.append(("memcached", "version\\r\\n", request(ip, port, b"version\r\n")))
    elif name == "etcd":
        out.append(("etcd", "GET /version HTTP/1.1", http_get(ip, port, "/version")))
    elif name in ("vsftpd", "opensmtpd", "dovecot", "telnetd", "rsyncd", "mariadb"):
        out.append((service, "none (greeting)", banner(ip, port)))
    elif name == "redis":
        out.append(("redis", "PING\\r\\n", request(ip, port, b"PING\r\n")))
        out.append(("redis-info", "INFO server\\r\\n", request(ip, port, b"INFO server\r\n")))
    elif name == "bind9":
        q = dns_version_bind()
        if proto == "udp":
            out.append(("dns-udp", "UDP query version.bind CH TXT", udp_query(ip, port, q)))
        else:
            r = request(ip, port, struct.pack(">H", len(q)) + q)
            out.append(("dns-tcp", "TCP (2-byte length) query version.bind CH TXT", r))
    elif name == "snmpd":
        out.append(("snmp", "SNMPv2c GetRequest community public: sysDescr.0, sysObjectID.0",
                    udp_query(ip, port, snmp_get())))
    elif name == "slapd":
        out.append(("ldap", "LDAPv3 anonymous simple bind (message id 1)", request(ip, port, LDAP_BIND)))
        out.append(("ldap-rootdse", "anonymous bind, then rootDSE search (base \"\", attributes * +), message id 2",
                    ldap_rootdse(ip, port)))
    elif name == "samba":
        out.append(("smb", "SMB2 NEGOTIATE (dialects 2.0.2, 2.1, 3.0, 3.0.2) over direct TCP",
                    request(ip, port, smb2_negotiate())))
    elif name == "postgresql":
        out.append(("postgresql-sslrequest", "SSLRequest", request(ip, port, PG_SSLREQUEST)))
        out.append(("postgresql", "StartupMessage v3.0 user=scanfleet database=scanfleet",
                    request(ip, port, pg_startup())))
    elif name == "mosquitto":
        out.append(("mqtt", "MQTT 3.1.1 CONNECT (clean session, anonymous)", request(ip, port, mqtt_connect())))
        out.append(("mqtt-sys-version", "CONNECT, then SUBSCRIBE $SYS/broker/version (QoS 0)", mqtt_sys(ip, port)))
    else:
        raise SystemExit(f"daemons.py: no capture for daemon {name}")
    return out


def ldap_rootdse(ip, port):
    with tcp(ip, port) as s:
        s.sendall(LDAP_BIND)
        recv_all(s, idle=0.5, total=3.0)
        s.sendall(LDAP_ROOTDSE)
        return recv_all(s, idle=0.8, total=4.0)


def mqtt_sys(ip, port):
    with tcp(ip, port) as s:
        s.sendall(mqtt_connect(b"scanfleet-capture-sys"))
        recv_all(s, idle=0.5, total=3.0)
        s.sendall(mqtt_subscribe())
        return recv_all(s, idle=1.0, total=4.0)


def capture(hosts, net, outdir):
    index = []
    for i in sorted(hosts):
        ip = f"{net}.{10 + i}"
        for name, ports in hosts[i]:
            debver = installed(DAEMONS[name]["pkg"])
            for idx, (port, proto, service) in enumerate(ports):
                for stem, req, data in captures_for(name, service, idx, ip, port, proto):
                    if not data:
                        raise SystemExit(f"daemons.py: {name} on {ip}:{port}/{proto} sent nothing to: {req}")
                    path = os.path.join(outdir, f"{stem}-debian.bin")
                    with open(path + ".tmp", "wb") as f:
                        f.write(data)
                    os.replace(path + ".tmp", path)
                    index.append(dict(file=os.path.basename(path), daemon=name, package=DAEMONS[name]["pkg"],
                                      package_version=debver, port=f"{port}/{proto}", service=service,
                                      request=req, bytes=len(data)))
                    print(f"captured {os.path.basename(path)}: {len(data)} bytes from {name} {ip}:{port}/{proto}",
                          file=sys.stderr)
    with open(os.path.join(outdir, "index.json.tmp"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")
    os.replace(os.path.join(outdir, "index.json.tmp"), os.path.join(outdir, "index.json"))
    lines = [
        "# Greetings of real Debian daemons",
        "",
        "Raw bytes each daemon sent first (or answered to the one request named below),",
        "captured by `loadtest/daemons.sh capture` from inside the real-daemon lab's scanner",
        "namespace (Debian 12 packages, configs from `loadtest/daemons.sh`, layout in",
        "`loadtest/lab/daemons.manifest`). Regenerate with `loadtest/daemons.sh up &&",
        "loadtest/daemons.sh capture`; this file and `index.json` are written with them.",
        "Dates, ETags, SMB GUIDs/times and the like vary from capture to capture.",
        "",
        "| file | daemon | Debian package | port | request sent | bytes |",
        "|---|---|---|---|---|---|",
    ]
    for e in index:
        lines.append(f"| `{e['file']}` | {e['daemon']} | {e['package']} {e['package_version']} | {e['port']} "
                     f"| {e['request']} | {e['bytes']} |")
    with open(os.path.join(outdir, "README.md.tmp"), "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(os.path.join(outdir, "README.md.tmp"), os.path.join(outdir, "README.md"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--net", required=True)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for c in ("check", "hosts", "plan", "lab-manifest"):
        sub.add_parser(c)
    t = sub.add_parser("truth")
    t.add_argument("--lab-truth")
    c = sub.add_parser("capture")
    c.add_argument("--out", required=True)
    a = ap.parse_args()
    if not re.match(r"^10\.2(1[3-9]|2[0-9])\.0$", a.net):
        raise SystemExit(f"daemons.py: --net {a.net!r} is not a lab subnet (10.213.0 .. 10.229.0)")
    try:
        hosts, lab_lines, n = parse(a.manifest)
    except (OSError, ManifestError, ValueError) as e:
        print(f"daemons.py: {e}", file=sys.stderr)
        sys.exit(2)
    if a.cmd == "check":
        return
    if a.cmd == "hosts":
        print(n)
    elif a.cmd == "plan":
        for i in sorted(hosts):
            for name, ports in hosts[i]:
                print(f"{i}\t{a.net}.{10 + i}\t{name}\t" + ",".join(f"{p}/{pr}" for p, pr, _ in ports))
    elif a.cmd == "lab-manifest":
        print(f"# generated by loadtest/daemons.sh from {a.manifest}: do not edit")
        for line in lab_lines:
            print(line)
    elif a.cmd == "truth":
        truth(hosts, a.net, a.lab_truth)
    elif a.cmd == "capture":
        capture(hosts, a.net, a.out)


if __name__ == "__main__":
    main()
