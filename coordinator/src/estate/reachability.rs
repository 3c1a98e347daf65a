//! Reachability from the internet, from the network configuration alone.
//!
//! An address of an instance is reachable on a TCP port when all of these hold:
//! 1. it is internet-facing: a public IPv4 address or Elastic IP mapped onto a
//!    private address of the interface (or a global IPv6 address);
//! 2. the route table of the interface's subnet (its explicit association, else
//!    the VPC's main table) has a `0.0.0.0/0` (`::/0` for IPv6) route to an
//!    internet gateway (`igw-...`) that is not a blackhole;
//! 3. the subnet's network ACL (its association, else the VPC's default ACL)
//!    allows the port inbound, rules evaluated in rule-number order, and allows
//!    some ephemeral port (1024-65535) outbound for the replies (ACLs are stateless);
//! 4. a security group of the interface allows the port inbound.
//!
//! "From the internet" means from any host: only ACL rules and security group
//! sources that cover the whole address family (`0.0.0.0/0`, `::/0`) decide. A rule
//! for a narrower block (an office range, a partner) decides only for some hosts
//! and is left out, as AWS Trusted Advisor's "unrestricted access" checks do.
//! UDP is not analysed: workers scan TCP.
//!
//! Everything here is pure; [`super::assets::build_assets`] calls [`exposure`]
//! per instance and stores the result on the asset, and findings call [`exposed`].

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use scanfleet_common::{Asset, Exposure, ExposurePath, PortRange};

use super::network::{
    AclEntry, Instance, Interface, InterfaceAddress, Network, NetworkAcl, RouteTable, SecurityGroup,
};

/// First port of the ephemeral range replies go to (Linux uses 32768+, Windows
/// 49152+, NAT devices 1024+; AWS documents 1024-65535 for network ACLs).
pub const EPHEMERAL_FROM: u16 = 1024;

/// True when the network configuration lets anyone on the internet reach
/// `port`/tcp of `asset`. False when it does not, or when it is unknown.
pub fn exposed(asset: &Asset, port: u16) -> bool {
    asset.internet_exposed(port)
}

/// A set of ports as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortSet(Vec<(u16, u16)>);

impl PortSet {
    pub fn empty() -> Self {
        PortSet(Vec::new())
    }

    /// Ports 0-65535.
    pub fn all() -> Self {
        PortSet(vec![(0, u16::MAX)])
    }

