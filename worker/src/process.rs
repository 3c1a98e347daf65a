//! A worker process: its settings (flags, environment, config file, validated
//! before anything connects), then connect the queue and the store named by
//! URLs, serve `/metrics` if asked, consume until shutdown, drain, exit. With
//! `--lifecycle-hook`, the autoscaling group's terminating hook is a shutdown
//! too ([`crate::lifecycle`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use scanfleet_common::backend::{self, QueueOptions};
use scanfleet_common::config::args::{
    ConfigArg, ExcludeArg, MetricsArg, QueueArg, RedisArg, check_zone, job_secret,
};
use scanfleet_common::config::{ConfigError, Sources, in_range};
use scanfleet_common::scope::ScopePolicy;
use scanfleet_common::telemetry::redact;
use tokio_util::sync::CancellationToken;

use crate::consume::{Worker, WorkerConfig};
use crate::lifecycle::{self, Lifecycle, LifecycleConfig};
use crate::metrics::WorkerMetrics;

/// The flags of `scanfleet-worker`; every one also comes from the environment
/// or the config file (`[fleet]` and `[worker]`).
#[derive(Debug, Clone, Default, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    #[command(flatten)]
    pub queue: QueueArg,
    #[command(flatten)]
    pub redis: RedisArg,
    /// Network zone whose queue this worker serves
    /// [env: SCANFLEET_ZONE; config worker.zone; default "default"].
    #[arg(long, value_name = "ZONE")]
    pub zone: Option<String>,
    /// Shards worked at the same time [env: SCANFLEET_CONCURRENCY; config worker.concurrency; default 1].
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    #[command(flatten)]
    pub metrics: MetricsArg,
    /// Lease of a shard in seconds, extended every third of it while the shard
    /// runs (SQS visibility timeout) [config worker.lease_secs; default 60].
    #[arg(long, value_name = "SECS")]
    pub lease_secs: Option<u64>,
    /// On SIGTERM, seconds the shards in hand may take before they are released
    /// [config worker.grace_secs; default 30].
    #[arg(long, value_name = "SECS")]
    pub grace_secs: Option<u64>,
    #[command(flatten)]
    pub exclude: ExcludeArg,
    /// Name of the autoscaling group's terminating lifecycle hook: on
    /// Terminating:Wait the worker drains as on SIGTERM, sends heartbeats, then
    /// completes the action (CONTINUE) [env: SCANFLEET_LIFECYCLE_HOOK; default: none].
    #[arg(long, value_name = "NAME")]
    pub lifecycle_hook: Option<String>,
    /// This EC2 instance's id for --lifecycle-hook, instead of asking instance
    /// metadata (IMDSv2) [env: SCANFLEET_INSTANCE_ID].
    #[arg(long, value_name = "ID")]
    pub instance_id: Option<String>,
    /// With --lifecycle-hook, seconds between reads of the instance's lifecycle
    /// state [env: SCANFLEET_LIFECYCLE_POLL_SECS; default 5].
    #[arg(long, value_name = "SECS")]
    pub lifecycle_poll_secs: Option<u64>,
    /// With --lifecycle-hook, seconds between heartbeats while draining; keep it
    /// below the hook's heartbeat timeout [env: SCANFLEET_LIFECYCLE_HEARTBEAT_SECS; default 30].
    #[arg(long, value_name = "SECS")]
    pub lifecycle_heartbeat_secs: Option<u64>,
    /// LOAD TESTS ONLY: send no probe and make results up (reason "synthetic"),
    /// to load the queue, Redis and the worker without a network.
    #[arg(long, hide = true)]
    pub synthetic_probes: bool,
}

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
    pub scope: ScopePolicy,
    /// The terminating lifecycle hook to honour (`--lifecycle-hook`).
    pub lifecycle: Option<LifecycleConfig>,
    /// LOAD TESTS ONLY: send nothing, make results up.
    pub synthetic_probes: bool,
}

impl ProcessConfig {
    /// Layer and validate the worker's settings. Nothing connects here, so every
    /// bad flag, variable or key is found before the broker or Redis is touched.
    ///
    /// # Errors
    /// [`ConfigError`] naming the flag, variable or key and where it came from.
    pub fn from_args(args: &WorkerArgs) -> Result<ProcessConfig, ConfigError> {
        let src = args.config.sources()?;
        Self::from_sources(args, &src)
    }

