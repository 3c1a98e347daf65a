//! One typed configuration per command, layered: defaults, then the TOML file
//! (`--config`), then the environment (`SCANFLEET_*`), then flags
//! ([`scanfleet_common::config`]). Everything is validated here, before the first
//! connection and the first probe, with messages that name the flag, variable or
//! file key the bad value came from.

pub mod history;
pub mod probe;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use scanfleet_common::config::args::{MetricsArg, job_secret};
use scanfleet_common::config::{Sources, in_range};
use scanfleet_common::rate::RatePolicy;
use scanfleet_common::scope::ScopePolicy;
use scanfleet_common::targets::{self, DEFAULT_MAX_TARGETS};
use scanfleet_common::{Asset, PortSpec, ProbeProfile, inventory};

use crate::cli::{Format, OutputArgs, ProgressWhen, PublishArgs, ScanArgs};
use crate::error::CliError;
use crate::report::Output;
use probe::DefaultPorts;

/// How long a published shard stays valid when nobody says: long enough for a
/// fleet to work through a large backlog, short enough that a forgotten queue
/// does not scan a changed estate weeks later.
pub const DEFAULT_JOB_TTL: Duration = Duration::from_secs(24 * 3600);

/// Largest worker count in one process.
pub const MAX_WORKERS: usize = 64;

/// Where the targets come from.
#[derive(Debug, Clone)]
pub enum Source {
    Specs(Vec<String>),
    Inventory(PathBuf),
    /// Assets come from AWS discovery at scan time (`--discover aws`).
    Aws(crate::cli::AwsArgs),
}

/// A validated scan request.
#[derive(Debug, Clone)]
pub struct ScanSettings {
    pub assets: Vec<Asset>,
    pub source: Source,
    pub ports: PortSpec,
    pub profile: ProbeProfile,
    pub scope: ScopePolicy,
    pub rate: RatePolicy,
    /// In-process workers (embedded mode).
    pub workers: usize,
    pub format: Format,
    /// Where the report goes; checked writable before the first probe.
    pub output: Output,
    pub progress: ProgressWhen,
    /// Targets per shard at most.
    pub shard_size: usize,
    /// Where to serve `/metrics` while the scan runs.
    pub metrics_addr: Option<SocketAddr>,
    /// Fleet mode: where to publish and where results are.
    pub fleet: Option<FleetSettings>,
    /// Fleet mode: publish and return without following.
    pub detach: bool,
    /// How long a published shard stays valid.
    pub job_ttl: Duration,
    /// Fleet mode: how long to follow before giving up on unfinished shards;
    /// `None`: from the plan ([`crate::plan::default_deadline`]).
    pub deadline: Option<Duration>,
    /// Where the scan's history is recorded: a fleet scan's Redis, `--redis`, or
    /// the state directory.
    pub history: crate::history::Location,
    /// The rules and suppressions of the findings `--export` writes.
    pub judge: crate::findings::Judge,
    /// `--export FORMAT=FILE`, each file checked writable.
    pub exports: Vec<history::ExportTo>,
}

/// Where a fleet scan goes and how its shards are published.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    pub queue_url: String,
    pub redis_url: String,
    /// `SCANFLEET_JOB_SECRET`, which the workers share.
    pub secret: Vec<u8>,
    /// Declared with the zones' queues.
    pub delivery_limit: u32,
}

/// Fleet publishing settings, or `None` without a queue (embedded mode, or
/// `watch` that only reports).
///
/// # Errors
/// [`CliError::Input`] for a bad URL, delivery limit, TTL or secret.
pub fn fleet(args: &PublishArgs, src: &Sources) -> Result<Option<FleetSettings>, CliError> {
    let Some(queue) = args.queue.resolve(src)? else {
        if args.redis.given(src)? {
            return Err(CliError::Input(
                "--redis is the fleet's result store: it needs --queue (without a queue, the scan runs embedded)".into(),
            ));
        }
        return Ok(None);
    };
    let redis = args.redis.resolve(src)?;
    let delivery_limit = args.delivery_limit.resolve(src)?;
    Ok(Some(FleetSettings {
        queue_url: queue.value,
        redis_url: redis.value,
        secret: job_secret(src)?,
        delivery_limit,
    }))
}

