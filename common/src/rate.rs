//! Rate policy: how many probe packets per second one target may receive, from
//! its instance type's published network performance.
//!
//! # Derivation
//! EC2 publishes, per instance type, the *baseline* bandwidth of its network
//! card (`DescribeInstanceTypes`: `NetworkInfo.NetworkCards[].BaselineBandwidthInGbps`),
//! the rate an instance sustains once its burst credits are spent. A SYN probe
//! costs [`SYN_WIRE_BYTES`] on the wire (a minimum Ethernet frame of 64 bytes
//! with preamble and inter-frame gap), and its answer (SYN-ACK or RST) the same
//! again on the target's way out. So
//!
//! ```text
//! budget  = clamp(baseline_bps * baseline_percent / 100 / (84 * 8), min_pps, max_pps)
//! ceiling = clamp(budget * growth_percent / 100,                    budget,  max_pps)
//! ```
//!
//! With the defaults (5 % of the baseline, growth 200 %, 100..20 000 pps) a
//! t3.small (128 Mbit/s) gets a budget of 9 523 pps and a ceiling of 19 047, a
//! t3.medium 19 047 / 20 000, an m5.large (750 Mbit/s) 20 000 / 20 000. A target
//! carries its *ceiling* as [`Target::rate_pps`](crate::Target): the most it may
//! ever receive from one worker; the SYN engine starts it at the budget
//! ([`Pacing::start_percent`](crate::Pacing) of the ceiling) and adapts
//! between the two. The network information comes from discovery (cached per
//! type and region in the inventory, [`Asset::network`](crate::Asset)) or from the
//! table shipped in `data/instance-network.csv` (the same API, answered by moto;
//! `scripts/gen-instance-network.py`). A type in neither gets `default_pps`.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// The shipped table: `type,baseline_mbps,peak_mbps,network_performance`.
const SHIPPED_TABLE: &str = include_str!("../../data/instance-network.csv");

/// Bytes one SYN probe occupies on the wire: a 64-byte minimum Ethernet frame
/// (IPv4 + TCP headers and padding, FCS) plus 8 bytes of preamble and a 12-byte
/// inter-frame gap.
pub const SYN_WIRE_BYTES: u64 = 84;

/// The network performance of an instance type, as `DescribeInstanceTypes`
/// reports it for the type's default network card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceNetwork {
    /// Sustained bandwidth (`BaselineBandwidthInGbps`), in Mbit/s.
    pub baseline_mbps: u32,
    /// Burst bandwidth (`PeakBandwidthInGbps`), in Mbit/s.
    pub peak_mbps: u32,
    /// AWS's description (`Up to 5 Gigabit`, `25 Gigabit`, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub performance: String,
}

/// The shipped table, parsed once. Lines that do not parse are a build defect
/// (a unit test reads every line), so they are skipped here rather than failing
/// a scan.
pub fn shipped_table() -> &'static HashMap<String, InstanceNetwork> {
    static TABLE: OnceLock<HashMap<String, InstanceNetwork>> = OnceLock::new();
    TABLE.get_or_init(|| SHIPPED_TABLE.lines().filter_map(parse_table_line).collect())
}

fn parse_table_line(line: &str) -> Option<(String, InstanceNetwork)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut it = line.splitn(4, ',');
    let ty = it.next()?.trim();
    let baseline_mbps = it.next()?.trim().parse().ok()?;
    let peak_mbps = it.next()?.trim().parse().ok()?;
    let performance = it.next().unwrap_or("").trim().to_string();
    (!ty.is_empty()).then(|| {
        (
            ty.to_string(),
            InstanceNetwork {
                baseline_mbps,
                peak_mbps,
                performance,
            },
        )
    })
}

/// A target's pacing: where the SYN engine starts and the most it may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The budget: the fraction of the baseline a target gets to start with.
    pub start_pps: u32,
    /// The ceiling: what the adaptive controller may grow to, never exceeded.
    pub ceiling_pps: u32,
}

