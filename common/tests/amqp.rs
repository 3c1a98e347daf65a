//! The RabbitMQ backend against a real broker: `SCANFLEET_AMQP_URL`, default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`. Every test uses its own prefix
//! (`sftest-<pid>-<n>-<t>`) and deletes its queues and exchange at the end. The
//! restart test runs a private RabbitMQ node on a spare port and stops it itself; the
//! shared broker is never stopped.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use scanfleet_common::queue::amqp::{AmqpConfig, AmqpQueue};
use scanfleet_common::queue::{DeadLetter, JobQueue, Nack, QueueAdmin, QueueError, Topology};
use scanfleet_testkit::{PrivateRabbit, amqp_url, unique_name};

mod support;

fn config(prefix: &str) -> AmqpConfig {
    AmqpConfig {
        prefix: prefix.into(),
        reconnect_min: Duration::from_millis(100),
        reconnect_max: Duration::from_secs(1),
        op_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        ..AmqpConfig::default()
    }
}

/// Zone names as `QueueAdmin::init` takes them.
fn owned(zones: &[&str]) -> Vec<String> {
    zones.iter().map(|z| z.to_string()).collect()
}

/// Run `body` on a fresh queue with its own prefix, its zones declared with the
/// default topology, then delete its topology whether the body passed or panicked.
async fn with_queue<F, Fut>(cfg: impl FnOnce(AmqpConfig) -> AmqpConfig, zones: &[&str], body: F)
where
    F: FnOnce(AmqpQueue) -> Fut,
    Fut: Future<Output = AmqpQueue>,
{
    with_topology(cfg, zones, Topology::default(), body).await
}

