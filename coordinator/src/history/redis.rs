//! The history in Redis (`--redis URL`): the keys of
//! [`scanfleet_common::store::redis::history_keys`] and
//! [`history_scan_keys`](scanfleet_common::store::redis::history_scan_keys)
//! under the default prefix `scanfleet`. A scan is written in this order: its old
//! keys deleted, assets and results pushed in chunks, the record set, the scan
//! added to the `scans` index; readers treat a scan without a record as unknown.
//! The observed index is updated by one Lua script per chunk (first = min, last = max).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use scanfleet_common::store::redis::{HistoryScanKeys, history_keys, history_scan_keys};
use scanfleet_common::telemetry::redact;
use scanfleet_common::{Asset, ProbeResult};
use serde::Deserialize;

use super::{FORMAT, HistoryError, Observed, RecordFile, VERSION, check_version, unknown};
use crate::findings::ScanRecord;

/// Entries per request.
const CHUNK: usize = 1000;
/// Bound on each request.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// The key prefix without `SCANFLEET_HISTORY_PREFIX`: the result store's.
const PREFIX: &str = "scanfleet";

const OBSERVE: &str = r#"
local t = tonumber(ARGV[1])
for i = 2, #ARGV do
  local first, last = t, t
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v then
    local f, l = string.match(v, '^(%d+),(%d+)$')
    if f then
      f = tonumber(f); l = tonumber(l)
      if f < first then first = f end
      if l > last then last = l end
    end
  end
  redis.call('HSET', KEYS[1], ARGV[i], string.format('%d,%d', first, last))
end
return #ARGV - 1
"#;

/// A connected Redis history.
pub struct RedisHistory {
    conn: ConnectionManager,
    url: String,
    /// `scanfleet`, or `SCANFLEET_HISTORY_PREFIX` (one Redis for several
    /// estates, or tests that must not share an observed index).
    prefix: String,
}

impl std::fmt::Debug for RedisHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHistory")
            .field("url", &redact(&self.url))
            .finish()
    }
}

