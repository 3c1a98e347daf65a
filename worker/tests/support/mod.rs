//! Shared by the worker's integration tests: a worker over the embedded backends
//! (memory queue and store), jobs for it, and listeners on 127.0.0.0/8 that
//! count the connections they get. Each test binary uses a part of it.
#![allow(dead_code)]

use std::net::{IpAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use scanfleet_common::envelope::now_unix_ms;
use scanfleet_common::queue::JobQueue;
use scanfleet_common::queue::memory::MemoryQueue;
use scanfleet_common::scope::ScopePolicy;
use scanfleet_common::store::ResultStore;
use scanfleet_common::store::memory::MemoryStore;
use scanfleet_common::{JobEnvelope, PortSpec, ProbeProfile, ScanJob, ScanMode, Target};
use scanfleet_worker::{Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

/// The fleet secret the rig's worker verifies jobs with.
pub const SECRET: &[u8] = b"test-fleet-secret-0123456789abcdef0123";

/// A listener that counts the connections it accepts.
pub struct Counted {
    pub port: u16,
    accepted: Arc<AtomicUsize>,
}

impl Counted {
    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// A counting listener on `ip`, port chosen by the kernel.
pub fn counted_listener(ip: &str) -> Counted {
    let l = TcpListener::bind((ip, 0)).unwrap();
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

/// A connect scan of one `port` of `ip` (parsed as written, as a hostile or
/// older coordinator would send it), without service detection or host
/// discovery.
pub fn job(scan: &str, shard: u32, ip: &str, port: u16) -> ScanJob {
    ScanJob {
        scan_id: scan.into(),
        shard_id: shard,
        zone: "default".into(),
        targets: vec![Target {
            ip: ip.parse::<IpAddr>().unwrap(),
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
        scope: None,
    }
}

/// `job` sealed with [`SECRET`], due in a minute.
pub fn sealed(job: &ScanJob) -> JobEnvelope {
    JobEnvelope::seal(job, 1, now_unix_ms() + 60_000, Some(SECRET))
}

/// A worker with its queue and store.
pub struct Rig {
    pub queue: Arc<MemoryQueue>,
    pub store: Arc<MemoryStore>,
    pub worker: Arc<Worker>,
}

/// A rig whose worker knows [`SECRET`] and enforces `scope`.
pub fn rig(scope: ScopePolicy) -> Rig {
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
    /// Put raw bytes on the worker's queue.
    pub async fn publish_bytes(&self, bytes: &[u8]) {
        self.queue.publish("default", bytes).await.unwrap();
    }

    /// Put `env` on the worker's queue.
    pub async fn publish_env(&self, env: &JobEnvelope) {
        self.publish_bytes(&env.to_bytes()).await;
    }

    /// Put `job`, [`sealed`], on the worker's queue.
    pub async fn publish(&self, job: &ScanJob) {
        self.publish_env(&sealed(job)).await;
    }

    /// Run the worker until the queue is drained (bounded: 5 s).
    pub async fn drain(&self) {
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

    /// Why each dead-lettered message was refused, in order.
    pub fn dead_letter_reasons(&self) -> Vec<String> {
        self.queue
            .dead_letters()
            .into_iter()
            .map(|d| d.reason)
            .collect()
    }

    /// After a grace period for stray connections, assert that `target` was
    /// never probed.
    pub async fn assert_unprobed(&self, target: &Counted, what: &str) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(target.accepted(), 0, "{what} was probed");
    }

    /// Assert that the worker's metrics contain `line`.
    pub fn assert_metric(&self, line: &str) {
        let text = self.worker.metrics.render();
        assert!(text.contains(line), "missing {line}: {text}");
    }
}
