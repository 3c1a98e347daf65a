//! One typed configuration, layered: defaults, then the TOML file, then
//! environment (`SCANFLEET_*`), then flags. Everything is validated here, before
//! the first probe, with messages that name the field or flag.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use scanfleet_common::rate::RatePolicy;
use scanfleet_common::scope::ScopePolicy;
use scanfleet_common::targets::{self, DEFAULT_MAX_TARGETS};
use scanfleet_common::{Asset, PortSpec, ProbeProfile, ScanMode, inventory};
use serde::Deserialize;

use crate::CliError;
use crate::cli::{Format, ProgressWhen, ScanArgs};

/// The `[scan]` table of the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanFile {
    pub ports: Option<String>,
    pub top_ports: Option<usize>,
    pub format: Option<Format>,
    pub workers: Option<usize>,
    pub rate_pps: Option<u32>,
    pub mode: Option<ScanMode>,
    pub timeout_ms: Option<u64>,
    pub retries: Option<u8>,
    pub host_discovery: Option<bool>,
    pub service_detection: Option<bool>,
    pub max_targets: Option<u64>,
}

/// The `[scope]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeFile {
    #[serde(default)]
    pub exclude_cidrs: Vec<String>,
    pub private_only: Option<bool>,
    pub prohibited_instance_types: Option<Vec<String>>,
}

/// The config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub scan: ScanFile,
    #[serde(default)]
    pub scope: ScopeFile,
    pub rate: Option<RatePolicy>,
}

impl FileConfig {
    /// # Errors
    /// Names the file and the TOML error (which names the key).
    pub fn load(path: &Path) -> Result<FileConfig, CliError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::Input(format!("config {}: cannot read: {e}", path.display())))?;
        toml::from_str(&text)
            .map_err(|e| CliError::Input(format!("config {}: {e}", path.display())))
    }
}

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
    pub workers: usize,
    pub format: Format,
    pub output: Option<PathBuf>,
    pub progress: ProgressWhen,
    /// Targets per shard at most.
    pub shard_size: usize,
    /// Where to serve `/metrics` while the scan runs.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Fleet mode: where to publish and where results are.
    pub fleet: Option<FleetSettings>,
}

/// Where a fleet scan goes.
#[derive(Debug, Clone)]
pub struct FleetSettings {
    pub queue_url: String,
    pub redis_url: String,
    /// `SCANFLEET_JOB_SECRET`, which the workers share.
    pub secret: Vec<u8>,
    pub detach: bool,
}

/// Largest worker count in one process.
pub const MAX_WORKERS: usize = 64;

fn env<T: std::str::FromStr>(name: &str) -> Result<Option<T>, CliError>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map(Some)
            .map_err(|e| CliError::Input(format!("environment variable {name}={v:?}: {e}"))),
        Err(_) => Ok(None),
    }
}

fn parse_cidr(s: &str, what: &str) -> Result<IpNet, CliError> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| CliError::Input(format!("{what} {s:?} is not a CIDR block or IP address")))
}