/// How long a published shard stays valid, in every mode.
///
/// # Errors
/// [`CliError::Input`] for a TTL under a minute or over 30 days.
pub fn job_ttl(args: &PublishArgs, src: &Sources) -> Result<Duration, CliError> {
    let ttl = src.pick_or(
        ("--job-ttl-secs", args.job_ttl_secs),
        Some("SCANFLEET_JOB_TTL_SECS"),
        ("fleet.job_ttl_secs", src.file.fleet.job_ttl_secs),
        DEFAULT_JOB_TTL.as_secs(),
    )?;
    Ok(Duration::from_secs(in_range(&ttl, 60, 30 * 24 * 3600)?))
}

/// The metrics listen address of a command.
///
/// # Errors
/// [`CliError::Input`] naming a bad address.
pub fn metrics_addr(args: &MetricsArg, src: &Sources) -> Result<Option<SocketAddr>, CliError> {
    Ok(args.resolve(src)?)
}

/// Output format and file from flags and the config file.
///
/// # Errors
/// [`CliError::Input`] for an unknown format or an output path that cannot be written.
pub fn output(args: &OutputArgs, src: &Sources) -> Result<(Format, Output), CliError> {
    let format = match (args.format, &src.file.scan.format) {
        (Some(f), _) => f,
        (None, Some(name)) => <Format as clap::ValueEnum>::from_str(name, true).map_err(|_| {
            CliError::Input(
                scanfleet_common::config::Setting {
                    value: name.clone(),
                    origin: src.file_origin("scan.format"),
                }
                .invalid("expected table, jsonl, json or csv")
                .to_string(),
            )
        })?,
        (None, None) => Format::Table,
    };
    Ok((format, Output::check(args.output.as_deref())?))
}

impl ScanSettings {
    /// Layer defaults, file, environment and flags; validate everything; load the
    /// targets; check that the output can be written. Nothing is sent or
    /// connected by this function.
    ///
    /// # Errors
    /// [`CliError::Input`] naming the flag, variable, key, file or spec that is wrong.
    pub fn from_args(args: &ScanArgs, src: &Sources) -> Result<ScanSettings, CliError> {
        let f = &src.file.scan;
        let workers = src.pick_or(
            ("--workers", args.workers),
            Some("SCANFLEET_WORKERS"),
            ("scan.workers", f.workers),
            2,
        )?;
        let workers = in_range(&workers, 1, MAX_WORKERS)?;
        let (ports, mut profile) = probe::probe(&args.probe, src, DefaultPorts::Top100)?;
        let scope = probe::scope(&args.scope, src, args.discover.is_some())?;
        // The signed jobs carry the classes the user allowed: workers refuse the rest.
        profile.allow_address_classes = scope.allow_address_classes.clone();
        let rate = probe::rate(src)?;
        // Each target starts at its budget: that share of its ceiling.
        profile.pacing.start_percent = rate.start_percent();
        let max_targets = src.pick_or(
            ("--max-targets", args.max_targets),
            None,
            ("scan.max_targets", f.max_targets),
            DEFAULT_MAX_TARGETS,
        )?;
        let max_targets = in_range(&max_targets, 1, u64::MAX)?;
        let shard_size = src.pick_or(
            ("--shard-size", args.shard_size),
            None,
            ("scan.shard_size", f.shard_size),
            256,
        )?;
        let shard_size = in_range(&shard_size, 1, 1 << 20)?;
        // `--redis` without `--queue`: an embedded scan whose history goes to Redis.
        let redis_only =
            args.publish.queue.resolve(src)?.is_none() && args.publish.redis.given(src)?;
        let fleet = if redis_only {
            None
        } else {
            fleet(&args.publish, src)?
        };
        let history_at = match &fleet {
            Some(f) if args.history.state_dir.is_none() => {
                crate::history::Location::Redis(f.redis_url.clone())
            }
            Some(_) => {
                return Err(CliError::Input(
                    "--state-dir: a fleet scan records its history in its Redis (--redis), not in a state directory".into(),
                ));
            }
            None => history::location(&args.history, &args.publish.redis, src)?,
        };
        let judge = history::judge(&args.judge)?;
        let exports = history::exports(&args.exports)?;
        let job_ttl = job_ttl(&args.publish, src)?;
        if fleet.is_none() && args.detach {
            return Err(CliError::Input(
                "--detach publishes to a fleet and returns: it needs --queue".into(),
            ));
        }
        let metrics_addr = metrics_addr(&args.metrics, src)?;
        let (format, output) = output(&args.output, src)?;
        let deadline = src
            .pick(
                ("--deadline", args.deadline),
                Some("SCANFLEET_DEADLINE_SECS"),
                ("scan.deadline_secs", f.deadline_secs),
                None,
            )?
            .map(|d| in_range(&d, 1, 30 * 24 * 3600).map(Duration::from_secs))
            .transpose()?;

        let (assets, source) = match &args.inventory {
            None if args.discover.is_some() => (Vec::new(), Source::Aws(args.aws.clone())),
            Some(path) => (
                inventory::load(path).map_err(|e| CliError::Input(e.to_string()))?,
                Source::Inventory(path.clone()),
            ),
            None => {
                if args.targets.is_empty() {
                    return Err(CliError::Input(
                        "no targets: give --target SPEC or --inventory FILE".into(),
                    ));
                }
                let ips = targets::expand(&args.targets, max_targets)
                    .map_err(|e| CliError::Input(format!("--target: {e}")))?;
                if let Some(why) = ips.iter().find_map(|ip| scope.refuse_class(*ip)) {
                    return Err(CliError::Input(format!("--target: {why}")));
                }
                (
                    ips.into_iter().map(Asset::from_ip).collect(),
                    Source::Specs(args.targets.clone()),
                )
            }
        };
        if assets.len() as u64 > max_targets {
            return Err(CliError::Input(format!(
                "inventory holds {} assets, more than --max-targets {max_targets}",
                assets.len()
            )));
        }
        Ok(ScanSettings {
            assets,
            source,
            ports,
            profile,
            scope,
            rate,
            workers,
            format,
            output,
            progress: args.progress,
            shard_size,
            metrics_addr,
            fleet,
            detach: args.detach,
            job_ttl,
            deadline,
            history: history_at,
            judge,
            exports,
        })
    }

