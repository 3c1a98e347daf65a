#!/usr/bin/env python3
"""Compare scanfleet's and nmap's service detection with the real-daemon lab's truth.

  detect_bench.py TRUTH.jsonl SCANFLEET.jsonl NMAP_TCP.xml NMAP_UDP.xml \\
      --sf-wall S --nmap-wall S [--markdown OUT.md] [--command CMD]

Prints the per-port table and the counts. Names: nmap's names are mapped to
scanfleet's where they differ only in spelling (domain = dns, microsoft-ds =
smb, ssl/http = https, etcd-client = etcd); a name nmap only guessed from its
port table (method="table") counts as no name. Products and versions are
counted on the ports whose daemon announces them (truth `announces`), with the
rules of coordinator/tests/lab_daemons.rs: the product contains the truth's
product (any case), the version contains the upstream version as a whole token.
"""

import argparse
import json
import re
import sys
import xml.etree.ElementTree as ET

NMAP_NAMES = {"domain": "dns", "microsoft-ds": "smb", "etcd-client": "etcd", "ssl/http": "https",
              "https-alt": "https", "http-alt": "http"}


def product_ok(want, got):
    return bool(want and got and want.lower() in got.lower())


def version_ok(want, got):
    if not want or not got:
        return False
    for m in re.finditer(re.escape(want), got):
        before = got[m.start() - 1] if m.start() > 0 else ""
        after = got[m.end()] if m.end() < len(got) else ""
        if not (before.isalnum() or before == ".") and not (after.isalnum() or after == "."):
            return True
    return False


def load_truth(path):
    rows = {}
    for line in open(path):
        if line.strip():
            v = json.loads(line)
            rows[(v["ip"], v["port"], v["protocol"])] = v
    return rows


def load_scanfleet(path):
    got = {}
    for line in open(path):
        if not line.strip():
            continue
        v = json.loads(line)
        if v.get("state") != "open":
            continue
        s = v.get("service") or {}
        got[(v["ip"], v["port"], v.get("protocol", "tcp"))] = (s.get("name"), s.get("product"), s.get("version"))
    return got


