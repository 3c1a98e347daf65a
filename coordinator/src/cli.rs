//! The command line of `scanfleet`. Flags follow nmap where nmap has one. Every
//! setting can also come from the config file (`--config`, any command) and most
//! from the environment; [`crate::config`] layers and validates them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use scanfleet_common::ScanMode;
use scanfleet_common::config::args::{
    ConfigArg, DeliveryLimitArg, ExcludeArg, MetricsArg, QueueArg, RedisArg,
};

/// scanfleet: a distributed network scan fleet for AWS estates.
#[derive(Debug, Parser)]
#[command(name = "scanfleet", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub config: ConfigArg,
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
    /// Findings of a recorded scan, ranked by adjusted score, with the reasons.
    Findings(FindingsArgs),
    /// New, gone and changed ports and services between two recorded scans.
    Diff(DiffArgs),
    /// Write a recorded scan's findings in an export format, import them into
    /// Security Hub, or send them to EventBridge.
    Export(Box<ExportArgs>),
    /// The recorded scans, oldest first.
    History(HistoryArgs),
    /// Cancel a fleet scan: workers refuse its shards from now on (nothing more is
    /// probed) and drain them from the queues; `resume` takes it up again.
    Cancel(CancelArgs),
    /// Publish again the shards of a fleet scan that never finished (no outcome, or
    /// failed: dead-lettered, cancelled) and follow it to the end, as `scan` does.
    Resume(Box<ResumeArgs>),
}

/// Arguments of `scanfleet cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The scan id `scanfleet scan` printed.
    pub scan_id: String,
    #[command(flatten)]
    pub redis: RedisArg,
}

/// Arguments of `scanfleet resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The scan id `scanfleet scan` printed.
    pub scan_id: String,
    /// Where the scan was published and where its results are.
    #[command(flatten)]
    pub publish: PublishArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Publish and return without following.
    #[arg(long)]
    pub detach: bool,
    /// Seconds to follow before ending with the unfinished shards listed (default:
    /// from the republished shards, as `scan`).
    #[arg(long, value_name = "SECS")]
    pub deadline: Option<u64>,
    /// Progress bar on stderr: auto (when stderr is a terminal), always or never.
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    pub progress: ProgressWhen,
    /// Report closed and filtered ports too, not only open ones.
    #[arg(long)]
    pub all_states: bool,
}

/// Where the scan history is: `--redis URL`, else the state directory.
#[derive(Debug, Args, Clone, Default)]
pub struct HistoryStoreArgs {
    /// The history's directory when there is no --redis [env: SCANFLEET_STATE_DIR;
    /// default $XDG_STATE_HOME/scanfleet, ~/.local/state/scanfleet, or
    /// /var/lib/scanfleet without a home].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

/// How findings are judged.
#[derive(Debug, Args, Clone, Default)]
pub struct JudgeArgs {
    /// Severity rules instead of the built-in data/findings-rules.toml.
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Suppressions (see data/suppressions.example.toml): matching findings are
    /// kept and marked suppressed.
    #[arg(long, value_name = "FILE")]
    pub suppressions: Option<PathBuf>,
}

/// Arguments of `scanfleet findings`.
#[derive(Debug, Args)]
pub struct FindingsArgs {
    /// The scan id `scanfleet scan` printed (`scanfleet history` lists them).
    pub scan_id: String,
    /// Only findings at or above this severity (informational, low, medium, high, critical).
    #[arg(long, value_name = "S")]
    pub min_severity: Option<crate::findings::Severity>,
    /// Output format: table (sorted by score), jsonl, csv (streamed per asset), json.
    #[arg(short = 'f', long, value_enum, default_value = "table")]
    pub format: crate::findings::output::FindingsFormat,
    #[command(flatten)]
    pub judge: JudgeArgs,
    #[command(flatten)]
    pub store: HistoryStoreArgs,
    #[command(flatten)]
    pub redis: RedisArg,
}

/// Output formats of `scanfleet diff` and `scanfleet history`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TableOrJson {
    Table,
    Json,
}

/// Arguments of `scanfleet diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The older scan.
    pub old_scan: String,
    /// The newer scan.
    pub new_scan: String,
    #[arg(short = 'f', long, value_enum, default_value = "table")]
    pub format: TableOrJson,
    #[command(flatten)]
    pub store: HistoryStoreArgs,
    #[command(flatten)]
    pub redis: RedisArg,
}

