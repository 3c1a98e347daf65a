//! Shared by the integration tests: the namespace lab (`loadtest/lab.sh`) and its
//! ground truth. Every test that uses it needs root; `lab_ready` says why it
//! skips otherwise.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// Tests of one binary run in parallel threads under `cargo test`: lab users take turns.
pub static LAB: Mutex<()> = Mutex::new(());

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn lab_sh(args: &[&str]) -> Output {
    Command::new(repo().join("loadtest/lab.sh")).args(args).output().expect("run loadtest/lab.sh")
}

unsafe extern "C" {
    fn geteuid() -> u32;
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { geteuid() == 0 }
}

/// Bring the lab up when it is not, or say why this test cannot run.
pub fn lab_ready() -> bool {
    if !is_root() {
        eprintln!("skipped: the lab needs root (network namespaces); CI runs as root");
        return false;
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(o) if String::from_utf8_lossy(&o.stdout).contains("sflab-scan") => true,
        Ok(_) => {
            let o = lab_sh(&["up", "6"]);
            assert!(o.status.success(), "lab.sh up 6 failed: {}", String::from_utf8_lossy(&o.stderr));
            true
        }
        Err(e) => {
            eprintln!("skipped: cannot run `ip netns` ({e})");
            false
        }
    }
}

/// The lab's ground truth.
pub struct Truth {
    /// (ip, port) -> service name the banner identifies, if any.
    pub open: BTreeMap<(String, u16), Option<String>>,
    /// Hosts whose instance type scope must skip.
    pub prohibited: BTreeSet<String>,
    /// The lab inventory, written to a file.
    pub inventory: PathBuf,
    pub _dir: tempfile::TempDir,
}

impl Truth {
    /// Open ports scope allows to be scanned.
    pub fn in_scope(&self) -> BTreeMap<(String, u16), Option<String>> {
        self.open.iter().filter(|((ip, _), _)| !self.prohibited.contains(ip)).map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

pub fn truth() -> Truth {
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

/// Parse JSON-lines results into (ip, port) -> service name, failing on duplicates.
pub fn parse_open(stdout: &[u8]) -> BTreeMap<(String, u16), Option<String>> {
    let mut got = BTreeMap::new();
    for line in String::from_utf8_lossy(stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("jsonl");
        assert_eq!(v["state"], "open");
        let key = (v["ip"].as_str().unwrap().to_string(), v["port"].as_u64().unwrap() as u16);
        let svc = v["service"]["name"].as_str().map(str::to_string);
        assert!(got.insert(key.clone(), svc).is_none(), "{key:?} reported twice");
    }
    got
}

/// Packets lab host `i` received from the scanner (optionally resetting the counter).
pub fn packets(host: usize, reset: bool) -> u64 {
    let h = host.to_string();
    let o = if reset { lab_sh(&["packets", &h, "--reset"]) } else { lab_sh(&["packets", &h]) };
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap_or(u64::MAX)
}
