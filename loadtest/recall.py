#!/usr/bin/env python3
"""Driver for loadtest/recall.sh (issue 10, recall under loss): repeated full SYN sweeps
of the pacing lab's lossy host (the c5.large that drops 20 % of the scanner's packets,
manifest.pacing host 5, 10.217.0.15), with default settings:

  embedded: scanfleet scan --inventory INV -p- --mode syn --no-service-detection
            inside sfp-scan, RUNS times;
  fleet:    three scanfleet-worker processes inside sfp-scan (RabbitMQ vhost of our own
            on 127.0.0.1:5672, Redis 127.0.0.1:6379, both reached through `lab.sh relay`),
            the coordinator on the host; in every run, once the target has received 5 000
            probes, the worker using the most CPU (the one holding the shard) is killed
            with SIGKILL and a fresh worker is started for the next run. RUNS times.

Prints per run the open ports found of the truth's (and any extra), and per mode how many
runs found every open port. Every run is bounded (timeout); the vhost, the scans' Redis
keys (results and history), the relays this script started and every process it started
are removed at the end, also on failure.
"""
import argparse
import datetime
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX, NET = "sfp", "10.217.0"
NS = f"{PREFIX}-scan"
LOSSY_INDEX = 5
LAB_ENV = dict(os.environ, SFLAB_PREFIX=PREFIX, SFLAB_NET=NET,
               SFLAB_MANIFEST=os.path.join(ROOT, "loadtest/lab/manifest.pacing"))
REDIS = "redis://127.0.0.1:6379"


def lab(*args):
    return subprocess.run([os.path.join(ROOT, "loadtest/lab.sh"), *args], check=True,
                          capture_output=True, text=True, env=LAB_ENV).stdout


def counter():
    out = subprocess.run(["ip", "netns", "exec", f"{PREFIX}-t{LOSSY_INDEX}", "nft", "list", "counter", "ip",
                          "sflab", "scanner_rx"], capture_output=True, text=True, check=True).stdout.split()
    return int(out[out.index("packets") + 1])


def open_ports(text, ip):
    got = set()
    for line in text.splitlines():
        if line.strip():
            j = json.loads(line)
            if j.get("ip") == ip and j.get("state", "open") == "open" and j.get("protocol", "tcp") == "tcp":
                got.add(j["port"])
    return got


def listening(port):
    out = subprocess.run(["ip", "netns", "exec", NS, "ss", "-Hltn", f"sport = :{port}"], capture_output=True,
                         text=True).stdout
    return bool(out.strip())


def cpu_ticks(pid):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])
    except (OSError, IndexError, ValueError):
        return -1


