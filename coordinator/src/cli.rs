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
    /// Scan targets. Without --queue, workers run in this process (the embedded mode).
    Scan(Box<ScanArgs>),
    /// Progress of a fleet scan, from Redis.
    Status(StatusArgs),
    /// Results of a fleet scan, from Redis.
    Results(ResultsArgs),
    /// Broker topology: `queues init` creates the zones' queues and the dead-letter queue.
    Queues(QueuesArgs),
    /// Discover the private targets of AWS accounts (EC2 API) and write an inventory.
    Discover(DiscoverArgs),
    /// List the network zones (VPCs joined by active peering) of an estate.
    Zones(ZonesArgs),
    /// Follow EC2 state-change events (EventBridge -> SQS) and queue a scan of each newly
    /// running instance; rediscover the estate on a schedule and report new and gone assets.
    Watch(Box<WatchArgs>),
}

/// Arguments of `scanfleet watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The SQS queue URL EventBridge delivers EC2 instance state-change events to.
    #[arg(long, value_name = "URL")]
    pub events_queue: String,
    #[command(flatten)]
    pub aws_args: AwsArgs,
    /// Rediscover the whole estate this often, in seconds (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 6 * 3600)]
    pub rediscover_every_secs: u64,
    /// Queue the scans of new instances here (amqp://..., sqs://NAME); without it, only report.
    #[arg(long, value_name = "URL")]
    pub queue: Option<String>,
    /// Result store of the queued scans.
    #[arg(long, value_name = "URL", default_value = "redis://127.0.0.1:6379")]
    pub redis: String,
    /// Ports to scan on new instances (nmap syntax).
    #[arg(
        short = 'p',
        long = "ports",
        value_name = "PORTS",
        default_value = "1-65535",
        allow_hyphen_values = true
    )]
    pub ports: String,
}

/// Where and how to discover AWS assets; shared by `discover`, `zones` and `scan --discover aws`.
#[derive(Debug, Args, Clone, Default)]
pub struct AwsArgs {
    /// Every active account of the organization (Organizations ListAccounts), each through AssumeRole.
    #[arg(long, conflicts_with_all = ["accounts", "caller"])]
    pub org: bool,
    /// Accounts file: one 12-digit account id per line (optionally a name after it; # comments).
    #[arg(long, value_name = "FILE", conflicts_with = "caller")]
    pub accounts: Option<PathBuf>,
    /// Only the caller's own account, with the caller's credentials (the default without --org/--accounts).
    #[arg(long)]
    pub caller: bool,
    /// Role assumed in each account.
    #[arg(long, value_name = "NAME", default_value = "scanfleet-discovery")]
    pub role_name: String,
    /// External ID the roles' trust policies require.
    #[arg(long, value_name = "ID", env = "SCANFLEET_EXTERNAL_ID")]
    pub external_id: Option<String>,
    /// Regions to discover (default: each account's enabled regions).
    #[arg(long, value_name = "REGION", value_delimiter = ',')]
    pub regions: Vec<String>,
    /// Endpoint of every AWS API (an emulator such as moto); AWS_ENDPOINT_URL works too.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// AWS calls in flight at once.
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub aws_concurrency: usize,
}

