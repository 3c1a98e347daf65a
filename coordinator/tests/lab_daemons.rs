//! Service detection against real Debian daemons: `scanfleet scan` runs in the
//! real-daemon lab's scanner namespace (`loadtest/daemons.sh`, prefix `sfd`)
//! against its hosts, and every open port's service name, product and version
//! is compared with `daemons.sh truth` (derived from the installed packages and
//! the configs the lab wrote).
//!
//! The whole truth is asserted. What today's detector does not get right is
//! listed, one check per line with its reason, in
//! `loadtest/lab/daemons-known-gaps.txt`: the test fails when a check NOT in
//! that list is wrong, and also when a listed check has become right (remove
//! the line), so the list only shrinks.
//!
//! Runs when root and `SCANFLEET_LAB=1` (scripts/test.sh brings the lab up) and
//! the daemon lab is up; says why it skips otherwise.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Output};

use support::{is_root, repo};

const PREFIX: &str = "sfd";
const NET: &str = "10.216.0";

fn daemons_sh(args: &[&str]) -> Output {
    Command::new(repo().join("loadtest/daemons.sh"))
        .args(args)
        .env("SFLAB_PREFIX", PREFIX)
        .env("SFLAB_NET", NET)
        .output()
        .expect("run loadtest/daemons.sh")
}

fn scan_in_lab(args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", &format!("{PREFIX}-scan")])
        .arg(env!("CARGO_BIN_EXE_scanfleet"))
        .args(args)
        .output()
        .expect("run scanfleet in the daemon lab's scanner namespace")
}

/// (host, port, protocol), e.g. ("t3", 445, "tcp")
type Key = (String, u16, String);

#[derive(Debug)]
struct Want {
    ip: String,
    service: Option<String>,
    product: Option<String>,
    version: Option<String>,
    announces: Vec<String>,
    daemon: Option<String>,
}

#[derive(Debug, Default)]
struct Got {
    name: Option<String>,
    product: Option<String>,
    version: Option<String>,
}

fn key_text((host, port, proto): &Key) -> String {
    format!("{host}:{port}/{proto}")
}

fn truth() -> BTreeMap<Key, Want> {
    let out = daemons_sh(&["truth"]);
    assert!(
        out.status.success(),
        "daemons.sh truth failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut want = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("truth is JSON lines");
        let s = |f: &str| v[f].as_str().map(str::to_string);
        let key = (
            s("host").expect("host"),
            u16::try_from(v["port"].as_u64().expect("port")).expect("port fits u16"),
            s("protocol").expect("protocol"),
        );
        let announces = v["announces"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let w = Want {
            ip: s("ip").expect("ip"),
            service: s("service"),
            product: s("product"),
            version: s("version"),
            announces,
            daemon: s("daemon"),
        };
        assert!(
            want.insert(key.clone(), w).is_none(),
            "{key:?} twice in the truth"
        );
    }
    want
}

/// Open results of a JSON-lines scan, keyed by (host, port, protocol).
fn parse_results(stdout: &[u8], hosts: &BTreeMap<String, String>) -> BTreeMap<Key, Got> {
    let mut got = BTreeMap::new();
    for line in String::from_utf8_lossy(stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("scan output is JSON lines");
        if v["state"] != "open" {
            continue;
        }
        let ip = v["ip"].as_str().expect("ip").to_string();
        let host = hosts
            .get(&ip)
            .unwrap_or_else(|| panic!("result for {ip}, not a daemon lab host"))
            .clone();
        let proto = v["protocol"].as_str().unwrap_or("tcp").to_string();
        let key = (
            host,
            u16::try_from(v["port"].as_u64().expect("port")).expect("port fits u16"),
            proto,
        );
        let svc = &v["service"];
        let s = |f: &str| svc[f].as_str().map(str::to_string);
        let g = Got {
            name: s("name"),
            product: s("product"),
            version: s("version"),
        };
        assert!(
            got.insert(key.clone(), g).is_none(),
            "{key:?} reported twice"
        );
    }
    got
}

fn product_matches(want: &str, got: &str) -> bool {
    got.to_lowercase().contains(&want.to_lowercase())
}

/// The upstream version appears in the reported one as a whole token: exactly,
/// or with separators around it (BIND's "9.18.49-1~deb12u3-Debian", MariaDB's
/// "5.5.5-10.11.19-MariaDB-0+deb12u1"), never as part of a longer version.
fn version_matches(want: &str, got: &str) -> bool {
    let part = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '.');
    !want.is_empty()
        && got.match_indices(want).any(|(at, _)| {
            !part(got[..at].chars().next_back()) && !part(got[at + want.len()..].chars().next())
        })
}