/// Per-target budgets (`[rate]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RatePolicy {
    /// Budget for a target whose instance type is unknown (hand-typed,
    /// on-premises, or a type neither discovery nor the table knows).
    pub default_pps: u32,
    /// Floor of any budget.
    pub min_pps: u32,
    /// Ceiling of any budget and of its adaptive growth.
    pub max_pps: u32,
    /// Share of the instance's baseline bandwidth one target's budget may use,
    /// in percent (0 < x <= 100).
    pub baseline_percent: f64,
    /// How far the adaptive controller may raise a clean target's rate, in
    /// percent of its budget (>= 100; 100 = no growth).
    pub growth_percent: u32,
}

impl Default for RatePolicy {
    fn default() -> Self {
        RatePolicy {
            default_pps: 2_000,
            min_pps: 100,
            max_pps: 20_000,
            baseline_percent: 5.0,
            growth_percent: 200,
        }
    }
}

impl RatePolicy {
    /// Check the settings; the message names the field (as `rate.FIELD`).
    ///
    /// # Errors
    /// A human-readable reason.
    pub fn validate(&self) -> Result<(), String> {
        if self.min_pps == 0 || self.min_pps > self.max_pps {
            return Err(format!(
                "rate: min_pps {} must be at least 1 and at most max_pps {}",
                self.min_pps, self.max_pps
            ));
        }
        if !(self.baseline_percent > 0.0 && self.baseline_percent <= 100.0) {
            return Err(format!(
                "rate.baseline_percent: {} must be above 0 and at most 100",
                self.baseline_percent
            ));
        }
        if !(100..=1000).contains(&self.growth_percent) {
            return Err(format!(
                "rate.growth_percent: {} must be 100..1000",
                self.growth_percent
            ));
        }
        if self.default_pps == 0 {
            return Err("rate.default_pps: must be at least 1".into());
        }
        Ok(())
    }

    /// Where a target starts, in percent of its ceiling: what the job's
    /// [`Pacing::start_percent`](crate::Pacing) carries.
    pub fn start_percent(&self) -> u32 {
        (10_000 / self.growth_percent.max(100)).clamp(1, 100)
    }

    /// The budget and ceiling of a target of `instance_type` whose network is
    /// `network` (from discovery) or, without it, the shipped table's entry.
    pub fn budget(&self, instance_type: Option<&str>, network: Option<&InstanceNetwork>) -> Budget {
        let net = network.or_else(|| instance_type.and_then(|t| shipped_table().get(t)));
        let start = match net {
            Some(n) if n.baseline_mbps > 0 => {
                let bps = f64::from(n.baseline_mbps) * 1e6;
                let pps = bps * self.baseline_percent / 100.0 / (SYN_WIRE_BYTES * 8) as f64;
                pps.min(f64::from(u32::MAX)) as u32
            }
            _ => self.default_pps,
        };
        let start = start.clamp(self.min_pps, self.max_pps);
        let ceiling = (u64::from(start) * u64::from(self.growth_percent.max(100)) / 100)
            .min(u64::from(self.max_pps)) as u32;
        Budget {
            start_pps: start,
            ceiling_pps: ceiling.max(start),
        }
    }

    /// The ceiling of a target of `instance_type` (shipped table or default):
    /// what [`Target::rate_pps`](crate::Target) carries.
    pub fn per_target_pps(&self, instance_type: Option<&str>) -> u32 {
        self.budget(instance_type, None).ceiling_pps
    }

