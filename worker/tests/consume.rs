//! The consume loop over the embedded backends (memory queue and store): jobs
//! are verified before anything is probed, bad jobs are dead-lettered with their
//! reason, good ones are acked after their results are stored, and a redelivered
//! shard never double counts. Probes go only to listeners on 127.0.0.1 that the
//! test starts.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use scanfleet_common::envelope::now_unix_ms;
use scanfleet_common::queue::JobQueue;
use scanfleet_common::queue::memory::MemoryQueue;
use scanfleet_common::scope::ScopePolicy;
use scanfleet_common::store::ResultStore;
use scanfleet_common::store::memory::MemoryStore;
use scanfleet_common::{JobEnvelope, PortSpec, PortState, ProbeProfile, ScanJob, ScanMode, Target};
use scanfleet_worker::{Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

const SECRET: &[u8] = b"test-fleet-secret-0123456789abcdef0123";

struct Counted {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

fn counted_listener() -> Counted {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let a = accepted.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            if s.is_ok() {
                a.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    Counted { port, accepted }
}

fn job(scan: &str, shard: u32, port: u16) -> ScanJob {
    ScanJob {
        scan_id: scan.into(),
        shard_id: shard,
        zone: "default".into(),
        targets: vec![Target {
            ip: "127.0.0.1".parse().unwrap(),
            asset_id: "lo".into(),
            rate_pps: 1000,
        }],
        ports: PortSpec::parse(&port.to_string()).unwrap(),
        profile: ProbeProfile {
            mode: ScanMode::Connect,
            timeout_ms: 500,
            service_detection: false,
            host_discovery: false,
            ..ProbeProfile::default()
        },
    }
}

struct Rig {
    queue: Arc<MemoryQueue>,
    store: Arc<MemoryStore>,
    worker: Arc<Worker>,
}

fn rig(scope: ScopePolicy) -> Rig {
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30), 3));
    let store = Arc::new(MemoryStore::new());
    let config = WorkerConfig {
        secret: Some(SECRET.to_vec()),
        scope,
        receive_wait: Duration::from_millis(50),
        ..WorkerConfig::default()
    };
    let worker = Arc::new(Worker::new(
        queue.clone() as Arc<dyn JobQueue>,
        store.clone() as Arc<dyn ResultStore>,
        config,
    ));
    Rig {
        queue,
        store,
        worker,
    }
}

impl Rig {
    /// Run the worker until the queue is drained.
    async fn drain(&self) {
        let stop = CancellationToken::new();
        let h = tokio::spawn(self.worker.clone().run(stop.clone()));
        for _ in 0..200 {
            if self.queue.pending() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        stop.cancel();
        h.await.unwrap().unwrap();
        assert_eq!(self.queue.pending(), 0, "queue not drained");
    }
}

#[tokio::test]
async fn good_job_is_stored_then_acked_and_redelivery_never_double_counts() {
    let target = counted_listener();
    let r = rig(ScopePolicy::default());
    r.store.begin_scan("s1", 1).await.unwrap();
    let env = JobEnvelope::seal(
        &job("s1", 0, target.port),
        1,
        now_unix_ms() + 60_000,
        Some(SECRET),
    );
    r.queue.publish("default", &env.to_bytes()).await.unwrap();
    r.queue.publish("default", &env.to_bytes()).await.unwrap(); // delivered twice
    r.drain().await;

    let results = r.store.results("s1").await.unwrap();
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(
        (results[0].port, results[0].state),
        (target.port, PortState::Open)
    );
    let p = r.store.progress("s1").await.unwrap();
    assert_eq!((p.shards_done, p.results), (1, 1));
    assert!(r.queue.dead_letters().is_empty());
    let text = r.worker.metrics.render();
    assert!(
        text.contains("scanfleet_jobs_completed_total{outcome=\"done\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("scanfleet_ports_total{state=\"open\"} 2"),
        "{text}"
    );
}

#[tokio::test]
async fn forged_expired_malformed_and_out_of_scope_jobs_are_dead_lettered_unprobed() {
    let target = counted_listener();
    let r = rig(ScopePolicy {
        exclude_cidrs: vec!["127.0.0.0/8".parse().unwrap()],
        ..ScopePolicy::default()
    });
    r.store.begin_scan("s2", 4).await.unwrap();
    let later = now_unix_ms() + 60_000;
    let forged = JobEnvelope::seal(
        &job("s2", 0, target.port),
        1,
        later,
        Some(b"not-the-fleet-secret"),
    );
    let expired = JobEnvelope::seal(
        &job("s2", 1, target.port),
        1,
        now_unix_ms() - 1,
        Some(SECRET),
    );
    let out_of_scope = JobEnvelope::seal(&job("s2", 2, target.port), 1, later, Some(SECRET));
    let mut tampered = JobEnvelope::seal(&job("s2", 3, target.port), 1, later, Some(SECRET));
    tampered.body = tampered.body.replace("\"lo\"", "\"evil\"");
    for env in [&forged, &expired, &out_of_scope, &tampered] {
        r.queue.publish("default", &env.to_bytes()).await.unwrap();
    }
    r.queue.publish("default", b"{not json").await.unwrap();
    r.drain().await;

    let reasons: Vec<String> = r
        .queue
        .dead_letters()
        .into_iter()
        .map(|d| d.reason)
        .collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    assert!(
        reasons[0].contains("signature does not verify"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("deadline passed"), "{reasons:?}");
    assert!(
        reasons[2].contains("out of this worker's scope"),
        "{reasons:?}"
    );
    assert!(
        reasons[3].contains("signature does not verify"),
        "{reasons:?}"
    );
    assert!(reasons[4].contains("not a valid envelope"), "{reasons:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        target.accepted.load(Ordering::SeqCst),
        0,
        "a refused job was probed"
    );
    assert!(r.store.results("s2").await.unwrap().is_empty());
    let text = r.worker.metrics.render();
    for (reason, n) in [
        ("signature", 2),
        ("expired", 1),
        ("scope", 1),
        ("malformed", 1),
    ] {
        let line = format!("scanfleet_jobs_dead_lettered_total{{reason=\"{reason}\"}} {n}");
        assert!(text.contains(&line), "missing {line}: {text}");
    }
}
