//! Port specifications in nmap syntax: `22,80,8000-8100`, `-` for 1-65535,
//! `-1024` and `60000-` for open-ended ranges, and `--top-ports N` from the
//! project's own frequency list (`data/top-ports.txt`).
//!
//! A port number is decimal digits only: `+80` and `080` are refused (nmap reads
//! `080` as 80 through `strtol`, other tools read it as octal 64; scanfleet asks for
//! the number as it is meant). Items are echoed in errors escaped and bounded.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The project's port frequency list, most common first.
const TOP_PORTS: &str = include_str!("../../data/top-ports.txt");
/// The project's UDP port frequency list, most common first.
const TOP_UDP_PORTS: &str = include_str!("../../data/top-udp-ports.txt");

/// Why a port spec was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortSpecError {
    #[error("empty port specification")]
    Empty,
    /// `item` is escaped and bounded ([`crate::text::echo`]), quotes included.
    #[error("{item} is not a port number (expected 1-65535)")]
    BadNumber { item: String },
    #[error("{item} is not a port number: write {port} without leading zeros")]
    LeadingZero { item: String, port: u32 },
    #[error("range {item} runs backwards")]
    Backwards { item: String },
    #[error("{n} is not in 1 to {max} (the length of the top-ports list)")]
    TopPortsOutOfRange { n: usize, max: usize },
    #[error("{n} is not in 1 to {max} (the length of the top-udp-ports list)")]
    TopUdpPortsOutOfRange { n: usize, max: usize },
}

/// A sorted set of ports of one protocol, stored as merged inclusive ranges so
/// that `-p-` costs two numbers, not 65535. The default is the empty set (no
/// port of that protocol is scanned); only [`PortSpec::parse`] refuses it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PortSpec {
    ranges: Vec<(u16, u16)>,
}

impl PortSpec {
    /// Parse nmap's `-p` syntax. Protocol prefixes (`T:`) are accepted for TCP;
    /// `U:` is refused because scanfleet scans TCP only.
    ///
    /// # Errors
    /// [`PortSpecError`] naming the offending item.
    pub fn parse(spec: &str) -> Result<PortSpec, PortSpecError> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(PortSpecError::Empty);
        }
        let mut ranges = Vec::new();
        for raw in spec.split(',') {
            let item = raw.trim();
            let item = item.strip_prefix("T:").unwrap_or(item);
            let echoed = || crate::text::echo(raw.trim());
            if item.is_empty() {
                return Err(PortSpecError::BadNumber {
                    item: crate::text::echo(raw),
                });
            }
            let bad = || PortSpecError::BadNumber { item: echoed() };
            let num = |s: &str| -> Result<u16, PortSpecError> {
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                match s.parse::<u32>() {
                    Ok(n) if s.len() > 1 && s.starts_with('0') => Err(PortSpecError::LeadingZero {
                        item: echoed(),
                        port: n,
                    }),
                    Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
                    _ => Err(bad()),
                }
            };
            let (lo, hi) = match item.split_once('-') {
                None => {
                    let p = num(item)?;
                    (p, p)
                }
                Some((a, b)) => {
                    let lo = if a.is_empty() { 1 } else { num(a)? };
                    let hi = if b.is_empty() { 65535 } else { num(b)? };
                    (lo, hi)
                }
            };
            if lo > hi {
                return Err(PortSpecError::Backwards { item: echoed() });
            }
            ranges.push((lo, hi));
        }
        Ok(PortSpec::from_ranges(ranges))
    }

    /// The `n` most common ports from the project's frequency list.
    ///
    /// # Errors
    /// [`PortSpecError::TopPortsOutOfRange`] when `n` is 0 or larger than the list.
    pub fn top(n: usize) -> Result<PortSpec, PortSpecError> {
        let list = top_ports_list();
        if n == 0 || n > list.len() {
            return Err(PortSpecError::TopPortsOutOfRange { n, max: list.len() });
        }
        Ok(PortSpec::from_ranges(
            list[..n].iter().map(|&p| (p, p)).collect(),
        ))
    }

    /// The `n` most common UDP ports from the project's UDP frequency list.
    ///
    /// # Errors
    /// [`PortSpecError::TopUdpPortsOutOfRange`] when `n` is 0 or larger than the list.
    pub fn top_udp(n: usize) -> Result<PortSpec, PortSpecError> {
        let list = top_udp_ports_list();
        if n == 0 || n > list.len() {
            return Err(PortSpecError::TopUdpPortsOutOfRange { n, max: list.len() });
        }
        Ok(PortSpec::from_ranges(
            list[..n].iter().map(|&p| (p, p)).collect(),
        ))
    }

    /// nmap's `-p` with protocol prefixes: `U:53,161,T:22,80,443`. A prefix
    /// applies to the items after it until the next prefix; items before any
    /// prefix are returned apart, for the caller to give to the protocols being
    /// scanned (as nmap does).
    ///
    /// # Errors
    /// [`PortSpecError`] naming the offending item, as [`PortSpec::parse`].
    pub fn parse_protocols(spec: &str) -> Result<ProtocolPorts, PortSpecError> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(PortSpecError::Empty);
        }
        let (mut any, mut tcp, mut udp) = (Vec::new(), Vec::new(), Vec::new());
        let mut current = 0u8;
        for raw in spec.split(',') {
            let mut item = raw.trim();
            for (prefix, which) in [("T:", 1u8), ("U:", 2u8)] {
                if let Some(rest) = item.strip_prefix(prefix) {
                    current = which;
                    item = rest;
                }
            }
            let one = PortSpec::parse(item).map_err(|e| match e {
                PortSpecError::Empty => PortSpecError::BadNumber {
                    item: crate::text::echo(raw.trim()),
                },
                e => e,
            })?;
            let into = match current {
                1 => &mut tcp,
                2 => &mut udp,
                _ => &mut any,
            };
            into.extend_from_slice(one.ranges());
        }
        Ok(ProtocolPorts {
            untagged: PortSpec::from_ranges(any),
            tcp: PortSpec::from_ranges(tcp),
            udp: PortSpec::from_ranges(udp),
        })
    }

    /// Every port, 1-65535.
    pub fn all() -> PortSpec {
        PortSpec {
            ranges: vec![(1, 65535)],
        }
    }

    fn from_ranges(mut ranges: Vec<(u16, u16)>) -> PortSpec {
        ranges.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match merged.last_mut() {
                Some(last) if u32::from(lo) <= u32::from(last.1) + 1 => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        PortSpec { ranges: merged }
    }

    /// Number of ports.
    pub fn len(&self) -> usize {
        self.ranges
            .iter()
            .map(|&(lo, hi)| usize::from(hi - lo) + 1)
            .sum()
    }

    /// Always false for a parsed spec; present for completeness.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn contains(&self, port: u16) -> bool {
        self.ranges
            .iter()
            .any(|&(lo, hi)| (lo..=hi).contains(&port))
    }

    /// The `i`-th port in ascending order, for index-space walks.
    pub fn nth(&self, mut i: usize) -> Option<u16> {
        for &(lo, hi) in &self.ranges {
            let n = usize::from(hi - lo) + 1;
            if i < n {
                return Some(lo + i as u16);
            }
            i -= n;
        }
        None
    }

    /// Ports in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.ranges.iter().flat_map(|&(lo, hi)| lo..=hi)
    }

    /// Merged inclusive ranges in ascending order.
    pub fn ranges(&self) -> &[(u16, u16)] {
        &self.ranges
    }
}

