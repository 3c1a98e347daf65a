//! The worker's own scope check on the jobs it receives (defence in depth): a
//! signed job whose target is excluded once its address is read as IPv4, or is not
//! unicast, is dead-lettered with reason scope and nothing is probed. Probes go
//! only to listeners on 127.0.0.0/8 that the test starts.

mod support;

use scanfleet_common::ScanJob;
use scanfleet_common::address::AddressClass;
use scanfleet_common::scope::ScopePolicy;
use scanfleet_common::store::ResultStore;
use support::{counted_listener, rig};

/// One connect probe of `port` on `ip`, allowing the address classes `allow`.
fn job(scan: &str, shard: u32, ip: &str, port: u16, allow: &[AddressClass]) -> ScanJob {
    let mut job = support::job(scan, shard, ip, port);
    job.profile.allow_address_classes = allow.iter().copied().collect();
    job
}

#[tokio::test]
async fn mapped_job_target_inside_an_exclusion_is_dead_lettered_unprobed() {
    let target = counted_listener("127.0.0.100");
    let port = target.port;
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
    r.assert_unprobed(&target, "an excluded target").await;
    assert!(r.store.results("mapped").await.unwrap().is_empty());
    r.assert_metric("scanfleet_jobs_dead_lettered_total{reason=\"scope\"} 2");
}

#[tokio::test]
async fn non_unicast_job_targets_are_refused_unless_the_signed_job_allows_the_class() {
    let target = counted_listener("127.0.0.1");
    let port = target.port;
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
    r.assert_unprobed(&target, "a refused job").await;

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
    assert!(target.accepted() >= 1, "the allowed job was not probed");
}
