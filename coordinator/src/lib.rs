//! The scanfleet coordinator: turns what the user asked for into targets, applies
//! scope and rate policy, plans shards, publishes them, follows progress and
//! reports results. `scanfleet scan` without a broker runs the same pipeline in
//! one process with in-process workers (the embedded default).
//!
//! The modules in the order data flows through them: [`discovery`] (AWS) ->
//! [`estate`] (zones, reachability) -> [`plan`] (scope, shards) -> [`publish`] ->
//! [`follow`] (with [`reconcile`]) -> [`report`]. [`commands`] holds each command's glue over them;
//! [`config`] and [`cli`] read what the user asked for.

pub mod aws_cmd;
pub mod backends;
pub mod cli;
pub mod commands;
pub mod config;
pub mod discovery;
mod error;
pub mod estate;
pub mod export;
pub mod findings;
pub mod follow;
pub mod history;
pub mod metrics;
pub mod plan;
pub mod progress;
pub mod publish;
pub mod reconcile;
pub mod report;

pub use error::CliError;

/// Run a parsed command line to completion.
///
/// # Errors
/// [`CliError::Input`] for bad input (before any probe or connection),
/// [`CliError::Runtime`] otherwise.
pub async fn run(
    cli: cli::Cli,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), CliError> {
    let src = cli.config.sources()?;
    match cli.command {
        cli::Command::Scan(args) => {
            let mut settings = config::ScanSettings::from_args(&args, &src)?;
            if let config::Source::Aws(aws_args) = &settings.source {
                let (d, zones) = aws_cmd::discover(aws_args, &src).await?;
                aws_cmd::print_summary(&d, &zones, &settings.scope, &settings.rate);
                settings.assets = d.assets;
            }
            if settings.is_fleet() {
                commands::fleet::scan(settings, shutdown).await
            } else {
                commands::embedded::scan(settings, shutdown).await
            }
        }
        cli::Command::Status(args) => commands::status::status(args, &src).await,
        cli::Command::Results(args) => commands::status::results(args, &src).await,
        cli::Command::Queues(args) => commands::queues::queues(args, &src).await,
        cli::Command::Discover(args) => aws_cmd::discover_cmd(args, &src).await,
        cli::Command::Zones(args) => aws_cmd::zones_cmd(args, &src).await,
        cli::Command::Watch(args) => commands::watch::watch(*args, &src, shutdown).await,
        cli::Command::Findings(args) => commands::findings::findings(args, &src).await,
        cli::Command::Diff(args) => commands::diff::diff(args, &src).await,
        cli::Command::Export(args) => commands::export::export(*args, &src).await,
        cli::Command::History(args) => commands::findings::history(args, &src).await,
        cli::Command::Cancel(args) => commands::resume::cancel(args, &src).await,
        cli::Command::Resume(args) => commands::resume::resume(*args, &src, shutdown).await,
    }
}
