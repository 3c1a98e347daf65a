//! Network zones: VPCs joined by active peering connections (across accounts and
//! regions too) form one zone. A worker group deployed in a zone can reach every
//! VPC of it and nothing else, so the planner shards targets per zone and each
//! zone has its own queue.
//!
//! A zone is named after its lexicographically smallest VPC id
//! (`zone-vpc-0abc...`): the name is the same whatever order discovery returned
//! things in, and valid as part of an SQS queue name. It changes only when
//! peering joins the zone to one holding a smaller VPC id.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use ipnet::IpNet;
use scanfleet_common::{Asset, Target};
use serde::{Deserialize, Serialize};

use super::network::Network;

pub use scanfleet_common::DEFAULT_ZONE;

/// One VPC of a zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneVpc {
    pub vpc_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cidrs: Vec<IpNet>,
    #[serde(default)]
    pub is_default: bool,
    /// False for a peer VPC that discovery did not describe (its account failed or
    /// is outside the estate): it still joins the zone, so that zone names do not
    /// depend on which accounts answered.
    pub discovered: bool,
    /// Instances discovered in this VPC.
    pub instances: usize,
}

/// VPCs that reach each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zone {
    pub name: String,
    /// Sorted by VPC id.
    pub vpcs: Vec<ZoneVpc>,
    /// Active peering connections inside the zone, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peerings: Vec<String>,
}

impl Zone {
    /// Instances in the zone.
    pub fn instances(&self) -> usize {
        self.vpcs.iter().map(|v| v.instances).sum()
    }

    /// Accounts whose VPCs are in the zone.
    pub fn accounts(&self) -> BTreeSet<&str> {
        self.vpcs
            .iter()
            .filter_map(|v| v.account_id.as_deref())
            .collect()
    }
}

/// The zone name for a set of VPCs whose smallest id is `vpc_id`.
pub fn zone_name(smallest_vpc_id: &str) -> String {
    format!("zone-{smallest_vpc_id}")
}

/// Union-find over indices, with path halving.
struct Dsu(Vec<usize>);

impl Dsu {
    fn find(&mut self, mut x: usize) -> usize {
        while self.0[x] != x {
            self.0[x] = self.0[self.0[x]];
            x = self.0[x];
        }
        x
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.0[ra.max(rb)] = ra.min(rb);
        }
    }
}

