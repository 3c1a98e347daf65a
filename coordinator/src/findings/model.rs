//! The finding types: the contract between the findings stage (rules, scoring,
//! suppression, history, diff) and the exporters (ASFF, Inspector, EventBridge,
//! nmap XML, HTML, JSONL, CSV). Changing a field here changes every export.

use std::collections::BTreeMap;
use std::net::IpAddr;

use scanfleet_common::scope::Skipped;
use scanfleet_common::{ExposurePath, PortState, Protocol, ServiceInfo};
use serde::{Deserialize, Serialize};

/// How bad a finding is, lowest first (so `Ord` sorts by badness).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 5] = [
        Severity::Informational,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Informational => "informational",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// The severity a 0.0-10.0 score falls in, with CVSS v3's bands (0 is
    /// informational, 0.1-3.9 low, 4.0-6.9 medium, 7.0-8.9 high, 9.0-10.0 critical).
    pub fn from_score(score: f64) -> Severity {
        match score {
            s if s >= 9.0 => Severity::Critical,
            s if s >= 7.0 => Severity::High,
            s if s >= 4.0 => Severity::Medium,
            s if s > 0.0 => Severity::Low,
            _ => Severity::Informational,
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "informational" | "info" => Ok(Severity::Informational),
            "low" => Ok(Severity::Low),
            "medium" => Ok(Severity::Medium),
            "high" => Ok(Severity::High),
            "critical" => Ok(Severity::Critical),
            other => Err(format!(
                "unknown severity {other:?}: expected informational, low, medium, high or critical"
            )),
        }
    }
}

/// What kind of exposure a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// The port was observed open.
    OpenPort,
    /// The security groups (and routes and NACLs) open the port to the internet,
    /// but the scan observed it closed or filtered: an exposure waiting for a
    /// service to start.
    LatentExposure,
}

/// One line of "why this score": the rule or the context that moved it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    /// Stable code: a rule id (`SF-TELNET`), or a context code (`internet-reachable`,
    /// `observed-but-unreachable`, `latent-exposure`, `suppressed`).
    pub code: String,
    /// A sentence a person reads.
    pub text: String,
    /// What it added to (or took from) the score.
    pub delta: f64,
}

/// A suppression that matched: the finding is kept and marked, never dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppressed {
    /// The suppression rule's id.
    pub rule: String,
    pub reason: String,
    /// Unix time in milliseconds after which the suppression no longer applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_unix_ms: Option<u64>,
}

/// One hop of the path from the internet to the port, as discovery saw it
/// (internet gateway, route table, network ACL, security group, interface).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathStep {
    /// `internet-gateway`, `route-table`, `network-acl`, `security-group`, `instance`.
    pub kind: String,
    /// The AWS id (`igw-...`, `rtb-...`, `acl-...`, `sg-...`, `i-...`).
    pub id: String,
}

/// One exposure of one (asset, protocol, port).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// `<region>/<account>/<instance-id or ip>/<proto>/<port>`; `-` for an unknown
    /// region or account. The same exposure has the same id in every scan.
    pub id: String,
    pub kind: FindingKind,
    /// The scan that last observed it.
    pub scan_id: String,
    pub asset_id: String,
    pub ip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    /// What the scan observed on the port.
    pub state: PortState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceInfo>,
    /// Ids of the severity rules that matched, most severe first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
    /// A short title: `Telnet open on 10.0.0.5:23/tcp`.
    pub title: String,
    /// Base score (0.0-10.0) from the rules, before context.
    pub base_score: f64,
    /// Score after context (reachability, drift), clamped to 0.0-10.0.
    pub score: f64,
    /// [`Severity::from_score`] of `score`.
    pub severity: Severity,
    /// Every adjustment, in the order applied; the first is the base rule.
    pub reasons: Vec<Reason>,
    /// Discovery's model says the internet reaches this port.
    pub internet_reachable: bool,
    /// The path the internet takes, when `internet_reachable`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_path: Vec<PathStep>,
    /// The path as discovery found it, when `internet_reachable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposure: Option<ExposurePath>,
    /// First and last time (unix ms) a scan observed this finding, across scans.
    pub first_observed_unix_ms: u64,
    pub last_observed_unix_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<Suppressed>,
    /// What to do about it: the base rule's remediation (added by the findings
    /// stage; older records have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation: Option<String>,
}

/// What a scan's history keeps besides its results: enough to build findings and
/// exports of it later (`scanfleet findings|export|diff SCAN_ID`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanRecord {
    pub scan_id: String,
    pub started_unix_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_unix_ms: Option<u64>,
    /// `syn` or `connect`.
    pub engine: String,
    /// The TCP port list as the user gave it (`22,80`, `top 100`); empty for a
    /// UDP-only scan.
    pub ports: String,
    /// The UDP port list (`-sU`), empty when the scan probed no UDP port.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub udp_ports: String,
    /// The command line, for nmap XML's `args`.
    #[serde(default)]
    pub args: String,
    pub targets: usize,
    pub skipped: Vec<Skipped>,
    pub notes: Vec<String>,
}
