//! The consume loop over the embedded backends (memory queue and store): jobs
//! are verified before anything is probed, bad jobs are dead-lettered with their
//! reason, good ones are acked after their results are stored, and a redelivered
//! shard never double counts. Probes go only to listeners on 127.0.0.1 that the
//! test starts.

mod support;

use scanfleet_common::JobEnvelope;
use scanfleet_common::PortState;
use scanfleet_common::envelope::now_unix_ms;
use scanfleet_common::scope::ScopePolicy;
use scanfleet_common::store::ResultStore;
use support::{SECRET, counted_listener, rig, sealed};

/// One connect probe of `port` on 127.0.0.1.
fn job(scan: &str, shard: u32, port: u16) -> scanfleet_common::ScanJob {
    support::job(scan, shard, "127.0.0.1", port)
}

#[tokio::test]
async fn good_job_is_stored_then_acked_and_redelivery_never_double_counts() {
    let target = counted_listener("127.0.0.1");
    let r = rig(ScopePolicy::default());
    r.store.begin_scan("s1", 1).await.unwrap();
    let env = sealed(&job("s1", 0, target.port));
    r.publish_env(&env).await;
    r.publish_env(&env).await; // delivered twice
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
    r.assert_metric("scanfleet_jobs_completed_total{outcome=\"done\"} 2");
    r.assert_metric("scanfleet_ports_total{state=\"open\"} 2");
}

#[tokio::test]
async fn forged_expired_malformed_and_out_of_scope_jobs_are_dead_lettered_unprobed() {
    let target = counted_listener("127.0.0.1");
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
        r.publish_env(env).await;
    }
    r.publish_bytes(b"{not json").await;
    r.drain().await;

    let reasons = r.dead_letter_reasons();
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
    r.assert_unprobed(&target, "a refused job").await;
    assert!(r.store.results("s2").await.unwrap().is_empty());
    for (reason, n) in [
        ("signature", 2),
        ("expired", 1),
        ("scope", 1),
        ("malformed", 1),
    ] {
        r.assert_metric(&format!(
            "scanfleet_jobs_dead_lettered_total{{reason=\"{reason}\"}} {n}"
        ));
    }
}