    /// As [`ProcessConfig::from_args`], with the layers given (tests).
    ///
    /// # Errors
    /// As [`ProcessConfig::from_args`].
    pub fn from_sources(args: &WorkerArgs, src: &Sources) -> Result<ProcessConfig, ConfigError> {
        let w = &src.file.worker;
        let queue = args.queue.require(src)?;
        let redis = args.redis.resolve(src)?;
        let zone = src.pick_or(
            ("--zone", args.zone.clone()),
            Some("SCANFLEET_ZONE"),
            ("worker.zone", w.zone.clone()),
            scanfleet_common::DEFAULT_ZONE.to_string(),
        )?;
        check_zone(&zone.value, &zone.origin.name())?;
        let concurrency = src.pick_or(
            ("--concurrency", args.concurrency),
            Some("SCANFLEET_CONCURRENCY"),
            ("worker.concurrency", w.concurrency),
            1,
        )?;
        let lease = src.pick_or(
            ("--lease-secs", args.lease_secs),
            Some("SCANFLEET_LEASE_SECS"),
            ("worker.lease_secs", w.lease_secs),
            60,
        )?;
        let grace = src.pick_or(
            ("--grace-secs", args.grace_secs),
            Some("SCANFLEET_GRACE_SECS"),
            ("worker.grace_secs", w.grace_secs),
            30,
        )?;
        Ok(ProcessConfig {
            queue_url: queue.value,
            redis_url: redis.value,
            zone: zone.value,
            concurrency: in_range(&concurrency, 1, 1024)?,
            metrics_addr: args.metrics.resolve(src)?,
            secret: job_secret(src)?,
            lease: Duration::from_secs(in_range(&lease, 3, 12 * 3600)?),
            grace: Duration::from_secs(in_range(&grace, 0, 3600)?),
            scope: ScopePolicy {
                exclude_cidrs: args.exclude.resolve(src, "worker.exclude", &w.exclude)?,
                ..ScopePolicy::default()
            },
            lifecycle: lifecycle_config(args, src)?,
            synthetic_probes: args.synthetic_probes,
        })
    }
}

