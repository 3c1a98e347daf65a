//! The settings `scan` and `watch` share: what to probe and how (ports, probe
//! profile), what may never be probed (scope), and per-target budgets (rate).

use scanfleet_common::config::{Setting, Sources, in_range};
use scanfleet_common::ports::ProtocolPorts;
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
    let types = scan_types(&args.scan_type)?;
    let flag_p = match &args.ports {
        Some(p) => Some(port_protocols(&Setting {
            value: p.clone(),
            origin: scanfleet_common::config::Origin::Flag("-p"),
        })?),
        None => None,
    };
    let file_p = match (&args.ports, &f.ports) {
        (None, Some(p)) => Some(port_protocols(&Setting {
            value: p.clone(),
            origin: src.file_origin("scan.ports"),
        })?),
        _ => None,
    };
    let given = flag_p.clone().unwrap_or_default();
    let udp_list_named = args.udp_ports.is_some()
        || args.top_udp_ports.is_some()
        || !given.udp.is_empty()
        || f.udp_ports.is_some()
        || f.top_udp_ports.is_some();
    let udp_on = types.udp
        || args.udp
        || args.udp_ports.is_some()
        || args.top_udp_ports.is_some()
        || !given.udp.is_empty()
        || f.udp.unwrap_or(false);
    // As in nmap, -sU alone scans UDP only; TCP joins when the user names it.
    let tcp_named = types.mode.is_some()
        || args.mode.is_some()
        || args.top_ports.is_some()
        || !given.tcp.is_empty();
    let tcp_on = !udp_on || tcp_named || (!given.untagged.is_empty() && udp_list_named);
    let ports = if !tcp_on {
        PortSpec::default()
    } else if !given.tcp.is_empty() || !given.untagged.is_empty() {
        union(&given.tcp, &given.untagged)
    } else if let Some(n) = args.top_ports {
        top(&Setting {
            value: n,
            origin: scanfleet_common::config::Origin::Flag("--top-ports"),
        })?
    } else if let Some(p) = file_p
        .as_ref()
        .filter(|p| !p.tcp.is_empty() || !p.untagged.is_empty())
    {
        union(&p.tcp, &p.untagged)
    } else if let Some(n) = f.top_ports {
        top(&Setting {
            value: n,
            origin: src.file_origin("scan.top_ports"),
        })?
    } else {
        match default_ports {
            DefaultPorts::Top100 => {
                PortSpec::top(100).map_err(|e| CliError::Input(e.to_string()))?
            }
            DefaultPorts::All => PortSpec::all(),
        }
    };
    let udp_ports = if udp_on {
        udp_port_list(args, src, &given, file_p.as_ref())?
    } else {
        PortSpec::default()
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
    if let (Some(t), Some(m)) = (types.mode, args.mode)
        && t != m
    {
        return Err(CliError::Input(format!(
            "-s{} asks for the {} engine but --mode says {}; give one of them",
            if t == ScanMode::Syn { 'S' } else { 'T' },
            mode_name(t),
            mode_name(m)
        )));
    }
    let mode = src
        .pick_or(
            ("--mode", args.mode.or(types.mode)),
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
            udp_ports,
        },
    ))
}

fn port_list(s: &Setting<String>) -> Result<PortSpec, CliError> {
    PortSpec::parse(&s.value).map_err(|e| CliError::Input(s.invalid(e).to_string()))
}

fn port_protocols(s: &Setting<String>) -> Result<ProtocolPorts, CliError> {
    PortSpec::parse_protocols(&s.value).map_err(|e| CliError::Input(s.invalid(e).to_string()))
}

fn union(a: &PortSpec, b: &PortSpec) -> PortSpec {
    let all: Vec<String> = [a, b]
        .into_iter()
        .filter(|p| !p.is_empty())
        .map(PortSpec::to_string)
        .collect();
    // Both came out of a parse, so their union parses.
    PortSpec::parse(&all.join(",")).unwrap_or_default()
}

fn mode_name(m: ScanMode) -> &'static str {
    match m {
        ScanMode::Syn => "syn",
        ScanMode::Connect => "connect",
        ScanMode::Auto => "auto",
    }
}

/// What `-s` asked for: a TCP engine (`S`, `T`) and UDP (`U`).
#[derive(Debug, Default, Clone, Copy)]
struct ScanTypes {
    mode: Option<ScanMode>,
    udp: bool,
}

/// `-sU`, `-sS`, `-sT`, repeated or combined (`-sSU`).
fn scan_types(values: &[String]) -> Result<ScanTypes, CliError> {
    let mut t = ScanTypes::default();
    for v in values {
        if v.is_empty() {
            return Err(CliError::Input(
                "-s: give a scan type: -sU (UDP), -sS (TCP SYN) or -sT (TCP connect)".into(),
            ));
        }
        for c in v.chars() {
            let mode = match c {
                'U' => {
                    t.udp = true;
                    continue;
                }
                'S' => ScanMode::Syn,
                'T' => ScanMode::Connect,
                other => {
                    return Err(CliError::Input(format!(
                        "-s{}: unknown scan type {:?}; scanfleet knows -sU (UDP), -sS (TCP SYN) and -sT (TCP connect)",
                        scanfleet_common::text::escape(v, 40),
                        other
                    )));
                }
            };
            if t.mode.is_some_and(|m| m != mode) {
                return Err(CliError::Input(
                    "-sS and -sT both given: pick one TCP scan type".into(),
                ));
            }
            t.mode = Some(mode);
        }
    }
    Ok(t)
}

