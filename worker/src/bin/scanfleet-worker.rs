//! `scanfleet-worker`: parse flags, run a worker process until SIGTERM or Ctrl-C,
//! drain, exit 0. Exit 2 for bad flags or configuration, 1 for runtime failure.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use ipnet::IpNet;
use scanfleet_common::scope::ScopePolicy;
use scanfleet_worker::process::{self, ProcessConfig, ProcessError};
use tokio_util::sync::CancellationToken;

/// A scanfleet worker: pulls signed shards from a queue, probes, writes results to Redis.
#[derive(Debug, Parser)]
#[command(name = "scanfleet-worker", version, about)]
struct Args {
    /// Job queue: amqp://user:pass@host:port/vhost, sqs://NAME or an SQS queue URL.
    #[arg(long, env = "SCANFLEET_QUEUE")]
    queue: String,
    /// Result store: redis://host:port.
    #[arg(
        long,
        env = "SCANFLEET_REDIS",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis: String,
    /// Network zone whose queue this worker serves.
    #[arg(long, env = "SCANFLEET_ZONE", default_value = "default")]
    zone: String,
    /// Shards worked at the same time.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, env = "SCANFLEET_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Lease of a shard in seconds (extended every third of it while the shard runs).
    #[arg(long, default_value_t = 60)]
    lease_secs: u64,
    /// On SIGTERM, seconds the shards in hand may take before they are released.
    #[arg(long, default_value_t = 30)]
    grace_secs: u64,
    /// Deliveries of a job before it is dead-lettered.
    #[arg(long, default_value_t = 5)]
    delivery_limit: u32,
    /// Never probe addresses in this block, whatever a job says. Repeatable.
    #[arg(long, value_delimiter = ',')]
    exclude: Vec<IpNet>,
    /// LOAD TESTS ONLY: send no probe and make results up (reason "synthetic"),
    /// to load the queue, Redis and the worker without a network.
    #[arg(long, hide = true)]
    synthetic_probes: bool,
}

fn main() {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SCANFLEET_LOG")
                // lapin logs a broker outage at ERROR; the worker itself says it at
                // WARN and recovers, and ERROR is kept for lost data.
                .unwrap_or_else(|_| "info,lapin=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let secret = std::env::var("SCANFLEET_JOB_SECRET")
        .unwrap_or_default()
        .into_bytes();
    if args.lease_secs < 3 || args.lease_secs > 12 * 3600 {
        eprintln!(
            "scanfleet-worker: error: --lease-secs {}: expected 3 to 43200",
            args.lease_secs
        );
        std::process::exit(2);
    }
    let config = ProcessConfig {
        queue_url: args.queue,
        redis_url: args.redis,
        zone: args.zone,
        concurrency: args.concurrency,
        metrics_addr: args.metrics_addr,
        secret,
        lease: Duration::from_secs(args.lease_secs),
        grace: Duration::from_secs(args.grace_secs),
        delivery_limit: args.delivery_limit,
        scope: ScopePolicy {
            exclude_cidrs: args.exclude,
            ..ScopePolicy::default()
        },
        synthetic_probes: args.synthetic_probes,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("scanfleet-worker: error: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(async {
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        tokio::spawn(async move {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(t) => t,
                    Err(_) => return,
                };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            tracing::info!("shutdown requested: draining");
            s.cancel();
        });
        match process::run(config, shutdown).await {
            Ok(()) => 0,
            Err(e @ ProcessError::Config(_)) => {
                eprintln!("scanfleet-worker: error: {e}");
                2
            }
            Err(e) => {
                eprintln!("scanfleet-worker: error: {e}");
                1
            }
        }
    });
    std::process::exit(code);
}
