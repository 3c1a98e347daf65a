//! The network model of an estate, in plain serializable types: the instances
//! and the network around them (VPCs, peerings, subnets, route tables, network
//! ACLs, security groups, Elastic IPs). AWS discovery fills these from the EC2
//! API; zones and reachability are pure functions over them, so tests can build
//! an estate by hand.
//!
//! An absent optional field reads as `None` (serde's rule for `Option`), and a
//! `None` is left out when written.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use scanfleet_common::PortRange;
use serde::{Deserialize, Serialize};

/// Where a resource lives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Location {
    pub account_id: String,
    pub region: String,
}

/// One VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vpc {
    pub vpc_id: String,
    #[serde(flatten)]
    pub location: Location,
    /// IPv4 and IPv6 blocks.
    #[serde(default)]
    pub cidrs: Vec<IpNet>,
    #[serde(default)]
    pub is_default: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// One side of a peering connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeeringSide {
    pub vpc_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// A VPC peering connection, as either side's account reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peering {
    pub peering_id: String,
    /// EC2's status code: `active`, `pending-acceptance`, `rejected`, `deleted`, ...
    pub status: String,
    pub requester: PeeringSide,
    pub accepter: PeeringSide,
}

impl Peering {
    /// Only an active peering carries traffic.
    pub fn is_active(&self) -> bool {
        self.status == "active"
    }
}

/// One subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub subnet_id: String,
    pub vpc_id: String,
    #[serde(flatten)]
    pub location: Location,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cidr: Option<IpNet>,
}

/// One route of a route table. Only the target kinds reachability needs are kept
/// apart; any other target (NAT gateway, transit gateway, peering, instance, ...)
/// is in `target` as EC2 names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// IPv4 or IPv6 destination; `None` for prefix-list destinations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<IpNet>,
    /// The route's target id (`igw-...`, `nat-...`, `pcx-...`, `local`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `active` or `blackhole`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// One route table with its subnet associations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    pub route_table_id: String,
    pub vpc_id: String,
    #[serde(flatten)]
    pub location: Location,
    /// The VPC's main table: used by every subnet without an explicit association.
    #[serde(default)]
    pub main: bool,
    /// Subnets explicitly associated with this table.
    #[serde(default)]
    pub subnet_ids: Vec<String>,
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// One network ACL rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclEntry {
    pub rule_number: i32,
    pub egress: bool,
    /// IANA protocol number as a string, or `-1` for all.
    pub protocol: String,
    pub allow: bool,
    /// IPv4 or IPv6 block.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cidr: Option<IpNet>,
    /// Ports for TCP and UDP rules; `None` means all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ports: Option<PortRange>,
}

/// One network ACL with its subnet associations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAcl {
    pub network_acl_id: String,
    pub vpc_id: String,
    #[serde(flatten)]
    pub location: Location,
    /// The VPC's default ACL.
    #[serde(default)]
    pub is_default: bool,
    #[serde(default)]
    pub subnet_ids: Vec<String>,
    #[serde(default)]
    pub entries: Vec<AclEntry>,
}

/// One security group ingress permission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SgRule {
    /// `tcp`, `udp`, `icmp`, a protocol number, or `-1` for all.
    pub protocol: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from_port: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_port: Option<i32>,
    /// IPv4 and IPv6 source blocks (group and prefix-list sources are not kept:
    /// they never mean "the whole internet").
    #[serde(default)]
    pub sources: Vec<IpNet>,
}

/// One security group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    pub group_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    #[serde(flatten)]
    pub location: Location,
    #[serde(default)]
    pub ingress: Vec<SgRule>,
}

/// An Elastic IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElasticIp {
    pub public_ip: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_interface_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_ip: Option<IpAddr>,
    #[serde(flatten)]
    pub location: Location,
}

/// One private address of an interface and the public address mapped onto it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceAddress {
    pub private_ip: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<IpAddr>,
    #[serde(default)]
    pub primary: bool,
}

/// One network interface of an instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub interface_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    /// Device index: 0 is the primary interface.
    #[serde(default)]
    pub device_index: i32,
    #[serde(default)]
    pub addresses: Vec<InterfaceAddress>,
    /// Global IPv6 addresses (reachable without a public IPv4 address).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv6: Vec<IpAddr>,
    #[serde(default)]
    pub security_groups: Vec<String>,
}

/// One EC2 instance as DescribeInstances reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub instance_id: String,
    #[serde(flatten)]
    pub location: Location,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// Name of the image, when DescribeImages found it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_name: Option<String>,
    /// The instance's primary private address (absent for a terminated instance).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_ip: Option<IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<IpAddr>,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    /// Security groups of the instance (EC2 reports them for the primary interface).
    #[serde(default)]
    pub security_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Its type's network performance (DescribeInstanceTypes, once per type and region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<scanfleet_common::rate::InstanceNetwork>,
}

