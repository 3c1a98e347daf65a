//! RabbitMQ backend (AMQP 0-9-1 through lapin).
//!
//! # Topology
//! With the default prefix `scanfleet`, declared by [`QueueAdmin::init`] (`scanfleet
//! queues init`, the coordinator's publish path) and again, by the same client, after
//! every reconnect:
//!
//! | name | kind | arguments |
//! |---|---|---|
//! | `scanfleet.jobs.<zone>` | durable quorum queue, one per zone | `x-queue-type=quorum`, `x-delivery-limit`, `x-dead-letter-exchange=scanfleet.dlx`, `x-dead-letter-routing-key=<zone>`, `x-dead-letter-strategy=at-least-once` + `x-overflow=reject-publish` (optional), `x-consumer-timeout` (optional) |
//! | `scanfleet.dlx` | durable direct exchange | |
//! | `scanfleet.dead` | durable quorum queue bound to `scanfleet.dlx` with each zone as routing key | `x-queue-type=quorum` |
//!
//! RabbitMQ refuses to redeclare a queue with different arguments
//! (`PRECONDITION_FAILED - inequivalent arg`): changing the delivery limit,
//! `consumer_timeout` or `at_least_once_dead_letter` for an existing queue needs the
//! queue deleted ([`AmqpQueue::delete_topology`]) or a RabbitMQ policy instead. Such a
//! refusal is a [`QueueError::Permanent`] that names the limit asked for and quotes
//! the broker; the queue is left as it is.
//!
//! # The delivery limit travels with each job
//! A consumer cannot read a queue's arguments over AMQP (a passive declaration
//! returns only counts), so the client that declared a zone's queue stamps the limit
//! it declared into every job it publishes there ([`LIMIT_HEADER`]); a consumer reads
//! it back into [`Delivery::delivery_limit`]. A publisher must therefore declare a
//! zone ([`QueueAdmin::init`]) before publishing to it, and a publish to a zone this
//! client did not declare is refused. Consumers declare nothing with arguments:
//! receiving from a zone whose queue does not exist yet is a transient error that
//! names `scanfleet queues init`, and dead-lettering declares only the dead-letter
//! exchange, queue and binding, which carry no limit. A RabbitMQ policy that sets a
//! lower `delivery-limit` than the declared argument is not seen by the stamp.
//!
//! # Leases
//! A received message stays unacked on its consumer channel for as long as that
//! channel lives, so [`JobQueue::extend_lease`] only checks that the lease is still
//! held. The broker takes the message back when the channel or connection dies, or
//! when the delivery outlives RabbitMQ's consumer timeout (30 min by default, then
//! the broker closes the channel). The per-queue `x-consumer-timeout` argument
//! ([`AmqpConfig::consumer_timeout`]) is honoured by RabbitMQ 3.12 and later; older
//! servers accept and ignore it, so on them long shards need `consumer_timeout` raised
//! in `rabbitmq.conf` (for example `consumer_timeout = 21600000` for 6 h).
//!
//! A [`Delivery::handle`] is `<connection generation>.<consumer serial>.<delivery tag>`.
//! An ack or nack is sent only through the lapin channel object the delivery came
//! from; a delivery whose channel or connection has died is refused with
//! [`QueueError::Permanent`] (the broker redelivers it anyway), so an old delivery tag
//! is never acked on a new channel.
//!
//! # Retries and dead letters
//! `Nack::Retry` requeues the message (`basic.nack requeue=true`); the quorum queue
//! counts deliveries and dead-letters the message to `scanfleet.dlx` by itself once
//! the declared number of deliveries were made. `Nack::DeadLetter` republishes
//! the payload to `scanfleet.dlx` with the headers `x-scanfleet-reason` and
//! `x-scanfleet-zone`, waits for the broker's confirm, then acks the original. If the
//! ack is lost after the confirm, the message is redelivered and may be dead-lettered
//! twice: dead-lettering, like delivery, is at least once.
//!
//! # Connection loss
//! No call blocks on a broker that is down: while the connection is down every
//! operation returns [`QueueError::Transient`]. The next call after a back-off delay
//! (exponential, capped by [`AmqpConfig::reconnect_max`]) reconnects; a declarer
//! declares its zones again on first use.

mod config;
mod headers;
mod link;
pub mod tls;
mod topology;

pub use config::AmqpConfig;
pub use headers::{LIMIT_HEADER, REASON_HEADER, ZONE_HEADER};

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::future::join_all;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::AMQPUri;
use lapin::{Acker, BasicProperties, Confirmation};
use tokio::sync::Mutex;
use tokio::time::{Instant, timeout};

