#!/usr/bin/env python3
"""Driver for loadtest/pacing_bench.sh (issue 10): one run of scanfleet's default-paced
full SYN sweep, `nmap -sS -p- --min-rate R` and `masscan -p0-65535 --rate R` on the
pacing lab (prefix sfp, 10.217.0.11-15), every tool inside the lab's scanner namespace.

For each tool: wall time, recall and precision against the lab's truth (`lab.sh truth`
on manifest.pacing), and packets per target per second measured on the TARGET side: the
nftables counter `scanner_rx` of each target namespace (what `lab.sh packets I` reads) is
sampled about every second while the tool runs; the largest one-interval rate is printed
against the target's ceiling from the budget derivation (README "Pacing", common/src/rate.rs):
    budget  = clamp(baseline_bps * 5 % / 672, 100, 20000)
    ceiling = clamp(budget * 200 %, budget, 20000)
with baseline_mbps from data/instance-network.csv. Scan traffic goes only to the lab's
addresses; counters are read, never reset (the lab is shared).
"""
import argparse
import csv
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PREFIX = "sfp"
NET = "10.217.0"
SCAN_NS = f"{PREFIX}-scan"
LAB_ENV = dict(os.environ, SFLAB_PREFIX=PREFIX, SFLAB_NET=NET,
               SFLAB_MANIFEST=os.path.join(ROOT, "loadtest/lab/manifest.pacing"))
# Budget defaults ([rate] in the config file), as in common/src/rate.rs.
PCT, GROWTH, MIN_PPS, MAX_PPS, DEFAULT_PPS = 5.0, 200, 100, 20000, 2000
GLOBAL_CAP = 20000  # ProbeProfile::default().global_rate_pps (common/src/types.rs)


def lab(*args):
    return subprocess.run([os.path.join(ROOT, "loadtest/lab.sh"), *args], check=True,
                          capture_output=True, text=True, env=LAB_ENV).stdout


