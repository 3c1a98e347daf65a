//! End-to-end scans of the namespace lab (`loadtest/lab.sh`): the scanner runs in
//! the lab's scanner namespace and its results are compared with the ground
//! truth derived from `loadtest/lab/manifest`. Needs root; prints why it skips
//! otherwise. Traffic stays inside the lab's namespaces.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// `cargo test` runs tests of one binary in parallel threads: sweeps take turns.
static LAB: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn lab_sh(args: &[&str]) -> Output {
    Command::new(repo().join("loadtest/lab.sh")).args(args).output().expect("run loadtest/lab.sh")
}

/// Bring the lab up when it is not, or say why this test cannot run.
fn lab_ready() -> bool {
    if unsafe { libc_geteuid() } != 0 {
        eprintln!("skipped: the lab needs root (network namespaces); CI runs as root");
        return false;
    }
    let up = Command::new("ip").args(["netns", "list"]).output().map(|o| String::from_utf8_lossy(&o.stdout).contains("sflab-scan"));
    match up {
        Ok(true) => {}
        Ok(false) => {
            let o = lab_sh(&["up", "6"]);
            assert!(o.status.success(), "lab.sh up 6 failed: {}", String::from_utf8_lossy(&o.stderr));
        }
        Err(e) => {
            eprintln!("skipped: cannot run `ip netns` ({e})");
            return false;
        }
    }
    true
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

struct Truth {
    /// (ip, port) -> service name the banner identifies, if any.
    open: BTreeMap<(String, u16), Option<String>>,
    /// Hosts whose instance type scope must skip.
    prohibited: BTreeSet<String>,
    inventory: PathBuf,
    _dir: tempfile::TempDir,
}

fn truth() -> Truth {
    let dir = tempfile::tempdir().unwrap();
    let inv = lab_sh(&["inventory"]);
    assert!(inv.status.success());
    let inventory = dir.path().join("lab-inventory.json");
    std::fs::write(&inventory, &inv.stdout).unwrap();
    let assets: Vec<serde_json::Value> = serde_json::from_slice(&inv.stdout).unwrap();
    let prohibited = assets
        .iter()
        .filter(|a| ["t2.nano", "t1.micro", "m1.small"].contains(&a["instance_type"].as_str().unwrap_or("")))
        .map(|a| a["private_ip"].as_str().unwrap().to_string())
        .collect();
    let t = lab_sh(&["truth"]);
    assert!(t.status.success());
    let open = String::from_utf8_lossy(&t.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                (v["ip"].as_str().unwrap().to_string(), v["port"].as_u64().unwrap() as u16),
                v["service"].as_str().map(str::to_string),
            )
        })
        .collect();
    Truth { open, prohibited, inventory, _dir: dir }
}

fn scan_in_lab(args: &[&str]) -> Output {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", "sflab-scan", env!("CARGO_BIN_EXE_scanfleet")]).args(args);
    cmd.output().expect("run scanfleet in the scanner namespace")
}

fn packets(host: usize, reset: bool) -> u64 {
    let h = host.to_string();
    let o = if reset { lab_sh(&["packets", &h, "--reset"]) } else { lab_sh(&["packets", &h]) };
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap_or(u64::MAX)
}

fn full_sweep_matches_truth(mode: &str) {
    let _turn = LAB.lock().unwrap_or_else(|p| p.into_inner());
    if !lab_ready() {
        return;
    }
    let t = truth();
    packets(6, true);
    let out = scan_in_lab(&["scan", "--inventory", t.inventory.to_str().unwrap(), "-p-", "--format", "jsonl", "--mode", mode]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "scan failed: {err}");
    assert!(err.contains(&format!("engine {mode}")), "engine not {mode}: {err}");

    let mut got: BTreeMap<(String, u16), Option<String>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("jsonl");
        assert_eq!(v["state"], "open");
        let key = (v["ip"].as_str().unwrap().to_string(), v["port"].as_u64().unwrap() as u16);
        let svc = v["service"]["name"].as_str().map(str::to_string);
        assert!(got.insert(key.clone(), svc).is_none(), "{key:?} reported twice");
    }
    let want: BTreeMap<_, _> = t.open.iter().filter(|((ip, _), _)| !t.prohibited.contains(ip)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let got_ports: BTreeSet<_> = got.keys().collect();
    let want_ports: BTreeSet<_> = want.keys().collect();
    assert_eq!(got_ports, want_ports, "open ports differ from the ground truth\nstderr: {err}");
    for (k, name) in &want {
        assert_eq!(&got[k], name, "service on {k:?}");
    }
    assert!(!t.prohibited.is_empty(), "the lab should have a t2.nano host");
    for ip in &t.prohibited {
        assert!(err.contains(&format!("({ip}): instance type")), "skip of {ip} not reported: {err}");
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
            Some(((v["ip"].as_str()?.to_string(), v["port"].as_u64()? as u16), state))
        })
        .filter(|((ip, _), _)| ip == "10.213.0.13")
        .collect();
    assert!(want.values().any(|s| s == "filtered") && want.values().any(|s| s == "closed"), "{want:?}");
    let ports: Vec<String> = want.keys().map(|(_, p)| p.to_string()).collect();
    for mode in ["connect", "syn"] {
        let out = scan_in_lab(&["scan", "-t", "10.213.0.13", "-p", &ports.join(","), "--all-states", "--format", "jsonl", "--mode", mode, "--no-service-detection"]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let got: BTreeMap<(String, u16), String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                ((v["ip"].as_str().unwrap().to_string(), v["port"].as_u64().unwrap() as u16), v["state"].as_str().unwrap().to_string())
            })
            .collect();
        assert_eq!(got, want, "mode {mode}");
    }
}
