//! The store's reads of a scan's results, shard outcomes and shard stats, each in
//! pages where a scan can be large.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::keys::parse_counter;
use super::{RedisStore, decode_result};
use crate::escape_bytes;
use crate::store::StoreError;
use crate::types::{ProbeResult, Protocol, ShardStats};

/// One HSCAN reply's pairs: field and value bytes.
type HashPage = Vec<(Vec<u8>, Vec<u8>)>;

impl RedisStore {
    /// [`StoreError::UnknownScan`] unless the scan is registered.
    pub(super) async fn require_scan(
        &self,
        scan_id: &str,
        meta: &str,
        what: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let exists: bool = self
            .bounded(what, async move {
                redis::cmd("EXISTS").arg(meta).query_async(&mut conn).await
            })
            .await?;
        if exists {
            Ok(())
        } else {
            Err(StoreError::UnknownScan(scan_id.to_owned()))
        }
    }

    /// A hash of a scan (its shard outcomes, stats or kept jobs), read with the
    /// scan's registration in one round trip: [`StoreError::UnknownScan`] when
    /// the scan is not registered.
    pub(super) async fn scan_hash(
        &self,
        scan_id: &str,
        meta: &str,
        hash: &str,
        what: &str,
    ) -> Result<BTreeMap<String, String>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("EXISTS")
            .arg(meta)
            .cmd("HGETALL")
            .arg(hash);
        let mut conn = self.conn.clone();
        let (exists, all): (bool, BTreeMap<String, String>) = self
            .bounded(what, async move { pipe.query_async(&mut conn).await })
            .await?;
        if !exists {
            return Err(StoreError::UnknownScan(scan_id.to_owned()));
        }
        Ok(all)
    }

    pub(super) async fn results_here(&self, scan_id: &str) -> Result<Vec<ProbeResult>, StoreError> {
        let k = self.keys(scan_id)?;
        let mut conn = self.conn.clone();
        let exists: bool = self
            .bounded("read results", async {
                redis::cmd("EXISTS")
                    .arg(&k.meta)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        if !exists {
            return Err(StoreError::UnknownScan(scan_id.to_owned()));
        }
        // HSCAN may return a field twice; the map dedupes and sorts by (ip, port, proto).
        let mut out: BTreeMap<(IpAddr, u16, Protocol), ProbeResult> = BTreeMap::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, page): (u64, HashPage) = self
                .bounded("read results", async {
                    redis::cmd("HSCAN")
                        .arg(&k.results)
                        .arg(cursor)
                        .arg("COUNT")
                        .arg(self.config.scan_page)
                        .query_async(&mut conn)
                        .await
                })
                .await?;
            for (field, value) in page {
                let shown = escape_bytes(&field, 200);
                let r = decode_result(scan_id, &field, &value).map_err(|why| {
                    StoreError::Permanent(format!("{} field {shown} {why}", k.results))
                })?;
                out.insert(r.key(), r);
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(out.into_values().collect())
    }

    pub(super) async fn unfinished_shards_here(
        &self,
        scan_id: &str,
    ) -> Result<Vec<u32>, StoreError> {
        let k = self.keys(scan_id)?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HGET")
            .arg(&k.meta)
            .arg("shards_total")
            .cmd("HKEYS")
            .arg(&k.shards);
        let mut conn = self.conn.clone();
        let (total, finished): (Option<String>, Vec<String>) = self
            .bounded("read shard outcomes", async move {
                pipe.query_async(&mut conn).await
            })
            .await?;
        let Some(total) = total else {
            return Err(StoreError::UnknownScan(scan_id.to_owned()));
        };
        let total = parse_counter(&k.meta, "shards_total", Some(total))?;
        let mut done = std::collections::BTreeSet::new();
        for f in finished {
            let id: u32 = f.parse().map_err(|_| {
                StoreError::Permanent(format!(
                    "{}: field {} is not a shard id",
                    k.shards,
                    crate::text::echo(&f)
                ))
            })?;
            done.insert(id);
        }
        Ok((0..total)
            .filter_map(|i| u32::try_from(i).ok())
            .filter(|i| !done.contains(i))
            .collect())
    }

    pub(super) async fn shard_stats_here(
        &self,
        scan_id: &str,
    ) -> Result<Vec<ShardStats>, StoreError> {
        let k = self.keys(scan_id)?;
        let all = self
            .scan_hash(scan_id, &k.meta, &k.stats, "read shard stats")
            .await?;
        let mut out = Vec::with_capacity(all.len());
        for (field, json) in all {
            let s: ShardStats = serde_json::from_str(&json).map_err(|e| {
                StoreError::Permanent(format!(
                    "{} field {}: not shard stats JSON: {e}",
                    k.stats,
                    crate::text::echo(&field)
                ))
            })?;
            out.push(s);
        }
        out.sort_by_key(|s| s.shard_id);
        Ok(out)
    }
}
