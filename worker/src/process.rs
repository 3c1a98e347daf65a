//! A worker process: connect the queue and the store named by URLs, serve
//! `/metrics` if asked, consume until shutdown, drain, exit.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use scanfleet_common::fleet::{self, FleetQueue, QueueOptions};
use scanfleet_common::scope::ScopePolicy;
use tokio_util::sync::CancellationToken;

use crate::consume::{Worker, WorkerConfig};
use crate::metrics::WorkerMetrics;

/// Everything a worker process needs, validated.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    pub queue_url: String,
    pub redis_url: String,
    pub zone: String,
    pub concurrency: usize,
    pub metrics_addr: Option<SocketAddr>,
    /// HMAC secret of job envelopes (`SCANFLEET_JOB_SECRET`); required in the fleet.
    pub secret: Vec<u8>,
    pub lease: Duration,
    pub grace: Duration,
    pub delivery_limit: u32,
    pub scope: ScopePolicy,
    /// LOAD TESTS ONLY: send nothing, make results up.
    pub synthetic_probes: bool,
}

/// Why a worker process could not run.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// Bad configuration: exit 2 before anything is received.
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Runtime(String),
}

/// Run a worker process until `shutdown` fires and the shards in hand are drained.
///
/// # Errors
/// [`ProcessError::Config`] for a bad URL or secret, [`ProcessError::Runtime`] when
/// the backends cannot be reached at start or the queue fails permanently.
pub async fn run(config: ProcessConfig, shutdown: CancellationToken) -> Result<(), ProcessError> {
    if config.secret.is_empty() {
        return Err(ProcessError::Config(
            "SCANFLEET_JOB_SECRET is empty: fleet workers accept only signed jobs".into(),
        ));
    }
    fleet::queue_kind(&config.queue_url).map_err(ProcessError::Config)?;
    let opts = QueueOptions {
        prefetch: config.concurrency.clamp(1, u16::MAX as usize) as u16,
        lease: config.lease,
        delivery_limit: config.delivery_limit,
    };
    let queue = FleetQueue::connect(&config.queue_url, &opts)
        .await
        .map_err(|e| ProcessError::Runtime(format!("queue {}: {e}", redact(&config.queue_url))))?;
    queue
        .init(std::slice::from_ref(&config.zone))
        .await
        .map_err(|e| {
            ProcessError::Runtime(format!("declaring the queues of zone {}: {e}", config.zone))
        })?;
    let store = fleet::connect_store(&config.redis_url)
        .await
        .map_err(|e| ProcessError::Runtime(format!("redis {}: {e}", redact(&config.redis_url))))?;

    let metrics = WorkerMetrics::new();
    if let Some(addr) = config.metrics_addr {
        let bound = scanfleet_common::telemetry::serve(addr, metrics.registry.clone(), shutdown.clone())
            .await
            .map_err(|e| ProcessError::Config(format!("--metrics-addr {addr}: {e}")))?;
        tracing::info!(%bound, "serving /metrics");
    }
    let worker = Arc::new(Worker::with_metrics(
        queue.dyn_queue(),
        fleet::dyn_store(&store),
        WorkerConfig {
            zone: config.zone.clone(),
            concurrency: config.concurrency.max(1),
            secret: Some(config.secret.clone()),
            scope: config.scope.clone(),
            lease: config.lease,
            grace: config.grace,
            delivery_limit: config.delivery_limit,
            synthetic_probes: config.synthetic_probes,
            receive_wait: Duration::from_secs(5),
            ..WorkerConfig::default()
        },
        metrics,
    ));
    if config.synthetic_probes {
        tracing::warn!(
            "--synthetic-probes: LOAD TEST MODE, no probe is sent and every result is made up"
        );
    }
    tracing::info!(zone = %config.zone, queue = %redact(&config.queue_url), "worker started");
    worker
        .run(shutdown)
        .await
        .map_err(|e| ProcessError::Runtime(format!("queue: {e}")))?;
    tracing::info!("worker drained; exiting");
    Ok(())
}

/// A URL with its password replaced, for logs and messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact("amqp://guest:s3cret@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