/// Arguments of `scanfleet discover`.
#[derive(Debug, Args)]
pub struct DiscoverArgs {
    /// Discover through the AWS APIs (the only source today).
    #[arg(long, required = true)]
    pub aws: bool,
    #[command(flatten)]
    pub aws_args: AwsArgs,
    /// Write the inventory here (default: standard output).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// Arguments of `scanfleet zones`.
#[derive(Debug, Args)]
pub struct ZonesArgs {
    /// Zones of an inventory that `scanfleet discover` wrote.
    #[arg(short = 'i', long, value_name = "FILE", conflicts_with = "aws")]
    pub inventory: Option<PathBuf>,
    /// Discover through the AWS APIs and list the zones.
    #[arg(long, required_unless_present = "inventory")]
    pub aws: bool,
    #[command(flatten)]
    pub aws_args: AwsArgs,
}

/// Arguments of `scanfleet status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The scan id `scanfleet scan` printed.
    pub scan_id: String,
    /// Result store URL.
    #[arg(
        long,
        env = "SCANFLEET_REDIS",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis: String,
    /// Print JSON instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `scanfleet results`.
#[derive(Debug, Args)]
pub struct ResultsArgs {
    /// The scan id `scanfleet scan` printed.
    pub scan_id: String,
    /// Result store URL.
    #[arg(
        long,
        env = "SCANFLEET_REDIS",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis: String,
    #[arg(short = 'f', long, value_enum, default_value = "table")]
    pub format: Format,
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Report closed and filtered ports too.
    #[arg(long)]
    pub all_states: bool,
}

/// Arguments of `scanfleet queues`.
#[derive(Debug, Args)]
pub struct QueuesArgs {
    #[command(subcommand)]
    pub action: QueuesAction,
}

#[derive(Debug, Subcommand)]
pub enum QueuesAction {
    /// Create the job queues of the zones and the dead-letter queue (idempotent).
    Init {
        /// amqp://user:pass@host:port/vhost, sqs://NAME or an SQS queue URL.
        #[arg(long, env = "SCANFLEET_QUEUE")]
        queue: String,
        /// Zones to create queues for. Repeatable.
        #[arg(long = "zone", default_value = "default", value_delimiter = ',')]
        zones: Vec<String>,
    },
    /// Take messages off the dead-letter queue and print them with their reasons (JSON lines).
    DeadLetters {
        #[arg(long, env = "SCANFLEET_QUEUE")]
        queue: String,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        max: usize,
    },
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
    #[arg(short = 't', long = "target", value_name = "SPEC", value_delimiter = ',', required_unless_present_any = ["inventory", "discover"], conflicts_with = "inventory")]
    pub targets: Vec<String>,

    /// Inventory file: a JSON array of assets (`scanfleet discover` writes them).
    #[arg(short = 'i', long, value_name = "FILE", conflicts_with = "discover")]
    pub inventory: Option<PathBuf>,

    /// Discover the targets first: `aws` (AWS pre-authorized scope: only private IPs of
    /// running instances that discovery returned; never m1.small, t1.micro, t2.nano).
    #[arg(long, value_name = "SOURCE", value_parser = ["aws"], conflicts_with = "targets")]
    pub discover: Option<String>,

    #[command(flatten)]
    pub aws: AwsArgs,

    /// Only scan assets with this tag (`key=value` or `key`). Repeatable.
    #[arg(long, value_name = "TAG")]
    pub include_tag: Vec<String>,
    /// Never scan assets with this tag (`key=value` or `key`). Repeatable.
    #[arg(long, value_name = "TAG")]
    pub exclude_tag: Vec<String>,
    /// Never scan assets of this account. Repeatable.
    #[arg(long, value_name = "ACCOUNT", value_delimiter = ',')]
    pub exclude_account: Vec<String>,
    /// Never scan assets in this VPC. Repeatable.
    #[arg(long, value_name = "VPC", value_delimiter = ',')]
    pub exclude_vpc: Vec<String>,

    /// Ports in nmap syntax: 22,80,8000-8100; `-` for all 65535.
    #[arg(
        short = 'p',
        long = "ports",
        value_name = "PORTS",
        allow_hyphen_values = true,
        conflicts_with = "top_ports"
    )]
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

    /// Fleet mode: publish shards to this queue (amqp://..., sqs://NAME or an SQS URL)
    /// for `scanfleet-worker` processes, instead of running workers in-process.
    #[arg(long, env = "SCANFLEET_QUEUE", value_name = "URL")]
    pub queue: Option<String>,

    /// Fleet mode: the Redis result store workers write to.
    #[arg(long, env = "SCANFLEET_REDIS", value_name = "URL", requires = "queue")]
    pub redis: Option<String>,

    /// Fleet mode: publish, print the scan id and exit without waiting.
    #[arg(long, requires = "queue")]
    pub detach: bool,

    /// Serve Prometheus metrics (scan progress; in-process workers' counters) at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,

    /// Targets per shard at most (default 256; smaller shards spread over more workers).
    #[arg(long, value_name = "N")]
    pub shard_size: Option<usize>,

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
