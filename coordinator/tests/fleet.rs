//! The fleet end to end: a coordinator on the host publishes signed shards to
//! real RabbitMQ (or SQS through moto's server), `scanfleet-worker` processes in
//! the lab's scanner namespace probe the lab and write to real Redis, and the
//! coordinator reports from Redis. Workers reach the host's services through
//! `lab.sh relay` (unix sockets, no interface). Needs root.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{LAB, Moto, Vhost, lab_ready, packets, parse_open, relay, truth, worker_bin};

const SECRET: &str = "fleet-test-secret-0123456789abcdef0123";
/// Ports wide enough for every open port of the lab, small enough for a quick shard.
const PORTS: &str = "1-10000";

/// A worker process in the scanner namespace; killed on drop.
struct WorkerProc(Child);

impl WorkerProc {
    fn spawn(queue: &str, env: &[(&str, &str)], extra: &[&str]) -> WorkerProc {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", "sflab-scan"])
            .arg(worker_bin())
            .args([
                "--queue",
                queue,
                "--redis",
                "redis://127.0.0.1:6379",
                "--lease-secs",
                "10",
                "--grace-secs",
                "20",
            ])
            .args(extra)
            .env("SCANFLEET_JOB_SECRET", SECRET)
            .env("SCANFLEET_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        WorkerProc(cmd.spawn().expect("spawn scanfleet-worker"))
    }

    fn kill9(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }

    /// SIGTERM, then the exit code within `limit`.
    fn terminate(&mut self, limit: Duration) -> Option<i32> {
        scanfleet_testkit::terminate(&mut self.0, limit)
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run the coordinator in fleet mode; `during` runs once shards are in flight.
fn fleet_scan(
    queue: &str,
    env: &[(&str, &str)],
    inventory: &str,
    during: impl FnOnce(),
) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scanfleet"));
    cmd.args([
        "scan",
        "--inventory",
        inventory,
        "-p",
        PORTS,
        "--queue",
        queue,
        "--redis",
        "redis://127.0.0.1:6379",
    ])
    .args([
        "--shard-size",
        "1",
        "--format",
        "jsonl",
        "--progress",
        "never",
    ])
    .env("SCANFLEET_JOB_SECRET", SECRET)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn scanfleet scan");
    std::thread::sleep(Duration::from_millis(2500));
    during();
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(240));
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    });
    let out = child.wait_with_output().expect("wait for scanfleet scan");
    drop(watchdog);
    out
}

fn assert_exact(out: &std::process::Output, t: &support::Truth) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "fleet scan failed: {err}");
    let got = parse_open(&out.stdout);
    assert_eq!(
        got,
        t.in_scope(),
        "results differ from the ground truth; stderr: {err}"
    );
}

#[test]
fn lab_fleet_amqp_survives_a_killed_worker() {
    let _turn = LAB.lock().unwrap_or_else(|p| p.into_inner());
    if !lab_ready() {
        return;
    }
    relay(5672);
    relay(6379);
    let t = truth();
    let vhost = Vhost::new("kill");
    let q = vhost.url();
    let mut workers: Vec<WorkerProc> = (0..3).map(|_| WorkerProc::spawn(&q, &[], &[])).collect();
    packets(6, true);
    let out = fleet_scan(&q, &[], t.inventory.to_str().unwrap(), || {
        workers[0].kill9()
    });
    assert_exact(&out, &t);
    assert_eq!(packets(6, false), 0, "the t2.nano host received packets");
    for w in workers.iter_mut().skip(1) {
        assert_eq!(
            w.terminate(Duration::from_secs(30)),
            Some(0),
            "a worker did not drain and exit 0 on SIGTERM"
        );
    }
}