impl ScanSettings {
    /// Layer defaults, file, environment and flags; validate everything; load the
    /// targets. Nothing is sent by this function.
    ///
    /// # Errors
    /// [`CliError::Input`] naming the flag, field, file or spec that is wrong.
    pub fn from_args(args: &ScanArgs) -> Result<ScanSettings, CliError> {
        let file = match &args.config {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        let d = ProbeProfile::default();

        let workers = args
            .workers
            .or(env("SCANFLEET_WORKERS")?)
            .or(file.scan.workers)
            .unwrap_or(2);
        if workers == 0 || workers > MAX_WORKERS {
            return Err(CliError::Input(format!(
                "--workers {workers}: expected 1 to {MAX_WORKERS}"
            )));
        }
        let rate = args
            .rate_pps
            .or(env("SCANFLEET_RATE_PPS")?)
            .or(file.scan.rate_pps)
            .unwrap_or(d.global_rate_pps);
        if rate == 0 {
            return Err(CliError::Input(
                "--rate 0: the rate must be at least 1 packet per second".into(),
            ));
        }
        let timeout_ms = args
            .timeout_ms
            .or(file.scan.timeout_ms)
            .unwrap_or(d.timeout_ms);
        if !(1..=60_000).contains(&timeout_ms) {
            return Err(CliError::Input(format!(
                "--timeout-ms {timeout_ms}: expected 1 to 60000"
            )));
        }
        let retries = args.retries.or(file.scan.retries).unwrap_or(d.retries);
        if retries > 10 {
            return Err(CliError::Input(format!(
                "--retries {retries}: expected 0 to 10"
            )));
        }
        let mode = args
            .mode
            .or(env("SCANFLEET_MODE")?)
            .or(file.scan.mode)
            .unwrap_or_default();

        let ports = match (
            &args.ports,
            args.top_ports,
            &file.scan.ports,
            file.scan.top_ports,
        ) {
            (Some(p), _, _, _) => {
                PortSpec::parse(p).map_err(|e| CliError::Input(format!("-p {p:?}: {e}")))?
            }
            (None, Some(n), _, _) => {
                PortSpec::top(n).map_err(|e| CliError::Input(e.to_string()))?
            }
            (None, None, Some(p), _) => PortSpec::parse(p)
                .map_err(|e| CliError::Input(format!("config scan.ports {p:?}: {e}")))?,
            (None, None, None, Some(n)) => PortSpec::top(n)
                .map_err(|e| CliError::Input(format!("config scan.top_ports: {e}")))?,
            (None, None, None, None) => {
                PortSpec::top(100).map_err(|e| CliError::Input(e.to_string()))?
            }
        };

        let mut scope = ScopePolicy::default();
        for c in &file.scope.exclude_cidrs {
            scope
                .exclude_cidrs
                .push(parse_cidr(c, "config scope.exclude_cidrs entry")?);
        }
        for c in &args.exclude {
            scope.exclude_cidrs.push(parse_cidr(c, "--exclude")?);
        }
        scope.private_only = args.private_only || file.scope.private_only.unwrap_or(false);
        let tag = |t: &String, flag: &str| {
            t.parse()
                .map_err(|e| CliError::Input(format!("{flag} {t:?}: {e}")))
        };
        for t in &args.include_tag {
            scope.include_tags.push(tag(t, "--include-tag")?);
        }
        for t in &args.exclude_tag {
            scope.exclude_tags.push(tag(t, "--exclude-tag")?);
        }
        scope
            .exclude_accounts
            .extend(args.exclude_account.iter().cloned());
        scope.exclude_vpcs.extend(args.exclude_vpc.iter().cloned());
        if args.discover.is_some() {
            // AWS pre-authorized mode: only private IPs of running instances that
            // discovery returned, never an address typed by hand.
            scope.discovered_only = true;
            scope.running_only = true;
        }
        if let Some(types) = file.scope.prohibited_instance_types {
            scope.prohibited_instance_types = types;
        }
        let rate_policy = file.rate.unwrap_or_default();
        if rate_policy.min_pps == 0 || rate_policy.min_pps > rate_policy.max_pps {
            return Err(CliError::Input(format!(
                "config rate: min_pps {} must be at least 1 and at most max_pps {}",
                rate_policy.min_pps, rate_policy.max_pps
            )));
        }

        let max_targets = args
            .max_targets
            .or(file.scan.max_targets)
            .unwrap_or(DEFAULT_MAX_TARGETS);
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

        let shard_size = args.shard_size.unwrap_or(256);
        if shard_size == 0 {
            return Err(CliError::Input(
                "--shard-size 0: expected at least 1".into(),
            ));
        }
        let fleet = match &args.queue {
            None => None,
            Some(q) => {
                scanfleet_common::fleet::queue_kind(q).map_err(CliError::Input)?;
                let secret = std::env::var("SCANFLEET_JOB_SECRET").unwrap_or_default();
                if secret.is_empty() {
                    return Err(CliError::Input(
                        "--queue needs SCANFLEET_JOB_SECRET: jobs are signed with the secret the workers share".into(),
                    ));
                }
                Some(FleetSettings {
                    queue_url: q.clone(),
                    redis_url: args
                        .redis
                        .clone()
                        .unwrap_or_else(|| "redis://127.0.0.1:6379".into()),
                    secret: secret.into_bytes(),
                    detach: args.detach,
                })
            }
        };

        Ok(ScanSettings {
            metrics_addr: args.metrics_addr,
            shard_size,
            fleet,
            assets,
            source,
            ports,
            profile: ProbeProfile {
                mode,
                timeout_ms,
                retries,
                global_rate_pps: rate,
                service_detection: !args.no_service_detection
                    && file.scan.service_detection.unwrap_or(true),
                host_discovery: !args.no_ping && file.scan.host_discovery.unwrap_or(true),
                all_states: args.all_states,
            },
            scope,
            rate: rate_policy,
            workers,
            format: args.format.or(file.scan.format).unwrap_or(Format::Table),
            output: args.output.clone(),
            progress: args.progress,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn settings(argv: &[&str]) -> Result<ScanSettings, CliError> {
        let cli =
            Cli::try_parse_from(std::iter::once("scanfleet").chain(argv.iter().copied())).unwrap();
        let Command::Scan(args) = cli.command else {
            panic!("not a scan command")
        };
        ScanSettings::from_args(&args)
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
        assert!(input_err(&["scan", "-t", "127.0.0.1", "-p", "80-70"]).contains("-p \"80-70\""));
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