def load_nmap(path, proto):
    got = {}
    if not path:
        return got
    root = ET.parse(path).getroot()
    for host in root.iter("host"):
        addr = host.find("address[@addrtype='ipv4']").get("addr")
        for p in host.iter("port"):
            if p.get("protocol") != proto:
                continue
            st = p.find("state").get("state")
            if st not in ("open", "open|filtered"):
                continue
            svc = p.find("service")
            name = product = version = None
            if svc is not None:
                if svc.get("method") != "table":
                    name = svc.get("name")
                    if svc.get("tunnel") == "ssl" and name == "http":
                        name = "https"
                    name = NMAP_NAMES.get(name, name)
                product = svc.get("product")
                version = " ".join(x for x in (svc.get("version"), svc.get("extrainfo")) if x) or None
            if st == "open|filtered" and name is None:
                continue  # nmap's "no answer": not reported open
            got[(addr, int(p.get("portid")), proto)] = (name, product, version)
    return got


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("truth")
    ap.add_argument("scanfleet")
    ap.add_argument("nmap_tcp")
    ap.add_argument("nmap_udp", nargs="?")
    ap.add_argument("--sf-wall", type=float, required=True)
    ap.add_argument("--nmap-wall", type=float, required=True)
    ap.add_argument("--markdown")
    ap.add_argument("--command", default="")
    ap.add_argument("--note", action="append", default=[])
    a = ap.parse_args()

    truth = load_truth(a.truth)
    sf = load_scanfleet(a.scanfleet)
    nm = load_nmap(a.nmap_tcp, "tcp")
    nm.update(load_nmap(a.nmap_udp, "udp"))

    def cell(got, t):
        if got is None:
            return "(not open)"
        n, p, v = got
        mark = lambda ok: "" if ok else "*"
        s = f"{n or '-'}{mark(n == t['service'])}"
        if p or v:
            s += f" / {p or '-'}"
            if v:
                s += f" {v}"
        return s

    counts = {k: dict(names=0, products=0, versions=0) for k in ("scanfleet", "nmap")}
    n_prod = sum(1 for t in truth.values() if "product" in t["announces"])
    n_ver = sum(1 for t in truth.values() if "version" in t["announces"])
    lines = []
    head = "| port | daemon | truth | scanfleet | nmap |"
    lines.append(head)
    lines.append("|---|---|---|---|---|")
    for key in sorted(truth, key=lambda k: (tuple(int(x) for x in k[0].split(".")), k[1], k[2])):
        t = truth[key]
        tcell = f"{t['service'] or '(silent)'}"
        if t["product"]:
            ann = "".join(x[0] for x in t["announces"]) or "-"
            tcell += f" / {t['product']} {t['version']} [{ann}]"
        row = [f"{t['host']} {key[1]}/{key[2]}", t["daemon"] or "python", tcell]
        for tool, got in (("scanfleet", sf.get(key)), ("nmap", nm.get(key))):
            if got is not None:
                if got[0] == t["service"]:  # the silent port: open, and no name
                    counts[tool]["names"] += 1
                if "product" in t["announces"] and product_ok(t["product"], got[1]):
                    counts[tool]["products"] += 1
                if "version" in t["announces"] and version_ok(t["version"], got[2]):
                    counts[tool]["versions"] += 1
            row.append(cell(got, t).replace("|", "\\|"))
        lines.append("| " + " | ".join(row) + " |")
    extra = {tool: sorted(set(g) - set(truth)) for tool, g in (("scanfleet", sf), ("nmap", nm))}
    n = len(truth)
    summary = [
        "",
        "`*` marks a wrong name; truth `[pv]`: the daemon announces product (p) and version (v).",
        "",
        "| | scanfleet | nmap |",
        "|---|---:|---:|",
        f"| names right (of {n} ports) | {counts['scanfleet']['names']} | {counts['nmap']['names']} |",
        f"| products right (of {n_prod} ports that announce one) | {counts['scanfleet']['products']} | {counts['nmap']['products']} |",
        f"| versions right (of {n_ver} ports that announce one) | {counts['scanfleet']['versions']} | {counts['nmap']['versions']} |",
        f"| open ports not in the truth | {len(extra['scanfleet'])} | {len(extra['nmap'])} |",
        f"| wall time | {a.sf_wall:.1f} s | {a.nmap_wall:.1f} s |",
        f"| ratio scanfleet / nmap | {a.sf_wall / a.nmap_wall:.3f} | 1 |",
    ]
    sfc, nmc = counts["scanfleet"], counts["nmap"]
    pv_total = n_prod + n_ver
    pv_sf = (sfc["products"] + sfc["versions"]) / pv_total if pv_total else 1.0
    ratio = a.sf_wall / a.nmap_wall
    summary += [
        "",
        "Goals (issue 13): names right >= nmap's: "
        f"{sfc['names']} vs {nmc['names']} -> {'met' if sfc['names'] >= nmc['names'] else 'NOT met'}; "
        f"products and versions right >= 90 % of those announced: {sfc['products'] + sfc['versions']}/{pv_total} "
        f"= {pv_sf:.0%} -> {'met' if pv_sf >= 0.9 else 'NOT met'}; "
        f"wall <= 0.05 x nmap: {ratio:.3f} -> {'met' if ratio <= 0.05 else 'NOT met'}.",
    ]
    text = "\n".join(lines + summary) + "\n"
    print(text)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(text)
    json.dump(dict(counts=counts, ports=n, announce_product=n_prod, announce_version=n_ver,
                   sf_wall=a.sf_wall, nmap_wall=a.nmap_wall), sys.stderr)
    print(file=sys.stderr)


if __name__ == "__main__":
    main()
