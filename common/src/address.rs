//! What kind of address a target is, before anything is sent to it.
//!
//! Two rules live here, and scope applies both to every address it decides
//! (typed targets, inventory assets, job targets in the worker):
//!
//! * **One spelling per address.** An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`)
//!   and an IPv4-compatible one (`::a.b.c.d`, but not `::` or `::1`) reach the IPv4
//!   host `a.b.c.d`, so they are that IPv4 address: [`canonical`] rewrites them, and
//!   exclusions match on the rewritten address.
//! * **Unicast only.** Multicast, broadcast, unspecified and link-local addresses are
//!   not hosts of an estate ([`class_of`]); scope refuses them unless the user named
//!   the class with `--allow-address-class`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Deserializer, Serialize};

/// The EC2 instance metadata service, a link-local address every instance reaches.
pub const METADATA_SERVICE: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// A kind of address that is not one unicast host and is refused as a target
/// unless allowed by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddressClass {
    /// 224.0.0.0/4 and ff00::/8: one probe reaches every member of a group.
    Multicast,
    /// 255.255.255.255, the limited broadcast: every host of the local link.
    Broadcast,
    /// 0.0.0.0 and `::`: the kernel sends these to the scanner itself.
    Unspecified,
    /// 169.254.0.0/16 (with the instance metadata service) and fe80::/10.
    LinkLocal,
}

impl AddressClass {
    /// Every class, in the order the help text lists them.
    pub const ALL: [AddressClass; 4] = [
        AddressClass::Multicast,
        AddressClass::Broadcast,
        AddressClass::Unspecified,
        AddressClass::LinkLocal,
    ];

