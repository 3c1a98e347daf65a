//! The `JobQueue` contract, written once against `Arc<dyn JobQueue>` and run
//! unchanged against every backend, each behaviour as its own test:
//! `memory::<behaviour>` (the embedded queue), `amqp::<behaviour>` (a real broker,
//! `SCANFLEET_AMQP_URL`, default the shared one on 127.0.0.1:5672, a queue prefix of
//! the test's own whose topology is deleted at the end) and `sqs::<behaviour>`
//! (moto's server: `SCANFLEET_MOTO_URL`, else one started for this binary; queue
//! names of the test's own).
//!
//! Queues are declared and dead letters taken through the same backends'
//! `Arc<dyn QueueAdmin>` (taking consumes them). Where a backend genuinely differs, [`Caps`] says
//! how and the behaviour asserts the backend's own promise instead of skipping:
//! - RabbitMQ holds a delivery for as long as its channel lives; no lease lapses
//!   by time (the broker's consumer timeout, minutes to hours, is its only clock),
//!   so the lapse test asserts that an unextended delivery is *not* redelivered.
//!   Losing the connection is its lapse (tested in `amqp.rs`).
//! - SQS leases (visibility timeouts) are whole seconds and standard queues do not
//!   promise order: batches are compared as sets there.
//! - SQS accepts a second DeleteMessage of a receipt handle it issued (deleting is
//!   idempotent in SQS and moto); memory and RabbitMQ refuse to settle twice.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use scanfleet_common::queue::amqp::{AmqpConfig, AmqpQueue};
use scanfleet_common::queue::memory::MemoryQueue;
use scanfleet_common::queue::sqs::{SqsConfig, SqsQueue};
use scanfleet_common::queue::{Delivery, JobQueue, Nack, QueueAdmin, QueueError, Topology};
use scanfleet_testkit::{amqp_url, moto_url, unique_name};

mod support;

/// Zones every fixture declares.
const ZONES: [&str; 2] = ["za", "zb"];
/// Deliveries of one message before a retried one is dead-lettered, on every backend.
const LIMIT: u32 = 3;
/// A receive that must find a message waits this long at most.
const WAIT: Duration = Duration::from_secs(5);
/// A receive that must find nothing waits this long.
const EMPTY: Duration = Duration::from_millis(500);

/// The backends the contract runs against.
#[derive(Clone, Copy, Debug)]
enum Backend {
    Memory,
    Amqp,
    Sqs,
}

/// How a backend's lease behaves.
#[derive(Clone, Copy, Debug)]
enum Lease {
    /// A delivery not extended within this long is delivered again.
    Lapses(Duration),
    /// A delivery stays with its receiver while the connection lives (RabbitMQ).
    HeldWhileConnected,
}

/// Where the backends differ, stated once.
#[derive(Clone, Copy, Debug)]
struct Caps {
    lease: Lease,
    /// A zone's messages come out in publish order.
    fifo: bool,
    /// Acking or extending an already acked delivery is refused.
    refuses_second_settle: bool,
    /// A zone's queue exists only once declared (the memory queue has every zone).
    zones_need_declaring: bool,
}

/// A dead letter as every backend reports it, comparable.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Dead {
    zone: String,
    payload: Vec<u8>,
    reason: String,
}

