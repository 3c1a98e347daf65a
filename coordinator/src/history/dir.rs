//! The history in a local state directory.
//!
//! ```text
//! <dir>/.lock                         held (flock) while a scan is recorded
//! <dir>/observed.jsonl                header, then {"id","first","last"} per finding id
//! <dir>/scans/<scan-id>/scan.json     {"format":"scanfleet-history","version":1,"record":{...}}
//! <dir>/scans/<scan-id>/assets.jsonl  header, then one Asset per line
//! <dir>/scans/<scan-id>/results.jsonl header, then one ProbeResult per line, grouped by asset
//! ```
//!
//! Every JSON-lines file starts with `{"format":"scanfleet-history","version":1,
//! "kind":...}`. Each file is written to a temporary file in the same directory,
//! synced and renamed over the old one, so a reader sees the old file or the new,
//! never half of one; `scan.json` is written last, so a scan directory without it
//! is an unfinished write and is not listed.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use scanfleet_common::{Asset, ProbeResult};
use serde::{Deserialize, Serialize};

use super::{FORMAT, Header, HistoryError, Observed, RecordFile, VERSION, check_version, unknown};
use crate::findings::ScanRecord;

/// A history directory.
#[derive(Debug)]
pub struct DirHistory {
    root: PathBuf,
    /// The observed index, read once per command when it is needed.
    observed: Option<HashMap<String, Observed>>,
    /// The scan's own first/last observed file, read in step with its findings.
    cursor: Option<(String, FileLines)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ObservedLine {
    id: String,
    first: u64,
    last: u64,
}

fn io(what: &Path, e: std::io::Error) -> HistoryError {
    HistoryError::Io(format!("{}: {e}", what.display()))
}

/// Write `path` atomically: `fill` writes into a temp file beside it, which is
/// synced and renamed over `path`.
fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), HistoryError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let res = (|| {
        let f = File::create(&tmp)?;
        let mut w = BufWriter::new(f);
        fill(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = fs::remove_file(&tmp);
        return Err(io(path, e));
    }
    Ok(())
}

fn json_line(w: &mut dyn Write, v: &impl Serialize) -> std::io::Result<()> {
    serde_json::to_writer(&mut *w, v)?;
    w.write_all(b"\n")
}

impl DirHistory {
    pub fn new(root: PathBuf) -> DirHistory {
        DirHistory {
            root,
            observed: None,
            cursor: None,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of a scan; the id was checked by the command (no `/`), and
    /// `.` and `..` are refused here.
    fn scan_dir(&self, scan_id: &str) -> Result<PathBuf, HistoryError> {
        if scan_id.is_empty() || scan_id == "." || scan_id == ".." || scan_id.contains(['/', '\\'])
        {
            return Err(unknown(
                scan_id,
                &format!("the history in {}", self.root.display()),
                "",
            ));
        }
        Ok(self.root.join("scans").join(scan_id))
    }

    fn observed_path(&self) -> PathBuf {
        self.root.join("observed.jsonl")
    }

    /// # Errors
    /// See [`super::History::record`].
    pub fn record(
        &self,
        record: &ScanRecord,
        assets: &[Asset],
        results: &[&ProbeResult],
        observed: &[String],
        at: u64,
    ) -> Result<(), HistoryError> {
        let dir = self.scan_dir(&record.scan_id)?;
        fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let lock_path = self.root.join(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io(&lock_path, e))?;
        lock.lock().map_err(|e| io(&lock_path, e))?;
        // A scan recorded again (same id) is replaced: its record goes first, so
        // that it is not listed while its files are rewritten.
        let record_path = dir.join("scan.json");
        if record_path.exists() {
            fs::remove_file(&record_path).map_err(|e| io(&record_path, e))?;
        }
        write_atomic(&dir.join("assets.jsonl"), |w| {
            json_line(w, &Header::new("assets"))?;
            assets.iter().try_for_each(|a| json_line(w, a))
        })?;
        write_atomic(&dir.join("results.jsonl"), |w| {
            json_line(w, &Header::new("results"))?;
            results.iter().try_for_each(|r| json_line(w, r))
        })?;
        let mut index = self.read_observed()?;
        for id in observed {
            let e = index.entry(id.clone()).or_insert((at, at));
            e.0 = e.0.min(at);
            e.1 = e.1.max(at);
        }
        let mut ids: Vec<&String> = index.keys().collect();
        ids.sort();
        write_atomic(&self.observed_path(), |w| {
            json_line(w, &Header::new("observed"))?;
            ids.iter().try_for_each(|id| {
                let (first, last) = index[*id];
                json_line(
                    w,
                    &ObservedLine {
                        id: (*id).clone(),
                        first,
                        last,
                    },
                )
            })
        })?;
        // The scan's own copy, in the order its findings are computed, so that
        // reading them back streams instead of loading the whole index.
        write_atomic(&dir.join("observed.jsonl"), |w| {
            json_line(w, &Header::new("observed"))?;
            observed.iter().try_for_each(|id| {
                let (first, last) = index[id];
                json_line(
                    w,
                    &ObservedLine {
                        id: id.clone(),
                        first,
                        last,
                    },
                )
            })
        })?;
        write_atomic(&record_path, |w| {
            serde_json::to_writer_pretty(
                &mut *w,
                &RecordFile {
                    format: FORMAT.into(),
                    version: VERSION,
                    record: record.clone(),
                },
            )?;
            w.write_all(b"\n")
        })?;
        drop(lock);
        Ok(())
    }

    fn read_observed(&self) -> Result<HashMap<String, Observed>, HistoryError> {
        let path = self.observed_path();
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
            Err(e) => return Err(io(&path, e)),
        };
        let mut lines = FileLines::new(f, path.clone(), "observed")?;
        let mut out = HashMap::new();
        while let Some(line) = lines.next_line()? {
            let o: ObservedLine = serde_json::from_str(&line).map_err(|e| lines.bad(&e))?;
            out.insert(o.id, (o.first, o.last));
        }
        Ok(out)
    }

    /// # Errors
    /// See [`super::History::observed`].
    pub fn observed(
        &mut self,
        scan_id: &str,
        ids: &[&str],
    ) -> Result<HashMap<String, Observed>, HistoryError> {
        if self.cursor.as_ref().is_none_or(|(s, _)| s != scan_id) {
            let path = self.scan_dir(scan_id)?.join("observed.jsonl");
            self.cursor = match File::open(&path) {
                Ok(f) => Some((scan_id.to_string(), FileLines::new(f, path, "observed")?)),
                Err(_) => None,
            };
        }
        if let Some((_, lines)) = self.cursor.as_mut() {
            let mut out = HashMap::new();
            let mut in_step = true;
            for id in ids {
                match lines.next_line()? {
                    Some(l) => {
                        let o: ObservedLine =
                            serde_json::from_str(&l).map_err(|e| lines.bad(&e))?;
                        if o.id != *id {
                            in_step = false;
                            break;
                        }
                        out.insert(o.id, (o.first, o.last));
                    }
                    None => {
                        in_step = false;
                        break;
                    }
                }
            }
            if in_step {
                return Ok(out);
            }
            // Out of step (the scan was recorded by another version): the index.
            self.cursor = Some((scan_id.to_string(), FileLines::empty()));
        }
        if self.observed.is_none() {
            self.observed = Some(self.read_observed()?);
        }
        let index = self.observed.as_ref().expect("just read");
        Ok(ids
            .iter()
            .filter_map(|id| index.get(*id).map(|o| ((*id).to_string(), *o)))
            .collect())
    }

    /// # Errors
    /// See [`super::History::list`].
    pub fn list(&self) -> Result<Vec<ScanRecord>, HistoryError> {
        let scans = self.root.join("scans");
        let entries = match fs::read_dir(&scans) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&scans, e)),
        };
        let mut out = Vec::new();
        for e in entries {
            let e = e.map_err(|e| io(&scans, e))?;
            let path = e.path().join("scan.json");
            if path.exists() {
                out.push(read_record(&path)?);
            }
        }
        out.sort_by(|a, b| (a.started_unix_ms, &a.scan_id).cmp(&(b.started_unix_ms, &b.scan_id)));
        Ok(out)
    }

    fn hint(&self) -> String {
        if self.root.join("scans").is_dir() {
            "; `scanfleet history` lists the scans it holds (a fleet scan's history is in its Redis: add --redis URL)".into()
        } else {
            " (it holds no scans yet; a fleet scan's history is in its Redis: add --redis URL)"
                .into()
        }
    }

    /// # Errors
    /// See [`super::History::record_of`].
    pub fn record_of(&self, scan_id: &str) -> Result<ScanRecord, HistoryError> {
        let path = self.scan_dir(scan_id)?.join("scan.json");
        if !path.exists() {
            return Err(unknown(
                scan_id,
                &format!("the history in {}", self.root.display()),
                &self.hint(),
            ));
        }
        read_record(&path)
    }

    /// # Errors
    /// See [`super::History::assets`].
    pub fn assets(&self, scan_id: &str) -> Result<Vec<Asset>, HistoryError> {
        self.record_of(scan_id)?;
        let path = self.scan_dir(scan_id)?.join("assets.jsonl");
        let f = File::open(&path).map_err(|e| io(&path, e))?;
        let mut lines = FileLines::new(f, path, "assets")?;
        let mut out = Vec::new();
        while let Some(line) = lines.next_line()? {
            out.push(serde_json::from_str(&line).map_err(|e| lines.bad(&e))?);
        }
        Ok(out)
    }

    /// # Errors
    /// See [`super::History::results`].
    pub fn result_lines(&self, scan_id: &str) -> Result<FileLines, HistoryError> {
        self.record_of(scan_id)?;
        let path = self.scan_dir(scan_id)?.join("results.jsonl");
        let f = File::open(&path).map_err(|e| io(&path, e))?;
        FileLines::new(f, path, "results")
    }
}

