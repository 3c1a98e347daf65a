//! `scanfleet cancel` and `scanfleet resume` on real RabbitMQ and Redis with a
//! worker in the lab's scanner namespace: a detached scan is cancelled before any
//! worker runs; the worker then drains its shards unprobed (no result, every shard
//! failed as cancelled, the queue empty); `resume` publishes them again and follows
//! the scan to the exact result. Needs root and the lab.

mod support;

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use scanfleet_testkit::{terminate, wait_until};
use support::{LAB, Vhost, lab_ready, parse_open, relay, truth, worker_bin};

const SECRET: &str = "resume-test-secret-0123456789abcdef012345";
const REDIS: &str = "redis://127.0.0.1:6379";
const PORTS: &str = "1-2000";
const HOSTS: [&str; 2] = ["10.213.0.11", "10.213.0.12"];

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scanfleet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scanfleet"))
        .args(args)
        .env("SCANFLEET_JOB_SECRET", SECRET)
        .stdin(Stdio::null())
        .output()
        .expect("run scanfleet")
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn status(scan: &str) -> serde_json::Value {
    let o = scanfleet(&["status", scan, "--redis", REDIS, "--json"]);
    assert_eq!(o.status.code(), Some(0), "status: {}", err(&o));
    serde_json::from_slice(&o.stdout).expect("status --json")
}

