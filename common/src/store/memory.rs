//! In-process result store for the embedded mode.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{ResultStore, StoreError};
use crate::types::{ProbeResult, Progress, Protocol, ScanTimes, ShardOutcome, ShardStats};

#[derive(Default)]
struct Scan {
    shards_total: u64,
    started_unix_ms: u64,
    finished_unix_ms: Option<u64>,
    shards: HashMap<u32, ShardOutcome>,
    ports: HashMap<u32, u64>,
    stats: BTreeMap<u32, ShardStats>,
    jobs: BTreeMap<u32, String>,
    cancelled: bool,
    results: BTreeMap<(IpAddr, u16, Protocol), ProbeResult>,
}

/// The embedded store.
#[derive(Default)]
pub struct MemoryStore {
    scans: Mutex<HashMap<String, Scan>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with_scan<T>(&self, scan_id: &str, f: impl FnOnce(&mut Scan) -> T) -> Result<T, StoreError> {
        let mut scans = self.scans.lock().unwrap_or_else(|p| p.into_inner());
        scans
            .get_mut(scan_id)
            .map(f)
            .ok_or_else(|| StoreError::UnknownScan(scan_id.to_string()))
    }
}

#[async_trait]
impl ResultStore for MemoryStore {
    async fn begin_scan(&self, scan_id: &str, shards_total: u64) -> Result<(), StoreError> {
        let mut scans = self.scans.lock().unwrap_or_else(|p| p.into_inner());
        let s = scans.entry(scan_id.to_string()).or_insert_with(|| Scan {
            started_unix_ms: crate::envelope::now_unix_ms(),
            ..Scan::default()
        });
        s.shards_total = shards_total;
        if shards_total == 0 && s.finished_unix_ms.is_none() {
            s.finished_unix_ms = Some(s.started_unix_ms);
        }
        Ok(())
    }

    async fn record_shard_stats(
        &self,
        scan_id: &str,
        stats: &ShardStats,
    ) -> Result<(), StoreError> {
        self.with_scan(scan_id, |s| {
            s.stats.insert(stats.shard_id, stats.clone());
        })
    }

    async fn shard_stats(&self, scan_id: &str) -> Result<Vec<ShardStats>, StoreError> {
        self.with_scan(scan_id, |s| s.stats.values().cloned().collect())
    }

    async fn failed_shards(&self, scan_id: &str) -> Result<Vec<u32>, StoreError> {
        self.with_scan(scan_id, |s| {
            let mut ids: Vec<u32> = s
                .shards
                .iter()
                .filter(|(_, o)| matches!(o, ShardOutcome::Failed { .. }))
                .map(|(id, _)| *id)
                .collect();
            ids.sort_unstable();
            ids
        })
    }

    async fn reopen_failed(&self, scan_id: &str, shards: &[u32]) -> Result<u64, StoreError> {
        self.with_scan(scan_id, |s| {
            let mut n = 0;
            for id in shards {
                if matches!(s.shards.get(id), Some(ShardOutcome::Failed { .. })) {
                    s.shards.remove(id);
                    n += 1;
                }
            }
            if n > 0 {
                s.finished_unix_ms = None;
            }
            n
        })
    }

    async fn save_jobs(&self, scan_id: &str, jobs: &[(u32, String)]) -> Result<(), StoreError> {
        self.with_scan(scan_id, |s| s.jobs.extend(jobs.iter().cloned()))
    }

    async fn jobs(&self, scan_id: &str) -> Result<Vec<(u32, String)>, StoreError> {
        self.with_scan(scan_id, |s| {
            s.jobs.iter().map(|(k, v)| (*k, v.clone())).collect()
        })
    }

    async fn cancel_scan(&self, scan_id: &str) -> Result<bool, StoreError> {
        self.with_scan(scan_id, |s| !std::mem::replace(&mut s.cancelled, true))
    }

    async fn uncancel_scan(&self, scan_id: &str) -> Result<(), StoreError> {
        self.with_scan(scan_id, |s| s.cancelled = false)
    }

    async fn is_cancelled(&self, scan_id: &str) -> Result<bool, StoreError> {
        self.with_scan(scan_id, |s| s.cancelled)
    }

    async fn write_results(
        &self,
        scan_id: &str,
        results: &[ProbeResult],
    ) -> Result<(), StoreError> {
        self.with_scan(scan_id, |s| {
            for r in results {
                s.results.insert(r.key(), r.clone());
            }
        })
    }

