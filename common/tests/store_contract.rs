//! The `ResultStore` contract, written once against `Arc<dyn ResultStore>` and run
//! unchanged against every backend: `memory::<behaviour>` (the embedded store) and
//! `redis::<behaviour>` (a real server, `SCANFLEET_REDIS_URL`, default
//! `redis://127.0.0.1:6379`). Each test gets a scan id of its own
//! (`sftest-store-<pid>-<n>-<t>`), and the Redis keys are deleted at the end whether
//! the test passed or failed. What only Redis has (key layout, expiry, corrupt
//! contents, restarts) stays in `redis_store.rs`.

use std::future::Future;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use scanfleet_common::store::memory::MemoryStore;
use scanfleet_common::store::redis::{RedisConfig, RedisStore};
use scanfleet_common::store::{ResultStore, StoreError};
use scanfleet_common::{PortState, ProbeResult, Progress, Protocol, ServiceInfo, ShardOutcome};
use scanfleet_testkit::{redis_url, unique_name};

/// The backends the contract runs against.
#[derive(Clone, Copy)]
enum Backend {
    Memory,
    Redis,
}

/// Run `body` with a fresh store of `backend` and a scan id nobody uses; then
/// delete the scan's keys (Redis) whether the body passed or panicked.
async fn run<F, Fut>(backend: Backend, body: F)
where
    F: FnOnce(Arc<dyn ResultStore>, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let scan = unique_name("sftest-store");
    match backend {
        Backend::Memory => body(Arc::new(MemoryStore::new()), scan).await,
        Backend::Redis => {
            let redis = RedisStore::connect(&redis_url(), RedisConfig::default())
                .await
                .expect("Redis on SCANFLEET_REDIS_URL (127.0.0.1:6379) must be running");
            let store: Arc<dyn ResultStore> = Arc::new(redis.clone());
            let outcome = AssertUnwindSafe(body(store, scan.clone()))
                .catch_unwind()
                .await;
            redis
                .delete_scan(&scan)
                .await
                .expect("delete the test's keys");
            if let Err(panic) = outcome {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

/// One named `#[tokio::test]` per backend and behaviour: `memory::<name>`, `redis::<name>`.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::run(super::Backend::Memory, super::$name).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::run(super::Backend::Redis, super::$name).await;
                }
            )*
        }
    };
}

contract!(
    begin_scan_registers_an_empty_scan,
    begin_scan_again_keeps_what_is_there,
    rewrites_replace_per_ip_port_proto,
    results_are_ordered_by_ip_then_port,
    results_survive_the_roundtrip_unchanged,
    done_overrides_failed_never_the_reverse,
    concurrent_finish_counts_done_once,
    progress_counts_shards_and_results,
    zero_shard_scan_is_finished_at_once,
    port_progress_per_shard_only_grows,
    unknown_scan_is_an_error_everywhere,
    unfinished_shards_are_those_without_an_outcome,
    times_say_when_it_began_and_when_the_last_shard_ended,
    shard_stats_roundtrip_and_a_redelivery_replaces_them,
    planned_jobs_are_kept_and_a_cancel_mark_set_once,
);

fn r(scan: &str, ip: &str, port: u16, state: PortState) -> ProbeResult {
    ProbeResult {
        scan_id: scan.into(),
        asset_id: format!("i-{ip}"),
        ip: ip.parse().expect("a test address"),
        port,
        protocol: Protocol::Tcp,
        state,
        reason: "syn-ack".into(),
        service: None,
    }
}

fn failed(why: &str) -> ShardOutcome {
    ShardOutcome::Failed { reason: why.into() }
}

/// Record `shard` as done; whether it was recorded now.
async fn done(st: &dyn ResultStore, scan: &str, shard: u32) -> bool {
    st.finish_shard(scan, shard, &ShardOutcome::Done)
        .await
        .unwrap()
}

async fn begin_scan_registers_an_empty_scan(st: Arc<dyn ResultStore>, scan: String) {
    st.begin_scan(&scan, 3).await.unwrap();
    assert_eq!(
        st.progress(&scan).await.unwrap(),
        Progress {
            shards_total: 3,
            ..Progress::default()
        }
    );
    assert!(st.results(&scan).await.unwrap().is_empty());
    assert!(!st.progress(&scan).await.unwrap().finished());
}

