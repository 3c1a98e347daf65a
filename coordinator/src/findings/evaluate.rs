//! From one asset's results to its findings: identity, base score from the
//! rules, the context adjustments (internet reachability, drift) with their
//! reasons, latent exposures, suppressions.
//!
//! # Adjustments
//! | code | when | delta |
//! |---|---|---|
//! | rule id (`SF-TELNET`) | always first: the most severe matching rule | its score |
//! | `internet-reachable` | discovery's model (IGW, route, NACL, security group) lets the internet reach this address and port | +2.0 |
//! | `observed-but-unreachable` | the asset's exposure is known and says no internet path reaches this port, yet the scan saw it open (from inside) | 0.0: a note to investigate if the port was meant to be closed; the model or the estate is wrong, not the risk higher |
//! | `latent-exposure` | the configuration opens the port to the internet but the scan saw it closed or filtered (only ports in the scan's port list) | -3.0: nothing answers today, a service started on it is exposed at once |
//! | `suppressed` | a suppression matched | 0.0: kept and marked |
//!
//! The score is clamped to 0.0-10.0 and rounded to one decimal.

use std::collections::BTreeSet;
use std::net::IpAddr;

use scanfleet_common::scope::Skipped;
use scanfleet_common::{Asset, ExposurePath, PortSpec, PortState, ProbeResult, Protocol};

use super::model::{Finding, FindingKind, PathStep, Reason, Severity};
use super::rules::{RuleSet, Subject};
use super::suppress::Suppressions;

/// Added when the internet reaches the port.
pub const INTERNET_DELTA: f64 = 2.0;
/// Taken off a latent exposure: nothing listens yet.
pub const LATENT_DELTA: f64 = -3.0;

/// Everything the evaluation of one scan needs besides its assets and results.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub scan_id: &'a str,
    pub rules: &'a RuleSet,
    pub suppressions: &'a Suppressions,
    /// The scan's port list: latent exposures are only reported for these.
    pub ports: &'a PortSpec,
    /// Targets scope skipped: no latent exposure for what was never probed.
    pub skipped: &'a [Skipped],
    pub now_unix_ms: u64,
}

/// The deterministic identity of an exposure:
/// `<region>/<account>/<instance-id or ip>/<proto>/<port>`, `-` for an unknown
/// region or account. The asset's id (the instance id, or the address of a
/// hand-typed target) names the primary address; a secondary address of an
/// instance is named by the address itself, so that two interfaces never share an id.
pub fn finding_id(asset: Option<&Asset>, ip: IpAddr, proto: Protocol, port: u16) -> String {
    let part = |v: Option<&String>| match v {
        Some(s) if !s.is_empty() => s.replace('/', "_"),
        _ => "-".to_string(),
    };
    let region = part(asset.and_then(|a| a.region.as_ref()));
    let account = part(asset.and_then(|a| a.account_id.as_ref()));
    let who = match asset {
        Some(a) if !a.id.is_empty() && a.private_ip == ip => a.id.replace('/', "_"),
        _ => ip.to_string(),
    };
    format!("{region}/{account}/{who}/{}/{port}", proto.as_str())
}

/// One exposure of an asset before it is scored: what [`findings`] scores, and
/// what the history records first/last-observed times of.
#[derive(Debug, Clone)]
pub struct Observation<'r> {
    pub id: String,
    pub kind: FindingKind,
    pub ip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub state: PortState,
    /// The result behind an open port (a latent exposure may have a closed or
    /// filtered one, or none when the scan did not keep closed ports).
    pub result: Option<&'r ProbeResult>,
}

/// The exposure path of `ip:port`, if the model has one.
fn path_of(asset: Option<&Asset>, ip: IpAddr, port: u16) -> Option<&ExposurePath> {
    asset?
        .exposure
        .as_ref()?
        .paths
        .iter()
        .find(|p| p.private_ip == ip && p.tcp.iter().any(|r| r.contains(port)))
}

