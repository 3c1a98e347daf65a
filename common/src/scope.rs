//! Scope policy: a pure function from assets and policy to (targets, skipped with
//! reason). Nothing reaches a queue without passing through [`apply`], and workers
//! call [`ScopePolicy::allows`] again before they probe.
//!
//! An asset is decided in two steps. Asset rules come first (pre-authorized
//! provenance, instance state, instance type, account, VPC, tags); then every
//! distinct private address of the asset is decided on its own (CIDR blocks,
//! private-only, public addresses, duplicates). Each address ends up exactly once,
//! either as a [`Target`] or as a [`Skipped`] with the first rule that refused it.
//!
//! Addresses are decided in their [canonical](crate::address::canonical) form
//! (`::ffff:10.0.0.1` is 10.0.0.1, and an exclusion of 10.0.0.0/8 covers it), and
//! non-unicast addresses ([`AddressClass`]) are refused unless allowed by name.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::address::{self, AddressClass, ClassRefusal};
use crate::rate::RatePolicy;
use crate::types::{Asset, Target};

mod job;
pub use job::{AssetFacts, JobScope};

/// Instance types that AWS's penetration-testing policy excludes from scanning.
/// Fixed: a policy may add types ([`ScopePolicy::prohibited_instance_types`]),
/// never remove these.
pub const PROHIBITED_INSTANCE_TYPES: [&str; 3] = ["m1.small", "t1.micro", "t2.nano"];

/// The instance state in which an instance may be scanned.
pub const RUNNING: &str = "running";

/// A tag rule: `key=value` matches that exact value, a bare `key` matches any value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TagRule {
    pub key: String,
    /// `None` matches any value.
    pub value: Option<String>,
}

impl TagRule {
    /// True when the tags hold this key (with this value, if one is given).
    pub fn matches(&self, tags: &BTreeMap<String, String>) -> bool {
        match (tags.get(&self.key), &self.value) {
            (Some(_), None) => true,
            (Some(v), Some(want)) => v == want,
            (None, _) => false,
        }
    }
}

impl FromStr for TagRule {
    type Err = String;
    /// `key=value` or `key`; the key may hold `:` (`aws:autoscaling:groupName`),
    /// the value may hold `=` (the first `=` splits).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key, value) = match s.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (s, None),
        };
        if key.is_empty() {
            return Err(format!("tag rule {s:?}: expected KEY=VALUE or KEY"));
        }
        Ok(TagRule {
            key: key.to_string(),
            value,
        })
    }
}

impl TryFrom<String> for TagRule {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<TagRule> for String {
    fn from(r: TagRule) -> String {
        r.to_string()
    }
}

impl fmt::Display for TagRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={v}", self.key),
            None => f.write_str(&self.key),
        }
    }
}

/// What may be scanned. Every list is empty by default; an empty include list
/// includes everything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopePolicy {
    /// Addresses inside any of these blocks are never scanned.
    #[serde(default)]
    pub exclude_cidrs: Vec<IpNet>,
    /// When not empty, only addresses inside one of these blocks are scanned.
    #[serde(default)]
    pub include_cidrs: Vec<IpNet>,
    /// Refuse addresses outside private, loopback and unique-local space.
    #[serde(default)]
    pub private_only: bool,
    /// Instance types never scanned, on top of [`PROHIBITED_INSTANCE_TYPES`], which
    /// are refused whatever this list holds (an empty list removes none of them).
    #[serde(default = "default_prohibited")]
    pub prohibited_instance_types: Vec<String>,
    /// Non-unicast address classes the user allowed by name; every other class is
    /// refused ([`address::class_of`]).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub allow_address_classes: BTreeSet<AddressClass>,
    /// Only assets whose state is `running`. Assets without a state (hand-typed,
    /// inventory files) count as running.
    #[serde(default = "yes")]
    pub running_only: bool,
    /// When not empty, only assets carrying a tag that matches one of these.
    #[serde(default)]
    pub include_tags: Vec<TagRule>,
    /// Assets carrying a tag that matches one of these are never scanned.
    #[serde(default)]
    pub exclude_tags: Vec<TagRule>,
    /// When not empty, only assets of these AWS accounts.
    #[serde(default)]
    pub include_accounts: Vec<String>,
    #[serde(default)]
    pub exclude_accounts: Vec<String>,
    /// When not empty, only assets in these VPCs.
    #[serde(default)]
    pub include_vpcs: Vec<String>,
    #[serde(default)]
    pub exclude_vpcs: Vec<String>,
    /// AWS pre-authorized mode: only private addresses of instances that discovery
    /// returned (see [`is_discovered_instance`]), never an address given by hand
    /// and never one of an instance's public addresses.
    #[serde(default)]
    pub discovered_only: bool,
}