/// Take dead letters through the admin side, waiting up to [`WAIT`] for `want` of
/// them (RabbitMQ moves them asynchronously). Sorted by zone, payload.
async fn take_dead_letters(admin: &dyn QueueAdmin, want: usize) -> Vec<Dead> {
    let mut out = Vec::new();
    let until = Instant::now() + WAIT;
    loop {
        let taken = admin
            .take_dead_letters(100)
            .await
            .expect("take dead letters");
        out.extend(taken.into_iter().map(|d| Dead {
            zone: d.zone,
            payload: d.payload,
            reason: d.reason,
        }));
        if out.len() >= want || Instant::now() >= until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    out.sort();
    out
}

/// What a behaviour gets: the queue behind the seam, its admin side, its caps.
struct Fixture {
    queue: Arc<dyn JobQueue>,
    admin: Arc<dyn QueueAdmin>,
    caps: Caps,
}

/// The zones as `QueueAdmin::init` takes them.
fn zones() -> Vec<String> {
    ZONES.iter().map(|z| z.to_string()).collect()
}

/// Run `body` on a fresh queue of `backend` with [`ZONES`] declared (delivery limit
/// [`LIMIT`]), then delete what the backend keeps (RabbitMQ's topology) whether the
/// body passed or panicked.
async fn run<F, Fut>(backend: Backend, body: F)
where
    F: FnOnce(Fixture) -> Fut,
    Fut: Future<Output = ()>,
{
    let topology = Topology::with_delivery_limit(LIMIT);
    match backend {
        Backend::Memory => {
            let lease = Duration::from_secs(1);
            let q = Arc::new(MemoryQueue::new(lease, LIMIT));
            QueueAdmin::init(&*q, &zones(), &topology)
                .await
                .expect("declare the zones");
            let caps = Caps {
                lease: Lease::Lapses(lease),
                fifo: true,
                refuses_second_settle: true,
                zones_need_declaring: false,
            };
            body(Fixture {
                queue: q.clone(),
                admin: q,
                caps,
            })
            .await;
        }
        Backend::Amqp => {
            let config = AmqpConfig {
                prefix: unique_name("sftest-qc"),
                prefetch: 50,
                reconnect_min: Duration::from_millis(100),
                reconnect_max: Duration::from_secs(1),
                op_timeout: Duration::from_secs(10),
                connect_timeout: Duration::from_secs(5),
                ..AmqpConfig::default()
            };
            let q = Arc::new(
                AmqpQueue::connect(&amqp_url(), config.clone())
                    .await
                    .expect("RabbitMQ on SCANFLEET_AMQP_URL (127.0.0.1:5672) must be running"),
            );
            QueueAdmin::init(&*q, &zones(), &topology)
                .await
                .expect("declare the zones");
            let caps = Caps {
                lease: Lease::HeldWhileConnected,
                fifo: true,
                refuses_second_settle: true,
                zones_need_declaring: true,
            };
            let fixture = Fixture {
                queue: q.clone(),
                admin: q.clone(),
                caps,
            };
            let outcome = AssertUnwindSafe(body(fixture)).catch_unwind().await;
            q.close().await;
            let cleaner = AmqpQueue::connect(&amqp_url(), config)
                .await
                .expect("reconnect to delete the test's topology");
            cleaner
                .delete_topology(&ZONES)
                .await
                .expect("delete the test's topology");
            cleaner.close().await;
            if let Err(panic) = outcome {
                std::panic::resume_unwind(panic);
            }
        }
        Backend::Sqs => {
            let lease = Duration::from_secs(1);
            let config = SqsConfig {
                endpoint: Some(moto_url().to_string()),
                region: Some("us-east-1".into()),
                visibility_timeout: lease,
                long_poll: Duration::from_secs(1),
                attempt_timeout: Duration::from_secs(10),
                max_attempts: 3,
            };
            let target = format!("sqs://{}", unique_name("sft-qc"));
            let q = Arc::new(
                SqsQueue::with_sdk_config(&target, config, &support::moto_sdk())
                    .expect("a valid SQS target and config"),
            );
            QueueAdmin::init(&*q, &zones(), &topology)
                .await
                .expect("create the zones' queues");
            let caps = Caps {
                lease: Lease::Lapses(lease),
                fifo: false,
                refuses_second_settle: false,
                zones_need_declaring: true,
            };
            // moto's queues die with the server, which dies with this process.
            body(Fixture {
                queue: q.clone(),
                admin: q,
                caps,
            })
            .await;
        }
    }
}

/// One named test per backend and behaviour: `memory::<name>`, `amqp::<name>`,
/// `sqs::<name>`.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        contract!(@backend memory, Memory, $($name),*);
        contract!(@backend amqp, Amqp, $($name),*);
        contract!(@backend sqs, Sqs, $($name),*);
    };
    (@backend $module:ident, $variant:ident, $($name:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::run(super::Backend::$variant, super::$name).await;
                }
            )*
        }
    };
}