/// A coordinator that restarts registers its scan again: nothing is lost.
async fn begin_scan_again_keeps_what_is_there(st: Arc<dyn ResultStore>, scan: String) {
    st.begin_scan(&scan, 2).await.unwrap();
    st.write_results(&scan, &[r(&scan, "10.0.0.1", 22, PortState::Open)])
        .await
        .unwrap();
    assert!(done(&*st, &scan, 0).await);
    st.record_ports(&scan, 0, 7).await.unwrap();
    st.begin_scan(&scan, 2).await.unwrap();
    assert_eq!(
        st.progress(&scan).await.unwrap(),
        Progress {
            shards_total: 2,
            shards_done: 1,
            shards_failed: 0,
            results: 1,
            ports_done: 7,
        }
    );
    assert_eq!(st.results(&scan).await.unwrap().len(), 1);
    assert!(
        !done(&*st, &scan, 0).await,
        "shard 0 stays done across the re-registration"
    );
}

/// A redelivered shard writes its results again: (ip, port, proto) is the key, the
/// last write wins, and nothing is counted twice.
async fn rewrites_replace_per_ip_port_proto(st: Arc<dyn ResultStore>, scan: String) {
    st.begin_scan(&scan, 1).await.unwrap();
    let first = [
        r(&scan, "10.0.0.2", 22, PortState::Closed),
        r(&scan, "10.0.0.2", 80, PortState::Open),
    ];
    st.write_results(&scan, &first).await.unwrap();
    st.write_results(&scan, &first).await.unwrap();
    st.write_results(&scan, &[r(&scan, "10.0.0.2", 22, PortState::Open)])
        .await
        .unwrap();
    st.write_results(&scan, &[]).await.unwrap();
    let got = st.results(&scan).await.unwrap();
    let states: Vec<(u16, PortState)> = got.iter().map(|r| (r.port, r.state)).collect();
    assert_eq!(states, [(22, PortState::Open), (80, PortState::Open)]);
    assert_eq!(st.progress(&scan).await.unwrap().results, 2);
}

/// Ordered by address (numerically, IPv4 before IPv6) then port (numerically),
/// whatever the write order.
async fn results_are_ordered_by_ip_then_port(st: Arc<dyn ResultStore>, scan: String) {
    st.begin_scan(&scan, 2).await.unwrap();
    let batches = [
        [
            ("fd00::1", 22, PortState::Filtered),
            ("10.0.0.10", 443, PortState::Open),
            ("10.0.0.2", 8080, PortState::Open),
        ],
        [
            ("10.0.0.2", 9, PortState::Closed),
            ("10.0.0.2", 80, PortState::Open),
            ("10.0.0.10", 22, PortState::Open),
        ],
    ];
    for batch in batches {
        let results: Vec<ProbeResult> = batch
            .iter()
            .map(|&(ip, port, state)| r(&scan, ip, port, state))
            .collect();
        st.write_results(&scan, &results).await.unwrap();
    }
    let got: Vec<(IpAddr, u16)> = st
        .results(&scan)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.ip, r.port))
        .collect();
    let want: Vec<(IpAddr, u16)> = [
        ("10.0.0.2", 9),
        ("10.0.0.2", 80),
        ("10.0.0.2", 8080),
        ("10.0.0.10", 22),
        ("10.0.0.10", 443),
        ("fd00::1", 22),
    ]
    .iter()
    .map(|(ip, p)| (ip.parse().unwrap(), *p))
    .collect();
    assert_eq!(got, want);
}

/// Every field comes back as written, service details and escaped banners included.
async fn results_survive_the_roundtrip_unchanged(st: Arc<dyn ResultStore>, scan: String) {
    st.begin_scan(&scan, 1).await.unwrap();
    let mut tls = r(&scan, "10.0.0.10", 443, PortState::Open);
    tls.service = Some(ServiceInfo {
        name: "https".into(),
        product: Some("nginx".into()),
        version: Some("1.25".into()),
        banner: Some("HTTP/1.1 200 OK\\r\\n\\x1b]0;x".into()),
        extra: [("tls_subject".to_string(), "CN=example".to_string())].into(),
        ..ServiceInfo::default()
    });
    let v6 = r(&scan, "fd00::1", 22, PortState::Filtered);
    st.write_results(&scan, &[tls.clone(), v6.clone()])
        .await
        .unwrap();
    assert_eq!(st.results(&scan).await.unwrap(), [tls, v6]);
}