    async fn finish_shard(
        &self,
        scan_id: &str,
        shard_id: u32,
        outcome: &ShardOutcome,
    ) -> Result<bool, StoreError> {
        self.with_scan(scan_id, |s| match (s.shards.get(&shard_id), outcome) {
            (Some(ShardOutcome::Done), _) => false,
            (Some(ShardOutcome::Failed { .. }), ShardOutcome::Failed { .. }) => false,
            (_, o) => {
                s.shards.insert(shard_id, o.clone());
                if s.finished_unix_ms.is_none() && s.shards.len() as u64 >= s.shards_total {
                    s.finished_unix_ms = Some(crate::envelope::now_unix_ms());
                }
                matches!(o, ShardOutcome::Done)
            }
        })
    }

    async fn record_ports(
        &self,
        scan_id: &str,
        shard_id: u32,
        ports_done: u64,
    ) -> Result<(), StoreError> {
        self.with_scan(scan_id, |s| {
            let n = s.ports.entry(shard_id).or_default();
            *n = (*n).max(ports_done);
        })
    }

    async fn progress(&self, scan_id: &str) -> Result<Progress, StoreError> {
        self.with_scan(scan_id, |s| Progress {
            shards_total: s.shards_total,
            shards_done: s
                .shards
                .values()
                .filter(|o| matches!(o, ShardOutcome::Done))
                .count() as u64,
            shards_failed: s
                .shards
                .values()
                .filter(|o| matches!(o, ShardOutcome::Failed { .. }))
                .count() as u64,
            results: s.results.len() as u64,
            ports_done: s.ports.values().sum(),
        })
    }

    async fn results(&self, scan_id: &str) -> Result<Vec<ProbeResult>, StoreError> {
        self.with_scan(scan_id, |s| s.results.values().cloned().collect())
    }

    async fn times(&self, scan_id: &str) -> Result<ScanTimes, StoreError> {
        self.with_scan(scan_id, |s| ScanTimes {
            started_unix_ms: s.started_unix_ms,
            finished_unix_ms: s.finished_unix_ms,
        })
    }

    async fn unfinished_shards(&self, scan_id: &str) -> Result<Vec<u32>, StoreError> {
        self.with_scan(scan_id, |s| {
            (0..s.shards_total)
                .filter_map(|i| u32::try_from(i).ok())
                .filter(|i| !s.shards.contains_key(i))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::PortState;

    #[tokio::test]
    async fn port_progress_per_shard_only_grows() {
        let st = MemoryStore::new();
        st.begin_scan("s", 2).await.unwrap();
        st.record_ports("s", 0, 100).await.unwrap();
        st.record_ports("s", 1, 40).await.unwrap();
        // A redelivery of shard 0 starts counting from zero again: no double count.
        st.record_ports("s", 0, 10).await.unwrap();
        st.record_ports("s", 0, 120).await.unwrap();
        assert_eq!(st.progress("s").await.unwrap().ports_done, 160);
        assert!(matches!(
            st.record_ports("nope", 0, 1).await,
            Err(StoreError::UnknownScan(_))
        ));
    }

    fn r(port: u16, state: PortState) -> ProbeResult {
        ProbeResult {
            scan_id: "s".into(),
            asset_id: "a".into(),
            ip: "10.0.0.1".parse().unwrap(),
            port,
            protocol: Protocol::Tcp,
            state,
            reason: String::new(),
            service: None,
        }
    }

    #[tokio::test]
    async fn rewrites_never_double_count_and_shards_are_idempotent() {
        let st = MemoryStore::new();
        assert!(matches!(
            st.progress("s").await,
            Err(StoreError::UnknownScan(_))
        ));
        st.begin_scan("s", 2).await.unwrap();
        st.write_results("s", &[r(80, PortState::Open), r(22, PortState::Open)])
            .await
            .unwrap();
        st.write_results("s", &[r(80, PortState::Open)])
            .await
            .unwrap();
        assert!(
            !st.finish_shard("s", 0, &ShardOutcome::Failed { reason: "x".into() })
                .await
                .unwrap()
        );
        assert!(st.finish_shard("s", 0, &ShardOutcome::Done).await.unwrap());
        assert!(!st.finish_shard("s", 0, &ShardOutcome::Done).await.unwrap());
        assert!(
            !st.finish_shard("s", 0, &ShardOutcome::Failed { reason: "y".into() })
                .await
                .unwrap()
        );
        let p = st.progress("s").await.unwrap();
        assert_eq!(
            p,
            Progress {
                shards_total: 2,
                shards_done: 1,
                shards_failed: 0,
                results: 2,
                ports_done: 0,
            }
        );
        assert!(!p.finished());
        let ports: Vec<u16> = st
            .results("s")
            .await
            .unwrap()
            .iter()
            .map(|r| r.port)
            .collect();
        assert_eq!(ports, [22, 80]);
    }
}