def budget(itype, table):
    mbps = table.get(itype)
    start = int(mbps * 1e6 * PCT / 100 / (84 * 8)) if mbps else DEFAULT_PPS
    start = max(MIN_PPS, min(MAX_PPS, start))
    ceiling = max(start, min(MAX_PPS, start * GROWTH // 100))
    return start, ceiling


def load_table():
    table = {}
    with open(os.path.join(ROOT, "data/instance-network.csv")) as f:
        for row in csv.reader(l for l in f if not l.startswith("#")):
            if len(row) >= 2 and row[1].isdigit():
                table[row[0]] = int(row[1])
    return table


def read_counter(index):
    out = subprocess.run(["ip", "netns", "exec", f"{PREFIX}-t{index}", "nft", "list", "counter", "ip",
                          "sflab", "scanner_rx"], capture_output=True, text=True, check=True).stdout
    f = out.split()
    return int(f[f.index("packets") + 1])


class Sampler(threading.Thread):
    """Samples every target's scanner_rx counter about once a second (bounded by stop())."""

    def __init__(self, indices):
        super().__init__(daemon=True)
        self.indices = indices
        self.samples = []  # (monotonic time, {index: packets})
        self.halt = threading.Event()

    def sample(self):
        t = time.monotonic()
        self.samples.append((t, {i: read_counter(i) for i in self.indices}))

    def run(self):
        self.sample()
        while not self.halt.wait(1.0):
            self.sample()

    def stop(self):
        self.halt.set()
        self.join(10)
        self.sample()

    def stats(self):
        """Per target: (max pps over one sampling interval, packets in total)."""
        res = {}
        for i in self.indices:
            peak = 0.0
            for (t0, c0), (t1, c1) in zip(self.samples, self.samples[1:]):
                if t1 - t0 >= 0.5:  # skip the short last interval
                    peak = max(peak, (c1[i] - c0[i]) / (t1 - t0))
            res[i] = (peak, self.samples[-1][1][i] - self.samples[0][1][i])
        peak = 0.0
        for (t0, c0), (t1, c1) in zip(self.samples, self.samples[1:]):
            if t1 - t0 >= 0.5:
                peak = max(peak, sum(c1[i] - c0[i] for i in self.indices) / (t1 - t0))
        res["all"] = (peak, sum(res[i][1] for i in self.indices))
        return res


def run_tool(cmd, indices, out_path=None, limit=1200):
    sampler = Sampler(indices)
    sampler.start()
    t0 = time.monotonic()
    with open(out_path, "w") if out_path else open(os.devnull, "w") as out:
        try:
            p = subprocess.run(cmd, stdout=out, stderr=subprocess.PIPE, text=True, timeout=limit)
        except subprocess.TimeoutExpired:
            sampler.stop()
            sys.exit(f"pacing_bench: {' '.join(cmd)} ran over {limit} s")
    wall = time.monotonic() - t0
    sampler.stop()
    if p.returncode != 0:
        sys.exit(f"pacing_bench: {' '.join(cmd)} failed ({p.returncode}): {p.stderr[-3000:]}")
    return wall, sampler.stats(), p.stderr, sampler.samples


def run_masscan(cmd, indices, limit=1200):
    """masscan 1.3.2 in the lab namespace sometimes never exits after its --wait (its status
    line counts "waiting -460-secs"): watch the status line; if masscan still runs 10 s after
    its wait ran out, stop it with SIGINT (it then writes its -oL file and exits) and take the
    wall time at the end of its wait. Returns (wall, stats, stderr, note)."""
    sampler = Sampler(indices)
    sampler.start()
    t0 = time.monotonic()
    # masscan prints "Discovered open port P/tcp on IP" as it finds them (without -oL);
    # line-buffered (stdbuf), so that a stopped masscan still leaves them
    stdout_path = os.path.join(tempfile.gettempdir(), f"sfpacing-masscan-{os.getpid()}.out")
    p = subprocess.Popen(cmd, stdout=open(stdout_path, "w"), stderr=subprocess.PIPE, cwd=tempfile.gettempdir())
    expired = []
    chunks = []

    def reader():
        buf = b""
        while True:
            b = p.stderr.read1(4096)
            if not b:
                return
            chunks.append(b)
            buf = (buf + b)[-200:]
            m = re.findall(rb"waiting (-?\d+)-secs", buf)
            if m and int(m[-1]) < 0 and not expired:
                expired.append(time.monotonic())

    rt = threading.Thread(target=reader, daemon=True)
    rt.start()
    note = ""
    while p.poll() is None:
        now = time.monotonic()
        if now - t0 > limit:
            p.kill()
            sys.exit(f"pacing_bench: masscan ran over {limit} s")
        if expired and now - expired[0] > 10:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
            note = (f"masscan did not exit after its --wait (still running {now - expired[0]:.0f} s after it); "
                    "stopped with SIGINT, wall taken at the end of its wait")
            break
        time.sleep(0.2)
    end = time.monotonic()
    rt.join(5)
    sampler.stop()
    wall = (expired[0] - t0) if note else (end - t0)
    err = b"".join(chunks).decode(errors="replace")
    discovered = set()
    for m in re.finditer(r"Discovered open port (\d+)/tcp on (\S+)", open(stdout_path).read()):
        discovered.add((m.group(2), int(m.group(1))))
    os.unlink(stdout_path)
    if not note and p.returncode != 0:
        sys.exit(f"pacing_bench: masscan failed ({p.returncode}): {err[-2000:]}")
    return wall, sampler.stats(), err, note, discovered


def score(found, truth):
    tp = len(found & truth)
    return tp / len(truth), (tp / len(found) if found else 0.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--rate", type=int, default=5000, help="nmap --min-rate and masscan --rate")
    ap.add_argument("--masscan-wait", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(ROOT, "loadtest/out"))
    a = ap.parse_args()

    inv = json.loads(lab("inventory"))
    truth_rows = [json.loads(l) for l in lab("truth").splitlines() if l.strip()]
    truth = {(t["ip"], t["port"]) for t in truth_rows}
    ips = [x["private_ip"] for x in inv]
    indices = [int(ip.rsplit(".", 1)[1]) - 10 for ip in ips]
    table = load_table()
    budgets = {i: budget(x.get("instance_type"), table) for i, x in zip(indices, inv)}
    tmp = tempfile.mkdtemp(prefix="sfpacing-")
    # scanfleet's embedded scans record a history; keep it in the run's directory, not in
    # the machine's shared state directory
    os.environ["SCANFLEET_STATE_DIR"] = os.path.join(tmp, "state")
    inv_path = os.path.join(tmp, "inventory.json")
    with open(inv_path, "w") as f:
        json.dump(inv, f)
    spec = f"{NET}.{min(indices) + 10}-{max(indices) + 10}"
    ns = ["ip", "netns", "exec", SCAN_NS]
    load = []  # uptime at each tool's start

    def up():
        load.append(open("/proc/loadavg").read().split()[:3])

    rows = []
    # 1. scanfleet, default pacing (budgets from the inventory's instance types)
    sf_cmd = [a.bin, "scan", "--inventory", inv_path, "-p-", "--mode", "syn", "--no-service-detection",
              "--format", "jsonl"]
    up()
    out = os.path.join(tmp, "scanfleet.jsonl")
    wall, pk, err, sf_samples = run_tool(ns + sf_cmd, indices, out)
    found = set()
    for line in open(out):
        if line.strip():
            j = json.loads(line)
            if j.get("state", "open") == "open":
                found.add((j["ip"], j["port"]))
    rows.append(("scanfleet", " ".join(sf_cmd).replace(inv_path, "INV"), wall, found, pk))
    sf_err = err

    # 2. nmap
    xml_path = os.path.join(tmp, "nmap.xml")
    nm_cmd = ["nmap", "-n", "-Pn", "-sS", "-p-", "--min-rate", str(a.rate), "-oX", xml_path, spec]
    up()
    wall, pk, _, _ = run_tool(ns + nm_cmd, indices)
    found = set()
    for host in ET.parse(xml_path).getroot().iter("host"):
        addr = host.find("address").get("addr")
        for p in host.iter("port"):
            if p.find("state").get("state") == "open":
                found.add((addr, int(p.get("portid"))))
    rows.append(("nmap", " ".join(nm_cmd).replace(xml_path, "X.xml"), wall, found, pk))

    # 3. masscan: raw frames from the scanner's eth0 to the lab's router MAC (br0 in
    # sfp-br), which the bridge rewrites to the target's MAC (lab.sh ensure_bridge_l2).
    ml = os.path.join(tmp, "masscan.txt")
    mac = subprocess.run(["ip", "-n", SCAN_NS, "-br", "link", "show", "eth0"], capture_output=True,
                         text=True, check=True).stdout.split()[2]
    router = subprocess.run(["ip", "-n", f"{PREFIX}-br", "-br", "link", "show", "br0"], capture_output=True,
                            text=True, check=True).stdout.split()[2]
    ms_cmd = ["masscan", "-p0-65535", "--rate", str(a.rate), "--wait", str(a.masscan_wait), "-e", "eth0",
              "--adapter-ip", f"{NET}.2", "--adapter-mac", mac, "--router-mac", router, f"{NET}.{min(indices) + 10}-{NET}.{max(indices) + 10}"]
    up()
    wall, pk, _, ms_note, found = run_masscan(ns[:4] + ["stdbuf", "-oL"] + ms_cmd, indices)
    for line in open(ml) if os.path.exists(ml) else []:
        f = line.split()
        if len(f) >= 4 and f[0] == "open":
            found.add((f[3], int(f[2])))
    rows.append(("masscan", "stdbuf -oL " + " ".join(ms_cmd), wall, found, pk))

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    types = {i: x.get("instance_type") for i, x in zip(indices, inv)}
    lines = [f"pacing benchmark, {stamp}; lab sfp {spec}: " +
             ", ".join(f"t{i} {types[i]}" for i in indices) +
             f"; {len(truth)} open ports in truth",
             "load average (1/5/15 min) at each tool's start: " +
             "; ".join(f"{r[0]} {' '.join(l)}" for r, l in zip(rows, load)),
             ""]
    for name, cmd, *_ in rows:
        lines.append(f"- {name}: `ip netns exec {SCAN_NS} {cmd}`")
    lines += ["", "| tool | wall s | recall | precision | missed | extra |", "|---|---:|---:|---:|---|---|"]
    for name, _, wall, found, _ in rows:
        rec, prec = score(found, truth)
        missed = " ".join(f"{ip.rsplit('.', 1)[1]}:{p}" for ip, p in sorted(truth - found)) or "-"
        extra = " ".join(f"{ip.rsplit('.', 1)[1]}:{p}" for ip, p in sorted(found - truth)) or "-"
        lines.append(f"| {name} | {wall:.2f} | {rec:.1%} | {prec:.1%} | {missed} | {extra} |")
    sf, nm, ms = rows
    if ms_note:
        lines += ["", f"note: {ms_note}"]
    lines += ["", f"scanfleet/nmap wall = {sf[2] / nm[2]:.2f} (goal <= 0.50); "
                  f"scanfleet/masscan wall = {sf[2] / ms[2]:.2f} (goal <= 1.00)", "",
              "Packets per second each target received from the scanner (nftables counter "
              "`scanner_rx` in the target namespace, sampled every ~1 s; max over the intervals):", "",
              "| target | type | budget pps | ceiling pps | scanfleet max pps | max / ceiling | max / budget "
              "| scanfleet packets | nmap max pps | masscan max pps |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    over = []
    for i in indices:
        start, ceil = budgets[i]
        peak, total = sf[4][i]
        if peak > ceil:
            over.append(i)
        lines.append(f"| t{i} | {types[i]} | {start} | {ceil} | {peak:,.0f} | {peak / ceil:.2f} | "
                     f"{peak / start:.2f} | {total:,} | {nm[4][i][0]:,.0f} | {ms[4][i][0]:,.0f} |")
    peak, total = sf[4]["all"]
    lines += ["", f"all targets together during scanfleet's run: {total:,} packets in {sf[2]:.1f} s = "
                  f"{total / sf[2]:,.0f} pps on average, {peak:,.0f} pps in the busiest interval; scanfleet's "
                  f"global cap (default --rate, README) is {GLOBAL_CAP:,} pps"]
    lines.append("")
    lines.append("scanfleet stayed under every target's ceiling" if not over else
                 f"scanfleet went ABOVE the ceiling of {', '.join(f't{i}' for i in over)} "
                 "(one-second windows; the sampling interval is not exact, see the total column)")
    summary = [l for l in sf_err.splitlines() if l.strip()][-12:]
    lines += ["", "scanfleet's stderr summary (last lines):", "", "```", *summary, "```"]
    report = "\n".join(lines)
    print(report)
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, f"pacing-bench-{int(time.time())}.md")
    with open(path, "w") as f:
        f.write(report + "\n")
    # scanfleet's full stderr and its per-second packet counts per target, for a closer look
    with open(path[:-3] + "-scanfleet.stderr", "w") as f:
        f.write(sf_err)
    with open(path[:-3] + "-scanfleet-samples.json", "w") as f:
        t0 = sf_samples[0][0]
        json.dump([[round(t - t0, 2), c] for t, c in sf_samples], f)
    print(f"\n(written to {path})", file=sys.stderr)


if __name__ == "__main__":
    main()
