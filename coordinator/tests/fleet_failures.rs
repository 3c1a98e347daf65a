//! Failure tests of the fleet (issue 5, "Failure tests"): a broker restart and a
//! Redis crash in the middle of a scan, the same message delivered twice, a poison
//! job that reaches the dead-letter queue while its worker goes on, and a shard
//! longer than its lease that stays with its worker. Each ends with the stored
//! results equal to the lab's ground truth: no duplicate, nothing lost.
//!
//! Workers are `scanfleet-worker` processes in the lab's scanner namespace; they
//! reach the host's services through `lab.sh relay` (unix sockets, no interface).
//! A service a test stops or kills is one of its own on a spare port (a private
//! RabbitMQ node, a private redis-server), so the shared ones on 5672 and 6379 are
//! only ever used through a vhost or keys of the test's own. Needs root; run
//! `cargo build --workspace` first so that `scanfleet-worker` is current.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use scanfleet_common::backend::connect_queue;
use scanfleet_common::envelope::now_unix_ms;
use scanfleet_common::queue::Topology;
use scanfleet_common::rate::RatePolicy;
use scanfleet_common::store::redis::{RedisConfig, RedisStore};
use scanfleet_common::store::{ResultStore, StoreError};
use scanfleet_common::{JobEnvelope, PortSpec, ProbeProfile, Progress, ScanJob, Target};
use support::{
    LAB, Moto, PrivateRabbit, PrivateRedis, Relay, Truth, Vhost, lab_ready, metric, parse_open,
    relay, scrape_scan_ns, truth, worker_bin,
};

const SECRET: &str = "fleet-test-secret-0123456789abcdef0123";
/// Ports wide enough for every open port of the lab, small enough for a quick shard.
const PORTS: &str = "1-10000";
const SHARED_REDIS: &str = "redis://127.0.0.1:6379";

use scanfleet_testkit::wait_until;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A worker process in the scanner namespace serving `/metrics` there; killed on drop.
struct Worker {
    child: Child,
    metrics_port: u16,
}

impl Worker {
    fn spawn(
        queue: &str,
        redis: &str,
        metrics_port: u16,
        lease_secs: u64,
        env: &[(&str, String)],
        extra: &[&str],
    ) -> Worker {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", "sflab-scan"])
            .arg(worker_bin())
            .args(["--queue", queue, "--redis", redis, "--grace-secs", "20"])
            .args(["--lease-secs", &lease_secs.to_string()])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(extra)
            .env("SCANFLEET_JOB_SECRET", SECRET)
            .env("SCANFLEET_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Worker {
            child: cmd.spawn().expect("spawn scanfleet-worker"),
            metrics_port,
        }
    }

    fn metrics(&self) -> String {
        scrape_scan_ns(self.metrics_port)
    }