use super::{DeadLetter, Delivery, JobQueue, Nack, QueueAdmin, QueueError, Topology};
use headers::{delivery_count, delivery_limit};
use link::{Inner, elapsed};
use topology::{Names, check_zone};

/// A delivery handed out and not yet settled.
struct Pending {
    generation: u64,
    acker: Acker,
}

/// A [`JobQueue`] on RabbitMQ; see the module docs. Cheap to share behind an `Arc`.
pub struct AmqpQueue {
    url: String,
    /// The CA and client certificate of an amqps:// URL that named them.
    tls: Option<lapin::tcp::OwnedTLSConfig>,
    /// `host:port vhost "/"`, for messages: the URL itself may hold a password.
    endpoint: String,
    config: AmqpConfig,
    names: Names,
    inner: Mutex<Inner>,
    pending: std::sync::Mutex<HashMap<String, Pending>>,
    /// Zone -> the delivery limit this client declared its queue with; kept across
    /// reconnects, stamped on every job published to the zone.
    limits: std::sync::Mutex<HashMap<String, u32>>,
    /// Generation of the connection that is up, 0 while down.
    live: AtomicU64,
    serial: AtomicU64,
}

impl fmt::Debug for AmqpQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpQueue")
            .field("endpoint", &self.endpoint)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn stale(handle: &str) -> QueueError {
    QueueError::Permanent(format!(
        "delivery {handle} is unknown, already settled, or its channel has closed; the broker redelivers an unsettled message"
    ))
}

impl AmqpQueue {
    /// Connect to the broker at `url` (`amqp://user:pass@host:5672/%2f`, `amqps://...`;
    /// `?heartbeat=30` and `?connection_timeout=` work as lapin documents them).
    /// Nothing is declared yet: a declarer calls [`QueueAdmin::init`].
    ///
    /// # Errors
    /// [`QueueError::Permanent`] for an invalid configuration or URL and refused
    /// credentials; [`QueueError::Transient`] when the broker cannot be reached.
    pub async fn connect(url: &str, config: AmqpConfig) -> Result<Self, QueueError> {
        config.validate().map_err(QueueError::Permanent)?;
        // amqps:// with a CA of one's own or a client certificate: the files
        // ride in the URL (`cacertfile`, `certfile`, `keyfile`) and come off here.
        let (url, files) =
            tls::split(url).map_err(|e| QueueError::Permanent(format!("queue URL: {e}")))?;
        let tls = if files.is_empty() {
            None
        } else {
            Some(tls::config(&files).map_err(QueueError::Permanent)?)
        };
        let url = url.as_str();
        let uri: AMQPUri = url
            .parse()
            .map_err(|e| QueueError::Permanent(format!("invalid AMQP URL: {e}")))?;
        let endpoint = format!(
            "{}:{} vhost {:?}",
            uri.authority.host, uri.authority.port, uri.vhost
        );
        let queue = AmqpQueue {
            url: url.to_owned(),
            tls,
            endpoint,
            names: Names {
                prefix: config.prefix.clone(),
            },
            inner: Mutex::new(Inner {
                backoff: config.reconnect_min,
                ..Inner::default()
            }),
            config,
            pending: std::sync::Mutex::new(HashMap::new()),
            limits: std::sync::Mutex::new(HashMap::new()),
            live: AtomicU64::new(0),
            serial: AtomicU64::new(0),
        };
        drop(queue.link().await?);
        Ok(queue)
    }

    /// The configuration in use.
    pub fn config(&self) -> &AmqpConfig {
        &self.config
    }

    /// Name of a zone's job queue.
    pub fn jobs_queue(&self, zone: &str) -> String {
        self.names.jobs(zone)
    }

    /// Name of the dead-letter exchange.
    pub fn dead_letter_exchange(&self) -> String {
        self.names.dlx()
    }

    /// Name of the dead-letter queue (all zones).
    pub fn dead_letter_queue(&self) -> String {
        self.names.dead()
    }

    /// Whether a connection is up right now (it may still die before the next call).
    pub fn is_connected(&self) -> bool {
        self.live.load(Ordering::Acquire) != 0
    }
    /// Take a delivery out of the unsettled set, refusing one from a dead channel.
    fn take_pending(&self, handle: &str) -> Result<Pending, QueueError> {
        let p = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(handle)
            .ok_or_else(|| stale(handle))?;
        if p.generation != self.live.load(Ordering::Acquire) || !p.acker.usable() {
            return Err(stale(handle));
        }
        Ok(p)
    }