contract!(
    publish_receive_ack_roundtrip,
    redelivers_after_retry_counting_deliveries,
    retry_past_the_limit_dead_letters,
    dead_letter_keeps_reason_and_zone,
    unextended_lease_lapses_and_extended_one_holds,
    publish_batch_keeps_every_message_in_order,
    zones_are_isolated,
    receive_times_out_with_none,
    receive_wakes_for_a_late_publish,
    handle_never_issued_is_refused_permanently,
    settled_delivery_is_not_settled_again,
    deliveries_carry_the_queue_limit,
    init_is_idempotent_and_refuses_another_limit,
    zone_exists_reports_declared_zones,
    peeked_dead_letters_stay_for_the_taker,
);

/// A coordinator reads the dead-letter queue to learn which of its shards the
/// broker gave up on, and leaves the letters for `queues dead-letters`.
async fn peeked_dead_letters_stay_for_the_taker(f: Fixture) {
    let q = &*f.queue;
    for (zone, body) in [("za", &b"one"[..]), ("zb", b"two"), ("za", b"three")] {
        q.publish(zone, body).await.unwrap();
        let d = must_receive(q, zone).await;
        support::dead_letter(q, &d, "given up").await;
    }
    // RabbitMQ moves dead letters asynchronously: wait until all three are seen.
    let until = Instant::now() + WAIT;
    let mut peeked = Vec::new();
    while peeked.len() < 3 && Instant::now() < until {
        peeked = f.admin.peek_dead_letters(100).await.expect("peek");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut bodies: Vec<Vec<u8>> = peeked.iter().map(|d| d.payload.clone()).collect();
    bodies.sort();
    assert_eq!(
        bodies,
        [b"one".to_vec(), b"three".to_vec(), b"two".to_vec()]
    );
    assert!(peeked.iter().all(|d| d.reason == "given up"), "{peeked:?}");
    // A second peek sees them again, none twice; a peek of one sees one.
    let again = f.admin.peek_dead_letters(100).await.expect("peek again");
    assert_eq!(again.len(), 3, "{again:?}");
    assert_eq!(
        f.admin.peek_dead_letters(1).await.expect("peek one").len(),
        1
    );
    // They are all still there to take.
    assert_eq!(take_dead_letters(&*f.admin, 3).await.len(), 3);
    assert!(f.admin.peek_dead_letters(100).await.unwrap().is_empty());
}

async fn must_receive(q: &dyn JobQueue, zone: &str) -> Delivery {
    q.receive(zone, WAIT)
        .await
        .expect("receive")
        .unwrap_or_else(|| panic!("a message on zone {zone} within {WAIT:?}"))
}

async fn assert_empty(q: &dyn JobQueue, zone: &str) {
    let got = q.receive(zone, EMPTY).await.expect("receive");
    assert_eq!(got, None, "zone {zone} is empty");
}

/// Text and binary payloads come back byte for byte, counted as first deliveries,
/// and an acked message never comes back.
async fn publish_receive_ack_roundtrip(f: Fixture) {
    let q = &*f.queue;
    let binary = vec![0u8, 255, 1, 0xC3, 0x28, b'{'];
    q.publish("za", b"job-a").await.unwrap();
    q.publish("za", &binary).await.unwrap();
    let got = support::take_first_deliveries(q, "za", 2).await;
    let mut want = vec![b"job-a".to_vec(), binary];
    want.sort();
    assert_eq!(got, want);
    assert_empty(q, "za").await;
    assert!(take_dead_letters(&*f.admin, 0).await.is_empty());
}

/// `Nack::Retry` below the limit delivers the message again, with its delivery
/// count grown by one each time.
async fn redelivers_after_retry_counting_deliveries(f: Fixture) {
    let q = &*f.queue;
    q.publish("za", b"flaky").await.unwrap();
    let first = must_receive(q, "za").await;
    assert_eq!(first.deliveries, 1);
    q.nack(&first, Nack::Retry).await.unwrap();
    let second = must_receive(q, "za").await;
    assert_eq!(
        (second.payload.as_slice(), second.deliveries),
        (&b"flaky"[..], 2)
    );
    assert_ne!(second.handle, first.handle, "a new lease, a new handle");
    q.ack(&second).await.unwrap();
    assert_empty(q, "za").await;
    assert!(take_dead_letters(&*f.admin, 0).await.is_empty());
}

/// The last allowed delivery retried goes to the dead-letter queue, with a reason
/// that names the delivery limit and the zone it came from.
async fn retry_past_the_limit_dead_letters(f: Fixture) {
    let q = &*f.queue;
    q.publish("zb", b"poison").await.unwrap();
    for n in 1..=LIMIT {
        let d = must_receive(q, "zb").await;
        assert_eq!((d.payload.as_slice(), d.deliveries), (&b"poison"[..], n));
        q.nack(&d, Nack::Retry).await.unwrap();
    }
    assert_empty(q, "zb").await;
    let dead = take_dead_letters(&*f.admin, 1).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        (dead[0].zone.as_str(), dead[0].payload.as_slice()),
        ("zb", &b"poison"[..])
    );
    assert!(
        dead[0].reason.contains("delivery limit"),
        "reason names the limit: {:?}",
        dead[0].reason
    );
    assert!(
        take_dead_letters(&*f.admin, 0).await.is_empty(),
        "taking dead letters consumes them"
    );
}