fn default_prohibited() -> Vec<String> {
    PROHIBITED_INSTANCE_TYPES
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn yes() -> bool {
    true
}

impl Default for ScopePolicy {
    fn default() -> Self {
        ScopePolicy {
            exclude_cidrs: Vec::new(),
            include_cidrs: Vec::new(),
            private_only: false,
            prohibited_instance_types: default_prohibited(),
            allow_address_classes: BTreeSet::new(),
            running_only: true,
            include_tags: Vec::new(),
            exclude_tags: Vec::new(),
            include_accounts: Vec::new(),
            exclude_accounts: Vec::new(),
            include_vpcs: Vec::new(),
            exclude_vpcs: Vec::new(),
            discovered_only: false,
        }
    }
}

/// Why an address was left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum SkipReason {
    /// The address lies in an excluded block.
    ExcludedCidr { cidr: IpNet },
    /// Include blocks are set and the address lies in none of them.
    NotInIncludedCidr,
    /// Private-only mode and the address is public.
    NotPrivate,
    /// The instance type may not be scanned.
    ProhibitedInstanceType { instance_type: String },
    /// The same address already came from another asset.
    DuplicateAddress { first_asset: String },
    /// The instance is not running.
    NotRunning { state: String },
    /// Pre-authorized mode and the asset is not an instance that discovery returned.
    NotDiscovered,
    /// Pre-authorized mode and the address is one of the instance's public addresses.
    PublicAddress,
    /// The account is excluded.
    ExcludedAccount { account_id: String },
    /// Include accounts are set and the asset's account is not one of them.
    AccountNotIncluded {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        account_id: Option<String>,
    },
    /// The VPC is excluded.
    ExcludedVpc { vpc_id: String },
    /// Include VPCs are set and the asset's VPC is not one of them.
    VpcNotIncluded {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vpc_id: Option<String>,
    },
    /// The asset carries an excluded tag.
    ExcludedTag { rule: TagRule },
    /// Include tags are set and the asset carries none of them.
    NoIncludedTag,
    /// Not a unicast address (multicast, broadcast, unspecified, link-local), and
    /// the class was not allowed by name.
    AddressClass {
        class: AddressClass,
        /// The refused address, as its message names it.
        address: IpAddr,
    },
}

impl SkipReason {
    /// The reason's kind, as it is serialized: a small fixed set, fit for counts
    /// and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            SkipReason::ExcludedCidr { .. } => "excluded-cidr",
            SkipReason::NotInIncludedCidr => "not-in-included-cidr",
            SkipReason::NotPrivate => "not-private",
            SkipReason::ProhibitedInstanceType { .. } => "prohibited-instance-type",
            SkipReason::DuplicateAddress { .. } => "duplicate-address",
            SkipReason::NotRunning { .. } => "not-running",
            SkipReason::NotDiscovered => "not-discovered",
            SkipReason::PublicAddress => "public-address",
            SkipReason::ExcludedAccount { .. } => "excluded-account",
            SkipReason::AccountNotIncluded { .. } => "account-not-included",
            SkipReason::ExcludedVpc { .. } => "excluded-vpc",
            SkipReason::VpcNotIncluded { .. } => "vpc-not-included",
            SkipReason::ExcludedTag { .. } => "excluded-tag",
            SkipReason::NoIncludedTag => "no-included-tag",
            SkipReason::AddressClass { .. } => "address-class",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::ExcludedCidr { cidr } => write!(f, "address in excluded block {cidr}"),
            SkipReason::NotInIncludedCidr => f.write_str("address outside the included blocks"),
            SkipReason::NotPrivate => f.write_str("not a private address (private-only scope)"),
            SkipReason::ProhibitedInstanceType { instance_type } => {
                write!(f, "instance type {instance_type} may not be scanned")
            }
            SkipReason::DuplicateAddress { first_asset } => {
                write!(f, "same address as asset {first_asset}")
            }
            SkipReason::NotRunning { state } => write!(f, "instance is {state}, not running"),
            SkipReason::NotDiscovered => {
                f.write_str("not an instance returned by discovery (AWS pre-authorized scope)")
            }
            SkipReason::PublicAddress => {
                f.write_str("public address of the instance (AWS pre-authorized scope)")
            }
            SkipReason::ExcludedAccount { account_id } => {
                write!(f, "account {account_id} is excluded")
            }
            SkipReason::AccountNotIncluded {
                account_id: Some(a),
            } => {
                write!(f, "account {a} is not included")
            }
            SkipReason::AccountNotIncluded { account_id: None } => {
                f.write_str("no account, and only included accounts are scanned")
            }
            SkipReason::ExcludedVpc { vpc_id } => write!(f, "VPC {vpc_id} is excluded"),
            SkipReason::VpcNotIncluded { vpc_id: Some(v) } => write!(f, "VPC {v} is not included"),
            SkipReason::VpcNotIncluded { vpc_id: None } => {
                f.write_str("no VPC, and only included VPCs are scanned")
            }
            SkipReason::ExcludedTag { rule } => write!(f, "tag {rule} is excluded"),
            SkipReason::NoIncludedTag => f.write_str("carries none of the included tags"),
            SkipReason::AddressClass { class, address } => ClassRefusal {
                ip: *address,
                class: *class,
            }
            .fmt(f),
        }
    }
}

/// An address that scope left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub asset_id: String,
    pub ip: IpAddr,
    #[serde(flatten)]
    pub reason: SkipReason,
}