/// `--lifecycle-hook` and its companions (flags and environment only).
fn lifecycle_config(
    args: &WorkerArgs,
    src: &Sources,
) -> Result<Option<LifecycleConfig>, ConfigError> {
    let hook = src.pick(
        ("--lifecycle-hook", args.lifecycle_hook.clone()),
        Some("SCANFLEET_LIFECYCLE_HOOK"),
        ("worker.lifecycle_hook", None),
        None,
    )?;
    let instance = src.pick(
        ("--instance-id", args.instance_id.clone()),
        Some("SCANFLEET_INSTANCE_ID"),
        ("worker.instance_id", None),
        None,
    )?;
    let poll = src.pick_or(
        ("--lifecycle-poll-secs", args.lifecycle_poll_secs),
        Some("SCANFLEET_LIFECYCLE_POLL_SECS"),
        ("worker.lifecycle_poll_secs", None),
        5,
    )?;
    let heartbeat = src.pick_or(
        ("--lifecycle-heartbeat-secs", args.lifecycle_heartbeat_secs),
        Some("SCANFLEET_LIFECYCLE_HEARTBEAT_SECS"),
        ("worker.lifecycle_heartbeat_secs", None),
        30,
    )?;
    let poll = Duration::from_secs(in_range(&poll, 1, 3600)?);
    let heartbeat = Duration::from_secs(in_range(&heartbeat, 1, 3600)?);
    if let Some(id) = &instance
        && !lifecycle::is_instance_id(&id.value)
    {
        return Err(id.invalid("expected an EC2 instance id (i- and 8 or 17 hex digits)"));
    }
    let Some(hook) = hook else {
        return Ok(None);
    };
    let valid = !hook.value.is_empty()
        && hook.value.len() <= 255
        && hook
            .value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/'));
    if !valid {
        return Err(hook.invalid(
            "a lifecycle hook name is 1 to 255 characters of A-Z, a-z, 0-9, '-', '_' and '/'",
        ));
    }
    Ok(Some(LifecycleConfig {
        hook: hook.value,
        instance_id: instance.map(|i| i.value),
        poll,
        heartbeat,
    }))
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
    scanfleet_common::envelope::check_secret(Some(&config.secret))
        .map_err(|e| ProcessError::Config(e.to_string()))?;
    // The listener first: an address in use is a usage error found before the
    // broker or Redis is touched.
    let metrics = WorkerMetrics::new();
    if let Some(addr) = config.metrics_addr {
        let bound =
            scanfleet_common::telemetry::serve(addr, metrics.registry.clone(), shutdown.clone())
                .await
                .map_err(|e| ProcessError::Config(format!("--metrics-addr {addr}: {e}")))?;
        tracing::info!(%bound, "serving /metrics");
    }
    let opts = QueueOptions {
        prefetch: config.concurrency.clamp(1, u16::MAX as usize) as u16,
        lease: config.lease,
    };
    // The lifecycle guard first, so that a worker still waiting for its queue
    // also drains and completes the hook when its instance terminates.
    let drained = CancellationToken::new();
    let _drained_on_return = drained.clone().drop_guard();
    let guard = match &config.lifecycle {
        Some(lc) => {
            let lc = Lifecycle::connect(lc)
                .await
                .map_err(|e| ProcessError::Runtime(e.to_string()))?;
            let (shutdown, drained) = (shutdown.clone(), drained.clone());
            Some(tokio::spawn(
                async move { lc.guard(shutdown, drained).await },
            ))
        }
        None => None,
    };
    let queue = backend::connect_queue(&config.queue_url, &opts)
        .await
        .map_err(|e| ProcessError::Runtime(format!("queue {}: {e}", redact(&config.queue_url))))?;
    // The queues are declared by `scanfleet queues init` or the coordinator's
    // publish, with the delivery limit; a worker never declares them. One that
    // starts first waits for its zone's queue.
    wait_for_zone(&queue.admin, &config.zone, &shutdown).await?;
    let store = backend::connect_store(&config.redis_url)
        .await
        .map_err(|e| ProcessError::Runtime(format!("redis {}: {e}", redact(&config.redis_url))))?;

    let worker = Arc::new(Worker::with_metrics(
        queue.queue.clone(),
        store,
        WorkerConfig {
            zone: config.zone.clone(),
            concurrency: config.concurrency.max(1),
            secret: Some(config.secret.clone()),
            scope: config.scope.clone(),
            lease: config.lease,
            grace: config.grace,
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
    let ran = worker
        .run(shutdown)
        .await
        .map_err(|e| ProcessError::Runtime(format!("queue: {e}")));
    drained.cancel();
    if let Some(guard) = guard {
        match guard.await {
            Ok(Ok(outcome)) => tracing::debug!(?outcome, "lifecycle guard done"),
            // Not fatal: the hook's timeout and default result end the wait.
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "lifecycle hook not completed; its timeout will end the wait")
            }
            Err(e) => tracing::warn!(error = %e, "lifecycle guard failed"),
        }
    }
    ran?;
    tracing::info!("worker drained; exiting");
    Ok(())
}

/// Wait until the job queue of `zone` exists, saying once what to run.
async fn wait_for_zone(
    admin: &Arc<dyn scanfleet_common::queue::QueueAdmin>,
    zone: &str,
    shutdown: &CancellationToken,
) -> Result<(), ProcessError> {
    let mut said = false;
    let mut backoff = Duration::from_millis(200);
    loop {
        match admin.zone_exists(zone).await {
            Ok(true) => return Ok(()),
            Ok(false) => {
                if !said {
                    tracing::warn!(
                        zone,
                        "the queue of this zone does not exist yet; waiting for `scanfleet queues init --zone {zone}` or a scan that declares it"
                    );
                    said = true;
                }
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "queue unavailable while checking the zone's queue; retrying");
            }
            Err(e) => {
                return Err(ProcessError::Runtime(format!(
                    "checking the queue of zone {zone}: {e}"
                )));
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use scanfleet_common::config::FileConfig;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: WorkerArgs,
    }

    fn config(argv: &[&str], env: &[(&str, &str)]) -> Result<ProcessConfig, ConfigError> {
        let cli = Cli::try_parse_from(std::iter::once("w").chain(argv.iter().copied())).unwrap();
        ProcessConfig::from_sources(&cli.args, &Sources::fixed(FileConfig::default(), None, env))
    }

    const SECRET: (&str, &str) = ("SCANFLEET_JOB_SECRET", "0123456789abcdef0123456789abcdef");
    const Q: [&str; 2] = ["--queue", "amqp://guest:guest@127.0.0.1:5672/%2f"];

    #[test]
    fn bad_settings_are_config_errors_that_name_their_input() {
        let e = |argv: &[&str], env: &[(&str, &str)]| config(argv, env).unwrap_err().to_string();
        assert!(e(&[], &[SECRET]).starts_with("no queue"));
        assert!(
            e(
                &[&Q[..], &["--redis", "redis://h:99999"]].concat(),
                &[SECRET]
            )
            .starts_with("--redis redis://h:99999: ")
        );
        assert!(e(&[&Q[..], &["--zone", "a b"]].concat(), &[SECRET]).starts_with("--zone \"a b\""));
        assert!(
            e(&Q, &[SECRET, ("SCANFLEET_ZONE", "a/b")])
                .starts_with("environment variable SCANFLEET_ZONE")
        );
        assert!(
            e(&[&Q[..], &["--lease-secs", "1"]].concat(), &[SECRET])
                .starts_with("--lease-secs 1: expected 3 to 43200")
        );
        assert!(
            e(&[&Q[..], &["--exclude", "10.0.0/8"]].concat(), &[SECRET])
                .starts_with("--exclude 10.0.0/8")
        );
        assert!(e(&Q, &[("SCANFLEET_JOB_SECRET", "x")]).contains("openssl rand -hex 32"));
        assert!(
            e(&Q, &[SECRET, ("SCANFLEET_CONCURRENCY", "0")])
                .starts_with("environment variable SCANFLEET_CONCURRENCY=\"0\"")
        );
    }

    #[test]
    fn lifecycle_hook_settings_come_from_flags_and_environment() {
        let c = config(&Q, &[SECRET]).unwrap();
        assert_eq!(c.lifecycle, None);
        let c = config(
            &Q,
            &[
                SECRET,
                ("SCANFLEET_LIFECYCLE_HOOK", "scanfleet-drain"),
                ("SCANFLEET_INSTANCE_ID", "i-0123456789abcdef0"),
            ],
        )
        .unwrap();
        let lc = c.lifecycle.unwrap();
        assert_eq!(lc.hook, "scanfleet-drain");
        assert_eq!(lc.instance_id.as_deref(), Some("i-0123456789abcdef0"));
        assert_eq!(
            (lc.poll, lc.heartbeat),
            (Duration::from_secs(5), Duration::from_secs(30))
        );
        let lc = config(
            &[
                &Q[..],
                &["--lifecycle-hook", "h", "--lifecycle-poll-secs", "2"],
            ]
            .concat(),
            &[SECRET],
        )
        .unwrap()
        .lifecycle
        .unwrap();
        assert_eq!((lc.instance_id, lc.poll), (None, Duration::from_secs(2)));

        let e = |argv: &[&str], env: &[(&str, &str)]| config(argv, env).unwrap_err().to_string();
        assert!(
            e(&[&Q[..], &["--lifecycle-hook", "a b"]].concat(), &[SECRET])
                .starts_with("--lifecycle-hook a b: a lifecycle hook name is")
        );
        assert!(
            e(&Q, &[SECRET, ("SCANFLEET_INSTANCE_ID", "web-1")])
                .starts_with("environment variable SCANFLEET_INSTANCE_ID")
        );
        assert!(
            e(
                &[
                    &Q[..],
                    &["--lifecycle-hook", "h", "--lifecycle-heartbeat-secs", "0"]
                ]
                .concat(),
                &[SECRET]
            )
            .starts_with("--lifecycle-heartbeat-secs 0: expected 1 to 3600")
        );
    }

    #[test]
    fn exclude_takes_single_addresses_like_the_coordinator() {
        let c = config(
            &[&Q[..], &["--exclude", "10.0.0.5,10.1.0.0/16"]].concat(),
            &[SECRET],
        )
        .unwrap();
        assert_eq!(c.scope.exclude_cidrs.len(), 2);
        assert_eq!(c.zone, "default");
        assert_eq!(c.redis_url, "redis://127.0.0.1:6379");
    }
}
