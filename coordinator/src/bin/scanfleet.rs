//! `scanfleet`: parse the command line, run, map errors to exit codes
//! (0 success, 2 bad input or usage, 1 runtime failure).

use clap::Parser;
use tokio_util::sync::CancellationToken;

fn main() {
    let cli = scanfleet_coordinator::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SCANFLEET_LOG")
                .unwrap_or_else(|_| "error".into()),
        )
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
            if tokio::signal::ctrl_c().await.is_ok() {
                s.cancel();
            }
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
