//! Target specifications typed by a user: an IP, a CIDR block, or an IPv4 range
//! `a.b.c.d-e` (last octet) / `a.b.c.d-a.b.c.e`. Expansion has a size limit so a
//! typo like `10.0.0.0/8` does not become sixteen million probes by accident.
//!
//! Addresses come out in their canonical form ([`crate::address::canonical`]):
//! `::ffff:10.0.0.1` is 10.0.0.1 and `::ffff:10.0.0.0/120` is 10.0.0.0/24, so that
//! exclusions written in IPv4 cover them. A typed CIDR expands to every address of
//! the block, its first and last included, as nmap does: scanfleet cannot know the
//! real netmask of a remote network, so it cannot tell a directed broadcast from a
//! host; the kernel refuses to send to the broadcast address of a network the
//! scanner is attached to (scanfleet never sets `SO_BROADCAST`), and the limited
//! broadcast 255.255.255.255 is refused by scope.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

/// Default cap on the number of addresses one scan may expand to.
pub const DEFAULT_MAX_TARGETS: u64 = 65_536;

/// Why a target spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// `spec` is escaped and bounded ([`crate::text::echo`]), quotes included.
    #[error("{spec} is not an IP address, CIDR block or a.b.c.d-e range")]
    Unparsable { spec: String },
    #[error("range {spec} runs backwards")]
    Backwards { spec: String },
    /// `count` is exact; `saturated` means the true count is larger than `count`
    /// (`::/0` holds 2^128 addresses, one more than a `u128` holds).
    #[error(
        "targets expand to {}{count} {}, more than the limit of {limit} (raise it with --max-targets)",
        if *saturated { "more than " } else { "" },
        plural(*count, "address", "addresses")
    )]
    TooMany {
        count: u128,
        saturated: bool,
        limit: u64,
    },
}

/// `one` for 1, `many` otherwise: "1 address", "2 addresses".
pub fn plural(n: u128, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

/// One parsed target spec, not yet expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    Ip(IpAddr),
    Net(IpNet),
    Range(Ipv4Addr, Ipv4Addr),
}

impl TargetSpec {
    /// # Errors
    /// [`TargetError`] naming the spec.
    pub fn parse(spec: &str) -> Result<TargetSpec, TargetError> {
        let s = spec.trim();
        let bad = || TargetError::Unparsable {
            spec: crate::text::echo(spec),
        };
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(TargetSpec::Ip(crate::address::canonical(ip)));
        }
        if s.contains('/') {
            // Accept host bits set (10.0.0.5/24) as nmap does: scan the whole block.
            return s
                .parse::<IpNet>()
                .map(|n| TargetSpec::Net(crate::address::canonical_net(n.trunc())))
                .map_err(|_| bad());
        }
        if let Some((a, b)) = s.split_once('-') {
            let start: Ipv4Addr = a.parse().map_err(|_| bad())?;
            let end: Ipv4Addr = if let Ok(full) = b.parse::<Ipv4Addr>() {
                full
            } else {
                let last: u8 = b.parse().map_err(|_| bad())?;
                let o = start.octets();
                Ipv4Addr::new(o[0], o[1], o[2], last)
            };
            if u32::from(start) > u32::from(end) {
                return Err(TargetError::Backwards {
                    spec: crate::text::echo(spec),
                });
            }
            return Ok(TargetSpec::Range(start, end));
        }
        Err(bad())
    }

    /// Number of addresses this spec expands to, `None` for `::/0` (2^128, one
    /// more than a `u128` holds).
    pub fn count(&self) -> Option<u128> {
        match self {
            TargetSpec::Ip(_) => Some(1),
            TargetSpec::Net(IpNet::V4(n)) => Some(1u128 << (32 - n.prefix_len())),
            TargetSpec::Net(IpNet::V6(n)) => 1u128.checked_shl(128 - u32::from(n.prefix_len())),
            TargetSpec::Range(a, b) => Some(u128::from(u32::from(*b) - u32::from(*a)) + 1),
        }
    }

    fn expand_into(&self, out: &mut Vec<IpAddr>) {
        match self {
            TargetSpec::Ip(ip) => out.push(*ip),
            TargetSpec::Net(net) => out.extend(net.hosts_or_all()),
            TargetSpec::Range(a, b) => {
                out.extend((u32::from(*a)..=u32::from(*b)).map(|x| IpAddr::V4(Ipv4Addr::from(x))))
            }
        }
    }
}

trait HostsOrAll {
    fn hosts_or_all(&self) -> Box<dyn Iterator<Item = IpAddr>>;
}

impl HostsOrAll for IpNet {
    /// Every address of the block: like nmap, a /24 scans .0 and .255 too.
    fn hosts_or_all(&self) -> Box<dyn Iterator<Item = IpAddr>> {
        match self {
            IpNet::V4(n) => {
                let lo = u32::from(n.network());
                let hi = u32::from(n.broadcast());
                Box::new((lo..=hi).map(|x| IpAddr::V4(Ipv4Addr::from(x))))
            }
            IpNet::V6(n) => Box::new(n.hosts().map(IpAddr::V6)),
        }
    }
}