    /// One inclusive range; empty when `from > to`.
    pub fn range(from: u16, to: u16) -> Self {
        if from > to {
            PortSet::empty()
        } else {
            PortSet(vec![(from, to)])
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, port: u16) -> bool {
        self.0.iter().any(|&(a, b)| (a..=b).contains(&port))
    }

    pub fn union(&self, other: &PortSet) -> PortSet {
        let mut all: Vec<(u16, u16)> = self.0.iter().chain(&other.0).copied().collect();
        all.sort_unstable();
        let mut out: Vec<(u16, u16)> = Vec::with_capacity(all.len());
        for (a, b) in all {
            match out.last_mut() {
                Some(last) if u32::from(a) <= u32::from(last.1) + 1 => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        PortSet(out)
    }

    pub fn intersect(&self, other: &PortSet) -> PortSet {
        let mut out = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < self.0.len() && j < other.0.len() {
            let (a1, b1) = self.0[i];
            let (a2, b2) = other.0[j];
            let (lo, hi) = (a1.max(a2), b1.min(b2));
            if lo <= hi {
                out.push((lo, hi));
            }
            if b1 < b2 { i += 1 } else { j += 1 }
        }
        PortSet(out)
    }

    pub fn subtract(&self, other: &PortSet) -> PortSet {
        self.intersect(&other.complement())
    }

    pub fn complement(&self) -> PortSet {
        let mut out = Vec::new();
        let mut next: u32 = 0;
        for &(a, b) in &self.0 {
            if u32::from(a) > next {
                out.push((next as u16, a - 1));
            }
            next = u32::from(b) + 1;
        }
        if next <= u32::from(u16::MAX) {
            out.push((next as u16, u16::MAX));
        }
        PortSet(out)
    }

    pub fn ranges(&self) -> Vec<PortRange> {
        self.0
            .iter()
            .map(|&(from, to)| PortRange { from, to })
            .collect()
    }
}

/// Lookups over a [`Network`], built once per exposure run.
pub struct NetIndex<'a> {
    subnet_vpc: HashMap<&'a str, &'a str>,
    route_by_subnet: HashMap<&'a str, &'a RouteTable>,
    main_route: HashMap<&'a str, &'a RouteTable>,
    acl_by_subnet: HashMap<&'a str, &'a NetworkAcl>,
    default_acl: HashMap<&'a str, &'a NetworkAcl>,
    groups: HashMap<&'a str, &'a SecurityGroup>,
    /// Elastic IPs by (interface, private address).
    eips: HashMap<(&'a str, IpAddr), IpAddr>,
}

impl<'a> NetIndex<'a> {
    pub fn new(net: &'a Network) -> Self {
        let mut ix = NetIndex {
            subnet_vpc: net
                .subnets
                .iter()
                .map(|s| (s.subnet_id.as_str(), s.vpc_id.as_str()))
                .collect(),
            route_by_subnet: HashMap::new(),
            main_route: HashMap::new(),
            acl_by_subnet: HashMap::new(),
            default_acl: HashMap::new(),
            groups: net
                .security_groups
                .iter()
                .map(|g| (g.group_id.as_str(), g))
                .collect(),
            eips: HashMap::new(),
        };
        for rt in &net.route_tables {
            if rt.main {
                ix.main_route.insert(rt.vpc_id.as_str(), rt);
            }
            for s in &rt.subnet_ids {
                ix.route_by_subnet.insert(s.as_str(), rt);
            }
        }
        for acl in &net.network_acls {
            if acl.is_default {
                ix.default_acl.insert(acl.vpc_id.as_str(), acl);
            }
            for s in &acl.subnet_ids {
                ix.acl_by_subnet.insert(s.as_str(), acl);
            }
        }
        for e in &net.elastic_ips {
            if let (Some(eni), Some(private)) = (&e.network_interface_id, e.private_ip) {
                ix.eips.insert((eni.as_str(), private), e.public_ip);
            }
        }
        ix
    }

    fn route_table(&self, subnet: &str, vpc: Option<&str>) -> Option<&'a RouteTable> {
        let vpc = vpc.or_else(|| self.subnet_vpc.get(subnet).copied());
        self.route_by_subnet
            .get(subnet)
            .or_else(|| vpc.and_then(|v| self.main_route.get(v)))
            .copied()
    }

    fn network_acl(&self, subnet: &str, vpc: Option<&str>) -> Option<&'a NetworkAcl> {
        let vpc = vpc.or_else(|| self.subnet_vpc.get(subnet).copied());
        self.acl_by_subnet
            .get(subnet)
            .or_else(|| vpc.and_then(|v| self.default_acl.get(v)))
            .copied()
    }
}

/// True when `net` is the whole IPv4 (or IPv6) space.
fn is_everything(net: &IpNet, v6: bool) -> bool {
    net.prefix_len() == 0 && matches!(net, IpNet::V6(_)) == v6
}

fn anywhere(v6: bool) -> &'static str {
    if v6 { "::/0" } else { "0.0.0.0/0" }
}

/// TCP ports a network ACL allows from (or, `egress`, to) the whole internet:
/// rules of that direction in rule-number order, the first rule matching a port
/// decides it, a port no rule matches is denied.
pub fn acl_tcp(entries: &[AclEntry], egress: bool, v6: bool) -> PortSet {
    let mut rules: Vec<&AclEntry> = entries.iter().filter(|e| e.egress == egress).collect();
    rules.sort_by_key(|e| e.rule_number);
    let mut undecided = PortSet::all();
    let mut allowed = PortSet::empty();
    for e in rules {
        if !e.cidr.as_ref().is_some_and(|c| is_everything(c, v6)) {
            continue;
        }
        let ports = match e.protocol.as_str() {
            "-1" => PortSet::all(),
            "6" | "tcp" => e
                .ports
                .map_or_else(PortSet::all, |r| PortSet::range(r.from, r.to)),
            _ => continue,
        };
        if e.allow {
            allowed = allowed.union(&undecided.intersect(&ports));
        }
        undecided = undecided.subtract(&ports);
        if undecided.is_empty() {
            break;
        }
    }
    allowed
}

