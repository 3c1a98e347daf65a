//! The SQS backend against moto's AWS server (`moto_server`).
//!
//! `SCANFLEET_MOTO_URL` (for example `http://127.0.0.1:5000`) names a running
//! server; without it this test binary starts its own `moto_server` on a free
//! loopback port, which dies with the process. Every test uses queue names of its
//! own, so a shared server is never reset. Credentials are dummies (`testing`),
//! the region is us-east-1. The server-kill test always runs a private instance.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, future};
use aws_sdk_sqs::config::{BehaviorVersion, Region, SharedCredentialsProvider};
use aws_sdk_sqs::types::QueueAttributeName;
use scanfleet_common::queue::sqs::{SqsConfig, SqsQueue};
use scanfleet_common::queue::{Delivery, JobQueue, Nack, QueueAdmin, QueueError, Topology};
use scanfleet_testkit::{Moto, free_port, moto_url, unique_name};

mod support;

/// The account moto puts every queue in.
const ACCOUNT: &str = "123456789012";
/// Marks the re-run of this binary that checks configuration from the environment.
const ENV_CHILD: &str = "SCANFLEET_SQS_ENV_CHILD";

/// A queue name no other test (or run) uses.
fn unique(tag: &str) -> String {
    unique_name(&format!("sft-{tag}"))
}

/// Test defaults: short polls and timeouts so failures show quickly.
fn config(endpoint: &str) -> SqsConfig {
    SqsConfig {
        endpoint: Some(endpoint.to_string()),
        region: Some("us-east-1".into()),
        visibility_timeout: Duration::from_secs(30),
        long_poll: Duration::from_secs(2),
        attempt_timeout: Duration::from_secs(10),
        max_attempts: 3,
    }
}

/// `queues init` of `zones` with the default topology.
async fn init(q: &SqsQueue, zones: &[&str]) -> Result<(), QueueError> {
    init_with(q, zones, scanfleet_common::queue::DEFAULT_DELIVERY_LIMIT).await
}

/// `queues init --delivery-limit limit` of `zones`.
async fn init_with(q: &SqsQueue, zones: &[&str], limit: u32) -> Result<(), QueueError> {
    let zones: Vec<String> = zones.iter().map(|z| z.to_string()).collect();
    q.init(&zones, &Topology::with_delivery_limit(limit)).await
}

fn sqs(target: &str, config: SqsConfig) -> Arc<SqsQueue> {
    Arc::new(
        SqsQueue::with_sdk_config(target, config, &support::moto_sdk())
            .expect("a valid target and config"),
    )
}

async fn must_receive(q: &SqsQueue, zone: &str) -> Delivery {
    q.receive(zone, Duration::from_secs(3))
        .await
        .expect("receive")
        .unwrap_or_else(|| panic!("a message on zone {zone}"))
}

fn permanent(e: &QueueError) -> &str {
    eprintln!("{e}");
    match e {
        QueueError::Permanent(m) => m,
        QueueError::Transient(m) => panic!("expected a permanent error, got transient: {m}"),
    }
}

fn transient(e: &QueueError) -> &str {
    eprintln!("{e}");
    match e {
        QueueError::Transient(m) => m,
        QueueError::Permanent(m) => panic!("expected a transient error, got permanent: {m}"),
    }
}

#[tokio::test]
async fn roundtrip_across_two_zones() {
    let moto = moto_url();
    let q = sqs(&format!("sqs://{}", unique("rt")), config(moto));
    init(&q, &["default", "east"]).await.unwrap();
    let binary = vec![0u8, 255, 1, 0xC3, 0x28];
    q.publish("default", b"job-a").await.unwrap();
    q.publish("east", b"job-b").await.unwrap();
    q.publish("east", &binary).await.unwrap();

    let east = support::take_first_deliveries(&*q, "east", 2).await;
    let mut want = vec![b"job-b".to_vec(), binary];
    want.sort();
    assert_eq!(
        east, want,
        "text and binary payloads come back byte for byte"
    );

    let a = must_receive(&q, "default").await;
    assert_eq!(
        (a.zone.as_str(), a.payload.as_slice(), a.deliveries),
        ("default", &b"job-a"[..], 1)
    );
    q.ack(&a).await.unwrap();
    assert_eq!(q.receive("east", Duration::ZERO).await.unwrap(), None);
    assert_eq!(q.receive("default", Duration::ZERO).await.unwrap(), None);

    // Publishing to a zone that was never initialised names its queue.
    let err = q.publish("west", b"x").await.unwrap_err();
    assert!(
        permanent(&err).contains(&format!("{}-west", q.name())),
        "{err}"
    );
}

