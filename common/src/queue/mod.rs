//! The job queue seam. The pipeline sees only [`JobQueue`] (publish, receive, ack,
//! nack, extend a lease) and, for the commands that own the broker's layout,
//! [`QueueAdmin`] (declare the topology, read the dead letters). Backends:
//! [`memory`] for the embedded mode, [`amqp`] (RabbitMQ) and [`sqs`] (Amazon SQS)
//! for the fleet; [`crate::backend`] turns a `--queue` URL into one of them.
//!
//! # The delivery limit belongs to the queue
//! How many deliveries a message gets before it is dead-lettered is part of the
//! topology ([`Topology::delivery_limit`]), declared once by whoever creates the
//! queues (`scanfleet queues init --delivery-limit N`, or the coordinator's publish
//! path with its configured limit) and never by a consumer. Every [`Delivery`]
//! carries the limit of the queue it came from ([`Delivery::delivery_limit`],
//! [`Delivery::last_attempt`]), read from the queue itself: the memory queue's
//! setting, SQS's RedrivePolicy, the limit the RabbitMQ declarer stamped into the
//! message (see [`amqp`]). Declaring a queue that exists with another limit is a
//! [`QueueError::Permanent`] on every backend: a limit is changed by deleting the
//! queue (or, on SQS, by editing its redrive policy), never silently.

pub mod amqp;
pub mod memory;
pub mod sqs;

use std::time::Duration;

use async_trait::async_trait;

/// Deliveries of a message, the last one included, when nothing else is configured.
pub const DEFAULT_DELIVERY_LIMIT: u32 = 5;

/// A message handed to a consumer, held until acked or nacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Backend handle: a delivery tag, a receipt handle, an in-memory id.
    pub handle: String,
    /// The zone whose queue the message came from.
    pub zone: String,
    /// The message as it was published.
    pub payload: Vec<u8>,
    /// How many times this message has been delivered, this time included.
    pub deliveries: u32,
    /// The delivery limit of the queue the message came from, as the queue states
    /// it; `None` when the queue does not say (an SQS queue without a redrive
    /// policy, a RabbitMQ message published by a client that did not declare it).
    pub delivery_limit: Option<u32>,
}

impl Delivery {
    /// Whether this is the message's last delivery: a [`Nack::Retry`] now dead-letters
    /// it (with a generic reason), so a consumer that knows why it failed should
    /// nack with [`Nack::DeadLetter`] and that reason instead. False when the limit
    /// is unknown.
    pub fn last_attempt(&self) -> bool {
        self.delivery_limit.is_some_and(|l| self.deliveries >= l)
    }
}

/// What to do with a message that was not processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Nack {
    /// Transient failure: deliver again (up to the delivery limit).
    Retry,
    /// Permanent failure: straight to the dead-letter queue with this reason.
    DeadLetter { reason: String },
}

/// A message that reached the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The zone it was published to; empty when the backend cannot tell.
    pub zone: String,
    /// The message as it was published.
    pub payload: Vec<u8>,
    /// Why: the consumer's reason, or the backend's ("delivery limit of N reached").
    pub reason: String,
}

/// The layout a declarer gives the queues: one job queue per zone and one
/// dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topology {
    /// Deliveries of a message, the last one included, before the queue
    /// dead-letters it; 1 to [`Topology::MAX_DELIVERY_LIMIT`].
    pub delivery_limit: u32,
}

impl Topology {
    /// The largest delivery limit every backend accepts (SQS's maxReceiveCount cap).
    pub const MAX_DELIVERY_LIMIT: u32 = 1000;

    /// A topology with this delivery limit.
    pub fn with_delivery_limit(delivery_limit: u32) -> Self {
        Topology { delivery_limit }
    }

    /// # Errors
    /// [`QueueError::Permanent`] naming the limit when it is out of range.
    pub fn validate(&self) -> Result<(), QueueError> {
        if (1..=Self::MAX_DELIVERY_LIMIT).contains(&self.delivery_limit) {
            Ok(())
        } else {
            Err(QueueError::Permanent(format!(
                "delivery limit {}: expected 1 to {}",
                self.delivery_limit,
                Self::MAX_DELIVERY_LIMIT
            )))
        }
    }
}

impl Default for Topology {
    fn default() -> Self {
        Topology {
            delivery_limit: DEFAULT_DELIVERY_LIMIT,
        }
    }
}

/// Queue errors know whether retrying can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The broker is unreachable, throttling or restarting: try again later.
    #[error("queue unavailable: {0}")]
    Transient(String),
    /// Retrying cannot help: bad configuration, a refused declaration, no access.
    #[error("queue error: {0}")]
    Permanent(String),
}

impl QueueError {
    /// Whether the same call may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(self, QueueError::Transient(_))
    }
}

/// A work queue with leases, one logical queue per network zone.
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Enqueue one message on a zone's queue; durable when this returns.
    async fn publish(&self, zone: &str, payload: &[u8]) -> Result<(), QueueError>;
    /// Enqueue several messages on a zone's queue; backends batch where they can.
    async fn publish_batch(&self, zone: &str, payloads: &[Vec<u8>]) -> Result<(), QueueError> {
        for p in payloads {
            self.publish(zone, p).await?;
        }
        Ok(())
    }
    /// Wait up to `wait` for a message of `zone`; the message is leased to the caller.
    async fn receive(&self, zone: &str, wait: Duration) -> Result<Option<Delivery>, QueueError>;
    /// The message is done; it will not come back.
    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError>;
    /// The message was not done; retry it or dead-letter it.
    async fn nack(&self, delivery: &Delivery, what: Nack) -> Result<(), QueueError>;
    /// Keep the lease alive while a long shard runs.
    async fn extend_lease(&self, delivery: &Delivery, by: Duration) -> Result<(), QueueError>;
    /// Take no more deliveries (a worker shutting down). Deliveries in hand stay
    /// valid for ack and nack, and a released one goes to another consumer instead
    /// of straight back to this one, so a release costs one delivery. Backends whose
    /// receive is a request (SQS, memory) have nothing to stop.
    async fn stop_receiving(&self) {}
}

/// The broker's layout, for the commands that own it (`scanfleet queues`, the
/// coordinator's publish path) and for tests. Workers only ask [`Self::zone_exists`].
#[async_trait]
pub trait QueueAdmin: Send + Sync {
    /// Declare the dead-letter queue and the job queues of `zones` with `topology`.
    /// Idempotent for the same topology. A queue that exists with another delivery
    /// limit is left as it is and the call fails.
    ///
    /// # Errors
    /// [`QueueError::Permanent`] for an invalid zone or topology and for a queue
    /// declared with another limit (the message names both limits);
    /// [`QueueError::Transient`] while the broker is unreachable.
    async fn init(&self, zones: &[String], topology: &Topology) -> Result<(), QueueError>;

    /// Whether the job queue of `zone` exists. Creates nothing.
    ///
    /// # Errors
    /// [`QueueError`] from the broker; an invalid zone name is permanent.
    async fn zone_exists(&self, zone: &str) -> Result<bool, QueueError>;

    /// Take up to `max` messages off the dead-letter queue (they are removed), with
    /// the zone and reason of each.
    ///
    /// # Errors
    /// [`QueueError`] from the broker.
    async fn take_dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError>;

    /// Read up to `max` messages of the dead-letter queue and leave them there (for
    /// `queues dead-letters` to take later): how a coordinator learns which of its
    /// shards the broker gave up on. The order may change.
    ///
    /// # Errors
    /// [`QueueError`] from the broker.
    async fn peek_dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError>;
}
