//! `scanfleet-worker`: parse flags, run a worker process until SIGTERM or Ctrl-C
//! (or, with `--lifecycle-hook`, its autoscaling group's terminating notice),
//! drain, exit 0. Exit 2 for bad flags or configuration (found before anything
//! connects), 1 for runtime failure. A second signal exits at once with 130.

use clap::Parser;
use scanfleet_worker::process::{self, ProcessConfig, ProcessError, WorkerArgs};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// A scanfleet worker: pulls signed shards from a queue, probes, writes results to Redis.
#[derive(Debug, Parser)]
#[command(name = "scanfleet-worker", version, about)]
struct Cli {
    #[command(flatten)]
    args: WorkerArgs,
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SCANFLEET_LOG")
                // lapin logs a broker outage at ERROR; the worker itself says it at
                // WARN and recovers, and ERROR is kept for lost data.
                .unwrap_or_else(|_| "info,lapin=off".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let config = match ProcessConfig::from_args(&cli.args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("scanfleet-worker: error: {e}");
            std::process::exit(2);
        }
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
            let (Ok(mut term), Ok(mut int)) =
                (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
            else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("shutdown requested: draining (a second signal exits at once)");
            s.cancel();
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::warn!("second signal: exiting without draining; shards in hand return to the queue when their leases lapse");
            std::process::exit(130);
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