/// The open ports of one asset and its latent exposures, in (ip, port) order.
/// `results` are that asset's results (any order); `asset` is `None` when the
/// history has no asset for them (a fleet scan of typed targets).
pub fn observations<'r>(
    ports: &PortSpec,
    skipped: &[Skipped],
    asset: Option<&Asset>,
    results: &'r [ProbeResult],
) -> Vec<Observation<'r>> {
    let mut out: Vec<Observation<'r>> = results
        .iter()
        .filter(|r| r.state == PortState::Open)
        .map(|r| Observation {
            id: finding_id(asset, r.ip, r.protocol, r.port),
            kind: FindingKind::OpenPort,
            ip: r.ip,
            port: r.port,
            protocol: r.protocol,
            state: r.state,
            result: Some(r),
        })
        .collect();
    if let Some(a) = asset
        && let Some(exp) = &a.exposure
    {
        let open: BTreeSet<(IpAddr, u16)> = out.iter().map(|o| (o.ip, o.port)).collect();
        let mut latent = BTreeSet::new();
        for p in &exp.paths {
            let never_probed = skipped
                .iter()
                .any(|s| s.asset_id == a.id && s.ip == p.private_ip);
            if never_probed {
                continue;
            }
            for r in &p.tcp {
                for &(from, to) in ports.ranges() {
                    let (lo, hi) = (from.max(r.from), to.min(r.to));
                    for port in lo..=hi {
                        if lo <= hi && !open.contains(&(p.private_ip, port)) {
                            latent.insert((p.private_ip, port));
                        }
                    }
                }
            }
        }
        for (ip, port) in latent {
            let result = results
                .iter()
                .find(|r| r.ip == ip && r.port == port && r.protocol == Protocol::Tcp);
            out.push(Observation {
                id: finding_id(asset, ip, Protocol::Tcp, port),
                kind: FindingKind::LatentExposure,
                ip,
                port,
                protocol: Protocol::Tcp,
                // Without --all-states the scan keeps no closed ports: not open is closed, as nmap counts it.
                state: result.map_or(PortState::Closed, |r| r.state),
                result,
            });
        }
    }
    out.sort_by_key(|f| (f.ip, f.port, f.kind));
    out
}

fn round1(x: f64) -> f64 {
    (x.clamp(0.0, 10.0) * 10.0).round() / 10.0
}

