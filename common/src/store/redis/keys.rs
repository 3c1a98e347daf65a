//! The names of a scan's keys (one hash tag per scan) and the reading of counters.

use super::RedisStore;
use crate::store::StoreError;
use crate::types::escape_bytes;

/// The keys of one scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanKeys {
    pub meta: String,
    pub results: String,
    pub shards: String,
    pub ports: String,
    pub stream: String,
    /// Hash: shard id -> [`ShardStats`](crate::ShardStats) JSON.
    pub stats: String,
    /// Hash: shard id -> the planned job's JSON (for `scanfleet resume`).
    pub jobs: String,
}

impl RedisStore {
    /// The key names of a scan.
    ///
    /// # Errors
    /// [`StoreError::Permanent`] for an empty scan id or one with `{` or `}`, which
    /// would break the hash tag.
    pub fn keys(&self, scan_id: &str) -> Result<ScanKeys, StoreError> {
        if scan_id.is_empty() || scan_id.contains(['{', '}']) {
            return Err(StoreError::Permanent(format!(
                "scan id {:?} cannot be stored: it must be non-empty and free of braces",
                escape_bytes(scan_id.as_bytes(), 64)
            )));
        }
        let base = format!("{}:{{{scan_id}}}", self.config.key_prefix);
        Ok(ScanKeys {
            meta: format!("{base}:meta"),
            results: format!("{base}:results"),
            shards: format!("{base}:shards"),
            ports: format!("{base}:ports"),
            stream: format!("{base}:stream"),
            stats: format!("{base}:stats"),
            jobs: format!("{base}:jobs"),
        })
    }
}

/// A counter field of a hash; missing is 0.
pub(super) fn parse_counter(key: &str, field: &str, v: Option<String>) -> Result<u64, StoreError> {
    match v {
        None => Ok(0),
        Some(s) => s.parse::<u64>().map_err(|_| {
            StoreError::Permanent(format!(
                "{key} field {field} holds {:?}, not a count",
                escape_bytes(s.as_bytes(), 64)
            ))
        }),
    }
}

/// The keys of the scan history (`scanfleet findings|diff|export|history`), in
/// their own `history` namespace beside the scans' keys: `<prefix>:history:...`
/// never starts with `<prefix>:{`, so no name of a scan's result keys is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryKeys {
    /// Sorted set: scan id, scored by its start (unix ms).
    pub scans: String,
    /// Hash: finding id -> `first,last` observed (unix ms).
    pub observed: String,
}

/// The history keys of one scan (one hash tag per scan).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryScanKeys {
    /// String: the versioned scan record (JSON); written last, so a scan whose
    /// record exists is complete.
    pub record: String,
    /// List: the scan's assets (JSON, one per element).
    pub assets: String,
    /// List: the scan's results (JSON, one per element), grouped by asset.
    pub results: String,
}

/// The history's index keys under `prefix`.
pub fn history_keys(prefix: &str) -> HistoryKeys {
    HistoryKeys {
        scans: format!("{prefix}:history:scans"),
        observed: format!("{prefix}:history:observed"),
    }
}

/// The history keys of `scan_id` under `prefix`.
///
/// # Errors
/// [`StoreError::Permanent`] for an empty scan id or one with `{` or `}`.
pub fn history_scan_keys(prefix: &str, scan_id: &str) -> Result<HistoryScanKeys, StoreError> {
    if scan_id.is_empty() || scan_id.contains(['{', '}']) {
        return Err(StoreError::Permanent(format!(
            "scan id {:?} cannot be stored: it must be non-empty and free of braces",
            escape_bytes(scan_id.as_bytes(), 64)
        )));
    }
    let base = format!("{prefix}:history:{{{scan_id}}}");
    Ok(HistoryScanKeys {
        record: format!("{base}:record"),
        assets: format!("{base}:assets"),
        results: format!("{base}:results"),
    })
}
