//! Domain types shared by coordinator and workers.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::address::{self, AddressClass};
use crate::ports::PortSpec;
/// Banners and other untrusted bytes are escaped by the one rule in [`crate::text`].
pub use crate::text::escape_bytes;

/// The network zone of targets without a VPC (hand-typed, on-premises, inventory
/// files without zones). Its queue carries the base queue name itself.
pub const DEFAULT_ZONE: &str = "default";

/// One scannable thing as discovery (EC2, an inventory file, a typed target) sees it.
///
/// One asset is one machine: an EC2 instance with every private address of every
/// network interface, or one hand-typed address. Everything beyond `private_ip` is
/// optional, so inventories written by hand or by older versions keep parsing; a
/// field this struct does not know is an error (a typo such as `instance_typ` must
/// not make a t2.nano an instance of unknown type). Addresses are read in their
/// [canonical](address::canonical) form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Asset {
    /// Stable identifier: the EC2 instance id, or the IP for hand-typed targets.
    #[serde(default)]
    pub id: String,
    /// The primary private address (of the primary interface for an instance).
    #[serde(deserialize_with = "address::deserialize_canonical")]
    pub private_ip: IpAddr,
    /// Every private address of every interface, primary first; may repeat
    /// `private_ip`. Scope turns each distinct address into its own target.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "address::deserialize_canonical_vec"
    )]
    pub private_ips: Vec<IpAddr>,
    /// Public IPv4 addresses (auto-assigned or Elastic IP), never scanned.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "address::deserialize_canonical_vec"
    )]
    pub public_ips: Vec<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    /// Subnet of the primary interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    /// EC2 instance state (`pending`, `running`, `stopped`, ...). No state means a
    /// hand-typed or file asset, which scope treats as running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// `windows` for Windows instances (EC2 reports nothing for Linux).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// Name of the image, when discovery described it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_name: Option<String>,
    /// Security groups of all interfaces, sorted, without duplicates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_groups: Vec<String>,
    /// Auto Scaling group, from the `aws:autoscaling:groupName` tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling_group: Option<String>,
    /// Network zone (VPCs joined by peering) whose workers can reach this asset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// What the network configuration exposes to the internet; `None` when unknown
    /// (hand-typed assets, or discovery could not read the network configuration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposure: Option<Exposure>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// The instance type's network performance (EC2 DescribeInstanceTypes, cached
    /// per type and region by discovery): what the rate policy derives the
    /// target's budget from. Absent: the table shipped in `data/` is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::rate::InstanceNetwork>,
}

impl Asset {
    /// An asset for an address typed by hand: no cloud context, the IP (in its
    /// [canonical](address::canonical) form) is its id.
    pub fn from_ip(ip: IpAddr) -> Self {
        let ip = address::canonical(ip);
        Asset {
            id: ip.to_string(),
            private_ip: ip,
            private_ips: Vec::new(),
            public_ips: Vec::new(),
            instance_type: None,
            account_id: None,
            region: None,
            availability_zone: None,
            vpc_id: None,
            subnet_id: None,
            state: None,
            platform: None,
            image_id: None,
            image_name: None,
            security_groups: Vec::new(),
            autoscaling_group: None,
            zone: None,
            exposure: None,
            tags: BTreeMap::new(),
            network: None,
        }
    }

    /// Every distinct private address of the asset in its
    /// [canonical](address::canonical) form, `private_ip` first.
    pub fn addresses(&self) -> Vec<IpAddr> {
        let mut out = vec![address::canonical(self.private_ip)];
        for ip in self.private_ips.iter().map(|ip| address::canonical(*ip)) {
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
        out
    }

    /// True when the network configuration lets anyone on the internet reach
    /// `port`/tcp of this asset. False when it does not, or when it is unknown.
    pub fn internet_exposed(&self, port: u16) -> bool {
        self.exposure.as_ref().is_some_and(|e| e.allows(port))
    }
}

/// An inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortRange {
    pub from: u16,
    pub to: u16,
}

impl PortRange {
    pub fn contains(&self, port: u16) -> bool {
        (self.from..=self.to).contains(&port)
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.from == self.to {
            write!(f, "{}", self.from)
        } else {
            write!(f, "{}-{}", self.from, self.to)
        }
    }
}

/// What the network configuration (route tables, network ACLs, security groups)
/// lets the whole internet reach on an asset: the configuration's side of "open
/// and reachable from the internet", to compare with what a scan observes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exposure {
    /// One entry per internet-facing address with at least one reachable port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<ExposurePath>,
    /// Why interfaces or ports are not reachable, one line per interface and
    /// blocking layer (`no public IP or Elastic IP`, `route table rtb-... has no
    /// default route to an internet gateway`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Exposure {
    /// True when some path lets the internet reach `port`/tcp.
    pub fn allows(&self, port: u16) -> bool {
        self.paths
            .iter()
            .any(|p| p.tcp.iter().any(|r| r.contains(port)))
    }

    /// True when nothing is reachable from the internet.
    pub fn is_closed(&self) -> bool {
        self.paths.is_empty()
    }
}