#[test]
fn lab_fleet_sqs_survives_a_killed_worker() {
    let _turn = LAB.lock().unwrap_or_else(|p| p.into_inner());
    if !lab_ready() {
        return;
    }
    let moto = Moto::start();
    relay(moto.port);
    relay(6379);
    let t = truth();
    let env_owned = moto.env();
    let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let q = format!("sqs://sftest-{}", std::process::id());
    let init = Command::new(env!("CARGO_BIN_EXE_scanfleet"))
        .args(["queues", "init", "--queue", &q])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "queues init: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let mut workers: Vec<WorkerProc> = (0..3).map(|_| WorkerProc::spawn(&q, &env, &[])).collect();
    let out = fleet_scan(&q, &env, t.inventory.to_str().unwrap(), || {
        workers[0].kill9()
    });
    assert_exact(&out, &t);
}

#[test]
fn lab_fleet_forged_job_is_dead_lettered_and_its_target_gets_no_packet() {
    let _turn = LAB.lock().unwrap_or_else(|p| p.into_inner());
    if !lab_ready() {
        return;
    }
    relay(5672);
    relay(6379);
    let vhost = Vhost::new("forged");
    let q = vhost.url();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let job = scanfleet_common::ScanJob {
        scan_id: format!("sf-forged-{}", std::process::id()),
        shard_id: 0,
        zone: "default".into(),
        targets: vec![scanfleet_common::Target {
            ip: "10.213.0.11".parse().unwrap(),
            asset_id: "lab-t1".into(),
            rate_pps: 1000,
        }],
        ports: scanfleet_common::PortSpec::parse("1-1000").unwrap(),
        profile: scanfleet_common::ProbeProfile {
            host_discovery: true,
            ..Default::default()
        },
        scope: None,
    };
    let far = scanfleet_common::envelope::now_unix_ms() + 3_600_000;
    let forged = scanfleet_common::JobEnvelope::seal(&job, 1, far, Some(b"an attacker's secret"));
    let expired = scanfleet_common::JobEnvelope::seal(&job, 1, 1_000, Some(SECRET.as_bytes()));
    let queue = rt.block_on(async {
        let h = scanfleet_common::backend::connect_queue(&q, &Default::default())
            .await
            .unwrap();
        h.admin
            .init(&["default".to_string()], &Default::default())
            .await
            .unwrap();
        let dq = h.queue.clone();
        dq.publish("default", &forged.to_bytes()).await.unwrap();
        dq.publish("default", &expired.to_bytes()).await.unwrap();
        dq.publish("default", b"\xff not an envelope")
            .await
            .unwrap();
        h.admin
    });
    packets(1, true);
    let mut w = WorkerProc::spawn(&q, &[], &["--metrics-addr", "127.0.0.1:19464"]);
    let start = Instant::now();
    let mut dead = Vec::new();
    while dead.len() < 3 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(500));
        dead.extend(rt.block_on(queue.take_dead_letters(10)).unwrap());
    }
    let mut reasons: Vec<String> = dead.iter().map(|d| d.reason.clone()).collect();
    reasons.sort();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("signature does not verify")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("deadline passed")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("not a valid envelope")),
        "{reasons:?}"
    );
    assert_eq!(
        packets(1, false),
        0,
        "a refused job sent packets to its target"
    );

    let scrape = Command::new("ip")
        .args([
            "netns",
            "exec",
            "sflab-scan",
            "curl",
            "-s",
            "http://127.0.0.1:19464/metrics",
        ])
        .output()
        .expect("curl (scripts/setup.sh installs it)");
    let text = String::from_utf8_lossy(&scrape.stdout);
    assert!(
        text.contains("scanfleet_jobs_dead_lettered_total{reason=\"signature\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("scanfleet_jobs_dead_lettered_total{reason=\"expired\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("scanfleet_jobs_dead_lettered_total{reason=\"malformed\"} 1"),
        "{text}"
    );
    assert!(text.contains("scanfleet_jobs_received_total 3"), "{text}");
    assert_eq!(w.terminate(Duration::from_secs(30)), Some(0));
}