/// TCP ports a security group allows inbound from the whole internet.
pub fn group_tcp(group: &SecurityGroup, v6: bool) -> PortSet {
    let mut out = PortSet::empty();
    for rule in &group.ingress {
        if !rule.sources.iter().any(|s| is_everything(s, v6)) {
            continue;
        }
        let ports = match rule.protocol.as_str() {
            "-1" => PortSet::all(),
            "tcp" | "6" => match (rule.from_port, rule.to_port) {
                (Some(a), Some(b)) if a >= 0 && b >= 0 => {
                    PortSet::range(a.min(65_535) as u16, b.min(65_535) as u16)
                }
                _ => PortSet::all(),
            },
            _ => continue,
        };
        out = out.union(&ports);
    }
    out
}

/// The default route to an internet gateway, if the table has one.
fn internet_route(rt: &RouteTable, v6: bool) -> Option<&str> {
    rt.routes.iter().find_map(|r| {
        let to_everything = r.destination.as_ref().is_some_and(|d| is_everything(d, v6));
        let target = r.target.as_deref().filter(|t| t.starts_with("igw-"))?;
        (to_everything && r.state.as_deref() != Some("blackhole")).then_some(target)
    })
}

/// The interfaces of an instance; an instance described without any gets one
/// made from its top-level fields.
fn interfaces(instance: &Instance) -> Vec<Interface> {
    if !instance.interfaces.is_empty() {
        return instance.interfaces.clone();
    }
    let Some(private_ip) = instance.private_ip else {
        return Vec::new();
    };
    vec![Interface {
        interface_id: format!("{}/primary", instance.instance_id),
        subnet_id: instance.subnet_id.clone(),
        vpc_id: instance.vpc_id.clone(),
        device_index: 0,
        addresses: vec![InterfaceAddress {
            private_ip,
            public_ip: instance.public_ip,
            primary: true,
        }],
        ipv6: Vec::new(),
        security_groups: instance.security_groups.clone(),
    }]
}

