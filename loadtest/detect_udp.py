#!/usr/bin/env python3
"""UDP part of loadtest/detect_bench.sh: scanfleet -sU vs nmap -sU -sV on the UDP lab
(loadtest/lab/udp.sh, prefix sfu), per port state and name against `udp.sh truth`
(ports it does not list are closed: ICMP port unreachable).

  detect_udp.py TRUTH.jsonl SCANFLEET.jsonl NMAP.xml --ports P,.. --ips A,B \\
      --sf-wall S --nmap-wall S
"""
import argparse
import json
import xml.etree.ElementTree as ET

NMAP_NAMES = {"domain": "dns", "zeroconf": "mdns", "netbios-ns": "netbios"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("truth")
    ap.add_argument("scanfleet")
    ap.add_argument("nmap")
    ap.add_argument("--ports", required=True)
    ap.add_argument("--ips", required=True)
    ap.add_argument("--sf-wall", type=float, required=True)
    ap.add_argument("--nmap-wall", type=float, required=True)
    a = ap.parse_args()
    ports = [int(p) for p in a.ports.split(",")]
    ips = a.ips.split(",")
    truth = {}
    for line in open(a.truth):
        if line.strip():
            v = json.loads(line)
            truth[(v["ip"], v["port"])] = (v["state"], v.get("service"))
    sf = {}
    for line in open(a.scanfleet):
        if line.strip():
            v = json.loads(line)
            if v.get("protocol") == "udp":
                s = v.get("service") or {}
                sf[(v["ip"], v["port"])] = (v["state"], s.get("name"), s.get("product"), s.get("version"))
    nm = {}
    for host in ET.parse(a.nmap).getroot().iter("host"):
        addr = host.find("address[@addrtype='ipv4']").get("addr")
        for p in host.iter("port"):
            if p.get("protocol") != "udp":
                continue
            svc = p.find("service")
            name = product = version = None
            if svc is not None:
                if svc.get("method") != "table":
                    name = NMAP_NAMES.get(svc.get("name"), svc.get("name"))
                product = svc.get("product")
                version = " ".join(x for x in (svc.get("version"), svc.get("extrainfo")) if x) or None
            nm[(addr, int(p.get("portid")))] = (p.find("state").get("state"), name, product, version)
    # nmap folds ports in its "extraports" (closed ones) out of the XML list
    for host in ET.parse(a.nmap).getroot().iter("host"):
        addr = host.find("address[@addrtype='ipv4']").get("addr")
        for ex in host.iter("extraports"):
            for port in ports:
                nm.setdefault((addr, port), (ex.get("state"), None, None, None))

    rows = ["| host port/udp | truth | scanfleet | nmap -sU -sV |", "|---|---|---|---|"]
    c = {t: dict(state=0, names=0) for t in ("scanfleet", "nmap")}
    n_open = 0
    for ip in ips:
        for port in ports:
            st, name = truth.get((ip, port), ("closed", None))
            n_open += st == "open"
            cells = []
            for tool, got in (("scanfleet", sf.get((ip, port))), ("nmap", nm.get((ip, port)))):
                if got is None:
                    cells.append("(not reported)")
                    continue
                ok_state = got[0] == st
                c[tool]["state"] += ok_state
                if st == "open" and got[1] == name:
                    c[tool]["names"] += 1
                cell = f"{got[0]}{'' if ok_state else '*'}"
                if got[1] or got[2]:
                    cell += f" {got[1] or '-'}{'' if got[1] == name else '*'}"
                    if got[2] or got[3]:
                        cell += f" / {got[2] or '-'} {got[3] or ''}".rstrip()
                cells.append(cell.replace("|", "\\|"))
            rows.append(f"| {ip.rsplit('.', 1)[1]} {port} | {st}{' ' + name if name else ''} | {cells[0]} | {cells[1]} |")
    total = len(ips) * len(ports)
    rows += ["", "`*` marks a state or name that differs from the truth.", "",
             "| | scanfleet -sU | nmap -sU -sV |", "|---|---:|---:|",
             f"| states right (of {total}) | {c['scanfleet']['state']} | {c['nmap']['state']} |",
             f"| names right (of {n_open} open) | {c['scanfleet']['names']} | {c['nmap']['names']} |",
             f"| wall time | {a.sf_wall:.1f} s | {a.nmap_wall:.1f} s |",
             f"| ratio scanfleet / nmap | {a.sf_wall / a.nmap_wall:.3f} | 1 |"]
    print("\n".join(rows))


if __name__ == "__main__":
    main()
