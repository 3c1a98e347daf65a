//! The consume loop: lease a shard, verify it, probe, detect services, store
//! results, then ack. A job is acked only after its results are durably written;
//! a permanent failure dead-letters it with its reason; a transient one puts it
//! back on the queue.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use scanfleet_common::envelope::now_unix_ms;
use scanfleet_common::metrics::{DeadLetterReason, ErrorKind, Outcome, Stage};
use scanfleet_common::queue::{Delivery, JobQueue, Nack};
use scanfleet_common::scope::ScopePolicy;
use scanfleet_common::store::ResultStore;
use scanfleet_common::{
    EnvelopeError, JobEnvelope, PortState, ProbeResult, Protocol, ScanJob, ScanMode, ShardOutcome,
};
use tokio::sync::{OnceCell, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::metrics::WorkerMetrics;
use crate::probe::{
    self, PortObservation, ProbeError, ProbeRequest, Selected, ping, syn::SynConfig,
};
use crate::service::{DetectConfig, Detector};

mod accuracy;
mod admit;
mod store;
mod udp;

/// How a worker behaves; see each field.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The network zone whose queue this worker serves.
    pub zone: String,
    /// Shards worked on at the same time.
    pub concurrency: usize,
    /// HMAC secret for job envelopes; `None` accepts only unsigned jobs (embedded mode).
    pub secret: Option<Vec<u8>>,
    /// Address rules checked again before any probe (defence in depth).
    pub scope: ScopePolicy,
    /// The lease is extended every `lease / 3` while a shard runs.
    pub lease: Duration,
    /// Longest single wait on an empty queue.
    pub receive_wait: Duration,
    /// Results per store write.
    pub result_batch: usize,
    /// Open ports whose services are identified at the same time.
    pub detect_window: usize,
    pub detect: DetectConfig,
    pub syn: SynConfig,
    /// On shutdown, how long shards in hand may take to finish before they are released.
    pub grace: Duration,
    /// LOAD TESTS ONLY: probe nothing, make results up ([`probe::synthetic`]).
    pub synthetic_probes: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            zone: scanfleet_common::DEFAULT_ZONE.into(),
            concurrency: 1,
            secret: None,
            scope: ScopePolicy::default(),
            lease: Duration::from_secs(60),
            receive_wait: Duration::from_secs(1),
            result_batch: 500,
            detect_window: 64,
            detect: DetectConfig::default(),
            syn: SynConfig::default(),
            grace: Duration::from_secs(30),
            synthetic_probes: false,
        }
    }
}

/// Counters one worker keeps over its life.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub jobs_done: AtomicU64,
    pub jobs_retried: AtomicU64,
    pub jobs_dead_lettered: AtomicU64,
    pub probes_sent: AtomicU64,
    pub results_written: AtomicU64,
}

/// Why a shard did not complete.
#[derive(Debug, thiserror::Error)]
enum ShardError {
    /// Retrying cannot help: dead-letter with this reason.
    #[error("{reason}")]
    Permanent {
        class: DeadLetterReason,
        reason: String,
    },
    /// Put it back on the queue.
    #[error("{0}")]
    Transient(String),
    #[error("shutting down")]
    Cancelled,
}

impl From<ProbeError> for ShardError {
    fn from(e: ProbeError) -> Self {
        match e {
            ProbeError::Cancelled => ShardError::Cancelled,
            e if e.is_transient() => ShardError::Transient(e.to_string()),
            e => ShardError::Permanent {
                class: DeadLetterReason::Probe,
                reason: e.to_string(),
            },
        }
    }
}

/// A worker: one consume loop over a queue and a store.
pub struct Worker {
    queue: Arc<dyn JobQueue>,
    store: Arc<dyn ResultStore>,
    config: WorkerConfig,
    detector: Detector,
    /// Engines by requested mode, chosen once (raw sockets are probed once).
    engines: tokio::sync::Mutex<HashMap<ScanMode, Arc<OnceCell<Selected>>>>,
    /// Notes for the user (such as a connect-scan fallback), each said once.
    notes: std::sync::Mutex<Vec<String>>,
    pub stats: WorkerStats,
    pub metrics: WorkerMetrics,
}

impl Worker {
    /// A worker with metrics of its own.
    pub fn new(
        queue: Arc<dyn JobQueue>,
        store: Arc<dyn ResultStore>,
        config: WorkerConfig,
    ) -> Self {
        Self::with_metrics(queue, store, config, WorkerMetrics::new())
    }