/// `Nack::DeadLetter` goes straight to the dead-letter queue, whatever the count,
/// keeping the caller's reason and the zone; the message is not redelivered.
async fn dead_letter_keeps_reason_and_zone(f: Fixture) {
    let q = &*f.queue;
    let payload = vec![7u8, 0, 255, b'{'];
    q.publish("za", &payload).await.unwrap();
    q.publish("zb", b"stale").await.unwrap();
    let a = must_receive(q, "za").await;
    let reason = "signature does not match: forged or stale job";
    support::dead_letter(q, &a, reason).await;
    let b = must_receive(q, "zb").await;
    support::dead_letter(q, &b, "job expired").await;
    assert_empty(q, "za").await;
    assert_empty(q, "zb").await;
    let dead = take_dead_letters(&*f.admin, 2).await;
    assert_eq!(
        dead,
        [
            Dead {
                zone: "za".into(),
                payload,
                reason: reason.into()
            },
            Dead {
                zone: "zb".into(),
                payload: b"stale".to_vec(),
                reason: "job expired".into()
            },
        ]
    );
}

/// Two deliveries, one extended as the worker's heartbeat does, one not.
async fn unextended_lease_lapses_and_extended_one_holds(f: Fixture) {
    let q = &*f.queue;
    q.publish("za", b"kept").await.unwrap();
    q.publish("za", b"dropped").await.unwrap();
    let kept = must_receive(q, "za").await;
    let dropped = must_receive(q, "za").await;
    assert_eq!(
        (kept.payload.as_slice(), dropped.payload.as_slice()),
        (&b"kept"[..], &b"dropped"[..])
    );
    let extension = Duration::from_secs(30);
    q.extend_lease(&kept, extension).await.unwrap();
    match f.caps.lease {
        Lease::Lapses(lease) => {
            // Past the lease (whole seconds on SQS, so a margin of a second).
            tokio::time::sleep(lease + Duration::from_millis(1200)).await;
            let again = must_receive(q, "za").await;
            assert_eq!(
                (again.payload.as_slice(), again.deliveries),
                (&b"dropped"[..], 2),
                "the unextended lease lapsed; the extended one did not"
            );
            assert_empty(q, "za").await;
            q.extend_lease(&kept, extension).await.unwrap();
            q.ack(&kept).await.unwrap();
            q.ack(&again).await.unwrap();
        }
        Lease::HeldWhileConnected => {
            // RabbitMQ: no clock on a held delivery; neither comes back.
            tokio::time::sleep(Duration::from_millis(2200)).await;
            assert_empty(q, "za").await;
            q.extend_lease(&dropped, extension).await.unwrap();
            q.ack(&kept).await.unwrap();
            q.ack(&dropped).await.unwrap();
        }
    }
    assert_empty(q, "za").await;
}