#[tokio::test]
async fn sqs_name_and_full_url_reach_the_same_queues() {
    let moto = moto_url();
    let name = unique("url");
    let by_name = sqs(&format!("sqs://{name}"), config(moto));
    init(&by_name, &["default", "west"]).await.unwrap();

    // The endpoint comes from the URL itself; no override.
    let by_url = sqs(
        &format!("{moto}/{ACCOUNT}/{name}"),
        SqsConfig {
            endpoint: None,
            ..config(moto)
        },
    );
    by_url.publish("default", b"via-url").await.unwrap();
    by_url.publish("west", b"via-url-west").await.unwrap();

    let d = must_receive(&by_name, "default").await;
    assert_eq!(d.payload, b"via-url");
    by_name.ack(&d).await.unwrap();
    let d = must_receive(&by_name, "west").await;
    assert_eq!(d.payload, b"via-url-west");
    by_name.ack(&d).await.unwrap();

    by_name.publish("default", b"via-name").await.unwrap();
    let d = must_receive(&by_url, "default").await;
    assert_eq!(d.payload, b"via-name");
    by_url.ack(&d).await.unwrap();
    assert_eq!(
        by_name.receive("default", Duration::ZERO).await.unwrap(),
        None
    );
}

/// `connect` with nothing but the environment: AWS_ENDPOINT_URL, AWS_REGION and
/// the access keys. The environment is set for a re-run of this test binary, so
/// this process's own environment is never changed.
#[tokio::test]
async fn connect_takes_endpoint_region_and_credentials_from_the_environment() {
    let test = "connect_takes_endpoint_region_and_credentials_from_the_environment";
    if std::env::var_os(ENV_CHILD).is_some() {
        let name = std::env::var("SCANFLEET_SQS_ENV_QUEUE").expect("queue name from the parent");
        let config = SqsConfig {
            long_poll: Duration::from_secs(1),
            attempt_timeout: Duration::from_secs(5),
            ..SqsConfig::default()
        };
        let q = SqsQueue::connect(&format!("sqs://{name}"), config)
            .await
            .unwrap();
        init(&q, &["default"]).await.unwrap();
        q.publish("default", b"from-env").await.unwrap();
        let d = must_receive(&q, "default").await;
        assert_eq!(d.payload, b"from-env");
        q.ack(&d).await.unwrap();
        return;
    }
    let moto = moto_url();
    let name = unique("env");
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(ENV_CHILD, "1")
        .env("SCANFLEET_SQS_ENV_QUEUE", &name)
        .env("SCANFLEET_MOTO_URL", moto)
        .env("AWS_ENDPOINT_URL", moto)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/scanfleet-test")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/scanfleet-test")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_ENDPOINT_URL_SQS")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The child made the queue on the same server.
    let q = sqs(&format!("sqs://{name}"), config(moto));
    assert_eq!(q.receive("default", Duration::ZERO).await.unwrap(), None);
}

/// `queues init` twice is fine; a second run with another lease updates the
/// queues' visibility timeout, and one with another delivery limit is refused and
/// leaves the redrive policy as it was declared.
#[tokio::test]
async fn init_is_idempotent_and_keeps_the_declared_limit() {
    let moto = moto_url();
    let name = unique("init");
    let q = sqs(&format!("sqs://{name}"), config(moto));
    init(&q, &["default", "b"]).await.unwrap();
    init(&q, &["default", "b"]).await.unwrap();
    assert!(q.zone_exists("b").await.unwrap());
    assert!(!q.zone_exists("never").await.unwrap());
    let changed = SqsConfig {
        visibility_timeout: Duration::from_secs(45),
        ..config(moto)
    };
    let other = sqs(&format!("sqs://{name}"), changed);
    init(&other, &["b"]).await.unwrap();
    let err = init_with(&other, &["b"], 7).await.unwrap_err();
    let msg = permanent(&err);
    assert!(
        msg.contains("of 5") && msg.contains("not 7") && msg.contains("--delivery-limit 5"),
        "{msg}"
    );

    let raw = support::raw_sqs(moto);
    let attrs = support::queue_attributes(&raw, &format!("{name}-b")).await;
    assert_eq!(attrs[&QueueAttributeName::VisibilityTimeout], "45");
    let redrive: serde_json::Value =
        serde_json::from_str(&attrs[&QueueAttributeName::RedrivePolicy]).unwrap();
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        "5",
        "the refused init left the redrive policy alone"
    );
    assert!(
        redrive["deadLetterTargetArn"]
            .as_str()
            .unwrap()
            .ends_with(&format!(":{name}-dlq")),
        "{redrive}"
    );
}

