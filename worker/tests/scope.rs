//! The worker's own scope check on the jobs it receives (defence in depth): a
//! signed job whose target is excluded once its address is read as IPv4, or is not
//! unicast, is dead-lettered with reason scope and nothing is probed. Probes go
//! only to listeners on 127.0.0.0/8 that the test starts.

use std::collections::BTreeSet;
use std::net::{IpAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use scanfleet_common::address::AddressClass;
use scanfleet_common::envelope::now_unix_ms;
use scanfleet_common::queue::JobQueue;
use scanfleet_common::queue::memory::MemoryQueue;
use scanfleet_common::scope::ScopePolicy;
use scanfleet_common::store::ResultStore;
use scanfleet_common::store::memory::MemoryStore;
use scanfleet_common::{JobEnvelope, PortSpec, ProbeProfile, ScanJob, ScanMode, Target};
use scanfleet_worker::{Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

const SECRET: &[u8] = b"scope-test-secret-of-at-least-32-bytes";

/// A listener on `ip` that counts the connections it accepts.
fn counted_listener(ip: &str) -> (u16, Arc<AtomicUsize>) {
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
    (port, accepted)
}

fn job(scan: &str, shard: u32, ip: &str, port: u16, allow: &[AddressClass]) -> ScanJob {
    ScanJob {
        scan_id: scan.into(),
        shard_id: shard,
        zone: "default".into(),
        targets: vec![Target {
            // Exactly as a hostile or older coordinator would write it.
            ip: ip.parse::<IpAddr>().unwrap(),
            asset_id: "t".into(),
            rate_pps: 1000,
        }],
        ports: PortSpec::parse(&port.to_string()).unwrap(),
        profile: ProbeProfile {
            mode: ScanMode::Connect,
            timeout_ms: 500,
            service_detection: false,
            host_discovery: false,
            allow_address_classes: allow.iter().copied().collect::<BTreeSet<_>>(),
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
    let worker = Arc::new(Worker::new(
        queue.clone() as Arc<dyn JobQueue>,
        store.clone() as Arc<dyn ResultStore>,
        WorkerConfig {
            secret: Some(SECRET.to_vec()),
            scope,
            receive_wait: Duration::from_millis(50),
            ..WorkerConfig::default()
        },
    ));
    Rig {
        queue,
        store,
        worker,
    }
}

impl Rig {
    async fn publish(&self, job: &ScanJob) {
        let env = JobEnvelope::seal(job, 1, now_unix_ms() + 60_000, Some(SECRET));
        self.queue
            .publish("default", &env.to_bytes())
            .await
            .unwrap();
    }

    /// Run the worker until the queue is drained (bounded: 5 s).
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

    fn dead_letter_reasons(&self) -> Vec<String> {
        self.queue
            .dead_letters()
            .into_iter()
            .map(|d| d.reason)
            .collect()
    }
}

#[tokio::test]
async fn mapped_job_target_inside_an_exclusion_is_dead_lettered_unprobed() {
    let (port, accepted) = counted_listener("127.0.0.100");
    let r = rig(ScopePolicy {
        exclude_cidrs: vec!["127.0.0.96/27".parse().unwrap()],
        ..ScopePolicy::default()
    });
    r.store.begin_scan("mapped", 2).await.unwrap();
    r.publish(&job("mapped", 0, "::ffff:127.0.0.100", port, &[]))
        .await;
    r.publish(&job("mapped", 1, "::127.0.0.100", port, &[]))
        .await;
    r.drain().await;

    let reasons = r.dead_letter_reasons();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    for reason in &reasons {
        assert!(
            reason.contains("target 127.0.0.100 is out of this worker's scope")
                && reason.contains("excluded block 127.0.0.96/27"),
            "{reason}"
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "an excluded target was probed"
    );
    assert!(r.store.results("mapped").await.unwrap().is_empty());
    let text = r.worker.metrics.render();
    assert!(
        text.contains("scanfleet_jobs_dead_lettered_total{reason=\"scope\"} 2"),
        "{text}"
    );
}

#[tokio::test]
async fn non_unicast_job_targets_are_refused_unless_the_signed_job_allows_the_class() {
    let (port, accepted) = counted_listener("127.0.0.1");
    let r = rig(ScopePolicy::default());
    r.store.begin_scan("classes", 5).await.unwrap();
    // 0.0.0.0 reaches the scanner itself: the listener above would count it.
    r.publish(&job("classes", 0, "0.0.0.0", port, &[])).await;
    r.publish(&job("classes", 1, "::ffff:0.0.0.0", port, &[]))
        .await;
    r.publish(&job("classes", 2, "169.254.169.254", port, &[]))
        .await;
    r.publish(&job(
        "classes",
        3,
        "224.0.0.1",
        port,
        &[AddressClass::LinkLocal],
    ))
    .await;
    r.drain().await;
    let reasons = r.dead_letter_reasons();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(
        reasons[0].contains("0.0.0.0 is unspecified")
            && reasons[0].contains("--allow-address-class unspecified"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("0.0.0.0 is unspecified"), "{reasons:?}");
    assert!(
        reasons[2].contains("169.254.169.254 is link-local (the instance metadata service)"),
        "{reasons:?}"
    );
    assert!(reasons[3].contains("224.0.0.1 is multicast"), "{reasons:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "a refused job was probed"
    );

    // The same target in a job whose signed profile allowed the class is worked.
    r.publish(&job(
        "classes",
        4,
        "0.0.0.0",
        port,
        &[AddressClass::Unspecified],
    ))
    .await;
    r.drain().await;
    assert_eq!(r.dead_letter_reasons().len(), 4);
    assert_eq!(r.store.progress("classes").await.unwrap().shards_done, 1);
    assert!(
        accepted.load(Ordering::SeqCst) >= 1,
        "the allowed job was not probed"
    );
}
