//! Scope policy: a pure function from assets and policy to (targets, skipped with
//! reason). Nothing reaches a queue without passing through [`apply`], and workers
//! call [`ScopePolicy::allows`] again before they probe.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::rate::RatePolicy;
use crate::types::{Asset, Target};

/// Instance types that AWS's penetration-testing policy excludes from scanning.
pub const PROHIBITED_INSTANCE_TYPES: [&str; 3] = ["m1.small", "t1.micro", "t2.nano"];

/// What may be scanned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopePolicy {
    /// Addresses inside any of these blocks are never scanned.
    #[serde(default)]
    pub exclude_cidrs: Vec<IpNet>,
    /// Refuse addresses outside private, loopback and unique-local space.
    #[serde(default)]
    pub private_only: bool,
    /// Instance types never scanned.
    #[serde(default = "default_prohibited")]
    pub prohibited_instance_types: Vec<String>,
}

fn default_prohibited() -> Vec<String> {
    PROHIBITED_INSTANCE_TYPES.iter().map(|s| s.to_string()).collect()
}

impl Default for ScopePolicy {
    fn default() -> Self {
        ScopePolicy { exclude_cidrs: Vec::new(), private_only: false, prohibited_instance_types: default_prohibited() }
    }
}

/// Why an asset was left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum SkipReason {
    /// The address lies in an excluded block.
    ExcludedCidr { cidr: IpNet },
    /// Private-only mode and the address is public.
    NotPrivate,
    /// The instance type may not be scanned.
    ProhibitedInstanceType { instance_type: String },
    /// The same address already came from another asset.
    DuplicateAddress { first_asset: String },
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::ExcludedCidr { cidr } => write!(f, "address in excluded block {cidr}"),
            SkipReason::NotPrivate => f.write_str("not a private address (private-only scope)"),
            SkipReason::ProhibitedInstanceType { instance_type } => {
                write!(f, "instance type {instance_type} may not be scanned")
            }
            SkipReason::DuplicateAddress { first_asset } => write!(f, "same address as asset {first_asset}"),
        }
    }
}

/// An asset that scope left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    pub asset_id: String,
    pub ip: IpAddr,
    #[serde(flatten)]
    pub reason: SkipReason,
}

/// True for RFC 1918, loopback, link-local, CGNAT (RFC 6598), IPv6 unique-local and loopback.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private() || v4.is_loopback() || v4.is_link_local() || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

impl ScopePolicy {
    /// Decide one asset; `None` means in scope.
    pub fn check(&self, asset: &Asset) -> Option<SkipReason> {
        if let Some(t) = &asset.instance_type
            && self.prohibited_instance_types.iter().any(|p| p.eq_ignore_ascii_case(t))
        {
            return Some(SkipReason::ProhibitedInstanceType { instance_type: t.clone() });
        }
        self.check_ip(asset.private_ip)
    }

    /// Decide one address without asset context.
    pub fn check_ip(&self, ip: IpAddr) -> Option<SkipReason> {
        if let Some(cidr) = self.exclude_cidrs.iter().find(|c| c.contains(&ip)) {
            return Some(SkipReason::ExcludedCidr { cidr: *cidr });
        }
        if self.private_only && !is_private(ip) {
            return Some(SkipReason::NotPrivate);
        }
        None
    }

    /// Defence in depth for workers: true when the target passes the address rules.
    pub fn allows(&self, target: &Target) -> bool {
        self.check_ip(target.ip).is_none()
    }
}

/// Apply scope and rate policy: every asset ends up either as a target with its
/// probe budget or as a skip with its reason. Order of assets is kept.
pub fn apply(assets: &[Asset], scope: &ScopePolicy, rate: &RatePolicy) -> (Vec<Target>, Vec<Skipped>) {
    let mut targets = Vec::with_capacity(assets.len());
    let mut skipped = Vec::new();
    let mut seen: std::collections::HashMap<IpAddr, &str> = std::collections::HashMap::new();
    for a in assets {
        let reason = scope.check(a).or_else(|| {
            seen.get(&a.private_ip).map(|first| SkipReason::DuplicateAddress { first_asset: first.to_string() })
        });
        match reason {
            Some(reason) => skipped.push(Skipped { asset_id: a.id.clone(), ip: a.private_ip, reason }),
            None => {
                seen.insert(a.private_ip, &a.id);
                targets.push(Target {
                    ip: a.private_ip,
                    asset_id: a.id.clone(),
                    rate_pps: rate.per_target_pps(a.instance_type.as_deref()),
                });
            }
        }
    }
    (targets, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn asset(ip: [u8; 4], ty: Option<&str>) -> Asset {
        let mut a = Asset::from_ip(IpAddr::V4(Ipv4Addr::from(ip)));
        a.instance_type = ty.map(str::to_string);
        a
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

    proptest! {
        /// Every asset is accounted for exactly once, and no target is excluded.
        #[test]
        fn partition_is_exact(ips in proptest::collection::vec(any::<u32>(), 0..60),
                              types in proptest::collection::vec(0usize..5, 60),
                              excl in any::<u32>(), prefix in 0u8..=32, private_only in any::<bool>()) {
            let kinds = [None, Some("t2.nano"), Some("m5.large"), Some("t1.micro"), Some("m1.small")];
            let assets: Vec<Asset> = ips.iter().zip(&types).enumerate()
                .map(|(i, (ip, t))| Asset { id: format!("a{i}"), ..asset(ip.to_be_bytes(), kinds[*t]) }).collect();
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
    }
}