/// True for RFC 1918, loopback, CGNAT (RFC 6598), IPv6 unique-local and loopback,
/// decided on the [canonical](address::canonical) address. Link-local is not
/// private: 169.254.169.254 is the instance metadata service, not an asset.
pub fn is_private(ip: IpAddr) -> bool {
    match address::canonical(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private() || v4.is_loopback() || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// True when the asset carries what EC2 discovery records for an instance: an
/// instance id (`i-...`), an account, a region and a state. Hand-typed addresses
/// ([`Asset::from_ip`]) never do.
pub fn is_discovered_instance(asset: &Asset) -> bool {
    asset.id.starts_with("i-")
        && asset.account_id.as_deref().is_some_and(|a| !a.is_empty())
        && asset.region.as_deref().is_some_and(|r| !r.is_empty())
        && asset.state.is_some()
}

impl ScopePolicy {
    /// The policy of AWS pre-authorized mode: only private addresses of running
    /// instances that discovery returned, never the prohibited instance types.
    pub fn aws_preauthorized() -> Self {
        ScopePolicy {
            discovered_only: true,
            running_only: true,
            ..ScopePolicy::default()
        }
    }

    /// Decide one asset by its primary address; `None` means in scope.
    pub fn check(&self, asset: &Asset) -> Option<SkipReason> {
        self.check_asset(asset)
            .or_else(|| self.check_address(asset, asset.private_ip))
    }

    /// The rules that hold for the whole asset, whatever the address.
    pub fn check_asset(&self, asset: &Asset) -> Option<SkipReason> {
        if self.discovered_only && !is_discovered_instance(asset) {
            return Some(SkipReason::NotDiscovered);
        }
        if self.running_only
            && let Some(state) = &asset.state
            && state != RUNNING
        {
            return Some(SkipReason::NotRunning {
                state: state.clone(),
            });
        }
        if let Some(t) = &asset.instance_type
            && self.is_prohibited_type(t)
        {
            return Some(SkipReason::ProhibitedInstanceType {
                instance_type: t.clone(),
            });
        }
        let account = asset.account_id.as_deref();
        if let Some(a) = account
            && self.exclude_accounts.iter().any(|x| x == a)
        {
            return Some(SkipReason::ExcludedAccount {
                account_id: a.to_string(),
            });
        }
        if !self.include_accounts.is_empty()
            && !account.is_some_and(|a| self.include_accounts.iter().any(|x| x == a))
        {
            return Some(SkipReason::AccountNotIncluded {
                account_id: account.map(str::to_string),
            });
        }
        let vpc = asset.vpc_id.as_deref();
        if let Some(v) = vpc
            && self.exclude_vpcs.iter().any(|x| x == v)
        {
            return Some(SkipReason::ExcludedVpc {
                vpc_id: v.to_string(),
            });
        }
        if !self.include_vpcs.is_empty()
            && !vpc.is_some_and(|v| self.include_vpcs.iter().any(|x| x == v))
        {
            return Some(SkipReason::VpcNotIncluded {
                vpc_id: vpc.map(str::to_string),
            });
        }
        if let Some(rule) = self.exclude_tags.iter().find(|r| r.matches(&asset.tags)) {
            return Some(SkipReason::ExcludedTag { rule: rule.clone() });
        }
        if !self.include_tags.is_empty()
            && !self.include_tags.iter().any(|r| r.matches(&asset.tags))
        {
            return Some(SkipReason::NoIncludedTag);
        }
        None
    }

    /// True when instances of type `t` may not be scanned: one of the fixed
    /// [`PROHIBITED_INSTANCE_TYPES`] or of the policy's own list (any case).
    pub fn is_prohibited_type(&self, t: &str) -> bool {
        PROHIBITED_INSTANCE_TYPES
            .iter()
            .copied()
            .chain(self.prohibited_instance_types.iter().map(String::as_str))
            .any(|p| p.eq_ignore_ascii_case(t))
    }

    /// The rules for one address of an asset (after [`ScopePolicy::check_asset`]).
    pub fn check_address(&self, asset: &Asset, ip: IpAddr) -> Option<SkipReason> {
        let ip = address::canonical(ip);
        if self.discovered_only
            && asset
                .public_ips
                .iter()
                .any(|p| address::canonical(*p) == ip)
        {
            return Some(SkipReason::PublicAddress);
        }
        self.check_ip(ip)
    }

    /// Decide one address without asset context, in its canonical form.
    pub fn check_ip(&self, ip: IpAddr) -> Option<SkipReason> {
        self.check_ip_allowing(ip, &self.allow_address_classes)
    }

    fn check_ip_allowing(
        &self,
        ip: IpAddr,
        allowed: &BTreeSet<AddressClass>,
    ) -> Option<SkipReason> {
        let ip = address::canonical(ip);
        if let Some(class) = address::class_of(ip)
            && !allowed.contains(&class)
        {
            return Some(SkipReason::AddressClass { class, address: ip });
        }
        if let Some(cidr) = self
            .exclude_cidrs
            .iter()
            .find(|c| address::net_contains(c, ip))
        {
            return Some(SkipReason::ExcludedCidr { cidr: *cidr });
        }
        if !self.include_cidrs.is_empty()
            && !self
                .include_cidrs
                .iter()
                .any(|c| address::canonical_net(*c).contains(&ip))
        {
            return Some(SkipReason::NotInIncludedCidr);
        }
        if self.private_only && !is_private(ip) {
            return Some(SkipReason::NotPrivate);
        }
        None
    }

    /// The class refusal of an address typed by hand, `None` when it is unicast or
    /// its class is allowed. A hand-typed target of a refused class is a usage
    /// error (exit 2) rather than a skip: the user asked for it by name.
    pub fn refuse_class(&self, ip: IpAddr) -> Option<ClassRefusal> {
        let ip = address::canonical(ip);
        address::class_of(ip)
            .filter(|c| !self.allow_address_classes.contains(c))
            .map(|class| ClassRefusal { ip, class })
    }

    /// Defence in depth for workers: true when the target passes the address rules.
    pub fn allows(&self, target: &Target) -> bool {
        self.check_ip(target.ip).is_none()
    }

    /// Defence in depth for workers: decide a target of a signed job whose profile
    /// allowed `job_allowed` address classes by name (on top of this policy's own).
    pub fn check_job_target(
        &self,
        ip: IpAddr,
        job_allowed: &BTreeSet<AddressClass>,
    ) -> Option<SkipReason> {
        let allowed: BTreeSet<AddressClass> = self
            .allow_address_classes
            .union(job_allowed)
            .copied()
            .collect();
        self.check_ip_allowing(ip, &allowed)
    }
}

/// Apply scope and rate policy: every distinct address of every asset ends up
/// either as a target with its probe budget or as a skip with its reason. Order of
/// assets, and of addresses within an asset, is kept.
pub fn apply(
    assets: &[Asset],
    scope: &ScopePolicy,
    rate: &RatePolicy,
) -> (Vec<Target>, Vec<Skipped>) {
    let mut targets = Vec::with_capacity(assets.len());
    let mut skipped = Vec::new();
    let mut seen: HashMap<IpAddr, &str> = HashMap::new();
    for a in assets {
        let asset_reason = scope.check_asset(a);
        for ip in a.addresses() {
            let reason = asset_reason
                .clone()
                .or_else(|| scope.check_address(a, ip))
                .or_else(|| {
                    seen.get(&ip).map(|first| SkipReason::DuplicateAddress {
                        first_asset: first.to_string(),
                    })
                });
            match reason {
                Some(reason) => skipped.push(Skipped {
                    asset_id: a.id.clone(),
                    ip,
                    reason,
                }),
                None => {
                    seen.insert(ip, &a.id);
                    targets.push(Target {
                        ip,
                        asset_id: a.id.clone(),
                        rate_pps: rate.per_asset_pps(a),
                    });
                }
            }
        }
    }
    (targets, skipped)
}

/// Skipped addresses counted by reason kind ([`SkipReason::kind`]).
pub fn count_by_reason(skipped: &[Skipped]) -> BTreeMap<&'static str, usize> {
    let mut out = BTreeMap::new();
    for s in skipped {
        *out.entry(s.reason.kind()).or_insert(0) += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::net::Ipv4Addr;

    fn asset(ip: [u8; 4], ty: Option<&str>) -> Asset {
        let mut a = Asset::from_ip(IpAddr::V4(Ipv4Addr::from(ip)));
        a.instance_type = ty.map(str::to_string);
        a
    }

    fn instance(id: &str, ips: &[&str]) -> Asset {
        let mut a = Asset::from_ip(ips[0].parse().unwrap());
        a.id = id.into();
        a.private_ips = ips.iter().map(|s| s.parse().unwrap()).collect();
        a.account_id = Some("111111111111".into());
        a.region = Some("us-east-1".into());
        a.vpc_id = Some("vpc-1".into());
        a.state = Some("running".into());
        a.instance_type = Some("m5.large".into());
        a
    }

    #[test]
    fn a_job_scope_passes_what_scope_let_through_and_refuses_what_it_skipped() {
        let mut policy = ScopePolicy::aws_preauthorized();
        policy.exclude_tags = vec!["scan=never".parse().unwrap()];
        let mut nano = instance("i-nano", &["10.0.0.2"]);
        nano.instance_type = Some("t2.nano".into());
        let mut tagged = instance("i-tag", &["10.0.0.3"]);
        tagged.tags.insert("scan".into(), "never".into());
        tagged.tags.insert("owner".into(), "someone".into());
        let mut public = instance("i-pub", &["10.0.0.4"]);
        public.public_ips = vec!["54.1.2.3".parse().unwrap()];
        let assets = vec![
            instance("i-ok", &["10.0.0.1", "10.0.1.1"]),
            nano,
            tagged,
            public,
            Asset::from_ip("10.0.0.9".parse().unwrap()),
        ];
        let (targets, skipped) = apply(&assets, &policy, &RatePolicy::default());
        assert_eq!(targets.len(), 3, "{targets:?}");
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        let index = JobScope::index(&assets);
        let js = JobScope::of(&policy, &targets, |id| index.get(id).copied());
        for t in &targets {
            assert_eq!(js.check(t), None, "{t:?}");
        }
        // Only the tags the rules name travel in the job.
        assert!(js.assets.values().all(|f| !f.tags.contains_key("owner")));
        // Each target scope skipped, put into a job by a planner bug, is refused.
        let all = JobScope::of(
            &policy,
            &skipped
                .iter()
                .map(|s| Target {
                    ip: s.ip,
                    asset_id: s.asset_id.clone(),
                    rate_pps: 100,
                })
                .collect::<Vec<_>>(),
            |id| index.get(id).copied(),
        );
        for s in &skipped {
            let t = Target {
                ip: s.ip,
                asset_id: s.asset_id.clone(),
                rate_pps: 100,
            };
            assert!(all.check(&t).is_some(), "{s:?} passed the job's scope");
        }
        // An instance's public address in a job is refused.
        let public = Target {
            ip: "54.1.2.3".parse().unwrap(),
            asset_id: "i-pub".into(),
            rate_pps: 100,
        };
        assert_eq!(js.check(&public), Some(SkipReason::PublicAddress));
        // Jobs survive their wire format.
        let back: JobScope = serde_json::from_str(&serde_json::to_string(&js).unwrap()).unwrap();
        assert_eq!(back, js);
    }

    #[test]
    fn skips_prohibited_types_excluded_cidrs_and_public() {
        let policy = ScopePolicy {
            exclude_cidrs: vec!["10.1.0.0/16".parse().unwrap()],
            private_only: true,
            ..ScopePolicy::default()
        };
        let assets = vec![
            asset([10, 0, 0, 1], Some("m5.large")),
            asset([10, 0, 0, 2], Some("t2.nano")),
            asset([10, 1, 2, 3], None),
            asset([8, 8, 8, 8], None),
            asset([10, 0, 0, 1], None),
        ];
        let (t, s) = apply(&assets, &policy, &RatePolicy::default());
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].ip.to_string(), "10.0.0.1");
        let reasons: Vec<_> = s.iter().map(|s| s.reason.to_string()).collect();
        assert_eq!(
            reasons,
            [
                "instance type t2.nano may not be scanned",
                "address in excluded block 10.1.0.0/16",
                "not a private address (private-only scope)",
                "same address as asset 10.0.0.1",
            ]
        );
    }

    #[test]
    fn mapped_addresses_are_decided_as_ipv4() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let policy = ScopePolicy {
            exclude_cidrs: vec!["127.0.0.96/27".parse().unwrap()],
            ..ScopePolicy::default()
        };
        for mapped in ["::ffff:127.0.0.100", "::127.0.0.100"] {
            assert_eq!(
                policy.check_ip(ip(mapped)),
                Some(SkipReason::ExcludedCidr {
                    cidr: "127.0.0.96/27".parse().unwrap()
                }),
                "{mapped}"
            );
        }
        let v6_rule = ScopePolicy {
            exclude_cidrs: vec!["::ffff:127.0.0.0/104".parse().unwrap()],
            ..ScopePolicy::default()
        };
        assert!(v6_rule.check_ip(ip("127.0.0.5")).is_some());
        assert!(v6_rule.check_ip(ip("::1")).is_none());
        let include = ScopePolicy {
            include_cidrs: vec!["10.0.0.0/8".parse().unwrap()],
            ..ScopePolicy::default()
        };
        assert!(include.check_ip(ip("::ffff:10.1.2.3")).is_none());

        // An asset built with a mapped address (not through Asset::from_ip or a
        // parser) is decided, deduplicated and targeted as IPv4.
        let mut raw = Asset::from_ip(ip("10.0.0.9"));
        raw.id = "raw".into();
        raw.private_ip = ip("::ffff:127.0.0.100");
        raw.private_ips = vec![ip("::ffff:10.0.0.1")];
        let (t, s) = apply(
            &[asset([10, 0, 0, 1], None), raw],
            &policy,
            &RatePolicy::default(),
        );
        assert_eq!(t.len(), 1);
        let skips: Vec<_> = s.iter().map(|s| format!("{} {}", s.ip, s.reason)).collect();
        assert_eq!(
            skips,
            [
                "127.0.0.100 address in excluded block 127.0.0.96/27",
                "10.0.0.1 same address as asset 10.0.0.1"
            ]
        );
    }

    #[test]
    fn non_unicast_targets_are_refused_unless_their_class_is_allowed() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let policy = ScopePolicy::default();
        for (a, class) in [
            ("224.0.0.1", AddressClass::Multicast),
            ("ff02::1", AddressClass::Multicast),
            ("255.255.255.255", AddressClass::Broadcast),
            ("0.0.0.0", AddressClass::Unspecified),
            ("::", AddressClass::Unspecified),
            ("169.254.169.254", AddressClass::LinkLocal),
            ("fe80::1", AddressClass::LinkLocal),
            ("::ffff:169.254.169.254", AddressClass::LinkLocal),
        ] {
            let address = address::canonical(ip(a));
            assert_eq!(
                policy.check_ip(ip(a)),
                Some(SkipReason::AddressClass { class, address }),
                "{a}"
            );
            let allowed = ScopePolicy {
                allow_address_classes: [class].into(),
                ..ScopePolicy::default()
            };
            assert_eq!(allowed.check_ip(ip(a)), None, "{a} with {class} allowed");
            assert_eq!(
                policy.check_job_target(ip(a), &[class].into()),
                None,
                "{a} in a job that allowed {class}"
            );
            assert!(policy.check_job_target(ip(a), &BTreeSet::new()).is_some());
            assert_eq!(
                policy.refuse_class(ip(a)),
                Some(ClassRefusal { ip: address, class })
            );
            assert_eq!(allowed.refuse_class(ip(a)), None);
        }
        for ok in ["127.0.0.1", "::1", "10.0.0.255", "10.0.0.0", "fd00::1"] {
            assert_eq!(policy.check_ip(ip(ok)), None, "{ok}");
        }
        let r = policy.check_ip(ip("169.254.169.254")).unwrap();
        assert_eq!(
            r.to_string(),
            "169.254.169.254 is link-local (the instance metadata service); scanfleet refuses \
             link-local targets unless --allow-address-class link-local"
        );
        assert_eq!(r.kind(), "address-class");
        let s = Skipped {
            asset_id: "m".into(),
            ip: ip("169.254.169.254"),
            reason: r,
        };
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({"asset_id": "m", "ip": "169.254.169.254", "reason": "address-class",
                               "class": "link-local", "address": "169.254.169.254"})
        );
    }

    #[test]
    fn private_only_never_passes_link_local() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(!is_private(ip("169.254.169.254")));
        assert!(is_private(ip("::ffff:10.0.0.1")) && is_private(ip("100.64.0.1")));
        let policy = ScopePolicy {
            private_only: true,
            allow_address_classes: [AddressClass::LinkLocal].into(),
            ..ScopePolicy::default()
        };
        assert_eq!(
            policy.check_ip(ip("169.254.169.254")),
            Some(SkipReason::NotPrivate)
        );
        assert_eq!(policy.check_ip(ip("10.0.0.1")), None);
    }

    #[test]
    fn the_aws_prohibited_types_cannot_be_removed() {
        let emptied = ScopePolicy {
            prohibited_instance_types: Vec::new(),
            ..ScopePolicy::default()
        };
        let from_config: ScopePolicy =
            serde_json::from_str(r#"{"prohibited_instance_types": []}"#).unwrap();
        for policy in [&emptied, &from_config] {
            for t in PROHIBITED_INSTANCE_TYPES.iter().chain(&["T2.NANO"]) {
                assert!(policy.is_prohibited_type(t), "{t}");
                let a = asset([10, 0, 0, 1], Some(t));
                assert!(matches!(
                    policy.check(&a),
                    Some(SkipReason::ProhibitedInstanceType { .. })
                ));
            }
            assert!(!policy.is_prohibited_type("m5.large"));
        }
        let more = ScopePolicy {
            prohibited_instance_types: vec!["c5.large".into()],
            ..ScopePolicy::default()
        };
        assert!(more.is_prohibited_type("c5.large") && more.is_prohibited_type("t2.nano"));
    }

    #[test]
    fn every_address_of_an_instance_is_a_target() {
        let a = instance("i-1", &["10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.1.9"]);
        let (t, s) = apply(
            &[a],
            &ScopePolicy::aws_preauthorized(),
            &RatePolicy::default(),
        );
        assert!(s.is_empty());
        let ips: Vec<_> = t
            .iter()
            .map(|t| (t.asset_id.as_str(), t.ip.to_string()))
            .collect();
        assert_eq!(
            ips,
            [
                ("i-1", "10.0.0.1".into()),
                ("i-1", "10.0.0.2".into()),
                ("i-1", "10.0.1.9".into())
            ]
        );
    }

    #[test]
    fn aws_rules_each_have_their_reason() {
        let mut stopped = instance("i-stopped", &["10.0.0.2"]);
        stopped.state = Some("stopped".into());
        let mut nano = instance("i-nano", &["10.0.0.3"]);
        nano.instance_type = Some("t2.nano".into());
        let mut other_acct = instance("i-acct", &["10.0.0.4"]);
        other_acct.account_id = Some("222222222222".into());
        let mut other_vpc = instance("i-vpc", &["10.0.0.5"]);
        other_vpc.vpc_id = Some("vpc-2".into());
        let mut tagged = instance("i-tag", &["10.0.0.6"]);
        tagged.tags.insert("scan".into(), "no".into());
        let mut untagged = instance("i-untagged", &["10.0.0.7"]);
        untagged.tags.clear();
        let mut public = instance("i-pub", &["10.0.0.8", "54.1.2.3"]);
        public.public_ips = vec!["54.1.2.3".parse().unwrap()];
        let mut excluded_vpc = instance("i-xvpc", &["10.0.0.9"]);
        excluded_vpc.vpc_id = Some("vpc-3".into());
        let typed = Asset::from_ip("10.0.0.10".parse().unwrap());
        let mut ok = instance("i-ok", &["10.0.0.1"]);
        let mut dup = instance("i-dup", &["10.0.0.1"]);
        for a in [
            &mut ok,
            &mut dup,
            &mut stopped,
            &mut nano,
            &mut other_acct,
            &mut other_vpc,
            &mut public,
            &mut excluded_vpc,
        ] {
            a.tags.insert("env".into(), "prod".into());
        }
        tagged.tags.insert("env".into(), "prod".into());
        other_vpc.vpc_id = Some("vpc-2".into());
        let policy = ScopePolicy {
            include_accounts: vec!["111111111111".into()],
            exclude_accounts: vec!["333333333333".into()],
            include_vpcs: vec!["vpc-1".into(), "vpc-3".into()],
            exclude_vpcs: vec!["vpc-3".into()],
            include_tags: vec!["env".parse().unwrap()],
            exclude_tags: vec!["scan=no".parse().unwrap()],
            exclude_cidrs: vec!["10.9.0.0/16".parse().unwrap()],
            ..ScopePolicy::aws_preauthorized()
        };
        let assets = [
            ok,
            dup,
            stopped,
            nano,
            other_acct,
            other_vpc,
            tagged,
            untagged,
            public,
            excluded_vpc,
            typed,
        ];
        let (t, s) = apply(&assets, &policy, &RatePolicy::default());
        let targets: Vec<_> = t
            .iter()
            .map(|t| format!("{} {}", t.asset_id, t.ip))
            .collect();
        assert_eq!(targets, ["i-ok 10.0.0.1", "i-pub 10.0.0.8"]);
        let skips: Vec<_> = s
            .iter()
            .map(|s| format!("{} {}: {}", s.asset_id, s.ip, s.reason))
            .collect();
        assert_eq!(
            skips,
            [
                "i-dup 10.0.0.1: same address as asset i-ok",
                "i-stopped 10.0.0.2: instance is stopped, not running",
                "i-nano 10.0.0.3: instance type t2.nano may not be scanned",
                "i-acct 10.0.0.4: account 222222222222 is not included",
                "i-vpc 10.0.0.5: VPC vpc-2 is not included",
                "i-tag 10.0.0.6: tag scan=no is excluded",
                "i-untagged 10.0.0.7: carries none of the included tags",
                "i-pub 54.1.2.3: public address of the instance (AWS pre-authorized scope)",
                "i-xvpc 10.0.0.9: VPC vpc-3 is excluded",
                "10.0.0.10 10.0.0.10: not an instance returned by discovery (AWS pre-authorized scope)",
            ]
        );
        let counts = count_by_reason(&s);
        assert_eq!(counts["not-running"], 1);
        assert_eq!(counts.values().sum::<usize>(), s.len());
    }

    #[test]
    fn tag_rules_parse_and_serialize() {
        let r: TagRule = "aws:autoscaling:groupName=web=1".parse().unwrap();
        assert_eq!(
            (r.key.as_str(), r.value.as_deref()),
            ("aws:autoscaling:groupName", Some("web=1"))
        );
        assert_eq!("env".parse::<TagRule>().unwrap().value, None);
        assert!("=x".parse::<TagRule>().is_err());
        let p: ScopePolicy =
            serde_json::from_str(r#"{"include_tags":["env=prod","team"]}"#).unwrap();
        assert_eq!(p.include_tags[1].to_string(), "team");
        assert!(p.running_only && !p.discovered_only);
        assert_eq!(p.prohibited_instance_types, PROHIBITED_INSTANCE_TYPES);
        let back = serde_json::to_value(&p).unwrap();
        assert_eq!(
            back["include_tags"],
            serde_json::json!(["env=prod", "team"])
        );
        let e = serde_json::from_str::<ScopePolicy>(r#"{"exclude_tags":[""]}"#).unwrap_err();
        assert!(e.to_string().contains("KEY=VALUE"), "{e}");
        let s = Skipped {
            asset_id: "i-1".into(),
            ip: "10.0.0.1".parse().unwrap(),
            reason: SkipReason::NotRunning {
                state: "stopped".into(),
            },
        };
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({"asset_id": "i-1", "ip": "10.0.0.1", "reason": "not-running", "state": "stopped"})
        );
    }

    #[test]
    fn assets_without_state_count_as_running() {
        let (t, s) = apply(
            &[asset([10, 0, 0, 1], None)],
            &ScopePolicy::default(),
            &RatePolicy::default(),
        );
        assert_eq!((t.len(), s.len()), (1, 0));
        let mut off = instance("i-1", &["10.0.0.1"]);
        off.state = Some("stopped".into());
        let lax = ScopePolicy {
            running_only: false,
            ..ScopePolicy::default()
        };
        assert_eq!(
            apply(std::slice::from_ref(&off), &lax, &RatePolicy::default())
                .0
                .len(),
            1
        );
    }

    const KINDS: [Option<&str>; 5] = [
        None,
        Some("t2.nano"),
        Some("m5.large"),
        Some("t1.micro"),
        Some("m1.small"),
    ];
    const STATES: [Option<&str>; 4] = [None, Some("running"), Some("stopped"), Some("pending")];

    /// Random instances over a small space of accounts, VPCs, tags, states and
    /// addresses, so that rules and duplicates actually hit.
    fn arb_assets() -> impl Strategy<Value = Vec<Asset>> {
        let one = (
            proptest::collection::vec(0u8..24, 1..4),
            0usize..5,
            0usize..4,
            0u8..3,
            0u8..3,
            proptest::collection::btree_map(0u8..3, 0u8..2, 0..3),
            any::<bool>(),
            any::<bool>(),
        );
        proptest::collection::vec(one, 0..30).prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (ips, ty, st, acct, vpc, tags, discovered, public))| {
                    let ips: Vec<IpAddr> = ips
                        .iter()
                        .map(|o| IpAddr::V4(Ipv4Addr::new(10, 0, 0, *o)))
                        .collect();
                    let mut a = Asset::from_ip(ips[0]);
                    a.private_ips = ips.clone();
                    if public {
                        a.public_ips = vec![*ips.last().unwrap_or(&ips[0])];
                    }
                    a.instance_type = KINDS[ty].map(str::to_string);
                    a.state = STATES[st].map(str::to_string);
                    a.account_id = Some(format!("{acct}"));
                    a.vpc_id = Some(format!("vpc-{vpc}"));
                    a.region = Some("r".into());
                    a.tags = tags
                        .into_iter()
                        .map(|(k, v)| (format!("k{k}"), format!("v{v}")))
                        .collect();
                    a.id = if discovered {
                        format!("i-{i}")
                    } else {
                        format!("h{i}")
                    };
                    a
                })
                .collect()
        })
    }

    fn arb_policy() -> impl Strategy<Value = ScopePolicy> {
        let names = |p: &'static str| {
            proptest::collection::vec((0u8..3).prop_map(move |n| format!("{p}{n}")), 0..2)
        };
        let tags = proptest::collection::vec(
            (0u8..3, proptest::option::of(0u8..2)).prop_map(|(k, v)| TagRule {
                key: format!("k{k}"),
                value: v.map(|v| format!("v{v}")),
            }),
            0..2,
        );
        let cidrs = proptest::collection::vec(
            (0u8..24, 28u8..=32).prop_map(|(o, p)| {
                IpNet::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, o)), p)
                    .unwrap()
                    .trunc()
            }),
            0..2,
        );
        (
            names(""),
            names(""),
            names("vpc-"),
            names("vpc-"),
            tags.clone(),
            tags,
            cidrs.clone(),
            cidrs,
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(ia, xa, iv, xv, it, xt, ic, xc, running_only, discovered_only)| ScopePolicy {
                    include_accounts: ia,
                    exclude_accounts: xa,
                    include_vpcs: iv,
                    exclude_vpcs: xv,
                    include_tags: it,
                    exclude_tags: xt,
                    include_cidrs: ic,
                    exclude_cidrs: xc,
                    running_only,
                    discovered_only,
                    ..ScopePolicy::default()
                },
            )
    }

    fn target_ips(t: &[Target]) -> BTreeSet<IpAddr> {
        t.iter().map(|t| t.ip).collect()
    }

    proptest! {
        /// Every asset is accounted for exactly once, and no target is excluded.
        #[test]
        fn partition_is_exact(ips in proptest::collection::vec(any::<u32>(), 0..60),
                              types in proptest::collection::vec(0usize..5, 60),
                              excl in any::<u32>(), prefix in 0u8..=32, private_only in any::<bool>()) {
            let assets: Vec<Asset> = ips.iter().zip(&types).enumerate()
                .map(|(i, (ip, t))| Asset { id: format!("a{i}"), ..asset(ip.to_be_bytes(), KINDS[*t]) }).collect();
            let net: IpNet = format!("{}/{}", Ipv4Addr::from(excl), prefix).parse::<IpNet>().unwrap().trunc();
            let policy = ScopePolicy { exclude_cidrs: vec![net], private_only, ..ScopePolicy::default() };
            let (t, s) = apply(&assets, &policy, &RatePolicy::default());
            prop_assert_eq!(t.len() + s.len(), assets.len());
            for target in &t {
                prop_assert!(!net.contains(&target.ip));
                prop_assert!(!private_only || is_private(target.ip));
                prop_assert!(policy.allows(target));
                prop_assert!(target.rate_pps > 0);
            }
            for target in &t {
                let a = assets.iter().find(|a| a.id == target.asset_id).unwrap();
                prop_assert!(a.instance_type.as_deref().is_none_or(|ty| !PROHIBITED_INSTANCE_TYPES.contains(&ty)));
            }
            let mut uniq: Vec<_> = t.iter().map(|x| x.ip).collect(); uniq.sort(); uniq.dedup();
            prop_assert_eq!(uniq.len(), t.len());
        }

        /// Every distinct address of every asset has exactly one outcome, and each
        /// target satisfies every rule of the policy.
        #[test]
        fn every_address_decided_once_and_targets_obey_every_rule(assets in arb_assets(), policy in arb_policy()) {
            let (t, s) = apply(&assets, &policy, &RatePolicy::default());
            let mut outcomes: Vec<(String, IpAddr)> = t.iter().map(|t| (t.asset_id.clone(), t.ip))
                .chain(s.iter().map(|s| (s.asset_id.clone(), s.ip))).collect();
            outcomes.sort();
            let mut expected: Vec<(String, IpAddr)> = assets.iter()
                .flat_map(|a| a.addresses().into_iter().map(|ip| (a.id.clone(), ip))).collect();
            expected.sort();
            prop_assert_eq!(outcomes, expected);
            prop_assert_eq!(target_ips(&t).len(), t.len());
            for target in &t {
                let a = assets.iter().find(|a| a.id == target.asset_id).unwrap();
                prop_assert!(a.addresses().contains(&target.ip));
                prop_assert!(policy.check_asset(a).is_none());
                prop_assert!(policy.allows(target));
                prop_assert!(!policy.running_only || a.state.as_deref().is_none_or(|s| s == RUNNING));
                prop_assert!(!policy.exclude_tags.iter().any(|r| r.matches(&a.tags)));
                prop_assert!(policy.include_tags.is_empty() || policy.include_tags.iter().any(|r| r.matches(&a.tags)));
                let acct = a.account_id.clone().unwrap_or_default();
                prop_assert!(!policy.exclude_accounts.contains(&acct));
                prop_assert!(policy.include_accounts.is_empty() || policy.include_accounts.contains(&acct));
                let vpc = a.vpc_id.clone().unwrap_or_default();
                prop_assert!(!policy.exclude_vpcs.contains(&vpc));
                prop_assert!(policy.include_vpcs.is_empty() || policy.include_vpcs.contains(&vpc));
                prop_assert!(policy.include_cidrs.is_empty() || policy.include_cidrs.iter().any(|c| c.contains(&target.ip)));
                if policy.discovered_only {
                    prop_assert!(is_discovered_instance(a));
                    prop_assert!(!a.public_ips.contains(&target.ip));
                }
            }
        }

        /// Adding an exclusion never adds a target address.
        #[test]
        fn exclusions_only_remove(assets in arb_assets(), policy in arb_policy(), which in 0usize..4, n in 0u8..3) {
            let before = target_ips(&apply(&assets, &policy, &RatePolicy::default()).0);
            let mut stricter = policy.clone();
            match which {
                0 => stricter.exclude_accounts.push(format!("{n}")),
                1 => stricter.exclude_vpcs.push(format!("vpc-{n}")),
                2 => stricter.exclude_tags.push(TagRule { key: format!("k{n}"), value: None }),
                _ => stricter.exclude_cidrs.push(IpNet::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, n * 4)), 30).unwrap()),
            }
            let after = target_ips(&apply(&assets, &stricter, &RatePolicy::default()).0);
            prop_assert!(after.is_subset(&before), "{:?} not within {:?}", after, before);
        }

        /// An asset without a state is decided exactly like the same asset marked running.
        #[test]
        fn no_state_means_running(assets in arb_assets(), policy in arb_policy()) {
            let marked: Vec<Asset> = assets.iter().cloned()
                .map(|mut a| { a.state.get_or_insert_with(|| RUNNING.to_string()); a }).collect();
            let lax = ScopePolicy { discovered_only: false, ..policy };
            prop_assert_eq!(apply(&assets, &lax, &RatePolicy::default()), apply(&marked, &lax, &RatePolicy::default()));
        }
    }
}
