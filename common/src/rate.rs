//! Rate policy: how many probe packets per second one target may receive, from
//! its instance type. Small burstable instances get little, large ones more; an
//! unknown type gets the conservative default.

use serde::{Deserialize, Serialize};

/// Per-target budgets by instance size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RatePolicy {
    /// Budget for a target whose instance type is unknown (hand-typed, on-premises).
    pub default_pps: u32,
    /// Floor and ceiling for any computed budget.
    pub min_pps: u32,
    pub max_pps: u32,
}

impl Default for RatePolicy {
    fn default() -> Self {
        RatePolicy {
            default_pps: 2_000,
            min_pps: 100,
            max_pps: 20_000,
        }
    }
}

/// Relative network capacity of an instance size, as a multiplier of 1/8 units
/// (nano = 1/8 ... metal = 64). Derived from the size suffix, so new families work.
fn size_units(size: &str) -> u32 {
    match size {
        "nano" => 1,
        "micro" => 2,
        "small" => 4,
        "medium" => 8,
        "large" => 16,
        "xlarge" => 32,
        "metal" => 512,
        s => match s.strip_suffix("xlarge").and_then(|n| n.parse::<u32>().ok()) {
            Some(n) => 32u32.saturating_mul(n.max(1)),
            None => 0,
        },
    }
}

impl RatePolicy {
    /// Budget for one target. `t3.nano` gets `min_pps`-ish, `m5.large` the default,
    /// bigger sizes proportionally more up to `max_pps`. Burstable families (t*)
    /// are halved: their network credits run out under sustained load.
    pub fn per_target_pps(&self, instance_type: Option<&str>) -> u32 {
        let Some(ty) = instance_type else {
            return self.default_pps.clamp(self.min_pps, self.max_pps);
        };
        let (family, size) = ty.split_once('.').unwrap_or((ty, ""));
        let units = size_units(size);
        if units == 0 {
            return self.default_pps.clamp(self.min_pps, self.max_pps);
        }
        // large (16 units) == default_pps
        let mut pps = u64::from(self.default_pps) * u64::from(units) / 16;
        if family.starts_with('t') {
            pps /= 2;
        }
        (pps.min(u64::from(u32::MAX)) as u32).clamp(self.min_pps, self.max_pps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn budgets_follow_size() {
        let r = RatePolicy::default();
        assert_eq!(r.per_target_pps(None), 2_000);
        assert_eq!(r.per_target_pps(Some("m5.large")), 2_000);
        assert_eq!(r.per_target_pps(Some("m5.xlarge")), 4_000);
        assert_eq!(r.per_target_pps(Some("c5.4xlarge")), 16_000);
        assert_eq!(r.per_target_pps(Some("c5.metal")), 20_000);
        assert_eq!(r.per_target_pps(Some("t3.micro")), 125);
        assert_eq!(r.per_target_pps(Some("t3.nano")), 100);
        assert_eq!(r.per_target_pps(Some("weird")), 2_000);
    }

    proptest! {
        #[test]
        fn always_within_bounds(ty in "[a-z0-9]{1,4}\\.[a-z0-9]{0,8}", min in 1u32..1000, extra in 0u32..100_000) {
            let r = RatePolicy { default_pps: min + extra / 2, min_pps: min, max_pps: min + extra };
            let pps = r.per_target_pps(Some(&ty));
            prop_assert!(pps >= r.min_pps && pps <= r.max_pps);
        }

        #[test]
        fn bigger_is_never_slower(family in "[a-z][0-9]", i in 0usize..6) {
            let sizes = ["nano", "micro", "small", "medium", "large", "xlarge", "2xlarge"];
            let r = RatePolicy::default();
            let a = r.per_target_pps(Some(&format!("{family}.{}", sizes[i])));
            let b = r.per_target_pps(Some(&format!("{family}.{}", sizes[i + 1])));
            prop_assert!(a <= b);
        }
    }
}