/// As [`with_queue`], the zones declared with `topology`.
async fn with_topology<F, Fut>(
    cfg: impl FnOnce(AmqpConfig) -> AmqpConfig,
    zones: &[&str],
    topology: Topology,
    body: F,
) where
    F: FnOnce(AmqpQueue) -> Fut,
    Fut: Future<Output = AmqpQueue>,
{
    let prefix = unique_name("sftest");
    let q = AmqpQueue::connect(&amqp_url(), cfg(config(&prefix)))
        .await
        .expect("RabbitMQ on SCANFLEET_AMQP_URL (127.0.0.1:5672) must be running");
    q.init(&owned(zones), &topology).await.unwrap();
    let outcome = AssertUnwindSafe(body(q)).catch_unwind().await;
    let cleaner = AmqpQueue::connect(&amqp_url(), config(&prefix))
        .await
        .unwrap();
    cleaner.delete_topology(zones).await.unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roundtrip_across_two_zones() {
    with_queue(
        |c| c,
        &["z1", "z2"],
        |q| async move {
            q.publish("z1", b"a").await.unwrap();
            q.publish("z1", b"b").await.unwrap();
            q.publish("z2", b"c").await.unwrap();

            let a = q.receive("z1", WAIT).await.unwrap().unwrap();
            assert_eq!(
                (a.payload.as_slice(), a.zone.as_str(), a.deliveries),
                (&b"a"[..], "z1", 1)
            );
            let c = q.receive("z2", WAIT).await.unwrap().unwrap();
            assert_eq!((c.payload.as_slice(), c.zone.as_str()), (&b"c"[..], "z2"));
            assert_ne!(a.handle, c.handle);
            q.ack(&a).await.unwrap();
            q.ack(&c).await.unwrap();
            let b = q.receive("z1", WAIT).await.unwrap().unwrap();
            assert_eq!(b.payload, b"b");
            q.extend_lease(&b, Duration::from_secs(60)).await.unwrap();
            q.ack(&b).await.unwrap();

            assert_eq!(
                q.receive("z1", Duration::from_millis(300)).await.unwrap(),
                None
            );
            assert_eq!(
                q.receive("z2", Duration::from_millis(300)).await.unwrap(),
                None
            );
            // Settled deliveries are gone: a second ack is refused, not sent.
            assert!(matches!(q.ack(&a).await, Err(QueueError::Permanent(_))));
            assert!(q.extend_lease(&a, Duration::from_secs(1)).await.is_err());
            q
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_is_respected() {
    with_queue(
        |c| AmqpConfig { prefetch: 2, ..c },
        &["z"],
        |q| async move {
            let batch: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i]).collect();
            q.publish_batch("z", &batch).await.unwrap();
            let d0 = q.receive("z", WAIT).await.unwrap().unwrap();
            let d1 = q.receive("z", WAIT).await.unwrap().unwrap();
            // Two unacked: the broker sends nothing more to this consumer.
            assert_eq!(
                q.receive("z", Duration::from_millis(700)).await.unwrap(),
                None
            );
            q.ack(&d0).await.unwrap();
            let d2 = q.receive("z", WAIT).await.unwrap().unwrap();
            assert_eq!(
                q.receive("z", Duration::from_millis(500)).await.unwrap(),
                None
            );
            q.ack(&d1).await.unwrap();
            q.ack(&d2).await.unwrap();
            let d3 = q.receive("z", WAIT).await.unwrap().unwrap();
            q.ack(&d3).await.unwrap();
            let got: Vec<u8> = [d0, d1, d2, d3].iter().map(|d| d.payload[0]).collect();
            assert_eq!(got, [0, 1, 2, 3]);
            q
        },
    )
    .await;
}

/// Dead letters appear asynchronously when the broker moves them.
async fn wait_dead(q: &AmqpQueue, n: usize) -> Vec<DeadLetter> {
    let mut out = Vec::new();
    let until = Instant::now() + WAIT;
    while out.len() < n && Instant::now() < until {
        out.extend(q.take_dead_letters(n - out.len()).await.unwrap());
        if out.len() < n {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_until_the_delivery_limit_then_dead_letter() {
    with_topology(
        |c| c,
        &["z"],
        Topology::with_delivery_limit(3),
        |q| async move {
            q.publish("z", b"poison").await.unwrap();
            for n in 1..=3 {
                let d = q.receive("z", WAIT).await.unwrap().unwrap();
                assert_eq!((d.payload.as_slice(), d.deliveries), (&b"poison"[..], n));
                assert_eq!(d.delivery_limit, Some(3));
                assert_eq!(d.last_attempt(), n == 3);
                q.nack(&d, Nack::Retry).await.unwrap();
            }
            assert_eq!(
                q.receive("z", Duration::from_millis(500)).await.unwrap(),
                None
            );
            let dead = wait_dead(&q, 1).await;
            assert_eq!(dead.len(), 1, "the message reached the dead-letter queue");
            assert_eq!(dead[0].payload, b"poison");
            assert_eq!(dead[0].zone, "z");
            assert_eq!(dead[0].reason, "delivery limit of 3 reached");
            assert!(
                q.take_dead_letters(10).await.unwrap().is_empty(),
                "take_dead_letters consumes"
            );
            q
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_keeps_reason_and_zone() {
    with_queue(
        |c| c,
        &["za", "zb"],
        |q| async move {
            q.publish("za", b"forged").await.unwrap();
            q.publish("zb", b"stale").await.unwrap();
            let a = q.receive("za", WAIT).await.unwrap().unwrap();
            support::dead_letter(&q, &a, "bad signature").await;
            let b = q.receive("zb", WAIT).await.unwrap().unwrap();
            support::dead_letter(&q, &b, "job expired").await;
            assert!(q.ack(&a).await.is_err(), "settled by the dead-lettering");
            assert_eq!(
                q.receive("za", Duration::from_millis(300)).await.unwrap(),
                None
            );

            let mut dead = wait_dead(&q, 2).await;
            dead.sort_by(|x, y| x.zone.cmp(&y.zone));
            let got: Vec<(&[u8], &str, &str)> = dead
                .iter()
                .map(|d| (d.payload.as_slice(), d.zone.as_str(), d.reason.as_str()))
                .collect();
            assert_eq!(
                got,
                [
                    (&b"forged"[..], "za", "bad signature"),
                    (&b"stale"[..], "zb", "job expired")
                ]
            );
            q
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_from_a_closed_connection_cannot_be_acked_and_is_redelivered() {
    with_queue(
        |c| c,
        &["z"],
        |q| async move {
            q.publish("z", b"held").await.unwrap();
            let d = q.receive("z", WAIT).await.unwrap().unwrap();
            assert_eq!(d.deliveries, 1);
            q.close().await;
            assert!(!q.is_connected());
            // Refused, whether the connection is down or already replaced.
            assert!(matches!(q.ack(&d).await, Err(QueueError::Permanent(_))));
            assert!(q.extend_lease(&d, Duration::from_secs(1)).await.is_err());

            let again = q
                .receive("z", WAIT)
                .await
                .unwrap()
                .expect("redelivered after reconnect");
            assert_eq!(
                (again.payload.as_slice(), again.deliveries),
                (&b"held"[..], 2)
            );
            assert_ne!(again.handle, d.handle, "a new generation in the handle");
            assert!(
                q.nack(&d, Nack::Retry).await.is_err(),
                "old handle stays refused"
            );
            q.ack(&again).await.unwrap();
            assert_eq!(
                q.receive("z", Duration::from_millis(300)).await.unwrap(),
                None
            );
            q
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_survives_a_server_side_connection_kill() {
    // The broker (not the client) kills the connection, as a network failure would.
    with_queue(|c| c, &["z"], |q| async move {
        q.publish("z", b"k").await.unwrap();
        let d = q.receive("z", WAIT).await.unwrap().unwrap();
        let name = format!("{}-{}", q.config().prefix, std::process::id());
        let out = Command::new("rabbitmqctl")
            .args(["eval", &format!(
                "[rabbit_networking:close_connection(P, \"test kill\") || P <- rabbit_networking:connections(), \
                 {{client_properties, Props}} <- rabbit_networking:connection_info(P, [client_properties]), \
                 lists:member({{<<\"connection_name\">>, longstr, <<\"{name}\">>}}, Props)]."
            )])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let until = Instant::now() + WAIT;
        while q.extend_lease(&d, Duration::from_secs(1)).await.is_ok() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(q.extend_lease(&d, Duration::from_secs(1)).await.is_err(), "lease reported lost");
        assert!(q.ack(&d).await.is_err());
        let again = q.receive("z", WAIT).await.unwrap().expect("redelivered");
        assert_eq!((again.payload.as_slice(), again.deliveries), (&b"k"[..], 2));
        q.ack(&again).await.unwrap();
        q
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_batch_is_confirmed_in_order() {
    with_queue(
        |c| AmqpConfig { prefetch: 50, ..c },
        &["z"],
        |q| async move {
            let batch: Vec<Vec<u8>> = (0..200u32).map(|i| i.to_be_bytes().to_vec()).collect();
            q.publish_batch("z", &batch).await.unwrap();
            q.publish_batch("z", &[]).await.unwrap();
            let mut got = Vec::new();
            while let Some(d) = q.receive("z", Duration::from_millis(500)).await.unwrap() {
                q.ack(&d).await.unwrap();
                got.push(d.payload);
            }
            assert_eq!(got, batch);
            q
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_declares_and_bad_input_is_permanent() {
    with_queue(
        |c| c,
        &["a", "b"],
        |q| async move {
            q.init(&owned(&["a", "b"]), &Topology::default())
                .await
                .unwrap();
            q.init(&owned(&["a"]), &Topology::default()).await.unwrap();
            assert!(q.zone_exists("a").await.unwrap());
            assert!(!q.zone_exists("never-declared").await.unwrap());
            assert_eq!(q.jobs_queue("a"), format!("{}.jobs.a", q.config().prefix));
            let out = Command::new("rabbitmqctl")
                .args(["list_queues", "name", "type", "arguments", "durable"])
                .output()
                .unwrap();
            let listing = String::from_utf8_lossy(&out.stdout);
            let line = listing
                .lines()
                .find(|l| l.starts_with(&q.jobs_queue("a")))
                .unwrap_or_else(|| panic!("queue missing in {listing}"));
            assert!(line.contains("quorum"), "{line}");
            assert!(line.contains("x-delivery-limit"), "{line}");
            assert!(
                line.contains(&format!("{}.dlx", q.config().prefix)),
                "{line}"
            );
            assert!(line.contains("true"), "durable: {line}");
            assert!(
                listing
                    .lines()
                    .any(|l| l.starts_with(&q.dead_letter_queue()))
            );

            assert!(matches!(
                q.publish("a/b", b"x").await,
                Err(QueueError::Permanent(_))
            ));
            assert!(matches!(
                q.receive("", WAIT).await,
                Err(QueueError::Permanent(_))
            ));
            let fake = scanfleet_common::queue::Delivery {
                handle: "1.1.1".into(),
                zone: "a".into(),
                payload: vec![],
                deliveries: 1,
                delivery_limit: None,
            };
            assert!(matches!(q.ack(&fake).await, Err(QueueError::Permanent(_))));

            // Redeclaring with other arguments is refused by the broker, permanently.
            let other = AmqpQueue::connect(&amqp_url(), config(&q.config().prefix))
                .await
                .unwrap();
            match other
                .init(&owned(&["a"]), &Topology::with_delivery_limit(9))
                .await
            {
                Err(QueueError::Permanent(m)) => assert!(
                    m.contains("delivery limit of 9")
                        && (m.contains("PRECONDITION_FAILED") || m.contains("inequivalent")),
                    "{m}"
                ),
                other => panic!("expected a permanent error, got {other:?}"),
            }
            // A client that declared nothing cannot publish: it has no limit to stamp.
            match other.publish("a", b"x").await {
                Err(QueueError::Permanent(m)) => assert!(m.contains("queues init"), "{m}"),
                other => panic!("expected a permanent error, got {other:?}"),
            }
            // The refusal closed only the declaring channel: this queue still works.
            q.publish("b", b"ok").await.unwrap();
            let d = q.receive("b", WAIT).await.unwrap().unwrap();
            q.ack(&d).await.unwrap();
            q
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_errors_say_whether_to_retry() {
    let closed = AmqpQueue::connect("amqp://guest:guest@127.0.0.1:1/%2f", config("x")).await;
    assert!(
        matches!(closed, Err(QueueError::Transient(_))),
        "{closed:?}"
    );
    let bad = AmqpQueue::connect("http://nope", config("x")).await;
    assert!(matches!(bad, Err(QueueError::Permanent(_))), "{bad:?}");
    let creds = AmqpQueue::connect("amqp://guest:wrong@127.0.0.1:5672/%2f", config("x")).await;
    match creds {
        Err(e) => assert!(
            !e.to_string().contains("wrong"),
            "no password in messages: {e}"
        ),
        Ok(_) => panic!("wrong password accepted"),
    }
    let cfg = AmqpQueue::connect(
        &amqp_url(),
        AmqpConfig {
            prefetch: 0,
            ..config("x")
        },
    )
    .await;
    assert!(matches!(cfg, Err(QueueError::Permanent(m)) if m.contains("prefetch")));
}

async fn connect_until(url: &str, cfg: &AmqpConfig, within: Duration) -> AmqpQueue {
    let until = Instant::now() + within;
    loop {
        match AmqpQueue::connect(url, cfg.clone()).await {
            Ok(q) => return q,
            Err(e) if Instant::now() < until => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("private RabbitMQ did not come up: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_node_restart_keeps_messages_and_reconnects() {
    let rabbit = PrivateRabbit::new();
    let t0 = Instant::now();
    rabbit.start();
    let cfg = config("sftest-restart");
    let q = connect_until(&rabbit.url(), &cfg, Duration::from_secs(90)).await;
    let boot = t0.elapsed();
    q.init(&owned(&["z"]), &Topology::default()).await.unwrap();

    q.publish("z", b"before-1").await.unwrap();
    q.publish("z", b"before-2").await.unwrap();
    let held = q.receive("z", WAIT).await.unwrap().unwrap();
    assert_eq!(held.payload, b"before-1");

    let t1 = Instant::now();
    rabbit.stop();
    let stop = t1.elapsed();

    // Down: every operation fails fast and says "try again".
    let t2 = Instant::now();
    assert!(matches!(
        q.publish("z", b"lost?").await,
        Err(QueueError::Transient(_))
    ));
    assert!(matches!(
        q.receive("z", Duration::from_millis(200)).await,
        Err(QueueError::Transient(_))
    ));
    assert!(q.ack(&held).await.is_err());
    assert!(q.init(&owned(&["z"]), &Topology::default()).await.is_err());
    let down_calls = t2.elapsed();
    assert!(
        down_calls < Duration::from_secs(10),
        "calls while down took {down_calls:?}"
    );

    let t3 = Instant::now();
    rabbit.start();
    // The worker's loop: receive, back off on transient errors, receive again.
    let mut got = Vec::new();
    let until = Instant::now() + Duration::from_secs(90);
    let mut first_ok = None;
    while got.len() < 2 && Instant::now() < until {
        match q.receive("z", Duration::from_millis(500)).await {
            Ok(Some(d)) => {
                first_ok.get_or_insert_with(|| t3.elapsed());
                q.ack(&d).await.unwrap();
                got.push((d.payload, d.deliveries));
            }
            Ok(None) => {
                first_ok.get_or_insert_with(|| t3.elapsed());
            }
            Err(QueueError::Transient(_)) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => panic!("permanent error after restart: {e}"),
        }
    }
    got.sort();
    let payloads: Vec<&[u8]> = got.iter().map(|(p, _)| p.as_slice()).collect();
    assert_eq!(
        payloads,
        [&b"before-1"[..], &b"before-2"[..]],
        "durable quorum queue kept both"
    );
    assert!(
        got.iter().any(|(p, n)| p == b"before-1" && *n >= 2),
        "held one counts as redelivered: {got:?}"
    );
    assert!(
        q.ack(&held).await.is_err(),
        "old delivery stays refused after reconnect"
    );
    q.publish("z", b"after").await.unwrap();
    let d = q.receive("z", WAIT).await.unwrap().unwrap();
    assert_eq!(d.payload, b"after");
    q.ack(&d).await.unwrap();
    eprintln!(
        "private RabbitMQ timings: first boot {boot:?}, stop {stop:?}, calls while down {down_calls:?}, \
         restart to first successful receive {:?}",
        first_ok.unwrap_or_default()
    );
    q.delete_topology(&["z"]).await.unwrap();
    q.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_limit_of_one_dead_letters_on_the_first_retry() {
    with_topology(
        |c| c,
        &["z"],
        Topology::with_delivery_limit(1),
        |q| async move {
            q.publish("z", b"once").await.unwrap();
            let d = q.receive("z", WAIT).await.unwrap().unwrap();
            q.nack(&d, Nack::Retry).await.unwrap();
            assert_eq!(
                q.receive("z", Duration::from_millis(500)).await.unwrap(),
                None
            );
            let dead = wait_dead(&q, 1).await;
            assert_eq!(dead.len(), 1);
            assert_eq!(dead[0].reason, "delivery limit of 1 reached");
            q
        },
    )
    .await;
}

/// A worker that stops (SIGTERM, grace 0) releases its shard: the release must cost
/// the shard one delivery, not two. Without `stop_receiving` the broker hands the
/// released message straight back to the still-open consumer, and closing the
/// channel returns it a second time, so three restarts used up a delivery limit of 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_on_shutdown_costs_one_delivery() {
    with_topology(
        |c| c,
        &["z"],
        Topology::with_delivery_limit(5),
        |q| async move {
            q.publish("z", b"long shard").await.unwrap();
            let cfg = q.config().clone();
            let mut seen = Vec::new();
            // Three workers in turn: each takes the shard, is stopped, releases it.
            for _ in 0..3 {
                let w = AmqpQueue::connect(&amqp_url(), cfg.clone()).await.unwrap();
                let d = w.receive("z", WAIT).await.unwrap().expect("the shard");
                seen.push(d.deliveries);
                w.stop_receiving().await;
                w.nack(&d, Nack::Retry).await.unwrap();
                w.close().await;
            }
            let last = q
                .receive("z", WAIT)
                .await
                .unwrap()
                .expect("not dead-lettered");
            seen.push(last.deliveries);
            q.ack(&last).await.unwrap();
            assert_eq!(seen, vec![1, 2, 3, 4], "one delivery per worker");
            assert!(q.peek_dead_letters(10).await.unwrap().is_empty());
            q
        },
    )
    .await;
}
