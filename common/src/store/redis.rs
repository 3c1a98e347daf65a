//! Redis backend of the result store (also ElastiCache).
//!
//! # Keys
//! Every key of one scan carries the scan id as a `{hash tag}`, so that all of them
//! live in one Redis Cluster slot and every script touches one slot only. With the
//! default prefix `scanfleet` and scan `s1`:
//!
//! | key | type | content |
//! |---|---|---|
//! | `scanfleet:{s1}:meta` | hash | `shards_total`, `created` and `finished` (unix ms), `shards_done`, `shards_failed`, `ports_done` |
//! | `scanfleet:{s1}:results` | hash | field `ip\|port\|proto` (`10.0.0.5\|443\|tcp`) -> [`ProbeResult`] JSON |
//! | `scanfleet:{s1}:shards` | hash | field shard id (`7`) -> [`ShardOutcome`] JSON |
//! | `scanfleet:{s1}:ports` | hash | field shard id (`7`) -> (target, port) pairs that shard has decided so far; their sum is `meta`'s `ports_done` |
//! | `scanfleet:{s1}:stats` | hash | field shard id (`7`) -> [`ShardStats`](crate::ShardStats) JSON: what the probe engine measured |
//! | `scanfleet:{s1}:stream` | stream | one entry per written batch: `n` (results in it) and `keys` (their `results` fields, comma separated), trimmed to about [`RedisConfig::stream_maxlen`] entries |
//!
//! The scan history (the coordinator's `history` module) has its own namespace,
//! `scanfleet:history:...` ([`history_keys`], [`history_scan_keys`]): the
//! `scans` sorted set, the `observed` hash (finding id -> first,last), and per
//! scan `scanfleet:history:{s1}:record|assets|results`. History keys never expire.
//!
//! A scan exists when its `meta` key does; otherwise calls return
//! [`StoreError::UnknownScan`]. Scan ids must be non-empty and free of `{` and `}`.
//!
//! # Consistency
//! Writes and shard outcomes are Lua scripts (`EVALSHA`, loaded again after a Redis
//! restart), so each is atomic: a batch's results, its stream entry and the key
//! expiry land together, and the shard counters in `meta` always agree with the
//! `shards` hash. `HSET` by result key makes a redelivered shard overwrite rather
//! than add; its stream entry may repeat, so stream readers must tolerate repeats.
//! `progress` reads the counters and `HLEN results` in one `MULTI`.
//!
//! # Bad contents
//! A value that is not the JSON this module writes (in `results`, `shards` or the
//! counters) is never skipped silently: the call fails with
//! [`StoreError::Permanent`] naming the key and field, so that an operator can
//! repair or `HDEL` it. A report built from a store with a corrupt entry would
//! silently miss an open port, which is worse than no report.
//!
//! # Failures
//! Connection loss, timeouts, `LOADING`, `TRYAGAIN`, `MASTERDOWN`, `CLUSTERDOWN`,
//! `READONLY` (failover), `OOM` and `BUSY` are [`StoreError::Transient`]: the worker
//! holds its shard and retries. No call waits longer than
//! [`RedisConfig::op_timeout`] for an answer, even while Redis is down. The
//! connection heals by itself in the background (redis-rs `ConnectionManager`).
//!
//! # Durability and retention
//! "Durable when this returns" is as durable as the server is configured to be:
//! run Redis with AOF (`appendfsync everysec` or `always`) or with replicas
//! (ElastiCache). Every write refreshes a TTL on all keys of the scan
//! ([`RedisConfig::ttl`], 30 days by default), so a scan's data expires that long
//! after its last write; `None` keeps it forever.
//!
//! # Cluster mode
//! The connection is to one endpoint (a standalone Redis or ElastiCache with cluster
//! mode disabled). The key names are ready for a cluster client: every call touches
//! keys of one scan only, and they share a slot.

mod keys;
mod read;
mod resume;
mod scripts;
pub mod tls;
mod value;
pub use value::{decode_result, encode_result, result_field};