#[tokio::test]
async fn batch_of_25_is_received_exactly_once() {
    let q = sqs(&format!("sqs://{}", unique("batch")), config(moto_url()));
    init(&q, &["default"]).await.unwrap();
    let payloads: Vec<Vec<u8>> = (0..25)
        .map(|i| format!("shard-{i:02}").into_bytes())
        .collect();
    q.publish_batch("default", &payloads).await.unwrap();

    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < payloads.len() && Instant::now() < deadline {
        if let Some(d) = q.receive("default", Duration::from_secs(1)).await.unwrap() {
            assert_eq!(d.deliveries, 1, "no message is delivered twice");
            q.ack(&d).await.unwrap();
            got.push(d.payload);
        }
    }
    got.sort();
    assert_eq!(got, payloads, "every message once");
    assert_eq!(
        q.receive("default", Duration::from_secs(1)).await.unwrap(),
        None,
        "and nothing more"
    );
}

/// Real time: moto enforces visibility timeouts by the clock. Lease 2 s; `a` is
/// extended every lease / 3 as the worker's heartbeat does, `b` is not.
#[tokio::test]
async fn heartbeat_keeps_a_lease_and_an_unextended_one_lapses() {
    let lease = Duration::from_secs(2);
    let q = sqs(
        &format!("sqs://{}", unique("lease")),
        SqsConfig {
            visibility_timeout: lease,
            ..config(moto_url())
        },
    );
    init(&q, &["default"]).await.unwrap();
    q.publish("default", b"a").await.unwrap();
    let a = must_receive(&q, "default").await;
    q.publish("default", b"b").await.unwrap();
    let b = must_receive(&q, "default").await;
    assert_eq!(
        (a.payload.as_slice(), b.payload.as_slice()),
        (&b"a"[..], &b"b"[..])
    );

    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let heartbeat = {
        let (q, a) = (q.clone(), a.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => return Ok::<_, QueueError>(()),
                    _ = tokio::time::sleep(lease / 3) => q.extend_lease(&a, lease).await?,
                }
            }
        })
    };

    // Watch for 3 s, well past both original leases.
    let start = Instant::now();
    let mut b_again = None;
    while start.elapsed() < Duration::from_secs(3) {
        if let Some(d) = q.receive("default", Duration::ZERO).await.unwrap() {
            assert_eq!(
                d.payload, b"b",
                "a was redelivered while its lease was being extended"
            );
            assert!(
                start.elapsed() >= Duration::from_millis(1500),
                "b came back before its lease lapsed"
            );
            q.ack(&d).await.unwrap();
            b_again = Some(d);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let b_again = b_again.expect("b, never extended, is redelivered after its lease lapses");
    assert_eq!(b_again.deliveries, 2);

    stop.send(()).unwrap();
    heartbeat
        .await
        .unwrap()
        .expect("every lease extension succeeded");
    let since_stop = Instant::now();
    let again = q
        .receive("default", Duration::from_secs(5))
        .await
        .unwrap()
        .expect("a comes back once its heartbeat stops and the lease lapses");
    assert_eq!((again.payload.as_slice(), again.deliveries), (&b"a"[..], 2));
    assert!(
        since_stop.elapsed() >= Duration::from_secs(1),
        "a came back before its last extension lapsed"
    );
    q.ack(&again).await.unwrap();
}

#[tokio::test]
async fn retried_until_the_limit_lands_in_the_dead_letter_queue() {
    let q = sqs(&format!("sqs://{}", unique("retry")), config(moto_url()));
    init_with(&q, &["default"], 2).await.unwrap();
    q.publish("default", b"flaky").await.unwrap();
    for n in 1..=2 {
        let d = must_receive(&q, "default").await;
        assert_eq!(d.deliveries, n);
        assert_eq!((d.delivery_limit, d.last_attempt()), (Some(2), n == 2));
        q.nack(&d, Nack::Retry).await.unwrap();
    }
    assert_eq!(
        q.receive("default", Duration::from_secs(1)).await.unwrap(),
        None
    );
    let dead = q.take_dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        support::parts(&dead[0]),
        ("default", &b"flaky"[..], "delivery limit of 2 reached")
    );
    assert!(
        q.take_dead_letters(10).await.unwrap().is_empty(),
        "reading dead letters takes them"
    );
}

