//! RabbitMQ backend (AMQP 0-9-1 through lapin).
//!
//! # Topology
//! With the default prefix `scanfleet`, declared idempotently, lazily on the first
//! publish or receive of a zone (or up front by [`AmqpQueue::init`]) and again after
//! every reconnect:
//!
//! | name | kind | arguments |
//! |---|---|---|
//! | `scanfleet.jobs.<zone>` | durable quorum queue, one per zone | `x-queue-type=quorum`, `x-delivery-limit`, `x-dead-letter-exchange=scanfleet.dlx`, `x-dead-letter-routing-key=<zone>`, `x-dead-letter-strategy=at-least-once` + `x-overflow=reject-publish` (optional), `x-consumer-timeout` (optional) |
//! | `scanfleet.dlx` | durable direct exchange | |
//! | `scanfleet.dead` | durable quorum queue bound to `scanfleet.dlx` with each zone as routing key | `x-queue-type=quorum` |
//!
//! RabbitMQ refuses to redeclare a queue with different arguments
//! (`PRECONDITION_FAILED - inequivalent arg`): changing `delivery_limit`,
//! `consumer_timeout` or `at_least_once_dead_letter` for an existing queue needs the
//! queue deleted (`scanfleet queues` tooling, [`AmqpQueue::delete_topology`]) or a
//! RabbitMQ policy instead. Such a refusal is a [`QueueError::Permanent`] that quotes
//! the broker.
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
//! [`AmqpConfig::delivery_limit`] deliveries were made. `Nack::DeadLetter` republishes
//! the payload to `scanfleet.dlx` with the headers `x-scanfleet-reason` and
//! `x-scanfleet-zone`, waits for the broker's confirm, then acks the original. If the
//! ack is lost after the confirm, the message is redelivered and may be dead-lettered
//! twice: dead-lettering, like delivery, is at least once.
//!
//! # Connection loss
//! No call blocks on a broker that is down: while the connection is down every
//! operation returns [`QueueError::Transient`]. The next call after a back-off delay
//! (exponential, capped by [`AmqpConfig::reconnect_max`]) reconnects and redeclares
//! the topology.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::future::join_all;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::uri::AMQPUri;
use lapin::{
    Acker, BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ErrorKind,
    ExchangeKind,
};
use tokio::sync::{MappedMutexGuard, Mutex, MutexGuard};
use tokio::time::{Instant, timeout};

use super::memory::DeadLetter;
use super::{Delivery, JobQueue, Nack, QueueError};

/// Header carrying the reason of a message dead-lettered by a consumer.
pub const REASON_HEADER: &str = "x-scanfleet-reason";
/// Header carrying the zone of a message dead-lettered by a consumer.
pub const ZONE_HEADER: &str = "x-scanfleet-zone";

/// Longest zone name: queue names and routing keys are AMQP short strings (255 bytes).
const MAX_ZONE_LEN: usize = 200;

/// How the RabbitMQ backend names, declares and uses its queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpConfig {
    /// First part of every queue and exchange name: `<prefix>.jobs.<zone>`,
    /// `<prefix>.dlx`, `<prefix>.dead`.
    pub prefix: String,
    /// Unacked messages the broker hands to one zone's consumer (`basic.qos`). Set it
    /// to the worker's shard concurrency: more would park shards in this worker's
    /// buffer while other workers idle.
    pub prefetch: u16,
    /// Deliveries of one message, the last one included, before the quorum queue
    /// dead-letters it (the same meaning as [`super::memory::MemoryQueue`]'s
    /// `max_deliveries`; declared as `x-delivery-limit = delivery_limit - 1`).
    pub delivery_limit: u32,
    /// Declared as `x-consumer-timeout`: how long a delivery may stay unacked before
    /// the broker closes the channel and requeues it. `None` leaves the server's
    /// setting. Honoured by RabbitMQ 3.12 and later; see the module docs for older
    /// servers.
    pub consumer_timeout: Option<Duration>,
    /// Declare `x-dead-letter-strategy=at-least-once` (with the `x-overflow=reject-publish`
    /// it requires) so that the broker never drops a message it dead-letters after the
    /// delivery limit. Needs RabbitMQ 3.10 or later with the `stream_queue` feature flag;
    /// otherwise the broker falls back to at-most-once.
    pub at_least_once_dead_letter: bool,
    /// Bound on establishing one connection (TCP, TLS and AMQP handshake).
    pub connect_timeout: Duration,
    /// Bound on one broker round trip: declarations, publisher confirms, `basic.get`.
    pub op_timeout: Duration,
    /// First delay before a reconnect attempt after a failed one; doubles per failure.
    pub reconnect_min: Duration,
    /// Longest delay between reconnect attempts.
    pub reconnect_max: Duration,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            prefix: "scanfleet".into(),
            prefetch: 1,
            delivery_limit: 5,
            consumer_timeout: Some(Duration::from_secs(6 * 3600)),
            at_least_once_dead_letter: true,
            connect_timeout: Duration::from_secs(10),
            op_timeout: Duration::from_secs(30),
            reconnect_min: Duration::from_millis(200),
            reconnect_max: Duration::from_secs(30),
        }
    }
}