use keys::parse_counter;
pub use keys::{HistoryKeys, HistoryScanKeys, ScanKeys, history_keys, history_scan_keys};

use std::fmt;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError, ScriptInvocation, ServerErrorKind};

use super::{ResultStore, StoreError};
use crate::types::{ProbeResult, Progress, ScanTimes, ShardOutcome, ShardStats};
use scripts::{FINISH, PORTS, WRITE};

/// Results per script call: bounds one request's size whatever batch a caller writes.
const WRITE_CHUNK: usize = 1000;

/// How the Redis store names keys, times out and retains data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// First part of every key: `<prefix>:{<scan>}:meta` and so on.
    pub key_prefix: String,
    /// Expiry refreshed on all keys of a scan by each write; `None`: never expire.
    pub ttl: Option<Duration>,
    /// Approximate cap on the entries of a scan's stream (`XADD MAXLEN ~`); 0 turns
    /// the stream off.
    pub stream_maxlen: usize,
    /// Bound on one TCP connect (and TLS, AUTH) attempt.
    pub connect_timeout: Duration,
    /// Bound on one call, including waiting for a reconnect while Redis is down.
    pub op_timeout: Duration,
    /// Connect attempts per reconnect before the pending calls fail; the next call
    /// starts a new round.
    pub reconnect_attempts: usize,
    /// Longest pause between reconnect attempts.
    pub reconnect_max_delay: Duration,
    /// Fields per `HSCAN` page when reading results.
    pub scan_page: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            key_prefix: "scanfleet".into(),
            ttl: Some(Duration::from_secs(30 * 24 * 3600)),
            stream_maxlen: 1000,
            connect_timeout: Duration::from_secs(2),
            op_timeout: Duration::from_secs(5),
            reconnect_attempts: 3,
            reconnect_max_delay: Duration::from_secs(2),
            scan_page: 1000,
        }
    }
}

impl RedisConfig {
    /// # Errors
    /// A message naming the field that is out of range.
    pub fn validate(&self) -> Result<(), String> {
        if self.key_prefix.is_empty() || self.key_prefix.contains(['{', '}']) {
            return Err(format!(
                "redis key_prefix {:?}: must be non-empty and free of braces",
                self.key_prefix
            ));
        }
        if self.ttl.is_some_and(|t| t.as_millis() == 0) {
            return Err("redis ttl must be positive (or unset to keep data)".into());
        }
        for (name, d) in [
            ("connect_timeout", self.connect_timeout),
            ("op_timeout", self.op_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("redis {name} must be positive"));
            }
        }
        if self.scan_page == 0 {
            return Err("redis scan_page must be at least 1".into());
        }
        Ok(())
    }
}

/// A [`ResultStore`] on Redis; see the module docs. Cheap to clone and share.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    config: RedisConfig,
    /// `host:port`, for messages: the URL itself may hold a password.
    endpoint: String,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("endpoint", &self.endpoint)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Whether a Redis error can heal by itself.
fn classify(what: &str, e: &RedisError) -> StoreError {
    let msg = format!("{what}: {e}");
    let transient = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::ReadOnly
            )
        )
        || matches!(e.code(), Some("OOM" | "BUSY" | "LOADING"));
    if transient {
        StoreError::Transient(msg)
    } else {
        StoreError::Permanent(msg)
    }
}

