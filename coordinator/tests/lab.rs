//! End-to-end scans of the namespace lab (`loadtest/lab.sh`): the scanner runs in
//! the lab's scanner namespace and its results are compared with the ground
//! truth derived from `loadtest/lab/manifest`. Needs root; prints why it skips
//! otherwise. Traffic stays inside the lab's namespaces.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output};

use support::{LAB, lab_ready, lab_sh, packets, parse_open, truth};

fn scan_in_lab(args: &[&str]) -> Output {
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        "sflab-scan",
        env!("CARGO_BIN_EXE_scanfleet"),
    ])
    .args(args);
    cmd.output()
        .expect("run scanfleet in the scanner namespace")
}

fn full_sweep_matches_truth(mode: &str) {
    let _turn = LAB.lock().unwrap_or_else(|p| p.into_inner());
    if !lab_ready() {
        return;
    }
    let t = truth();
    packets(6, true);
    let out = scan_in_lab(&[
        "scan",
        "--inventory",
        t.inventory.to_str().unwrap(),
        "-p-",
        "--format",
        "jsonl",
        "--mode",
        mode,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "scan failed: {err}");
    assert!(
        err.contains(&format!("engine {mode}")),
        "engine not {mode}: {err}"
    );

    let got = parse_open(&out.stdout);
    let want = t.in_scope();
    let got_ports: BTreeSet<_> = got.keys().collect();
    let want_ports: BTreeSet<_> = want.keys().collect();
    assert_eq!(
        got_ports, want_ports,
        "open ports differ from the ground truth\nstderr: {err}"
    );
    for (k, name) in &want {
        assert_eq!(&got[k], name, "service on {k:?}");
    }
    assert!(
        !t.prohibited.is_empty(),
        "the lab should have a t2.nano host"
    );
    for ip in &t.prohibited {
        assert!(
            err.contains(&format!("({ip}): instance type")),
            "skip of {ip} not reported: {err}"
        );
    }
    assert_eq!(packets(6, false), 0, "the t2.nano host received packets");
}

#[test]
fn lab_connect_sweep_matches_ground_truth() {
    full_sweep_matches_truth("connect");
}

#[test]
fn lab_syn_sweep_matches_ground_truth() {
    full_sweep_matches_truth("syn");
}

#[test]
fn lab_states_of_firewalled_ports() {
    let _turn = LAB.lock().unwrap_or_else(|p| p.into_inner());
    if !lab_ready() {
        return;
    }
    let all = lab_sh(&["truth", "--all"]);
    let want: BTreeMap<(String, u16), String> = String::from_utf8_lossy(&all.stdout)
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let state = v["state"].as_str().unwrap_or("open").to_string();
            Some((
                (v["ip"].as_str()?.to_string(), v["port"].as_u64()? as u16),
                state,
            ))
        })
        .filter(|((ip, _), _)| ip == "10.213.0.13")
        .collect();
    assert!(
        want.values().any(|s| s == "filtered") && want.values().any(|s| s == "closed"),
        "{want:?}"
    );
    let ports: Vec<String> = want.keys().map(|(_, p)| p.to_string()).collect();
    for mode in ["connect", "syn"] {
        let out = scan_in_lab(&[
            "scan",
            "-t",
            "10.213.0.13",
            "-p",
            &ports.join(","),
            "--all-states",
            "--format",
            "jsonl",
            "--mode",
            mode,
            "--no-service-detection",
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: BTreeMap<(String, u16), String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    (
                        v["ip"].as_str().unwrap().to_string(),
                        v["port"].as_u64().unwrap() as u16,
                    ),
                    v["state"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(got, want, "mode {mode}");
    }
}

/// Packets the scanner namespace tried to send off the lab subnet (its nftables
/// "off-lab" drop counter).
fn off_lab_packets() -> u64 {
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            "sflab-scan",
            "nft",
            "list",
            "chain",
            "ip",
            "sflab",
            "output",
        ])
        .output()
        .expect("nft in the scanner namespace");
    let text = String::from_utf8_lossy(&o.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no off-lab counter: {text}"))
}

#[test]
fn lab_syn_scope_holds_for_mapped_and_non_unicast_targets() {
    let _turn = LAB.lock().unwrap_or_else(|p| p.into_inner());
    if !lab_ready() {
        return;
    }
    let quick = [
        "-p",
        "1-1000",
        "--mode",
        "syn",
        "--no-ping",
        "--no-service-detection",
        "--format",
        "jsonl",
    ];
    // The IPv4-mapped spelling of an excluded host: not one packet reaches it.
    packets(1, true);
    let mut args = vec![
        "scan",
        "-t",
        "::ffff:10.213.0.11",
        "--exclude",
        "10.213.0.0/24",
    ];
    args.extend(quick);
    let out = scan_in_lab(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("excluded block 10.213.0.0/24"), "{err}");
    assert!(out.stdout.is_empty(), "results for an excluded host");
    assert_eq!(packets(1, false), 0, "the excluded host received packets");

    // Multicast and broadcast in SYN mode: refused before any packet, on or off the lab.
    let off_lab = off_lab_packets();
    for target in ["224.0.0.1", "255.255.255.255", "10.213.0.0/24,224.0.0.251"] {
        let mut args = vec!["scan", "-t", target];
        args.extend(quick);
        let out = scan_in_lab(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{target}: {err}");
        assert!(err.contains("--allow-address-class"), "{target}: {err}");
    }
    assert_eq!(
        packets(1, false),
        0,
        "a refused scan sent packets to the lab"
    );
    assert_eq!(
        off_lab_packets(),
        off_lab,
        "a refused scan sent packets off the lab"
    );

    // Control: the same mapped spelling without the exclusion is scanned, and its
    // results name the IPv4 address.
    let mut args = vec!["scan", "-t", "::ffff:10.213.0.11"];
    args.extend(quick);
    let out = scan_in_lab(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\"ip\":\"10.213.0.11\""), "{text}");
    assert!(packets(1, false) > 0, "the control scan sent nothing");
}