/// Score one observation. `first`/`last` observed come from the history.
pub fn finding(
    ctx: &Context<'_>,
    asset: Option<&Asset>,
    o: &Observation<'_>,
    observed: (u64, u64),
) -> Finding {
    let service = o.result.and_then(|r| r.service.clone());
    // A latent exposure has no service: its base is what the port alone means.
    let subject = Subject {
        port: o.port,
        service: if o.kind == FindingKind::OpenPort {
            service.as_ref()
        } else {
            None
        },
        now_unix_ms: ctx.now_unix_ms,
    };
    let matched = ctx.rules.matching(&subject);
    let (base, base_reason, title_part, remediation) = match matched.first() {
        Some(r) => (
            r.score,
            Reason {
                code: r.id.clone(),
                text: r.title.clone(),
                delta: r.score,
            },
            r.title.clone(),
            Some(r.remediation.clone()),
        ),
        None => (
            0.0,
            Reason {
                code: "no-rule".into(),
                text: format!("no rule of {} matches", ctx.rules.origin),
                delta: 0.0,
            },
            "Open port".to_string(),
            None,
        ),
    };
    let mut reasons = vec![base_reason];
    let path = path_of(asset, o.ip, o.port);
    let internet_reachable = path.is_some();
    let mut network_path = Vec::new();
    if let Some(p) = path {
        network_path.push(PathStep {
            kind: "internet-gateway".into(),
            id: p.internet_gateway.clone(),
        });
        network_path.push(PathStep {
            kind: "route-table".into(),
            id: p.route_table.clone(),
        });
        network_path.push(PathStep {
            kind: "network-acl".into(),
            id: p.network_acl.clone(),
        });
        for sg in &p.security_groups {
            network_path.push(PathStep {
                kind: "security-group".into(),
                id: sg.clone(),
            });
        }
        if let Some(a) = asset {
            network_path.push(PathStep {
                kind: "instance".into(),
                id: a.id.clone(),
            });
        }
        reasons.push(Reason {
            code: "internet-reachable".into(),
            text: format!(
                "reachable from the internet at {}:{} via {} (route table {}, network ACL {}, security group{} {})",
                p.public_ip,
                o.port,
                p.internet_gateway,
                p.route_table,
                p.network_acl,
                if p.security_groups.len() == 1 { "" } else { "s" },
                p.security_groups.join(", ")
            ),
            delta: INTERNET_DELTA,
        });
    } else if o.kind == FindingKind::OpenPort
        && let Some(exp) = asset.and_then(|a| a.exposure.as_ref())
    {
        let why = if exp.notes.is_empty() {
            "no internet path allows it".to_string()
        } else {
            exp.notes.join("; ")
        };
        reasons.push(Reason {
            code: "observed-but-unreachable".into(),
            text: format!(
                "observed open, though the network configuration lets no internet traffic reach it ({why}); if the port was meant to be closed, the configuration model or the estate is wrong: investigate"
            ),
            delta: 0.0,
        });
    }
    if o.kind == FindingKind::LatentExposure {
        reasons.push(Reason {
            code: "latent-exposure".into(),
            text: format!(
                "the configuration opens it to the internet, but the scan saw it {}: a service started on it is exposed at once",
                o.state.as_str()
            ),
            delta: LATENT_DELTA,
        });
    }
    let score = round1(reasons.iter().map(|r| r.delta).sum());
    let proto = o.protocol.as_str();
    let title = match o.kind {
        FindingKind::OpenPort => format!("{title_part} on {}:{}/{proto}", o.ip, o.port),
        FindingKind::LatentExposure => format!(
            "Port {}/{proto} open to the internet, nothing listening on {} ({title_part} if a service starts)",
            o.port, o.ip
        ),
    };
    let mut f = Finding {
        id: o.id.clone(),
        kind: o.kind,
        scan_id: ctx.scan_id.to_string(),
        asset_id: asset.map_or_else(
            || {
                o.result
                    .map_or_else(|| o.ip.to_string(), |r| r.asset_id.clone())
            },
            |a| a.id.clone(),
        ),
        ip: o.ip,
        port: o.port,
        protocol: o.protocol,
        state: o.state,
        region: asset.and_then(|a| a.region.clone()),
        account_id: asset.and_then(|a| a.account_id.clone()),
        vpc_id: asset.and_then(|a| a.vpc_id.clone()),
        subnet_id: asset.and_then(|a| a.subnet_id.clone()),
        instance_type: asset.and_then(|a| a.instance_type.clone()),
        tags: asset.map(|a| a.tags.clone()).unwrap_or_default(),
        service: if o.kind == FindingKind::OpenPort {
            service
        } else {
            None
        },
        rules: matched.iter().map(|r| r.id.clone()).collect(),
        title,
        base_score: base,
        score,
        severity: Severity::from_score(score),
        reasons,
        internet_reachable,
        network_path,
        exposure: path.cloned(),
        first_observed_unix_ms: observed.0,
        last_observed_unix_ms: observed.1,
        suppressed: None,
        remediation,
    };
    if let Some(s) = ctx.suppressions.matching(&f, ctx.now_unix_ms) {
        f.reasons.push(Reason {
            code: "suppressed".into(),
            text: format!("suppressed by {}: {}", s.rule, s.reason),
            delta: 0.0,
        });
        f.suppressed = Some(s);
    }
    f
}

/// Score an asset's observations; `observed(id)` gives first/last observed.
pub fn findings(
    ctx: &Context<'_>,
    asset: Option<&Asset>,
    results: &[ProbeResult],
    mut observed: impl FnMut(&str) -> (u64, u64),
) -> Vec<Finding> {
    observations(ctx.ports, ctx.skipped, asset, results)
        .iter()
        .map(|o| finding(ctx, asset, o, observed(&o.id)))
        .collect()
}