/// Every check of the truth: (check id "t3:445/tcp name", what is wrong) for the wrong ones.
fn wrong_checks(want: &BTreeMap<Key, Want>, got: &BTreeMap<Key, Got>) -> BTreeMap<String, String> {
    let mut wrong = BTreeMap::new();
    for (k, w) in want {
        let id = key_text(k);
        let Some(g) = got.get(k) else {
            wrong.insert(format!("{id} open"), "not reported open".to_string());
            continue;
        };
        if g.name != w.service {
            wrong.insert(
                format!("{id} name"),
                format!("name {:?}, truth {:?}", g.name, w.service),
            );
        }
        if let Some(tp) = &w.product {
            let announced = w.announces.iter().any(|a| a == "product");
            match &g.product {
                Some(gp) if !product_matches(tp, gp) => {
                    wrong.insert(
                        format!("{id} product"),
                        format!("product {gp:?}, truth {tp:?}"),
                    );
                }
                None if announced => {
                    wrong.insert(
                        format!("{id} product"),
                        format!("no product, truth {tp:?} (announced)"),
                    );
                }
                _ => {}
            }
        }
        if let Some(tv) = &w.version {
            let announced = w.announces.iter().any(|a| a == "version");
            match &g.version {
                Some(gv) if !version_matches(tv, gv) => {
                    wrong.insert(
                        format!("{id} version"),
                        format!("version {gv:?}, truth {tv:?}"),
                    );
                }
                None if announced => {
                    wrong.insert(
                        format!("{id} version"),
                        format!("no version, truth {tv:?} (announced)"),
                    );
                }
                _ => {}
            }
        }
    }
    for k in got.keys().filter(|k| !want.contains_key(*k)) {
        wrong.insert(
            format!("{} open", key_text(k)),
            "reported open, not in the truth".to_string(),
        );
    }
    wrong
}

fn gaps_file() -> PathBuf {
    repo().join("loadtest/lab/daemons-known-gaps.txt")
}

/// check id -> reason, from `daemons-known-gaps.txt` ("t3:445/tcp name  reason...").
fn known_gaps() -> BTreeMap<String, String> {
    let path = gaps_file();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut gaps = BTreeMap::new();
    for (no, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(port), Some(field)) = (words.next(), words.next()) else {
            panic!(
                "{}:{}: want `tI:PORT/PROTO FIELD REASON`",
                path.display(),
                no + 1
            );
        };
        assert!(
            ["open", "name", "product", "version"].contains(&field),
            "{}:{}: field {field:?} is not open|name|product|version",
            path.display(),
            no + 1
        );
        let reason: Vec<&str> = words.collect();
        assert!(
            !reason.is_empty(),
            "{}:{}: {port} {field} has no reason",
            path.display(),
            no + 1
        );
        let id = format!("{port} {field}");
        assert!(
            gaps.insert(id.clone(), reason.join(" ")).is_none(),
            "{}:{}: {id} listed twice",
            path.display(),
            no + 1
        );
    }
    gaps
}

fn udp_supported() -> bool {
    let out = Command::new(env!("CARGO_BIN_EXE_scanfleet"))
        .args(["scan", "--help"])
        .output()
        .expect("scanfleet scan --help");
    String::from_utf8_lossy(&out.stdout).contains("--udp-ports")
}

