//! The index space of a scan and the bookkeeping over it.
//!
//! Probe `i` of a request is target `i % targets` and port number `i / targets`
//! of the port spec (the same layout as the connect scanner), so that the
//! permutation of `0..targets*ports` spreads consecutive probes over hosts. The
//! receive path maps a reply back to its index with a hash lookup (address ->
//! target) and a binary search (port -> rank), and records it in one bit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use scanfleet_common::{PortSpec, Target};

/// Rank <-> port over the merged ranges of a [`PortSpec`]: O(ranges) memory,
/// O(log ranges) per lookup, whatever the number of ports.
#[derive(Debug, Clone)]
pub struct PortIndex {
    ranges: Vec<(u16, u16)>,
    /// Rank of the first port of each range.
    starts: Vec<u32>,
    len: u32,
}

impl PortIndex {
    pub fn new(spec: &PortSpec) -> Self {
        let ranges = spec.ranges().to_vec();
        let mut starts = Vec::with_capacity(ranges.len());
        let mut len = 0u32;
        for &(lo, hi) in &ranges {
            starts.push(len);
            len += u32::from(hi - lo) + 1;
        }
        PortIndex {
            ranges,
            starts,
            len,
        }
    }

    /// Number of ports.
    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The port of rank `rank`.
    pub fn port(&self, rank: u32) -> Option<u16> {
        if rank >= self.len {
            return None;
        }
        let r = self.starts.partition_point(|&s| s <= rank).checked_sub(1)?;
        let (lo, _) = self.ranges[r];
        u16::try_from(u32::from(lo) + (rank - self.starts[r])).ok()
    }

    /// The rank of `port`, if the spec holds it.
    pub fn rank(&self, port: u16) -> Option<u32> {
        let r = self
            .ranges
            .partition_point(|&(lo, _)| lo <= port)
            .checked_sub(1)?;
        let (lo, hi) = self.ranges[r];
        (port <= hi).then(|| self.starts[r] + u32::from(port - lo))
    }
}

/// One distinct address of the request.
#[derive(Debug, Clone)]
pub struct TargetEntry {
    pub ip: IpAddr,
    /// The address our probes to it come from (the kernel's route source).
    pub local: Option<IpAddr>,
    /// How many times the request lists this address: each copy gets its own
    /// observations, so the "one observation per (target, port)" contract holds.
    pub copies: u32,
    /// The smallest budget any copy was given.
    pub rate_pps: u32,
    /// Set when the address is not probed at all; every port is then reported
    /// filtered with this reason.
    pub skip: Option<&'static str>,
}

/// The distinct targets of a request and the address -> index lookup the
/// receive path needs.
#[derive(Debug, Clone)]
pub struct TargetTable {
    pub entries: Vec<TargetEntry>,
    by_ip: HashMap<IpAddr, u32>,
}

impl TargetTable {
    /// Deduplicate the request's targets (first occurrence keeps its place).
    pub fn new(targets: &[Target]) -> Self {
        let mut entries: Vec<TargetEntry> = Vec::with_capacity(targets.len());
        let mut by_ip = HashMap::with_capacity(targets.len());
        for t in targets {
            match by_ip.get(&t.ip) {
                Some(&i) => {
                    let e: &mut TargetEntry = &mut entries[i as usize];
                    e.copies += 1;
                    e.rate_pps = e.rate_pps.min(t.rate_pps);
                }
                None => {
                    by_ip.insert(t.ip, entries.len() as u32);
                    entries.push(TargetEntry {
                        ip: t.ip,
                        local: None,
                        copies: 1,
                        rate_pps: t.rate_pps,
                        skip: None,
                    });
                }
            }
        }
        TargetTable { entries, by_ip }
    }

    pub fn len(&self) -> u32 {
        self.entries.len() as u32
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn index_of(&self, ip: &IpAddr) -> Option<u32> {
        self.by_ip.get(ip).copied()
    }
}

/// A fixed-size bitmap shared between the receive thread (sets bits) and the
/// transmit thread (reads them to pick retransmits).
#[derive(Debug)]
pub struct AtomicBitmap {
    words: Vec<AtomicU64>,
    len: u64,
}

impl AtomicBitmap {
    pub fn new(len: u64) -> Self {
        let words = (0..len.div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        AtomicBitmap { words, len }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Set bit `i`; true if this call set it (it was clear before). Out-of-range
    /// indices are never set.
    pub fn set(&self, i: u64) -> bool {
        if i >= self.len {
            return false;
        }
        let bit = 1u64 << (i % 64);
        self.words[(i / 64) as usize].fetch_or(bit, Ordering::AcqRel) & bit == 0
    }

    pub fn get(&self, i: u64) -> bool {
        i < self.len
            && self.words[(i / 64) as usize].load(Ordering::Acquire) & (1u64 << (i % 64)) != 0
    }

    /// Number of set bits.
    pub fn count(&self) -> u64 {
        self.words
            .iter()
            .map(|w| u64::from(w.load(Ordering::Relaxed).count_ones()))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn port_index_matches_portspec(items in proptest::collection::vec((1u16..=65535, 0u16..300), 1..20)) {
            let spec_text = items.iter().map(|&(lo, w)| format!("{}-{}", lo, lo.saturating_add(w))).collect::<Vec<_>>().join(",");
            let spec = PortSpec::parse(&spec_text).unwrap();
            let idx = PortIndex::new(&spec);
            prop_assert_eq!(idx.len() as usize, spec.len());
            for (rank, port) in spec.iter().enumerate() {
                prop_assert_eq!(idx.port(rank as u32), Some(port));
                prop_assert_eq!(idx.rank(port), Some(rank as u32));
            }
            prop_assert_eq!(idx.port(idx.len()), None);
            for p in [0u16, 1, 2, 1000, 65534, 65535] {
                prop_assert_eq!(idx.rank(p).is_some(), spec.contains(p));
            }
        }
    }

    #[test]
    fn full_range_ends_at_65535() {
        let idx = PortIndex::new(&PortSpec::all());
        assert_eq!(idx.len(), 65535);
        assert_eq!(idx.port(65534), Some(65535));
        assert_eq!(idx.rank(65535), Some(65534));
        assert_eq!(idx.rank(0), None);
    }

    #[test]
    fn duplicate_targets_merge_with_the_smallest_rate() {
        let t = |ip: &str, rate| Target {
            ip: ip.parse().unwrap(),
            asset_id: ip.into(),
            rate_pps: rate,
        };
        let table = TargetTable::new(&[t("10.0.0.1", 500), t("10.0.0.2", 100), t("10.0.0.1", 50)]);
        assert_eq!(table.len(), 2);
        assert_eq!(table.entries[0].copies, 2);
        assert_eq!(table.entries[0].rate_pps, 50);
        assert_eq!(table.index_of(&"10.0.0.2".parse().unwrap()), Some(1));
        assert_eq!(table.index_of(&"10.0.0.3".parse().unwrap()), None);
    }

    #[test]
    fn bitmap_sets_once() {
        let b = AtomicBitmap::new(130);
        assert!(b.set(129));
        assert!(!b.set(129));
        assert!(b.get(129) && !b.get(128));
        assert!(!b.set(130), "out of range");
        assert!(!b.get(1000));
        assert_eq!(b.count(), 1);
        assert!(AtomicBitmap::new(0).is_empty());
    }
}