    /// The ceiling of an asset's targets, from its discovered network when it has one.
    pub fn per_asset_pps(&self, asset: &crate::Asset) -> u32 {
        self.budget(asset.instance_type.as_deref(), asset.network.as_ref())
            .ceiling_pps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_line_of_the_shipped_table_parses() {
        let lines = SHIPPED_TABLE
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .count();
        assert!(lines > 1000, "the table has {lines} types");
        assert_eq!(shipped_table().len(), lines, "a line did not parse");
        let t = &shipped_table()["t3.small"];
        assert_eq!((t.baseline_mbps, t.peak_mbps), (128, 5000));
        assert_eq!(t.performance, "Up to 5 Gigabit");
    }

    #[test]
    fn budgets_follow_published_baselines() {
        let r = RatePolicy::default();
        let b = |t: &str| r.budget(Some(t), None);
        assert_eq!(
            b("t3.small"),
            Budget {
                start_pps: 9_523,
                ceiling_pps: 19_046
            }
        );
        assert_eq!(b("t3.medium").start_pps, 19_047);
        assert_eq!(b("t3.medium").ceiling_pps, 20_000);
        assert_eq!(
            b("m5.large"),
            Budget {
                start_pps: 20_000,
                ceiling_pps: 20_000
            }
        );
        assert_eq!(b("t3.nano").start_pps, 2_380);
        assert_eq!(r.per_target_pps(Some("t3.small")), 19_046);
        // Discovery's answer wins over the table.
        let slow = InstanceNetwork {
            baseline_mbps: 10,
            peak_mbps: 10,
            performance: String::new(),
        };
        assert_eq!(r.budget(Some("m5.large"), Some(&slow)).start_pps, 744);
        assert_eq!(r.start_percent(), 50);
    }

    #[test]
    fn unknown_types_get_the_default() {
        let r = RatePolicy::default();
        for t in [None, Some("weird"), Some("zz9.huge"), Some("")] {
            assert_eq!(
                r.budget(t, None),
                Budget {
                    start_pps: 2_000,
                    ceiling_pps: 4_000
                },
                "{t:?}"
            );
        }
    }

    #[test]
    fn every_table_type_is_within_floor_and_ceiling() {
        let r = RatePolicy::default();
        for ty in shipped_table().keys() {
            let b = r.budget(Some(ty), None);
            assert!(
                b.start_pps >= r.min_pps && b.ceiling_pps <= r.max_pps,
                "{ty}: {b:?}"
            );
            assert!(b.start_pps <= b.ceiling_pps, "{ty}: {b:?}");
        }
    }

    #[test]
    fn validation_names_the_field() {
        let bad = RatePolicy {
            baseline_percent: 0.0,
            ..RatePolicy::default()
        };
        assert!(bad.validate().unwrap_err().contains("baseline_percent"));
        let bad = RatePolicy {
            growth_percent: 50,
            ..RatePolicy::default()
        };
        assert!(bad.validate().unwrap_err().contains("growth_percent"));
        assert!(RatePolicy::default().validate().is_ok());
    }

    fn types() -> Vec<String> {
        let mut v: Vec<String> = shipped_table().keys().cloned().collect();
        v.sort();
        v
    }

    proptest! {
        #[test]
        fn always_within_bounds(i in 0usize..1395, min in 1u32..1000, extra in 0u32..100_000, pct in 0.01f64..100.0, growth in 100u32..1000) {
            let tys = types();
            let ty = &tys[i % tys.len()];
            let r = RatePolicy { default_pps: min + extra / 2, min_pps: min, max_pps: min + extra, baseline_percent: pct, growth_percent: growth };
            let b = r.budget(Some(ty), None);
            prop_assert!(b.start_pps >= r.min_pps && b.ceiling_pps <= r.max_pps);
            prop_assert!(b.start_pps <= b.ceiling_pps);
        }

        /// Of two types, the one with more baseline bandwidth never gets less.
        #[test]
        fn bigger_is_never_slower(i in 0usize..1395, j in 0usize..1395, pct in 0.01f64..100.0) {
            let tys = types();
            let (a, b) = (&tys[i % tys.len()], &tys[j % tys.len()]);
            let t = shipped_table();
            let r = RatePolicy { baseline_percent: pct, ..RatePolicy::default() };
            if t[a].baseline_mbps <= t[b].baseline_mbps {
                prop_assert!(r.budget(Some(a), None).start_pps <= r.budget(Some(b), None).start_pps);
                prop_assert!(r.per_target_pps(Some(a)) <= r.per_target_pps(Some(b)));
            }
        }

        /// The same holds within a family: each size up is at least as fast.
        #[test]
        fn bigger_size_is_never_slower(i in 0usize..1395) {
            let tys = types();
            let ty = &tys[i % tys.len()];
            let (family, _) = ty.split_once('.').unwrap_or((ty, ""));
            let sizes = ["nano", "micro", "small", "medium", "large", "xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge"];
            let r = RatePolicy::default();
            let present: Vec<_> = sizes.iter().map(|s| format!("{family}.{s}")).filter(|t| shipped_table().contains_key(t)).collect();
            for w in present.windows(2) {
                prop_assert!(r.budget(Some(&w[0]), None).start_pps <= r.budget(Some(&w[1]), None).start_pps, "{} vs {}", w[0], w[1]);
            }
        }
    }
}