#[test]
fn lab_real_daemons_match_the_ground_truth() {
    if !is_root() {
        eprintln!("skipped: the daemon lab needs root (network namespaces)");
        return;
    }
    if std::env::var("SCANFLEET_LAB").as_deref() != Ok("1") {
        eprintln!(
            "skipped: SCANFLEET_LAB=1 not set (scripts/test.sh sets it after `loadtest/daemons.sh up`)"
        );
        return;
    }
    let status = daemons_sh(&["status"]);
    if !status.status.success() {
        eprintln!(
            "skipped: the daemon lab is not up (loadtest/daemons.sh up):\n{}",
            String::from_utf8_lossy(&status.stdout)
        );
        return;
    }

    let want = truth();
    assert!(
        want.values().filter(|w| w.daemon.is_some()).count() >= 20,
        "the daemon lab should have at least 20 daemon ports"
    );
    let hosts: BTreeMap<String, String> = want
        .iter()
        .map(|((h, _, _), w)| (w.ip.clone(), h.clone()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let inventory = dir.path().join("daemon-lab-inventory.json");
    let inv = daemons_sh(&["inventory"]);
    assert!(inv.status.success(), "daemons.sh inventory failed");
    std::fs::write(&inventory, &inv.stdout).unwrap();

    let ports = |proto: &str| -> String {
        let set: BTreeSet<u16> = want
            .keys()
            .filter(|(_, _, p)| p == proto)
            .map(|(_, port, _)| *port)
            .collect();
        set.iter().map(u16::to_string).collect::<Vec<_>>().join(",")
    };
    // the odd host's firewalled port too (it must not be reported open)
    let tcp_ports = format!("{},8443", ports("tcp"));
    let out = scan_in_lab(&[
        "scan",
        "--inventory",
        inventory.to_str().unwrap(),
        "-p",
        &tcp_ports,
        "--format",
        "jsonl",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "TCP scan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut got = parse_results(&out.stdout, &hosts);
    if udp_supported() {
        let out = scan_in_lab(&[
            "scan",
            "--inventory",
            inventory.to_str().unwrap(),
            "--udp-ports",
            &ports("udp"),
            "--format",
            "jsonl",
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "UDP scan failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        got.extend(
            parse_results(&out.stdout, &hosts)
                .into_iter()
                .filter(|((_, _, p), _)| p == "udp"),
        );
    } else {
        eprintln!("note: this scanfleet has no --udp-ports; the UDP ports are reported not open");
    }

    // the table, for whoever reads a failure
    for (k, w) in &want {
        let g = got.get(k);
        eprintln!(
            "{:<14} {:<10} truth {:<11} {:<18} {:<9} | scanfleet {:<11} {:<22} {}",
            key_text(k),
            w.daemon.as_deref().unwrap_or("-"),
            w.service.as_deref().unwrap_or("-"),
            w.product.as_deref().unwrap_or("-"),
            w.version.as_deref().unwrap_or("-"),
            g.map_or("(not open)", |g| g.name.as_deref().unwrap_or("-")),
            g.and_then(|g| g.product.as_deref()).unwrap_or("-"),
            g.and_then(|g| g.version.as_deref()).unwrap_or("-"),
        );
    }

    let wrong = wrong_checks(&want, &got);
    let gaps = known_gaps();
    let unexpected: Vec<String> = wrong
        .iter()
        .filter(|(id, _)| !gaps.contains_key(*id))
        .map(|(id, why)| format!("  {id}: {why}"))
        .collect();
    let fixed: Vec<String> = gaps
        .iter()
        .filter(|(id, _)| !wrong.contains_key(*id))
        .map(|(id, reason)| format!("  {id}  (listed: {reason})"))
        .collect();
    assert!(
        unexpected.is_empty() && fixed.is_empty(),
        "the scan differs from the truth beyond {}:\n\
         wrong and not listed ({}):\n{}\n\
         listed but now right, remove these lines ({}):\n{}",
        gaps_file().display(),
        unexpected.len(),
        unexpected.join("\n"),
        fixed.len(),
        fixed.join("\n"),
    );
}

#[test]
fn version_and_product_comparison_rules() {
    assert!(version_matches("9.2p1", "9.2p1"));
    assert!(version_matches("9.18.49", "9.18.49-1~deb12u3-Debian"));
    assert!(version_matches("10.11.19", "10.11.19-MariaDB-0+deb12u1"));
    assert!(!version_matches("9.18.4", "9.18.49"));
    assert!(!version_matches("2.4", "2.4.71"));
    assert!(version_matches("10.11.19", "5.5.5-10.11.19-MariaDB"));
    assert!(!version_matches("1.6.1", "1.6.18"));
    assert!(!version_matches("11.19", "10.11.19"));
    assert!(product_matches("Apache", "Apache httpd"));
    assert!(product_matches("BIND", "ISC BIND"));
    assert!(!product_matches("nginx", "Apache httpd"));
}
