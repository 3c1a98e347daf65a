//! `scanfleet`: parse the command line, run, map errors to exit codes
//! (0 success, 2 bad input or usage, 1 runtime failure).
//!
//! SIGINT (Ctrl-C) or SIGTERM asks the command to stop the way it stops best: an
//! embedded scan reports its partial results, a fleet scan stops following (the
//! workers go on), `watch` finishes its event and exits 0. A second signal exits
//! at once with 130, for a user who will not wait.

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

fn main() {
    let cli = scanfleet_coordinator::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SCANFLEET_LOG")
                // lapin logs a broker outage at ERROR; scanfleet says it once in
                // its own words (SCANFLEET_LOG=lapin=debug brings lapin back).
                .unwrap_or_else(|_| "error,lapin=off".into()),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("scanfleet: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(async {
        let shutdown = CancellationToken::new();
        let s = shutdown.clone();
        tokio::spawn(async move {
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return;
            };
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            s.cancel();
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            eprintln!("scanfleet: second signal: exiting now");
            std::process::exit(130);
        });
        match scanfleet_coordinator::run(cli, shutdown).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("scanfleet: error: {e}");
                e.exit_code()
            }
        }
    });
    std::process::exit(code);
}
