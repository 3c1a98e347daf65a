//! Assets from what discovery found: one per instance with a private address,
//! with every address, the instance's context (account, region, VPC, subnet,
//! groups, tags) and its exposure from [`super::reachability`].

use std::collections::BTreeSet;

use scanfleet_common::Asset;

use super::network::{Instance, Interface, InterfaceAddress, Location, Network};
use super::reachability::{self, NetIndex};

/// The tag EC2 Auto Scaling puts on its instances.
pub const ASG_TAG: &str = "aws:autoscaling:groupName";

/// One asset per instance with a private address, with exposure from the network
/// model (unknown for incomplete account-regions). Zones are not set here.
pub fn build_assets(
    instances: &[Instance],
    net: &Network,
    incomplete: &BTreeSet<Location>,
) -> Vec<Asset> {
    let ix = NetIndex::new(net);
    let mut out: Vec<Asset> = instances
        .iter()
        .filter_map(|i| {
            let mut a = instance_asset(i, net)?;
            if !incomplete.contains(&i.location) {
                a.exposure = reachability::exposure(i, &ix);
            }
            Some(a)
        })
        .collect();
    out.sort_by(|a, b| (&a.account_id, &a.region, &a.id).cmp(&(&b.account_id, &b.region, &b.id)));
    out
}

/// The asset of one instance, without exposure and zone; `None` for a terminated
/// instance (EC2 lists those for an hour after they are gone) and for one without
/// any private address.
pub fn instance_asset(i: &Instance, net: &Network) -> Option<Asset> {
    if i.state == "terminated" {
        return None;
    }
    let mut ifaces: Vec<&Interface> = i.interfaces.iter().collect();
    ifaces.sort_by_key(|n| n.device_index);
    let mut private_ips = Vec::new();
    let mut public_ips = Vec::new();
    let mut groups: BTreeSet<String> = i.security_groups.iter().cloned().collect();
    for n in &ifaces {
        let mut addrs: Vec<&InterfaceAddress> = n.addresses.iter().collect();
        addrs.sort_by_key(|a| !a.primary);
        for a in addrs {
            if !private_ips.contains(&a.private_ip) {
                private_ips.push(a.private_ip);
            }
            public_ips.extend(a.public_ip);
        }
        groups.extend(n.security_groups.iter().cloned());
    }
    let primary = i.private_ip.or_else(|| private_ips.first().copied())?;
    if let Some(pos) = private_ips.iter().position(|ip| *ip == primary) {
        private_ips.remove(pos);
    }
    private_ips.insert(0, primary);
    public_ips.extend(i.public_ip);
    public_ips.extend(
        net.elastic_ips
            .iter()
            .filter(|e| e.instance_id.as_deref() == Some(i.instance_id.as_str()))
            .map(|e| e.public_ip),
    );
    public_ips.sort();
    public_ips.dedup();
    let mut a = Asset::from_ip(primary);
    a.id = i.instance_id.clone();
    a.private_ips = private_ips;
    a.public_ips = public_ips;
    a.instance_type = i.instance_type.clone();
    a.network = i.network.clone();
    a.account_id = Some(i.location.account_id.clone());
    a.region = Some(i.location.region.clone());
    a.availability_zone = i.availability_zone.clone();
    a.vpc_id = i.vpc_id.clone();
    a.subnet_id = i.subnet_id.clone();
    a.state = Some(i.state.clone());
    a.platform = i.platform.clone();
    a.image_id = i.image_id.clone();
    a.image_name = i.image_name.clone();
    a.security_groups = groups.into_iter().collect();
    a.autoscaling_group = i.tags.get(ASG_TAG).cloned();
    a.tags = i.tags.clone();
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::estate::testing::{self, interface, location};
    use std::collections::BTreeMap;

    /// Addresses with their public addresses: the first on `eni-1` (device 0),
    /// the rest on `eni-2` (device 1), which EC2 happens to list first.
    fn inst(id: &str, ips: &[(&str, Option<&str>)]) -> Instance {
        let private: Vec<&str> = ips.iter().map(|(p, _)| *p).collect();
        let mut i = testing::instance(id, location("1", "r"), Some("vpc-1"), &private[..1]);
        i.interfaces[0].vpc_id = None;
        i.interfaces[0].security_groups = vec!["sg-a".into(), "sg-b".into()];
        let mut second = interface("eni-2", 1, None, &private[1..]);
        second.security_groups = vec!["sg-b".into()];
        i.interfaces.insert(0, second);
        let addresses = i.interfaces.iter_mut().rev().flat_map(|n| &mut n.addresses);
        for (a, (_, public)) in addresses.zip(ips) {
            a.public_ip = public.map(|q| q.parse().unwrap());
        }
        i.tags = BTreeMap::from([(ASG_TAG.to_string(), "web".to_string())]);
        i
    }

    #[test]
    fn assets_carry_every_address_primary_first() {
        let i = inst(
            "i-1",
            &[
                ("10.0.0.1", Some("3.3.3.3")),
                ("10.0.0.2", None),
                ("10.0.0.3", Some("4.4.4.4")),
            ],
        );
        let a = instance_asset(&i, &Network::default()).unwrap();
        assert_eq!(
            a.addresses()
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>(),
            ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
        );
        assert_eq!(
            a.public_ips
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>(),
            ["3.3.3.3", "4.4.4.4"]
        );
        assert_eq!(a.security_groups, ["sg-a", "sg-b"]);
        assert_eq!(a.autoscaling_group.as_deref(), Some("web"));
        let mut gone = inst("i-2", &[("10.0.0.9", None)]);
        gone.private_ip = None;
        gone.interfaces.clear();
        assert_eq!(instance_asset(&gone, &Network::default()), None);
        let mut terminated = inst("i-3", &[("10.0.0.9", None)]);
        terminated.state = "terminated".into();
        assert_eq!(instance_asset(&terminated, &Network::default()), None);
    }
}
