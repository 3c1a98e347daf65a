//! The config file (TOML). One file serves both binaries, so each reads the
//! sections it needs and ignores the others; a key no section knows is an error
//! that names the file and the key. Every key has the flag of the same name.
//!
//! ```toml
//! [scan]      # scanfleet scan and watch: what to probe and how
//! ports = "22,80,443"
//! workers = 4
//! [scope]     # what may never be probed
//! exclude_cidrs = ["10.9.0.0/16"]
//! [rate]      # per-target budgets
//! default_pps = 2000
//! [fleet]     # both binaries: where the queue and the store are
//! queue = "amqp://guest:guest@127.0.0.1:5672/%2f"
//! redis = "redis://127.0.0.1:6379"
//! [worker]    # scanfleet-worker only
//! zone = "default"
//! [aws]       # discovery
//! role_name = "scanfleet-discovery"
//! ```

use std::path::Path;

use serde::Deserialize;

use super::ConfigError;
use crate::rate::RatePolicy;
use crate::types::ScanMode;

/// `[scan]`: what to probe and how.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanFile {
    pub ports: Option<String>,
    pub top_ports: Option<usize>,
    /// Scan UDP too (`-sU`).
    pub udp: Option<bool>,
    /// UDP ports of a UDP scan (`--udp-ports`); they do not turn UDP on by themselves.
    pub udp_ports: Option<String>,
    pub top_udp_ports: Option<usize>,
    /// `table`, `jsonl`, `json` or `csv`.
    pub format: Option<String>,
    pub workers: Option<usize>,
    pub rate_pps: Option<u32>,
    pub mode: Option<ScanMode>,
    pub timeout_ms: Option<u64>,
    pub retries: Option<u8>,
    pub host_discovery: Option<bool>,
    pub service_detection: Option<bool>,
    pub all_states: Option<bool>,
    pub max_targets: Option<u64>,
    pub shard_size: Option<usize>,
    pub deadline_secs: Option<u64>,
}

/// `[scope]`: what may never be probed.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeFile {
    #[serde(default)]
    pub exclude_cidrs: Vec<String>,
    pub private_only: Option<bool>,
    /// Added to the AWS-prohibited types, which stay prohibited whatever this says.
    pub prohibited_instance_types: Option<Vec<String>>,
    #[serde(default)]
    pub include_tags: Vec<String>,
    #[serde(default)]
    pub exclude_tags: Vec<String>,
    #[serde(default)]
    pub exclude_accounts: Vec<String>,
    #[serde(default)]
    pub exclude_vpcs: Vec<String>,
    /// Non-unicast classes allowed as targets (`multicast`, `link-local`, ...).
    #[serde(default)]
    pub allow_address_classes: Vec<crate::address::AddressClass>,
}

/// `[fleet]`: the backends, for both binaries.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetFile {
    pub queue: Option<String>,
    pub queue_ca: Option<std::path::PathBuf>,
    pub queue_cert: Option<std::path::PathBuf>,
    pub queue_key: Option<std::path::PathBuf>,
    pub redis: Option<String>,
    pub redis_ca: Option<std::path::PathBuf>,
    pub redis_cert: Option<std::path::PathBuf>,
    pub redis_key: Option<std::path::PathBuf>,
    pub metrics_addr: Option<String>,
    /// Deliveries before the broker dead-letters a shard; a topology setting,
    /// declared by `scanfleet queues init` and by the coordinator's publish.
    pub delivery_limit: Option<u32>,
    /// How long a published shard stays valid.
    pub job_ttl_secs: Option<u64>,
}

/// `[worker]`: `scanfleet-worker` only.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerFile {
    pub zone: Option<String>,
    pub concurrency: Option<usize>,
    pub lease_secs: Option<u64>,
    pub grace_secs: Option<u64>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// `[aws]`: discovery.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsFile {
    pub role_name: Option<String>,
    pub external_id: Option<String>,
    #[serde(default)]
    pub regions: Vec<String>,
    pub endpoint_url: Option<String>,
    pub concurrency: Option<usize>,
}

/// `[watch]`: `scanfleet watch`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchFile {
    pub events_queue: Option<String>,
    pub rediscover_every_secs: Option<u64>,
}

/// The whole config file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub scan: ScanFile,
    #[serde(default)]
    pub scope: ScopeFile,
    pub rate: Option<RatePolicy>,
    #[serde(default)]
    pub fleet: FleetFile,
    #[serde(default)]
    pub worker: WorkerFile,
    #[serde(default)]
    pub aws: AwsFile,
    #[serde(default)]
    pub watch: WatchFile,
}

impl FileConfig {
    /// Read and parse a config file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, and the key for a TOML error.
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("config {}: cannot read: {e}", path.display())))?;
        Self::parse(&text, path)
    }

    /// Parse config text; `path` only names it in errors.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and the key.
    pub fn parse(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(format!("config {}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_file_serves_both_binaries_and_unknown_keys_are_named() {
        let c = FileConfig::parse(
            "[scan]\nports = \"22\"\n[fleet]\nqueue = \"sqs://jobs\"\n[worker]\nzone = \"z1\"\n",
            Path::new("sf.toml"),
        )
        .unwrap();
        assert_eq!(c.fleet.queue.as_deref(), Some("sqs://jobs"));
        assert_eq!(c.worker.zone.as_deref(), Some("z1"));
        let e = FileConfig::parse("[worker]\nzones = \"z1\"\n", Path::new("sf.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("sf.toml") && e.contains("zones"), "{e}");
    }
}