/// How the internet reaches one address of an asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExposurePath {
    /// The internet-facing address (public IPv4 or Elastic IP, or a global IPv6).
    pub public_ip: IpAddr,
    /// The private address behind it (the same as `public_ip` for IPv6).
    pub private_ip: IpAddr,
    /// TCP ports reachable from anywhere, sorted, merged, never empty.
    pub tcp: Vec<PortRange>,
    pub internet_gateway: String,
    pub route_table: String,
    pub network_acl: String,
    /// Security groups with an ingress rule from `0.0.0.0/0` or `::/0` that
    /// allowed part of `tcp`.
    pub security_groups: Vec<String>,
}

/// An address that scope allowed, with the probe budget the rate policy gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Read in its [canonical](address::canonical) form, so a job for
    /// `::ffff:10.0.0.1` is decided (and probed) as 10.0.0.1.
    #[serde(deserialize_with = "address::deserialize_canonical")]
    pub ip: IpAddr,
    pub asset_id: String,
    /// Packets per second this target may receive from one worker.
    pub rate_pps: u32,
}

/// How a worker probes ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScanMode {
    /// Raw-socket SYN scan when the process may open raw sockets, connect scan otherwise.
    #[default]
    Auto,
    Syn,
    Connect,
}

impl std::str::FromStr for ScanMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(ScanMode::Auto),
            "syn" => Ok(ScanMode::Syn),
            "connect" => Ok(ScanMode::Connect),
            other => Err(format!(
                "unknown scan mode {other:?}: expected syn, connect or auto"
            )),
        }
    }
}

/// How hard and how deep a shard is probed; travels inside the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeProfile {
    pub mode: ScanMode,
    /// Wait for an answer to one probe before it counts as unanswered.
    pub timeout_ms: u64,
    /// Extra attempts for probes that got no answer.
    pub retries: u8,
    /// Cap on packets (or connection attempts) per second for the whole worker.
    pub global_rate_pps: u32,
    /// Read banners and identify services on open ports.
    pub service_detection: bool,
    /// Ping hosts first and skip those that are down (off = nmap's -Pn).
    pub host_discovery: bool,
    /// Report closed and filtered ports too, not only open ones.
    pub all_states: bool,
    /// Address classes the user allowed by name (`--allow-address-class`): the
    /// worker refuses job targets of any other non-unicast class.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub allow_address_classes: BTreeSet<AddressClass>,
    /// Adaptive pacing and retransmission of the SYN engine.
    #[serde(default)]
    pub pacing: Pacing,
    /// UDP ports to probe (`-sU`), besides the job's TCP `ports`; empty (the
    /// default, and what jobs of older coordinators carry) means no UDP scan.
    #[serde(default, skip_serializing_if = "PortSpec::is_empty")]
    pub udp_ports: PortSpec,
}

/// How the SYN engine adapts to each target (see the worker's `rate` module):
/// each target starts at `start_percent` of its ceiling ([`Target::rate_pps`]),
/// backs off multiplicatively when its answers drop, grows additively while
/// clean, never above the ceiling; the global cap stays a hard cap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pacing {
    /// Adapt each target's rate to its answers (off: every target at its ceiling).
    pub adaptive: bool,
    /// Where a target starts, in percent of its ceiling (1..=100).
    pub start_percent: u32,
    /// Retransmit to a target's silent ports until the estimated chance of
    /// missing one open port is below 1 in this many; 0 turns the model off and
    /// `retries` alone decides.
    pub miss_one_in: u32,
    /// The most retransmissions the model may ask for.
    pub max_retries: u8,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            adaptive: true,
            start_percent: 50,
            miss_one_in: 10_000,
            max_retries: 10,
        }
    }
}

impl Default for ProbeProfile {
    fn default() -> Self {
        ProbeProfile {
            mode: ScanMode::Auto,
            timeout_ms: 1000,
            retries: 2,
            global_rate_pps: 20_000,
            service_detection: true,
            host_discovery: false,
            all_states: false,
            allow_address_classes: BTreeSet::new(),
            pacing: Pacing::default(),
            udp_ports: PortSpec::default(),
        }
    }
}

/// One unit of work: some targets of one network zone, and what to probe on them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanJob {
    pub scan_id: String,
    pub shard_id: u32,
    pub zone: String,
    pub targets: Vec<Target>,
    /// TCP ports; empty in a UDP-only scan (`-sU` alone).
    pub ports: PortSpec,
    pub profile: ProbeProfile,
    /// The scope the coordinator applied, with its targets' asset facts: the
    /// worker applies it again before any probe. `None` in jobs of older
    /// coordinators, which get the address checks only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<crate::scope::JobScope>,
}