    async fn settle(
        &self,
        handle: &str,
        acker: &Acker,
        requeue: Option<bool>,
    ) -> Result<(), QueueError> {
        let (what, res) = match requeue {
            None => ("basic.ack", acker.ack(BasicAckOptions::default()).await),
            Some(requeue) => (
                "basic.nack",
                acker
                    .nack(BasicNackOptions {
                        requeue,
                        multiple: false,
                    })
                    .await,
            ),
        };
        match res {
            Ok(true) => Ok(()),
            Ok(false) => Err(stale(handle)),
            // The channel died under the ack: the broker requeues the message.
            Err(e) => Err(QueueError::Transient(format!(
                "{what} of delivery {handle}: {e}"
            ))),
        }
    }

    /// Publish to the dead-letter exchange and wait for the broker's confirm.
    async fn publish_dead(
        &self,
        zone: &str,
        payload: &[u8],
        reason: &str,
        generation: u64,
    ) -> Result<(), QueueError> {
        let ch = {
            let mut link = self.link().await?;
            if link.generation != generation {
                return Err(QueueError::Permanent("connection was replaced".into()));
            }
            self.ensure_binding(&mut link, zone).await?;
            self.publisher(&mut link).await?
        };
        let mut h = FieldTable::default();
        h.insert(
            REASON_HEADER.into(),
            AMQPValue::LongString(LongString::from(reason)),
        );
        h.insert(
            ZONE_HEADER.into(),
            AMQPValue::LongString(LongString::from(zone)),
        );
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(h);
        let confirm = ch
            .basic_publish(
                self.names.dlx().into(),
                zone.into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                payload,
                props,
            )
            .await
            .map_err(|e| QueueError::Transient(format!("publish dead letter: {e}")))?;
        match timeout(self.config.op_timeout, confirm).await {
            Err(_) => Err(elapsed(
                "dead-letter publisher confirm",
                self.config.op_timeout,
            )),
            Ok(Err(e)) => Err(QueueError::Transient(format!(
                "dead-letter publisher confirm: {e}"
            ))),
            Ok(Ok(Confirmation::Ack(None))) => Ok(()),
            Ok(Ok(Confirmation::Ack(Some(_)))) => Err(QueueError::Transient(
                "dead letter was unroutable: the dead-letter binding is missing".into(),
            )),
            Ok(Ok(Confirmation::Nack(_))) => Err(QueueError::Transient(
                "broker refused the dead letter".into(),
            )),
            Ok(Ok(Confirmation::NotRequested)) => {
                Err(QueueError::Permanent("publisher confirms are off".into()))
            }
        }
    }
}

#[async_trait]
impl JobQueue for AmqpQueue {
    async fn publish(&self, zone: &str, payload: &[u8]) -> Result<(), QueueError> {
        self.publish_batch(zone, std::slice::from_ref(&payload.to_vec()))
            .await
    }

