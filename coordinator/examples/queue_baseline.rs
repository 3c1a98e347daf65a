//! Plain publish/consume baseline over the fleet's `JobQueue` backends, for the
//! fleet load test (`loadtest/fleet_load.sh`): how fast the queue alone moves
//! small messages, with no scan work and no Redis, so that the fleet's shards/s
//! can be read against it.
//!
//! ```sh
//! cargo run --release --example queue_baseline -- \
//!     --queue amqp://guest:guest@127.0.0.1:5672/%2f --messages 20000 --consumers 3 --per-consumer 2
//! AWS_ENDPOINT_URL=http://127.0.0.1:5000 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
//! AWS_REGION=us-east-1 cargo run --release --example queue_baseline -- --queue sqs://sfbase-1 --messages 2000
//! ```
//!
//! Phase 1 publishes `--messages` messages of `--bytes` bytes with `publish_batch`
//! (`--batch` per call) on one connection. Phase 2 starts `--consumers`
//! connections (like worker processes), each with `--per-consumer` tasks that
//! loop receive -> ack (prefetch = `--per-consumer`, like `scanfleet-worker
//! --concurrency`), until every message was acked once. Each phase is timed on
//! its own, the consume phase up to the first ack of the last message;
//! connecting is outside the timings. A JSON summary goes to stdout,
//! progress to stderr.
//!
//! Names: on RabbitMQ the queues are `<--prefix>.jobs.default`, `<prefix>.dlx`
//! and `<prefix>.dead` (default prefix `sfbase-<pid>`), deleted at the end unless
//! `--keep`. On SQS the queues are the `sqs://NAME` given and `NAME-dlq`; they
//! are left in place (use a fresh name; on moto they vanish with the server).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use scanfleet_common::backend::{self as fleet, QueueHandle, QueueKind, QueueOptions};
use scanfleet_common::queue::amqp::{AmqpConfig, AmqpQueue};
use scanfleet_common::queue::{JobQueue, QueueAdmin, Topology};
use tokio::sync::Barrier;

const ZONE: &str = "default";

/// Publish/consume baseline of a scanfleet job queue.
#[derive(Debug, Parser)]
struct Args {
    /// amqp://user:pass@host:port/vhost, sqs://NAME or an SQS queue URL.
    #[arg(long)]
    queue: String,
    /// Messages to publish and then consume.
    #[arg(long, default_value_t = 10_000)]
    messages: usize,
    /// Bytes per message (at least 16).
    #[arg(long, default_value_t = 512)]
    bytes: usize,
    /// Messages per publish_batch call.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Consumer connections (one per simulated worker process).
    #[arg(long, default_value_t = 3)]
    consumers: usize,
    /// Concurrent receive -> ack loops per connection; also the AMQP prefetch.
    #[arg(long, default_value_t = 2)]
    per_consumer: usize,
    /// RabbitMQ name prefix (default `sfbase-<pid>`).
    #[arg(long)]
    prefix: Option<String>,
    /// Give up when a phase takes longer than this.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Leave the RabbitMQ queues in place.
    #[arg(long)]
    keep: bool,
}

/// One connection: the AMQP backend kept concrete (its topology is deleted at
/// the end), any other through its seams.
#[derive(Clone)]
enum FleetQueue {
    Amqp(Arc<AmqpQueue>),
    Other(QueueHandle),
}

impl FleetQueue {
    fn dyn_queue(&self) -> Arc<dyn JobQueue> {
        match self {
            FleetQueue::Amqp(q) => q.clone(),
            FleetQueue::Other(h) => h.queue.clone(),
        }
    }

    async fn init(&self, zones: &[String]) -> Result<(), scanfleet_common::queue::QueueError> {
        let admin: Arc<dyn QueueAdmin> = match self {
            FleetQueue::Amqp(q) => q.clone(),
            FleetQueue::Other(h) => h.admin.clone(),
        };
        admin.init(zones, &Topology::default()).await
    }
}

/// One connection, on the backend the URL names, with this run's names.
async fn connect(a: &Args, prefix: &str, prefetch: u16) -> anyhow::Result<FleetQueue> {
    let opts = QueueOptions {
        prefetch,
        ..QueueOptions::default()
    };
    match fleet::queue_kind(&a.queue).map_err(anyhow::Error::msg)? {
        QueueKind::Amqp => {
            let config = AmqpConfig {
                prefix: prefix.to_owned(),
                prefetch,
                ..AmqpConfig::default()
            };
            let q = AmqpQueue::connect(&a.queue, config).await?;
            Ok(FleetQueue::Amqp(Arc::new(q)))
        }
        QueueKind::Sqs => Ok(FleetQueue::Other(
            fleet::connect_queue(&a.queue, &opts).await?,
        )),
    }
}

/// Message `i`: its index in the first 8 bytes, then padding.
fn payload(i: usize, bytes: usize) -> Vec<u8> {
    let mut p = format!("{i:08x}").into_bytes();
    p.resize(bytes, b'x');
    p
}