impl RedisStore {
    /// Connect to `url` (`redis://[:password@]host:6379[/db]`, or `rediss://` with
    /// the TLS files of [`tls`] as query parameters).
    ///
    /// # Errors
    /// [`StoreError::Permanent`] for an invalid URL or configuration,
    /// [`StoreError::Transient`] when Redis cannot be reached.
    pub async fn connect(url: &str, config: RedisConfig) -> Result<Self, StoreError> {
        config.validate().map_err(StoreError::Permanent)?;
        let (url, tls) =
            tls::split(url).map_err(|why| StoreError::Permanent(format!("Redis URL: {why}")))?;
        let bad_url = |e: redis::RedisError| {
            StoreError::Permanent(format!("invalid Redis URL: {}", e.category()))
        };
        let client = match tls {
            None => redis::Client::open(url.as_str()).map_err(bad_url)?,
            Some(files) => {
                let certs = tls::load(&files).map_err(StoreError::Permanent)?;
                redis::Client::build_with_tls(url.as_str(), certs).map_err(bad_url)?
            }
        };
        let endpoint = client.get_connection_info().addr().to_string();
        let mgr_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.op_timeout))
            .set_number_of_retries(config.reconnect_attempts)
            .set_max_delay(config.reconnect_max_delay);
        let conn = tokio::time::timeout(
            config.op_timeout,
            ConnectionManager::new_with_config(client, mgr_config),
        )
        .await
        .map_err(|_| {
            StoreError::Transient(format!(
                "connect to Redis at {endpoint}: no answer within {:?}",
                config.op_timeout
            ))
        })?
        .map_err(|e| classify(&format!("connect to Redis at {endpoint}"), &e))?;
        Ok(RedisStore {
            conn,
            config,
            endpoint,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// Remove every key of a scan (retention tooling, tests). Returns how many keys
    /// existed.
    ///
    /// # Errors
    /// Transient while Redis is unreachable.
    pub async fn delete_scan(&self, scan_id: &str) -> Result<u64, StoreError> {
        let k = self.keys(scan_id)?;
        let mut conn = self.conn.clone();
        self.bounded("delete scan", async move {
            redis::cmd("DEL")
                .arg(&k.meta)
                .arg(&k.results)
                .arg(&k.shards)
                .arg(&k.ports)
                .arg(&k.stream)
                .arg(&k.stats)
                .query_async::<u64>(&mut conn)
                .await
        })
        .await
    }

    fn ttl_ms(&self) -> u64 {
        self.config
            .ttl
            .map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
    }

    /// One request, bounded in time, its error classified.
    async fn bounded<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.config.op_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(classify(
                &format!("{what} (Redis at {})", self.endpoint),
                &e,
            )),
            Err(_) => Err(StoreError::Transient(format!(
                "{what}: Redis at {} did not answer within {:?}",
                self.endpoint, self.config.op_timeout
            ))),
        }
    }

    /// Run one of the scripts, bounded in time; its answer, where a negative one
    /// means the scan is not known.
    async fn run_script(
        &self,
        what: &str,
        inv: ScriptInvocation<'_>,
        scan_id: &str,
    ) -> Result<i64, StoreError> {
        let mut conn = self.conn.clone();
        let code: i64 = self
            .bounded(what, async move { inv.invoke_async(&mut conn).await })
            .await?;
        Self::unknown_if_negative(code, scan_id)
    }

    fn unknown_if_negative(code: i64, scan_id: &str) -> Result<i64, StoreError> {
        if code < 0 {
            Err(StoreError::UnknownScan(scan_id.to_owned()))
        } else {
            Ok(code)
        }
    }
}

#[async_trait]
impl ResultStore for RedisStore {
    async fn begin_scan(&self, scan_id: &str, shards_total: u64) -> Result<(), StoreError> {
        let k = self.keys(scan_id)?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HSET")
            .arg(&k.meta)
            .arg("shards_total")
            .arg(shards_total)
            .ignore()
            .cmd("HSETNX")
            .arg(&k.meta)
            .arg("created")
            .arg(now_ms)
            .ignore()
            .cmd("HSETNX")
            .arg(&k.meta)
            .arg("shards_done")
            .arg(0)
            .ignore()
            .cmd("HSETNX")
            .arg(&k.meta)
            .arg("shards_failed")
            .arg(0)
            .ignore();
        if shards_total == 0 {
            pipe.cmd("HSETNX")
                .arg(&k.meta)
                .arg("finished")
                .arg(now_ms)
                .ignore();
        }
        let ttl = self.ttl_ms();
        if ttl > 0 {
            pipe.cmd("PEXPIRE").arg(&k.meta).arg(ttl).ignore();
        }
        let mut conn = self.conn.clone();
        self.bounded("begin scan", async move {
            pipe.query_async::<()>(&mut conn).await
        })
        .await
    }