/// A worker that crashes leaves its lease to lapse; past the limit the message
/// must still reach the dead-letter queue: by moto's redrive policy when the
/// emulator applies it, by the backend itself otherwise.
#[tokio::test]
async fn lapsed_leases_past_the_limit_are_dead_lettered() {
    let moto = moto_url();
    let fast = SqsConfig {
        visibility_timeout: Duration::from_secs(1),
        ..config(moto)
    };

    // The queue's own redrive policy, limit 1.
    let q = sqs(&format!("sqs://{}", unique("redrive")), fast.clone());
    init_with(&q, &["default"], 1).await.unwrap();
    q.publish("default", b"crashy").await.unwrap();
    let d = must_receive(&q, "default").await;
    assert_eq!(d.deliveries, 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        q.receive("default", Duration::from_secs(1)).await.unwrap(),
        None
    );
    let dead = q.take_dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].payload, b"crashy");
    let by_redrive = dead[0].reason.contains("redrive policy");
    assert!(
        by_redrive || dead[0].reason == "delivery limit of 1 reached",
        "{}",
        dead[0].reason
    );
    eprintln!(
        "SQS emulator at {moto}: {}",
        if by_redrive {
            "applies the redrive policy on receive"
        } else {
            "does not redrive; the backend dead-lettered"
        }
    );

    // A queue without a redrive policy (made by hand) states no limit: a retry
    // is a retry, never a dead letter.
    let name = unique("bare");
    let raw = support::raw_sqs(moto);
    raw.create_queue().queue_name(&name).send().await.unwrap();
    let q = sqs(&format!("sqs://{name}"), fast);
    q.publish("default", b"again").await.unwrap();
    for n in 1..=3 {
        let d = must_receive(&q, "default").await;
        assert_eq!(
            (d.deliveries, d.delivery_limit, d.last_attempt()),
            (n, None, false)
        );
        q.nack(&d, Nack::Retry).await.unwrap();
    }
    let d = must_receive(&q, "default").await;
    q.ack(&d).await.unwrap();
}

#[tokio::test]
async fn nack_dead_letter_keeps_reason_and_zone() {
    let q = sqs(&format!("sqs://{}", unique("dl")), config(moto_url()));
    init(&q, &["edge"]).await.unwrap();
    let payload = vec![7u8, 0, 255, b'{'];
    q.publish("edge", &payload).await.unwrap();
    let d = must_receive(&q, "edge").await;
    let reason = "signature does not match: forged or stale job";
    support::dead_letter(&*q, &d, reason).await;
    assert_eq!(
        q.receive("edge", Duration::from_secs(1)).await.unwrap(),
        None,
        "not redelivered"
    );
    let dead = q.take_dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        support::parts(&dead[0]),
        ("edge", payload.as_slice(), reason)
    );
    // Settling it again is refused: its receipt handle is gone.
    let err = q
        .extend_lease(&d, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(permanent(&err).contains("ChangeMessageVisibility"), "{err}");
}