/// A batch arrives whole, each message once; in publish order where the backend
/// keeps order (not SQS standard queues).
async fn publish_batch_keeps_every_message_in_order(f: Fixture) {
    let q = &*f.queue;
    let batch: Vec<Vec<u8>> = (0..25u32).map(|i| i.to_be_bytes().to_vec()).collect();
    q.publish_batch("zb", &batch).await.unwrap();
    q.publish_batch("zb", &[]).await.unwrap();
    let mut got = Vec::new();
    let until = Instant::now() + Duration::from_secs(30);
    while got.len() < batch.len() && Instant::now() < until {
        if let Some(d) = q.receive("zb", Duration::from_secs(1)).await.unwrap() {
            assert_eq!(d.deliveries, 1, "no message is delivered twice");
            q.ack(&d).await.unwrap();
            got.push(d.payload);
        }
    }
    if !f.caps.fifo {
        got.sort();
    }
    assert_eq!(got, batch);
    assert_empty(q, "zb").await;
}

/// A zone's consumer sees only its zone's messages.
async fn zones_are_isolated(f: Fixture) {
    let q = &*f.queue;
    q.publish("za", b"for-a").await.unwrap();
    q.publish("zb", b"for-b").await.unwrap();
    let b = must_receive(q, "zb").await;
    assert_eq!(
        (b.zone.as_str(), b.payload.as_slice()),
        ("zb", &b"for-b"[..])
    );
    assert_empty(q, "zb").await;
    let a = must_receive(q, "za").await;
    assert_eq!(
        (a.zone.as_str(), a.payload.as_slice()),
        ("za", &b"for-a"[..])
    );
    assert_ne!(a.handle, b.handle);
    q.ack(&a).await.unwrap();
    q.ack(&b).await.unwrap();
    assert_empty(q, "za").await;
}

/// An empty zone answers `None` within about the wait asked for (SQS rounds a
/// long poll up to whole seconds).
async fn receive_times_out_with_none(f: Fixture) {
    let q = &*f.queue;
    for wait in [Duration::ZERO, Duration::from_millis(300)] {
        let t = Instant::now();
        assert_eq!(q.receive("za", wait).await.unwrap(), None);
        let took = t.elapsed();
        assert!(
            took < wait + Duration::from_secs(2),
            "receive({wait:?}) on an empty zone took {took:?}"
        );
    }
}

/// A receive waiting on an empty zone returns a message published meanwhile,
/// well before its wait is over.
async fn receive_wakes_for_a_late_publish(f: Fixture) {
    let q = f.queue.clone();
    let publisher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        q.publish("za", b"late").await
    });
    let t = Instant::now();
    let got = f
        .queue
        .receive("za", Duration::from_secs(8))
        .await
        .unwrap()
        .expect("the late message");
    assert_eq!(got.payload, b"late");
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    publisher.await.unwrap().unwrap();
    f.queue.ack(&got).await.unwrap();
}

