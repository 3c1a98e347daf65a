//! The delivery limit belongs to the queue: declared once with a NON-default limit
//! (2) as `scanfleet queues init --delivery-limit 2` does, then consumed by a
//! worker-side client that declares nothing. Against the real RabbitMQ
//! (`SCANFLEET_AMQP_URL`) and moto's server (`SCANFLEET_MOTO_URL`, else one started
//! here), with names of their own.

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use scanfleet_common::queue::amqp::{AmqpConfig, AmqpQueue};
use scanfleet_common::queue::sqs::{SqsConfig, SqsQueue};
use scanfleet_common::queue::{
    DEFAULT_DELIVERY_LIMIT, DeadLetter, JobQueue, Nack, QueueAdmin, Topology,
};
use scanfleet_testkit::{amqp_url, moto_url, unique_name};

mod support;

const LIMIT: u32 = 2;
const WAIT: Duration = Duration::from_secs(5);
const REASON: &str = "store refused the shard";

/// The worker's rule: retry a transient failure, except on the last attempt, where
/// the job is dead-lettered with its reason. Returns the deliveries seen.
async fn consume_poison(q: &dyn JobQueue, zone: &str) -> Vec<(u32, Option<u32>, bool)> {
    let mut seen = Vec::new();
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        let Some(d) = q.receive(zone, Duration::from_secs(1)).await.unwrap() else {
            if !seen.is_empty() {
                break;
            }
            continue;
        };
        seen.push((d.deliveries, d.delivery_limit, d.last_attempt()));
        let what = if d.last_attempt() {
            Nack::DeadLetter {
                reason: format!("{REASON} (delivery limit of {LIMIT} reached)"),
            }
        } else {
            Nack::Retry
        };
        q.nack(&d, what).await.unwrap();
        assert!(seen.len() <= 5, "redelivered past the limit: {seen:?}");
    }
    seen
}

async fn wait_dead(admin: &dyn QueueAdmin, n: usize) -> Vec<DeadLetter> {
    let mut out = Vec::new();
    let until = Instant::now() + WAIT;
    while out.len() < n && Instant::now() < until {
        out.extend(admin.take_dead_letters(10).await.unwrap());
        if out.len() < n {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    out
}

fn assert_poison_handled(seen: &[(u32, Option<u32>, bool)], dead: &[DeadLetter], zone: &str) {
    assert_eq!(
        seen,
        [(1, Some(LIMIT), false), (2, Some(LIMIT), true)],
        "exactly {LIMIT} deliveries, the second one the last"
    );
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].payload, b"poison");
    assert_eq!(dead[0].zone, zone);
    assert_eq!(
        dead[0].reason,
        format!("{REASON} (delivery limit of {LIMIT} reached)")
    );
}

/// `queues init --delivery-limit 2` through `declarer`, a poison job published,
/// then consumed by `worker`, which declares nothing: exactly [`LIMIT`]
/// deliveries, the job dead-lettered with its reason. A declaration with the
/// default limit is then refused as permanent; returns its message.
async fn limit_is_the_consumers<Q>(declarer: &Q, worker: &Q, zone: &str) -> String
where
    Q: JobQueue + QueueAdmin,
{
    let zones = [zone.to_string()];
    declarer
        .init(&zones, &Topology::with_delivery_limit(LIMIT))
        .await
        .unwrap();
    declarer.publish(zone, b"poison").await.unwrap();

    assert!(worker.zone_exists(zone).await.unwrap());
    let seen = consume_poison(worker, zone).await;
    let dead = wait_dead(worker, 1).await;
    assert_poison_handled(&seen, &dead, zone);

    // Declaring it again with the default limit is refused and changes nothing.
    let err = worker.init(&zones, &Topology::default()).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    err.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_limit_declared_once_is_the_consumers_limit() {
    let config = AmqpConfig {
        prefix: unique_name("sfdl"),
        ..AmqpConfig::default()
    };
    let zone = "z";
    // `queues init --delivery-limit 2`, then the coordinator publishes.
    let declarer = AmqpQueue::connect(&amqp_url(), config.clone())
        .await
        .expect("RabbitMQ on SCANFLEET_AMQP_URL must be running");
    // A worker: its own connection, declares nothing, so no PRECONDITION_FAILED.
    let worker = AmqpQueue::connect(&amqp_url(), config.clone())
        .await
        .unwrap();
    let err = limit_is_the_consumers(&declarer, &worker, zone).await;
    assert!(err.contains(&format!("{DEFAULT_DELIVERY_LIMIT}")), "{err}");
    declarer.publish(zone, b"after").await.unwrap();
    let d = worker.receive(zone, WAIT).await.unwrap().unwrap();
    assert_eq!(
        (d.payload.as_slice(), d.delivery_limit),
        (&b"after"[..], Some(LIMIT))
    );
    worker.ack(&d).await.unwrap();

    declarer.delete_topology(&[zone]).await.unwrap();
}

fn sqs(target: &str) -> SqsQueue {
    let config = SqsConfig {
        endpoint: Some(moto_url().to_string()),
        region: Some("us-east-1".into()),
        visibility_timeout: Duration::from_secs(30),
        long_poll: Duration::from_secs(1),
        attempt_timeout: Duration::from_secs(10),
        ..SqsConfig::default()
    };
    SqsQueue::with_sdk_config(target, config, &support::moto_sdk()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_limit_declared_once_is_the_consumers_limit() {
    let name = unique_name("sfdl");
    let target = format!("sqs://{name}");
    let err = limit_is_the_consumers(&sqs(&target), &sqs(&target), "default").await;
    // The redrive policy stays at 2.
    assert!(err.contains("not 5"), "{err}");
    let raw = support::raw_sqs(moto_url());
    let attrs = support::queue_attributes(&raw, &name).await;
    let policy: serde_json::Value =
        serde_json::from_str(&attrs[&QueueAttributeName::RedrivePolicy]).unwrap();
    assert_eq!(
        policy["maxReceiveCount"].to_string().trim_matches('"'),
        LIMIT.to_string(),
        "{policy}"
    );
}