/// Parse and expand specs into distinct addresses in the order given, refusing to
/// go over `limit` addresses before anything is allocated.
///
/// # Errors
/// [`TargetError`] for the first bad spec, or when the total exceeds `limit`.
pub fn expand(specs: &[String], limit: u64) -> Result<Vec<IpAddr>, TargetError> {
    let parsed = specs
        .iter()
        .map(|s| TargetSpec::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let total: Option<u128> = parsed
        .iter()
        .try_fold(0u128, |sum, p| p.count().and_then(|c| sum.checked_add(c)));
    if total.is_none_or(|t| t > u128::from(limit)) {
        return Err(TargetError::TooMany {
            count: total.unwrap_or(u128::MAX),
            saturated: total.is_none(),
            limit,
        });
    }
    let total = total.unwrap_or(0);
    let mut out = Vec::with_capacity(total as usize);
    for p in &parsed {
        p.expand_into(&mut out);
    }
    let mut seen = std::collections::HashSet::with_capacity(out.len());
    out.retain(|ip| seen.insert(*ip));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_ip_cidr_and_ranges() {
        assert_eq!(expand(&s(&["127.0.0.1"]), 10).unwrap().len(), 1);
        assert_eq!(expand(&s(&["10.9.0.0/30"]), 10).unwrap().len(), 4);
        assert_eq!(
            expand(&s(&["10.9.0.5/30"]), 10).unwrap()[0].to_string(),
            "10.9.0.4"
        );
        assert_eq!(expand(&s(&["10.9.0.1-5"]), 10).unwrap().len(), 5);
        assert_eq!(expand(&s(&["10.9.0.250-10.9.1.4"]), 100).unwrap().len(), 11);
        assert_eq!(expand(&s(&["::1"]), 10).unwrap().len(), 1);
        assert_eq!(
            expand(&s(&["10.9.0.1", "10.9.0.1-2"]), 10).unwrap().len(),
            2
        );
    }

    #[test]
    fn refuses_bad_targets_by_name() {
        for bad in [
            "example",
            "10.0.0.300",
            "10.0.0.1/33",
            "10.0.0.5-1",
            "10.0.0.1-300",
            "",
        ] {
            let e = expand(&s(&[bad]), 10).unwrap_err();
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn size_limit_is_checked_before_expansion() {
        let e = expand(&s(&["10.0.0.0/8"]), DEFAULT_MAX_TARGETS).unwrap_err();
        assert_eq!(
            e,
            TargetError::TooMany {
                count: 1 << 24,
                saturated: false,
                limit: DEFAULT_MAX_TARGETS
            }
        );
        assert!(expand(&s(&["::/0"]), DEFAULT_MAX_TARGETS).is_err());
        assert_eq!(
            expand(&s(&["10.0.0.0/16"]), 1 << 16).unwrap().len(),
            1 << 16
        );
    }

    #[test]
    fn counts_are_exact_and_messages_say_more_than() {
        let e = expand(&s(&["::/0"]), 10).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "targets expand to more than {} addresses, more than the limit of 10 (raise it with --max-targets)",
                u128::MAX
            )
        );
        let e = expand(&s(&["::/1"]), 10).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!(" {} addresses", 1u128 << 127)),
            "{e}"
        );
        let e = expand(&s(&["::/1", "8000::/1"]), 10).unwrap_err();
        assert!(e.to_string().contains("more than 3402"), "{e}");
        let e = expand(&s(&["10.0.0.1-2"]), 1).unwrap_err();
        assert!(
            e.to_string().starts_with("targets expand to 2 addresses"),
            "{e}"
        );
        assert_eq!(plural(1, "address", "addresses"), "address");
        assert_eq!(TargetSpec::parse("::/0").unwrap().count(), None);
    }

    #[test]
    fn mapped_targets_are_ipv4() {
        assert_eq!(
            expand(&s(&["::ffff:127.0.0.77"]), 10).unwrap(),
            ["127.0.0.77".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            expand(&s(&["::ffff:10.9.0.0/126", "10.9.0.1"]), 10)
                .unwrap()
                .len(),
            4
        );
        assert_eq!(
            TargetSpec::parse("::ffff:10.9.0.0/120").unwrap(),
            TargetSpec::Net("10.9.0.0/24".parse().unwrap())
        );
        assert_eq!(expand(&s(&["::1"]), 10).unwrap()[0].to_string(), "::1");
    }

    #[test]
    fn echoed_specs_are_bounded_and_escaped() {
        let huge = "x".repeat(100_000);
        let e = expand(&[huge], 10).unwrap_err().to_string();
        assert!(
            e.len() < 200 && e.contains("...\""),
            "{} bytes echoed",
            e.len()
        );
        let e = expand(&s(&["\x1b]0;title\x07"]), 10)
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\x1b') && e.contains("\\x1b]0;title"), "{e}");
    }

    proptest! {
        #[test]
        fn cidr_count_matches_expansion(a in any::<u32>(), prefix in 20u8..=32) {
            let spec = format!("{}/{}", Ipv4Addr::from(a), prefix);
            let parsed = TargetSpec::parse(&spec).unwrap();
            let ips = expand(&[spec], 1 << 12).unwrap();
            prop_assert_eq!(parsed.count(), Some(ips.len() as u128));
        }

        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = TargetSpec::parse(&s);
        }
    }
}