/// A delivery handle the backend never issued is refused for every settlement, as
/// a permanent error (retrying cannot make it valid).
async fn handle_never_issued_is_refused_permanently(f: Fixture) {
    let q = &*f.queue;
    q.publish("za", b"real").await.unwrap();
    let real = must_receive(q, "za").await;
    let fake = Delivery {
        handle: "not-a-handle".into(),
        ..real.clone()
    };
    let permanent = |r: Result<(), QueueError>, call: &str| {
        assert!(
            matches!(r, Err(QueueError::Permanent(_))),
            "{call} of a handle never issued: {r:?}"
        );
    };
    permanent(q.ack(&fake).await, "ack");
    permanent(q.nack(&fake, Nack::Retry).await, "nack(Retry)");
    permanent(
        q.extend_lease(&fake, Duration::from_secs(5)).await,
        "extend_lease",
    );
    // The real delivery is untouched by all that.
    q.ack(&real).await.unwrap();
    assert_empty(q, "za").await;
}

/// After an ack, a second ack and a lease extension are refused (memory, RabbitMQ)
/// or accepted as no-ops (SQS: deleting is idempotent); either way the message
/// never comes back and nothing is dead-lettered.
async fn settled_delivery_is_not_settled_again(f: Fixture) {
    let q = &*f.queue;
    q.publish("za", b"once").await.unwrap();
    let d = must_receive(q, "za").await;
    q.ack(&d).await.unwrap();
    let second = q.ack(&d).await;
    if f.caps.refuses_second_settle {
        assert!(
            matches!(second, Err(QueueError::Permanent(_))),
            "second ack: {second:?}"
        );
        assert!(q.extend_lease(&d, Duration::from_secs(5)).await.is_err());
        assert!(
            matches!(q.nack(&d, Nack::Retry).await, Err(QueueError::Permanent(_))),
            "nack after ack"
        );
    } else {
        assert_eq!(second, Ok(()), "second DeleteMessage of the same receipt");
    }
    assert_empty(q, "za").await;
    assert!(take_dead_letters(&*f.admin, 0).await.is_empty());
}

/// Every delivery states its queue's limit, so a consumer knows its last attempt.
async fn deliveries_carry_the_queue_limit(f: Fixture) {
    let q = &*f.queue;
    q.publish("za", b"counted").await.unwrap();
    for n in 1..=LIMIT {
        let d = must_receive(q, "za").await;
        assert_eq!(
            (d.deliveries, d.delivery_limit, d.last_attempt()),
            (n, Some(LIMIT), n == LIMIT),
            "delivery {n}"
        );
        if n < LIMIT {
            q.nack(&d, Nack::Retry).await.unwrap();
        } else {
            q.ack(&d).await.unwrap();
        }
    }
    assert_empty(q, "za").await;
    assert!(take_dead_letters(&*f.admin, 0).await.is_empty());
}

/// Declaring again with the same topology is fine; with another delivery limit it
/// is refused, permanently, and the queue keeps working with its own limit.
async fn init_is_idempotent_and_refuses_another_limit(f: Fixture) {
    let same = Topology::with_delivery_limit(LIMIT);
    f.admin.init(&zones(), &same).await.unwrap();
    f.admin.init(&zones()[..1], &same).await.unwrap();
    let other = Topology::with_delivery_limit(LIMIT + 2);
    let refused = f.admin.init(&zones(), &other).await;
    assert!(
        matches!(refused, Err(QueueError::Permanent(_))),
        "redeclared with limit {}: {refused:?}",
        LIMIT + 2
    );
    let q = &*f.queue;
    q.publish("zb", b"still").await.unwrap();
    let d = must_receive(q, "zb").await;
    assert_eq!(d.delivery_limit, Some(LIMIT), "the queue kept its limit");
    q.ack(&d).await.unwrap();
}

/// Declared zones exist; an undeclared one exists only on the memory queue, where
/// every zone does. Asking creates nothing.
async fn zone_exists_reports_declared_zones(f: Fixture) {
    for z in ZONES {
        assert!(f.admin.zone_exists(z).await.unwrap(), "{z}");
    }
    let never = "zundeclared";
    let want = !f.caps.zones_need_declaring;
    assert_eq!(f.admin.zone_exists(never).await.unwrap(), want);
    assert_eq!(f.admin.zone_exists(never).await.unwrap(), want, "still");
}
