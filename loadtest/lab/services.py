#!/usr/bin/env python3
"""scanfleet lab: manifest parser and the lab's Python-served TCP services.

Stdlib only (Python 3.11). Two roles in one file:

* Manifest tooling used by lab.sh (the manifest is the single source of truth):
    services.py check    [--manifest F]
    services.py render   [--manifest F] [--run-dir DIR] --hosts 1-N
        with --run-dir writes DIR/tI/nft.conf per host (if changed); prints
        one plan line per host:
        INDEX<TAB>IP<TAB>PYPORTS<TAB>TLS<TAB>REDISPORTS<TAB>SIG
    services.py inventory [--manifest F] --hosts LIST
    services.py truth     [--manifest F] --hosts LIST [--all]
  LIST is "1,2,5" or "1-8" (or empty).

* The per-host service process (one per target namespace):
    services.py serve [--manifest F] --index I --run-dir DIR --pidfile P
  Serves every http/https/ssh/smtp/silent port of host I (including the ones
  an nftables rule hides) on the host's lab address, thread per connection
  with a per-port cap, socket timeouts and bounded reads, so a client that
  disconnects, stalls or floods costs a bounded amount of memory. Writes the
  pidfile only once every port is bound (lab.sh uses that as readiness).
"""

from __future__ import annotations

import argparse
import hashlib
import html
import http.server
import json
import os
import resource
import shlex
import signal
import socket
import socketserver
import ssl
import sys
import threading
from dataclasses import dataclass, field

NET = os.environ.get("SFLAB_NET", "10.213.0")
SCANNER_IP = f"{NET}.2"
MAX_INDEX = 244  # 10 + 244 = .254
DEFAULT_TYPE = "m5.large"
KINDS = {  # kind -> service name in the ground truth
    "http": "http",
    "https": "https",
    "ssh": "ssh",
    "smtp": "smtp",
    "redis": "redis",
    "silent": None,
}
FW = {  # fw value -> (truth state, why, nft verdict)
    "drop": ("filtered", "drop", "drop"),
    "rst": ("closed", "rst", "reject with tcp reset"),
    "icmp-admin": ("filtered", "icmp-admin-prohibited", "reject with icmp type admin-prohibited"),
}
SSH_BANNER = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"
HERE = os.path.dirname(os.path.abspath(__file__))


class ManifestError(Exception):
    pass


@dataclass
class Service:
    port: int
    kind: str
    fw: str | None = None
    title: str | None = None


@dataclass
class Profile:
    type: str = DEFAULT_TYPE
    role: str | None = None
    icmp_drop: bool = False
    loss: int = 0
    services: list[Service] = field(default_factory=list)


def host_ip(index: int) -> str:
    return f"{NET}.{10 + index}"


def host_name(index: int) -> str:
    return f"lab-t{index}"


def fqdn(index: int) -> str:
    return f"lab-t{index}.scanfleet.test"


