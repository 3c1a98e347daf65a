//! The network calls of a region (DescribeVpcs, DescribeVpcPeeringConnections,
//! DescribeSubnets, DescribeRouteTables, DescribeNetworkAcls,
//! DescribeSecurityGroups, DescribeAddresses) into the estate's network model.

use ipnet::IpNet;
use scanfleet_common::PortRange;

use super::calls::failure;
use super::{ip, net, tags};
use crate::discovery::Failure;
use crate::estate::network::{
    AclEntry, ElasticIp, Location, NetworkAcl, Peering, PeeringSide, Route, RouteTable,
    SecurityGroup, SgRule, Subnet, Vpc,
};

pub(super) async fn describe_vpcs(
    ec2: &aws_sdk_ec2::Client,
    at: &Location,
) -> Result<Vec<Vpc>, Failure> {
    let mut out = Vec::new();
    let mut items = ec2.describe_vpcs().into_paginator().items().send();
    while let Some(v) = items.next().await {
        let v = v.map_err(|e| failure("ec2:DescribeVpcs", &e, Some(at), None))?;
        let Some(id) = v.vpc_id() else { continue };
        let mut cidrs: Vec<IpNet> = v
            .cidr_block_association_set()
            .iter()
            .filter_map(|c| net(c.cidr_block()))
            .chain(
                v.ipv6_cidr_block_association_set()
                    .iter()
                    .filter_map(|c| net(c.ipv6_cidr_block())),
            )
            .collect();
        if cidrs.is_empty() {
            cidrs.extend(net(v.cidr_block()));
        }
        cidrs.sort();
        cidrs.dedup();
        out.push(Vpc {
            vpc_id: id.to_string(),
            location: at.clone(),
            cidrs,
            is_default: v.is_default().unwrap_or(false),
            tags: tags(v.tags()),
        });
    }
    Ok(out)
}

pub(super) async fn describe_peerings(
    ec2: &aws_sdk_ec2::Client,
    at: &Location,
) -> Result<Vec<Peering>, Failure> {
    let mut out = Vec::new();
    let mut items = ec2
        .describe_vpc_peering_connections()
        .into_paginator()
        .items()
        .send();
    while let Some(p) = items.next().await {
        let p = p.map_err(|e| failure("ec2:DescribeVpcPeeringConnections", &e, Some(at), None))?;
        let side = |v: Option<&aws_sdk_ec2::types::VpcPeeringConnectionVpcInfo>| {
            let v = v?;
            Some(PeeringSide {
                vpc_id: v.vpc_id()?.to_string(),
                account_id: v.owner_id().map(str::to_string),
                region: v.region().map(str::to_string),
            })
        };
        let (Some(id), Some(requester), Some(accepter)) = (
            p.vpc_peering_connection_id(),
            side(p.requester_vpc_info()),
            side(p.accepter_vpc_info()),
        ) else {
            continue;
        };
        out.push(Peering {
            peering_id: id.to_string(),
            status: p
                .status()
                .and_then(|s| s.code())
                .map_or_else(|| "unknown".into(), |c| c.as_str().to_string()),
            requester,
            accepter,
        });
    }
    Ok(out)
}

pub(super) async fn describe_subnets(
    ec2: &aws_sdk_ec2::Client,
    at: &Location,
) -> Result<Vec<Subnet>, Failure> {
    let mut out = Vec::new();
    let mut items = ec2.describe_subnets().into_paginator().items().send();
    while let Some(s) = items.next().await {
        let s = s.map_err(|e| failure("ec2:DescribeSubnets", &e, Some(at), None))?;
        let (Some(id), Some(vpc)) = (s.subnet_id(), s.vpc_id()) else {
            continue;
        };
        out.push(Subnet {
            subnet_id: id.to_string(),
            vpc_id: vpc.to_string(),
            location: at.clone(),
            availability_zone: s.availability_zone().map(str::to_string),
            cidr: net(s.cidr_block()),
        });
    }
    Ok(out)
}