/// Zones of a network, sorted by name; `instance_vpcs` yields the VPC of each
/// instance, for counts. Discovery calls it on every rebuild of its assets, so a
/// discovery result comes with its zones.
pub fn from_network<'a>(
    net: &Network,
    instance_vpcs: impl IntoIterator<Item = &'a str>,
) -> Vec<Zone> {
    // Every VPC, discovered or only named by a peering; BTreeMap keeps ids sorted.
    let mut vpcs: BTreeMap<&str, ZoneVpc> = BTreeMap::new();
    for v in &net.vpcs {
        vpcs.entry(v.vpc_id.as_str()).or_insert_with(|| ZoneVpc {
            vpc_id: v.vpc_id.clone(),
            account_id: Some(v.location.account_id.clone()),
            region: Some(v.location.region.clone()),
            cidrs: v.cidrs.clone(),
            is_default: v.is_default,
            discovered: true,
            instances: 0,
        });
    }
    let active: Vec<_> = net.peerings.iter().filter(|p| p.is_active()).collect();
    for p in &active {
        for side in [&p.requester, &p.accepter] {
            vpcs.entry(side.vpc_id.as_str()).or_insert_with(|| ZoneVpc {
                vpc_id: side.vpc_id.clone(),
                account_id: side.account_id.clone(),
                region: side.region.clone(),
                cidrs: Vec::new(),
                is_default: false,
                discovered: false,
                instances: 0,
            });
        }
    }
    for vpc in instance_vpcs {
        if let Some(v) = vpcs.get_mut(vpc) {
            v.instances += 1;
        }
    }
    let index: HashMap<&str, usize> = vpcs.keys().enumerate().map(|(i, k)| (*k, i)).collect();
    let mut dsu = Dsu((0..vpcs.len()).collect());
    for p in &active {
        dsu.union(
            index[p.requester.vpc_id.as_str()],
            index[p.accepter.vpc_id.as_str()],
        );
    }
    // Roots are the smallest index of each set, which is the smallest VPC id.
    let mut zones: BTreeMap<usize, Zone> = BTreeMap::new();
    for (i, (id, v)) in vpcs.into_iter().enumerate() {
        let root = dsu.find(i);
        zones
            .entry(root)
            .or_insert_with(|| Zone {
                name: zone_name(id),
                vpcs: Vec::new(),
                peerings: Vec::new(),
            })
            .vpcs
            .push(v);
    }
    for p in &active {
        let root = dsu.find(index[p.requester.vpc_id.as_str()]);
        if let Some(z) = zones.get_mut(&root) {
            z.peerings.push(p.peering_id.clone());
        }
    }
    let mut out: Vec<Zone> = zones.into_values().collect();
    for z in &mut out {
        z.peerings.sort();
        z.peerings.dedup();
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The zone of every VPC.
pub fn by_vpc(zones: &[Zone]) -> HashMap<&str, &str> {
    zones
        .iter()
        .flat_map(|z| {
            z.vpcs
                .iter()
                .map(move |v| (v.vpc_id.as_str(), z.name.as_str()))
        })
        .collect()
}

/// Set each asset's zone from its VPC; assets without a known VPC get none.
pub fn assign(assets: &mut [Asset], zones: &[Zone]) {
    let map = by_vpc(zones);
    for a in assets {
        a.zone = a
            .vpc_id
            .as_deref()
            .and_then(|v| map.get(v))
            .map(|z| z.to_string());
    }
}

/// Group targets by the zone of their asset, the input of the planner. Targets of
/// assets without a zone go to [`DEFAULT_ZONE`].
pub fn group_targets(assets: &[Asset], targets: Vec<Target>) -> BTreeMap<String, Vec<Target>> {
    let zone_of: HashMap<&str, &str> = assets
        .iter()
        .filter_map(|a| a.zone.as_deref().map(|z| (a.id.as_str(), z)))
        .collect();
    let mut out: BTreeMap<String, Vec<Target>> = BTreeMap::new();
    for t in targets {
        let zone = zone_of
            .get(t.asset_id.as_str())
            .copied()
            .unwrap_or(DEFAULT_ZONE);
        out.entry(zone.to_string()).or_default().push(t);
    }
    out
}

/// The `scanfleet zones` listing: one block per zone with its VPCs.
pub struct Listing<'a>(pub &'a [Zone]);

impl fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return writeln!(f, "no zones: no VPC was discovered");
        }
        for z in self.0 {
            let accounts = z.accounts().len();
            writeln!(
                f,
                "{}  {} VPC{}, {} account{}, {} instance{}{}",
                z.name,
                z.vpcs.len(),
                plural(z.vpcs.len()),
                accounts,
                plural(accounts),
                z.instances(),
                plural(z.instances()),
                if z.peerings.is_empty() {
                    String::new()
                } else {
                    format!(", peered by {}", z.peerings.join(" "))
                }
            )?;
            for v in &z.vpcs {
                let cidrs: Vec<String> = v.cidrs.iter().map(|c| c.to_string()).collect();
                writeln!(
                    f,
                    "  {:<24} {:<12} {:<16} {:<18} {}{}",
                    v.vpc_id,
                    v.account_id.as_deref().unwrap_or("-"),
                    v.region.as_deref().unwrap_or("-"),
                    if cidrs.is_empty() {
                        "-".to_string()
                    } else {
                        cidrs.join(",")
                    },
                    if v.discovered {
                        format!("{} instance{}", v.instances, plural(v.instances))
                    } else {
                        "not discovered".into()
                    },
                    if v.is_default { ", default VPC" } else { "" }
                )?;
            }
        }
        Ok(())
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::estate::network::{Location, Peering, PeeringSide, Vpc};
    use proptest::prelude::*;

    fn vpc(id: &str, account: &str) -> Vpc {
        Vpc {
            vpc_id: id.into(),
            location: Location {
                account_id: account.into(),
                region: "us-east-1".into(),
            },
            cidrs: vec![],
            is_default: false,
            tags: Default::default(),
        }
    }

    fn peering(id: &str, a: &str, b: &str, status: &str) -> Peering {
        let side = |v: &str| PeeringSide {
            vpc_id: v.into(),
            account_id: None,
            region: None,
        };
        Peering {
            peering_id: id.into(),
            status: status.into(),
            requester: side(a),
            accepter: side(b),
        }
    }

    fn names(z: &[Zone]) -> Vec<(String, Vec<String>)> {
        z.iter()
            .map(|z| {
                (
                    z.name.clone(),
                    z.vpcs.iter().map(|v| v.vpc_id.clone()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn active_peering_joins_and_others_do_not() {
        let net = Network {
            vpcs: vec![
                vpc("vpc-c", "1"),
                vpc("vpc-b", "2"),
                vpc("vpc-a", "1"),
                vpc("vpc-d", "3"),
                vpc("vpc-e", "3"),
            ],
            peerings: vec![
                peering("pcx-1", "vpc-c", "vpc-b", "active"),
                peering("pcx-2", "vpc-d", "vpc-e", "pending-acceptance"),
                peering("pcx-3", "vpc-b", "vpc-x", "active"),
                peering("pcx-4", "vpc-a", "vpc-e", "deleted"),
            ],
            ..Network::default()
        };
        let z = from_network(&net, ["vpc-c", "vpc-c", "vpc-b", "vpc-nowhere"]);
        assert_eq!(
            names(&z),
            [
                ("zone-vpc-a".to_string(), vec!["vpc-a".to_string()]),
                (
                    "zone-vpc-b".into(),
                    vec!["vpc-b".into(), "vpc-c".into(), "vpc-x".into()]
                ),
                ("zone-vpc-d".into(), vec!["vpc-d".into()]),
                ("zone-vpc-e".into(), vec!["vpc-e".into()]),
            ]
        );
        assert_eq!(z[1].peerings, ["pcx-1", "pcx-3"]);
        assert_eq!(z[1].instances(), 3);
        assert!(!z[1].vpcs[2].discovered);
        let text = Listing(&z).to_string();
        assert!(
            text.contains("zone-vpc-b  3 VPCs, 2 accounts, 3 instances, peered by pcx-1 pcx-3"),
            "{text}"
        );
        assert!(text.contains("not discovered"), "{text}");

        let mut assets = vec![
            Asset::from_ip("10.0.0.1".parse().unwrap()),
            Asset::from_ip("10.0.0.2".parse().unwrap()),
        ];
        assets[0].vpc_id = Some("vpc-c".into());
        assign(&mut assets, &z);
        assert_eq!(assets[0].zone.as_deref(), Some("zone-vpc-b"));
        assert_eq!(assets[1].zone, None);
        let targets = assets
            .iter()
            .map(|a| Target {
                ip: a.private_ip,
                asset_id: a.id.clone(),
                rate_pps: 1,
            })
            .collect();
        let grouped = group_targets(&assets, targets);
        assert_eq!(
            grouped.keys().collect::<Vec<_>>(),
            ["default", "zone-vpc-b"]
        );
    }

    proptest! {
        /// Zones are the connected components of the active-peering graph, named by
        /// their smallest VPC, independent of input order.
        #[test]
        #[allow(clippy::needless_range_loop)]
        fn zones_are_components(edges in proptest::collection::vec((0u8..12, 0u8..12, any::<bool>()), 0..20), n in 1u8..12, seed in any::<u64>()) {
            let vpcs: Vec<Vpc> = (0..n).map(|i| vpc(&format!("vpc-{i:02}"), "1")).collect();
            let peerings: Vec<Peering> = edges.iter().enumerate()
                .map(|(k, (a, b, on))| peering(&format!("pcx-{k}"), &format!("vpc-{:02}", a % n), &format!("vpc-{:02}", b % n), if *on { "active" } else { "rejected" }))
                .collect();
            let net = Network { vpcs: vpcs.clone(), peerings: peerings.clone(), ..Network::default() };
            let zones = from_network(&net, []);
            // Brute-force reachability.
            let n = n as usize;
            let mut reach = vec![vec![false; n]; n];
            for (i, row) in reach.iter_mut().enumerate() { row[i] = true; }
            for (a, b, on) in &edges { if *on { let (a, b) = ((*a as usize) % n, (*b as usize) % n); reach[a][b] = true; reach[b][a] = true; } }
            for k in 0..n { for i in 0..n { for j in 0..n { if reach[i][k] && reach[k][j] { reach[i][j] = true; } } } }
            let map = by_vpc(&zones);
            prop_assert_eq!(map.len(), n);
            for i in 0..n { for j in 0..n {
                let (a, b) = (format!("vpc-{i:02}"), format!("vpc-{j:02}"));
                prop_assert_eq!(map[a.as_str()] == map[b.as_str()], reach[i][j]);
            } }
            for z in &zones { prop_assert_eq!(&z.name, &zone_name(&z.vpcs[0].vpc_id)); }
            // Order independence.
            let mut shuffled = net.clone();
            let len = shuffled.vpcs.len();
            shuffled.vpcs.rotate_left((seed as usize) % len);
            shuffled.peerings.reverse();
            prop_assert_eq!(from_network(&shuffled, []), zones);
        }
    }
}