def parse_manifest(path: str) -> tuple[dict[int, Profile], Profile]:
    hosts: dict[int, Profile] = {}
    default: Profile | None = None
    cur: Profile | None = None
    cur_name = ""
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{path}:{lineno}"
            try:
                words = shlex.split(line, comments=True)
            except ValueError as e:
                raise ManifestError(f"{where}: {e}") from None
            if not words:
                continue
            if words[0] == "host":
                if len(words) < 2:
                    raise ManifestError(f"{where}: host needs an index or 'default'")
                cur = Profile()
                if words[1] == "default":
                    if default is not None:
                        raise ManifestError(f"{where}: second 'host default'")
                    default = cur
                    cur_name = "default"
                else:
                    try:
                        idx = int(words[1])
                    except ValueError:
                        raise ManifestError(f"{where}: bad host index {words[1]!r}") from None
                    if not 1 <= idx <= MAX_INDEX:
                        raise ManifestError(f"{where}: host index {idx} not in 1..{MAX_INDEX}")
                    if idx in hosts:
                        raise ManifestError(f"{where}: host {idx} defined twice")
                    hosts[idx] = cur
                    cur_name = f"host {idx}"
                for opt in words[2:]:
                    key, eq, val = opt.partition("=")
                    if not eq:
                        raise ManifestError(f"{where}: expected key=value, got {opt!r}")
                    if key == "type":
                        cur.type = val
                    elif key == "role":
                        cur.role = val
                    elif key == "icmp":
                        if val != "drop":
                            raise ManifestError(f"{where}: icmp= only knows 'drop'")
                        cur.icmp_drop = True
                    elif key == "loss":
                        if not val.isdigit() or not 0 <= int(val) <= 100:
                            raise ManifestError(f"{where}: loss must be 0..100")
                        cur.loss = int(val)
                    else:
                        raise ManifestError(f"{where}: unknown host option {key!r}")
                continue
            if cur is None:
                raise ManifestError(f"{where}: service line before any 'host' line")
            port_s, slash, proto = words[0].partition("/")
            if slash and proto != "tcp":
                raise ManifestError(f"{where}: only /tcp services are supported")
            if not port_s.isdigit() or not 1 <= int(port_s) <= 65535:
                raise ManifestError(f"{where}: bad port {words[0]!r}")
            if len(words) < 2 or words[1] not in KINDS:
                raise ManifestError(f"{where}: service kind must be one of {', '.join(KINDS)}")
            svc = Service(int(port_s), words[1])
            for opt in words[2:]:
                key, eq, val = opt.partition("=")
                if not eq:
                    raise ManifestError(f"{where}: expected key=value, got {opt!r}")
                if key == "fw":
                    if val not in FW:
                        raise ManifestError(f"{where}: fw must be one of {', '.join(FW)}")
                    svc.fw = val
                elif key == "title":
                    if svc.kind not in ("http", "https"):
                        raise ManifestError(f"{where}: title= only for http/https")
                    svc.title = val
                else:
                    raise ManifestError(f"{where}: unknown service option {key!r}")
            if any(s.port == svc.port for s in cur.services):
                raise ManifestError(f"{where}: port {svc.port} twice in {cur_name}")
            cur.services.append(svc)
    if default is None:
        default = Profile(role="default", services=[Service(80, "http"), Service(22, "ssh")])
    return hosts, default


def profile_for(manifest, index: int) -> Profile:
    hosts, default = manifest
    return hosts.get(index, default)


def parse_hosts(spec: str) -> list[int]:
    out: set[int] = set()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        lo, dash, hi = part.partition("-")
        rng = range(int(lo), int(hi) + 1) if dash else [int(lo)]
        for i in rng:
            if not 1 <= i <= MAX_INDEX:
                raise ManifestError(f"host index {i} not in 1..{MAX_INDEX}")
            out.add(i)
    return sorted(out)


# ---------------------------------------------------------------- derivations


def nft_ruleset(index: int, p: Profile) -> str:
    rules = [f'ip saddr {SCANNER_IP} counter name "scanner_rx" comment "lab.sh packets"']
    if p.loss:
        rules.append(f'ip saddr {SCANNER_IP} numgen random mod 100 < {p.loss} counter drop comment "loss={p.loss}"')
    if p.icmp_drop:
        rules.append('icmp type echo-request counter drop comment "icmp=drop"')
    for s in p.services:
        if s.fw:
            rules.append(f'tcp dport {s.port} counter {FW[s.fw][2]} comment "fw={s.fw}"')
    body = "\n".join(f"\t\t{r}" for r in rules)
    return (
        f"# generated by services.py render from the manifest for {host_name(index)}; do not edit\n"
        "table ip sflab\n"
        "delete table ip sflab\n"
        "table ip sflab {\n"
        "\tcounter scanner_rx {\n\t}\n"
        "\tchain input {\n"
        "\t\ttype filter hook input priority filter; policy accept;\n"
        f"{body}\n"
        "\t}\n"
        "}\n"
    )