fn index_of(p: &[u8]) -> Option<usize> {
    let head = std::str::from_utf8(p.get(..8)?).ok()?;
    usize::from_str_radix(head, 16).ok()
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if a.messages == 0 || a.bytes < 16 || a.batch == 0 || a.consumers == 0 || a.per_consumer == 0 {
        bail!(
            "--messages, --batch, --consumers and --per-consumer must be at least 1, --bytes at least 16"
        );
    }
    let prefetch = u16::try_from(a.per_consumer).context("--per-consumer: at most 65535")?;
    let prefix = a
        .prefix
        .clone()
        .unwrap_or_else(|| format!("sfbase-{}", std::process::id()));
    let limit = Duration::from_secs(a.timeout_secs);
    let backend = match fleet::queue_kind(&a.queue).map_err(anyhow::Error::msg)? {
        QueueKind::Amqp => "rabbitmq",
        QueueKind::Sqs => "sqs",
    };

    let publisher = connect(&a, &prefix, 1)
        .await
        .context("connecting the publisher")?;
    publisher
        .init(&[ZONE.to_owned()])
        .await
        .context("declaring the queues")?;

    // Phase 1: publish.
    let q = publisher.dyn_queue();
    let started = Instant::now();
    let publish = async {
        let mut i = 0;
        while i < a.messages {
            let end = (i + a.batch).min(a.messages);
            let batch: Vec<Vec<u8>> = (i..end).map(|j| payload(j, a.bytes)).collect();
            q.publish_batch(ZONE, &batch)
                .await
                .with_context(|| format!("publishing messages {i}..{end}"))?;
            i = end;
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(limit, publish)
        .await
        .context("publish phase timed out")??;
    let publish_time = started.elapsed();
    eprintln!(
        "queue_baseline: {backend}: published {} x {} B in {:.2} s: {:.0} msgs/s",
        a.messages,
        a.bytes,
        publish_time.as_secs_f64(),
        rate(a.messages as u64, publish_time)
    );

    // Phase 2: consume + ack, from connections made before the clock starts.
    let mut conns = Vec::with_capacity(a.consumers);
    for c in 0..a.consumers {
        conns.push(
            connect(&a, &prefix, prefetch)
                .await
                .with_context(|| format!("connecting consumer {c}"))?,
        );
    }
    let seen: Arc<Vec<AtomicU64>> = Arc::new((0..a.messages).map(|_| AtomicU64::new(0)).collect());
    let acked = Arc::new(AtomicU64::new(0));
    let stray = Arc::new(AtomicU64::new(0));
    // When the last message was first acked: the clock stops there, not when the
    // consumers' last (empty) receive returns.
    let last_ack: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let errors = Arc::new(AtomicU64::new(0));
    let total = a.messages as u64;
    let tasks = a.consumers * a.per_consumer;
    let barrier = Arc::new(Barrier::new(tasks + 1));
    let deadline = tokio::time::Instant::now() + limit;
    let mut set = tokio::task::JoinSet::new();
    for conn in &conns {
        for _ in 0..a.per_consumer {
            let q = conn.dyn_queue();
            let (seen, acked, stray, errors, barrier, last_ack) = (
                seen.clone(),
                acked.clone(),
                stray.clone(),
                errors.clone(),
                barrier.clone(),
                last_ack.clone(),
            );
            set.spawn(async move {
                barrier.wait().await;
                while acked.load(Ordering::Acquire) < total
                    && tokio::time::Instant::now() < deadline
                {
                    let d = match q.receive(ZONE, Duration::from_secs(1)).await {
                        Ok(Some(d)) => d,
                        Ok(None) => continue,
                        Err(e) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            eprintln!("queue_baseline: receive: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    if let Err(e) = q.ack(&d).await {
                        errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("queue_baseline: ack: {e}");
                        continue;
                    }
                    match index_of(&d.payload).and_then(|i| seen.get(i)) {
                        Some(s) => {
                            if s.fetch_add(1, Ordering::AcqRel) == 0
                                && acked.fetch_add(1, Ordering::AcqRel) + 1 == total
                            {
                                let _ = last_ack.set(Instant::now());
                            }
                        }
                        None => {
                            stray.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    }
    barrier.wait().await;
    let started = Instant::now();
    while set.join_next().await.is_some() {}
    let consume_time = last_ack
        .get()
        .map_or_else(|| started.elapsed(), |t| t.duration_since(started));
    let unique = acked.load(Ordering::Acquire);
    let deliveries: u64 = seen.iter().map(|s| s.load(Ordering::Relaxed)).sum();
    let duplicates = deliveries - unique;
    eprintln!(
        "queue_baseline: {backend}: consumed+acked {unique} of {total} with {} x {} consumers in {:.2} s: {:.0} msgs/s ({duplicates} duplicate(s), {} error(s))",
        a.consumers,
        a.per_consumer,
        consume_time.as_secs_f64(),
        rate(unique, consume_time),
        errors.load(Ordering::Relaxed)
    );

    let summary = serde_json::json!({
        "backend": backend,
        "messages": total,
        "bytes": a.bytes,
        "batch": a.batch,
        "consumers": a.consumers,
        "per_consumer": a.per_consumer,
        "publish_secs": publish_time.as_secs_f64(),
        "publish_msgs_per_s": rate(total, publish_time),
        "consume_secs": consume_time.as_secs_f64(),
        "consume_msgs_per_s": rate(unique, consume_time),
        "consumed": unique,
        "duplicates": duplicates,
        "stray": stray.load(Ordering::Relaxed),
        "errors": errors.load(Ordering::Relaxed),
    });
    println!("{summary}");

    if !a.keep
        && let FleetQueue::Amqp(q) = &publisher
    {
        for c in &conns {
            if let FleetQueue::Amqp(c) = c {
                c.close().await;
            }
        }
        q.delete_topology(&[ZONE])
            .await
            .context("deleting the baseline's queues")?;
        q.close().await;
    }
    if unique < total {
        bail!("only {unique} of {total} messages were consumed within {limit:?}");
    }
    Ok(())
}
