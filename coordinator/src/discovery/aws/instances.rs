//! DescribeInstances and DescribeImages into the estate's [`Instance`]s.

use std::collections::{BTreeSet, HashMap};

use aws_sdk_ec2::types::Filter;

use super::calls::failure;
use super::{ip, tags};
use crate::discovery::Failure;
use crate::estate::network::{Instance, Interface, InterfaceAddress, Location};

/// Image ids per DescribeImages call (a filter takes up to 200 values).
const IMAGE_BATCH: usize = 200;

pub(super) async fn describe_instances(
    ec2: &aws_sdk_ec2::Client,
    at: &Location,
    page: i32,
) -> Result<Vec<Instance>, Failure> {
    let mut out = Vec::new();
    let mut pages = ec2
        .describe_instances()
        .max_results(page)
        .into_paginator()
        .send();
    while let Some(p) = pages.next().await {
        let p = p.map_err(|e| failure("ec2:DescribeInstances", &e, Some(at), None))?;
        for r in p.reservations() {
            out.extend(r.instances().iter().filter_map(|i| instance(i, at)));
        }
    }
    Ok(out)
}

fn instance(i: &aws_sdk_ec2::types::Instance, at: &Location) -> Option<Instance> {
    let id = i.instance_id()?.to_string();
    let mut interfaces: Vec<Interface> = i
        .network_interfaces()
        .iter()
        .map(|n| {
            let mut addresses: Vec<InterfaceAddress> = n
                .private_ip_addresses()
                .iter()
                .filter_map(|a| {
                    Some(InterfaceAddress {
                        private_ip: ip(a.private_ip_address())?,
                        public_ip: ip(a.association().and_then(|x| x.public_ip())),
                        primary: a.primary().unwrap_or(false),
                    })
                })
                .collect();
            if addresses.is_empty()
                && let Some(p) = ip(n.private_ip_address())
            {
                addresses.push(InterfaceAddress {
                    private_ip: p,
                    public_ip: ip(n.association().and_then(|x| x.public_ip())),
                    primary: true,
                });
            }
            Interface {
                interface_id: n.network_interface_id().unwrap_or_default().to_string(),
                subnet_id: n.subnet_id().map(str::to_string),
                vpc_id: n.vpc_id().map(str::to_string),
                device_index: n.attachment().and_then(|a| a.device_index()).unwrap_or(0),
                addresses,
                ipv6: n
                    .ipv6_addresses()
                    .iter()
                    .filter_map(|a| ip(a.ipv6_address()))
                    .collect(),
                security_groups: n
                    .groups()
                    .iter()
                    .filter_map(|g| g.group_id().map(str::to_string))
                    .collect(),
            }
        })
        .collect();
    interfaces.sort_by_key(|n| n.device_index);
    Some(Instance {
        instance_id: id,
        location: at.clone(),
        availability_zone: i
            .placement()
            .and_then(|p| p.availability_zone())
            .map(str::to_string),
        vpc_id: i.vpc_id().map(str::to_string),
        subnet_id: i.subnet_id().map(str::to_string),
        state: i
            .state()
            .and_then(|s| s.name())
            .map_or_else(|| "unknown".into(), |n| n.as_str().to_string()),
        instance_type: i.instance_type().map(|t| t.as_str().to_string()),
        platform: i
            .platform()
            .map(|p| p.as_str().to_ascii_lowercase())
            .or_else(|| i.platform_details().map(str::to_string)),
        image_id: i.image_id().map(str::to_string),
        image_name: None,
        private_ip: ip(i.private_ip_address()),
        public_ip: ip(i.public_ip_address()),
        interfaces,
        security_groups: i
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_string))
            .collect(),
        tags: tags(i.tags()),
        network: None,
    })
}

/// Names of the instances' images. A filter, unlike ImageIds, does not fail on
/// images that were deregistered or are no longer shared.
pub(super) async fn describe_images(
    ec2: &aws_sdk_ec2::Client,
    at: &Location,
    instances: &[Instance],
) -> Result<HashMap<String, String>, Failure> {
    let ids: BTreeSet<&str> = instances
        .iter()
        .filter_map(|i| i.image_id.as_deref())
        .collect();
    let ids: Vec<String> = ids.into_iter().map(str::to_string).collect();
    let mut out = HashMap::new();
    for chunk in ids.chunks(IMAGE_BATCH) {
        let filter = Filter::builder()
            .name("image-id")
            .set_values(Some(chunk.to_vec()))
            .build();
        let mut items = ec2
            .describe_images()
            .filters(filter)
            .into_paginator()
            .items()
            .send();
        while let Some(img) = items.next().await {
            let img = img.map_err(|e| failure("ec2:DescribeImages", &e, Some(at), None))?;
            if let (Some(id), Some(name)) = (img.image_id(), img.name()) {
                out.insert(id.to_string(), name.to_string());
            }
        }
    }
    Ok(out)
}
