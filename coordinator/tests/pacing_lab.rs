//! The pacing lab (`loadtest/lab/manifest.pacing`, prefix `sfp`, subnet
//! 10.217.0): with default settings, a full SYN sweep finds every open port of
//! every host, the host that drops 20 % of the scanner's packets included.
//! Runs when `SCANFLEET_LAB=1` and the lab is up (scripts/test.sh brings it up:
//! `SFLAB_PREFIX=sfp SFLAB_NET=10.217.0 SFLAB_MANIFEST=loadtest/lab/manifest.pacing
//! loadtest/lab.sh up 5`); prints why it skips otherwise.

use std::collections::BTreeSet;
use std::process::Command;

fn lab(args: &[&str]) -> std::process::Output {
    Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../loadtest/lab.sh"))
        .args(args)
        .env("SFLAB_PREFIX", "sfp")
        .env("SFLAB_NET", "10.217.0")
        .env(
            "SFLAB_MANIFEST",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../loadtest/lab/manifest.pacing"
            ),
        )
        .output()
        .expect("run loadtest/lab.sh")
}

fn open_of(jsonl: &[u8]) -> BTreeSet<(String, u16)> {
    String::from_utf8_lossy(jsonl)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["state"].as_str().is_none_or(|s| s == "open"))
        .filter_map(|v| Some((v["ip"].as_str()?.to_string(), v["port"].as_u64()? as u16)))
        .collect()
}

#[test]
fn a_twenty_percent_loss_host_loses_no_open_port_with_default_settings() {
    if std::env::var("SCANFLEET_LAB").as_deref() != Ok("1") {
        eprintln!("skipped: set SCANFLEET_LAB=1 with the sfp lab up (scripts/test.sh does)");
        return;
    }
    if !lab(&["status"]).status.success() {
        eprintln!("skipped: the sfp lab is not up");
        return;
    }
    let dir = std::env::temp_dir().join(format!("sf-pacing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let inv = dir.join("inventory.json");
    std::fs::write(&inv, lab(&["inventory"]).stdout).unwrap();
    let want = open_of(&lab(&["truth"]).stdout);
    assert!(
        want.iter().any(|(ip, _)| ip == "10.217.0.15"),
        "the lossy host has open ports"
    );
    let out = Command::new("ip")
        .args(["netns", "exec", "sfp-scan", env!("CARGO_BIN_EXE_scanfleet")])
        .args([
            "scan",
            "--inventory",
            inv.to_str().unwrap(),
            "-p-",
            "--mode",
            "syn",
        ])
        .args(["--no-service-detection", "--format", "jsonl"])
        .output()
        .expect("run scanfleet in the sfp scanner namespace");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let got = open_of(&out.stdout);
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}\n{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