    /// Whether the shards go to a fleet (else: in-process workers).
    pub fn is_fleet(&self) -> bool {
        self.fleet.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn settings(argv: &[&str]) -> Result<ScanSettings, CliError> {
        settings_env(argv, &[])
    }

    /// As [`settings`], with a fixed environment instead of the process's.
    fn settings_env(argv: &[&str], env: &[(&str, &str)]) -> Result<ScanSettings, CliError> {
        let cli =
            Cli::try_parse_from(std::iter::once("scanfleet").chain(argv.iter().copied())).unwrap();
        let file = match &cli.config.config {
            Some(p) => scanfleet_common::config::FileConfig::load(p)?,
            None => Default::default(),
        };
        let src = Sources::fixed(file, cli.config.config.as_deref(), env);
        let Command::Scan(args) = cli.command else {
            panic!("not a scan command")
        };
        ScanSettings::from_args(&args, &src)
    }

    #[test]
    fn errors_name_where_the_value_came_from() {
        let e = match settings_env(&["scan", "-t", "127.0.0.1"], &[("SCANFLEET_WORKERS", "0")]) {
            Err(CliError::Input(m)) => m,
            other => panic!("expected an input error, got {other:?}"),
        };
        assert_eq!(
            e,
            "environment variable SCANFLEET_WORKERS=\"0\": expected 1 to 64"
        );
        let e = match settings_env(
            &["scan", "-t", "127.0.0.1", "--queue", "amqp://h:99999/%2f"],
            &[],
        ) {
            Err(CliError::Input(m)) => m,
            other => panic!("expected an input error, got {other:?}"),
        };
        assert!(e.starts_with("--queue amqp://h:99999/%2f: "), "{e}");
        let e = match settings_env(
            &["scan", "-t", "127.0.0.1"],
            &[
                ("SCANFLEET_QUEUE", "sqs://jobs"),
                ("SCANFLEET_JOB_SECRET", "short"),
            ],
        ) {
            Err(CliError::Input(m)) => m,
            other => panic!("expected an input error, got {other:?}"),
        };
        assert!(e.contains("openssl rand -hex 32"), "{e}");
        let s = settings_env(
            &["scan", "-t", "127.0.0.1", "--delivery-limit", "2"],
            &[
                ("SCANFLEET_QUEUE", "sqs://jobs"),
                ("SCANFLEET_JOB_SECRET", &"k".repeat(32)),
            ],
        )
        .unwrap();
        let fleet = s.fleet.unwrap();
        assert_eq!(
            (fleet.queue_url.as_str(), fleet.delivery_limit),
            ("sqs://jobs", 2)
        );
        assert_eq!(fleet.redis_url, "redis://127.0.0.1:6379");
    }

    #[test]
    fn prohibited_types_are_added_never_removed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sf.toml");
        std::fs::write(&p, "[scope]\nprohibited_instance_types = []\n").unwrap();
        let s = settings(&["scan", "-t", "127.0.0.1", "-c", p.to_str().unwrap()]).unwrap();
        for t in ["m1.small", "t1.micro", "t2.nano"] {
            assert!(s.scope.is_prohibited_type(t), "{t} must stay prohibited");
        }
        std::fs::write(&p, "[scope]\nprohibited_instance_types = [\"c5.large\"]\n").unwrap();
        let s = settings(&["scan", "-t", "127.0.0.1", "-c", p.to_str().unwrap()]).unwrap();
        assert!(s.scope.is_prohibited_type("c5.large") && s.scope.is_prohibited_type("t2.nano"));
    }

