#!/usr/bin/env python3
"""Benchmark driver for loadtest/bench.sh: runs each scanner inside the lab's
scanner namespace, scores it against `lab.sh truth`, prints a table and ratios.
Every command it runs targets only the lab's addresses (10.213.0.0/24, inside
namespaces the lab built)."""
import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

LAB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lab.sh")
PROHIBITED = {"t2.nano", "t1.micro", "m1.small"}


def lab(*args):
    return subprocess.run([LAB, *args], check=True, capture_output=True, text=True).stdout


def in_ns(cmd):
    return ["ip", "netns", "exec", "sflab-scan", *cmd]


def timed(cmd, stdout_path=None):
    """Run under GNU time; return (wall seconds, peak RSS MiB, CPU percent, stdout text)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        full = ["/usr/bin/time", "-f", "%e %M %P", "-o", tf.name, *cmd]
        out = open(stdout_path, "w") if stdout_path else subprocess.PIPE
        t0 = time.monotonic()
        p = subprocess.run(full, stdout=out, stderr=subprocess.PIPE, text=True)
        wall = time.monotonic() - t0
        if stdout_path:
            out.close()
        if p.returncode != 0:
            sys.exit(f"bench: {' '.join(cmd)} failed ({p.returncode}): {p.stderr[-2000:]}")
        parts = open(tf.name).read().split()
        rss = int(parts[-2]) / 1024 if len(parts) >= 3 else 0.0
        cpu = parts[-1] if parts else "?"
        text = open(stdout_path).read() if stdout_path else p.stdout
        return wall, rss, cpu, text, p.stderr


def score(found, truth):
    tp = len(found & truth)
    recall = tp / len(truth) if truth else 1.0
    precision = tp / len(found) if found else (1.0 if not truth else 0.0)
    return recall, precision


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--rate", type=int, default=50000)
    ap.add_argument("--bin", default="target/release/scanfleet")
    a = ap.parse_args()

    inv = json.loads(lab("inventory"))
    scope = [x for x in inv if x.get("instance_type") not in PROHIBITED]
    ips = [x["private_ip"] for x in scope]
    truth_lines = [json.loads(l) for l in lab("truth").splitlines() if l.strip()]
    truth = {(t["ip"], t["port"]) for t in truth_lines if t["ip"] in ips}
    names = {(t["ip"], t["port"]): t.get("service") for t in truth_lines if t["ip"] in ips}
    tmp = tempfile.mkdtemp(prefix="sfbench-")
    inv_path = os.path.join(tmp, "inventory.json")
    json.dump(scope, open(inv_path, "w"))
    probes = len(ips) * 65535
    rows = []

    # scanfleet SYN sweep, no service detection
    out = os.path.join(tmp, "sf.jsonl")
    wall, rss, cpu, text, err = timed(in_ns([a.bin, "scan", "--inventory", inv_path, "-p-", "--mode", "syn",
                                             "--no-service-detection", "--no-ping", "--rate", str(a.rate),
                                             "--format", "jsonl"]), out)
    found = {(j["ip"], j["port"]) for j in map(json.loads, text.splitlines()) if j["state"] == "open"}
    rows.append(("scanfleet -p- syn", wall, probes / wall, *score(found, truth), rss, cpu))

    # nmap SYN sweep
    xml_path = os.path.join(tmp, "nmap.xml")
    wall, rss, cpu, _, _ = timed(in_ns(["nmap", "-n", "-Pn", "-sS", "-p-", "--min-rate", str(a.rate),
                                        "-oX", xml_path, *ips]))
    found = set()
    for host in ET.parse(xml_path).getroot().iter("host"):
        addr = host.find("address").get("addr")
        for p in host.iter("port"):
            if p.find("state").get("state") == "open":
                found.add((addr, int(p.get("portid"))))
    rows.append(("nmap -sS -p-", wall, probes / wall, *score(found, truth), rss, cpu))

    # masscan sweep (needs the scanner namespace's default route into the lab)
    ml = os.path.join(tmp, "masscan.txt")
    wall, rss, cpu, _, _ = timed(in_ns(["masscan", "-p1-65535", "--rate", str(a.rate), "--wait", "2",
                                        "-oL", ml, *ips]))
    found = set()
    for line in open(ml):
        f = line.split()
        if len(f) >= 4 and f[0] == "open":
            found.add((f[3], int(f[2])))
    rows.append(("masscan -p1-65535", wall, probes / wall, *score(found, truth), rss, cpu))

    # Service detection on the open ports (silent listener included), both tools
    ports = ",".join(sorted({str(p) for _, p in truth}, key=int))
    out = os.path.join(tmp, "sf-sv.jsonl")
    wall_sv, rss, cpu, text, _ = timed(in_ns([a.bin, "scan", "--inventory", inv_path, "-p", ports, "--mode", "syn",
                                              "--no-ping", "--format", "jsonl"]), out)
    sf_names = {(j["ip"], j["port"]): (j.get("service") or {}).get("name") for j in map(json.loads, text.splitlines())}
    sf_ok = sum(1 for k in truth if sf_names.get(k) == names[k])
    xml_sv = os.path.join(tmp, "nmap-sv.xml")
    nwall_sv, nrss, ncpu, _, _ = timed(in_ns(["nmap", "-n", "-Pn", "-sS", "-sV", "-p", ports, "-oX", xml_sv, *ips]))
    nm_names = {}
    for host in ET.parse(xml_sv).getroot().iter("host"):
        addr = host.find("address").get("addr")
        for p in host.iter("port"):
            svc = p.find("service")
            if p.find("state").get("state") == "open" and svc is not None:
                tunnel = svc.get("tunnel")
                n = svc.get("name")
                nm_names[(addr, int(p.get("portid")))] = "https" if (tunnel == "ssl" and n == "http") or n == "https" else n
    nm_ok = sum(1 for k in truth if (nm_names.get(k) or None) == names[k] or (names[k] is None and nm_names.get(k) in (None, "unknown", "tcpwrapped")))

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# scanfleet benchmark, {stamp}",
             f"lab: {len(ips)} in-scope hosts (of {len(inv)}), {len(truth)} open ports in truth, rate {a.rate} pps",
             "",
             f"| run | wall s | probes/s (first pass) | recall | precision | peak RSS MiB | CPU |",
             "|---|---|---|---|---|---|---|"]
    for name, wall, pps, rec, prec, rss, cpu in rows:
        lines.append(f"| {name} | {wall:.2f} | {pps:,.0f} | {rec:.1%} | {prec:.1%} | {rss:.1f} | {cpu} |")
    sf, nm, ms = rows
    lines += ["",
              f"full sweep: scanfleet/nmap wall time = {sf[1] / nm[1]:.2f} (target <= 0.50); "
              f"scanfleet/masscan = {sf[1] / ms[1]:.2f}",
              "",
              f"| service detection | wall s | names matching truth |",
              "|---|---|---|",
              f"| scanfleet (-p {ports}) | {wall_sv:.2f} | {sf_ok}/{len(truth)} |",
              f"| nmap -sV | {nwall_sv:.2f} | {nm_ok}/{len(truth)} |",
              "",
              f"service detection: nmap -sV / scanfleet wall time = {nwall_sv / wall_sv:.1f}x (target >= 10x)"]
    mismatch = [(k, sf_names.get(k), names[k]) for k in sorted(truth) if sf_names.get(k) != names[k]]
    if mismatch:
        lines.append(f"scanfleet service mismatches (got, want): {mismatch}")
    report = "\n".join(lines)
    print(report)
    os.makedirs("loadtest/out", exist_ok=True)
    with open(f"loadtest/out/bench-{int(time.time())}.md", "w") as f:
        f.write(report + "\n")


if __name__ == "__main__":
    main()