fn queue_depth(vhost: &str) -> u64 {
    let o = Command::new("rabbitmqctl")
        .args(["list_queues", "-q", "-p", vhost, "name", "messages"])
        .output()
        .expect("rabbitmqctl");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.contains("dead"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

#[test]
fn lab_fleet_cancelled_scan_is_drained_unprobed_and_resume_finishes_it_exactly() {
    let _turn = LAB.lock().unwrap_or_else(|p| p.into_inner());
    if !lab_ready() {
        return;
    }
    relay(6379);
    relay(5672);
    let vhost = Vhost::new("resume");
    let q = vhost.url();
    let t = truth();
    let inv_dir = tempfile::tempdir().unwrap();
    let assets: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&t.inventory).unwrap()).unwrap();
    let some: Vec<&serde_json::Value> = assets
        .iter()
        .filter(|a| HOSTS.contains(&a["private_ip"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(some.len(), 2, "the lab lacks {HOSTS:?}");
    let inventory = inv_dir.path().join("two.json");
    std::fs::write(&inventory, serde_json::to_vec(&some).unwrap()).unwrap();
    let inventory = inventory.to_str().unwrap();

    // Published, detached, with no worker running: two shards wait on the queue.
    let o = scanfleet(&[
        "scan",
        "--inventory",
        inventory,
        "-p",
        PORTS,
        "--queue",
        &q,
        "--redis",
        REDIS,
        "--shard-size",
        "1",
        "--workers",
        "1",
        "--detach",
    ]);
    assert_eq!(o.status.code(), Some(0), "scan --detach: {}", err(&o));
    let scan = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(scan.starts_with("sf-"), "no scan id: {scan:?}");
    assert_eq!(status(&scan)["progress"]["shards_total"], 2);

    let o = scanfleet(&["cancel", &scan, "--redis", REDIS]);
    assert_eq!(o.status.code(), Some(0), "cancel: {}", err(&o));
    assert!(
        err(&o).contains("cancelled") && err(&o).contains("2 unfinished shards"),
        "{}",
        err(&o)
    );
    assert_eq!(status(&scan)["cancelled"], true);
    let o = scanfleet(&["cancel", "sf-0-unknown", "--redis", REDIS]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "cancel of an unknown scan: {}",
        err(&o)
    );

    // A worker drains the cancelled shards: recorded failed, nothing probed.
    let worker = Command::new("ip")
        .args(["netns", "exec", "sflab-scan"])
        .arg(worker_bin())
        .args([
            "--queue",
            &q,
            "--redis",
            REDIS,
            "--lease-secs",
            "10",
            "--grace-secs",
            "5",
        ])
        .env("SCANFLEET_JOB_SECRET", SECRET)
        .env("SCANFLEET_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn scanfleet-worker");
    let mut worker = Proc(worker);
    let drained = wait_until(Duration::from_secs(60), || {
        status(&scan)["progress"]["shards_failed"] == 2
    });
    assert!(
        drained,
        "the cancelled shards were not drained: {}",
        status(&scan)
    );
    let o = scanfleet(&["results", &scan, "--redis", REDIS, "--format", "jsonl"]);
    assert_eq!(o.status.code(), Some(0), "results: {}", err(&o));
    assert!(
        o.stdout.is_empty(),
        "a cancelled scan got results: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(
        queue_depth(&vhost.0),
        0,
        "the cancelled shards are still queued"
    );

    // Resume publishes both again (failed as cancelled) and ends with the exact result.
    let o = scanfleet(&[
        "resume",
        &scan,
        "--queue",
        &q,
        "--redis",
        REDIS,
        "--format",
        "jsonl",
        "--progress",
        "never",
    ]);
    assert_eq!(o.status.code(), Some(0), "resume: {}", err(&o));
    assert!(
        err(&o).contains("(was cancelled): 2 shards of 2 published again"),
        "{}",
        err(&o)
    );
    let want: std::collections::BTreeMap<_, _> = t
        .in_scope()
        .into_iter()
        .filter(|((ip, port), _)| HOSTS.contains(&ip.as_str()) && *port <= 2000)
        .collect();
    assert!(!want.is_empty());
    assert_eq!(parse_open(&o.stdout), want, "resume: {}", err(&o));
    let s = status(&scan);
    assert_eq!(s["progress"]["shards_done"], 2, "{s}");
    assert_eq!(s["finished"], true, "{s}");
    assert_eq!(
        s["cancelled"], false,
        "resume takes the cancel mark off: {s}"
    );

    // Resuming a finished scan publishes nothing.
    let o = scanfleet(&[
        "resume",
        &scan,
        "--queue",
        &q,
        "--redis",
        REDIS,
        "--format",
        "jsonl",
        "--progress",
        "never",
    ]);
    assert_eq!(o.status.code(), Some(0), "resume again: {}", err(&o));
    assert!(
        err(&o).contains("0 shards of 2 published again"),
        "{}",
        err(&o)
    );
    assert_eq!(parse_open(&o.stdout), want);
    terminate(&mut worker.0, Duration::from_secs(20));
}

/// A coordinator stopped by SIGINT mid-scan leaves a scan that `status` shows and
/// `resume` finishes with the exact result. Coordinator and worker on the host, one
/// connect probe to a listener on 127.0.0.1 that the test starts.
#[test]
fn an_interrupted_coordinator_leaves_a_scan_that_resume_finishes() {
    if !support::is_root() {
        eprintln!("skipped: rabbitmqctl needs root; CI runs as root");
        return;
    }
    let vhost = Vhost::new("sigint");
    let q = vhost.url();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let ports = port.clone();
    // Followed with no worker running: the scan cannot end until one comes.
    let coord = Command::new(env!("CARGO_BIN_EXE_scanfleet"))
        .args(["scan", "-t", "127.0.0.1", "-p", &ports, "--mode", "connect"])
        .args([
            "--queue",
            &q,
            "--redis",
            REDIS,
            "--format",
            "jsonl",
            "--progress",
            "never",
        ])
        .env("SCANFLEET_JOB_SECRET", SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn scanfleet scan");
    let mut coord = Proc(coord);
    std::thread::sleep(Duration::from_secs(3));
    let _ = Command::new("kill")
        .args(["-INT", &coord.0.id().to_string()])
        .status();
    let exited = wait_until(Duration::from_secs(20), || {
        matches!(coord.0.try_wait(), Ok(Some(_)))
    });
    assert!(exited, "the coordinator did not stop on SIGINT");
    let mut stderr = String::new();
    use std::io::Read;
    coord
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("scanfleet resume"), "{stderr}");
    let scan = stderr
        .split("scan ")
        .filter_map(|s| s.split(|c: char| c == ':' || c.is_whitespace()).next())
        .find(|s| s.starts_with("sf-"))
        .unwrap_or_else(|| panic!("no scan id in: {stderr}"))
        .to_string();
    let s = status(&scan);
    assert_eq!(s["finished"], false, "{s}");
    assert_eq!(s["shards_pending"], 1, "{s}");

    let worker = Command::new(worker_bin())
        .args(["--queue", &q, "--redis", REDIS, "--grace-secs", "2"])
        .env("SCANFLEET_JOB_SECRET", SECRET)
        .env("SCANFLEET_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn scanfleet-worker");
    let mut worker = Proc(worker);
    let o = scanfleet(&[
        "resume",
        &scan,
        "--queue",
        &q,
        "--redis",
        REDIS,
        "--format",
        "jsonl",
        "--progress",
        "never",
        "--all-states",
    ]);
    assert_eq!(o.status.code(), Some(0), "resume: {}", err(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("jsonl"))
        .collect();
    let want: u64 = port.parse().unwrap();
    let state = lines
        .iter()
        .find(|l| l["port"].as_u64() == Some(want))
        .and_then(|l| l["state"].as_str());
    assert_eq!(state, Some("open"), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(status(&scan)["finished"], true);
    terminate(&mut worker.0, Duration::from_secs(20));
    drop(listener);
}
