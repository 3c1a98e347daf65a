//! The planner: settings in, shards out. Scope decides the targets (and says
//! why each skip), targets are grouped by network zone (every target is in zone
//! `default` until discovery knows better), then cut into shards of bounded size
//! so that one shard is a few minutes of one worker's time at most, and so that
//! several workers have something to do. Nothing here prints or sends.

use std::collections::BTreeMap;
use std::time::Duration;

use scanfleet_common::scope::{self, Skipped};
use scanfleet_common::{DEFAULT_ZONE, PortSpec, ProbeProfile, ScanJob, Target};

use crate::config::ScanSettings;

/// A scan, planned: its targets, what scope skipped and why, and its shards.
#[derive(Debug, Clone)]
pub struct Planned {
    pub scan_id: String,
    pub targets: Vec<Target>,
    pub skipped: Vec<Skipped>,
    pub jobs: Vec<ScanJob>,
    /// (target, port) pairs of the whole scan: what progress counts up to.
    pub pairs: u64,
}

/// Apply scope and rate policy and plan the shards of a new scan. A fleet scan
/// is cut per network zone (a worker reaches only its zone); an embedded scan
/// runs in one process, which reaches whatever it reaches, so it is one zone cut
/// into at least one shard per in-process worker.
pub fn prepare(settings: &ScanSettings) -> Planned {
    let scan_id = new_scan_id();
    let (targets, skipped) = scope::apply(&settings.assets, &settings.scope, &settings.rate);
    let (zoned, min_shards) = if settings.is_fleet() {
        (
            crate::estate::zones::group_targets(&settings.assets, targets.clone()),
            1,
        )
    } else {
        (
            BTreeMap::from([(DEFAULT_ZONE.to_string(), targets.clone())]),
            settings.workers,
        )
    };
    let mut jobs = plan(
        &scan_id,
        zoned,
        &settings.ports,
        &settings.profile,
        ShardLimits {
            min_shards,
            max_targets: settings.shard_size,
            parallel: settings.workers,
            ..ShardLimits::default()
        },
    );
    // Each job carries the scope it was planned under, for the worker to apply again.
    let index = scope::JobScope::index(&settings.assets);
    for job in &mut jobs {
        job.scope = Some(scope::JobScope::of(&settings.scope, &job.targets, |id| {
            index.get(id).copied()
        }));
    }
    let pairs = targets.len() as u64
        * (settings.ports.len() as u64 + settings.profile.udp_ports.len() as u64);
    Planned {
        scan_id,
        targets,
        skipped,
        jobs,
        pairs,
    }
}

/// Limits on one shard.
#[derive(Debug, Clone, Copy)]
pub struct ShardLimits {
    /// At most this many targets per shard.
    pub max_targets: usize,
    /// At most this many (target, port) probes per shard (first attempts).
    pub max_probes: u64,
    /// Cut into at least this many shards when there are enough targets (one per worker).
    pub min_shards: usize,
    /// Workers expected to share the scan (`--workers`). When a zone has fewer
    /// shards than this and its shards are bound by the worker's global cap
    /// rather than by their targets' budgets, their port ranges are split (see
    /// [`split_ports`]).
    pub parallel: usize,
}

impl Default for ShardLimits {
    fn default() -> Self {
        ShardLimits {
            max_targets: 256,
            max_probes: 4 * 65_536 * 16,
            min_shards: 1,
            parallel: 1,
        }
    }
}

/// Plan the shards of a scan. Each target lands in exactly one shard; shards of a
/// zone have near-equal sizes; shard ids run from 0.
pub fn plan(
    scan_id: &str,
    zoned: BTreeMap<String, Vec<Target>>,
    ports: &PortSpec,
    profile: &ProbeProfile,
    limits: ShardLimits,
) -> Vec<ScanJob> {
    let per_target = (ports.len() + profile.udp_ports.len()).max(1) as u64;
    let by_probes = (limits.max_probes / per_target).max(1) as usize;
    let cap = limits.max_targets.min(by_probes).max(1);
    let mut jobs = Vec::new();
    for (zone, targets) in zoned {
        if targets.is_empty() {
            continue;
        }
        let n = targets.len();
        let shards = n.div_ceil(cap).max(limits.min_shards.min(n)).max(1);
        let (base, extra) = (n / shards, n % shards);
        let mut it = targets.into_iter();
        // Fewer shards than workers: split the cap-bound ones by ports.
        let pieces = limits.parallel.div_ceil(shards).max(1);
        for i in 0..shards {
            let take = base + usize::from(i < extra);
            let group: Vec<Target> = it.by_ref().take(take).collect();
            let budgets: u64 = group.iter().map(|t| u64::from(t.rate_pps)).sum();
            let k = if budgets > u64::from(profile.global_rate_pps) {
                pieces
            } else {
                1
            };
            for (targets, ports) in split_ports(&group, ports, k) {
                jobs.push(ScanJob {
                    scan_id: scan_id.to_string(),
                    shard_id: jobs.len() as u32,
                    zone: zone.clone(),
                    targets,
                    ports,
                    profile: profile.clone(),
                    scope: None,
                });
            }
        }
    }
    jobs
}