/// The network around the instances, for every discovered account and region.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    #[serde(default)]
    pub vpcs: Vec<Vpc>,
    #[serde(default)]
    pub peerings: Vec<Peering>,
    #[serde(default)]
    pub subnets: Vec<Subnet>,
    #[serde(default)]
    pub route_tables: Vec<RouteTable>,
    #[serde(default)]
    pub network_acls: Vec<NetworkAcl>,
    #[serde(default)]
    pub security_groups: Vec<SecurityGroup>,
    #[serde(default)]
    pub elastic_ips: Vec<ElasticIp>,
}

impl Network {
    /// Add another region's network. A peering reported by both of its accounts
    /// is then listed twice until [`Network::normalize`].
    pub fn extend(&mut self, other: Network) {
        self.vpcs.extend(other.vpcs);
        self.peerings.extend(other.peerings);
        self.subnets.extend(other.subnets);
        self.route_tables.extend(other.route_tables);
        self.network_acls.extend(other.network_acls);
        self.security_groups.extend(other.security_groups);
        self.elastic_ips.extend(other.elastic_ips);
    }

    /// Sort everything by id and keep one copy of each id (a peering is reported
    /// by both sides, a shared VPC by its owner and its participants), so the
    /// result does not depend on the order answers came in.
    pub fn normalize(&mut self) {
        fn by<T, K: Ord + Clone>(v: &mut Vec<T>, key: impl Fn(&T) -> K) {
            v.sort_by_key(|x| key(x));
            v.dedup_by(|a, b| key(a) == key(b));
        }
        by(&mut self.vpcs, |x| x.vpc_id.clone());
        by(&mut self.peerings, |x| x.peering_id.clone());
        by(&mut self.subnets, |x| x.subnet_id.clone());
        by(&mut self.route_tables, |x| x.route_table_id.clone());
        by(&mut self.network_acls, |x| x.network_acl_id.clone());
        by(&mut self.security_groups, |x| x.group_id.clone());
        by(&mut self.elastic_ips, |x| x.public_ip);
    }

    /// Everything of one account and region (peerings that touch it included).
    pub fn of(&self, at: &Location) -> Network {
        let touches = |s: &PeeringSide| {
            s.account_id.as_deref() == Some(at.account_id.as_str())
                && s.region.as_deref() == Some(at.region.as_str())
        };
        Network {
            vpcs: self
                .vpcs
                .iter()
                .filter(|x| &x.location == at)
                .cloned()
                .collect(),
            peerings: self
                .peerings
                .iter()
                .filter(|p| touches(&p.requester) || touches(&p.accepter))
                .cloned()
                .collect(),
            subnets: self
                .subnets
                .iter()
                .filter(|x| &x.location == at)
                .cloned()
                .collect(),
            route_tables: self
                .route_tables
                .iter()
                .filter(|x| &x.location == at)
                .cloned()
                .collect(),
            network_acls: self
                .network_acls
                .iter()
                .filter(|x| &x.location == at)
                .cloned()
                .collect(),
            security_groups: self
                .security_groups
                .iter()
                .filter(|x| &x.location == at)
                .cloned()
                .collect(),
            elastic_ips: self
                .elastic_ips
                .iter()
                .filter(|x| &x.location == at)
                .cloned()
                .collect(),
        }
    }

    /// Drop everything of one account and region (before its fresh copy is added).
    pub fn remove(&mut self, at: &Location) {
        self.vpcs.retain(|x| &x.location != at);
        self.subnets.retain(|x| &x.location != at);
        self.route_tables.retain(|x| &x.location != at);
        self.network_acls.retain(|x| &x.location != at);
        self.security_groups.retain(|x| &x.location != at);
        self.elastic_ips.retain(|x| &x.location != at);
        // Every peering that touches this account and region is listed by its
        // DescribeVpcPeeringConnections, so the fresh copy brings back those that remain.
        let touches = |s: &PeeringSide| {
            s.account_id.as_deref() == Some(at.account_id.as_str())
                && s.region.as_deref() == Some(at.region.as_str())
        };
        self.peerings
            .retain(|p| !touches(&p.requester) && !touches(&p.accepter));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_optional_fields_read_as_none_and_none_is_not_written() {
        let text = r#"{"instance_id":"i-1","account_id":"1","region":"r","state":"running"}"#;
        let i: Instance = serde_json::from_str(text).unwrap();
        assert_eq!((i.vpc_id, i.private_ip, i.image_name), (None, None, None));
        let back = serde_json::to_value(crate::estate::testing::instance(
            "i-1",
            i.location,
            None,
            &[],
        ))
        .unwrap();
        assert!(back.get("vpc_id").is_none() && back.get("private_ip").is_none());
    }
}