/// A `-p` spec split by protocol prefix ([`PortSpec::parse_protocols`]); each
/// part may be empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProtocolPorts {
    /// Items before any `T:` or `U:` prefix.
    pub untagged: PortSpec,
    pub tcp: PortSpec,
    pub udp: PortSpec,
}

/// The UDP frequency list, most common first, as parsed from
/// `data/top-udp-ports.txt` (a `#` starts a comment, also after a port).
pub fn top_udp_ports_list() -> Vec<u16> {
    TOP_UDP_PORTS
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.parse().ok())
        .collect()
}

/// The frequency list, most common first, as parsed from `data/top-ports.txt`.
pub fn top_ports_list() -> Vec<u16> {
    TOP_PORTS
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.parse().ok())
        .collect()
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(lo, hi)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for PortSpec {
    type Err = PortSpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PortSpec::parse(s)
    }
}

impl Serialize for PortSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for PortSpec {
    /// `""` is the empty set, as [`Serialize`] writes it (a UDP-only job's TCP
    /// ports); anything else is [`PortSpec::parse`]d.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Ok(PortSpec::default());
        }
        PortSpec::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_nmap_syntax() {
        let p = PortSpec::parse("22,80,8000-8100").unwrap();
        assert_eq!(p.len(), 2 + 101);
        assert!(p.contains(8050) && !p.contains(8101));
        assert_eq!(PortSpec::parse("-").unwrap(), PortSpec::all());
        assert_eq!(PortSpec::parse("-1024").unwrap().len(), 1024);
        assert_eq!(PortSpec::parse("65000-").unwrap().len(), 536);
        assert_eq!(PortSpec::parse("T:443, 80").unwrap().to_string(), "80,443");
        assert_eq!(PortSpec::parse("1-10,5-20,21").unwrap().to_string(), "1-21");
    }

    #[test]
    fn refuses_bad_specs_by_name() {
        assert_eq!(PortSpec::parse(""), Err(PortSpecError::Empty));
        assert!(matches!(
            PortSpec::parse("0"),
            Err(PortSpecError::BadNumber { .. })
        ));
        assert!(matches!(
            PortSpec::parse("65536"),
            Err(PortSpecError::BadNumber { .. })
        ));
        assert!(matches!(
            PortSpec::parse("80,,81"),
            Err(PortSpecError::BadNumber { .. })
        ));
        assert!(matches!(
            PortSpec::parse("http"),
            Err(PortSpecError::BadNumber { .. })
        ));
        assert!(matches!(
            PortSpec::parse("U:53"),
            Err(PortSpecError::BadNumber { .. })
        ));
        let e = PortSpec::parse("100-10").unwrap_err();
        assert_eq!(e.to_string(), "range \"100-10\" runs backwards");
    }

    #[test]
    fn signs_and_leading_zeros_are_refused() {
        for bad in [
            "+80", "080", "-080", "0080-90", "80-+90", " +1", "1_000", "٨٠",
        ] {
            assert!(PortSpec::parse(bad).is_err(), "{bad} accepted");
        }
        assert_eq!(
            PortSpec::parse("080").unwrap_err().to_string(),
            "\"080\" is not a port number: write 80 without leading zeros"
        );
        assert_eq!(
            PortSpec::parse("+80").unwrap_err().to_string(),
            "\"+80\" is not a port number (expected 1-65535)"
        );
        assert_eq!(PortSpec::parse("80, 1-9").unwrap().to_string(), "1-9,80");
    }

    #[test]
    fn echoed_items_are_bounded_and_escaped() {
        let huge = format!("{}x", "9".repeat(100_000));
        let e = PortSpec::parse(&huge).unwrap_err().to_string();
        assert!(e.len() < 200, "{} bytes echoed", e.len());
        let e = PortSpec::parse("\x1b]0;t\x07").unwrap_err().to_string();
        assert!(!e.contains('\x1b') && e.contains("\\x1b"), "{e}");
    }

    #[test]
    fn top_ports_come_from_the_list() {
        let list = top_ports_list();
        assert!(list.len() >= 300);
        let mut sorted = list.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), list.len(), "frequency list has duplicates");
        let top3 = PortSpec::top(3).unwrap();
        assert_eq!(top3.to_string(), "22,80,443");
        assert!(PortSpec::top(0).is_err());
        assert!(PortSpec::top(list.len() + 1).is_err());
    }

    #[test]
    fn protocol_prefixes_split_the_spec_like_nmap() {
        let p = PortSpec::parse_protocols("22,U:53,161-162,T:80,443").unwrap();
        assert_eq!(p.untagged.to_string(), "22");
        assert_eq!(p.udp.to_string(), "53,161-162");
        assert_eq!(p.tcp.to_string(), "80,443");
        let p = PortSpec::parse_protocols("U:53").unwrap();
        assert!(p.tcp.is_empty() && p.untagged.is_empty());
        assert!(matches!(
            PortSpec::parse_protocols("U:"),
            Err(PortSpecError::BadNumber { .. })
        ));
        assert!(PortSpec::parse_protocols("U:0").is_err());
        assert!(PortSpec::parse_protocols("").is_err());
    }

    #[test]
    fn top_udp_ports_come_from_their_list() {
        let list = top_udp_ports_list();
        assert!(list.len() >= 80, "{}", list.len());
        let mut sorted = list.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            list.len(),
            "UDP frequency list has duplicates"
        );
        assert_eq!(PortSpec::top_udp(3).unwrap().to_string(), "53,123,161");
        assert!(PortSpec::top_udp(0).is_err());
        assert!(PortSpec::top_udp(list.len() + 1).is_err());
    }

    #[test]
    fn the_empty_spec_roundtrips_through_serde() {
        let empty = PortSpec::default();
        let json = serde_json::to_string(&empty).unwrap();
        assert_eq!(json, "\"\"");
        assert_eq!(serde_json::from_str::<PortSpec>(&json).unwrap(), empty);
        assert!(PortSpec::parse("").is_err(), "a typed spec is never empty");
    }

    proptest! {
        #[test]
        fn display_roundtrips(ports in proptest::collection::vec(1u16..=65535, 1..50)) {
            let spec = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
            let p = PortSpec::parse(&spec).unwrap();
            let again = PortSpec::parse(&p.to_string()).unwrap();
            prop_assert_eq!(&p, &again);
            for port in &ports { prop_assert!(p.contains(*port)); }
            let mut uniq = ports.clone(); uniq.sort_unstable(); uniq.dedup();
            prop_assert_eq!(p.len(), uniq.len());
            prop_assert_eq!(p.iter().collect::<Vec<_>>(), uniq.clone());
            for (i, port) in uniq.iter().enumerate() { prop_assert_eq!(p.nth(i), Some(*port)); }
            prop_assert_eq!(p.nth(uniq.len()), None);
        }

        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = PortSpec::parse(&s);
        }
    }
}
