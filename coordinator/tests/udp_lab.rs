//! UDP scans (`-sU`) of the UDP lab: real Debian daemons (bind9, chrony,
//! snmpd, memcached, tftpd-hpa, avahi-daemon) in the second lab `sfu`
//! (10.218.0.0/24, `loadtest/lab/udp.sh`), with a port dropped by nftables and
//! ports where nothing listens. The scanner runs in the lab's scanner
//! namespace; `nmap -sU` scans the same ports there for reference (printed, and
//! recorded in loadtest/RESULTS.md). Gated on SCANFLEET_LAB=1 and root.

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::Instant;

use support::{is_root, repo};

const PREFIX: &str = "sfu";
const NET: &str = "10.218.0";
const T1: &str = "10.218.0.11";
const T2: &str = "10.218.0.12";
const PORTS: &str = "9,53,69,123,137,161,500,514,1900,5353,11211";

fn lab_env(cmd: &mut Command) -> &mut Command {
    cmd.env("SFLAB_PREFIX", PREFIX)
        .env("SFLAB_NET", NET)
        .env("SFLAB_MANIFEST", repo().join("loadtest/lab/manifest-udp"))
}

/// Bring the UDP lab and its daemons up (both steps are idempotent), or say why not.
fn udp_lab_ready() -> bool {
    if std::env::var("SCANFLEET_LAB").as_deref() != Ok("1") {
        eprintln!("skipped: set SCANFLEET_LAB=1 (scripts/test.sh does) to scan the UDP lab");
        return false;
    }
    if !is_root() {
        eprintln!("skipped: the UDP lab needs root (network namespaces)");
        return false;
    }
    let up = lab_env(&mut Command::new(repo().join("loadtest/lab.sh")))
        .args(["up", "2"])
        .output()
        .expect("run lab.sh");
    assert!(
        up.status.success(),
        "lab.sh up 2 (sfu): {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let udp = lab_env(&mut Command::new(repo().join("loadtest/lab/udp.sh")))
        .arg("up")
        .output()
        .expect("run udp.sh");
    assert!(
        udp.status.success(),
        "udp.sh up: {}",
        String::from_utf8_lossy(&udp.stderr)
    );
    true
}

fn in_scanner(program: &str, args: &[&str]) -> (Output, f64) {
    let started = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", &format!("{PREFIX}-scan"), program])
        .args(args)
        .output()
        .expect("run in the scanner namespace");
    (out, started.elapsed().as_secs_f64())
}

/// (ip, port, protocol) -> (state, service name, the result line).
type Results = BTreeMap<(String, u16, String), (String, Option<String>, serde_json::Value)>;

fn parse(stdout: &[u8]) -> Results {
    let mut got = Results::new();
    for line in String::from_utf8_lossy(stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("jsonl");
        let key = (
            v["ip"].as_str().unwrap().to_string(),
            v["port"].as_u64().unwrap() as u16,
            v["protocol"].as_str().unwrap().to_string(),
        );
        let state = v["state"].as_str().unwrap().to_string();
        let name = v["service"]["name"].as_str().map(str::to_string);
        assert!(
            got.insert(key.clone(), (state, name, v)).is_none(),
            "{key:?} twice"
        );
    }
    got
}

/// `udp.sh truth`: (ip, port) -> (state, service).
fn truth() -> BTreeMap<(String, u16), (String, Option<String>)> {
    let out = lab_env(&mut Command::new(repo().join("loadtest/lab/udp.sh")))
        .arg("truth")
        .output()
        .expect("udp.sh truth");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                (
                    v["ip"].as_str().unwrap().to_string(),
                    v["port"].as_u64().unwrap() as u16,
                ),
                (
                    v["state"].as_str().unwrap().to_string(),
                    v["service"].as_str().map(str::to_string),
                ),
            )
        })
        .collect()
}

