//! Metric names: an interface shared by workers, the coordinator, the Grafana
//! dashboard and the tests. `scanfleet_<name>_<unit>`, counters end in `_total`,
//! labels only from the small fixed sets below (never an IP, a job id or an
//! error string).

pub const JOBS_RECEIVED_TOTAL: &str = "scanfleet_jobs_received_total";
/// Label `outcome`: one of [`OUTCOMES`].
pub const JOBS_COMPLETED_TOTAL: &str = "scanfleet_jobs_completed_total";
pub const JOB_DURATION_SECONDS: &str = "scanfleet_job_duration_seconds";
/// Label `engine`: `syn` or `connect`.
pub const PROBES_SENT_TOTAL: &str = "scanfleet_probes_sent_total";
pub const RESULTS_WRITTEN_TOTAL: &str = "scanfleet_results_written_total";
pub const LEASE_EXTENSIONS_TOTAL: &str = "scanfleet_lease_extensions_total";
/// Labels `stage` (one of [`STAGES`]) and `kind` (`transient` or `permanent`).
pub const ERRORS_TOTAL: &str = "scanfleet_errors_total";
pub const SHARDS_IN_FLIGHT: &str = "scanfleet_shards_in_flight";
/// Label `reason`: one of [`DEAD_LETTER_REASONS`].
pub const JOBS_DEAD_LETTERED_TOTAL: &str = "scanfleet_jobs_dead_lettered_total";
/// Label `state`: open, closed, filtered.
pub const PORTS_TOTAL: &str = "scanfleet_ports_total";

/// Coordinator: shards of the scan it follows. Label `state`: total, done, failed.
pub const SCAN_SHARDS: &str = "scanfleet_scan_shards";
/// Coordinator: distinct port results stored for the scan it follows.
pub const SCAN_RESULTS: &str = "scanfleet_scan_results";

pub const OUTCOMES: [&str; 4] = ["done", "retried", "dead_lettered", "released"];
pub const STAGES: [&str; 5] = ["receive", "verify", "probe", "store", "settle"];
pub const DEAD_LETTER_REASONS: [&str; 5] = ["malformed", "signature", "expired", "scope", "probe"];

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