def plan_line(index: int, p: Profile) -> str:
    py = [s.port for s in p.services if s.kind != "redis"]
    redis = [s.port for s in p.services if s.kind == "redis"]
    tls = int(any(s.kind == "https" for s in p.services))
    sig_src = json.dumps(
        {"svc": [(s.port, s.kind, s.title) for s in p.services if s.kind != "redis"]}, sort_keys=True
    )
    sig = hashlib.sha256(sig_src.encode()).hexdigest()[:16]
    fmt = lambda xs: ",".join(map(str, xs)) or "-"  # noqa: E731
    return f"{index}\t{host_ip(index)}\t{fmt(py)}\t{tls}\t{fmt(redis)}\t{sig}"


def inventory(manifest, indices: list[int]) -> list[dict]:
    out = []
    for i in indices:
        p = profile_for(manifest, i)
        tags = {"Name": host_name(i)}
        if p.role:
            tags["role"] = p.role
        out.append(
            {
                "id": host_name(i),
                "private_ip": host_ip(i),
                "instance_type": p.type,
                "account_id": "000000000000",
                "region": "lab-1",
                "vpc_id": "vpc-lab",
                "tags": tags,
            }
        )
    return out


def truth(manifest, indices: list[int], all_states: bool) -> list[dict]:
    out = []
    for i in indices:
        p = profile_for(manifest, i)
        for s in sorted(p.services, key=lambda s: s.port):
            rec: dict = {"ip": host_ip(i), "port": s.port}
            if s.fw is None:
                rec["service"] = KINDS[s.kind]
                if all_states:
                    rec["state"] = "open"
            elif all_states:
                state, why, _ = FW[s.fw]
                rec["state"] = state
                rec["why"] = why
            else:
                continue
            out.append(rec)
    return out


# ---------------------------------------------------------------- services

_err_lock = threading.Lock()
_err_count = 0
ERR_LOG_CAP = 200


def log(msg: str) -> None:
    print(f"services[{os.getpid()}]: {msg}", file=sys.stderr, flush=True)


def quiet_error(what: str, exc: BaseException) -> None:
    """Client-caused errors are expected and ignored; anything else is logged,
    at most ERR_LOG_CAP lines per process so the log cannot grow without bound."""
    global _err_count
    if isinstance(exc, (OSError, EOFError, ssl.SSLError, ValueError, UnicodeError)):
        return
    with _err_lock:
        _err_count += 1
        if _err_count <= ERR_LOG_CAP:
            log(f"{what}: {type(exc).__name__}: {exc}")


