//! The exit-status contract of both binaries: bad input (flags, environment, paths,
//! scan ids) exits 2 with a message naming it, before any connection is made or any
//! probe is sent; trouble at run time exits 1. Brokers and stores in these tests are
//! counting listeners on loopback that this test started: a refused command must
//! leave them untouched. Untrusted text (scan ids, asset ids, results read back from
//! Redis) reaches the terminal escaped.

use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use scanfleet_common::store::ResultStore;
use scanfleet_common::store::redis::{RedisConfig, RedisStore};
use scanfleet_common::{PortState, ProbeResult, Protocol, ServiceInfo, ShardOutcome};

const SECRET: &str = "exit-status-test-secret-0123456789abcdef";
const REDIS: &str = "redis://127.0.0.1:6379";

/// A TCP listener that counts the connections it accepts and closes them.
struct Counted {
    port: u16,
    accepted: Arc<AtomicUsize>,
    _listener: std::thread::JoinHandle<()>,
}

impl Counted {
    fn new() -> Counted {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = accepted.clone();
        let handle = std::thread::spawn(move || {
            for s in l.incoming() {
                if s.is_ok() {
                    a.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Counted {
            port,
            accepted,
            _listener: handle,
        }
    }

    fn amqp(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn redis(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn accepted(&self) -> usize {
        std::thread::sleep(Duration::from_millis(100));
        self.accepted.load(Ordering::SeqCst)
    }
}

fn bin(name: &str) -> Command {
    let path = std::path::PathBuf::from(env!("CARGO_BIN_EXE_scanfleet")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace",
        path.display()
    );
    let mut cmd = Command::new(path);
    for var in [
        "SCANFLEET_QUEUE",
        "SCANFLEET_REDIS",
        "SCANFLEET_CONFIG",
        "SCANFLEET_ZONE",
        "SCANFLEET_METRICS_ADDR",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("SCANFLEET_JOB_SECRET", SECRET);
    cmd
}

fn run(name: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = bin(name);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the binary")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn expect_usage_error(name: &str, args: &[&str], env: &[(&str, &str)], needle: &str) {
    let out = run(name, args, env);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{name} {args:?}: {err}");
    assert!(
        err.contains(needle),
        "{name} {args:?}: stderr does not name {needle:?}: {err}"
    );
    assert!(out.stdout.is_empty(), "{name} {args:?}: printed output");
}

/// Arguments, extra environment, and what the error must name.
type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

#[test]
fn worker_usage_errors_exit_2_before_any_connection() {
    let broker = Counted::new();
    let store = Counted::new();
    let (q, r) = (broker.amqp(), store.redis());
    let cases: Vec<Case> = vec![
        (vec!["--queue", "amqp://x:99999/"], vec![], "invalid port"),
        (vec!["--queue", "nats://x"], vec![], "--queue nats://x"),
        (
            vec!["--queue", &q, "--redis", "http://x"],
            vec![],
            "--redis http://x",
        ),
        (
            vec!["--queue", &q, "--redis", "redis://127.0.0.1:99999"],
            vec![],
            "port \"99999\"",
        ),
        (
            vec!["--queue", &q, "--redis", &r, "--zone", "bad/zone"],
            vec![],
            "--zone \"bad/zone\"",
        ),
        (
            vec!["--queue", &q, "--redis", &r, "--zone", ""],
            vec![],
            "--zone",
        ),
        (
            vec!["--queue", &q, "--redis", &r, "--exclude", "10.0.0/8"],
            vec![],
            "--exclude 10.0.0/8",
        ),
        (
            vec!["--queue", &q, "--redis", &r, "--metrics-addr", "nowhere"],
            vec![],
            "--metrics-addr",
        ),
        (
            vec!["--queue", &q, "--redis", &r, "--lease-secs", "0"],
            vec![],
            "--lease-secs",
        ),
        (
            vec!["--queue", &q, "--redis", &r],
            vec![("SCANFLEET_JOB_SECRET", "short")],
            "openssl rand -hex 32",
        ),
        (
            vec!["--queue", &q, "--redis", &r, "--concurrency", "0"],
            vec![],
            "--concurrency",
        ),
    ];
    for (args, env, needle) in &cases {
        expect_usage_error("scanfleet-worker", args, env, needle);
    }
    assert_eq!(broker.accepted(), 0, "a refused worker reached the broker");
    assert_eq!(store.accepted(), 0, "a refused worker reached the store");
}

#[test]
fn status_results_and_queues_usage_errors_exit_2_before_any_connection() {
    let broker = Counted::new();
    let store = Counted::new();
    let (q, r) = (broker.amqp(), store.redis());
    let long_id = "x".repeat(100_000);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["status", "", "--redis", &r], "scan id \"\""),
        (vec!["status", &long_id, "--redis", &r], "xxx..."),
        (
            vec!["status", "sf-1\x1b]0;t\x07", "--redis", &r],
            "\\x1b]0;t\\x07",
        ),
        (
            vec!["status", "sf-1", "--redis", "redis://127.0.0.1:99999"],
            "port \"99999\"",
        ),
        (vec!["results", "", "--redis", &r], "scan id \"\""),
        (
            vec!["results", "sf-1", "--redis", &r, "-o", "/proc/x"],
            "-o /proc/x",
        ),
        (
            vec![
                "results",
                "sf-1",
                "--redis",
                &r,
                "-o",
                "/nonexistent/x.json",
            ],
            "/nonexistent does not exist",
        ),
        (
            vec!["queues", "init", "--queue", &q, "--delivery-limit", "0"],
            "--delivery-limit 0",
        ),
        (
            vec!["queues", "init", "--queue", &q, "--zone", "bad zone"],
            "bad zone",
        ),
        (
            vec!["queues", "init", "--queue", "amqp://x:99999/"],
            "invalid port",
        ),
        (
            vec!["queues", "dead-letters", "--queue", "ftp://x"],
            "--queue ftp://x",
        ),
    ];
    for (args, needle) in &cases {
        expect_usage_error("scanfleet", args, &[], needle);
    }
    // The bounded echo: a 100 kB id does not come back whole.
    let out = run("scanfleet", &["status", &long_id, "--redis", &r], &[]);
    assert!(
        out.stderr.len() < 1_000,
        "{} bytes of stderr",
        out.stderr.len()
    );
    assert_eq!(broker.accepted(), 0, "a refused command reached the broker");
    assert_eq!(store.accepted(), 0, "a refused command reached the store");
}

#[test]
fn a_fleet_scan_that_cannot_start_publishes_nothing() {
    let broker = Counted::new();
    let store = Counted::new();
    let target = Counted::new();
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let (q, r, p) = (broker.amqp(), store.redis(), target.port.to_string());
    let base = ["scan", "-t", "127.0.0.1", "-p", &p, "--mode", "connect"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        // The metrics listener is bound before anything is published or registered.
        (vec!["--metrics-addr", &busy_addr], "--metrics-addr"),
        // Every output path is checked before the first probe and the first message.
        (vec!["-o", "/proc/self/x"], "-o /proc/self/x"),
        (vec!["-o", "/tmp"], "is a directory"),
        (vec!["-o", "/nonexistent/dir/out.json"], "does not exist"),
        (vec!["--delivery-limit", "0"], "--delivery-limit 0"),
        (vec!["--job-ttl-secs", "0"], "--job-ttl-secs"),
    ];
    for (extra, needle) in &cases {
        let mut args: Vec<&str> = base.to_vec();
        args.extend(["--queue", &q, "--redis", &r]);
        args.extend(extra.iter().copied());
        expect_usage_error("scanfleet", &args, &[], needle);
    }
    // Embedded mode checks its output paths before probing as well.
    for (extra, needle) in &cases[1..4] {
        let mut args: Vec<&str> = base.to_vec();
        args.extend(extra.iter().copied());
        expect_usage_error("scanfleet", &args, &[], needle);
    }
    assert_eq!(broker.accepted(), 0, "a refused scan reached the broker");
    assert_eq!(store.accepted(), 0, "a refused scan reached the store");
    assert_eq!(target.accepted(), 0, "a refused scan probed its target");
    drop(busy);
}

fn store(rt: &tokio::runtime::Runtime) -> RedisStore {
    rt.block_on(RedisStore::connect(REDIS, RedisConfig::default()))
        .expect("the local Redis on 6379 (scripts/setup.sh starts it)")
}

fn scan_id(what: &str) -> String {
    format!("sf-exit-{what}-{}-{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Removes a scan's keys when the test ends, passed or not.
struct Forget<'a>(&'a tokio::runtime::Runtime, &'a RedisStore, String);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        let _ = self.0.block_on(self.1.delete_scan(&self.2));
    }
}

#[test]
fn status_of_a_store_changed_outside_scanfleet_is_inconsistent_not_finished() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = store(&rt);
    let id = scan_id("inconsistent");
    let _forget = Forget(&rt, &s, id.clone());
    rt.block_on(s.begin_scan(&id, 1)).unwrap();
    rt.block_on(s.finish_shard(&id, 0, &ShardOutcome::Done))
        .unwrap();
    let out = run("scanfleet", &["status", &id, "--redis", REDIS], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("; finished in "));
    let out = run(
        "scanfleet",
        &["status", &id, "--redis", REDIS, "--json"],
        &[],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (started, finished) = (
        v["started_unix_ms"].as_u64().unwrap(),
        v["finished_unix_ms"].as_u64().unwrap(),
    );
    assert!(started > 1_700_000_000_000 && finished >= started, "{v}");

    // Someone bumps the counter by hand: more outcomes than shards.
    let keys = s.keys(&id).unwrap();
    let bumped = Command::new("redis-cli")
        .args(["-p", "6379", "HINCRBY", &keys.meta, "shards_done", "2"])
        .output()
        .expect("redis-cli");
    assert!(bumped.status.success());
    let out = run(
        "scanfleet",
        &["status", &id, "--redis", REDIS, "--json"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["finished"], false, "{v}");
    assert_eq!(v["consistent"], false, "{v}");
    assert!(
        stderr(&out).contains("3 shard outcome(s) recorded for 1 shard(s)"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn results_read_back_from_redis_are_escaped_on_the_terminal() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = store(&rt);
    let id = scan_id("escape");
    let _forget = Forget(&rt, &s, id.clone());
    rt.block_on(s.begin_scan(&id, 1)).unwrap();
    let hostile = ProbeResult {
        scan_id: id.clone(),
        asset_id: "i-\x1b]0;pwned\x07".into(),
        ip: "127.0.0.1".parse().unwrap(),
        port: 22,
        protocol: Protocol::Tcp,
        state: PortState::Open,
        reason: "syn-ack\x1b[2J".into(),
        // As Redis holds it: written by something other than a worker.
        service: Some(ServiceInfo {
            name: "ssh\x1b[2J".into(),
            product: Some("Open\x1b]0;pwned\x07SSH".into()),
            version: Some("9.2\x07".into()),
            ..ServiceInfo::default()
        }),
    };
    rt.block_on(s.write_results(&id, &[hostile])).unwrap();
    rt.block_on(s.finish_shard(&id, 0, &ShardOutcome::Done))
        .unwrap();
    for format in ["table", "csv", "jsonl", "json"] {
        let out = run(
            "scanfleet",
            &["results", &id, "--redis", REDIS, "--format", format],
            &[],
        );
        assert_eq!(out.status.code(), Some(0), "{format}: {}", stderr(&out));
        assert!(
            !out.stdout.contains(&0x1b) && !out.stdout.contains(&0x07),
            "{format}: raw control characters reached the terminal: {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let shown = "pwned";
        assert!(text.contains(shown), "{format}: {shown} is missing: {text}");
    }
}

#[test]
fn skipped_assets_with_control_characters_are_shown_escaped() {
    let target = Counted::new();
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv.json");
    std::fs::write(
        &inv,
        r#"[{"id":"i-\u001b]0;pwned\u0007","private_ip":"127.0.0.1","instance_type":"t2.nano"}]"#,
    )
    .unwrap();
    let p = target.port.to_string();
    let out = run(
        "scanfleet",
        &[
            "scan",
            "-i",
            inv.to_str().unwrap(),
            "-p",
            &p,
            "--mode",
            "connect",
        ],
        &[],
    );
    let err = stderr(&out);
    assert!(err.contains("t2.nano may not be scanned"), "{err}");
    assert!(
        !err.contains('\x1b') && !err.contains('\x07') && err.contains("\\x1b]0;pwned\\x07"),
        "{err:?}"
    );
    assert_eq!(target.accepted(), 0, "the t2.nano was probed");
}