impl ScanJob {
    /// (target, port) pairs of the job, TCP and UDP: what its progress counts up to.
    pub fn pairs(&self) -> u64 {
        self.targets.len() as u64 * (self.ports.len() as u64 + self.profile.udp_ports.len() as u64)
    }
}

/// What one port answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortState {
    Open,
    Closed,
    Filtered,
    /// UDP only: no answer to any attempt. An open UDP service may ignore a probe
    /// it does not understand, and a firewall may drop it; silence cannot tell
    /// them apart (nmap's `open|filtered`).
    #[serde(rename = "open|filtered")]
    OpenFiltered,
}

impl PortState {
    pub fn as_str(self) -> &'static str {
        match self {
            PortState::Open => "open",
            PortState::Closed => "closed",
            PortState::Filtered => "filtered",
            PortState::OpenFiltered => "open|filtered",
        }
    }
}

/// Transport protocol of a port.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// What service detection learned about an open port. Every string in here came
/// from the network or was derived from it and is untrusted; `banner` is already
/// escaped with [`crate::text::escape_bytes`] (printable ASCII, everything else as
/// `\xNN`) and bounded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ServiceInfo {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpe: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub banner: Option<String>,
    /// Free-form facts (HTTP title, TLS subject and SANs, ...), escaped like the banner.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

/// The outcome for one (target, port): the record that workers write and reports read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    pub scan_id: String,
    pub asset_id: String,
    pub ip: IpAddr,
    pub port: u16,
    #[serde(default)]
    pub protocol: Protocol,
    pub state: PortState,
    /// Why the state was decided: `syn-ack`, `rst`, `no-response`, `icmp-unreachable`, `connect`, ...
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceInfo>,
}

impl ProbeResult {
    /// The idempotency key of a result: a rerun of a shard overwrites, never adds.
    pub fn key(&self) -> (IpAddr, u16, Protocol) {
        (self.ip, self.port, self.protocol)
    }
}

/// When a scan was registered and when its last shard got an outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanTimes {
    /// Unix time in milliseconds of `begin_scan`.
    pub started_unix_ms: u64,
    /// Unix time in milliseconds at which every shard had an outcome; `None` while
    /// shards are pending.
    pub finished_unix_ms: Option<u64>,
}

/// Progress of one scan as the store counts it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub shards_total: u64,
    pub shards_done: u64,
    pub shards_failed: u64,
    /// Distinct (ip, port) results stored so far.
    pub results: u64,
    /// (target, port) pairs whose state is decided, summed over shards as workers
    /// report them per result batch ([`ResultStore::record_ports`]). A redelivered
    /// shard does not count twice: each shard's count only grows.
    ///
    /// [`ResultStore::record_ports`]: crate::store::ResultStore::record_ports
    #[serde(default)]
    pub ports_done: u64,
}

impl Progress {
    /// Every shard has an outcome: the one completion rule of a scan, in every mode.
    /// A scan of zero shards is finished as soon as it is registered.
    pub fn finished(&self) -> bool {
        self.shards_done + self.shards_failed >= self.shards_total
    }

    /// Shards without an outcome yet.
    pub fn shards_pending(&self) -> u64 {
        self.shards_total
            .saturating_sub(self.shards_done + self.shards_failed)
    }
}

/// How a shard ended, as recorded by the worker that ran it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum ShardOutcome {
    Done,
    Failed { reason: String },
}

/// How accurately one target of a shard was probed, as the worker measured it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetAccuracy {
    pub ip: IpAddr,
    /// Probes sent to it, retransmissions included.
    pub probes_sent: u64,
    pub retransmits: u64,
    /// Ports that answered (SYN-ACK, RST or ICMP unreachable) / ports probed.
    pub answer_ratio: f64,
    /// Estimated round-trip loss of its probes (0..1), from answers that came
    /// only after a retransmission.
    pub loss: f64,
    /// Its ceiling (packets/s) and the highest rate the controller used.
    pub ceiling_pps: u32,
    pub max_rate_pps: u32,
    /// Times the controller backed off.
    pub backoffs: u32,
    /// Estimated chance that an open port of it was reported filtered.
    pub miss_chance: f64,
}

/// What the probe engine measured over one shard: written next to its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ShardStats {
    pub shard_id: u32,
    /// `syn` or `connect`.
    #[serde(default)]
    pub engine: String,
    pub probes_sent: u64,
    pub retransmits: u64,
    /// Passes over the shard's (target, port) pairs.
    #[serde(default)]
    pub passes: u32,
    /// Highest chance of a missed open port over its targets.
    pub miss_chance: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetAccuracy>,
}