    fn input_err(argv: &[&str]) -> String {
        match settings(argv) {
            Err(CliError::Input(m)) => m,
            other => panic!("expected an input error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_and_flags() {
        let s = settings(&["scan", "-t", "127.0.0.1", "-p", "-"]).unwrap();
        assert_eq!(s.ports.len(), 65535);
        assert_eq!(s.assets.len(), 1);
        assert_eq!(s.format, Format::Table);
        assert!(s.profile.host_discovery && s.profile.service_detection);
        let s = settings(&[
            "scan",
            "-t",
            "127.0.0.1,127.0.0.2",
            "--top-ports",
            "10",
            "--Pn",
            "--rate",
            "50",
        ])
        .unwrap();
        assert_eq!(
            (
                s.assets.len(),
                s.ports.len(),
                s.profile.host_discovery,
                s.profile.global_rate_pps
            ),
            (2, 10, false, 50)
        );
    }

    #[test]
    fn bad_input_names_the_input() {
        assert!(
            input_err(&["scan", "-t", "127.0.0.1", "-p", "80-70"])
                .contains("-p 80-70: range \"80-70\" runs backwards")
        );
        assert!(input_err(&["scan", "-t", "127.0.0.1", "-p", "99999"]).contains("\"99999\""));
        assert!(input_err(&["scan", "-t", "nonsense"]).contains("\"nonsense\""));
        assert!(input_err(&["scan", "-t", "10.0.0.0/8"]).contains("--max-targets"));
        assert!(input_err(&["scan", "-i", "/nonexistent.json"]).contains("/nonexistent.json"));
        assert!(input_err(&["scan", "-t", "127.0.0.1", "--workers", "0"]).contains("--workers 0"));
        assert!(
            input_err(&["scan", "-t", "127.0.0.1", "--exclude", "10.0.0/8"]).contains("--exclude")
        );
        assert!(
            input_err(&["scan", "-t", "127.0.0.1", "--top-ports", "100000"])
                .contains("--top-ports 100000")
        );
    }

    #[test]
    fn config_file_is_layered_under_flags() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sf.toml");
        std::fs::write(
            &p,
            "[scan]\nports = \"22,80\"\nworkers = 3\n[scope]\nexclude_cidrs = [\"10.9.0.0/16\"]\n",
        )
        .unwrap();
        let ps = p.to_str().unwrap();
        let s = settings(&["scan", "-t", "127.0.0.1", "-c", ps]).unwrap();
        assert_eq!(
            (
                s.ports.to_string().as_str(),
                s.workers,
                s.scope.exclude_cidrs.len()
            ),
            ("22,80", 3, 1)
        );
        let s = settings(&["scan", "-t", "127.0.0.1", "-c", ps, "-p", "443", "-w", "1"]).unwrap();
        assert_eq!((s.ports.to_string().as_str(), s.workers), ("443", 1));
        std::fs::write(&p, "[scan]\nprots = \"22\"\n").unwrap();
        let e = input_err(&["scan", "-t", "127.0.0.1", "-c", ps]);
        assert!(e.contains("sf.toml") && e.contains("prots"), "{e}");
    }
}