fn read_record(path: &Path) -> Result<ScanRecord, HistoryError> {
    let text = fs::read_to_string(path).map_err(|e| io(path, e))?;
    // The version is read first, so that a newer format says so instead of
    // failing on a field it does not know.
    #[derive(Deserialize)]
    struct Head {
        format: String,
        version: u32,
    }
    let what = path.display().to_string();
    let head: Head = serde_json::from_str(&text).map_err(|e| {
        HistoryError::Corrupt(format!("{what}: not a scanfleet history record: {e}"))
    })?;
    check_version(&head.format, head.version, &what)?;
    let r: RecordFile = serde_json::from_str(&text).map_err(|e| {
        HistoryError::Corrupt(format!("{what}: not a scanfleet history record: {e}"))
    })?;
    Ok(r.record)
}

/// The lines of a JSON-lines history file after its header.
#[derive(Debug)]
pub struct FileLines {
    reader: BufReader<File>,
    path: PathBuf,
    line_no: usize,
    buf: String,
}

impl FileLines {
    fn new(f: File, path: PathBuf, kind: &str) -> Result<FileLines, HistoryError> {
        let mut me = FileLines {
            reader: BufReader::with_capacity(1 << 16, f),
            path,
            line_no: 0,
            buf: String::new(),
        };
        let what = me.path.display().to_string();
        match me.next_line()? {
            None => Err(HistoryError::Corrupt(format!(
                "{what}: empty, expected a history header"
            ))),
            Some(h) => {
                Header::check(&h, kind, &what)?;
                Ok(me)
            }
        }
    }

