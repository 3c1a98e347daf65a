//! The scanfleet coordinator: turns what the user asked for into targets, applies
//! scope and rate policy, plans shards, publishes them, follows progress and
//! reports results. `scanfleet scan` without a broker runs the same pipeline in
//! one process with in-process workers (the embedded default).

pub mod aws_cmd;
pub mod cli;
pub mod config;
pub mod discovery;
pub mod embedded;
pub mod fleet;
pub mod metrics;
pub mod plan;
pub mod progress;
pub mod reachability;
pub mod report;
pub mod zones;

use std::fmt;

/// Errors of the `scanfleet` command, split by exit status.
#[derive(Debug)]
pub enum CliError {
    /// Bad input or usage: exit 2, nothing was sent.
    Input(String),
    /// The scan ran into trouble: exit 1.
    Runtime(anyhow::Error),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Input(_) => 2,
            CliError::Runtime(_) => 1,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Input(m) => f.write_str(m),
            CliError::Runtime(e) => write!(f, "{e:#}"),
        }
    }
}

impl From<anyhow::Error> for CliError {
    fn from(e: anyhow::Error) -> Self {
        CliError::Runtime(e)
    }
}

/// Run a parsed command line to completion.
///
/// # Errors
/// [`CliError::Input`] for bad input (before any probe), [`CliError::Runtime`] otherwise.
pub async fn run(
    cli: cli::Cli,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), CliError> {
    match cli.command {
        cli::Command::Scan(args) => {
            let mut settings = config::ScanSettings::from_args(&args)?;
            if let config::Source::Aws(aws_args) = &settings.source {
                let (d, zones) = aws_cmd::discover(aws_args).await?;
                aws_cmd::print_summary(&d, &zones, &settings.scope, &settings.rate);
                settings.assets = d.assets;
            }
            match &settings.fleet {
                Some(_) => fleet::scan(settings, shutdown).await,
                None => embedded::scan(settings, shutdown).await,
            }
        }
        cli::Command::Status(args) => fleet::status(args).await,
        cli::Command::Results(args) => fleet::results(args).await,
        cli::Command::Queues(args) => fleet::queues(args).await,
        cli::Command::Discover(args) => aws_cmd::discover_cmd(args).await,
        cli::Command::Zones(args) => aws_cmd::zones_cmd(args).await,
        cli::Command::Watch(args) => aws_cmd::watch_cmd(*args, shutdown).await,
    }
}