/// `Done` overrides an earlier `Failed`, never the reverse, and only the first
/// `Done` of a shard returns true.
async fn done_overrides_failed_never_the_reverse(st: Arc<dyn ResultStore>, scan: String) {
    st.begin_scan(&scan, 4).await.unwrap();
    let steps: Vec<(u32, ShardOutcome, bool)> = vec![
        (0, failed("x"), false),
        (0, ShardOutcome::Done, true),  // Done overrides Failed
        (0, ShardOutcome::Done, false), // only the first Done counts
        (0, failed("y"), false),        // never the reverse
        (1, ShardOutcome::Done, true),
        (2, failed("z"), false),
        (2, failed("again"), false),
        (3, failed("w"), false),
    ];
    for (shard, outcome, want) in steps {
        let first_done = st.finish_shard(&scan, shard, &outcome).await.unwrap();
        assert_eq!(first_done, want, "shard {shard} {outcome:?}");
    }
    let p = st.progress(&scan).await.unwrap();
    assert_eq!(
        (p.shards_total, p.shards_done, p.shards_failed),
        (4, 2, 2),
        "shard 0 counted once, as done; shard 2 once, as failed"
    );
    assert!(p.finished());
}

/// Redelivered copies of one shard finishing at once: exactly one first `Done`.
async fn concurrent_finish_counts_done_once(st: Arc<dyn ResultStore>, scan: String) {
    st.begin_scan(&scan, 1).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (st, scan) = (st.clone(), scan.clone());
        tasks.push(tokio::spawn(async move {
            let o = if i % 3 == 0 {
                failed("t")
            } else {
                ShardOutcome::Done
            };
            st.finish_shard(&scan, 0, &o).await.unwrap()
        }));
    }
    let mut firsts = 0;
    for t in tasks {
        firsts += usize::from(t.await.unwrap());
    }
    assert_eq!(firsts, 1);
    let p = st.progress(&scan).await.unwrap();
    assert_eq!((p.shards_done, p.shards_failed), (1, 0));
}

async fn progress_counts_shards_and_results(st: Arc<dyn ResultStore>, scan: String) {
    st.begin_scan(&scan, 3).await.unwrap();
    st.write_results(
        &scan,
        &[
            r(&scan, "10.0.0.1", 22, PortState::Open),
            r(&scan, "10.0.0.1", 23, PortState::Closed),
        ],
    )
    .await
    .unwrap();
    assert!(done(&*st, &scan, 0).await);
    let p = st.progress(&scan).await.unwrap();
    assert_eq!(
        (p.shards_done, p.shards_failed, p.results),
        (1, 0, 2),
        "{p:?}"
    );
    assert!(!p.finished(), "two shards have no outcome yet");
    assert!(!st.finish_shard(&scan, 1, &failed("boom")).await.unwrap());
    st.write_results(&scan, &[r(&scan, "10.0.0.3", 22, PortState::Open)])
        .await
        .unwrap();
    assert!(done(&*st, &scan, 2).await);
    let p = st.progress(&scan).await.unwrap();
    assert_eq!(
        (p.shards_total, p.shards_done, p.shards_failed, p.results),
        (3, 2, 1, 3)
    );
    assert!(p.finished(), "every shard has an outcome");
}

async fn zero_shard_scan_is_finished_at_once(st: Arc<dyn ResultStore>, scan: String) {
    st.begin_scan(&scan, 0).await.unwrap();
    let p = st.progress(&scan).await.unwrap();
    assert_eq!(p, Progress::default());
    assert!(p.finished());
    let t = st.times(&scan).await.unwrap();
    assert_eq!(t.finished_unix_ms, Some(t.started_unix_ms));
}

