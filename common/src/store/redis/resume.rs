//! The store's side of `scanfleet cancel` and `scanfleet resume`: the shards a
//! scan was planned with, its cancel mark, and which shards failed.

use super::RedisStore;
use super::scripts::REOPEN;
use crate::store::StoreError;
use crate::types::ShardOutcome;

impl RedisStore {
    pub(super) async fn reopen_failed_here(
        &self,
        scan_id: &str,
        shards: &[u32],
    ) -> Result<u64, StoreError> {
        let k = self.keys(scan_id)?;
        let mut inv = REOPEN.prepare_invoke();
        inv.key(&k.meta).key(&k.shards).arg(self.ttl_ms());
        for s in shards {
            inv.arg(*s);
        }
        Ok(self
            .run_script("reopen failed shards", inv, scan_id)
            .await? as u64)
    }

    pub(super) async fn failed_shards_here(&self, scan_id: &str) -> Result<Vec<u32>, StoreError> {
        let k = self.keys(scan_id)?;
        let all = self
            .scan_hash(scan_id, &k.meta, &k.shards, "read shard outcomes")
            .await?;
        let mut ids = Vec::new();
        for (field, json) in all {
            let outcome: ShardOutcome = serde_json::from_str(&json).map_err(|e| {
                StoreError::Permanent(format!(
                    "{} field {}: not a shard outcome: {e}",
                    k.shards,
                    crate::text::echo(&field)
                ))
            })?;
            if matches!(outcome, ShardOutcome::Failed { .. }) {
                ids.push(field.parse::<u32>().map_err(|_| {
                    StoreError::Permanent(format!(
                        "{}: field {} is not a shard id",
                        k.shards,
                        crate::text::echo(&field)
                    ))
                })?);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    pub(super) async fn save_jobs_here(
        &self,
        scan_id: &str,
        jobs: &[(u32, String)],
    ) -> Result<(), StoreError> {
        let k = self.keys(scan_id)?;
        self.require_scan(scan_id, &k.meta, "save the scan's shards")
            .await?;
        if jobs.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("HSET").arg(&k.jobs);
        for (id, json) in jobs {
            pipe.arg(*id).arg(json);
        }
        pipe.ignore();
        let ttl = self.ttl_ms();
        if ttl > 0 {
            pipe.cmd("PEXPIRE").arg(&k.jobs).arg(ttl).ignore();
        }
        let mut conn = self.conn.clone();
        self.bounded("save the scan's shards", async move {
            pipe.query_async::<()>(&mut conn).await
        })
        .await
    }

    pub(super) async fn jobs_here(&self, scan_id: &str) -> Result<Vec<(u32, String)>, StoreError> {
        let k = self.keys(scan_id)?;
        let all = self
            .scan_hash(scan_id, &k.meta, &k.jobs, "read the scan's shards")
            .await?;
        let mut out = Vec::with_capacity(all.len());
        for (field, json) in all {
            let id = field.parse::<u32>().map_err(|_| {
                StoreError::Permanent(format!(
                    "{} field {}: not a shard id",
                    k.jobs,
                    crate::text::echo(&field)
                ))
            })?;
            out.push((id, json));
        }
        out.sort_by_key(|(id, _)| *id);
        Ok(out)
    }

    pub(super) async fn cancel_scan_here(&self, scan_id: &str) -> Result<bool, StoreError> {
        let k = self.keys(scan_id)?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("EXISTS")
            .arg(&k.meta)
            .cmd("HSETNX")
            .arg(&k.meta)
            .arg("cancelled")
            .arg(now_ms);
        let mut conn = self.conn.clone();
        let (exists, set): (bool, bool) = self
            .bounded("cancel the scan", async move {
                pipe.query_async(&mut conn).await
            })
            .await?;
        if !exists {
            // HSETNX made the hash: take it away again, the scan is unknown.
            let mut conn = self.conn.clone();
            let meta = k.meta.clone();
            let _: Result<(), StoreError> = self
                .bounded("cancel the scan", async move {
                    redis::cmd("DEL")
                        .arg(&meta)
                        .query_async::<()>(&mut conn)
                        .await
                })
                .await;
            return Err(StoreError::UnknownScan(scan_id.to_owned()));
        }
        Ok(set)
    }

    pub(super) async fn uncancel_scan_here(&self, scan_id: &str) -> Result<(), StoreError> {
        let k = self.keys(scan_id)?;
        let mut conn = self.conn.clone();
        self.bounded("resume the scan", async move {
            redis::cmd("HDEL")
                .arg(&k.meta)
                .arg("cancelled")
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    pub(super) async fn is_cancelled_here(&self, scan_id: &str) -> Result<bool, StoreError> {
        let k = self.keys(scan_id)?;
        let mut conn = self.conn.clone();
        let meta = k.meta.clone();
        let (exists, cancelled): (bool, bool) = self
            .bounded("read the scan's cancel mark", async move {
                redis::pipe()
                    .cmd("EXISTS")
                    .arg(&meta)
                    .cmd("HEXISTS")
                    .arg(&meta)
                    .arg("cancelled")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        if !exists {
            return Err(StoreError::UnknownScan(scan_id.to_owned()));
        }
        Ok(cancelled)
    }
}