impl AmqpConfig {
    /// # Errors
    /// A message naming the field that is out of range.
    pub fn validate(&self) -> Result<(), String> {
        if !valid_name(&self.prefix) || self.prefix.len() > 40 {
            return Err(format!(
                "amqp prefix {:?}: expected 1 to 40 characters of A-Z a-z 0-9 . _ -",
                self.prefix
            ));
        }
        if self.prefetch == 0 {
            return Err("amqp prefetch must be at least 1".into());
        }
        if self.delivery_limit == 0 {
            return Err("amqp delivery_limit must be at least 1".into());
        }
        if let Some(t) = self.consumer_timeout
            && (t.as_millis() == 0 || t.as_millis() > i64::MAX as u128)
        {
            return Err("amqp consumer_timeout must be positive".into());
        }
        for (name, d) in [
            ("connect_timeout", self.connect_timeout),
            ("op_timeout", self.op_timeout),
            ("reconnect_max", self.reconnect_max),
        ] {
            if d.is_zero() {
                return Err(format!("amqp {name} must be positive"));
            }
        }
        if self.reconnect_min > self.reconnect_max {
            return Err("amqp reconnect_min must not exceed reconnect_max".into());
        }
        Ok(())
    }
}

/// Queue and exchange names of one prefix.
#[derive(Debug, Clone)]
struct Names {
    prefix: String,
}