class LabServer(socketserver.TCPServer):
    """TCP server, one daemon thread per connection, at most `max_conns` at once
    (further connections are accepted and closed at once)."""

    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, addr, handler, *, index: int, max_conns: int = 128, **extra):
        self.index = index
        self.max_conns = max_conns
        self.slots = threading.BoundedSemaphore(max_conns)
        for k, v in extra.items():
            setattr(self, k, v)
        super().__init__(addr, handler)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        t = threading.Thread(target=self._worker, args=(request, client_address), daemon=True)
        try:
            t.start()
        except RuntimeError:  # cannot start a thread: shed the connection
            self.slots.release()
            self.shutdown_request(request)

    def _worker(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        except BaseException as e:  # noqa: BLE001 - a connection must never kill the server
            quiet_error(f"port {self.server_address[1]}", e)
        finally:
            self.shutdown_request(request)
            self.slots.release()

    def handle_error(self, request, client_address):
        quiet_error(f"port {self.server_address[1]}", sys.exc_info()[1] or Exception("?"))


class HTTPHandler(http.server.BaseHTTPRequestHandler):
    server_version = "scanfleet-lab-httpd/1.0"
    timeout = 10  # socket timeout for every read/write

    def version_string(self):
        return self.server_version

    def log_message(self, format, *args):  # noqa: A002 - no per-request logging
        pass

    def _send(self, code: int, title: str, text: str, body: bool = True, extra: dict | None = None):
        page = (
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title></head>\n"
            f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>\n"
        ).encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if body:
            self.wfile.write(page)

    def _get(self, body: bool):
        idx, port = self.server.index, self.server.server_address[1]
        if self.path.split("?", 1)[0] in ("/", "/index.html"):
            self._send(200, self.server.title, f"{host_name(idx)} ({host_ip(idx)}) port {port}", body)
        else:
            self._send(404, "404 Not Found", "The requested URL was not found on this server.", body)

    def do_GET(self):
        self._get(True)

    def do_HEAD(self):
        self._get(False)

    def do_OPTIONS(self):
        self._send(200, self.server.title, "options", False, {"Allow": "GET, HEAD, OPTIONS"})

    def do_POST(self):  # the body is not read: HTTP/1.0, the connection closes after the reply
        self._send(405, "405 Method Not Allowed", "POST is not allowed here.", True, {"Allow": "GET, HEAD, OPTIONS"})


class HTTPSHandler(HTTPHandler):
    def setup(self):
        self.request.settimeout(self.timeout)
        # the TLS handshake runs here, in the connection's own thread
        self.request = self.server.ssl_ctx.wrap_socket(self.request, server_side=True)
        super().setup()

    def finish(self):
        try:
            super().finish()
        finally:
            try:
                self.request.close()
            except OSError:
                pass


def _drain(sock: socket.socket, limit: int) -> None:
    """Read and discard until EOF, timeout or `limit` bytes; never buffers."""
    total = 0
    while total < limit:
        data = sock.recv(4096)
        if not data:
            return
        total += len(data)


class SSHHandler(socketserver.BaseRequestHandler):
    def handle(self):
        s = self.request
        s.settimeout(10)
        s.sendall(SSH_BANNER)
        _drain(s, 64 * 1024)  # client identification + KEXINIT, then give up like a picky sshd


class SMTPHandler(socketserver.BaseRequestHandler):
    MAX_LINE = 1024
    MAX_CMDS = 50

    def handle(self):
        s = self.request
        s.settimeout(30)
        name = fqdn(self.server.index)
        s.sendall(f"220 {name} ESMTP Postfix\r\n".encode())
        f = s.makefile("rb")
        try:
            for _ in range(self.MAX_CMDS):
                line = f.readline(self.MAX_LINE + 1)
                if not line:
                    return
                if len(line) > self.MAX_LINE and not line.endswith(b"\n"):
                    s.sendall(b"500 5.5.0 Error: line too long\r\n")
                    return
                words = line.strip().split(None, 1)
                cmd = words[0].upper() if words else b""
                if cmd == b"EHLO":
                    s.sendall(
                        f"250-{name}\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n"
                        "250-ETRN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n".encode()
                    )
                elif cmd == b"HELO":
                    s.sendall(f"250 {name}\r\n".encode())
                elif cmd in (b"NOOP", b"RSET"):
                    s.sendall(b"250 2.0.0 Ok\r\n")
                elif cmd == b"QUIT":
                    s.sendall(b"221 2.0.0 Bye\r\n")
                    return
                elif cmd == b"":
                    s.sendall(b"500 5.5.2 Error: bad syntax\r\n")
                else:
                    s.sendall(b"502 5.5.2 Error: command not recognized\r\n")
            s.sendall(b"421 4.7.0 Error: too many commands\r\n")
        finally:
            f.close()


class SilentHandler(socketserver.BaseRequestHandler):
    HOLD_SECONDS = 600

    def handle(self):
        s = self.request
        s.settimeout(self.HOLD_SECONDS)  # idle limit; then the connection is closed
        _drain(s, 1 << 30)


def make_tls_context(run_dir: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(run_dir, "tls", "cert.pem"), os.path.join(run_dir, "tls", "key.pem"))
    return ctx


def serve(args) -> int:
    manifest = parse_manifest(args.manifest)
    idx = args.index
    p = profile_for(manifest, idx)
    ip = host_ip(idx)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, 65536), hard))
    except (ValueError, OSError):
        pass
    threading.stack_size(512 * 1024)

    ssl_ctx = None
    servers: list[LabServer] = []
    for s in p.services:
        if s.kind == "redis":
            continue
        common = {"index": idx}
        if s.kind == "http":
            srv = LabServer((ip, s.port), HTTPHandler, title=s.title or f"{host_name(idx)}:{s.port}", **common)
        elif s.kind == "https":
            ssl_ctx = ssl_ctx or make_tls_context(args.run_dir)
            srv = LabServer(
                (ip, s.port), HTTPSHandler, title=s.title or f"{host_name(idx)}:{s.port}", ssl_ctx=ssl_ctx, **common
            )
        elif s.kind == "ssh":
            srv = LabServer((ip, s.port), SSHHandler, **common)
        elif s.kind == "smtp":
            srv = LabServer((ip, s.port), SMTPHandler, **common)
        elif s.kind == "silent":
            srv = LabServer((ip, s.port), SilentHandler, max_conns=256, **common)
        else:  # pragma: no cover - parse_manifest rejects unknown kinds
            raise ManifestError(f"unknown kind {s.kind}")
        servers.append(srv)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    for srv in servers:
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True).start()

    # ready: every port is bound and listening
    tmp = f"{args.pidfile}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, args.pidfile)
    log(f"{host_name(idx)} {ip} serving {', '.join(f'{s.port}/{s.kind}' for s in p.services if s.kind != 'redis')}")

    while not stop.wait(3600):
        pass
    log("stopping")
    try:
        with open(args.pidfile) as f:
            if f.read().strip() == str(os.getpid()):
                os.unlink(args.pidfile)
    except OSError:
        pass
    os._exit(0)  # do not wait for connection threads (e.g. held silent connections)