    /// A reader that is at its end.
    fn empty() -> FileLines {
        FileLines {
            reader: BufReader::new(File::open("/dev/null").expect("/dev/null")),
            path: PathBuf::from("/dev/null"),
            line_no: 0,
            buf: String::new(),
        }
    }

    fn next_line(&mut self) -> Result<Option<String>, HistoryError> {
        self.buf.clear();
        let n = self
            .reader
            .read_line(&mut self.buf)
            .map_err(|e| io(&self.path, e))?;
        if n == 0 {
            return Ok(None);
        }
        self.line_no += 1;
        if !self.buf.ends_with('\n') {
            return Err(HistoryError::Corrupt(format!(
                "{} line {}: cut short (no newline at the end)",
                self.path.display(),
                self.line_no
            )));
        }
        Ok(Some(self.buf.trim_end().to_string()))
    }

    fn bad(&self, e: &serde_json::Error) -> HistoryError {
        HistoryError::Corrupt(format!(
            "{} line {}: {e}",
            self.path.display(),
            self.line_no
        ))
    }

    /// # Errors
    /// A line that is not a result, named by file and line.
    pub fn next_result(&mut self) -> Result<Option<ProbeResult>, HistoryError> {
        match self.next_line()? {
            None => Ok(None),
            Some(l) => serde_json::from_str(&l).map(Some).map_err(|e| self.bad(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scanfleet_common::{PortState, Protocol};

    fn record(id: &str, started: u64) -> ScanRecord {
        ScanRecord {
            scan_id: id.into(),
            started_unix_ms: started,
            finished_unix_ms: Some(started + 5),
            engine: "connect".into(),
            ports: "22,80".into(),
            udp_ports: String::new(),
            args: String::new(),
            targets: 1,
            skipped: vec![],
            notes: vec![],
        }
    }

    fn result(asset: &str, ip: &str, port: u16) -> ProbeResult {
        ProbeResult {
            scan_id: "s".into(),
            asset_id: asset.into(),
            ip: ip.parse().unwrap(),
            port,
            protocol: Protocol::Tcp,
            state: PortState::Open,
            reason: String::new(),
            service: None,
        }
    }

    #[tokio::test]
    async fn record_list_read_back_in_groups() {
        let dir = tempfile::tempdir().unwrap();
        let h = super::super::History::Dir(DirHistory::new(dir.path().join("state")));
        let rs = [
            result("b", "10.0.0.2", 80),
            result("a", "10.0.0.1", 22),
            result("a", "10.0.0.1", 80),
        ];
        let ordered = super::super::storage_order(&rs);
        let assets = [Asset::from_ip("10.0.0.1".parse().unwrap())];
        h.record(&record("s2", 200), &assets, &ordered, &["x".into()], 200)
            .await
            .unwrap();
        h.record(
            &record("s1", 100),
            &assets,
            &ordered,
            &["x".into(), "y".into()],
            100,
        )
        .await
        .unwrap();
        let list = h.list().await.unwrap();
        assert_eq!(
            list.iter().map(|r| r.scan_id.as_str()).collect::<Vec<_>>(),
            ["s1", "s2"]
        );
        assert_eq!(h.assets("s1").await.unwrap(), assets);
        let mut g = h.results("s1").await.unwrap();
        let first = g.next_group().await.unwrap().unwrap();
        assert_eq!(
            first
                .iter()
                .map(|r| (r.asset_id.as_str(), r.port))
                .collect::<Vec<_>>(),
            [("a", 22), ("a", 80)]
        );
        let second = g.next_group().await.unwrap().unwrap();
        assert_eq!(second.len(), 1);
        assert!(g.next_group().await.unwrap().is_none());
        let mut h = h;
        let o = h.observed("s2", &["x", "y", "z"]).await.unwrap();
        assert_eq!(o["x"], (100, 200));
        assert_eq!(o["y"], (100, 100));
        assert!(!o.contains_key("z"));
        // No temp files left behind.
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("state/scans/s1"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[tokio::test]
    async fn unknown_corrupt_and_other_versions_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let h = super::super::History::Dir(DirHistory::new(dir.path().to_path_buf()));
        let e = h.record_of("nope").await.unwrap_err();
        assert!(matches!(e, HistoryError::UnknownScan(_)));
        assert!(
            e.to_string()
                .contains("scan \"nope\" is not in the history in"),
            "{e}"
        );
        assert!(matches!(
            h.record_of("..").await.unwrap_err(),
            HistoryError::UnknownScan(_)
        ));
        h.record(&record("s1", 1), &[], &[], &[], 1).await.unwrap();
        let p = dir.path().join("scans/s1/scan.json");
        let text = fs::read_to_string(&p).unwrap();
        fs::write(&p, text.replace("\"version\": 1", "\"version\": 7")).unwrap();
        let e = h.record_of("s1").await.unwrap_err();
        assert!(matches!(e, HistoryError::Corrupt(_)));
        assert!(
            e.to_string().contains(
                "scan.json: history format version 7, this scanfleet reads version 1 only"
            ),
            "{e}"
        );
        fs::write(&p, "{not json").unwrap();
        let e = h.record_of("s1").await.unwrap_err().to_string();
        assert!(
            e.contains("scans/s1/scan.json: not a scanfleet history record"),
            "{e}"
        );
        fs::write(&p, text).unwrap();
        let r = dir.path().join("scans/s1/results.jsonl");
        fs::write(
            &r,
            "{\"format\":\"scanfleet-history\",\"version\":1,\"kind\":\"results\"}\n{\"x\":1}\n",
        )
        .unwrap();
        let mut g = h.results("s1").await.unwrap();
        let e = g.next_group().await.unwrap_err().to_string();
        assert!(e.contains("results.jsonl line 2:"), "{e}");
        fs::write(&r, "garbage\n").unwrap();
        let e = h.results("s1").await.err().unwrap().to_string();
        assert!(
            e.contains("results.jsonl: not a scanfleet history file"),
            "{e}"
        );
    }
}
