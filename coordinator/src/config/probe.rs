//! The settings `scan` and `watch` share: what to probe and how (ports, probe
//! profile), what may never be probed (scope), and per-target budgets (rate).

use scanfleet_common::config::{Setting, Sources, in_range};
use scanfleet_common::rate::RatePolicy;
use scanfleet_common::scope::ScopePolicy;
use scanfleet_common::{PortSpec, ProbeProfile, ScanMode};

use crate::cli::{ProbeArgs, ScopeArgs};
use crate::error::CliError;

/// Which ports a command scans when nobody says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultPorts {
    /// The 100 most common (`scan`, like nmap).
    Top100,
    /// All 65535 (`watch`: a new instance is scanned whole).
    All,
}

/// Ports and probe profile from flags, environment and config file.
///
/// # Errors
/// [`CliError::Input`] naming the flag, variable or key that is wrong.
pub fn probe(
    args: &ProbeArgs,
    src: &Sources,
    default_ports: DefaultPorts,
) -> Result<(PortSpec, ProbeProfile), CliError> {
    let f = &src.file.scan;
    let d = ProbeProfile::default();
    let ports = match (&args.ports, args.top_ports, &f.ports, f.top_ports) {
        (Some(p), _, _, _) => port_list(&Setting {
            value: p.clone(),
            origin: scanfleet_common::config::Origin::Flag("-p"),
        })?,
        (None, Some(n), _, _) => top(&Setting {
            value: n,
            origin: scanfleet_common::config::Origin::Flag("--top-ports"),
        })?,
        (None, None, Some(p), _) => port_list(&Setting {
            value: p.clone(),
            origin: src.file_origin("scan.ports"),
        })?,
        (None, None, None, Some(n)) => top(&Setting {
            value: n,
            origin: src.file_origin("scan.top_ports"),
        })?,
        (None, None, None, None) => match default_ports {
            DefaultPorts::Top100 => {
                PortSpec::top(100).map_err(|e| CliError::Input(e.to_string()))?
            }
            DefaultPorts::All => {
                PortSpec::parse("-").map_err(|e| CliError::Input(e.to_string()))?
            }
        },
    };
    let rate = src.pick_or(
        ("--rate", args.rate_pps),
        Some("SCANFLEET_RATE_PPS"),
        ("scan.rate_pps", f.rate_pps),
        d.global_rate_pps,
    )?;
    let rate = in_range(&rate, 1, 10_000_000)?;
    let timeout_ms = src.pick_or(
        ("--timeout-ms", args.timeout_ms),
        Some("SCANFLEET_TIMEOUT_MS"),
        ("scan.timeout_ms", f.timeout_ms),
        d.timeout_ms,
    )?;
    let timeout_ms = in_range(&timeout_ms, 1, 60_000)?;
    let retries = src.pick_or(
        ("--retries", args.retries),
        Some("SCANFLEET_RETRIES"),
        ("scan.retries", f.retries),
        d.retries,
    )?;
    let retries = in_range(&retries, 0, 10)?;
    let mode = src
        .pick_or(
            ("--mode", args.mode),
            Some("SCANFLEET_MODE"),
            ("scan.mode", f.mode),
            ScanMode::default(),
        )?
        .value;
    Ok((
        ports,
        ProbeProfile {
            mode,
            timeout_ms,
            retries,
            global_rate_pps: rate,
            service_detection: !args.no_service_detection && f.service_detection.unwrap_or(true),
            host_discovery: !args.no_ping && f.host_discovery.unwrap_or(true),
            all_states: args.all_states || f.all_states.unwrap_or(false),
            // Set from the scope policy in `ScanSettings::from_args`.
            allow_address_classes: Default::default(),
            // `start_percent` is set from the rate policy in `ScanSettings::from_args`.
            pacing: Default::default(),
        },
    ))
}

fn port_list(s: &Setting<String>) -> Result<PortSpec, CliError> {
    PortSpec::parse(&s.value).map_err(|e| CliError::Input(s.invalid(e).to_string()))
}

fn top(s: &Setting<usize>) -> Result<PortSpec, CliError> {
    PortSpec::top(s.value).map_err(|e| CliError::Input(s.invalid(e).to_string()))
}

/// The scope policy from flags and the config file's `[scope]`. `discovered`
/// turns on the AWS pre-authorized rules (only private addresses of running
/// instances that discovery returned).
///
/// # Errors
/// [`CliError::Input`] naming the bad CIDR or tag rule and where it came from.
pub fn scope(args: &ScopeArgs, src: &Sources, discovered: bool) -> Result<ScopePolicy, CliError> {
    let f = &src.file.scope;
    let mut scope = ScopePolicy {
        exclude_cidrs: args
            .exclude
            .resolve(src, "scope.exclude_cidrs", &f.exclude_cidrs)?,
        private_only: args.private_only || f.private_only.unwrap_or(false),
        ..ScopePolicy::default()
    };
    let tag = |t: &String, origin: scanfleet_common::config::Origin| {
        t.parse().map_err(|e| {
            CliError::Input(
                Setting {
                    value: t.clone(),
                    origin,
                }
                .invalid(e)
                .to_string(),
            )
        })
    };
    for t in &f.include_tags {
        scope
            .include_tags
            .push(tag(t, src.file_origin("scope.include_tags"))?);
    }
    for t in &args.include_tag {
        scope.include_tags.push(tag(
            t,
            scanfleet_common::config::Origin::Flag("--include-tag"),
        )?);
    }
    for t in &f.exclude_tags {
        scope
            .exclude_tags
            .push(tag(t, src.file_origin("scope.exclude_tags"))?);
    }
    for t in &args.exclude_tag {
        scope.exclude_tags.push(tag(
            t,
            scanfleet_common::config::Origin::Flag("--exclude-tag"),
        )?);
    }
    scope
        .exclude_accounts
        .extend(f.exclude_accounts.iter().cloned());
    scope
        .exclude_accounts
        .extend(args.exclude_account.iter().cloned());
    scope.exclude_vpcs.extend(f.exclude_vpcs.iter().cloned());
    scope.exclude_vpcs.extend(args.exclude_vpc.iter().cloned());
    scope
        .allow_address_classes
        .extend(f.allow_address_classes.iter().copied());
    scope
        .allow_address_classes
        .extend(args.allow_address_class.iter().copied());
    if let Some(types) = &f.prohibited_instance_types {
        // Added to the fixed AWS-prohibited types, never in place of them.
        for t in types {
            if !scope.is_prohibited_type(t) {
                scope.prohibited_instance_types.push(t.clone());
            }
        }
    }
    if discovered {
        scope.discovered_only = true;
        scope.running_only = true;
    }
    Ok(scope)
}

/// Per-target budgets from the config file's `[rate]`.
///
/// # Errors
/// [`CliError::Input`] naming the `[rate]` field that is out of range.
pub fn rate(src: &Sources) -> Result<RatePolicy, CliError> {
    let r = src.file.rate.clone().unwrap_or_default();
    r.validate().map_err(|why| {
        CliError::Input(format!(
            "config {}: {why}",
            src.path().map_or("-".into(), |p| p.display().to_string()),
        ))
    })?;
    Ok(r)
}
