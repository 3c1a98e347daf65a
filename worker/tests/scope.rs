//! The worker's own scope check on the jobs it receives (defence in depth): a
//! signed job whose target is excluded once its address is read as IPv4, or is not
//! unicast, is dead-lettered with reason scope and nothing is probed. Probes go
//! only to listeners on 127.0.0.0/8 that the test starts.

mod support;

use scanfleet_common::ScanJob;
use scanfleet_common::address::AddressClass;
use std::collections::BTreeMap;

use scanfleet_common::scope::{AssetFacts, JobScope, ScopePolicy};
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

/// A job carrying the scope it was planned under, its one target described as
/// the asset `facts`.
fn scoped_job(
    scan: &str,
    shard: u32,
    ip: &str,
    port: u16,
    asset_id: &str,
    policy: ScopePolicy,
    facts: AssetFacts,
) -> ScanJob {
    let mut job = support::job(scan, shard, ip, port);
    job.targets[0].asset_id = asset_id.to_string();
    job.scope = Some(JobScope {
        policy,
        assets: BTreeMap::from([(asset_id.to_string(), facts)]),
    });
    job
}

/// What EC2 discovery records of a running instance of type `t`.
fn instance(t: &str) -> AssetFacts {
    AssetFacts {
        instance_type: Some(t.into()),
        account_id: Some("111122223333".into()),
        region: Some("eu-west-1".into()),
        vpc_id: Some("vpc-1".into()),
        state: Some("running".into()),
        ..AssetFacts::default()
    }
}

#[tokio::test]
async fn signed_jobs_are_refused_by_the_full_rules_they_carry() {
    // A planner bug that lets a prohibited or undiscovered target through must not
    // become a probe: the worker applies the job's own policy to the job's facts.
    let target = counted_listener("127.0.0.1");
    let port = target.port;
    let r = rig(ScopePolicy::default());
    r.store.begin_scan("full", 6).await.unwrap();
    let pre = ScopePolicy::aws_preauthorized;
    // 0: a t2.nano (fixed prohibition, whatever the policy's own list says).
    let mut empty_list = pre();
    empty_list.prohibited_instance_types.clear();
    r.publish(&scoped_job(
        "full",
        0,
        "127.0.0.1",
        port,
        "i-0nano",
        empty_list,
        instance("t2.nano"),
    ))
    .await;
    // 1: discovered-only, and the job does not describe the target's asset.
    let mut hand = scoped_job(
        "full",
        1,
        "127.0.0.1",
        port,
        "i-0x",
        pre(),
        instance("m5.large"),
    );
    hand.scope.as_mut().unwrap().assets.clear();
    r.publish(&hand).await;
    // 2: a stopped instance.
    let mut stopped = instance("m5.large");
    stopped.state = Some("stopped".into());
    r.publish(&scoped_job(
        "full",
        2,
        "127.0.0.1",
        port,
        "i-0stop",
        pre(),
        stopped,
    ))
    .await;
    // 3: an excluded tag.
    let mut tagged = instance("m5.large");
    tagged.tags.insert("scan".into(), "never".into());
    let mut no_tag = pre();
    no_tag.exclude_tags = vec!["scan=never".parse().unwrap()];
    r.publish(&scoped_job(
        "full",
        3,
        "127.0.0.1",
        port,
        "i-0tag",
        no_tag,
        tagged,
    ))
    .await;
    // 4: the target's address is one of the instance's public addresses.
    let mut public = instance("m5.large");
    public.public_ips = vec!["127.0.0.1".parse().unwrap()];
    r.publish(&scoped_job(
        "full",
        4,
        "127.0.0.1",
        port,
        "i-0pub",
        pre(),
        public,
    ))
    .await;
    r.drain().await;
    let reasons = r.dead_letter_reasons();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    for (i, want) in [
        "t2.nano",
        "not an instance returned by discovery",
        "stopped",
        "scan=never",
        "public",
    ]
    .iter()
    .enumerate()
    {
        assert!(
            reasons[i].contains("out of the job's own scope") && reasons[i].contains(want),
            "job {i}: want {want:?} in {:?}",
            reasons[i]
        );
    }
    r.assert_unprobed(&target, "a job its own scope refuses")
        .await;
    r.assert_metric("scanfleet_jobs_dead_lettered_total{reason=\"scope\"} 5");

    // A running m5.large that discovery returned is probed.
    r.publish(&scoped_job(
        "full",
        5,
        "127.0.0.1",
        port,
        "i-0ok",
        pre(),
        instance("m5.large"),
    ))
    .await;
    r.drain().await;
    assert_eq!(r.dead_letter_reasons().len(), 5);
    assert_eq!(r.store.progress("full").await.unwrap().shards_done, 1);
    assert!(target.accepted() >= 1, "the in-scope job was not probed");
}

#[tokio::test]
async fn the_workers_own_prohibited_types_apply_to_what_the_job_says() {
    let target = counted_listener("127.0.0.1");
    let port = target.port;
    let r = rig(ScopePolicy {
        prohibited_instance_types: vec!["x9.huge".into()],
        ..ScopePolicy::default()
    });
    r.store.begin_scan("own", 1).await.unwrap();
    r.publish(&scoped_job(
        "own",
        0,
        "127.0.0.1",
        port,
        "i-0big",
        ScopePolicy::aws_preauthorized(),
        instance("x9.huge"),
    ))
    .await;
    r.drain().await;
    let reasons = r.dead_letter_reasons();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(
        reasons[0].contains("out of this worker's scope") && reasons[0].contains("x9.huge"),
        "{reasons:?}"
    );
    r.assert_unprobed(&target, "a type the worker prohibits")
        .await;
}