    /// The name the flag and the config file take.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Unspecified => "unspecified",
            AddressClass::LinkLocal => "link-local",
        }
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An address class name that is not one of [`AddressClass::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown address class {name:?}: expected multicast, broadcast, unspecified or link-local")]
pub struct UnknownClass {
    /// What was given, bounded and escaped for display.
    pub name: String,
}

impl FromStr for AddressClass {
    type Err = UnknownClass;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AddressClass::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownClass {
                name: crate::text::escape(s, crate::text::ECHO_MAX),
            })
    }
}

/// The IPv4 address an IPv6 address stands for, if it is IPv4-mapped
/// (`::ffff:a.b.c.d`) or IPv4-compatible (`::a.b.c.d`, other than `::` and `::1`).
fn embedded_v4(v6: &Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    let compatible = s[..6].iter().all(|&x| x == 0) && u128::from(*v6) > 1;
    compatible.then(|| Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7])))
}

/// One spelling per address: IPv4-mapped and IPv4-compatible IPv6 addresses become
/// the IPv4 address they reach; every other address is returned as it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(&v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// [`canonical`] for a block: an IPv6 block of /96 or longer inside the mapped
/// (`::ffff:0:0/96`) or compatible (`::/96`) space becomes the IPv4 block it covers
/// (`::ffff:10.0.0.0/104` is 10.0.0.0/8). `::/127` and longer stay IPv6: they hold
/// `::` and `::1`, which are not IPv4 addresses.
pub fn canonical_net(net: IpNet) -> IpNet {
    let IpNet::V6(n) = net else { return net };
    let prefix = n.prefix_len();
    if prefix < 96 {
        return net;
    }
    let addr = n.network();
    let s = addr.segments();
    let mapped = s[..5].iter().all(|&x| x == 0) && s[5] == 0xffff;
    let compatible = s[..6].iter().all(|&x| x == 0) && !(u128::from(addr) <= 1 && prefix >= 127);
    if !(mapped || compatible) {
        return net;
    }
    let v4 = Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7]));
    Ipv4Net::new(v4, prefix - 96).map_or(net, |b| IpNet::V4(b.trunc()))
}

/// The class of a non-unicast address, `None` for a unicast one (loopback included).
/// Decided on the [`canonical`] address, so `::ffff:224.0.0.1` is multicast.
pub fn class_of(ip: IpAddr) -> Option<AddressClass> {
    match canonical(ip) {
        IpAddr::V4(v4) if v4.is_unspecified() => Some(AddressClass::Unspecified),
        IpAddr::V4(v4) if v4.is_broadcast() => Some(AddressClass::Broadcast),
        IpAddr::V4(v4) if v4.is_multicast() => Some(AddressClass::Multicast),
        IpAddr::V4(v4) if v4.is_link_local() => Some(AddressClass::LinkLocal),
        IpAddr::V6(v6) if v6.is_unspecified() => Some(AddressClass::Unspecified),
        IpAddr::V6(v6) if v6.is_multicast() => Some(AddressClass::Multicast),
        IpAddr::V6(v6) if v6.is_unicast_link_local() => Some(AddressClass::LinkLocal),
        _ => None,
    }
}

/// A target refused for its class: displays the one message scanfleet gives for it,
/// such as "169.254.169.254 is link-local (the instance metadata service); scanfleet
/// refuses link-local targets unless --allow-address-class link-local".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassRefusal {
    pub ip: IpAddr,
    pub class: AddressClass,
}

impl fmt::Display for ClassRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.class {
            AddressClass::Multicast => "multicast (one probe reaches a whole group)",
            AddressClass::Broadcast => "the limited broadcast address (every host of the link)",
            AddressClass::Unspecified => "unspecified (the kernel sends it to the scanner itself)",
            AddressClass::LinkLocal if self.ip == IpAddr::V4(METADATA_SERVICE) => {
                "link-local (the instance metadata service)"
            }
            AddressClass::LinkLocal => "link-local",
        };
        write!(
            f,
            "{} is {what}; scanfleet refuses {} targets unless --allow-address-class {}",
            self.ip, self.class, self.class
        )
    }
}

/// Serde `deserialize_with` for an address field: parse, then [`canonical`].
///
/// # Errors
/// The deserializer's error for a value that is not an IP address.
pub fn deserialize_canonical<'de, D: Deserializer<'de>>(d: D) -> Result<IpAddr, D::Error> {
    IpAddr::deserialize(d).map(canonical)
}

/// Serde `deserialize_with` for a list of addresses: each one [`canonical`].
///
/// # Errors
/// The deserializer's error for a value that is not a list of IP addresses.
pub fn deserialize_canonical_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpAddr>, D::Error> {
    Vec::<IpAddr>::deserialize(d).map(|v| v.into_iter().map(canonical).collect())
}

/// True when `net` contains `ip`, comparing the [`canonical`] forms of both (and,
/// for safety in exclusions, the forms as given).
pub fn net_contains(net: &IpNet, ip: IpAddr) -> bool {
    net.contains(&ip) || canonical_net(*net).contains(&canonical(ip))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn mapped_and_compatible_become_ipv4() {
        assert_eq!(canonical(ip("::ffff:127.0.0.77")), ip("127.0.0.77"));
        assert_eq!(canonical(ip("::127.0.0.77")), ip("127.0.0.77"));
        assert_eq!(
            canonical(ip("::ffff:169.254.169.254")),
            ip("169.254.169.254")
        );
        assert_eq!(canonical(ip("::")), ip("::"));
        assert_eq!(canonical(ip("::1")), ip("::1"));
        assert_eq!(canonical(ip("::2")), ip("0.0.0.2"));
        assert_eq!(canonical(ip("fd00::1")), ip("fd00::1"));
        assert_eq!(canonical(ip("10.0.0.1")), ip("10.0.0.1"));
    }

    #[test]
    fn mapped_blocks_become_ipv4_blocks() {
        let n = |s: &str| s.parse::<IpNet>().unwrap();
        assert_eq!(canonical_net(n("::ffff:127.0.0.0/104")), n("127.0.0.0/8"));
        assert_eq!(canonical_net(n("::ffff:10.0.0.5/128")), n("10.0.0.5/32"));
        assert_eq!(canonical_net(n("::10.0.0.0/120")), n("10.0.0.0/24"));
        assert_eq!(canonical_net(n("::/127")), n("::/127"));
        assert_eq!(canonical_net(n("::1/128")), n("::1/128"));
        assert_eq!(canonical_net(n("::ffff:0:0/95")), n("::ffff:0:0/95"));
        assert_eq!(canonical_net(n("fd00::/8")), n("fd00::/8"));
        assert!(net_contains(&n("127.0.0.0/8"), ip("::ffff:127.0.0.77")));
        assert!(net_contains(&n("::ffff:127.0.0.0/104"), ip("127.0.0.77")));
        assert!(!net_contains(&n("127.0.0.0/8"), ip("::1")));
    }

    #[test]
    fn classes_of_non_unicast_addresses() {
        for (a, c) in [
            ("224.0.0.1", Some(AddressClass::Multicast)),
            ("239.255.255.250", Some(AddressClass::Multicast)),
            ("ff02::1", Some(AddressClass::Multicast)),
            ("::ffff:224.0.0.1", Some(AddressClass::Multicast)),
            ("255.255.255.255", Some(AddressClass::Broadcast)),
            ("0.0.0.0", Some(AddressClass::Unspecified)),
            ("::", Some(AddressClass::Unspecified)),
            ("::ffff:0.0.0.0", Some(AddressClass::Unspecified)),
            ("169.254.169.254", Some(AddressClass::LinkLocal)),
            ("169.254.0.1", Some(AddressClass::LinkLocal)),
            ("fe80::1", Some(AddressClass::LinkLocal)),
            ("febf::1", Some(AddressClass::LinkLocal)),
            ("127.0.0.1", None),
            ("::1", None),
            ("10.0.0.255", None),
            ("fd00::1", None),
            ("8.8.8.8", None),
        ] {
            assert_eq!(class_of(ip(a)), c, "{a}");
        }
    }

    #[test]
    fn refusal_says_why_and_how_to_allow() {
        let r = ClassRefusal {
            ip: ip("169.254.169.254"),
            class: AddressClass::LinkLocal,
        };
        assert_eq!(
            r.to_string(),
            "169.254.169.254 is link-local (the instance metadata service); scanfleet refuses \
             link-local targets unless --allow-address-class link-local"
        );
        let m = ClassRefusal {
            ip: ip("224.0.0.1"),
            class: AddressClass::Multicast,
        };
        assert!(
            m.to_string().ends_with("--allow-address-class multicast"),
            "{m}"
        );
    }

    #[test]
    fn class_names_parse_and_serialize() {
        for c in AddressClass::ALL {
            assert_eq!(c.as_str().parse::<AddressClass>(), Ok(c));
            assert_eq!(
                serde_json::to_value(c).unwrap(),
                serde_json::json!(c.as_str())
            );
        }
        let e = "linklocal\x1b]0;x\x07".parse::<AddressClass>().unwrap_err();
        assert!(!e.to_string().contains('\x1b'), "{e}");
    }

    proptest! {
        /// Canonical forms are fixed points and never change an IPv4 address.
        #[test]
        fn canonical_is_idempotent(bits in any::<u128>(), v4 in any::<u32>()) {
            let a = IpAddr::V6(Ipv6Addr::from(bits));
            prop_assert_eq!(canonical(canonical(a)), canonical(a));
            let b = IpAddr::V4(Ipv4Addr::from(v4));
            prop_assert_eq!(canonical(b), b);
            let mapped = IpAddr::V6(Ipv4Addr::from(v4).to_ipv6_mapped());
            prop_assert_eq!(canonical(mapped), b);
            prop_assert_eq!(class_of(mapped), class_of(b));
        }
    }
}