# ---------------------------------------------------------------- CLI


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", default=os.environ.get("SFLAB_MANIFEST", os.path.join(HERE, "manifest")))
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check")
    r = sub.add_parser("render")
    r.add_argument("--run-dir", help="write RUN_DIR/tI/nft.conf (only if changed)")
    r.add_argument("--hosts", required=True)
    for name in ("inventory", "truth"):
        q = sub.add_parser(name)
        q.add_argument("--hosts", default="")
        if name == "truth":
            q.add_argument("--all", action="store_true")
    s = sub.add_parser("serve")
    s.add_argument("--index", type=int, required=True)
    s.add_argument("--run-dir", required=True)
    s.add_argument("--pidfile", required=True)
    args = ap.parse_args(argv)

    try:
        if args.cmd == "serve":
            return serve(args)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `lab.sh truth | head` ends quietly
        manifest = parse_manifest(args.manifest)
        if args.cmd == "check":
            return 0
        indices = parse_hosts(args.hosts)
        if args.cmd == "render":
            for i in indices:
                p = profile_for(manifest, i)
                print(plan_line(i, p))
                if not args.run_dir:
                    continue
                d = os.path.join(args.run_dir, f"t{i}")
                os.makedirs(d, exist_ok=True)
                text = nft_ruleset(i, p)
                path = os.path.join(d, "nft.conf")
                try:
                    with open(path) as f:
                        same = f.read() == text
                except OSError:
                    same = False
                if not same:
                    with open(path + ".tmp", "w") as f:
                        f.write(text)
                    os.replace(path + ".tmp", path)
        elif args.cmd == "inventory":
            print(json.dumps(inventory(manifest, indices), indent=2))
        elif args.cmd == "truth":
            for rec in truth(manifest, indices, args.all):
                print(json.dumps(rec, separators=(",", ":")))
    except ManifestError as e:
        print(f"manifest error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"services.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