/// Arguments of `scanfleet history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[arg(short = 'f', long, value_enum, default_value = "table")]
    pub format: TableOrJson,
    #[command(flatten)]
    pub store: HistoryStoreArgs,
    #[command(flatten)]
    pub redis: RedisArg,
}

/// Arguments of `scanfleet export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The scan id `scanfleet scan` printed.
    pub scan_id: String,
    /// Export format: asff, inspector, nmap-xml, html, jsonl or csv.
    #[arg(long = "to", value_name = "FORMAT")]
    pub to: Option<crate::export::Format>,
    /// Write the export to FILE instead of standard output (checked before anything is read).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Import the findings into AWS Security Hub (BatchImportFindings).
    #[arg(long)]
    pub import: bool,
    /// Send findings at or above this severity to EventBridge (PutEvents).
    #[arg(long, value_name = "S")]
    pub eventbridge_min_severity: Option<crate::findings::Severity>,
    /// EventBridge bus (default: default).
    #[arg(long, value_name = "NAME")]
    pub event_bus: Option<String>,
    /// AWS region of Security Hub and EventBridge (default: the AWS configuration's).
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// Endpoint of the AWS APIs (an emulator such as moto); AWS_ENDPOINT_URL works too.
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Import each member account's findings into that account's own Security Hub
    /// through this role (the discovery role's name) instead of centrally into the
    /// account scanfleet runs as (the default: the delegated administrator).
    #[arg(long, value_name = "ROLE_NAME")]
    pub per_member_role: Option<String>,
    /// External ID for --per-member-role.
    #[arg(long, value_name = "ID", requires = "per_member_role")]
    pub external_id: Option<String>,
    /// Which earlier Security Hub findings the import archives when this scan no
    /// longer has them: scanned (of the assets this scan probed), all, or none.
    #[arg(long, value_name = "SCOPE", default_value = "scanned", value_parser = ["scanned", "all", "none"])]
    pub archive: String,
    #[command(flatten)]
    pub judge: JudgeArgs,
    #[command(flatten)]
    pub store: HistoryStoreArgs,
    #[command(flatten)]
    pub redis: RedisArg,
}

/// What to probe and how: shared by `scan` and `watch`, so that a watched
/// instance is scanned exactly as `scan` would.
#[derive(Debug, Args, Clone, Default)]
pub struct ProbeArgs {
    /// Ports in nmap syntax: 22,80,8000-8100; `-` for all 65535 [config scan.ports].
    #[arg(
        short = 'p',
        long = "ports",
        value_name = "PORTS",
        allow_hyphen_values = true,
        conflicts_with = "top_ports"
    )]
    pub ports: Option<String>,
    /// The N most common ports from scanfleet's frequency list (default 100) [config scan.top_ports].
    #[arg(long, value_name = "N")]
    pub top_ports: Option<usize>,
    /// Global probe rate cap in packets (or connections) per second
    /// [env: SCANFLEET_RATE_PPS; config scan.rate_pps].
    #[arg(long = "rate", value_name = "PPS")]
    pub rate_pps: Option<u32>,
    /// Probe engine: syn (raw sockets), connect, or auto (syn when allowed)
    /// [env: SCANFLEET_MODE; config scan.mode].
    #[arg(long, value_name = "MODE")]
    pub mode: Option<ScanMode>,
    /// Wait for one probe's answer, in milliseconds [config scan.timeout_ms].
    #[arg(long, value_name = "MS")]
    pub timeout_ms: Option<u64>,
    /// Extra attempts for unanswered probes [config scan.retries].
    #[arg(long, value_name = "N")]
    pub retries: Option<u8>,
    /// Report closed and filtered ports too [config scan.all_states].
    #[arg(long)]
    pub all_states: bool,
    /// Skip host discovery and scan every target (nmap's -Pn) [config scan.host_discovery = false].
    #[arg(long = "no-ping", visible_alias = "Pn")]
    pub no_ping: bool,
    /// Do not identify services on open ports [config scan.service_detection = false].
    #[arg(long)]
    pub no_service_detection: bool,
    /// Scan types as nmap spells them: -sU (UDP), -sS (TCP SYN, as --mode syn),
    /// -sT (TCP connect, as --mode connect); repeat or combine (-sS -sU, -sSU).
    /// As in nmap, -sU alone scans UDP only; name a TCP type, --mode,
    /// --top-ports or T: ports to scan TCP too.
    #[arg(short = 's', value_name = "TYPE")]
    pub scan_type: Vec<String>,
    /// UDP scan, the same as -sU [config scan.udp].
    #[arg(long)]
    pub udp: bool,
    /// UDP ports in nmap syntax (53,161,500-510); implies -sU. `-p U:53,T:22`
    /// works too [config scan.udp_ports].
    #[arg(
        long = "udp-ports",
        value_name = "PORTS",
        allow_hyphen_values = true,
        conflicts_with = "top_udp_ports"
    )]
    pub udp_ports: Option<String>,
    /// The N most common UDP ports from scanfleet's UDP frequency list (default:
    /// all of it); implies -sU [config scan.top_udp_ports].
    #[arg(long, value_name = "N")]
    pub top_udp_ports: Option<usize>,
}