pub(super) async fn describe_route_tables(
    ec2: &aws_sdk_ec2::Client,
    at: &Location,
) -> Result<Vec<RouteTable>, Failure> {
    let mut out = Vec::new();
    let mut items = ec2.describe_route_tables().into_paginator().items().send();
    while let Some(t) = items.next().await {
        let t = t.map_err(|e| failure("ec2:DescribeRouteTables", &e, Some(at), None))?;
        let (Some(id), Some(vpc)) = (t.route_table_id(), t.vpc_id()) else {
            continue;
        };
        let live = |a: &&aws_sdk_ec2::types::RouteTableAssociation| {
            a.association_state()
                .and_then(|s| s.state())
                .is_none_or(|s| s.as_str() == "associated")
        };
        let routes = t
            .routes()
            .iter()
            .map(|r| Route {
                destination: net(r.destination_cidr_block())
                    .or_else(|| net(r.destination_ipv6_cidr_block())),
                target: r
                    .gateway_id()
                    .or(r.nat_gateway_id())
                    .or(r.transit_gateway_id())
                    .or(r.vpc_peering_connection_id())
                    .or(r.egress_only_internet_gateway_id())
                    .or(r.network_interface_id())
                    .or(r.instance_id())
                    .or(r.local_gateway_id())
                    .or(r.carrier_gateway_id())
                    .map(str::to_string),
                state: r.state().map(|s| s.as_str().to_string()),
            })
            .collect();
        out.push(RouteTable {
            route_table_id: id.to_string(),
            vpc_id: vpc.to_string(),
            location: at.clone(),
            main: t
                .associations()
                .iter()
                .filter(live)
                .any(|a| a.main().unwrap_or(false)),
            subnet_ids: t
                .associations()
                .iter()
                .filter(live)
                .filter_map(|a| a.subnet_id().map(str::to_string))
                .collect(),
            routes,
        });
    }
    Ok(out)
}

pub(super) async fn describe_network_acls(
    ec2: &aws_sdk_ec2::Client,
    at: &Location,
) -> Result<Vec<NetworkAcl>, Failure> {
    let mut out = Vec::new();
    let mut items = ec2.describe_network_acls().into_paginator().items().send();
    while let Some(a) = items.next().await {
        let a = a.map_err(|e| failure("ec2:DescribeNetworkAcls", &e, Some(at), None))?;
        let (Some(id), Some(vpc)) = (a.network_acl_id(), a.vpc_id()) else {
            continue;
        };
        let entries = a
            .entries()
            .iter()
            .filter_map(|e| {
                let port = |p: Option<i32>| p.and_then(|p| u16::try_from(p).ok());
                Some(AclEntry {
                    rule_number: e.rule_number()?,
                    egress: e.egress().unwrap_or(false),
                    protocol: e.protocol().unwrap_or("-1").to_string(),
                    allow: e.rule_action().is_some_and(|r| r.as_str() == "allow"),
                    cidr: net(e.cidr_block()).or_else(|| net(e.ipv6_cidr_block())),
                    ports: e.port_range().and_then(|r| {
                        Some(PortRange {
                            from: port(r.from())?,
                            to: port(r.to())?,
                        })
                    }),
                })
            })
            .collect();
        out.push(NetworkAcl {
            network_acl_id: id.to_string(),
            vpc_id: vpc.to_string(),
            location: at.clone(),
            is_default: a.is_default().unwrap_or(false),
            subnet_ids: a
                .associations()
                .iter()
                .filter_map(|s| s.subnet_id().map(str::to_string))
                .collect(),
            entries,
        });
    }
    Ok(out)
}

pub(super) async fn describe_security_groups(
    ec2: &aws_sdk_ec2::Client,
    at: &Location,
) -> Result<Vec<SecurityGroup>, Failure> {
    let mut out = Vec::new();
    let mut items = ec2
        .describe_security_groups()
        .into_paginator()
        .items()
        .send();
    while let Some(g) = items.next().await {
        let g = g.map_err(|e| failure("ec2:DescribeSecurityGroups", &e, Some(at), None))?;
        let Some(id) = g.group_id() else { continue };
        let ingress = g
            .ip_permissions()
            .iter()
            .map(|p| SgRule {
                protocol: p.ip_protocol().unwrap_or("-1").to_string(),
                from_port: p.from_port(),
                to_port: p.to_port(),
                sources: p
                    .ip_ranges()
                    .iter()
                    .filter_map(|r| net(r.cidr_ip()))
                    .chain(p.ipv6_ranges().iter().filter_map(|r| net(r.cidr_ipv6())))
                    .collect(),
            })
            .collect();
        out.push(SecurityGroup {
            group_id: id.to_string(),
            group_name: g.group_name().map(str::to_string),
            vpc_id: g.vpc_id().map(str::to_string),
            location: at.clone(),
            ingress,
        });
    }
    Ok(out)
}

pub(super) async fn describe_addresses(
    ec2: &aws_sdk_ec2::Client,
    at: &Location,
) -> Result<Vec<ElasticIp>, Failure> {
    let out = ec2
        .describe_addresses()
        .send()
        .await
        .map_err(|e| failure("ec2:DescribeAddresses", &e, Some(at), None))?;
    Ok(out
        .addresses()
        .iter()
        .filter_map(|a| {
            Some(ElasticIp {
                public_ip: ip(a.public_ip())?,
                allocation_id: a.allocation_id().map(str::to_string),
                instance_id: a.instance_id().map(str::to_string),
                network_interface_id: a.network_interface_id().map(str::to_string),
                private_ip: ip(a.private_ip_address()),
                location: at.clone(),
            })
        })
        .collect())
}