class Fleet:
    def __init__(self, worker_bin, tmp):
        self.worker_bin = worker_bin
        self.tmp = tmp
        self.vhost = f"sfrecall-{os.getpid()}-{int(time.time())}"
        self.secret = secrets.token_hex(32)
        self.queue = f"amqp://guest:guest@127.0.0.1:5672/{self.vhost}"
        self.workers = []  # Popen
        self.relays = []  # ports whose relay we started
        self.scan_ids = []
        self.vhost_made = False

    def setup(self):
        for port in (5672, 6379):
            if not listening(port):
                lab("relay", str(port))
                self.relays.append(port)
        subprocess.run(["rabbitmqctl", "-q", "add_vhost", self.vhost], check=True, capture_output=True)
        self.vhost_made = True
        subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*"],
                       check=True, capture_output=True)

    def env(self):
        return dict(os.environ, SCANFLEET_JOB_SECRET=self.secret, SCANFLEET_LOG="warn")

    def spawn_worker(self):
        log = open(os.path.join(self.tmp, f"worker-{len(self.workers)}.log"), "w")
        p = subprocess.Popen(["ip", "netns", "exec", NS, self.worker_bin, "--queue", self.queue, "--redis", REDIS,
                              "--lease-secs", "10", "--grace-secs", "20"], env=self.env(),
                             stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        self.workers.append(p)
        return p

    def live(self):
        return [w for w in self.workers if w.poll() is None]

    def run(self, sf_bin, inv, ip, limit):
        while len(self.live()) < 3:
            self.spawn_worker()
        time.sleep(0.5)
        c0 = counter()
        out_path = os.path.join(self.tmp, f"fleet-{len(self.scan_ids)}.jsonl")
        err_path = out_path + ".err"
        t0 = time.monotonic()
        with open(out_path, "w") as out, open(err_path, "w") as err:
            p = subprocess.Popen([sf_bin, "scan", "--inventory", inv, "-p-", "--mode", "syn",
                                  "--no-service-detection", "--queue", self.queue, "--redis", REDIS,
                                  "--format", "jsonl", "--progress", "never", "--deadline", str(limit)],
                                 env=self.env(), stdout=out, stderr=err, start_new_session=True)
            killed = None
            while p.poll() is None and time.monotonic() - t0 < limit + 30:
                if killed is None and counter() - c0 >= 5000:
                    live = self.live()
                    before = {w.pid: cpu_ticks(w.pid) for w in live}
                    time.sleep(0.5)
                    busy = max(live, key=lambda w: cpu_ticks(w.pid) - before[w.pid])
                    delta = cpu_ticks(busy.pid) - before[busy.pid]
                    os.kill(busy.pid, signal.SIGKILL)
                    busy.wait(10)
                    killed = (busy.pid, counter() - c0, delta, time.monotonic() - t0)
                time.sleep(0.2)
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)
        wall = time.monotonic() - t0
        err_text = open(err_path).read()
        m = re.search(r"scanfleet: scan (\S+?):", err_text)
        if m:
            self.scan_ids.append(m.group(1))
        else:
            self.scan_ids.append(None)
        return (p.returncode, wall, open_ports(open(out_path).read(), ip), killed, counter() - c0,
                err_text.strip().splitlines()[-1:] if err_text.strip() else [])

    def cleanup(self):
        for w in self.workers:
            if w.poll() is None:
                try:
                    os.killpg(w.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for w in self.workers:
            try:
                w.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(w.pid, signal.SIGKILL)
                w.wait(5)
        keys = 0
        for sid in filter(None, self.scan_ids):
            names = [f"scanfleet:{{{sid}}}:{k}" for k in ("meta", "results", "shards", "ports", "stats", "stream")]
            names += [f"scanfleet:history:{{{sid}}}:{k}" for k in ("record", "assets", "results")]
            names += subprocess.run(["redis-cli", "-u", REDIS, "--scan", "--pattern", f"*{sid}*"],
                                    capture_output=True, text=True).stdout.split()
            r = subprocess.run(["redis-cli", "-u", REDIS, "DEL", *sorted(set(names))], capture_output=True, text=True)
            keys += int(r.stdout.strip() or 0)
            subprocess.run(["redis-cli", "-u", REDIS, "ZREM", "scanfleet:history:scans", sid], capture_output=True)
        if self.vhost_made:
            subprocess.run(["rabbitmqctl", "-q", "delete_vhost", self.vhost], capture_output=True)
        for port in self.relays:
            lab("relay-stop", str(port))
        return keys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--worker-bin", required=True)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--modes", default="embedded,fleet")
    ap.add_argument("--limit", type=int, default=120, help="seconds one run may take at most")
    ap.add_argument("--out", default=os.path.join(ROOT, "loadtest/out"))
    a = ap.parse_args()
    assert 1 <= a.runs <= 50

    ip = f"{NET}.{10 + LOSSY_INDEX}"
    inv_all = json.loads(lab("inventory"))
    inv = [x for x in inv_all if x["private_ip"] == ip]
    truth = {t["port"] for t in map(json.loads, filter(str.strip, lab("truth").splitlines())) if t["ip"] == ip}
    tmp = tempfile.mkdtemp(prefix="sfrecall-")
    os.environ["SCANFLEET_STATE_DIR"] = os.path.join(tmp, "state")  # embedded history: not the shared one
    inv_path = os.path.join(tmp, "inventory.json")
    json.dump(inv, open(inv_path, "w"))
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"recall under loss, {stamp}: {ip} ({inv[0].get('instance_type')}, drops 20 % of the scanner's "
             f"packets), {len(truth)} open ports in truth: {sorted(truth)}; load average at start "
             f"{' '.join(open('/proc/loadavg').read().split()[:3])}", ""]
    summary = []

    if "embedded" in a.modes:
        cmd = ["ip", "netns", "exec", NS, a.bin, "scan", "--inventory", inv_path, "-p-", "--mode", "syn",
               "--no-service-detection", "--format", "jsonl"]
        lines += [f"embedded: `{' '.join(cmd).replace(inv_path, 'INV')}`", "",
                  "| run | wall s | found | missed | extra | packets to target |", "|---:|---:|---:|---|---|---:|"]
        full = 0
        for i in range(a.runs):
            c0 = counter()
            t0 = time.monotonic()
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=a.limit)
            wall = time.monotonic() - t0
            if p.returncode != 0:
                sys.exit(f"recall: embedded run {i + 1} failed ({p.returncode}): {p.stderr[-2000:]}")
            got = open_ports(p.stdout, ip)
            full += truth <= got
            lines.append(f"| {i + 1} | {wall:.1f} | {len(got & truth)}/{len(truth)} | "
                         f"{sorted(truth - got) or '-'} | {sorted(got - truth) or '-'} | {counter() - c0:,} |")
            print(lines[-1], file=sys.stderr)
        summary.append(f"embedded: {full} of {a.runs} runs found every open port")
        lines.append("")

    if "fleet" in a.modes:
        fleet = Fleet(a.worker_bin, tmp)
        rows = []
        try:
            fleet.setup()
            for i in range(a.runs):
                rc, wall, got, killed, pk, last = fleet.run(a.bin, inv_path, ip, a.limit)
                rows.append((rc, wall, got, killed, pk, last))
                k = (f"pid {killed[0]} after {killed[1]:,} probes at {killed[3]:.1f} s ({killed[2]} CPU ticks "
                     f"in 0.5 s)" if killed else "none (scan ended first)")
                line = (f"| {i + 1} | {rc} | {wall:.1f} | {len(got & truth)}/{len(truth)} | "
                        f"{sorted(truth - got) or '-'} | {sorted(got - truth) or '-'} | {pk:,} | {k} |")
                print(line, file=sys.stderr)
        finally:
            keys = fleet.cleanup()
        lines += [f"fleet: 3 x `ip netns exec {NS} {a.worker_bin} --queue amqp://guest:guest@127.0.0.1:5672/VHOST "
                  f"--redis {REDIS} --lease-secs 10 --grace-secs 20`, coordinator `{a.bin} scan --inventory INV -p- "
                  f"--mode syn --no-service-detection --queue ... --redis {REDIS} --format jsonl --progress never "
                  f"--deadline {a.limit}`; a worker killed with SIGKILL in every run",
                  "", "| run | exit | wall s | found | missed | extra | packets to target | killed |",
                  "|---:|---:|---:|---:|---|---|---:|---|"]
        full = 0
        for i, (rc, wall, got, killed, pk, last) in enumerate(rows):
            full += rc == 0 and truth <= got
            k = (f"pid {killed[0]} after {killed[1]:,} probes at {killed[3]:.1f} s ({killed[2]} CPU ticks in "
                 f"0.5 s)" if killed else "none (scan ended first)")
            lines.append(f"| {i + 1} | {rc} | {wall:.1f} | {len(got & truth)}/{len(truth)} | "
                         f"{sorted(truth - got) or '-'} | {sorted(got - truth) or '-'} | {pk:,} | {k} |")
        lines.append("")
        summary.append(f"fleet (3 workers, one killed with -9 per run): {full} of {len(rows)} runs found every "
                       f"open port (exit 0); {sum(1 for r in rows if r[3])} runs had a worker killed mid-scan")
        lines.append(f"cleanup: vhost {fleet.vhost} deleted, {keys} Redis keys of {len(fleet.scan_ids)} scans deleted")
    lines += ["", *summary]
    report = "\n".join(lines)
    print(report)
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, f"recall-{int(time.time())}.md")
    open(path, "w").write(report + "\n")
    print(f"(written to {path})", file=sys.stderr)


if __name__ == "__main__":
    main()
