//! Target specifications typed by a user: an IP, a CIDR block, or an IPv4 range
//! `a.b.c.d-e` (last octet) / `a.b.c.d-a.b.c.e`. Expansion has a size limit so a
//! typo like `10.0.0.0/8` does not become sixteen million probes by accident.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

/// Default cap on the number of addresses one scan may expand to.
pub const DEFAULT_MAX_TARGETS: u64 = 65_536;

/// Why a target spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("{spec:?} is not an IP address, CIDR block or a.b.c.d-e range")]
    Unparsable { spec: String },
    #[error("range {spec:?} runs backwards")]
    Backwards { spec: String },
    #[error(
        "targets expand to {count} addresses, more than the limit of {limit} (raise it with --max-targets)"
    )]
    TooMany { count: u128, limit: u64 },
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
            spec: spec.to_string(),
        };
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(TargetSpec::Ip(ip));
        }
        if s.contains('/') {
            // Accept host bits set (10.0.0.5/24) as nmap does: scan the whole block.
            return s
                .parse::<IpNet>()
                .map(|n| TargetSpec::Net(n.trunc()))
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
                    spec: spec.to_string(),
                });
            }
            return Ok(TargetSpec::Range(start, end));
        }
        Err(bad())
    }

    /// Number of addresses this spec expands to.
    pub fn count(&self) -> u128 {
        match self {
            TargetSpec::Ip(_) => 1,
            TargetSpec::Net(IpNet::V4(n)) => 1u128 << (32 - n.prefix_len()),
            TargetSpec::Net(IpNet::V6(n)) => {
                let bits = 128 - u32::from(n.prefix_len());
                if bits >= 128 {
                    u128::MAX
                } else {
                    1u128 << bits
                }
            }
            TargetSpec::Range(a, b) => u128::from(u32::from(*b) - u32::from(*a)) + 1,
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
    let total: u128 = parsed
        .iter()
        .map(TargetSpec::count)
        .fold(0u128, u128::saturating_add);
    if total > u128::from(limit) {
        return Err(TargetError::TooMany {
            count: total,
            limit,
        });
    }
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
                limit: DEFAULT_MAX_TARGETS
            }
        );
        assert!(expand(&s(&["::/0"]), DEFAULT_MAX_TARGETS).is_err());
        assert_eq!(
            expand(&s(&["10.0.0.0/16"]), 1 << 16).unwrap().len(),
            1 << 16
        );
    }

    proptest! {
        #[test]
        fn cidr_count_matches_expansion(a in any::<u32>(), prefix in 20u8..=32) {
            let spec = format!("{}/{}", Ipv4Addr::from(a), prefix);
            let parsed = TargetSpec::parse(&spec).unwrap();
            let ips = expand(&[spec], 1 << 12).unwrap();
            prop_assert_eq!(parsed.count(), ips.len() as u128);
        }

        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = TargetSpec::parse(&s);
        }
    }
}