    async fn write_results(
        &self,
        scan_id: &str,
        results: &[ProbeResult],
    ) -> Result<(), StoreError> {
        let k = self.keys(scan_id)?;
        let ttl = self.ttl_ms();
        let chunks: Vec<&[ProbeResult]> = if results.is_empty() {
            vec![&[]]
        } else {
            results.chunks(WRITE_CHUNK).collect()
        };
        for chunk in chunks {
            let mut inv = WRITE.prepare_invoke();
            inv.key(&k.meta)
                .key(&k.results)
                .key(&k.stream)
                .key(&k.shards)
                .key(&k.ports);
            let fields: Vec<String> = chunk.iter().map(result_field).collect();
            inv.arg(ttl)
                .arg(self.config.stream_maxlen)
                .arg(chunk.len())
                .arg(fields.join(","));
            for (r, f) in chunk.iter().zip(&fields) {
                inv.arg(f).arg(encode_result(r));
            }
            self.run_script("write results", inv, scan_id).await?;
        }
        Ok(())
    }

    async fn finish_shard(
        &self,
        scan_id: &str,
        shard_id: u32,
        outcome: &ShardOutcome,
    ) -> Result<bool, StoreError> {
        let k = self.keys(scan_id)?;
        let json = serde_json::to_string(outcome)
            .map_err(|e| StoreError::Permanent(format!("encode shard outcome: {e}")))?;
        let kind = match outcome {
            ShardOutcome::Done => "done",
            ShardOutcome::Failed { .. } => "failed",
        };
        let mut inv = FINISH.prepare_invoke();
        inv.key(&k.meta)
            .key(&k.shards)
            .key(&k.results)
            .key(&k.stream)
            .key(&k.ports);
        inv.arg(shard_id).arg(json).arg(kind).arg(self.ttl_ms());
        Ok(self.run_script("finish shard", inv, scan_id).await? == 1)
    }

    async fn record_shard_stats(
        &self,
        scan_id: &str,
        stats: &ShardStats,
    ) -> Result<(), StoreError> {
        let k = self.keys(scan_id)?;
        let json = serde_json::to_string(stats)
            .map_err(|e| StoreError::Permanent(format!("encode shard stats: {e}")))?;
        self.require_scan(scan_id, &k.meta, "record shard stats")
            .await?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HSET")
            .arg(&k.stats)
            .arg(stats.shard_id)
            .arg(json)
            .ignore();
        let ttl = self.ttl_ms();
        if ttl > 0 {
            pipe.cmd("PEXPIRE").arg(&k.stats).arg(ttl).ignore();
        }
        let mut conn = self.conn.clone();
        self.bounded("record shard stats", async move {
            pipe.query_async::<()>(&mut conn).await
        })
        .await
    }

    async fn failed_shards(&self, scan_id: &str) -> Result<Vec<u32>, StoreError> {
        self.failed_shards_here(scan_id).await
    }

    async fn reopen_failed(&self, scan_id: &str, shards: &[u32]) -> Result<u64, StoreError> {
        self.reopen_failed_here(scan_id, shards).await
    }

    async fn save_jobs(&self, scan_id: &str, jobs: &[(u32, String)]) -> Result<(), StoreError> {
        self.save_jobs_here(scan_id, jobs).await
    }

    async fn jobs(&self, scan_id: &str) -> Result<Vec<(u32, String)>, StoreError> {
        self.jobs_here(scan_id).await
    }

    async fn cancel_scan(&self, scan_id: &str) -> Result<bool, StoreError> {
        self.cancel_scan_here(scan_id).await
    }

    async fn uncancel_scan(&self, scan_id: &str) -> Result<(), StoreError> {
        self.uncancel_scan_here(scan_id).await
    }

    async fn is_cancelled(&self, scan_id: &str) -> Result<bool, StoreError> {
        self.is_cancelled_here(scan_id).await
    }