impl Names {
    fn jobs(&self, zone: &str) -> String {
        format!("{}.jobs.{zone}", self.prefix)
    }
    fn dlx(&self) -> String {
        format!("{}.dlx", self.prefix)
    }
    fn dead(&self) -> String {
        format!("{}.dead", self.prefix)
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

fn check_zone(zone: &str) -> Result<(), QueueError> {
    if valid_name(zone) && zone.len() <= MAX_ZONE_LEN {
        Ok(())
    } else {
        Err(QueueError::Permanent(format!(
            "zone {zone:?} cannot name a queue: expected 1 to {MAX_ZONE_LEN} characters of A-Z a-z 0-9 . _ - :"
        )))
    }
}

/// One consumer: its own channel (so `basic.qos` applies to it alone) and its stream.
struct ZoneConsumer {
    generation: u64,
    serial: u64,
    channel: Channel,
    stream: Mutex<lapin::Consumer>,
}

/// An established connection and what was set up on it.
struct Link {
    generation: u64,
    conn: Connection,
    /// Publisher-confirm channel shared by all publishes; recreated when it dies.
    publisher: Option<Channel>,
    shared_declared: bool,
    zones_declared: HashSet<String>,
    consumers: HashMap<String, Arc<ZoneConsumer>>,
}

#[derive(Default)]
struct Inner {
    link: Option<Link>,
    /// Generation of the last connection made; handles carry it.
    generation: u64,
    /// Delay before the next reconnect attempt after this one fails.
    backoff: Duration,
    /// No reconnect attempt before this instant.
    retry_at: Option<Instant>,
    last_error: String,
}

/// A delivery handed out and not yet settled.
struct Pending {
    generation: u64,
    acker: Acker,
}

/// A [`JobQueue`] on RabbitMQ; see the module docs. Cheap to share behind an `Arc`.
pub struct AmqpQueue {
    url: String,
    /// `host:port vhost "/"`, for messages: the URL itself may hold a password.
    endpoint: String,
    config: AmqpConfig,
    names: Names,
    inner: Mutex<Inner>,
    pending: std::sync::Mutex<HashMap<String, Pending>>,
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

/// Whether a lapin error can heal by itself (I/O, broker restart, closed channel)
/// or needs an operator (refused credentials, inequivalent declarations, ...).
fn classify(what: &str, e: &lapin::Error) -> QueueError {
    let msg = format!("{what}: {e}");
    match e.kind() {
        ErrorKind::ProtocolError(amqp) => match amqp.kind() {
            AMQPErrorKind::Soft(
                AMQPSoftError::PRECONDITIONFAILED
                | AMQPSoftError::ACCESSREFUSED
                | AMQPSoftError::NOTFOUND
                | AMQPSoftError::RESOURCELOCKED
                | AMQPSoftError::CONTENTTOOLARGE,
            ) => QueueError::Permanent(msg),
            AMQPErrorKind::Soft(_) => QueueError::Transient(msg),
            AMQPErrorKind::Hard(
                AMQPHardError::CONNECTIONFORCED
                | AMQPHardError::RESOURCEERROR
                | AMQPHardError::INTERNALERROR
                | AMQPHardError::CHANNELERROR
                | AMQPHardError::UNEXPECTEDFRAME,
            ) => QueueError::Transient(msg),
            AMQPErrorKind::Hard(_) => QueueError::Permanent(msg),
        },
        ErrorKind::InvalidProtocolVersion(_)
        | ErrorKind::AuthProviderError(_)
        | ErrorKind::SerialisationError(_)
        | ErrorKind::NoDefaultRuntime => QueueError::Permanent(msg),
        _ => QueueError::Transient(msg),
    }
}

fn elapsed(what: &str, after: Duration) -> QueueError {
    QueueError::Transient(format!(
        "{what}: no answer from the broker within {after:?}"
    ))
}

fn stale(handle: &str) -> QueueError {
    QueueError::Permanent(format!(
        "delivery {handle} is unknown, already settled, or its channel has closed; the broker redelivers an unsettled message"
    ))
}

/// The payload headers' value as an integer, whatever AMQP integer type carries it.
fn header_int(v: &AMQPValue) -> Option<i64> {
    match v {
        AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongLongInt(n) => Some(*n),
        _ => None,
    }
}

fn header_str(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        AMQPValue::ByteArray(b) => Some(String::from_utf8_lossy(b.as_slice()).into_owned()),
        _ => None,
    }
}

fn headers(props: &BasicProperties) -> Option<&FieldTable> {
    props.headers().as_ref()
}

/// Deliveries so far, this one included: quorum queues count earlier deliveries in
/// `x-delivery-count` (absent on the first one).
fn delivery_count(props: &BasicProperties, redelivered: bool) -> u32 {
    let earlier = headers(props)
        .and_then(|h| h.inner().get("x-delivery-count"))
        .and_then(header_int);
    match earlier {
        Some(n) => u32::try_from(n.max(0))
            .unwrap_or(u32::MAX)
            .saturating_add(1),
        None if redelivered => 2,
        None => 1,
    }
}

/// Why a message is in the dead-letter queue: ours if a consumer put it there, the
/// broker's `x-death` reason otherwise.
fn dead_reason(props: &BasicProperties) -> String {
    let h = headers(props);
    if let Some(r) = h
        .and_then(|h| h.inner().get(REASON_HEADER))
        .and_then(header_str)
    {
        return r;
    }
    let death = h
        .and_then(|h| h.inner().get("x-death"))
        .and_then(|v| match v {
            AMQPValue::FieldArray(a) => a.as_slice().first().cloned(),
            _ => None,
        })
        .and_then(|v| match v {
            AMQPValue::FieldTable(t) => Some(t),
            _ => None,
        });
    match death {
        Some(t) => {
            let reason = t
                .inner()
                .get("reason")
                .and_then(header_str)
                .unwrap_or_default();
            if reason == "delivery_limit" {
                "delivery limit reached".into()
            } else {
                format!("dead-lettered by the broker: {reason}")
            }
        }
        None => "dead-lettered for an unknown reason".into(),
    }
}

impl AmqpQueue {
    /// Connect to the broker at `url` (`amqp://user:pass@host:5672/%2f`, `amqps://...`;
    /// `?heartbeat=30` and `?connection_timeout=` work as lapin documents them).
    /// Nothing is declared yet: topology is declared lazily, or by [`Self::init`].
    ///
    /// # Errors
    /// [`QueueError::Permanent`] for an invalid configuration or URL and refused
    /// credentials; [`QueueError::Transient`] when the broker cannot be reached.
    pub async fn connect(url: &str, config: AmqpConfig) -> Result<Self, QueueError> {
        config.validate().map_err(QueueError::Permanent)?;
        let uri: AMQPUri = url
            .parse()
            .map_err(|e| QueueError::Permanent(format!("invalid AMQP URL: {e}")))?;
        let endpoint = format!(
            "{}:{} vhost {:?}",
            uri.authority.host, uri.authority.port, uri.vhost
        );
        let queue = AmqpQueue {
            url: url.to_owned(),
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

    /// Declare the dead-letter exchange and queue and the job queues of `zones` now
    /// (`scanfleet queues init`), instead of on first use.
    ///
    /// # Errors
    /// Transient while the broker is unreachable; permanent when a queue exists with
    /// other arguments or the user may not declare it.
    pub async fn init(&self, zones: &[&str]) -> Result<(), QueueError> {
        for z in zones {
            check_zone(z)?;
        }
        let mut link = self.link().await?;
        for z in zones {
            self.ensure_zone(&mut link, z).await?;
        }
        Ok(())
    }

    /// Take up to `max` messages off the dead-letter queue (they are acked: this
    /// consumes them), with the reason and zone of each. For tests and tooling.
    ///
    /// # Errors
    /// As [`Self::init`].
    pub async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let ch = {
            let mut link = self.link().await?;
            self.ensure_shared(&mut link).await?;
            link.conn
                .create_channel()
                .await
                .map_err(|e| classify("open channel", &e))?
        };
        let dead = self.names.dead();
        let mut out = Vec::new();
        while out.len() < max {
            let got = timeout(
                self.config.op_timeout,
                ch.basic_get(dead.as_str().into(), BasicGetOptions { no_ack: false }),
            )
            .await
            .map_err(|_| elapsed("basic.get", self.config.op_timeout))?
            .map_err(|e| classify("basic.get from the dead-letter queue", &e))?;
            let Some(msg) = got else { break };
            let d = msg.delivery;
            let zone = headers(&d.properties)
                .and_then(|h| h.inner().get(ZONE_HEADER))
                .and_then(header_str)
                .unwrap_or_else(|| d.routing_key.as_str().to_owned());
            let reason = dead_reason(&d.properties);
            d.acker
                .ack(BasicAckOptions::default())
                .await
                .map_err(|e| classify("ack dead letter", &e))?;
            out.push(DeadLetter {
                zone,
                payload: d.data,
                reason,
            });
        }
        let _ = ch.close(200, "OK".into()).await;
        Ok(out)
    }

    /// Delete the job queues of `zones`, the dead-letter queue and the dead-letter
    /// exchange, with every message in them. For tests and `scanfleet queues` tooling.
    ///
    /// # Errors
    /// As [`Self::init`].
    pub async fn delete_topology(&self, zones: &[&str]) -> Result<(), QueueError> {
        for z in zones {
            check_zone(z)?;
        }
        let mut link = self.link().await?;
        let ch = link
            .conn
            .create_channel()
            .await
            .map_err(|e| classify("open channel", &e))?;
        let ops = async {
            for z in zones {
                ch.queue_delete(self.names.jobs(z).into(), QueueDeleteOptions::default())
                    .await?;
            }
            ch.queue_delete(self.names.dead().into(), QueueDeleteOptions::default())
                .await?;
            ch.exchange_delete(self.names.dlx().into(), ExchangeDeleteOptions::default())
                .await
        };
        let res = timeout(self.config.op_timeout, ops).await;
        let _ = ch.close(200, "OK".into()).await;
        for z in zones {
            link.zones_declared.remove(*z);
            link.consumers.remove(*z);
        }
        link.shared_declared = false;
        res.map_err(|_| elapsed("delete topology", self.config.op_timeout))?
            .map_err(|e| classify("delete topology", &e))
    }

    /// Close the connection. Unsettled deliveries go back to their queues and can no
    /// longer be acked; the next call connects again. For graceful shutdown.
    pub async fn close(&self) {
        let mut inner = self.inner.lock().await;
        if let Some(link) = inner.link.take() {
            let _ = link.conn.close(200, "OK".into()).await;
            self.drop_link_state("connection closed by this client");
        }
        inner.retry_at = None;
    }

    /// Forget everything that belonged to the connection that just went away.
    fn drop_link_state(&self, why: &str) {
        self.live.store(0, Ordering::Release);
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if !pending.is_empty() {
            tracing::warn!(
                unsettled = pending.len(),
                reason = why,
                "AMQP connection lost; unsettled deliveries return to their queues"
            );
        }
        pending.clear();
    }

    /// The live connection, reconnecting first if it died and the back-off allows.
    async fn link(&self) -> Result<MappedMutexGuard<'_, Link>, QueueError> {
        let mut inner = self.inner.lock().await;
        if inner
            .link
            .as_ref()
            .is_some_and(|l| !l.conn.status().connected())
        {
            inner.link = None;
            inner.retry_at = None;
            inner.last_error = "connection lost".into();
            self.drop_link_state("connection lost");
            tracing::warn!(endpoint = %self.endpoint, "AMQP connection lost; reconnecting");
        }
        if inner.link.is_none() {
            let now = Instant::now();
            if let Some(at) = inner.retry_at
                && now < at
            {
                return Err(QueueError::Transient(format!(
                    "broker {} unavailable ({}); next reconnect in {:?}",
                    self.endpoint,
                    inner.last_error,
                    at - now
                )));
            }
            let props = ConnectionProperties::default().with_connection_name(
                format!("{}-{}", self.config.prefix, std::process::id()).into(),
            );
            let attempt = timeout(
                self.config.connect_timeout,
                Connection::connect(&self.url, props),
            )
            .await;
            let err = match attempt {
                Ok(Ok(conn)) => {
                    inner.generation += 1;
                    inner.backoff = self.config.reconnect_min;
                    inner.retry_at = None;
                    let generation = inner.generation;
                    inner.link = Some(Link {
                        generation,
                        conn,
                        publisher: None,
                        shared_declared: false,
                        zones_declared: HashSet::new(),
                        consumers: HashMap::new(),
                    });
                    self.live.store(generation, Ordering::Release);
                    tracing::info!(endpoint = %self.endpoint, generation, "AMQP connected");
                    None
                }
                Ok(Err(e)) => Some(classify(&format!("connect to {}", self.endpoint), &e)),
                Err(_) => Some(elapsed(
                    &format!("connect to {}", self.endpoint),
                    self.config.connect_timeout,
                )),
            };
            if let Some(e) = err {
                let backoff = inner.backoff;
                inner.retry_at = Some(now + backoff);
                inner.backoff = (backoff * 2).min(self.config.reconnect_max);
                inner.last_error = e.to_string();
                return Err(e);
            }
        }
        MutexGuard::try_map(inner, |i| i.link.as_mut())
            .map_err(|_| QueueError::Transient(format!("broker {} unavailable", self.endpoint)))
    }

    fn quorum_args(&self) -> FieldTable {
        let mut t = FieldTable::default();
        t.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        t
    }

    fn jobs_args(&self, zone: &str) -> FieldTable {
        let mut t = self.quorum_args();
        let limit = i64::from(self.config.delivery_limit.saturating_sub(1));
        t.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(limit));
        t.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(self.names.dlx().into()),
        );
        t.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(zone.into()),
        );
        if self.config.at_least_once_dead_letter {
            t.insert(
                "x-dead-letter-strategy".into(),
                AMQPValue::LongString("at-least-once".into()),
            );
            t.insert(
                "x-overflow".into(),
                AMQPValue::LongString("reject-publish".into()),
            );
        }
        if let Some(ct) = self.config.consumer_timeout {
            let ms = i64::try_from(ct.as_millis()).unwrap_or(i64::MAX);
            t.insert("x-consumer-timeout".into(), AMQPValue::LongLongInt(ms));
        }
        t
    }

    /// Run declarations on a channel of their own: a refused declaration closes the
    /// channel it was made on, and that must not be a channel anything else uses.
    async fn declare<F, Fut>(&self, link: &Link, what: &str, f: F) -> Result<(), QueueError>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = Result<(), lapin::Error>>,
    {
        let ch = timeout(self.config.op_timeout, link.conn.create_channel())
            .await
            .map_err(|_| elapsed("open channel", self.config.op_timeout))?
            .map_err(|e| classify("open channel", &e))?;
        let res = timeout(self.config.op_timeout, f(ch.clone())).await;
        if ch.status().connected() {
            let _ = ch.close(200, "OK".into()).await;
        }
        res.map_err(|_| elapsed(what, self.config.op_timeout))?
            .map_err(|e| classify(what, &e))
    }

    /// Declare the dead-letter exchange and queue once per connection.
    async fn ensure_shared(&self, link: &mut Link) -> Result<(), QueueError> {
        if link.shared_declared {
            return Ok(());
        }
        let (dlx, dead, args) = (self.names.dlx(), self.names.dead(), self.quorum_args());
        self.declare(
            link,
            "declare the dead-letter exchange and queue",
            |ch| async move {
                ch.exchange_declare(
                    dlx.into(),
                    ExchangeKind::Direct,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
                ch.queue_declare(
                    dead.into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    args,
                )
                .await?;
                Ok(())
            },
        )
        .await?;
        link.shared_declared = true;
        Ok(())
    }

    /// Declare a zone's job queue and its dead-letter binding once per connection.
    async fn ensure_zone(&self, link: &mut Link, zone: &str) -> Result<(), QueueError> {
        self.ensure_shared(link).await?;
        if link.zones_declared.contains(zone) {
            return Ok(());
        }
        let (jobs, dlx, dead) = (self.names.jobs(zone), self.names.dlx(), self.names.dead());
        let args = self.jobs_args(zone);
        let key = zone.to_owned();
        self.declare(link, &format!("declare queue {jobs}"), |ch| async move {
            ch.queue_declare(
                jobs.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                args,
            )
            .await?;
            ch.queue_bind(
                dead.into(),
                dlx.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
        })
        .await?;
        link.zones_declared.insert(zone.to_owned());
        Ok(())
    }

    /// The publisher-confirm channel, opened again if it died.
    async fn publisher(&self, link: &mut Link) -> Result<Channel, QueueError> {
        if let Some(ch) = &link.publisher
            && ch.status().connected()
        {
            return Ok(ch.clone());
        }
        link.publisher = None;
        let ch = link
            .conn
            .create_channel()
            .await
            .map_err(|e| classify("open publisher channel", &e))?;
        timeout(
            self.config.op_timeout,
            ch.confirm_select(ConfirmSelectOptions::default()),
        )
        .await
        .map_err(|_| elapsed("confirm.select", self.config.op_timeout))?
        .map_err(|e| classify("confirm.select", &e))?;
        link.publisher = Some(ch.clone());
        Ok(ch)
    }

    /// The zone's consumer, started again if its channel died.
    async fn consumer(&self, link: &mut Link, zone: &str) -> Result<Arc<ZoneConsumer>, QueueError> {
        if let Some(c) = link.consumers.get(zone)
            && c.channel.status().connected()
        {
            return Ok(c.clone());
        }
        link.consumers.remove(zone);
        self.ensure_zone(link, zone).await?;
        let ch = link
            .conn
            .create_channel()
            .await
            .map_err(|e| classify("open consumer channel", &e))?;
        let queue = self.names.jobs(zone);
        let started = async {
            ch.basic_qos(self.config.prefetch, BasicQosOptions { global: false })
                .await?;
            ch.basic_consume(
                queue.as_str().into(),
                ShortString::from(""),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
        };
        let stream = match timeout(self.config.op_timeout, started).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                // The queue may have been deleted behind our back: declare it again next time.
                link.zones_declared.remove(zone);
                return Err(match classify(&format!("consume from {queue}"), &e) {
                    QueueError::Permanent(m) if matches!(e.kind(), ErrorKind::ProtocolError(p) if matches!(p.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))) => {
                        QueueError::Transient(m)
                    }
                    other => other,
                });
            }
            Err(_) => return Err(elapsed("basic.consume", self.config.op_timeout)),
        };
        let c = Arc::new(ZoneConsumer {
            generation: link.generation,
            serial: self.serial.fetch_add(1, Ordering::Relaxed) + 1,
            channel: ch,
            stream: Mutex::new(stream),
        });
        link.consumers.insert(zone.to_owned(), c.clone());
        Ok(c)
    }

    /// Drop a consumer whose stream ended, unless it was already replaced.
    async fn forget_consumer(&self, zone: &str, serial: u64) {
        let mut inner = self.inner.lock().await;
        if let Some(link) = inner.link.as_mut()
            && link.consumers.get(zone).is_some_and(|c| c.serial == serial)
        {
            link.consumers.remove(zone);
            // A cancelled consumer usually means the queue was deleted.
            link.zones_declared.remove(zone);
        }
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
            self.ensure_zone(&mut link, zone).await?;
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
        let ch = {
            let mut link = self.link().await?;
            self.ensure_zone(&mut link, zone).await?;
            self.publisher(&mut link).await?
        };
        let queue = self.names.jobs(zone);
        let props = BasicProperties::default().with_delivery_mode(2);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation_names_the_field() {
        assert!(AmqpConfig::default().validate().is_ok());
        let bad = AmqpConfig {
            prefetch: 0,
            ..AmqpConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("prefetch"));
        let bad = AmqpConfig {
            prefix: "a b".into(),
            ..AmqpConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("prefix"));
        let bad = AmqpConfig {
            delivery_limit: 0,
            ..AmqpConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("delivery_limit"));
    }

    #[test]
    fn names_and_zone_checks() {
        let n = Names {
            prefix: "scanfleet".into(),
        };
        assert_eq!(n.jobs("vpc-1"), "scanfleet.jobs.vpc-1");
        assert_eq!(n.dlx(), "scanfleet.dlx");
        assert_eq!(n.dead(), "scanfleet.dead");
        assert!(check_zone("vpc-0a1b:eu-west-1").is_ok());
        assert!(check_zone("").is_err());
        assert!(check_zone("a/b").is_err());
        assert!(check_zone(&"z".repeat(MAX_ZONE_LEN + 1)).is_err());
    }

    #[test]
    fn delivery_count_from_quorum_header() {
        let mut h = FieldTable::default();
        h.insert("x-delivery-count".into(), AMQPValue::LongLongInt(2));
        let p = BasicProperties::default().with_headers(h);
        assert_eq!(delivery_count(&p, true), 3);
        assert_eq!(delivery_count(&BasicProperties::default(), false), 1);
    }

    #[test]
    fn reason_prefers_our_header() {
        let mut h = FieldTable::default();
        h.insert(
            REASON_HEADER.into(),
            AMQPValue::LongString("bad signature".into()),
        );
        assert_eq!(
            dead_reason(&BasicProperties::default().with_headers(h)),
            "bad signature"
        );
        assert_eq!(
            dead_reason(&BasicProperties::default()),
            "dead-lettered for an unknown reason"
        );
    }
}