impl RedisHistory {
    /// # Errors
    /// [`HistoryError::Io`] when Redis cannot be reached.
    pub async fn connect(url: &str) -> Result<RedisHistory, HistoryError> {
        let shown = redact(url);
        let client = redis::Client::open(url)
            .map_err(|e| HistoryError::Io(format!("Redis {shown}: {}", e.category())))?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(OP_TIMEOUT))
            .set_number_of_retries(2);
        let conn =
            tokio::time::timeout(OP_TIMEOUT, ConnectionManager::new_with_config(client, cfg))
                .await
                .map_err(|_| HistoryError::Io(format!("connect to Redis {shown}: no answer")))?
                .map_err(|e| HistoryError::Io(format!("connect to Redis {shown}: {e}")))?;
        let prefix = std::env::var("SCANFLEET_HISTORY_PREFIX")
            .ok()
            .filter(|p| !p.is_empty() && !p.contains(['{', '}']))
            .unwrap_or_else(|| PREFIX.to_string());
        Ok(RedisHistory {
            conn,
            url: url.to_string(),
            prefix,
        })
    }

    pub fn describe(&self) -> String {
        format!("Redis {}", redact(&self.url))
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        what: &str,
        cmd: &redis::Pipeline,
    ) -> Result<T, HistoryError> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(OP_TIMEOUT, cmd.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(HistoryError::Io(format!(
                "{what} ({}): {e}",
                self.describe()
            ))),
            Err(_) => Err(HistoryError::Io(format!(
                "{what}: {} did not answer",
                self.describe()
            ))),
        }
    }

    fn keys(&self, scan_id: &str) -> Result<HistoryScanKeys, HistoryError> {
        history_scan_keys(&self.prefix, scan_id)
            .map_err(|e| HistoryError::UnknownScan(e.to_string()))
    }

    /// # Errors
    /// See [`super::History::record`].
    pub async fn record(
        &self,
        record: &ScanRecord,
        assets: &[Asset],
        results: &[&ProbeResult],
        observed: &[String],
        at: u64,
    ) -> Result<(), HistoryError> {
        let k = self.keys(&record.scan_id)?;
        let idx = history_keys(&self.prefix);
        let mut p = redis::pipe();
        p.cmd("DEL")
            .arg(&k.record)
            .arg(&k.assets)
            .arg(&k.results)
            .ignore();
        self.run::<()>("recording the history", &p).await?;
        for chunk in assets.chunks(CHUNK) {
            let mut p = redis::pipe();
            let items: Vec<String> = chunk.iter().map(enc).collect::<Result<_, _>>()?;
            p.cmd("RPUSH").arg(&k.assets).arg(items).ignore();
            self.run::<()>("recording the scan's assets", &p).await?;
        }
        for chunk in results.chunks(CHUNK) {
            let mut p = redis::pipe();
            let items: Vec<String> = chunk.iter().map(|r| enc(*r)).collect::<Result<_, _>>()?;
            p.cmd("RPUSH").arg(&k.results).arg(items).ignore();
            self.run::<()>("recording the scan's results", &p).await?;
        }
        let script = redis::Script::new(OBSERVE);
        for chunk in observed.chunks(CHUNK) {
            let mut inv = script.prepare_invoke();
            inv.key(&idx.observed).arg(at);
            for id in chunk {
                inv.arg(id);
            }
            let mut conn = self.conn.clone();
            tokio::time::timeout(OP_TIMEOUT, inv.invoke_async::<i64>(&mut conn))
                .await
                .map_err(|_| {
                    HistoryError::Io(format!(
                        "recording observed times: {} did not answer",
                        self.describe()
                    ))
                })?
                .map_err(|e| {
                    HistoryError::Io(format!(
                        "recording observed times ({}): {e}",
                        self.describe()
                    ))
                })?;
        }
        let rec = serde_json::to_string(&RecordFile {
            format: FORMAT.into(),
            version: VERSION,
            record: record.clone(),
        })
        .map_err(|e| HistoryError::Io(format!("encoding the scan record: {e}")))?;
        let mut p = redis::pipe();
        p.atomic()
            .cmd("SET")
            .arg(&k.record)
            .arg(rec)
            .ignore()
            .cmd("ZADD")
            .arg(&idx.scans)
            .arg(record.started_unix_ms)
            .arg(&record.scan_id)
            .ignore();
        self.run::<()>("recording the scan", &p).await
    }

    /// # Errors
    /// See [`super::History::list`].
    pub async fn list(&self) -> Result<Vec<ScanRecord>, HistoryError> {
        let idx = history_keys(&self.prefix);
        let mut p = redis::pipe();
        p.cmd("ZRANGE").arg(&idx.scans).arg(0).arg(-1);
        let (ids,): (Vec<String>,) = self.run("listing the history", &p).await?;
        let mut out = Vec::new();
        for id in ids {
            match self.record_of(&id).await {
                Ok(r) => out.push(r),
                // Indexed but its record is gone (deleted by hand): not listed.
                Err(HistoryError::UnknownScan(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// # Errors
    /// See [`super::History::record_of`].
    pub async fn record_of(&self, scan_id: &str) -> Result<ScanRecord, HistoryError> {
        let k = self.keys(scan_id)?;
        let mut p = redis::pipe();
        p.cmd("GET").arg(&k.record);
        let (text,): (Option<String>,) = self.run("reading the scan record", &p).await?;
        let Some(text) = text else {
            return Err(unknown(
                scan_id,
                &format!("the history in {}", self.describe()),
                "; `scanfleet history --redis URL` lists the scans it holds (an embedded scan's history is in the state directory: drop --redis)",
            ));
        };
        #[derive(Deserialize)]
        struct Head {
            format: String,
            version: u32,
        }
        let what = format!("{} key {}", self.describe(), k.record);
        let head: Head = serde_json::from_str(&text).map_err(|e| {
            HistoryError::Corrupt(format!("{what}: not a scanfleet history record: {e}"))
        })?;
        check_version(&head.format, head.version, &what)?;
        let r: RecordFile = serde_json::from_str(&text).map_err(|e| {
            HistoryError::Corrupt(format!("{what}: not a scanfleet history record: {e}"))
        })?;
        Ok(r.record)
    }

    /// # Errors
    /// See [`super::History::assets`].
    pub async fn assets(&self, scan_id: &str) -> Result<Vec<Asset>, HistoryError> {
        self.record_of(scan_id).await?;
        let k = self.keys(scan_id)?;
        let mut lines = ListLines {
            conn: self.conn.clone(),
            key: k.assets,
            describe: self.describe(),
            next: 0,
            page: VecDeque::new(),
            done: false,
        };
        let mut out = Vec::new();
        while let Some((i, l)) = lines.next_line().await? {
            out.push(serde_json::from_str(&l).map_err(|e| lines.bad(i, &e))?);
        }
        Ok(out)
    }

    /// # Errors
    /// See [`super::History::results`].
    pub async fn result_lines(&self, scan_id: &str) -> Result<ListLines, HistoryError> {
        self.record_of(scan_id).await?;
        let k = self.keys(scan_id)?;
        Ok(ListLines {
            conn: self.conn.clone(),
            key: k.results,
            describe: self.describe(),
            next: 0,
            page: VecDeque::new(),
            done: false,
        })
    }

    /// # Errors
    /// See [`super::History::observed`].
    pub async fn observed(&self, ids: &[&str]) -> Result<HashMap<String, Observed>, HistoryError> {
        let idx = history_keys(&self.prefix);
        let mut out = HashMap::new();
        for chunk in ids.chunks(CHUNK) {
            let mut p = redis::pipe();
            p.cmd("HMGET").arg(&idx.observed).arg(chunk);
            let (vals,): (Vec<Option<String>>,) = self.run("reading observed times", &p).await?;
            for (id, v) in chunk.iter().zip(vals) {
                let Some(v) = v else { continue };
                let parsed = v
                    .split_once(',')
                    .and_then(|(f, l)| Some((f.parse().ok()?, l.parse().ok()?)));
                let o = parsed.ok_or_else(|| {
                    HistoryError::Corrupt(format!(
                        "{} key {} field {}: {} is not first,last",
                        self.describe(),
                        idx.observed,
                        scanfleet_common::text::echo(id),
                        scanfleet_common::text::echo(&v)
                    ))
                })?;
                out.insert((*id).to_string(), o);
            }
        }
        Ok(out)
    }
}

fn enc<T: serde::Serialize>(v: &T) -> Result<String, HistoryError> {
    serde_json::to_string(v).map_err(|e| HistoryError::Io(format!("encoding: {e}")))
}

/// The elements of a Redis list, read a page at a time.
pub struct ListLines {
    conn: ConnectionManager,
    key: String,
    describe: String,
    next: isize,
    page: VecDeque<String>,
    done: bool,
}

impl ListLines {
    async fn next_line(&mut self) -> Result<Option<(isize, String)>, HistoryError> {
        if self.page.is_empty() && !self.done {
            let from = self.next;
            let to = from + CHUNK as isize - 1;
            let mut conn = self.conn.clone();
            let page: Vec<String> = tokio::time::timeout(
                OP_TIMEOUT,
                redis::cmd("LRANGE")
                    .arg(&self.key)
                    .arg(from)
                    .arg(to)
                    .query_async(&mut conn),
            )
            .await
            .map_err(|_| {
                HistoryError::Io(format!(
                    "reading {}: {} did not answer",
                    self.key, self.describe
                ))
            })?
            .map_err(|e| {
                HistoryError::Io(format!("reading {} ({}): {e}", self.key, self.describe))
            })?;
            if page.len() < CHUNK {
                self.done = true;
            }
            self.page = page.into();
        }
        match self.page.pop_front() {
            None => Ok(None),
            Some(l) => {
                self.next += 1;
                Ok(Some((self.next - 1, l)))
            }
        }
    }

    fn bad(&self, i: isize, e: &serde_json::Error) -> HistoryError {
        HistoryError::Corrupt(format!(
            "{} key {} element {i}: {e}",
            self.describe, self.key
        ))
    }

    /// # Errors
    /// An element that is not a result, named by key and index.
    pub async fn next_result(&mut self) -> Result<Option<ProbeResult>, HistoryError> {
        match self.next_line().await? {
            None => Ok(None),
            Some((i, l)) => serde_json::from_str(&l)
                .map(Some)
                .map_err(|e| self.bad(i, &e)),
        }
    }
}