    /// `/metrics` answers only once the queue and the store are connected.
    fn wait_ready(&mut self, within: Duration) {
        let ready = wait_until(within, || {
            assert!(
                matches!(self.child.try_wait(), Ok(None)),
                "scanfleet-worker exited at start"
            );
            !self.metrics().is_empty()
        });
        assert!(ready, "scanfleet-worker did not come up within {within:?}");
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then the exit code within `limit`.
    fn terminate(&mut self, limit: Duration) -> Option<i32> {
        scanfleet_testkit::terminate(&mut self.child, limit)
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sum of one metric over the workers.
fn total(workers: &[Worker], name: &str, labels: &[(&str, &str)]) -> f64 {
    workers
        .iter()
        .map(|w| metric(&w.metrics(), name, labels))
        .sum()
}

/// `scanfleet scan` in fleet mode, its output collected as it comes; killed on drop.
struct Coordinator {
    child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Arc<Mutex<String>>,
    stderr_thread: Option<JoinHandle<()>>,
}

impl Coordinator {
    fn scan(queue: &str, redis: &str, args: &[&str], env: &[(&str, String)]) -> Coordinator {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_scanfleet"));
        cmd.arg("scan")
            .args(args)
            .args(["--queue", queue, "--redis", redis])
            .args([
                "--shard-size",
                "1",
                "--format",
                "jsonl",
                "--progress",
                "never",
            ])
            .env("SCANFLEET_JOB_SECRET", SECRET)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn scanfleet scan");
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = out.read_to_end(&mut buf);
            buf
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let stderr_thread = std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = err.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        Coordinator {
            child,
            stdout: Some(stdout),
            stderr,
            stderr_thread: Some(stderr_thread),
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The scan id from "scanfleet: scan ID: N shard(s) published".
    fn scan_id(&mut self, within: Duration) -> String {
        let mut id = None;
        let found = wait_until(within, || {
            id = self.stderr().lines().find_map(|l| {
                let rest = l.strip_prefix("scanfleet: scan ")?;
                let (id, tail) = rest.split_once(": ")?;
                tail.contains("published").then(|| id.to_string())
            });
            id.is_some() || !self.running()
        });
        id.unwrap_or_else(|| {
            panic!(
                "no scan published (found: {found}); stderr: {}",
                self.stderr()
            )
        })
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait for the scan to end (killed after `within`) and collect its output.
    fn finish(mut self, within: Duration) -> Output {
        let mut status: Option<ExitStatus> = None;
        wait_until(within, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        let status = status.unwrap_or_else(|| {
            let _ = self.child.kill();
            let s = self.child.wait().expect("wait for scanfleet scan");
            eprintln!("scanfleet scan still running after {within:?}: killed");
            s
        });
        let stdout = self.stdout.take().unwrap().join().unwrap_or_default();
        let _ = self.stderr_thread.take().unwrap().join();
        Output {
            status,
            stdout,
            stderr: self.stderr().into_bytes(),
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deletes a scan's keys from the shared Redis on drop (they would otherwise stay
/// for the store's 30-day TTL).
struct ForgetScan(String);

impl Drop for ForgetScan {
    fn drop(&mut self) {
        let keys = ["meta", "results", "shards", "stream"]
            .map(|k| format!("scanfleet:{{{}}}:{k}", self.0));
        let _ = Command::new("redis-cli")
            .args(["-p", "6379", "DEL"])
            .args(&keys)
            .output();
    }
}

fn assert_exact(out: &Output, want: &BTreeMap<(String, u16), Option<String>>) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "fleet scan failed: {err}");
    assert!(!want.is_empty());
    let got = parse_open(&out.stdout);
    assert_eq!(
        &got, want,
        "results differ from the ground truth; stderr: {err}"
    );
}

/// The lab's first six hosts (web, cache, edge, noping, lossy and the t2.nano that
/// scope skips): every kind of host the lab has. Other tests may have grown the
/// lab (`lab.sh up 20` adds plain hosts); these tests keep to the six so that their
/// run time does not grow with it.
const HOSTS: [&str; 6] = [
    "10.213.0.11",
    "10.213.0.12",
    "10.213.0.13",
    "10.213.0.14",
    "10.213.0.15",
    "10.213.0.16",
];

/// The lab inventory of `hosts`, written next to the full one.
fn inventory_of(t: &Truth, hosts: &[&str]) -> PathBuf {
    let assets: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&t.inventory).unwrap()).unwrap();
    let some: Vec<&serde_json::Value> = assets
        .iter()
        .filter(|a| hosts.contains(&a["private_ip"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        some.len(),
        hosts.len(),
        "the lab lacks some of {hosts:?}: is it up with at least 6 hosts?"
    );
    let path = t
        ._dir
        .path()
        .join(format!("lab-{}-hosts.json", hosts.len()));
    std::fs::write(&path, serde_json::to_vec(&some).unwrap()).unwrap();
    path
}

/// The ground truth of the in-scope ones among `hosts`.
fn expected(t: &Truth, hosts: &[&str]) -> BTreeMap<(String, u16), Option<String>> {
    t.in_scope()
        .into_iter()
        .filter(|((ip, _), _)| hosts.contains(&ip.as_str()))
        .collect()
}

/// The in-scope ones among the six hosts as job targets, with the rate budget of
/// their instance type.
fn in_scope_targets(t: &Truth) -> Vec<Target> {
    let assets: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&t.inventory).unwrap()).unwrap();
    assets
        .iter()
        .filter(|a| HOSTS.contains(&a["private_ip"].as_str().unwrap()))
        .filter(|a| !t.prohibited.contains(a["private_ip"].as_str().unwrap()))
        .map(|a| Target {
            ip: a["private_ip"].as_str().unwrap().parse().unwrap(),
            asset_id: a["id"].as_str().unwrap().to_string(),
            rate_pps: RatePolicy::default().per_target_pps(a["instance_type"].as_str()),
        })
        .collect()
}

/// A job signed with the fleet's secret, valid for an hour, profiled like the
/// coordinator's default (host discovery, service detection).
fn signed_job(scan_id: &str, targets: Vec<Target>, ports: &str) -> Vec<u8> {
    let job = ScanJob {
        scan_id: scan_id.to_string(),
        shard_id: 0,
        zone: "default".into(),
        targets,
        ports: PortSpec::parse(ports).unwrap(),
        profile: ProbeProfile {
            host_discovery: true,
            ..Default::default()
        },
        scope: None,
    };
    JobEnvelope::seal(&job, 1, now_unix_ms() + 3_600_000, Some(SECRET.as_bytes())).to_bytes()
}

/// A scan's stored results as (ip, port) -> service, failing on a duplicate.
fn stored_open(
    rt: &tokio::runtime::Runtime,
    store: &RedisStore,
    scan_id: &str,
) -> BTreeMap<(String, u16), Option<String>> {
    let results = rt.block_on(store.results(scan_id)).unwrap();
    let jsonl: String = results
        .iter()
        .map(|r| serde_json::to_string(r).unwrap() + "\n")
        .collect();
    parse_open(jsonl.as_bytes())
}

fn unique_scan_id(tag: &str) -> String {
    format!("sf-{tag}-{}-{}", std::process::id(), now_unix_ms())
}

#[test]
fn lab_fleet_rabbitmq_restart_mid_scan() {
    let _turn = LAB.lock().unwrap_or_else(|p| p.into_inner());
    if !lab_ready() {
        return;
    }
    let t0 = Instant::now();
    let t = truth();
    let inventory = inventory_of(&t, &HOSTS);
    let rabbit = PrivateRabbit::new();
    rabbit.start();
    let first_boot = t0.elapsed();
    let _relay = Relay::new(rabbit.port);
    relay(6379);
    let q = rabbit.url();
    let mut workers: Vec<Worker> = (0..3)
        .map(|i| Worker::spawn(&q, SHARED_REDIS, 19481 + i, 10, &[], &[]))
        .collect();
    workers
        .iter_mut()
        .for_each(|w| w.wait_ready(Duration::from_secs(30)));
    let mut coord = Coordinator::scan(
        &q,
        SHARED_REDIS,
        &["--inventory", inventory.to_str().unwrap(), "-p", PORTS],
        &[],
    );
    let scan_id = coord.scan_id(Duration::from_secs(30));
    let _forget = ForgetScan(scan_id.clone());
    let rt = rt();
    let store = rt
        .block_on(RedisStore::connect(SHARED_REDIS, RedisConfig::default()))
        .unwrap();

    // Stop the broker while shards are held by workers and others still wait in the queue.
    let in_flight = wait_until(Duration::from_secs(20), || {
        total(&workers, "scanfleet_shards_in_flight", &[]) >= 1.0
    });
    assert!(in_flight, "no shard in flight; stderr: {}", coord.stderr());
    let before = rt.block_on(store.progress(&scan_id)).unwrap();
    assert!(
        !before.finished(),
        "the scan finished before the broker went down: {before:?}"
    );
    let t_stop = Instant::now();
    rabbit.stop();
    let stopped = t_stop.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    if !coord.running() {
        // Workers prefetch: on a loaded machine every shard can already be in a
        // worker's hands when the broker stops, and the scan ends without it. That
        // must be a finished, exact scan, not a coordinator that gave up.
        let out = coord.finish(Duration::from_secs(5));
        assert_eq!(
            out.status.code(),
            Some(0),
            "the coordinator gave up while the broker was down: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_exact(&out, &expected(&t, &HOSTS));
        eprintln!(
            "every shard was in a worker's hands when the broker stopped; the scan ended exact"
        );
        return;
    }
    let t_start = Instant::now();
    rabbit.start();
    let reboot = t_start.elapsed();
    let out = coord.finish(Duration::from_secs(75));
    let recovered = t_start.elapsed();
    assert_exact(&out, &expected(&t, &HOSTS));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !said.contains("lapin::") && !said.contains(" ERROR "),
        "raw dependency log lines reached the user: {said}"
    );

    let receive_errors = total(&workers, "scanfleet_errors_total", &[("stage", "receive")]);
    assert!(
        receive_errors >= 1.0,
        "the workers never saw the broker go away"
    );
    for w in workers.iter_mut() {
        assert!(w.alive(), "a worker died during the broker restart");
        assert_eq!(
            w.terminate(Duration::from_secs(30)),
            Some(0),
            "a worker did not drain and exit 0 on SIGTERM"
        );
    }
    eprintln!(
        "rabbitmq restart: first boot {first_boot:?}, {before:?} at stop, stop took {stopped:?}, \
         reboot {reboot:?}, restart to scan end {recovered:?}, {receive_errors} receive errors, total {:?}",
        t0.elapsed()
    );
}

#[test]
fn lab_fleet_redis_restart_mid_scan() {
    let _turn = LAB.lock().unwrap_or_else(|p| p.into_inner());
    if !lab_ready() {
        return;
    }
    let t0 = Instant::now();
    let t = truth();
    let inventory = inventory_of(&t, &HOSTS);
    // AOF with fsync on every write (see PrivateRedis): what a worker or the
    // coordinator was told is stored survives the kill -9.
    let redis = PrivateRedis::new();
    redis.start();
    let _relay = Relay::new(redis.port);
    relay(5672);
    let vhost = Vhost::new("redis-restart");
    let q = vhost.url();
    let r = redis.url();
    let mut workers: Vec<Worker> = (0..3)
        .map(|i| Worker::spawn(&q, &r, 19491 + i, 10, &[], &[]))
        .collect();
    workers
        .iter_mut()
        .for_each(|w| w.wait_ready(Duration::from_secs(30)));
    let mut coord = Coordinator::scan(
        &q,
        &r,
        &["--inventory", inventory.to_str().unwrap(), "-p", PORTS],
        &[],
    );
    let _ = coord.scan_id(Duration::from_secs(30));

    let in_flight = wait_until(Duration::from_secs(20), || {
        total(&workers, "scanfleet_shards_in_flight", &[]) >= 1.0
    });
    assert!(in_flight, "no shard in flight; stderr: {}", coord.stderr());
    let done_before = total(
        &workers,
        "scanfleet_jobs_completed_total",
        &[("outcome", "done")],
    );
    redis.kill();
    let t_kill = Instant::now();
    // Down until a worker that finished probing has failed to store its results,
    // and a little longer: the shards in hand hold their results meanwhile.
    let store_errors = |w: &[Worker]| {
        total(
            w,
            "scanfleet_errors_total",
            &[("stage", "store"), ("kind", "transient")],
        )
    };
    let felt = wait_until(Duration::from_secs(40), || store_errors(&workers) >= 1.0);
    assert!(felt, "no worker tried to write while Redis was down");
    std::thread::sleep(Duration::from_secs(3));
    let outage = t_kill.elapsed();
    assert!(
        coord.running(),
        "the coordinator gave up while Redis was down: {}",
        coord.stderr()
    );
    assert!(
        workers.iter_mut().all(|w| w.alive()),
        "a worker died while Redis was down"
    );
    let held = total(&workers, "scanfleet_shards_in_flight", &[]);
    let t_start = Instant::now();
    redis.start();
    let out = coord.finish(Duration::from_secs(60));
    let recovered = t_start.elapsed();
    assert_exact(&out, &expected(&t, &HOSTS));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("the result store is unavailable")
            && said.contains("the result store is back"),
        "the coordinator did not report the outage and its end: {said}"
    );
    let store_errors = store_errors(&workers);
    for w in workers.iter_mut() {
        assert_eq!(
            w.terminate(Duration::from_secs(30)),
            Some(0),
            "a worker did not drain and exit 0 on SIGTERM"
        );
    }
    eprintln!(
        "redis restart: {done_before} shard(s) done at the kill, {held} held during the outage, \
         {store_errors} transient store errors, down {outage:?}, restart to scan end {recovered:?}, total {:?}",
        t0.elapsed()
    );
}

#[test]
fn lab_fleet_same_message_twice_counts_once() {
    let _turn = LAB.lock().unwrap_or_else(|p| p.into_inner());
    if !lab_ready() {
        return;
    }
    let t0 = Instant::now();
    relay(5672);
    relay(6379);
    let t = truth();
    let vhost = Vhost::new("twice");
    let q = vhost.url();
    let rt = rt();
    let scan_id = unique_scan_id("twice");
    let _forget = ForgetScan(scan_id.clone());
    let store = rt
        .block_on(RedisStore::connect(SHARED_REDIS, RedisConfig::default()))
        .unwrap();
    rt.block_on(store.begin_scan(&scan_id, 1)).unwrap();
    let payload = signed_job(&scan_id, in_scope_targets(&t), PORTS);
    let queue = rt.block_on(async {
        let h = connect_queue(&q, &Default::default()).await.unwrap();
        h.admin
            .init(&["default".to_string()], &Topology::default())
            .await
            .unwrap();
        h.queue.publish("default", &payload).await.unwrap();
        h.queue.publish("default", &payload).await.unwrap();
        h.admin
    });
    let mut w = Worker::spawn(&q, SHARED_REDIS, 19501, 10, &[], &[]);
    let both = wait_until(Duration::from_secs(70), || {
        metric(&w.metrics(), "scanfleet_jobs_completed_total", &[]) >= 2.0
    });
    let m = w.metrics();
    assert!(both, "the two deliveries were not both settled: {m}");
    assert_eq!(metric(&m, "scanfleet_jobs_received_total", &[]), 2.0, "{m}");
    assert_eq!(
        metric(&m, "scanfleet_jobs_completed_total", &[("outcome", "done")]),
        2.0,
        "{m}"
    );

    let expected = expected(&t, &HOSTS);
    let p = rt.block_on(store.progress(&scan_id)).unwrap();
    assert_eq!(
        p,
        Progress {
            shards_total: 1,
            shards_done: 1,
            shards_failed: 0,
            results: expected.len() as u64,
            // Every (target, port) pair decided, counted once over both deliveries.
            ports_done: in_scope_targets(&t).len() as u64 * 10_000,
        },
        "the shard counts once"
    );
    assert_eq!(
        stored_open(&rt, &store, &scan_id),
        expected,
        "results differ from the ground truth"
    );
    assert!(
        rt.block_on(queue.take_dead_letters(10)).unwrap().is_empty(),
        "a duplicate was dead-lettered"
    );
    assert_eq!(w.terminate(Duration::from_secs(30)), Some(0));
    eprintln!("same message twice: {:?}", t0.elapsed());
}

#[test]
fn lab_fleet_poison_job_reaches_dlq_while_worker_keeps_going() {
    let _turn = LAB.lock().unwrap_or_else(|p| p.into_inner());
    if !lab_ready() {
        return;
    }
    const LIMIT: u32 = 3;
    let t0 = Instant::now();
    relay(5672);
    relay(6379);
    let t = truth();
    let vhost = Vhost::new("poison");
    let q = vhost.url();
    let rt = rt();
    let store = rt
        .block_on(RedisStore::connect(SHARED_REDIS, RedisConfig::default()))
        .unwrap();
    let good_id = unique_scan_id("good");
    let _forget = ForgetScan(good_id.clone());
    rt.block_on(store.begin_scan(&good_id, 1)).unwrap();
    // Valid and signed, but for a scan the store does not know (as after a Redis
    // without persistence restarted): no retry could store its results, so the
    // worker dead-letters it after its first attempt instead of probing again on
    // every delivery the queue allows.
    let poison_id = unique_scan_id("poison");
    let _forget_poison = ForgetScan(poison_id.clone());
    let targets = in_scope_targets(&t);
    let poison = signed_job(&poison_id, targets[..1].to_vec(), "1-1000");
    let good = signed_job(&good_id, targets, PORTS);
    // The queue owns the limit: declared here, never given to the worker.
    let queue = rt.block_on(async {
        let h = connect_queue(&q, &Default::default()).await.unwrap();
        h.admin
            .init(
                &["default".to_string()],
                &Topology::with_delivery_limit(LIMIT),
            )
            .await
            .unwrap();
        h.queue.publish("default", &poison).await.unwrap();
        h.queue.publish("default", &good).await.unwrap();
        h.admin
    });
    let mut w = Worker::spawn(&q, SHARED_REDIS, 19511, 10, &[], &["--concurrency", "2"]);

    let mut dead = Vec::new();
    let mut good_done = false;
    let settled = wait_until(Duration::from_secs(75), || {
        dead.extend(rt.block_on(queue.take_dead_letters(10)).unwrap());
        good_done = good_done || rt.block_on(store.progress(&good_id)).unwrap().finished();
        !dead.is_empty() && good_done
    });
    assert!(
        settled,
        "dead letters {:?}, good job done: {good_done}; metrics: {}",
        dead.len(),
        w.metrics()
    );
    assert!(w.alive(), "the worker died");
    assert_eq!(dead.len(), 1, "only the poison job is dead-lettered");
    assert_eq!(
        dead[0].payload, poison,
        "the dead letter is the poison job, unchanged"
    );
    assert!(
        dead[0].reason.contains("is not known to the result store"),
        "reason: {:?}",
        dead[0].reason
    );

    // One delivery of the poison job, dead-lettered by the worker, and one of the
    // good job: well within the queue's limit of LIMIT deliveries.
    let mut m = String::new();
    let counted = wait_until(Duration::from_secs(5), || {
        m = w.metrics();
        metric(&m, "scanfleet_jobs_received_total", &[]) == 2.0
            && metric(
                &m,
                "scanfleet_jobs_completed_total",
                &[("outcome", "dead_lettered")],
            ) == 1.0
            && metric(&m, "scanfleet_jobs_completed_total", &[("outcome", "done")]) == 1.0
    });
    assert!(counted, "expected 1 dead-lettered and 1 done: {m}");
    assert_eq!(
        metric(
            &m,
            "scanfleet_jobs_completed_total",
            &[("outcome", "retried")]
        ),
        0.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "scanfleet_jobs_dead_lettered_total",
            &[("reason", "unknown_scan")]
        ),
        1.0,
        "{m}"
    );

    let p = rt.block_on(store.progress(&good_id)).unwrap();
    assert_eq!(
        (p.shards_total, p.shards_done, p.shards_failed),
        (1, 1, 0),
        "{p:?}"
    );
    assert_eq!(
        stored_open(&rt, &store, &good_id),
        expected(&t, &HOSTS),
        "results differ from the ground truth"
    );
    assert!(
        matches!(
            rt.block_on(store.progress(&poison_id)),
            Err(StoreError::UnknownScan(_))
        ),
        "the poison job left data behind"
    );
    // Nothing comes back after the dead letter.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        metric(&w.metrics(), "scanfleet_jobs_received_total", &[]),
        2.0
    );
    assert_eq!(w.terminate(Duration::from_secs(30)), Some(0));
    eprintln!("poison job: {:?}", t0.elapsed());
}

#[test]
fn lab_fleet_long_shard_is_not_redelivered_while_its_worker_lives() {
    let _turn = LAB.lock().unwrap_or_else(|p| p.into_inner());
    if !lab_ready() {
        return;
    }
    const LEASE_SECS: u64 = 3;
    let t0 = Instant::now();
    let moto = Moto::start();
    let _relay = Relay::new(moto.port);
    relay(6379);
    let t = truth();
    let host = "10.213.0.11";
    // One host, its 10000 ports at 800 probes/s: a shard of 12 s and more, four
    // leases and then some.
    let inventory = inventory_of(&t, &[host]);
    let env = moto.env();
    let q = format!("sqs://sftest-lease-{}", std::process::id());
    let mut workers: Vec<Worker> = (0..2)
        .map(|i| Worker::spawn(&q, SHARED_REDIS, 19521 + i, LEASE_SECS, &env, &[]))
        .collect();
    workers
        .iter_mut()
        .for_each(|w| w.wait_ready(Duration::from_secs(30)));
    let mut coord = Coordinator::scan(
        &q,
        SHARED_REDIS,
        &[
            "--inventory",
            inventory.to_str().unwrap(),
            "-p",
            PORTS,
            "--rate",
            "800",
            // One shard, not split by ports among the workers.
            "--workers",
            "1",
        ],
        &env,
    );
    let scan_id = coord.scan_id(Duration::from_secs(30));
    let _forget = ForgetScan(scan_id.clone());
    // Progress moves while the one shard runs (the worker reports per result batch),
    // not in one jump at its end.
    let rt = rt();
    let store = rt
        .block_on(RedisStore::connect(SHARED_REDIS, RedisConfig::default()))
        .unwrap();
    let pairs = 10_000u64;
    let mut midway = Vec::new();
    let ended = wait_until(Duration::from_secs(60), || {
        let p = rt.block_on(store.progress(&scan_id)).unwrap();
        if p.shards_done == 0 && p.ports_done > 0 && p.ports_done < pairs {
            midway.push(p.ports_done);
        }
        p.finished()
    });
    assert!(ended, "the scan did not finish");
    midway.dedup();
    assert!(
        midway.len() >= 3 && midway.windows(2).all(|w| w[0] < w[1]),
        "progress did not grow within the shard: {midway:?}"
    );
    let out = coord.finish(Duration::from_secs(60));
    assert_exact(&out, &expected(&t, &[host]));
    assert_eq!(
        rt.block_on(store.progress(&scan_id)).unwrap().ports_done,
        pairs,
        "every pair counted once at the end"
    );

    // A redelivery would show up within a lease of the end at the latest.
    std::thread::sleep(Duration::from_secs(LEASE_SECS + 2));
    let received = total(&workers, "scanfleet_jobs_received_total", &[]);
    let extensions = total(&workers, "scanfleet_lease_extensions_total", &[]);
    let took = total(&workers, "scanfleet_job_duration_seconds_sum", &[]);
    assert_eq!(received, 1.0, "the shard was received {received} times");
    assert!(extensions >= 1.0, "no lease extension");
    assert!(
        took > 2.0 * LEASE_SECS as f64,
        "the shard took {took} s, not clearly longer than the {LEASE_SECS} s lease"
    );
    assert_eq!(
        total(
            &workers,
            "scanfleet_jobs_completed_total",
            &[("outcome", "done")]
        ),
        1.0
    );
    for w in workers.iter_mut() {
        assert_eq!(
            w.terminate(Duration::from_secs(30)),
            Some(0),
            "a worker did not drain and exit 0 on SIGTERM"
        );
    }
    eprintln!(
        "long shard: {took:.1} s under a {LEASE_SECS} s lease, {extensions} extensions, total {:?}",
        t0.elapsed()
    );
}

/// The broker gives up on a shard whose workers all die on it: kill -9 the worker
/// holding the only shard, as often as the delivery limit allows. No worker ever
/// records an outcome; the coordinator must still end, exit 1, naming the shard.
fn a_shard_its_workers_die_on_ends_the_scan(sqs: bool) {
    let _turn = LAB.lock().unwrap_or_else(|p| p.into_inner());
    if !lab_ready() {
        return;
    }
    const LIMIT: u32 = 2;
    let t0 = Instant::now();
    relay(6379);
    let moto = sqs.then(Moto::start);
    let _moto_relay = moto.as_ref().map(|m| Relay::new(m.port));
    let vhost = (!sqs).then(|| {
        relay(5672);
        Vhost::new("killed")
    });
    let env: Vec<(&str, String)> = moto.as_ref().map(|m| m.env()).unwrap_or_default();
    let q = match &vhost {
        Some(v) => v.url(),
        None => format!("sqs://sftest-killed-{}", std::process::id()),
    };
    let t = truth();
    let host = "10.213.0.11";
    let inventory = inventory_of(&t, &[host]);
    let limit = LIMIT.to_string();
    // One shard of 10000 ports at 800 probes/s: long enough to be killed mid-way.
    let coord = Coordinator::scan(
        &q,
        SHARED_REDIS,
        &[
            "--inventory",
            inventory.to_str().unwrap(),
            "-p",
            PORTS,
            "--rate",
            "800",
            "--delivery-limit",
            &limit,
            // The only shard: not split by ports among the workers.
            "--workers",
            "1",
        ],
        &env,
    );
    let mut coord = coord;
    let scan_id = coord.scan_id(Duration::from_secs(30));
    let _forget = ForgetScan(scan_id.clone());
    for round in 0..LIMIT {
        let mut w = Worker::spawn(&q, SHARED_REDIS, 19541 + round as u16, 3, &env, &[]);
        let holding = wait_until(Duration::from_secs(40), || {
            assert!(w.alive(), "a worker exited on its own");
            metric(&w.metrics(), "scanfleet_shards_in_flight", &[]) >= 1.0
        });
        assert!(holding, "round {round}: the worker never took the shard");
        std::thread::sleep(Duration::from_millis(500));
        // SIGKILL: the worker says nothing to the queue or the store.
        let _ = w.child.kill();
        let _ = w.child.wait();
    }
    // One more worker: SQS applies its redrive policy when a receive finds the
    // message over its receive count, so something must receive. It never gets the shard.
    let mut last = Worker::spawn(&q, SHARED_REDIS, 19549, 3, &env, &[]);
    let out = coord.finish(Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("shard 0 of scan {scan_id} was dead-lettered")),
        "the shard is not named: {err}"
    );
    assert!(err.contains("1 of 1 shard failed"), "{err}");
    assert_eq!(
        metric(&last.metrics(), "scanfleet_jobs_received_total", &[]),
        0.0,
        "the dead-lettered shard was delivered again"
    );
    assert_eq!(last.terminate(Duration::from_secs(30)), Some(0));
    eprintln!(
        "{}: a shard killed {LIMIT} times ended the scan in {:?}",
        if sqs { "SQS" } else { "RabbitMQ" },
        t0.elapsed()
    );
}

#[test]
fn lab_fleet_amqp_shard_dead_lettered_by_the_broker_ends_the_scan() {
    a_shard_its_workers_die_on_ends_the_scan(false);
}

#[test]
fn lab_fleet_sqs_shard_dead_lettered_by_the_broker_ends_the_scan() {
    a_shard_its_workers_die_on_ends_the_scan(true);
}

#[test]
fn lab_fleet_a_coordinator_with_another_secret_is_told_not_left_waiting() {
    let _turn = LAB.lock().unwrap_or_else(|p| p.into_inner());
    if !lab_ready() {
        return;
    }
    relay(5672);
    relay(6379);
    let t = truth();
    let vhost = Vhost::new("secret");
    let q = vhost.url();
    let mut w = Worker::spawn(&q, SHARED_REDIS, 19551, 10, &[], &[]);
    w.wait_ready(Duration::from_secs(30));
    let inventory = inventory_of(&t, &HOSTS[..2]);
    let other = [(
        "SCANFLEET_JOB_SECRET",
        "a-different-secret-0123456789abcdef0123".to_string(),
    )];
    let mut coord = Coordinator::scan(
        &q,
        SHARED_REDIS,
        &["--inventory", inventory.to_str().unwrap(), "-p", "1-100"],
        &other,
    );
    let scan_id = coord.scan_id(Duration::from_secs(30));
    let _forget = ForgetScan(scan_id.clone());
    let out = coord.finish(Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("was dead-lettered") && err.contains("signature does not verify"),
        "the coordinator did not say why: {err}"
    );
    assert_eq!(
        metric(&w.metrics(), "scanfleet_probes_sent_total", &[]),
        0.0,
        "a job signed with another secret was probed"
    );
    assert_eq!(w.terminate(Duration::from_secs(30)), Some(0));
}