/// Cut the port spec into `k` contiguous pieces of near-equal size (fewer when
/// there are fewer ports), each with every target of `targets` and its budget
/// divided by the number of pieces (at least 1 pps), so that a target's budget
/// summed over the shards that hold it never exceeds its own.
pub fn split_ports(targets: &[Target], ports: &PortSpec, k: usize) -> Vec<(Vec<Target>, PortSpec)> {
    let n = ports.len();
    let k = k.clamp(1, n.max(1));
    if k == 1 {
        return vec![(targets.to_vec(), ports.clone())];
    }
    let all: Vec<u16> = ports.iter().collect();
    let (base, extra) = (n / k, n % k);
    let mut out = Vec::with_capacity(k);
    let mut at = 0usize;
    for i in 0..k {
        let take = base + usize::from(i < extra);
        let piece = &all[at..at + take];
        at += take;
        // Consecutive ports into ranges, as the spec syntax has them.
        let mut spec = String::new();
        let mut j = 0;
        while j < piece.len() {
            let lo = piece[j];
            let mut hi = lo;
            while j + 1 < piece.len() && piece[j + 1] == hi.wrapping_add(1) {
                j += 1;
                hi = piece[j];
            }
            if !spec.is_empty() {
                spec.push(',');
            }
            if lo == hi {
                spec.push_str(&lo.to_string());
            } else {
                spec.push_str(&format!("{lo}-{hi}"));
            }
            j += 1;
        }
        let Ok(spec) = PortSpec::parse(&spec) else {
            // Ports of a valid spec always form a valid spec; keep the whole
            // spec unsplit rather than lose ports if that ever fails.
            return vec![(targets.to_vec(), ports.clone())];
        };
        let divided = targets
            .iter()
            .map(|t| Target {
                rate_pps: (t.rate_pps / k as u32).max(1),
                ..t.clone()
            })
            .collect();
        out.push((divided, spec));
    }
    out
}

/// A scan id: time-ordered and unique enough for humans and key names.
pub fn new_scan_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "sf-{}-{:06x}",
        now.as_secs(),
        rand::random::<u32>() & 0xff_ffff
    )
}