#[tokio::test]
async fn missing_queue_and_bad_receipt_are_permanent_and_named() {
    let moto = moto_url();
    let missing = unique("missing");
    let q = sqs(&format!("sqs://{missing}"), config(moto));
    let err = q.receive("default", Duration::ZERO).await.unwrap_err();
    let msg = permanent(&err);
    assert!(
        msg.contains("GetQueueUrl") && msg.contains(&missing) && msg.contains("does not exist"),
        "{msg}"
    );
    let err = q.publish("far", b"x").await.unwrap_err();
    assert!(permanent(&err).contains(&format!("{missing}-far")), "{err}");

    // A full URL is not looked up: the first call on it (reading the queue's
    // delivery limit) fails the same way.
    let q = sqs(
        &format!("{moto}/{ACCOUNT}/{missing}"),
        SqsConfig {
            endpoint: None,
            ..config(moto)
        },
    );
    let err = q.receive("default", Duration::ZERO).await.unwrap_err();
    let msg = permanent(&err);
    assert!(
        msg.contains("GetQueueAttributes")
            && msg.contains(&missing)
            && msg.contains("does not exist"),
        "{msg}"
    );

    // An invalid zone name is refused before any call.
    let err = q.publish("a.b", b"x").await.unwrap_err();
    assert!(permanent(&err).contains("\"a.b\""), "{err}");

    let q = sqs(&format!("sqs://{}", unique("receipt")), config(moto));
    init(&q, &["default"]).await.unwrap();
    let bogus = Delivery {
        handle: "not-a-receipt".into(),
        zone: "default".into(),
        payload: b"x".to_vec(),
        deliveries: 1,
        delivery_limit: Some(5),
    };
    let err = q.ack(&bogus).await.unwrap_err();
    assert!(permanent(&err).contains("DeleteMessage"), "{err}");
    let err = q.nack(&bogus, Nack::Retry).await.unwrap_err();
    assert!(permanent(&err).contains("ReceiptHandleIsInvalid"), "{err}");
}

/// Our own server: killed while a long poll waits, then restarted empty.
#[tokio::test]
async fn killed_server_is_transient_and_recovers_after_restart() {
    let port = free_port();
    let mut moto = Moto::start_on(port);
    let name = unique("kill");
    let q = sqs(
        &format!("sqs://{name}"),
        SqsConfig {
            max_attempts: 1,
            long_poll: Duration::from_secs(3),
            attempt_timeout: Duration::from_secs(5),
            ..config(&moto.url)
        },
    );
    init(&q, &["default"]).await.unwrap();
    q.publish("default", b"before").await.unwrap();
    let d = must_receive(&q, "default").await;
    q.ack(&d).await.unwrap();

    let poll = {
        let q = q.clone();
        tokio::spawn(async move { q.receive("default", Duration::from_secs(3)).await })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    moto.kill();
    let err = poll.await.unwrap().unwrap_err();
    assert!(transient(&err).contains(&name), "{err}");
    let err = q.publish("default", b"while-down").await.unwrap_err();
    assert!(transient(&err).contains("SendMessage"), "{err}");
    let err = q.receive("default", Duration::ZERO).await.unwrap_err();
    transient(&err);

    let moto = Moto::start_on(port);
    // moto keeps no state across restarts: the queue is gone, and that is permanent.
    let err = q.publish("default", b"after").await.unwrap_err();
    assert!(permanent(&err).contains("does not exist"), "{err}");
    init(&q, &["default"]).await.unwrap();
    q.publish("default", b"after").await.unwrap();
    let d = must_receive(&q, "default").await;
    assert_eq!(d.payload, b"after");
    q.ack(&d).await.unwrap();
    drop(moto);
}

/// A credentials provider that always fails with the given error.
#[derive(Debug)]
struct FailingCredentials(fn() -> CredentialsError);

impl ProvideCredentials for FailingCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::ready(Err((self.0)()))
    }
}

/// No credentials anywhere is permanent (fix the deployment); a provider that
/// timed out is transient. Nothing reaches a server: signing fails first.
#[tokio::test]
async fn credential_failures_say_whether_to_retry() {
    let cases: [(fn() -> CredentialsError, bool); 2] = [
        (
            || CredentialsError::not_loaded("no providers in chain provided credentials"),
            false,
        ),
        (
            || CredentialsError::provider_timed_out(Duration::from_secs(5)),
            true,
        ),
    ];
    for (make, retry) in cases {
        let sdk = SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(SharedCredentialsProvider::new(FailingCredentials(make)))
            .build();
        let config = SqsConfig {
            max_attempts: 1,
            ..config("http://127.0.0.1:9")
        };
        let q =
            SqsQueue::with_sdk_config(&format!("sqs://{}", unique("creds")), config, &sdk).unwrap();
        let err = q.receive("default", Duration::ZERO).await.unwrap_err();
        let msg = if retry {
            transient(&err)
        } else {
            permanent(&err)
        };
        assert!(msg.contains("GetQueueUrl"), "{msg}");
    }
}