/// What may never be probed, besides what AWS prohibits.
#[derive(Debug, Args, Clone, Default)]
pub struct ScopeArgs {
    #[command(flatten)]
    pub exclude: ExcludeArg,
    /// Refuse public addresses [config scope.private_only].
    #[arg(long)]
    pub private_only: bool,
    /// Allow targets of a non-unicast class that scope refuses by default:
    /// multicast, broadcast, unspecified, link-local. Repeatable, or
    /// comma-separated [config scope.allow_address_classes].
    #[arg(
        long = "allow-address-class",
        value_name = "CLASS",
        value_delimiter = ','
    )]
    pub allow_address_class: Vec<scanfleet_common::address::AddressClass>,
    /// Only scan assets with this tag (`key=value` or `key`). Repeatable [config scope.include_tags].
    #[arg(long, value_name = "TAG")]
    pub include_tag: Vec<String>,
    /// Never scan assets with this tag (`key=value` or `key`). Repeatable [config scope.exclude_tags].
    #[arg(long, value_name = "TAG")]
    pub exclude_tag: Vec<String>,
    /// Never scan assets of this account. Repeatable [config scope.exclude_accounts].
    #[arg(long, value_name = "ACCOUNT", value_delimiter = ',')]
    pub exclude_account: Vec<String>,
    /// Never scan assets in this VPC. Repeatable [config scope.exclude_vpcs].
    #[arg(long, value_name = "VPC", value_delimiter = ',')]
    pub exclude_vpc: Vec<String>,
}

