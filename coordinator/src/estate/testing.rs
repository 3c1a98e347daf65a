//! Estates built by hand for the unit tests of the estate and of discovery: one
//! home for the instance every such test starts from.

use super::network::{Instance, Interface, InterfaceAddress, Location};

/// An account and region.
pub(crate) fn location(account: &str, region: &str) -> Location {
    Location {
        account_id: account.into(),
        region: region.into(),
    }
}

/// One interface with the private addresses `ips`, the first one primary; no
/// subnet, public address, IPv6 address or group.
pub(crate) fn interface(id: &str, device_index: i32, vpc: Option<&str>, ips: &[&str]) -> Interface {
    Interface {
        interface_id: id.into(),
        subnet_id: None,
        vpc_id: vpc.map(str::to_string),
        device_index,
        addresses: ips
            .iter()
            .enumerate()
            .map(|(n, ip)| InterfaceAddress {
                private_ip: ip.parse().unwrap(),
                public_ip: None,
                primary: n == 0,
            })
            .collect(),
        ipv6: vec![],
        security_groups: vec![],
    }
}

/// A running instance at `at` in `vpc` with the private addresses `ips` (the
/// first one its primary address) on its interface `eni-1`; everything else
/// unknown or empty.
pub(crate) fn instance(id: &str, at: Location, vpc: Option<&str>, ips: &[&str]) -> Instance {
    Instance {
        instance_id: id.into(),
        location: at,
        availability_zone: None,
        vpc_id: vpc.map(str::to_string),
        subnet_id: None,
        state: "running".into(),
        instance_type: None,
        platform: None,
        image_id: None,
        image_name: None,
        private_ip: ips.first().map(|ip| ip.parse().unwrap()),
        public_ip: None,
        interfaces: vec![interface("eni-1", 0, vpc, ips)],
        security_groups: vec![],
        tags: Default::default(),
        network: None,
    }
}