    /// A worker that counts into shared metrics (several workers in one process).
    pub fn with_metrics(
        queue: Arc<dyn JobQueue>,
        store: Arc<dyn ResultStore>,
        config: WorkerConfig,
        metrics: WorkerMetrics,
    ) -> Self {
        let detector = Detector::new(config.detect.clone());
        Worker {
            queue,
            store,
            config,
            detector,
            engines: tokio::sync::Mutex::new(HashMap::new()),
            notes: std::sync::Mutex::new(Vec::new()),
            stats: WorkerStats::default(),
            metrics,
        }
    }

    /// Notes gathered so far (engine fallbacks, ICMP without privileges), deduplicated.
    pub fn notes(&self) -> Vec<String> {
        self.notes.lock().map(|n| n.clone()).unwrap_or_default()
    }

    fn note(&self, msg: String) {
        if let Ok(mut n) = self.notes.lock()
            && !n.contains(&msg)
        {
            tracing::warn!("{msg}");
            n.push(msg);
        }
    }

    /// Consume until `shutdown` fires, then drain: stop receiving, give the shards
    /// in hand up to `config.grace` to finish (results stored, acked), then cancel
    /// the rest, which releases them to the queue for another worker.
    ///
    /// # Errors
    /// Only a permanent queue error ends the loop early.
    pub async fn run(
        self: Arc<Self>,
        shutdown: CancellationToken,
    ) -> Result<(), scanfleet_common::queue::QueueError> {
        let slots = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let abort = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut backoff = Duration::from_millis(100);
        let mut failure = None;
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            };
            let received = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = self.queue.receive(&self.config.zone, self.config.receive_wait) => r,
            };
            while tasks.try_join_next().is_some() {}
            match received {
                Ok(Some(delivery)) => {
                    backoff = Duration::from_millis(100);
                    let me = self.clone();
                    let cancel = abort.child_token();
                    tasks.spawn(async move {
                        me.handle(delivery, cancel).await;
                        drop(permit);
                    });
                }
                // The broker answered: the next failure starts a fresh back-off.
                Ok(None) => backoff = Duration::from_millis(100),
                Err(e) if e.is_transient() => {
                    self.metrics
                        .errors
                        .with_label_values(&[
                            Stage::Receive.as_str(),
                            ErrorKind::Transient.as_str(),
                        ])
                        .inc();
                    tracing::warn!(error = %e, "queue receive failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    // Short cap: the queue backends back off their reconnects themselves,
                    // and a second long back-off here would stack on theirs.
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    self.metrics
                        .errors
                        .with_label_values(&[
                            Stage::Receive.as_str(),
                            ErrorKind::Permanent.as_str(),
                        ])
                        .inc();
                    failure = Some(e);
                    break;
                }
            }
        }
        // No more deliveries to this worker: a shard released below then goes to
        // another worker instead of straight back to this consumer (which would cost
        // it a second delivery when the connection closes).
        self.queue.stop_receiving().await;
        // Drain: finish what is in hand within the grace period, release the rest.
        let drained = tokio::time::timeout(self.config.grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                in_flight = tasks.len(),
                "grace period over; releasing unfinished shards to the queue"
            );
            abort.cancel();
            while tasks.join_next().await.is_some() {}
        }
        failure.map_or(Ok(()), Err)
    }

    /// Work one delivery to its end: ack, retry or dead-letter.
    pub async fn handle(&self, delivery: Delivery, cancel: CancellationToken) {
        let started = std::time::Instant::now();
        self.metrics.jobs_received.inc();
        self.metrics.shards_in_flight.inc();
        let heartbeat = CancellationToken::new();
        // A lease lost for good means the shard is back on the queue for someone
        // else: stop working on it rather than duplicate the work.
        let cancel = cancel.child_token();
        let hb = {
            let lost = cancel.clone();
            let queue = self.queue.clone();
            let d = delivery.clone();
            let lease = self.config.lease;
            let stop = heartbeat.clone();
            let metrics = self.metrics.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(lease / 3) => {
                            match queue.extend_lease(&d, lease).await {
                                Ok(()) => metrics.lease_extensions.inc(),
                                Err(e) => {
                                    metrics.errors.with_label_values(&[Stage::Settle.as_str(), ErrorKind::from_transient(e.is_transient()).as_str()]).inc();
                                    tracing::warn!(error = %e, "lease extension failed");
                                    if !e.is_transient() {
                                        lost.cancel();
                                        return;
                                    }
                                }
                            }
                        }
                    }
                }
            })
        };
        let mut verified = None;
        let outcome = self.work(&delivery, &cancel, &mut verified).await;
        // A verified shard that will not come back is recorded as failed, so that
        // whoever follows the scan sees it end. Unverified messages name no shard we trust.
        // The queue says whether this is the last delivery (its delivery limit).
        let last_try = delivery.last_attempt();
        if let (Some((scan_id, shard_id)), Err(e)) = (&verified, &outcome)
            && (matches!(e, ShardError::Permanent { .. })
                || (matches!(e, ShardError::Transient(_)) && last_try))
        {
            let failed = ShardOutcome::Failed {
                reason: e.to_string(),
            };
            if let Err(err) = self.store.finish_shard(scan_id, *shard_id, &failed).await {
                tracing::warn!(error = %err, "could not record the failed shard");
            }
        }
        heartbeat.cancel();
        let _ = hb.await;
        let (label, settle) = match outcome {
            Ok(()) => {
                self.stats.jobs_done.fetch_add(1, Ordering::Relaxed);
                (Outcome::Done, self.queue.ack(&delivery).await)
            }
            Err(ShardError::Permanent { class, reason }) => {
                tracing::warn!(%reason, "job dead-lettered");
                self.stats
                    .jobs_dead_lettered
                    .fetch_add(1, Ordering::Relaxed);
                self.metrics
                    .dead_lettered
                    .with_label_values(&[class.as_str()])
                    .inc();
                self.metrics
                    .errors
                    .with_label_values(&[class.stage().as_str(), ErrorKind::Permanent.as_str()])
                    .inc();
                (
                    Outcome::DeadLettered,
                    self.queue
                        .nack(&delivery, Nack::DeadLetter { reason })
                        .await,
                )
            }
            Err(ShardError::Transient(reason)) if last_try => {
                // A retry now would dead-letter it with a generic reason: give ours.
                let limit = delivery.delivery_limit.unwrap_or(delivery.deliveries);
                let reason = format!("{reason} (delivery limit of {limit} reached)");
                tracing::warn!(%reason, "job failed on its last delivery; dead-lettered");
                self.stats
                    .jobs_dead_lettered
                    .fetch_add(1, Ordering::Relaxed);
                self.metrics
                    .dead_lettered
                    .with_label_values(&[DeadLetterReason::DeliveryLimit.as_str()])
                    .inc();
                (
                    Outcome::DeadLettered,
                    self.queue
                        .nack(&delivery, Nack::DeadLetter { reason })
                        .await,
                )
            }
            Err(ShardError::Transient(reason)) => {
                tracing::warn!(%reason, "job failed; it will be retried");
                self.stats.jobs_retried.fetch_add(1, Ordering::Relaxed);
                (
                    Outcome::Retried,
                    self.queue.nack(&delivery, Nack::Retry).await,
                )
            }
            Err(ShardError::Cancelled) => (
                Outcome::Released,
                self.queue.nack(&delivery, Nack::Retry).await,
            ),
        };
        self.metrics
            .jobs_completed
            .with_label_values(&[label.as_str()])
            .inc();
        self.metrics
            .job_duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics.shards_in_flight.dec();
        if let Err(e) = settle {
            self.metrics
                .errors
                .with_label_values(&[
                    Stage::Settle.as_str(),
                    ErrorKind::from_transient(e.is_transient()).as_str(),
                ])
                .inc();
            tracing::warn!(error = %e, "could not settle delivery; its lease will lapse and it will be redelivered");
        }
    }

    async fn work(
        &self,
        delivery: &Delivery,
        cancel: &CancellationToken,
        verified: &mut Option<(String, u32)>,
    ) -> Result<(), ShardError> {
        let env =
            JobEnvelope::from_bytes(&delivery.payload).map_err(|e| ShardError::Permanent {
                class: DeadLetterReason::Malformed,
                reason: e.to_string(),
            })?;
        let job = env
            .open(self.config.secret.as_deref(), now_unix_ms())
            .map_err(|e| {
                let class = match e {
                    EnvelopeError::Expired(_) => DeadLetterReason::Expired,
                    EnvelopeError::BadSignature | EnvelopeError::Unsigned => {
                        DeadLetterReason::Signature
                    }
                    _ => DeadLetterReason::Malformed,
                };
                ShardError::Permanent {
                    class,
                    reason: e.to_string(),
                }
            })?;
        *verified = Some((job.scan_id.clone(), job.shard_id));
        if job.zone != self.config.zone {
            return Err(ShardError::Permanent {
                class: DeadLetterReason::Scope,
                reason: format!(
                    "job is for zone {:?} but this worker serves {:?}",
                    job.zone, self.config.zone
                ),
            });
        }
        if !self.admit(&job, cancel).await? {
            return Ok(());
        }
        self.run_shard(&job, cancel).await?;
        // Every pair is decided now, those of hosts found down included.
        let pairs = job.pairs();
        self.report_ports(&job, pairs).await;
        self.with_store_retry(cancel, || {
            self.store
                .finish_shard(&job.scan_id, job.shard_id, &ShardOutcome::Done)
        })
        .await?;
        Ok(())
    }

    async fn engine(&self, mode: ScanMode) -> Result<Arc<dyn probe::Prober>, ShardError> {
        if self.config.synthetic_probes {
            return Ok(Arc::new(probe::synthetic::SyntheticProber));
        }
        let cell = self.engines.lock().await.entry(mode).or_default().clone();
        let sel = cell
            .get_or_try_init(|| async { probe::select(mode, self.config.syn.clone()) })
            .await
            .map_err(ShardError::from)?;
        if let Some(n) = &sel.fallback_note {
            self.note(n.clone());
        }
        Ok(sel.prober.clone())
    }

    async fn run_shard(&self, job: &ScanJob, cancel: &CancellationToken) -> Result<(), ShardError> {
        let asset_of: HashMap<IpAddr, String> = job
            .targets
            .iter()
            .map(|t| (t.ip, t.asset_id.clone()))
            .collect();
        let mut targets = job.targets.clone();
        if job.profile.host_discovery {
            let ips: Vec<IpAddr> = targets.iter().map(|t| t.ip).collect();
            let found = ping::sweep(
                &ips,
                Duration::from_millis(job.profile.timeout_ms.max(200) * 2),
            )
            .await;
            for n in found.notes {
                self.note(n);
            }
            targets.retain(|t| found.up.contains(&t.ip));
        }
        if targets.is_empty() {
            return Ok(());
        }
        if job.ports.is_empty() {
            // UDP only (-sU alone).
            return self.run_udp(job, &targets, &asset_of, 0, cancel).await;
        }
        let prober = self.engine(job.profile.mode).await?;
        let tcp_pairs = targets.len() as u64 * job.ports.len() as u64;
        let udp_targets = targets.clone();
        let req = ProbeRequest {
            targets,
            ports: job.ports.clone(),
            profile: job.profile.clone(),
            seed: rand::random(),
        };
        let (tx, mut rx) = mpsc::channel::<PortObservation>(4096);
        let result = |o: &PortObservation| ProbeResult {
            scan_id: job.scan_id.clone(),
            asset_id: asset_of
                .get(&o.ip)
                .cloned()
                .unwrap_or_else(|| o.ip.to_string()),
            ip: o.ip,
            port: o.port,
            protocol: Protocol::Tcp,
            state: o.state,
            reason: o.reason.to_string(),
            service: None,
        };
        let scan = prober.scan(&req, tx, cancel.clone());
        let collect = async {
            let mut open = Vec::new();
            let mut batch = Vec::new();
            let mut decided = 0u64;
            let mut reported = tokio::time::Instant::now();
            while let Some(o) = rx.recv().await {
                self.metrics
                    .ports
                    .with_label_values(&[o.state.as_str()])
                    .inc();
                decided += 1;
                if reported.elapsed() >= PROGRESS_EVERY {
                    self.report_ports(job, decided).await;
                    reported = tokio::time::Instant::now();
                }
                if o.state == PortState::Open {
                    open.push(result(&o));
                } else if job.profile.all_states {
                    batch.push(result(&o));
                    if batch.len() >= self.config.result_batch {
                        self.write(cancel, &job.scan_id, &batch).await?;
                        batch.clear();
                    }
                }
            }
            self.write(cancel, &job.scan_id, &batch).await?;
            Ok::<_, ShardError>(open)
        };
        let (stats, open) = tokio::join!(scan, collect);
        let stats = stats?;
        let mut open = open?;
        self.stats
            .probes_sent
            .fetch_add(stats.probes_sent, Ordering::Relaxed);
        self.metrics
            .probes_sent
            .with_label_values(&[prober.name()])
            .inc_by(stats.probes_sent);
        self.record_accuracy(job, prober.name(), &stats, cancel)
            .await?;

        if job.profile.service_detection && !open.is_empty() && !self.config.synthetic_probes {
            let window = Arc::new(Semaphore::new(self.config.detect_window.max(1)));
            let mut set = JoinSet::new();
            for (i, r) in open.iter().enumerate() {
                let (ip, port) = (r.ip, r.port);
                let det = self.detector.clone();
                let window = window.clone();
                set.spawn(async move {
                    let _p = window.acquire_owned().await;
                    (i, det.detect(ip, port).await)
                });
            }
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => { set.abort_all(); return Err(ShardError::Cancelled) }
                    next = set.join_next() => match next {
                        Some(Ok((i, svc))) => open[i].service = svc,
                        Some(Err(_)) => {}
                        None => break,
                    }
                }
            }
        }
        for chunk in open.chunks(self.config.result_batch.max(1)) {
            self.write(cancel, &job.scan_id, chunk).await?;
        }
        self.run_udp(job, &udp_targets, &asset_of, tcp_pairs, cancel)
            .await
    }
}

/// How often a running shard reports its progress to the store.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