/// Highest score first; then by id, so that equal scores always list the same way.
pub fn sort(findings: &mut [Finding]) {
    findings.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use scanfleet_common::{Exposure, PortRange, ServiceInfo};

    fn asset() -> Asset {
        let mut a = Asset::from_ip("10.0.0.5".parse().unwrap());
        a.id = "i-0abc".into();
        a.region = Some("eu-west-1".into());
        a.account_id = Some("111122223333".into());
        a.tags.insert("env".into(), "prod".into());
        a
    }

    fn exposed(mut a: Asset, ports: &[(u16, u16)]) -> Asset {
        a.exposure = Some(Exposure {
            paths: vec![ExposurePath {
                public_ip: "203.0.113.9".parse().unwrap(),
                private_ip: a.private_ip,
                tcp: ports
                    .iter()
                    .map(|&(from, to)| PortRange { from, to })
                    .collect(),
                internet_gateway: "igw-1".into(),
                route_table: "rtb-1".into(),
                network_acl: "acl-1".into(),
                security_groups: vec!["sg-web".into()],
            }],
            notes: vec![],
        });
        a
    }

    fn open(ip: &str, port: u16, service: Option<&str>) -> ProbeResult {
        ProbeResult {
            scan_id: "s1".into(),
            asset_id: "i-0abc".into(),
            ip: ip.parse().unwrap(),
            port,
            protocol: Protocol::Tcp,
            state: PortState::Open,
            reason: "syn-ack".into(),
            service: service.map(|n| ServiceInfo {
                name: n.into(),
                ..ServiceInfo::default()
            }),
        }
    }

    struct Fixture {
        rules: RuleSet,
        sup: Suppressions,
        ports: PortSpec,
        skipped: Vec<Skipped>,
    }

    fn fixture(ports: &str) -> Fixture {
        Fixture {
            rules: RuleSet::builtin().unwrap(),
            sup: Suppressions::default(),
            ports: PortSpec::parse(ports).unwrap(),
            skipped: vec![],
        }
    }

    impl Fixture {
        fn ctx(&self) -> Context<'_> {
            Context {
                scan_id: "s1",
                rules: &self.rules,
                suppressions: &self.sup,
                ports: &self.ports,
                skipped: &self.skipped,
                now_unix_ms: 1_780_000_000_000,
            }
        }
    }

    #[test]
    fn ids_are_deterministic_and_dash_for_unknown() {
        let a = asset();
        let ip: IpAddr = "10.0.0.5".parse().unwrap();
        assert_eq!(
            finding_id(Some(&a), ip, Protocol::Tcp, 22),
            "eu-west-1/111122223333/i-0abc/tcp/22"
        );
        let other: IpAddr = "10.0.0.6".parse().unwrap();
        assert_eq!(
            finding_id(Some(&a), other, Protocol::Tcp, 22),
            "eu-west-1/111122223333/10.0.0.6/tcp/22",
            "a secondary address is named by itself"
        );
        assert_eq!(
            finding_id(None, ip, Protocol::Tcp, 80),
            "-/-/10.0.0.5/tcp/80"
        );
        let typed = Asset::from_ip(ip);
        assert_eq!(
            finding_id(Some(&typed), ip, Protocol::Tcp, 80),
            "-/-/10.0.0.5/tcp/80"
        );
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert_eq!(
            finding_id(None, v6, Protocol::Tcp, 443),
            "-/-/fd00::1/tcp/443"
        );
    }

    #[test]
    fn base_score_is_the_most_severe_rule() {
        let fx = fixture("22,23");
        let a = asset();
        let r = [open("10.0.0.5", 23, Some("telnet"))];
        let f = findings(&fx.ctx(), Some(&a), &r, |_| (1, 2));
        assert_eq!(f.len(), 1);
        let f = &f[0];
        assert_eq!(
            (f.base_score, f.score, f.severity),
            (9.0, 9.0, Severity::Critical)
        );
        assert_eq!(f.rules, ["SF-TELNET", "SF-OPEN-PORT"]);
        assert_eq!(f.reasons.len(), 1);
        assert_eq!(f.reasons[0].code, "SF-TELNET");
        assert_eq!(f.title, "Telnet open on 10.0.0.5:23/tcp");
        assert!(!f.internet_reachable && f.network_path.is_empty());
        assert_eq!((f.first_observed_unix_ms, f.last_observed_unix_ms), (1, 2));
        assert_eq!(f.tags["env"], "prod");
        assert!(f.remediation.as_deref().unwrap().contains("SSH"));
    }

    #[test]
    fn internet_reachability_raises_the_score_and_fills_the_path() {
        let fx = fixture("22,80");
        let a = exposed(asset(), &[(80, 80)]);
        let r = [
            open("10.0.0.5", 80, Some("http")),
            open("10.0.0.5", 22, Some("ssh")),
        ];
        let f = findings(&fx.ctx(), Some(&a), &r, |_| (0, 0));
        let web = f.iter().find(|f| f.port == 80).unwrap();
        assert!(web.internet_reachable);
        assert_eq!(web.score, 2.0 + INTERNET_DELTA);
        assert_eq!(web.severity, Severity::Medium);
        assert_eq!(web.reasons[1].code, "internet-reachable");
        assert!(
            web.reasons[1].text.contains("203.0.113.9:80 via igw-1"),
            "{}",
            web.reasons[1].text
        );
        let kinds: Vec<(&str, &str)> = web
            .network_path
            .iter()
            .map(|s| (s.kind.as_str(), s.id.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("internet-gateway", "igw-1"),
                ("route-table", "rtb-1"),
                ("network-acl", "acl-1"),
                ("security-group", "sg-web"),
                ("instance", "i-0abc")
            ]
        );
        assert!(web.exposure.is_some());
        // 22 is open, but the exposure says no internet path reaches it: drift, a note, no change.
        let ssh = f.iter().find(|f| f.port == 22).unwrap();
        assert!(!ssh.internet_reachable);
        assert_eq!(ssh.score, ssh.base_score);
        assert_eq!(ssh.reasons[1].code, "observed-but-unreachable");
        assert_eq!(ssh.reasons[1].delta, 0.0);
        assert!(ssh.reasons[1].text.contains("investigate"));
    }

    #[test]
    fn no_drift_note_when_the_exposure_is_unknown() {
        let fx = fixture("22");
        let r = [open("10.0.0.5", 22, Some("ssh"))];
        let f = findings(&fx.ctx(), Some(&asset()), &r, |_| (0, 0));
        assert_eq!(f[0].reasons.len(), 1, "{:?}", f[0].reasons);
    }

    #[test]
    fn latent_exposures_only_for_scanned_ports_that_were_not_open() {
        let fx = fixture("22,80,3389,8000-8002");
        // The security group opens 80, 3389 and 8000-9000 to the world; 80 answers.
        let a = exposed(asset(), &[(80, 80), (3389, 3389), (8000, 9000)]);
        let r = [open("10.0.0.5", 80, Some("http"))];
        let f = findings(&fx.ctx(), Some(&a), &r, |_| (0, 0));
        let latent: Vec<u16> = f
            .iter()
            .filter(|f| f.kind == FindingKind::LatentExposure)
            .map(|f| f.port)
            .collect();
        assert_eq!(
            latent,
            [3389, 8000, 8001, 8002],
            "9000 was not in the port list"
        );
        let rdp = f.iter().find(|f| f.port == 3389).unwrap();
        assert_eq!(rdp.state, PortState::Closed);
        assert!(rdp.internet_reachable && rdp.service.is_none());
        assert_eq!(rdp.rules[0], "SF-RDP");
        assert_eq!(rdp.score, 7.5 + INTERNET_DELTA + LATENT_DELTA);
        assert_eq!(rdp.reasons.last().unwrap().code, "latent-exposure");
        assert_eq!(
            rdp.id, "eu-west-1/111122223333/i-0abc/tcp/3389",
            "the same id as when it opens"
        );
        // A filtered result keeps its state.
        let mut filtered = open("10.0.0.5", 3389, None);
        filtered.state = PortState::Filtered;
        let f = findings(&fx.ctx(), Some(&a), &[filtered], |_| (0, 0));
        assert_eq!(
            f.iter().find(|f| f.port == 3389).unwrap().state,
            PortState::Filtered
        );
    }

    #[test]
    fn no_latent_exposure_for_a_skipped_target() {
        let mut fx = fixture("3389");
        let a = exposed(asset(), &[(3389, 3389)]);
        fx.skipped = vec![Skipped {
            asset_id: "i-0abc".into(),
            ip: a.private_ip,
            reason: scanfleet_common::scope::SkipReason::ExcludedCidr {
                cidr: "10.0.0.0/8".parse().unwrap(),
            },
        }];
        assert!(findings(&fx.ctx(), Some(&a), &[], |_| (0, 0)).is_empty());
    }

    #[test]
    fn scores_are_clamped_and_sorted() {
        let fx = fixture("2375,80");
        let a = exposed(asset(), &[(2375, 2375)]);
        let r = [
            open("10.0.0.5", 80, Some("http")),
            open("10.0.0.5", 2375, Some("http")),
        ];
        let mut f = findings(&fx.ctx(), Some(&a), &r, |_| (0, 0));
        sort(&mut f);
        assert_eq!(f[0].port, 2375);
        assert_eq!(f[0].score, 10.0, "10 + 2 is clamped");
        assert_eq!(f[1].port, 80);
    }
}