/// nmap's state per port from its XML (`<port protocol="udp" portid="53"><state state="open"`).
fn nmap_states(xml: &str) -> BTreeMap<(String, u16), String> {
    let mut out = BTreeMap::new();
    for host in xml.split("<host ").skip(1) {
        let Some(ip) = host
            .split("<address addr=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
        else {
            continue;
        };
        for port in host.split("<port protocol=\"udp\" portid=\"").skip(1) {
            let num: u16 = port.split('"').next().unwrap().parse().unwrap();
            let state = port
                .split("<state state=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap()
                .to_string();
            out.insert((ip.to_string(), num), state);
        }
    }
    out
}

#[test]
fn udp_scan_of_real_daemons_matches_the_truth_and_nmap() {
    if !udp_lab_ready() {
        return;
    }
    let truth = truth();
    let (out, ours_secs) = in_scanner(
        env!("CARGO_BIN_EXE_scanfleet"),
        &[
            "scan",
            "-t",
            &format!("{T1},{T2}"),
            "-sU",
            "-p",
            PORTS,
            "--all-states",
            "--no-ping",
            "--format",
            "jsonl",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "scan failed: {err}");
    let got = parse(&out.stdout);
    // -sU alone: UDP only, every port of both hosts decided.
    assert_eq!(got.len(), 2 * PORTS.split(',').count(), "{got:#?}");
    assert!(got.keys().all(|(_, _, proto)| proto == "udp"), "{got:#?}");
    for ((ip, port), (state, service)) in &truth {
        let (s, name, line) = &got[&(ip.clone(), *port, "udp".to_string())];
        assert_eq!(s, state, "{ip}:{port}/udp: {line}");
        assert_eq!(name, service, "service on {ip}:{port}/udp: {line}");
        if s == "open" {
            assert_eq!(line["reason"], "udp-response", "{line}");
            assert!(line["service"]["extra"]["udp"].is_string(), "{line}");
        }
        if s == "closed" {
            assert_eq!(line["reason"], "port-unreach", "{line}");
        }
    }
    // Facts from the daemons' answers.
    let svc = |port: u16| got[&(T1.to_string(), port, "udp".to_string())].2["service"].clone();
    assert_eq!(svc(53)["product"], "ISC BIND", "{}", svc(53));
    assert!(svc(53)["version"].as_str().unwrap().starts_with("9."));
    assert_eq!(svc(123)["extra"]["ntp.stratum"], "10");
    assert_eq!(svc(161)["extra"]["snmp.community"], "public");
    assert!(
        svc(161)["extra"]["snmp.sysdescr"]
            .as_str()
            .unwrap()
            .starts_with("Linux ")
    );
    assert_eq!(svc(11211)["product"], "memcached");
    assert_eq!(svc(69)["extra"]["udp"], "tftp");
    assert!(
        svc(5353)["extra"]["mdns.services"]
            .as_str()
            .unwrap()
            .contains("_workstation._tcp")
    );
    // t2's snmpd ignores `public` but answers SNMPv3 engine discovery.
    let t2_snmp = &got[&(T2.to_string(), 161, "udp".to_string())].2["service"];
    assert_eq!(t2_snmp["product"], "net-snmp", "{t2_snmp}");
    assert_eq!(t2_snmp["extra"]["snmp.version"], "3", "{t2_snmp}");

    // nmap -sU on the same ports, for reference: printed, not asserted on.
    let (nm, nmap_secs) = in_scanner(
        "nmap",
        &["-sU", "-n", "-Pn", "-p", PORTS, "-oX", "-", T1, T2],
    );
    assert!(
        nm.status.success(),
        "nmap: {}",
        String::from_utf8_lossy(&nm.stderr)
    );
    let theirs = nmap_states(&String::from_utf8_lossy(&nm.stdout));
    let mut agree = 0;
    eprintln!(
        "{:<22} {:<14} {:<14} truth",
        "port", "scanfleet", "nmap -sU"
    );
    for ((ip, port), (state, _)) in &truth {
        let ours = &got[&(ip.clone(), *port, "udp".to_string())].0;
        let nmap = theirs.get(&(ip.clone(), *port)).map_or("-", String::as_str);
        agree += usize::from(ours == nmap);
        eprintln!(
            "{:<22} {ours:<14} {nmap:<14} {state}",
            format!("{ip}:{port}/udp")
        );
    }
    eprintln!(
        "UDP lab: {} ports, states agree with nmap on {agree}; wall scanfleet {ours_secs:.2} s, nmap -sU {nmap_secs:.2} s",
        truth.len()
    );
}

#[test]
fn tcp_and_udp_in_one_scan_keep_their_protocols_apart() {
    if !udp_lab_ready() {
        return;
    }
    // nmap's prefixes: U: items are UDP, T: items TCP; both protocols scanned.
    let (out, _) = in_scanner(
        env!("CARGO_BIN_EXE_scanfleet"),
        &[
            "scan",
            "-t",
            T1,
            "-p",
            "U:53,9,T:22",
            "--no-ping",
            "--format",
            "jsonl",
            "--all-states",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "scan failed: {err}");
    let got = parse(&out.stdout);
    let state = |port: u16, proto: &str| got[&(T1.to_string(), port, proto.to_string())].0.clone();
    assert_eq!(got.len(), 3, "{got:#?}");
    assert_eq!(state(22, "tcp"), "open");
    assert_eq!(state(53, "udp"), "open");
    assert_eq!(state(9, "udp"), "closed");
}