/// Workers report decided (target, port) pairs per result batch; a shard's count
/// only grows, so a redelivery starting over from zero never double counts, and
/// the scan's `ports_done` is the sum over shards.
async fn port_progress_per_shard_only_grows(st: Arc<dyn ResultStore>, scan: String) {
    st.begin_scan(&scan, 2).await.unwrap();
    st.record_ports(&scan, 0, 100).await.unwrap();
    st.record_ports(&scan, 1, 40).await.unwrap();
    assert_eq!(st.progress(&scan).await.unwrap().ports_done, 140);
    // The redelivery of shard 0 counts from zero again.
    st.record_ports(&scan, 0, 10).await.unwrap();
    st.record_ports(&scan, 0, 100).await.unwrap();
    assert_eq!(st.progress(&scan).await.unwrap().ports_done, 140);
    st.record_ports(&scan, 0, 120).await.unwrap();
    st.record_ports(&scan, 1, 40).await.unwrap();
    let p = st.progress(&scan).await.unwrap();
    assert_eq!(p.ports_done, 160);
    assert_eq!(
        (p.shards_done, p.shards_failed, p.results),
        (0, 0, 0),
        "port progress is not shard or result progress"
    );
}

/// A scan that was never registered is `UnknownScan` for every call (naming the
/// scan), and none of them registers it.
async fn unknown_scan_is_an_error_everywhere(st: Arc<dyn ResultStore>, scan: String) {
    let unknown = |e: Result<(), StoreError>, call: &str| match e {
        Err(StoreError::UnknownScan(s)) => assert_eq!(s, scan, "{call}"),
        other => panic!("{call}: expected UnknownScan, got {other:?}"),
    };
    unknown(st.progress(&scan).await.map(|_| ()), "progress");
    unknown(st.results(&scan).await.map(|_| ()), "results");
    unknown(
        st.write_results(&scan, &[r(&scan, "10.0.0.1", 1, PortState::Open)])
            .await,
        "write_results",
    );
    unknown(st.write_results(&scan, &[]).await, "write_results([])");
    unknown(
        st.finish_shard(&scan, 0, &ShardOutcome::Done)
            .await
            .map(|_| ()),
        "finish_shard",
    );
    unknown(st.record_ports(&scan, 0, 5).await, "record_ports");
    unknown(
        st.unfinished_shards(&scan).await.map(|_| ()),
        "unfinished_shards",
    );
    unknown(st.times(&scan).await.map(|_| ()), "times");
    unknown(st.save_jobs(&scan, &[(0, "{}".into())]).await, "save_jobs");
    unknown(st.jobs(&scan).await.map(|_| ()), "jobs");
    unknown(st.cancel_scan(&scan).await.map(|_| ()), "cancel_scan");
    unknown(st.is_cancelled(&scan).await.map(|_| ()), "is_cancelled");
    unknown(st.progress(&scan).await.map(|_| ()), "progress afterwards");
}

async fn unfinished_shards_are_those_without_an_outcome(st: Arc<dyn ResultStore>, scan: String) {
    st.begin_scan(&scan, 4).await.unwrap();
    assert_eq!(st.unfinished_shards(&scan).await.unwrap(), [0, 1, 2, 3]);
    st.finish_shard(&scan, 2, &ShardOutcome::Done)
        .await
        .unwrap();
    let failed = ShardOutcome::Failed {
        reason: "dead-lettered".into(),
    };
    st.finish_shard(&scan, 0, &failed).await.unwrap();
    // Progress counted on a shard is not an outcome.
    st.record_ports(&scan, 1, 10).await.unwrap();
    assert_eq!(st.unfinished_shards(&scan).await.unwrap(), [1, 3]);
}

