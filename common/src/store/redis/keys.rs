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