/// How long following a fleet scan may take before its unfinished shards are given
/// up on, unless the user said (`--deadline`): twice what the plan takes on one
/// worker at the targets' rates, plus 10 minutes for queues and start-up, and at
/// least 30 minutes. Generous on purpose: it only ends a scan that would otherwise
/// wait for ever (a shard lost with its worker and not dead-lettered).
pub fn default_deadline(planned: &Planned) -> Duration {
    let one_worker: f64 = planned
        .jobs
        .iter()
        .map(|job| {
            let rate: f64 = job
                .targets
                .iter()
                .map(|t| f64::from(t.rate_pps.max(1)))
                .sum::<f64>()
                .min(f64::from(job.profile.global_rate_pps.max(1)));
            let tries = 1.0 + f64::from(job.profile.retries);
            let probes = job.pairs() as f64 * tries;
            probes / rate.max(1.0) + tries * job.profile.timeout_ms as f64 / 1000.0
        })
        .sum();
    let secs = (2.0 * one_worker + 600.0).clamp(1800.0, 30.0 * 24.0 * 3600.0);
    Duration::from_secs_f64(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn targets(n: usize) -> Vec<Target> {
        (0..n)
            .map(|i| Target {
                ip: format!("10.0.{}.{}", i / 256, i % 256).parse().unwrap(),
                asset_id: i.to_string(),
                rate_pps: 100,
            })
            .collect()
    }

    proptest! {
        #[test]
        fn every_target_in_exactly_one_bounded_shard(n in 0usize..2000, max_targets in 1usize..300, min_shards in 1usize..9, nports in 1u16..2000) {
            let ports = PortSpec::parse(&format!("1-{nports}")).unwrap();
            let limits = ShardLimits { max_targets, max_probes: 100_000, min_shards, parallel: 1 };
            let jobs = plan("s", BTreeMap::from([("default".to_string(), targets(n))]), &ports, &ProbeProfile::default(), limits);
            let mut seen: Vec<_> = jobs.iter().flat_map(|j| j.targets.iter().map(|t| t.asset_id.clone())).collect();
            prop_assert_eq!(seen.len(), n);
            seen.sort(); seen.dedup();
            prop_assert_eq!(seen.len(), n);
            for (i, j) in jobs.iter().enumerate() {
                prop_assert_eq!(j.shard_id as usize, i);
                prop_assert!(!j.targets.is_empty());
                prop_assert!(j.targets.len() <= max_targets);
                prop_assert!(j.targets.len() == 1 || (j.targets.len() as u64) * u64::from(nports) <= 100_000);
            }
            if n > 0 { prop_assert!(jobs.len() >= min_shards.min(n)); }
        }
    }

    proptest! {
        /// Split or not, every (target, port) pair is in exactly one shard, and a
        /// target's budgets over its shards never add up to more than its own.
        #[test]
        fn cap_bound_scans_split_ports_without_exceeding_budgets(
            n in 1usize..8, rate in 1u32..30_000, cap in 1u32..50_000, parallel in 1usize..6, nports in 1u16..3000,
        ) {
            let ports = PortSpec::parse(&format!("1-{nports}")).unwrap();
            let profile = ProbeProfile { global_rate_pps: cap, ..ProbeProfile::default() };
            let ts: Vec<Target> = targets(n).into_iter().map(|t| Target { rate_pps: rate, ..t }).collect();
            let limits = ShardLimits { parallel, ..ShardLimits::default() };
            let jobs = plan("s", BTreeMap::from([("default".to_string(), ts)]), &ports, &profile, limits);
            let mut pairs = std::collections::BTreeMap::new();
            let mut budget = std::collections::BTreeMap::new();
            for j in &jobs {
                for t in &j.targets {
                    *budget.entry(t.asset_id.clone()).or_insert(0u64) += u64::from(t.rate_pps);
                    for p in j.ports.iter() {
                        *pairs.entry((t.asset_id.clone(), p)).or_insert(0) += 1;
                    }
                }
            }
            prop_assert_eq!(pairs.len(), n * nports as usize);
            prop_assert!(pairs.values().all(|&c| c == 1));
            for (_, b) in budget {
                prop_assert!(b <= u64::from(rate).max(jobs.len() as u64), "{} > {}", b, rate);
            }
            let bound = u64::from(rate) * n as u64 > u64::from(cap);
            if bound && parallel > 1 && nports as usize >= parallel {
                prop_assert!(jobs.len() >= parallel, "{} shards for {} workers", jobs.len(), parallel);
            }
            if !bound {
                prop_assert!(jobs.iter().all(|j| j.ports == ports), "a budget-bound scan is not split");
            }
        }
    }

    #[test]
    fn six_hosts_all_ports_share_three_workers() {
        // The case: 6 hosts x 65535 ports went to one of three workers.
        let ts: Vec<Target> = targets(6)
            .into_iter()
            .map(|t| Target {
                rate_pps: 19_046,
                ..t
            })
            .collect();
        let jobs = plan(
            "s",
            BTreeMap::from([("default".to_string(), ts)]),
            &PortSpec::all(),
            &ProbeProfile::default(),
            ShardLimits {
                parallel: 3,
                ..ShardLimits::default()
            },
        );
        assert_eq!(jobs.len(), 3);
        assert_eq!(
            jobs.iter().map(|j| j.ports.len()).collect::<Vec<_>>(),
            [21_845, 21_845, 21_845]
        );
        assert!(jobs.iter().all(|j| j.targets.len() == 6));
        assert!(
            jobs.iter()
                .all(|j| j.targets.iter().all(|t| t.rate_pps == 6_348))
        );
        assert_eq!(jobs[1].ports.to_string(), "21846-43690");
    }

    #[test]
    fn zones_never_share_a_shard() {
        let mut t = targets(10);
        let b = t.split_off(4);
        let jobs = plan(
            "s",
            BTreeMap::from([("a".into(), t), ("b".into(), b)]),
            &PortSpec::parse("80").unwrap(),
            &ProbeProfile::default(),
            ShardLimits {
                max_targets: 3,
                ..ShardLimits::default()
            },
        );
        assert_eq!(
            jobs.iter()
                .map(|j| (j.zone.as_str(), j.targets.len()))
                .collect::<Vec<_>>(),
            [("a", 2), ("a", 2), ("b", 3), ("b", 3)]
        );
    }
}
