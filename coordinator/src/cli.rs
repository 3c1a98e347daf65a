//! The command line of `scanfleet`. Flags follow nmap where nmap has one.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use scanfleet_common::ScanMode;

/// scanfleet: a distributed network scan fleet for AWS estates.
#[derive(Debug, Parser)]
#[command(name = "scanfleet", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Scan targets. Without a broker, workers run in this process (the embedded mode).
    Scan(ScanArgs),
}

/// Output formats of results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Aligned columns for people, like nmap's port table.
    Table,
    /// One JSON object per port, one per line.
    Jsonl,
    /// One JSON document: scan summary, skipped assets and results.
    Json,
    /// Comma-separated, one row per port, with a header.
    Csv,
}

/// Arguments of `scanfleet scan`.
#[derive(Debug, Args, Default)]
pub struct ScanArgs {
    /// Target: IP, CIDR (10.0.0.0/24) or range (10.0.0.1-20). Repeat or separate with commas.
    #[arg(short = 't', long = "target", value_name = "SPEC", value_delimiter = ',', required_unless_present = "inventory", conflicts_with = "inventory")]
    pub targets: Vec<String>,

    /// Inventory file: a JSON array of assets (`scanfleet discover` writes them).
    #[arg(short = 'i', long, value_name = "FILE")]
    pub inventory: Option<PathBuf>,

    /// Ports in nmap syntax: 22,80,8000-8100; `-` for all 65535.
    #[arg(short = 'p', long = "ports", value_name = "PORTS", allow_hyphen_values = true, conflicts_with = "top_ports")]
    pub ports: Option<String>,

    /// The N most common ports from scanfleet's frequency list (default 100).
    #[arg(long, value_name = "N")]
    pub top_ports: Option<usize>,

    /// Output format.
    #[arg(short = 'f', long, value_enum)]
    pub format: Option<Format>,

    /// Write results to FILE instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// In-process workers (embedded mode).
    #[arg(short = 'w', long, value_name = "N")]
    pub workers: Option<usize>,

    /// Global probe rate cap in packets (or connections) per second.
    #[arg(long = "rate", value_name = "PPS")]
    pub rate_pps: Option<u32>,

    /// Probe engine: syn (raw sockets), connect, or auto (syn when allowed).
    #[arg(long, value_name = "MODE")]
    pub mode: Option<ScanMode>,

    /// Report closed and filtered ports too.
    #[arg(long)]
    pub all_states: bool,

    /// Skip host discovery and scan every target (nmap's -Pn).
    #[arg(long = "no-ping", visible_alias = "Pn")]
    pub no_ping: bool,

    /// Do not identify services on open ports.
    #[arg(long)]
    pub no_service_detection: bool,

    /// Wait for one probe's answer, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,

    /// Extra attempts for unanswered probes.
    #[arg(long, value_name = "N")]
    pub retries: Option<u8>,

    /// Never scan addresses in this block. Repeatable.
    #[arg(long = "exclude", value_name = "CIDR", value_delimiter = ',')]
    pub exclude: Vec<String>,

    /// Refuse public addresses.
    #[arg(long)]
    pub private_only: bool,

    /// Largest number of addresses the target specs may expand to.
    #[arg(long, value_name = "N")]
    pub max_targets: Option<u64>,

    /// TOML config file; flags override it, it overrides the defaults.
    #[arg(short = 'c', long, value_name = "FILE", env = "SCANFLEET_CONFIG")]
    pub config: Option<PathBuf>,

    /// Progress bar on stderr: auto (when stderr is a terminal), always or never.
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    pub progress: ProgressWhen,
}

/// When to draw the progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ProgressWhen {
    #[default]
    Auto,
    Always,
    Never,
}
