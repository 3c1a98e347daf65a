//! Metric names: an interface shared by workers, the coordinator, the Grafana
//! dashboard and the tests. `scanfleet_<name>_<unit>`, counters end in `_total`,
//! labels only from the small fixed sets below (never an IP, a job id or an
//! error string).

/// Worker: job messages taken off the queue.
pub const JOBS_RECEIVED_TOTAL: &str = "scanfleet_jobs_received_total";
/// Worker: jobs settled. Label `outcome`: an [`Outcome`].
pub const JOBS_COMPLETED_TOTAL: &str = "scanfleet_jobs_completed_total";
/// Worker: wall time of one shard, from receive to settle (histogram).
pub const JOB_DURATION_SECONDS: &str = "scanfleet_job_duration_seconds";
/// Worker: probes sent, retransmits included. Label `engine`: an [`Engine`].
pub const PROBES_SENT_TOTAL: &str = "scanfleet_probes_sent_total";
/// Worker: port results written to the result store.
pub const RESULTS_WRITTEN_TOTAL: &str = "scanfleet_results_written_total";
/// Worker: lease extensions (heartbeats) sent.
pub const LEASE_EXTENSIONS_TOTAL: &str = "scanfleet_lease_extensions_total";
/// Worker: errors. Labels `stage` (a [`Stage`]) and `kind` (an [`ErrorKind`]).
pub const ERRORS_TOTAL: &str = "scanfleet_errors_total";
/// Worker: shards being worked on now (gauge).
pub const SHARDS_IN_FLIGHT: &str = "scanfleet_shards_in_flight";
/// Worker: jobs sent to the dead-letter queue. Label `reason`: a [`DeadLetterReason`].
pub const JOBS_DEAD_LETTERED_TOTAL: &str = "scanfleet_jobs_dead_lettered_total";
/// Worker: ports classified. Label `state`: a [`PortState`](crate::PortState) (open, closed, filtered).
pub const PORTS_TOTAL: &str = "scanfleet_ports_total";

/// Worker: probes sent again to silent ports (the retransmission model's cost).
/// Label `engine`: an [`Engine`].
pub const RETRANSMITS_TOTAL: &str = "scanfleet_retransmits_total";
/// Worker: times the SYN engine's per-target controller cut a target's rate.
pub const TARGET_BACKOFFS_TOTAL: &str = "scanfleet_target_backoffs_total";
/// Worker: per target of each shard, the share of its ports that answered (histogram).
pub const TARGET_ANSWER_RATIO: &str = "scanfleet_target_answer_ratio";
/// Worker: per target of each shard, the estimated chance that an open port was
/// reported filtered (histogram; the retransmission model keeps it below 1e-4).
pub const TARGET_MISS_CHANCE: &str = "scanfleet_target_miss_chance";
/// Worker: per target of each shard, the highest rate the controller used, in
/// packets per second (histogram).
pub const TARGET_RATE_PPS: &str = "scanfleet_target_rate_pps";
/// Worker: growth of the NIC's allowance-exceeded counters (ENA statistics of
/// the interface the probes leave by). Label `allowance`: a [`NicAllowance`].
pub const NIC_ALLOWANCE_EXCEEDED_TOTAL: &str = "scanfleet_nic_allowance_exceeded_total";
/// Worker: the ENA `conntrack_allowance_available` reading (gauge).
pub const NIC_CONNTRACK_AVAILABLE: &str = "scanfleet_nic_conntrack_allowance_available";
/// Worker: times the worker cut its global rate because an allowance counter grew.
pub const NIC_BACKOFFS_TOTAL: &str = "scanfleet_nic_backoffs_total";

/// Coordinator: shards of the scan it follows. Label `state`: a [`ShardState`].
pub const SCAN_SHARDS: &str = "scanfleet_scan_shards";
/// Coordinator: distinct port results stored for the scan it follows.
pub const SCAN_RESULTS: &str = "scanfleet_scan_results";

/// A fixed set of label values: the only values a label may take.
macro_rules! label_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, for series created up front and for checks.
            pub const ALL: [$name; [$($text),+].len()] = [$($name::$variant),+];

            /// The label value.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

label_enum! {
    /// How a job was settled: label `outcome` of [`JOBS_COMPLETED_TOTAL`].
    Outcome {
        /// Results stored, acked.
        Done => "done",
        /// Transient failure, put back on the queue.
        Retried => "retried",
        /// Permanent failure, sent to the dead-letter queue.
        DeadLettered => "dead_lettered",
        /// Given back unfinished at shutdown or on a lost lease.
        Released => "released",
    }
}

label_enum! {
    /// Where in a job's life an error happened: label `stage` of [`ERRORS_TOTAL`].
    Stage {
        /// Taking a message off the queue.
        Receive => "receive",
        /// Opening and checking the envelope and the job's scope.
        Verify => "verify",
        /// Probing the targets.
        Probe => "probe",
        /// Writing results to the store.
        Store => "store",
        /// Acking, nacking or extending the lease.
        Settle => "settle",
    }
}

label_enum! {
    /// Whether an error heals by retrying: label `kind` of [`ERRORS_TOTAL`].
    ErrorKind {
        /// Retried (nack, back-off, lease lapse).
        Transient => "transient",
        /// Retrying cannot help.
        Permanent => "permanent",
    }
}

impl ErrorKind {
    /// [`ErrorKind::Transient`] when `transient`, else [`ErrorKind::Permanent`].
    pub const fn from_transient(transient: bool) -> Self {
        if transient {
            ErrorKind::Transient
        } else {
            ErrorKind::Permanent
        }
    }
}

