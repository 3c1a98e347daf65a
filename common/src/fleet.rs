//! From URLs to backends: what `--queue` and `--redis` mean, in one place for the
//! coordinator and the worker.
//!
//! - `amqp://user:pass@host:port/vhost` (or `amqps://`): RabbitMQ, one quorum queue per zone.
//! - `sqs://NAME`: Amazon SQS, the URL resolved with GetQueueUrl through the
//!   standard AWS configuration (AWS_ENDPOINT_URL included); `https://sqs...` or
//!   any `http(s)://` queue URL: that queue.
//! - `redis://host:port[/db]` (or `rediss://`): the Redis result store.

use std::sync::Arc;
use std::time::Duration;

use crate::queue::amqp::{AmqpConfig, AmqpQueue};
use crate::queue::memory::DeadLetter;
use crate::queue::sqs::{SqsConfig, SqsQueue};
use crate::queue::{JobQueue, QueueError};
use crate::store::redis::{RedisConfig, RedisStore};
use crate::store::{ResultStore, StoreError};

/// Which broker a queue URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    Amqp,
    Sqs,
}

/// Classify a `--queue` value.
///
/// # Errors
/// A message naming the value and the schemes that are accepted.
pub fn queue_kind(url: &str) -> Result<QueueKind, String> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("amqp") | Some("amqps") => Ok(QueueKind::Amqp),
        Some("sqs") | Some("http") | Some("https") => Ok(QueueKind::Sqs),
        _ => Err(format!(
            "--queue {url:?}: expected amqp://user:pass@host:port/vhost, sqs://NAME or an SQS queue URL"
        )),
    }
}

/// How the fleet's queues behave, whatever the broker.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// Messages one consumer holds unacked (AMQP prefetch).
    pub prefetch: u16,
    /// The lease (SQS visibility timeout); workers extend it every lease / 3.
    pub lease: Duration,
    /// Deliveries before a message is dead-lettered.
    pub delivery_limit: u32,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            prefetch: 1,
            lease: Duration::from_secs(60),
            delivery_limit: 5,
        }
    }
}

/// A connected queue, keeping its concrete type for topology and dead-letter tooling.
#[derive(Clone)]
pub enum FleetQueue {
    Amqp(Arc<AmqpQueue>),
    Sqs(Arc<SqsQueue>),
}

impl FleetQueue {
    /// Connect to the broker a URL names.
    ///
    /// # Errors
    /// [`QueueError`] naming the URL; a bad scheme is permanent.
    pub async fn connect(url: &str, opts: &QueueOptions) -> Result<FleetQueue, QueueError> {
        match queue_kind(url).map_err(QueueError::Permanent)? {
            QueueKind::Amqp => {
                let config = AmqpConfig {
                    prefetch: opts.prefetch.max(1),
                    delivery_limit: opts.delivery_limit,
                    ..AmqpConfig::default()
                };
                Ok(FleetQueue::Amqp(Arc::new(
                    AmqpQueue::connect(url, config).await?,
                )))
            }
            QueueKind::Sqs => {
                let config = SqsConfig {
                    visibility_timeout: opts.lease,
                    max_receive_count: opts.delivery_limit,
                    ..SqsConfig::default()
                };
                Ok(FleetQueue::Sqs(Arc::new(
                    SqsQueue::connect(url, config).await?,
                )))
            }
        }
    }

    /// The queue behind the trait.
    pub fn dyn_queue(&self) -> Arc<dyn JobQueue> {
        match self {
            FleetQueue::Amqp(q) => q.clone(),
            FleetQueue::Sqs(q) => q.clone(),
        }
    }

    /// Create the zones' queues and the dead-letter queue (idempotent).
    ///
    /// # Errors
    /// [`QueueError`] from the broker.
    pub async fn init(&self, zones: &[String]) -> Result<(), QueueError> {
        match self {
            FleetQueue::Amqp(q) => {
                let z: Vec<&str> = zones.iter().map(String::as_str).collect();
                q.init(&z).await
            }
            FleetQueue::Sqs(q) => q.init(zones).await,
        }
    }

    /// Take up to `max` messages off the dead-letter queue, with their reasons.
    ///
    /// # Errors
    /// [`QueueError`] from the broker.
    pub async fn take_dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        match self {
            FleetQueue::Amqp(q) => q.dead_letters(max).await,
            FleetQueue::Sqs(q) => q.dead_letters(max).await,
        }
    }
}

/// Connect the Redis result store.
///
/// # Errors
/// [`StoreError`] naming the URL.
pub async fn connect_store(url: &str) -> Result<Arc<RedisStore>, StoreError> {
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(StoreError::Permanent(format!(
            "--redis {url:?}: expected redis://host:port"
        )));
    }
    Ok(Arc::new(
        RedisStore::connect(url, RedisConfig::default()).await?,
    ))
}

/// The store behind the trait.
pub fn dyn_store(store: &Arc<RedisStore>) -> Arc<dyn ResultStore> {
    store.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_urls_are_classified() {
        assert_eq!(
            queue_kind("amqp://guest:guest@127.0.0.1:5672/%2f"),
            Ok(QueueKind::Amqp)
        );
        assert_eq!(queue_kind("sqs://scanfleet"), Ok(QueueKind::Sqs));
        assert_eq!(
            queue_kind("https://sqs.eu-west-1.amazonaws.com/123/scanfleet"),
            Ok(QueueKind::Sqs)
        );
        let e = queue_kind("kafka://x").unwrap_err();
        assert!(e.contains("\"kafka://x\""), "{e}");
        assert!(queue_kind("scanfleet").is_err());
    }
}