/// Where results go.
#[derive(Debug, Args, Clone, Default)]
pub struct OutputArgs {
    /// Output format [config scan.format].
    #[arg(short = 'f', long, value_enum)]
    pub format: Option<Format>,
    /// Write results to FILE instead of standard output. An existing file is
    /// replaced, as nmap's -oN does; the path is checked before the first probe.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// How a scan is published to a fleet (the embedded mode ignores these but --metrics-addr).
#[derive(Debug, Args, Clone, Default)]
pub struct PublishArgs {
    #[command(flatten)]
    pub queue: QueueArg,
    #[command(flatten)]
    pub redis: RedisArg,
    #[command(flatten)]
    pub delivery_limit: DeliveryLimitArg,
    /// How long a published shard stays valid; workers refuse it as stale after
    /// that [config fleet.job_ttl_secs; default 86400].
    #[arg(long, value_name = "SECS")]
    pub job_ttl_secs: Option<u64>,
}

/// Arguments of `scanfleet watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The SQS queue URL EventBridge delivers EC2 instance state-change events to
    /// [config watch.events_queue].
    #[arg(long, value_name = "URL")]
    pub events_queue: Option<String>,
    #[command(flatten)]
    pub aws_args: AwsArgs,
    /// Rediscover the whole estate this often, in seconds (0: never; default 21600)
    /// [config watch.rediscover_every_secs].
    #[arg(long, value_name = "SECS")]
    pub rediscover_every_secs: Option<u64>,
    /// Where the scans of new instances are queued; without a queue, only report.
    #[command(flatten)]
    pub publish: PublishArgs,
    /// Ports and probe settings of those scans: as `scan`, default all 65535 ports.
    #[command(flatten)]
    pub probe: ProbeArgs,
    #[command(flatten)]
    pub scope: ScopeArgs,
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
    /// Role assumed in each account (default scanfleet-discovery) [config aws.role_name].
    #[arg(long, value_name = "NAME")]
    pub role_name: Option<String>,
    /// External ID the roles' trust policies require [env: SCANFLEET_EXTERNAL_ID; config aws.external_id].
    #[arg(long, value_name = "ID")]
    pub external_id: Option<String>,
    /// Regions to discover (default: each account's enabled regions) [config aws.regions].
    #[arg(long, value_name = "REGION", value_delimiter = ',')]
    pub regions: Vec<String>,
    /// Endpoint of every AWS API (an emulator such as moto); AWS_ENDPOINT_URL works too
    /// [config aws.endpoint_url].
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// AWS calls in flight at once (default 16) [config aws.concurrency].
    #[arg(long, value_name = "N")]
    pub aws_concurrency: Option<usize>,
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
    #[command(flatten)]
    pub redis: RedisArg,
    /// Print JSON instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `scanfleet results`.
#[derive(Debug, Args)]
pub struct ResultsArgs {
    /// The scan id `scanfleet scan` printed.
    pub scan_id: String,
    #[command(flatten)]
    pub redis: RedisArg,
    #[command(flatten)]
    pub output: OutputArgs,
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
    /// Create the job queues of the zones and the dead-letter queue (idempotent),
    /// with the delivery limit the broker enforces.
    Init {
        #[command(flatten)]
        queue: QueueArg,
        #[command(flatten)]
        delivery_limit: DeliveryLimitArg,
        /// Zones to create queues for. Repeatable, or comma-separated.
        #[arg(long = "zone", default_value = scanfleet_common::DEFAULT_ZONE, value_delimiter = ',')]
        zones: Vec<String>,
    },
    /// Take messages off the dead-letter queue and print them with their reasons (JSON lines).
    DeadLetters {
        #[command(flatten)]
        queue: QueueArg,
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

    #[command(flatten)]
    pub scope: ScopeArgs,

    #[command(flatten)]
    pub probe: ProbeArgs,

    #[command(flatten)]
    pub output: OutputArgs,

    /// Workers: in-process ones in the embedded mode; with --queue, the fleet workers
    /// expected to share the scan, among which a scan bound by the global --rate cap is
    /// split by ports [env: SCANFLEET_WORKERS; config scan.workers; default 2].
    #[arg(short = 'w', long, value_name = "N")]
    pub workers: Option<usize>,

    /// Largest number of addresses the target specs may expand to [config scan.max_targets].
    #[arg(long, value_name = "N")]
    pub max_targets: Option<u64>,

    /// Fleet mode: publish shards to `--queue` for `scanfleet-worker` processes,
    /// instead of running workers in-process.
    #[command(flatten)]
    pub publish: PublishArgs,

    /// Fleet mode: publish, print the scan id and exit without waiting.
    #[arg(long)]
    pub detach: bool,

    /// Fleet mode: stop following after SECS and end with the unfinished shards
    /// listed (exit 1); default twice the plan's one-worker estimate plus 10 min,
    /// at least 30 min [env SCANFLEET_DEADLINE_SECS; config scan.deadline_secs].
    #[arg(long, value_name = "SECS")]
    pub deadline: Option<u64>,

    #[command(flatten)]
    pub metrics: MetricsArg,

    /// Targets per shard at most (default 256; smaller shards spread over more workers)
    /// [config scan.shard_size].
    #[arg(long, value_name = "N")]
    pub shard_size: Option<usize>,

    /// Progress bar on stderr: auto (when stderr is a terminal), always or never.
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    pub progress: ProgressWhen,

    /// At the end of the scan, write an export: FORMAT=FILE with FORMAT one of asff,
    /// inspector, nmap-xml, html, jsonl, csv. Repeatable; each FILE is checked
    /// writable before the first probe.
    #[arg(long = "export", value_name = "FORMAT=FILE")]
    pub exports: Vec<String>,

    #[command(flatten)]
    pub judge: JudgeArgs,

    /// Where the scan's history is recorded (a fleet scan: in its Redis).
    #[command(flatten)]
    pub history: HistoryStoreArgs,
}

/// When to draw the progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ProgressWhen {
    #[default]
    Auto,
    Always,
    Never,
}