label_enum! {
    /// Why a job was dead-lettered: label `reason` of [`JOBS_DEAD_LETTERED_TOTAL`].
    DeadLetterReason {
        /// Not a job envelope, or one of an unknown version.
        Malformed => "malformed",
        /// Unsigned or signed with another key.
        Signature => "signature",
        /// Past its deadline.
        Expired => "expired",
        /// Another zone's job, or a target out of this worker's scope.
        Scope => "scope",
        /// The probe engine failed for good (no privilege, bad setting).
        Probe => "probe",
        /// Failed transiently on every delivery the queue allows.
        DeliveryLimit => "delivery_limit",
        /// The store does not know the job's scan (its keys expired or a Redis
        /// without persistence restarted): no retry can store its results.
        UnknownScan => "unknown_scan",
    }
}

impl DeadLetterReason {
    /// The stage that refused the job.
    pub const fn stage(self) -> Stage {
        match self {
            DeadLetterReason::Probe => Stage::Probe,
            DeadLetterReason::DeliveryLimit => Stage::Settle,
            DeadLetterReason::UnknownScan => Stage::Store,
            _ => Stage::Verify,
        }
    }
}

label_enum! {
    /// The probe engine: label `engine` of [`PROBES_SENT_TOTAL`].
    Engine {
        /// Raw-socket SYN scan.
        Syn => "syn",
        /// TCP connect scan.
        Connect => "connect",
        /// Load tests only: nothing sent, results made up.
        Synthetic => "synthetic",
    }
}

label_enum! {
    /// Which ENA allowance was exceeded: label `allowance` of [`NIC_ALLOWANCE_EXCEEDED_TOTAL`].
    NicAllowance {
        /// `pps_allowance_exceeded`: packets per second.
        Pps => "pps",
        /// `bw_out_allowance_exceeded`: outbound bandwidth.
        BwOut => "bw_out",
        /// `bw_in_allowance_exceeded`: inbound bandwidth (the answers).
        BwIn => "bw_in",
        /// `conntrack_allowance_exceeded`: tracked connections.
        Conntrack => "conntrack",
    }
}

label_enum! {
    /// Shards of a followed scan: label `state` of [`SCAN_SHARDS`].
    ShardState {
        /// Shards published.
        Total => "total",
        /// Shards finished with results.
        Done => "done",
        /// Shards that failed for good.
        Failed => "failed",
    }
}

/// Every metric name, for checks of dashboards and scrapes.
pub const ALL: [&str; 10] = [
    JOBS_RECEIVED_TOTAL,
    JOBS_COMPLETED_TOTAL,
    JOB_DURATION_SECONDS,
    PROBES_SENT_TOTAL,
    RESULTS_WRITTEN_TOTAL,
    LEASE_EXTENSIONS_TOTAL,
    ERRORS_TOTAL,
    SHARDS_IN_FLIGHT,
    JOBS_DEAD_LETTERED_TOTAL,
    PORTS_TOTAL,
];

/// The pacing metrics (kept apart from [`ALL`] so that the lists merge easily).
pub const PACING_ALL: [&str; 8] = [
    RETRANSMITS_TOTAL,
    TARGET_BACKOFFS_TOTAL,
    TARGET_ANSWER_RATIO,
    TARGET_MISS_CHANCE,
    TARGET_RATE_PPS,
    NIC_ALLOWANCE_EXCEEDED_TOTAL,
    NIC_CONNTRACK_AVAILABLE,
    NIC_BACKOFFS_TOTAL,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn check(values: &[&'static str]) {
        for (i, v) in values.iter().enumerate() {
            assert!(
                !v.is_empty() && v.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "label value {v:?}"
            );
            assert!(!values[..i].contains(v), "{v} twice");
        }
    }

    #[test]
    fn label_sets_are_small_distinct_snake_case() {
        check(&Outcome::ALL.map(Outcome::as_str));
        check(&Stage::ALL.map(Stage::as_str));
        check(&ErrorKind::ALL.map(ErrorKind::as_str));
        check(&DeadLetterReason::ALL.map(DeadLetterReason::as_str));
        check(&Engine::ALL.map(Engine::as_str));
        check(&ShardState::ALL.map(ShardState::as_str));
        check(&NicAllowance::ALL.map(NicAllowance::as_str));
        assert_eq!(Outcome::DeadLettered.to_string(), "dead_lettered");
        assert_eq!(DeadLetterReason::Probe.stage(), Stage::Probe);
        assert_eq!(DeadLetterReason::Scope.stage(), Stage::Verify);
        assert_eq!(ErrorKind::from_transient(true), ErrorKind::Transient);
    }

    #[test]
    fn names_follow_the_convention() {
        for name in ALL
            .iter()
            .chain(PACING_ALL.iter())
            .chain([SCAN_SHARDS, SCAN_RESULTS].iter())
        {
            assert!(name.starts_with("scanfleet_"), "{name}");
        }
        for name in [
            JOBS_RECEIVED_TOTAL,
            JOBS_COMPLETED_TOTAL,
            PROBES_SENT_TOTAL,
            RESULTS_WRITTEN_TOTAL,
            LEASE_EXTENSIONS_TOTAL,
            ERRORS_TOTAL,
            JOBS_DEAD_LETTERED_TOTAL,
            PORTS_TOTAL,
            RETRANSMITS_TOTAL,
            TARGET_BACKOFFS_TOTAL,
            NIC_ALLOWANCE_EXCEEDED_TOTAL,
            NIC_BACKOFFS_TOTAL,
        ] {
            assert!(name.ends_with("_total"), "{name}");
        }
    }
}
