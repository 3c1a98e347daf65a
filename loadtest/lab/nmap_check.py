#!/usr/bin/env python3
"""Compare an nmap XML report (-oX) with the lab's ground truth.

    lab.sh truth --all > truth.jsonl
    python3 loadtest/lab/nmap_check.py truth.jsonl scan.xml [--service]

Checks, for every host nmap reports that the truth knows:
  * the set of open ports equals the truth's open ports;
  * every closed/filtered port of `truth --all` has that state in nmap
    (a port nmap folds into "Not shown: N closed" counts as closed);
  * with --service (for -sV reports): nmap's service name per open port,
    printed next to the truth's (informational, nmap names differ, e.g.
    https may come back as "ssl/http").
Exit 0 if all agree, 1 otherwise. Stdlib only.
"""

import json
import sys
import xml.etree.ElementTree as ET


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    show_service = "--service" in sys.argv
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    truth: dict[str, dict[int, dict]] = {}
    with open(args[0]) as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                truth.setdefault(r["ip"], {})[r["port"]] = r
    root = ET.parse(args[1]).getroot()
    bad = 0
    for host in root.iter("host"):
        ip = next((a.get("addr") for a in host.iter("address") if a.get("addrtype") == "ipv4"), None)
        if ip not in truth:
            print(f"{ip}: not in truth (host not up in the lab?)")
            continue
        listed: dict[int, tuple[str, str, str]] = {}
        default_state = None
        ports = host.find("ports")
        if ports is not None:
            for ep in ports.findall("extraports"):
                default_state = ep.get("state")
            for p in ports.findall("port"):
                st = p.find("state")
                svc = p.find("service")
                name = ""
                if svc is not None:
                    name = (svc.get("tunnel") + "/" if svc.get("tunnel") else "") + (svc.get("name") or "")
                    if svc.get("product"):
                        name += f" [{svc.get('product')} {svc.get('version') or ''}".rstrip() + "]"
                listed[int(p.get("portid"))] = (st.get("state"), st.get("reason"), name)
        t = truth[ip]
        want_open = {p for p, r in t.items() if r.get("state", "open") == "open"}
        got_open = {p for p, (s, _, _) in listed.items() if s == "open"}
        line = []
        if want_open != got_open:
            bad = 1
            line.append(f"OPEN MISMATCH truth={sorted(want_open)} nmap={sorted(got_open)}")
        for p, r in sorted(t.items()):
            want = r.get("state", "open")
            if want == "open":
                continue
            got, reason, _ = listed.get(p, (default_state, "(extraports)", ""))
            ok = got == want
            bad |= not ok
            line.append(f"{p}:{got}({reason}){'' if ok else ' != ' + want}")
        print(f"{ip}: open {sorted(got_open)} {'OK' if want_open == got_open else ''} " + " ".join(line))
        if show_service:
            for p in sorted(want_open):
                print(f"    {p}: truth={t[p].get('service')!s:6} nmap={listed.get(p, ('', '', '?'))[2]}")
    for ip in sorted(set(truth) - {a.get("addr") for a in root.iter("address")}):
        print(f"{ip}: in truth but not in the nmap report")
    return bad


if __name__ == "__main__":
    sys.exit(main())