/// What the configuration exposes of one instance to the internet. `None` when
/// part of the configuration that decides it (the subnet's route table or network
/// ACL, a security group) was not discovered: unknown is never reported as closed.
pub fn exposure(instance: &Instance, ix: &NetIndex<'_>) -> Option<Exposure> {
    let mut out = Exposure::default();
    for iface in interfaces(instance) {
        let eni = iface.interface_id.as_str();
        // Internet-facing addresses: (public, private, is IPv6).
        let mut facing: Vec<(IpAddr, IpAddr, bool)> = Vec::new();
        for a in &iface.addresses {
            let public = a
                .public_ip
                .or_else(|| ix.eips.get(&(eni, a.private_ip)).copied())
                .or_else(|| {
                    (iface.device_index == 0 && a.primary)
                        .then_some(instance.public_ip)
                        .flatten()
                });
            if let Some(p) = public {
                facing.push((p, a.private_ip, false));
            }
        }
        facing.extend(iface.ipv6.iter().map(|ip| (*ip, *ip, true)));
        if facing.is_empty() {
            out.notes.push(format!("{eni}: no public IP or Elastic IP"));
            continue;
        }
        let subnet = iface
            .subnet_id
            .as_deref()
            .or(instance.subnet_id.as_deref())?;
        let vpc = iface.vpc_id.as_deref().or(instance.vpc_id.as_deref());
        let rt = ix.route_table(subnet, vpc)?;
        let acl = ix.network_acl(subnet, vpc)?;
        let group_ids = if iface.security_groups.is_empty() {
            &instance.security_groups
        } else {
            &iface.security_groups
        };
        let groups: Vec<&SecurityGroup> = group_ids
            .iter()
            .map(|g| ix.groups.get(g.as_str()).copied())
            .collect::<Option<_>>()?;
        for (public_ip, private_ip, v6) in facing {
            let any = anywhere(v6);
            let Some(igw) = internet_route(rt, v6) else {
                out.notes.push(format!(
                    "{eni} ({public_ip}): route table {} has no {any} route to an internet gateway",
                    rt.route_table_id
                ));
                continue;
            };
            let inbound = acl_tcp(&acl.entries, false, v6);
            if inbound.is_empty() {
                out.notes.push(format!(
                    "{eni} ({public_ip}): network ACL {} denies inbound TCP from {any}",
                    acl.network_acl_id
                ));
                continue;
            }
            let replies = acl_tcp(&acl.entries, true, v6)
                .intersect(&PortSet::range(EPHEMERAL_FROM, u16::MAX));
            if replies.is_empty() {
                out.notes.push(format!(
                    "{eni} ({public_ip}): network ACL {} denies outbound replies to {any}",
                    acl.network_acl_id
                ));
                continue;
            }
            let per_group: Vec<(&SecurityGroup, PortSet)> =
                groups.iter().map(|g| (*g, group_tcp(g, v6))).collect();
            let allowed = per_group
                .iter()
                .fold(PortSet::empty(), |acc, (_, p)| acc.union(p));
            if allowed.is_empty() {
                out.notes.push(format!(
                    "{eni} ({public_ip}): no security group allows inbound TCP from {any}"
                ));
                continue;
            }
            let open = inbound.intersect(&allowed);
            if open.is_empty() {
                out.notes.push(format!(
                    "{eni} ({public_ip}): network ACL {} blocks every port the security groups open to {any}",
                    acl.network_acl_id
                ));
                continue;
            }
            let mut security_groups: Vec<String> = per_group
                .iter()
                .filter(|(_, p)| !p.intersect(&open).is_empty())
                .map(|(g, _)| g.group_id.clone())
                .collect();
            security_groups.sort();
            security_groups.dedup();
            out.paths.push(ExposurePath {
                public_ip,
                private_ip,
                tcp: open.ranges(),
                internet_gateway: igw.to_string(),
                route_table: rt.route_table_id.clone(),
                network_acl: acl.network_acl_id.clone(),
                security_groups,
            });
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::estate::network::{ElasticIp, Location, Route, SgRule, Subnet};
    use crate::estate::testing;
    use proptest::prelude::*;

    fn loc() -> Location {
        testing::location("111111111111", "us-east-1")
    }

    fn entry(
        n: i32,
        egress: bool,
        proto: &str,
        allow: bool,
        cidr: &str,
        ports: Option<(u16, u16)>,
    ) -> AclEntry {
        AclEntry {
            rule_number: n,
            egress,
            protocol: proto.into(),
            allow,
            cidr: Some(cidr.parse().unwrap()),
            ports: ports.map(|(from, to)| PortRange { from, to }),
        }
    }

    fn default_acl_entries() -> Vec<AclEntry> {
        vec![
            entry(100, false, "-1", true, "0.0.0.0/0", None),
            entry(32767, false, "-1", false, "0.0.0.0/0", None),
            entry(100, true, "-1", true, "0.0.0.0/0", None),
            entry(32767, true, "-1", false, "0.0.0.0/0", None),
        ]
    }

    fn sg(id: &str, rules: &[(&str, i32, i32, &str)]) -> SecurityGroup {
        SecurityGroup {
            group_id: id.into(),
            group_name: None,
            vpc_id: Some("vpc-1".into()),
            location: loc(),
            ingress: rules
                .iter()
                .map(|(p, a, b, src)| SgRule {
                    protocol: p.to_string(),
                    from_port: Some(*a),
                    to_port: Some(*b),
                    sources: vec![src.parse().unwrap()],
                })
                .collect(),
        }
    }

    /// One VPC with a public subnet (explicit table with an IGW route) and a
    /// private subnet (falls back to the main table, which has no IGW route).
    fn network() -> Network {
        Network {
            subnets: vec![
                Subnet {
                    subnet_id: "subnet-pub".into(),
                    vpc_id: "vpc-1".into(),
                    location: loc(),
                    availability_zone: None,
                    cidr: None,
                },
                Subnet {
                    subnet_id: "subnet-priv".into(),
                    vpc_id: "vpc-1".into(),
                    location: loc(),
                    availability_zone: None,
                    cidr: None,
                },
            ],
            route_tables: vec![
                RouteTable {
                    route_table_id: "rtb-main".into(),
                    vpc_id: "vpc-1".into(),
                    location: loc(),
                    main: true,
                    subnet_ids: vec![],
                    routes: vec![Route {
                        destination: Some("10.0.0.0/16".parse().unwrap()),
                        target: Some("local".into()),
                        state: None,
                    }],
                },
                RouteTable {
                    route_table_id: "rtb-pub".into(),
                    vpc_id: "vpc-1".into(),
                    location: loc(),
                    main: false,
                    subnet_ids: vec!["subnet-pub".into()],
                    routes: vec![Route {
                        destination: Some("0.0.0.0/0".parse().unwrap()),
                        target: Some("igw-1".into()),
                        state: Some("active".into()),
                    }],
                },
            ],
            network_acls: vec![NetworkAcl {
                network_acl_id: "acl-default".into(),
                vpc_id: "vpc-1".into(),
                location: loc(),
                is_default: true,
                subnet_ids: vec![],
                entries: default_acl_entries(),
            }],
            security_groups: vec![
                sg(
                    "sg-web",
                    &[
                        ("tcp", 443, 443, "0.0.0.0/0"),
                        ("tcp", 80, 80, "0.0.0.0/0"),
                        ("tcp", 22, 22, "10.0.0.0/8"),
                    ],
                ),
                sg("sg-all", &[("-1", -1, -1, "0.0.0.0/0")]),
                sg("sg-internal", &[("tcp", 0, 65535, "10.0.0.0/8")]),
            ],
            elastic_ips: vec![ElasticIp {
                public_ip: "54.0.0.9".parse().unwrap(),
                allocation_id: Some("eipalloc-1".into()),
                instance_id: Some("i-1".into()),
                network_interface_id: Some("eni-1".into()),
                private_ip: Some("10.0.1.10".parse().unwrap()),
                location: loc(),
            }],
            ..Network::default()
        }
    }

    fn instance(subnet: &str, public: Option<&str>, groups: &[&str]) -> Instance {
        let mut i = testing::instance("i-1", loc(), Some("vpc-1"), &["10.0.1.10"]);
        i.subnet_id = Some(subnet.into());
        i.instance_type = Some("m5.large".into());
        let eni = &mut i.interfaces[0];
        eni.subnet_id = Some(subnet.into());
        eni.addresses[0].public_ip = public.map(|p| p.parse().unwrap());
        eni.security_groups = groups.iter().map(|s| s.to_string()).collect();
        i
    }

    fn open(e: &Exposure) -> Vec<String> {
        e.paths
            .iter()
            .flat_map(|p| p.tcp.iter().map(move |r| format!("{} {r}", p.public_ip)))
            .collect()
    }

    #[test]
    fn public_subnet_with_open_group_is_exposed_on_its_ports_only() {
        let net = network();
        let ix = NetIndex::new(&net);
        let e = exposure(
            &instance("subnet-pub", Some("3.3.3.3"), &["sg-web", "sg-internal"]),
            &ix,
        )
        .unwrap();
        assert_eq!(open(&e), ["3.3.3.3 80", "3.3.3.3 443"]);
        let p = &e.paths[0];
        assert_eq!(
            (
                p.internet_gateway.as_str(),
                p.route_table.as_str(),
                p.network_acl.as_str()
            ),
            ("igw-1", "rtb-pub", "acl-default")
        );
        assert_eq!(p.security_groups, ["sg-web"]);
        let mut a = Asset::from_ip("10.0.1.10".parse().unwrap());
        a.exposure = Some(e);
        assert!(exposed(&a, 443) && exposed(&a, 80) && !exposed(&a, 22) && !exposed(&a, 8080));
        assert!(
            !exposed(&Asset::from_ip("10.0.1.10".parse().unwrap()), 443),
            "unknown is not exposed"
        );
    }

    #[test]
    fn the_eip_counts_as_public_address() {
        let net = network();
        let e = exposure(
            &instance("subnet-pub", None, &["sg-all"]),
            &NetIndex::new(&net),
        )
        .unwrap();
        assert_eq!(open(&e), ["54.0.0.9 0-65535"]);
    }

    #[test]
    fn each_missing_layer_closes_with_its_reason() {
        let net = network();
        let ix = NetIndex::new(&net);
        let no_public = exposure(
            &instance("subnet-pub", None, &["sg-web"]),
            &NetIndex::new(&Network {
                elastic_ips: vec![],
                ..net.clone()
            }),
        )
        .unwrap();
        assert_eq!(no_public.notes, ["eni-1: no public IP or Elastic IP"]);
        let private =
            exposure(&instance("subnet-priv", Some("3.3.3.3"), &["sg-all"]), &ix).unwrap();
        assert!(private.is_closed());
        assert_eq!(
            private.notes,
            ["eni-1 (3.3.3.3): route table rtb-main has no 0.0.0.0/0 route to an internet gateway"]
        );
        let internal = exposure(
            &instance("subnet-pub", Some("3.3.3.3"), &["sg-internal"]),
            &ix,
        )
        .unwrap();
        assert_eq!(
            internal.notes,
            ["eni-1 (3.3.3.3): no security group allows inbound TCP from 0.0.0.0/0"]
        );

        let web = |net: &Network| {
            let i = instance("subnet-pub", Some("3.3.3.3"), &["sg-web"]);
            exposure(&i, &NetIndex::new(net)).unwrap()
        };
        let mut strict = net.clone();
        strict.network_acls.push(NetworkAcl {
            network_acl_id: "acl-strict".into(),
            vpc_id: "vpc-1".into(),
            location: loc(),
            is_default: false,
            subnet_ids: vec!["subnet-pub".into()],
            entries: vec![
                entry(100, false, "6", false, "0.0.0.0/0", Some((443, 443))),
                entry(110, false, "6", true, "0.0.0.0/0", Some((0, 1000))),
                entry(120, false, "6", true, "10.0.0.0/8", Some((8080, 8080))),
                entry(100, true, "-1", true, "0.0.0.0/0", None),
            ],
        });
        let e = web(&strict);
        assert_eq!(
            open(&e),
            ["3.3.3.3 80"],
            "rule 100 denies 443 before rule 110 allows it"
        );
        strict.network_acls[1].entries.retain(|x| !x.egress);
        let e = web(&strict);
        assert_eq!(
            e.notes,
            ["eni-1 (3.3.3.3): network ACL acl-strict denies outbound replies to 0.0.0.0/0"]
        );
        strict.network_acls[1].entries = vec![
            entry(100, false, "6", true, "0.0.0.0/0", Some((8000, 9000))),
            entry(100, true, "-1", true, "0.0.0.0/0", None),
        ];
        let e = web(&strict);
        assert_eq!(
            e.notes,
            [
                "eni-1 (3.3.3.3): network ACL acl-strict blocks every port the security groups open to 0.0.0.0/0"
            ]
        );
    }

    #[test]
    fn blackhole_routes_and_unknown_configuration() {
        let mut net = network();
        net.route_tables[1].routes[0].state = Some("blackhole".into());
        let e = exposure(
            &instance("subnet-pub", Some("3.3.3.3"), &["sg-all"]),
            &NetIndex::new(&net),
        )
        .unwrap();
        assert!(e.is_closed());
        let net = network();
        let ix = NetIndex::new(&net);
        assert_eq!(
            exposure(
                &instance("subnet-pub", Some("3.3.3.3"), &["sg-unknown"]),
                &ix
            ),
            None
        );
        let mut i = instance("subnet-other", Some("3.3.3.3"), &["sg-all"]);
        i.vpc_id = Some("vpc-other".into());
        i.interfaces[0].vpc_id = Some("vpc-other".into());
        assert_eq!(exposure(&i, &ix), None);
        // Without a public address nothing else needs to be known.
        assert!(
            exposure(
                &instance("subnet-other", None, &["sg-unknown"]),
                &NetIndex::new(&Network::default())
            )
            .unwrap()
            .is_closed()
        );
    }

    #[test]
    fn ipv6_uses_its_own_routes_and_rules() {
        let mut net = network();
        net.elastic_ips.clear();
        let mut i = instance("subnet-pub", None, &["sg-v6"]);
        i.interfaces[0].ipv6 = vec!["2600::1".parse().unwrap()];
        net.security_groups.push(sg(
            "sg-v6",
            &[("tcp", 22, 22, "::/0"), ("tcp", 80, 80, "0.0.0.0/0")],
        ));
        net.network_acls[0].entries.extend([
            entry(101, false, "-1", true, "::/0", None),
            entry(101, true, "-1", true, "::/0", None),
        ]);
        let e = exposure(&i, &NetIndex::new(&net)).unwrap();
        assert_eq!(
            e.notes,
            ["eni-1 (2600::1): route table rtb-pub has no ::/0 route to an internet gateway"]
        );
        net.route_tables[1].routes.push(Route {
            destination: Some("::/0".parse().unwrap()),
            target: Some("igw-1".into()),
            state: None,
        });
        let e = exposure(&i, &NetIndex::new(&net)).unwrap();
        assert_eq!(open(&e), ["2600::1 22"]);
    }

    fn arb_set() -> impl Strategy<Value = PortSet> {
        proptest::collection::vec((any::<u16>(), 0u16..3000), 0..6).prop_map(|v| {
            v.into_iter().fold(PortSet::empty(), |acc, (a, len)| {
                acc.union(&PortSet::range(a, a.saturating_add(len)))
            })
        })
    }

    fn bits(s: &PortSet) -> Vec<bool> {
        (0..=u16::MAX).map(|p| s.contains(p)).collect()
    }

    proptest! {
        #[test]
        fn port_set_algebra_matches_bitsets(a in arb_set(), b in arb_set()) {
            let (x, y) = (bits(&a), bits(&b));
            let u = bits(&a.union(&b));
            let i = bits(&a.intersect(&b));
            let d = bits(&a.subtract(&b));
            for p in 0..x.len() {
                prop_assert_eq!(u[p], x[p] || y[p]);
                prop_assert_eq!(i[p], x[p] && y[p]);
                prop_assert_eq!(d[p], x[p] && !y[p]);
            }
            for s in [a.union(&b), a.intersect(&b), a.subtract(&b)] {
                prop_assert!(s.0.windows(2).all(|w| u32::from(w[0].1) + 1 < u32::from(w[1].0)), "{:?}", s);
            }
        }

        /// The ACL decision for each port equals the first matching rule, by brute force.
        #[test]
        fn acl_first_match_wins(rules in proptest::collection::vec((0i32..50, any::<bool>(), 0u16..200, 0u16..50, any::<bool>(), any::<bool>()), 0..8), port in 0u16..260) {
            let entries: Vec<AclEntry> = rules.iter().map(|&(n, allow, from, len, all_proto, narrow)| {
                entry(n * 10, false, if all_proto { "-1" } else { "6" }, allow, if narrow { "10.0.0.0/8" } else { "0.0.0.0/0" }, (!all_proto).then_some((from, from + len)))
            }).collect();
            let mut sorted = entries.clone();
            sorted.sort_by_key(|e| e.rule_number);
            let expected = sorted.iter()
                .filter(|e| e.cidr.unwrap().prefix_len() == 0)
                .find(|e| e.protocol == "-1" || e.ports.is_some_and(|r| r.contains(port)))
                .is_some_and(|e| e.allow);
            prop_assert_eq!(acl_tcp(&entries, false, false).contains(port), expected);
            prop_assert!(acl_tcp(&entries, true, false).is_empty());
        }
    }
}