async fn times_say_when_it_began_and_when_the_last_shard_ended(
    st: Arc<dyn ResultStore>,
    scan: String,
) {
    let before = scanfleet_common::envelope::now_unix_ms();
    st.begin_scan(&scan, 2).await.unwrap();
    let t = st.times(&scan).await.unwrap();
    assert!(
        t.started_unix_ms >= before && t.finished_unix_ms.is_none(),
        "{t:?}"
    );
    let failed = ShardOutcome::Failed { reason: "x".into() };
    st.finish_shard(&scan, 1, &failed).await.unwrap();
    assert_eq!(st.times(&scan).await.unwrap().finished_unix_ms, None);
    st.finish_shard(&scan, 0, &ShardOutcome::Done)
        .await
        .unwrap();
    let end = st
        .times(&scan)
        .await
        .unwrap()
        .finished_unix_ms
        .expect("finished");
    assert!(end >= t.started_unix_ms && end <= scanfleet_common::envelope::now_unix_ms() + 1);
    // A later outcome (Done over Failed) does not move the end.
    st.finish_shard(&scan, 1, &ShardOutcome::Done)
        .await
        .unwrap();
    assert_eq!(st.times(&scan).await.unwrap().finished_unix_ms, Some(end));
}

async fn shard_stats_roundtrip_and_a_redelivery_replaces_them(
    st: Arc<dyn ResultStore>,
    scan: String,
) {
    use scanfleet_common::{ShardStats, TargetAccuracy};
    assert!(matches!(
        st.shard_stats(&scan).await,
        Err(scanfleet_common::store::StoreError::UnknownScan(_))
    ));
    st.begin_scan(&scan, 2).await.unwrap();
    assert!(st.shard_stats(&scan).await.unwrap().is_empty());
    let mut s = ShardStats {
        shard_id: 1,
        engine: "syn".into(),
        probes_sent: 70_000,
        retransmits: 4_465,
        passes: 2,
        miss_chance: 3.5e-6,
        targets: vec![TargetAccuracy {
            ip: "10.0.0.5".parse().unwrap(),
            probes_sent: 70_000,
            retransmits: 4_465,
            answer_ratio: 0.93,
            loss: 0.0019,
            ceiling_pps: 19_046,
            max_rate_pps: 19_046,
            backoffs: 0,
            miss_chance: 3.5e-6,
        }],
    };
    st.record_shard_stats(&scan, &s).await.unwrap();
    st.record_shard_stats(
        &scan,
        &ShardStats {
            shard_id: 0,
            ..ShardStats::default()
        },
    )
    .await
    .unwrap();
    s.probes_sent = 71_000;
    st.record_shard_stats(&scan, &s).await.unwrap();
    let got = st.shard_stats(&scan).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].shard_id, 0);
    assert_eq!(got[1], s, "the later record replaced the first");
}

async fn planned_jobs_are_kept_and_a_cancel_mark_set_once(st: Arc<dyn ResultStore>, scan: String) {
    st.begin_scan(&scan, 3).await.unwrap();
    assert!(st.jobs(&scan).await.unwrap().is_empty());
    st.save_jobs(&scan, &[(2, "{\"c\":2}".into()), (0, "{\"a\":0}".into())])
        .await
        .unwrap();
    st.save_jobs(&scan, &[(1, "{\"b\":1}".into())])
        .await
        .unwrap();
    assert_eq!(
        st.jobs(&scan).await.unwrap(),
        [
            (0, "{\"a\":0}".to_string()),
            (1, "{\"b\":1}".to_string()),
            (2, "{\"c\":2}".to_string())
        ]
    );
    assert!(!st.is_cancelled(&scan).await.unwrap());
    assert!(st.cancel_scan(&scan).await.unwrap(), "first cancel");
    assert!(!st.cancel_scan(&scan).await.unwrap(), "second cancel");
    assert!(st.is_cancelled(&scan).await.unwrap());
    st.uncancel_scan(&scan).await.unwrap();
    assert!(!st.is_cancelled(&scan).await.unwrap());
    // Cancelling touches no progress.
    assert_eq!(st.progress(&scan).await.unwrap().shards_done, 0);
    // What resume runs again: failed shards and those without an outcome.
    st.finish_shard(&scan, 0, &ShardOutcome::Done)
        .await
        .unwrap();
    st.finish_shard(&scan, 2, &failed("scan cancelled"))
        .await
        .unwrap();
    assert_eq!(st.failed_shards(&scan).await.unwrap(), [2]);
    assert_eq!(st.unfinished_shards(&scan).await.unwrap(), [1]);
    st.finish_shard(&scan, 2, &ShardOutcome::Done)
        .await
        .unwrap();
    assert!(st.failed_shards(&scan).await.unwrap().is_empty());
}
