//! Shared by the integration tests: the namespace lab (`loadtest/lab.sh`) and its
//! ground truth. Every test that uses it needs root; `lab_ready` says why it
//! skips otherwise.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// The services of a test's own, relays and ports come from the workspace's test kit.
/// Each test binary uses a part of them.
#[allow(unused_imports)]
pub use scanfleet_testkit::{
    Moto, PrivateRabbit, PrivateRedis, Relay, Vhost, free_port, lab_sh, relay, wait_listening,
};

/// Tests of one binary run in parallel threads under `cargo test`: lab users take turns.
pub static LAB: Mutex<()> = Mutex::new(());

/// The workspace root.
pub fn repo() -> PathBuf {
    scanfleet_testkit::repo_root()
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
            assert!(
                o.status.success(),
                "lab.sh up 6 failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
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
        self.open
            .iter()
            .filter(|((ip, _), _)| !self.prohibited.contains(ip))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
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
        .filter(|a| {
            ["t2.nano", "t1.micro", "m1.small"].contains(&a["instance_type"].as_str().unwrap_or(""))
        })
        .map(|a| a["private_ip"].as_str().unwrap().to_string())
        .collect();
    let t = lab_sh(&["truth"]);
    assert!(t.status.success());
    let open = String::from_utf8_lossy(&t.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                (
                    v["ip"].as_str().unwrap().to_string(),
                    v["port"].as_u64().unwrap() as u16,
                ),
                v["service"].as_str().map(str::to_string),
            )
        })
        .collect();
    Truth {
        open,
        prohibited,
        inventory,
        _dir: dir,
    }
}

/// Parse JSON-lines results into (ip, port) -> service name, failing on duplicates.
pub fn parse_open(stdout: &[u8]) -> BTreeMap<(String, u16), Option<String>> {
    let mut got = BTreeMap::new();
    for line in String::from_utf8_lossy(stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("jsonl");
        assert_eq!(v["state"], "open");
        let key = (
            v["ip"].as_str().unwrap().to_string(),
            v["port"].as_u64().unwrap() as u16,
        );
        let svc = v["service"]["name"].as_str().map(str::to_string);
        assert!(
            got.insert(key.clone(), svc).is_none(),
            "{key:?} reported twice"
        );
    }
    got
}

/// Packets lab host `i` received from the scanner (optionally resetting the counter).
pub fn packets(host: usize, reset: bool) -> u64 {
    let h = host.to_string();
    let o = if reset {
        lab_sh(&["packets", &h, "--reset"])
    } else {
        lab_sh(&["packets", &h])
    };
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------
// Fleet fixtures: metrics scraped from processes in the scanner namespace, the
// worker binary. (Services of a test's own and relays: `scanfleet_testkit`.)

/// The Prometheus text of a process in the scanner namespace serving `/metrics`
/// on 127.0.0.1:`port` there; empty when it does not answer.
pub fn scrape_scan_ns(port: u16) -> String {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            "sflab-scan",
            "curl",
            "-s",
            "--max-time",
            "5",
        ])
        .arg(format!("http://127.0.0.1:{port}/metrics"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Sum of the samples of metric `name` (exact name, so `_sum`/`_count` are other
/// metrics) whose labels include every `labels` pair.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, lbl) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let wanted = n == name
                && labels
                    .iter()
                    .all(|(k, v)| lbl.split(',').any(|p| p == format!("{k}=\"{v}\"")));
            if wanted {
                value.parse::<f64>().ok()
            } else {
                None
            }
        })
        .sum()
}

/// The `scanfleet-worker` binary next to the `scanfleet` binary under test.
pub fn worker_bin() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_BIN_EXE_scanfleet")).with_file_name("scanfleet-worker");
    assert!(
        p.exists(),
        "{} missing: run `cargo build --workspace` first",
        p.display()
    );
    p
}