    async fn shard_stats(&self, scan_id: &str) -> Result<Vec<ShardStats>, StoreError> {
        self.shard_stats_here(scan_id).await
    }

    async fn record_ports(
        &self,
        scan_id: &str,
        shard_id: u32,
        ports_done: u64,
    ) -> Result<(), StoreError> {
        let k = self.keys(scan_id)?;
        let mut inv = PORTS.prepare_invoke();
        inv.key(&k.meta).key(&k.ports);
        inv.arg(shard_id).arg(ports_done).arg(self.ttl_ms());
        self.run_script("record ports", inv, scan_id)
            .await
            .map(|_| ())
    }

    async fn progress(&self, scan_id: &str) -> Result<Progress, StoreError> {
        let k = self.keys(scan_id)?;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HMGET")
            .arg(&k.meta)
            .arg("shards_total")
            .arg("shards_done")
            .arg("shards_failed")
            .arg("ports_done")
            .cmd("HLEN")
            .arg(&k.results);
        let mut conn = self.conn.clone();
        let ((total, done, failed, ports), results): (
            (
                Option<String>,
                Option<String>,
                Option<String>,
                Option<String>,
            ),
            u64,
        ) = self
            .bounded(
                "read progress",
                async move { pipe.query_async(&mut conn).await },
            )
            .await?;
        let Some(total) = total else {
            return Err(StoreError::UnknownScan(scan_id.to_owned()));
        };
        Ok(Progress {
            shards_total: parse_counter(&k.meta, "shards_total", Some(total))?,
            shards_done: parse_counter(&k.meta, "shards_done", done)?,
            shards_failed: parse_counter(&k.meta, "shards_failed", failed)?,
            results,
            ports_done: parse_counter(&k.meta, "ports_done", ports)?,
        })
    }

    async fn times(&self, scan_id: &str) -> Result<ScanTimes, StoreError> {
        let k = self.keys(scan_id)?;
        let mut conn = self.conn.clone();
        let meta = k.meta.clone();
        let (exists, created, finished): (bool, Option<String>, Option<String>) = self
            .bounded("read scan times", async move {
                redis::pipe()
                    .atomic()
                    .cmd("EXISTS")
                    .arg(&meta)
                    .cmd("HGET")
                    .arg(&meta)
                    .arg("created")
                    .cmd("HGET")
                    .arg(&meta)
                    .arg("finished")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        if !exists {
            return Err(StoreError::UnknownScan(scan_id.to_owned()));
        }
        Ok(ScanTimes {
            started_unix_ms: parse_counter(&k.meta, "created", created)?,
            finished_unix_ms: finished
                .map(|f| parse_counter(&k.meta, "finished", Some(f)))
                .transpose()?,
        })
    }

    async fn unfinished_shards(&self, scan_id: &str) -> Result<Vec<u32>, StoreError> {
        self.unfinished_shards_here(scan_id).await
    }

    async fn results(&self, scan_id: &str) -> Result<Vec<ProbeResult>, StoreError> {
        self.results_here(scan_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation_names_the_field() {
        assert!(RedisConfig::default().validate().is_ok());
        let bad = RedisConfig {
            key_prefix: "a{b".into(),
            ..RedisConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("key_prefix"));
        let bad = RedisConfig {
            op_timeout: Duration::ZERO,
            ..RedisConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("op_timeout"));
    }

    #[test]
    fn counters_must_be_counts() {
        assert_eq!(parse_counter("k", "f", None).unwrap(), 0);
        assert_eq!(parse_counter("k", "f", Some("7".into())).unwrap(), 7);
        let e =
            parse_counter("scanfleet:{s}:meta", "shards_done", Some("x\x1b".into())).unwrap_err();
        assert!(
            e.to_string()
                .contains("scanfleet:{s}:meta field shards_done"),
            "{e}"
        );
        assert!(e.to_string().contains("\\x1b"), "escaped: {e}");
    }
}