/// The UDP ports of a UDP scan: `U:` items of `-p` and `--udp-ports`, else
/// `--top-udp-ports`, else untagged `-p` items (nmap gives them to every
/// protocol scanned), else the config file, else the whole UDP frequency list.
fn udp_port_list(
    args: &ProbeArgs,
    src: &Sources,
    given: &ProtocolPorts,
    file_p: Option<&ProtocolPorts>,
) -> Result<PortSpec, CliError> {
    let f = &src.file.scan;
    let flag_list = match &args.udp_ports {
        Some(p) => port_list(&Setting {
            value: p.clone(),
            origin: scanfleet_common::config::Origin::Flag("--udp-ports"),
        })?,
        None => PortSpec::default(),
    };
    if !given.udp.is_empty() || !flag_list.is_empty() {
        return Ok(union(&given.udp, &flag_list));
    }
    let top_udp = |n: usize, origin| {
        PortSpec::top_udp(n)
            .map_err(|e| CliError::Input(Setting { value: n, origin }.invalid(e).to_string()))
    };
    if let Some(n) = args.top_udp_ports {
        return top_udp(n, scanfleet_common::config::Origin::Flag("--top-udp-ports"));
    }
    if !given.untagged.is_empty() {
        return Ok(given.untagged.clone());
    }
    if let Some(p) = file_p.filter(|p| !p.udp.is_empty()) {
        return Ok(p.udp.clone());
    }
    if let Some(p) = &f.udp_ports {
        return port_list(&Setting {
            value: p.clone(),
            origin: src.file_origin("scan.udp_ports"),
        });
    }
    if let Some(n) = f.top_udp_ports {
        return top_udp(n, src.file_origin("scan.top_udp_ports"));
    }
    let all = scanfleet_common::ports::top_udp_ports_list().len();
    PortSpec::top_udp(all).map_err(|e| CliError::Input(e.to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use scanfleet_common::config::FileConfig;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        probe: ProbeArgs,
    }

    fn ports(argv: &[&str]) -> Result<(String, String, ScanMode), String> {
        let cli = Cli::try_parse_from(std::iter::once("scan").chain(argv.iter().copied()))
            .map_err(|e| e.to_string())?;
        let src = Sources::fixed(FileConfig::default(), None, &[]);
        let (tcp, profile) =
            probe(&cli.probe, &src, DefaultPorts::Top100).map_err(|e| e.to_string())?;
        Ok((tcp.to_string(), profile.udp_ports.to_string(), profile.mode))
    }

    #[test]
    fn udp_alone_scans_udp_only_as_in_nmap() {
        let all_udp = PortSpec::top_udp(scanfleet_common::ports::top_udp_ports_list().len())
            .unwrap()
            .to_string();
        assert_eq!(
            ports(&["-sU"]).unwrap(),
            (String::new(), all_udp.clone(), ScanMode::Auto)
        );
        assert_eq!(ports(&["--udp"]).unwrap().1, all_udp);
        assert_eq!(ports(&["-sU", "-p", "53,161"]).unwrap().0, "");
        assert_eq!(ports(&["-sU", "-p", "53,161"]).unwrap().1, "53,161");
        assert_eq!(
            ports(&["--top-udp-ports", "2"]).unwrap(),
            (String::new(), "53,123".into(), ScanMode::Auto)
        );
        // Without -sU nothing changes: TCP top 100, no UDP.
        let (tcp, udp, _) = ports(&[]).unwrap();
        assert_eq!(
            (PortSpec::parse(&tcp).unwrap().len(), udp.as_str()),
            (100, "")
        );
    }

    #[test]
    fn naming_tcp_beside_udp_scans_both() {
        assert_eq!(
            ports(&["-sS", "-sU", "-p", "22,53"]).unwrap(),
            ("22,53".into(), "22,53".into(), ScanMode::Syn)
        );
        assert_eq!(ports(&["-sSU", "-p", "22"]).unwrap().2, ScanMode::Syn);
        assert_eq!(
            ports(&["-p", "U:53,161,T:22,443"]).unwrap(),
            ("22,443".into(), "53,161".into(), ScanMode::Auto)
        );
        assert_eq!(
            ports(&["--udp-ports", "53", "-p", "22"]).unwrap(),
            ("22".into(), "53".into(), ScanMode::Auto)
        );
        assert_eq!(
            ports(&["-sT", "-sU", "-p", "80"]).unwrap().2,
            ScanMode::Connect
        );
        let (tcp, udp, _) = ports(&["-sU", "--mode", "connect"]).unwrap();
        assert_eq!(
            (PortSpec::parse(&tcp).unwrap().len(), udp.is_empty()),
            (100, false)
        );
    }

    #[test]
    fn bad_scan_types_and_lists_name_their_input() {
        assert!(
            ports(&["-sX"])
                .unwrap_err()
                .contains("-sX: unknown scan type")
        );
        assert!(ports(&["-sS", "-sT"]).unwrap_err().contains("-sS and -sT"));
        assert!(
            ports(&["-sS", "--mode", "connect"])
                .unwrap_err()
                .contains("--mode says connect")
        );
        assert!(
            ports(&["--top-udp-ports", "0"])
                .unwrap_err()
                .starts_with("--top-udp-ports 0")
        );
        assert!(
            ports(&["--udp-ports", "70000"])
                .unwrap_err()
                .starts_with("--udp-ports 70000")
        );
        assert!(ports(&["-p", "U:"]).unwrap_err().starts_with("-p U:"));
    }
}