    async fn publish_batch(&self, zone: &str, payloads: &[Vec<u8>]) -> Result<(), QueueError> {
        check_zone(zone)?;
        if payloads.is_empty() {
            return Ok(());
        }
        let (ch, limit) = {
            let mut link = self.link().await?;
            let limit = self.ensure_zone(&mut link, zone).await?;
            (self.publisher(&mut link).await?, limit)
        };
        let queue = self.names.jobs(zone);
        let mut stamp = FieldTable::default();
        stamp.insert(LIMIT_HEADER.into(), AMQPValue::LongUInt(limit));
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(stamp);
        let mut confirms = Vec::with_capacity(payloads.len());
        for p in payloads {
            let c = ch
                .basic_publish(
                    ShortString::from(""),
                    queue.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        immediate: false,
                    },
                    p,
                    props.clone(),
                )
                .await
                .map_err(|e| QueueError::Transient(format!("publish to {queue}: {e}")))?;
            confirms.push(c);
        }
        let confirmed = timeout(self.config.op_timeout, join_all(confirms))
            .await
            .map_err(|_| elapsed("publisher confirms", self.config.op_timeout))?;
        let mut unroutable = 0usize;
        let mut refused = 0usize;
        for c in confirmed {
            match c {
                Ok(Confirmation::Ack(None)) => {}
                Ok(Confirmation::Ack(Some(_))) => unroutable += 1,
                Ok(Confirmation::Nack(_)) => refused += 1,
                Ok(Confirmation::NotRequested) => {
                    return Err(QueueError::Permanent("publisher confirms are off".into()));
                }
                Err(e) => {
                    return Err(QueueError::Transient(format!(
                        "publisher confirm from {queue}: {e}"
                    )));
                }
            }
        }
        if unroutable > 0 {
            // The queue vanished (deleted by an operator?): declare it again next time.
            let mut inner = self.inner.lock().await;
            if let Some(link) = inner.link.as_mut() {
                link.zones_declared.remove(zone);
            }
            return Err(QueueError::Transient(format!(
                "{unroutable} of {} messages were unroutable: queue {queue} is missing",
                payloads.len()
            )));
        }
        if refused > 0 {
            return Err(QueueError::Transient(format!(
                "broker refused {refused} of {} messages for {queue}",
                payloads.len()
            )));
        }
        Ok(())
    }

    async fn stop_receiving(&self) {
        self.cancel_consumers().await;
    }

    async fn receive(&self, zone: &str, wait: Duration) -> Result<Option<Delivery>, QueueError> {
        check_zone(zone)?;
        let deadline = Instant::now() + wait;
        let consumer = {
            let mut link = self.link().await?;
            self.consumer(&mut link, zone).await?
        };
        // Another receive of the same zone may be waiting on the stream: queue up behind it.
        let Ok(mut stream) = tokio::time::timeout_at(deadline, consumer.stream.lock()).await else {
            return Ok(None);
        };
        let next = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => return Ok(None),
            Ok(n) => n,
        };
        drop(stream);
        match next {
            Some(Ok(d)) => {
                let handle = format!(
                    "{}.{}.{}",
                    consumer.generation, consumer.serial, d.delivery_tag
                );
                let deliveries = delivery_count(&d.properties, d.redelivered);
                let limit = delivery_limit(&d.properties);
                self.pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(
                        handle.clone(),
                        Pending {
                            generation: consumer.generation,
                            acker: d.acker,
                        },
                    );
                Ok(Some(Delivery {
                    handle,
                    zone: zone.to_owned(),
                    payload: d.data,
                    deliveries,
                    delivery_limit: limit,
                }))
            }
            // Any end of the stream heals with a new consumer: never permanent here.
            Some(Err(e)) => {
                self.forget_consumer(zone, consumer.serial).await;
                Err(QueueError::Transient(format!(
                    "consumer of zone {zone} failed: {e}"
                )))
            }
            None => {
                self.forget_consumer(zone, consumer.serial).await;
                Err(QueueError::Transient(format!(
                    "consumer of zone {zone} was cancelled by the broker"
                )))
            }
        }
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let p = self.take_pending(&delivery.handle)?;
        self.settle(&delivery.handle, &p.acker, None).await
    }

    async fn nack(&self, delivery: &Delivery, what: Nack) -> Result<(), QueueError> {
        let p = self.take_pending(&delivery.handle)?;
        match what {
            Nack::Retry => self.settle(&delivery.handle, &p.acker, Some(true)).await,
            Nack::DeadLetter { reason } => {
                match self
                    .publish_dead(&delivery.zone, &delivery.payload, &reason, p.generation)
                    .await
                {
                    Ok(()) => self.settle(&delivery.handle, &p.acker, None).await,
                    Err(e) => {
                        // Never leave it unsettled: back on the queue, to be dead-lettered again.
                        let _ = self.settle(&delivery.handle, &p.acker, Some(true)).await;
                        Err(e)
                    }
                }
            }
        }
    }

    async fn extend_lease(&self, delivery: &Delivery, _by: Duration) -> Result<(), QueueError> {
        let pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        match pending.get(&delivery.handle) {
            Some(p) if p.generation == self.live.load(Ordering::Acquire) && p.acker.usable() => {
                Ok(())
            }
            _ => Err(QueueError::Permanent(format!(
                "lease of delivery {} is lost: its channel closed and the broker will redeliver it",
                delivery.handle
            ))),
        }
    }
}

#[async_trait]
impl QueueAdmin for AmqpQueue {
    /// Declares every zone's queue with `topology` now, even if this client declared
    /// it before; a queue that exists with another limit fails with
    /// [`QueueError::Permanent`] and is left as it is.
    async fn init(&self, zones: &[String], topology: &Topology) -> Result<(), QueueError> {
        self.declare_zones(zones, topology).await
    }

    async fn zone_exists(&self, zone: &str) -> Result<bool, QueueError> {
        self.jobs_queue_exists(zone).await
    }

    async fn take_dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        self.take_dead(max, false).await
    }

    async fn peek_dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        self.take_dead(max, true).await
    }
}
