//! monitoring/: Prometheus' config and alert rules checked by Debian's `promtool`
//! (config, rules, rule unit tests), the Grafana dashboard and the rules held against
//! the metrics scanfleet exports, and a real Prometheus scraping a real coordinator
//! and three real workers during a scan of a listener of the test's own.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn monitoring() -> PathBuf {
    repo().join("monitoring")
}

fn promtool(args: &[&str]) -> Output {
    Command::new("promtool")
        .current_dir(monitoring())
        .args(args)
        .output()
        .expect("run promtool (Debian package prometheus)")
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rule_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(monitoring().join("rules"))
        .expect("monitoring/rules")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no rule files");
    v
}

fn dashboard() -> Value {
    let text = std::fs::read_to_string(monitoring().join("grafana/dashboards/scanfleet.json"))
        .expect("dashboard json");
    serde_json::from_str(&text).expect("dashboard is JSON")
}

/// Every query of the dashboard: (panel title, expr).
fn dashboard_queries(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        let title = p["title"].as_str().unwrap_or_default().to_string();
        for t in p["targets"].as_array().into_iter().flatten() {
            let e = t["expr"].as_str().expect("expr").to_string();
            out.push((title.clone(), e));
        }
    }
    out
}

/// The `expr:` values of the rule files, by alert name (block scalars included).
fn alert_exprs(file: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(file).expect("rule file");
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut alert = String::new();
    while i < lines.len() {
        let t = lines[i].trim_start();
        if let Some(a) = t.strip_prefix("- alert: ") {
            alert = a.trim().to_string();
        } else if let Some(e) = t.strip_prefix("expr: ") {
            let e = e.trim();
            if e == "|" {
                let indent = lines[i + 1].len() - lines[i + 1].trim_start().len();
                let mut body = Vec::new();
                while i + 1 < lines.len()
                    && (lines[i + 1].trim().is_empty()
                        || lines[i + 1].len() - lines[i + 1].trim_start().len() >= indent)
                {
                    i += 1;
                    body.push(lines[i].trim());
                }
                out.push((alert.clone(), body.join("\n").trim().to_string()));
            } else {
                out.push((alert.clone(), e.to_string()));
            }
        }
        i += 1;
    }
    out
}

/// Metric names a PromQL expression uses that start with `prefix`.
fn metric_names(expr: &str, prefix: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find(prefix) {
        let start = i + pos;
        let boundary = start == 0 || {
            let c = bytes[start - 1];
            !(c.is_ascii_alphanumeric() || c == b'_')
        };
        let end = expr[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(expr.len(), |n| start + n);
        if boundary {
            names.insert(expr[start..end].to_string());
        }
        i = end;
    }
    names
}

fn known_scanfleet_metrics() -> BTreeSet<String> {
    use scanfleet_common::metrics as m;
    let mut s: BTreeSet<String> = m::ALL.iter().map(|n| n.to_string()).collect();
    s.insert(m::SCAN_SHARDS.to_string());
    s.insert(m::SCAN_RESULTS.to_string());
    for suffix in ["_bucket", "_sum", "_count"] {
        s.insert(format!("{}{suffix}", m::JOB_DURATION_SECONDS));
    }
    s
}

#[test]
fn promtool_checks_config_and_rules() {
    assert_ok(
        &promtool(&["check", "config", "prometheus.yml"]),
        "promtool check config",
    );
    let files: Vec<String> = rule_files()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut args = vec!["check", "rules"];
    args.extend(files.iter().map(String::as_str));
    assert_ok(&promtool(&args), "promtool check rules");
}

#[test]
fn promtool_rule_unit_tests_pass() {
    let out = promtool(&["test", "rules", "tests/scanfleet_test.yml"]);
    assert_ok(&out, "promtool test rules");
    // Every alert has at least one unit test that expects it to fire.
    let tests =
        std::fs::read_to_string(monitoring().join("tests/scanfleet_test.yml")).expect("rule tests");
    for f in rule_files() {
        for (alert, _) in alert_exprs(&f) {
            assert!(
                tests.contains(&format!("alertname: {alert}")),
                "{alert} has no unit test"
            );
        }
    }
}

#[test]
fn dashboard_is_provisioned_and_uses_only_metrics_that_exist() {
    let d = dashboard();
    assert_eq!(d["uid"], "scanfleet");
    assert!(
        d.get("id").is_none(),
        "a provisioned dashboard has no \"id\""
    );
    let ds = std::fs::read_to_string(
        monitoring().join("grafana/provisioning/datasources/prometheus.yml"),
    )
    .expect("datasource provisioning");
    assert!(ds.contains("uid: scanfleet-prometheus") && ds.contains("http://prometheus:9090"));
    let provider =
        std::fs::read_to_string(monitoring().join("grafana/provisioning/dashboards/scanfleet.yml"))
            .expect("dashboard provider");
    assert!(provider.contains("path: /var/lib/grafana/dashboards"));
    let known = known_scanfleet_metrics();
    let mut titles = BTreeSet::new();
    for p in d["panels"].as_array().expect("panels") {
        titles.insert(p["title"].as_str().unwrap_or_default().to_string());
        assert_eq!(
            p["datasource"]["uid"], "scanfleet-prometheus",
            "panel {}",
            p["title"]
        );
    }
    for (title, expr) in dashboard_queries(&d) {
        for name in metric_names(&expr, "scanfleet_") {
            assert!(known.contains(&name), "{title}: {name} is not exported");
        }
    }
    for want in [
        "Queue depth per zone",
        "Queue backlog age per zone",
        "Shards/s by outcome",
        "Probes/s by engine",
        "Results/s",
        "Errors/s by stage and kind",
        "Dead-letter queue depth",
        "Job duration p50 / p99",
        "Live workers",
        "Scan progress",
    ] {
        assert!(titles.contains(want), "panel {want:?} missing: {titles:?}");
    }
    for f in rule_files() {
        for (alert, expr) in alert_exprs(&f) {
            for name in metric_names(&expr, "scanfleet_") {
                assert!(known.contains(&name), "{alert}: {name} is not exported");
            }
        }
    }
    // What is left out is said in monitoring/README.md.
    let readme = std::fs::read_to_string(monitoring().join("README.md")).expect("README");
    assert!(readme.contains("ENA allowance") && readme.contains("Findings by severity"));
}

// ---------------------------------------------------------------------------
// A real Prometheus against a real fleet.

use scanfleet_testkit::wait_until;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use scanfleet_testkit::{Vhost, free_port, redis_url, wait_listening};

const SECRET: &str = "ops-prometheus-secret-0123456789abcdef01234";
const WRONG_SECRET: &str = "ops-prometheus-not-the-fleet-secret-9876543210";
/// Loopback addresses the scan covers: 127.0.0.1-ADDRS, each with a listener of ours.
const ADDRS: u8 = 6;

/// A child process killed (and reaped) on drop.
struct Proc(Child, &'static str);

impl Proc {
    /// SIGTERM, then wait at most `limit` for the exit code.
    fn terminate(&mut self, limit: Duration) -> Option<i32> {
        scanfleet_testkit::terminate(&mut self.0, limit)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn scanfleet_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_scanfleet"))
}

fn worker_bin() -> PathBuf {
    let p = scanfleet_bin().with_file_name("scanfleet-worker");
    assert!(
        p.exists(),
        "{} missing: run `cargo build --workspace` first",
        p.display()
    );
    p
}

/// A port free on 127.0.0.1 to 127.0.0.ADDRS, with a listener on each that sends a
/// nothing and holds each connection for 10 s; the listeners live as long as the
/// test process.
fn listeners() -> u16 {
    for _ in 0..50 {
        let port = free_port();
        let bound: Result<Vec<TcpListener>, _> = (1..=ADDRS)
            .map(|i| TcpListener::bind((std::net::Ipv4Addr::new(127, 0, 0, i), port)))
            .collect();
        let Ok(bound) = bound else { continue };
        for l in bound {
            std::thread::spawn(move || {
                // Silent and held open: service detection waits out its budget
                // (seconds per port), so the scan lasts long enough to be scraped.
                for s in l.incoming().flatten() {
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_secs(10));
                        drop(s);
                    });
                }
            });
        }
        return port;
    }
    panic!("no port free on 127.0.0.1-{ADDRS}");
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// GET `path` from 127.0.0.1:`port` (HTTP/1.0, so the body is not chunked): status, body.
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// A Prometheus API call; panics unless it answers JSON.
fn api(port: u16, path: &str) -> Value {
    let (status, body) = http_get(port, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {status} {e}: {body}"))
}

fn query(port: u16, expr: &str) -> Value {
    api(port, &format!("/api/v1/query?query={}", encode(expr)))
}

/// The rule file with only `ScanfleetNoLiveWorkers`' `for:` shortened to 2s.
fn rules_for_test(src: &Path) -> String {
    let text = std::fs::read_to_string(src).expect("rules");
    let mut out = Vec::new();
    let mut in_alert = false;
    let mut replaced = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("- alert: ") {
            in_alert = t == "- alert: ScanfleetNoLiveWorkers";
        }
        if in_alert && t.starts_with("for: ") && !replaced {
            let indent = &line[..line.len() - t.len()];
            out.push(format!("{indent}for: 2s"));
            replaced = true;
            continue;
        }
        out.push(line.to_string());
    }
    assert!(replaced, "ScanfleetNoLiveWorkers has a for:");
    out.join("\n") + "\n"
}

fn spawn_worker(queue: &str, metrics: u16) -> Proc {
    let child = Command::new(worker_bin())
        .args(["--queue", queue, "--redis", &redis_url()])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics}")])
        .args(["--lease-secs", "10", "--grace-secs", "5"])
        .env("SCANFLEET_JOB_SECRET", SECRET)
        .env("SCANFLEET_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn scanfleet-worker");
    Proc(child, "worker")
}

fn scan_cmd(queue: &str, port: u16, secret: &str) -> Command {
    let mut cmd = Command::new(scanfleet_bin());
    cmd.args(["scan", "-t", &format!("127.0.0.1-{ADDRS}")])
        .args(["-p", &port.to_string(), "--no-ping", "--mode", "connect"])
        .args(["--queue", queue, "--redis", &redis_url()])
        .args([
            "--shard-size",
            "1",
            "--format",
            "jsonl",
            "--progress",
            "never",
        ])
        .env("SCANFLEET_JOB_SECRET", secret)
        .env("SCANFLEET_LOG", "warn");
    cmd
}

#[test]
fn real_prometheus_scrapes_the_fleet_evaluates_the_dashboard_and_alerts() {
    let started = Instant::now();
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
        - 1.0;
    let target_port = listeners();
    let vhost = Vhost::new("prom");
    let queue = vhost.url();
    let init = Command::new(scanfleet_bin())
        .args(["queues", "init", "--queue", &queue])
        .env("SCANFLEET_JOB_SECRET", SECRET)
        .output()
        .expect("scanfleet queues init");
    assert_ok(&init, "scanfleet queues init");

    let worker_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut workers: Vec<Proc> = worker_ports
        .iter()
        .map(|p| spawn_worker(&queue, *p))
        .collect();
    for p in &worker_ports {
        assert!(
            wait_listening(*p, Duration::from_secs(20)),
            "worker metrics on {p}"
        );
    }
    let coord_port = free_port();

    // Prometheus: 1 s scrapes and evaluations, the shipped rules (one `for:` shortened).
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("scanfleet.yml");
    std::fs::write(
        &rules,
        rules_for_test(&monitoring().join("rules/scanfleet.yml")),
    )
    .expect("write rules");
    let targets = |ports: &[u16]| {
        ports
            .iter()
            .map(|p| format!("\"127.0.0.1:{p}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {}\n\
         scrape_configs:\n\
         \x20 - job_name: scanfleet-worker\n    static_configs:\n      - targets: [{}]\n\
         \x20 - job_name: scanfleet-coordinator\n    static_configs:\n      - targets: [{}]\n",
        rules.display(),
        targets(&worker_ports),
        targets(&[coord_port]),
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, &config).expect("write prometheus.yml");
    // The generated config names the same jobs as the shipped one.
    let shipped = std::fs::read_to_string(monitoring().join("prometheus.yml")).expect("shipped");
    for job in ["scanfleet-worker", "scanfleet-coordinator"] {
        assert!(shipped.contains(&format!("job_name: {job}")), "{job}");
    }
    assert_ok(
        &promtool(&["check", "config", &config_path.display().to_string()]),
        "generated config",
    );
    let prom_port = free_port();
    let _prometheus = Proc(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run prometheus (Debian package prometheus)"),
        "prometheus",
    );
    assert!(
        wait_until(Duration::from_secs(30), || {
            http_get(prom_port, "/-/ready").is_ok_and(|(s, _)| s == 200)
        }),
        "prometheus not ready within 30 s"
    );
    assert!(
        wait_until(Duration::from_secs(20), || {
            query(prom_port, "count(up{job=\"scanfleet-worker\"} == 1)")["data"]["result"][0]["value"]
                [1]
                == "3"
        }),
        "three workers not scraped within 20 s"
    );

    // A shard signed with another key: the workers dead-letter it (errors, dead letters).
    let forged = scan_cmd(&queue, target_port, WRONG_SECRET)
        .arg("--detach")
        .output()
        .expect("forged scan");
    assert_ok(&forged, "forged --detach scan");

    // The real scan, with the coordinator's metrics; it exits when every shard settled.
    let mut scan = scan_cmd(&queue, target_port, SECRET);
    scan.args(["--metrics-addr", &format!("127.0.0.1:{coord_port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = scan.spawn().expect("spawn scanfleet scan");
    let mut scan = Proc(child, "scan");
    let mut coordinator_seen = false;
    wait_until(Duration::from_secs(30), || {
        coordinator_seen =
            query(prom_port, "scanfleet_scan_shards{state=\"done\"} > 0")["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty());
        coordinator_seen || scan.0.try_wait().is_ok_and(|s| s.is_some())
    });
    let until = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = scan.0.try_wait().expect("try_wait") {
            break s;
        }
        assert!(Instant::now() < until, "scan did not finish within 60 s");
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut o) = scan.0.stdout.take() {
        let _ = o.read_to_string(&mut stdout);
    }
    if let Some(mut e) = scan.0.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(status.success(), "scan failed: {stderr}");
    assert!(
        coordinator_seen,
        "coordinator gauges never scraped: {stderr}"
    );
    let open: BTreeSet<String> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["port"] == target_port && v["state"] == "open")
        .filter_map(|v| v["ip"].as_str().map(str::to_string))
        .collect();
    let want: BTreeSet<String> = (1..=ADDRS).map(|i| format!("127.0.0.{i}")).collect();
    assert_eq!(open, want, "open ports of our listeners; stderr: {stderr}");
    // Let the rate windows see the last scrapes of the scan.
    std::thread::sleep(Duration::from_secs(4));

    // Every dashboard query returns data over the test's window (RabbitMQ's are not
    // scraped here: they must parse), every alert expression parses.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let mut empty = Vec::new();
    for (title, expr) in dashboard_queries(&dashboard()) {
        let e = expr.replace("$__rate_interval", "15s");
        let r = api(
            prom_port,
            &format!(
                "/api/v1/query_range?query={}&start={t0:.3}&end={now:.3}&step=1",
                encode(&e)
            ),
        );
        assert_eq!(r["status"], "success", "{title}: {e}: {r}");
        let rows = r["data"]["result"].as_array().map_or(0, Vec::len);
        if rows == 0 && !e.contains("rabbitmq_") {
            empty.push(format!("{title}: {e}"));
        }
    }
    assert!(empty.is_empty(), "queries without data: {empty:#?}");
    for f in rule_files() {
        for (alert, expr) in alert_exprs(&f) {
            let r = query(prom_port, &expr);
            assert_eq!(r["status"], "success", "{alert}: {expr}: {r}");
        }
    }
    let rules_api = api(prom_port, "/api/v1/rules");
    let loaded: Vec<&Value> = rules_api["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    let shipped_alerts: usize = rule_files().iter().map(|f| alert_exprs(f).len()).sum();
    assert_eq!(loaded.len(), shipped_alerts, "rules loaded: {rules_api}");
    for r in &loaded {
        assert_ne!(r["health"], "err", "rule {}: {}", r["name"], r["lastError"]);
    }
    let firing = |name: &str| {
        query(
            prom_port,
            &format!("ALERTS{{alertname=\"{name}\", alertstate=\"firing\"}}"),
        )["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    };
    assert!(
        !firing("ScanfleetNoLiveWorkers"),
        "fires while workers live"
    );
    assert!(
        wait_until(Duration::from_secs(15), || firing(
            "ScanfleetJobsDeadLettered"
        )),
        "the forged shard's dead letter did not fire ScanfleetJobsDeadLettered"
    );

    // Stop the workers: the alert fires.
    for w in &mut workers {
        assert_eq!(
            w.terminate(Duration::from_secs(20)),
            Some(0),
            "{} exits 0 on SIGTERM",
            w.1
        );
    }
    assert!(
        wait_until(Duration::from_secs(30), || firing("ScanfleetNoLiveWorkers")),
        "ScanfleetNoLiveWorkers did not fire within 30 s of the workers stopping"
    );
    let alerts = api(prom_port, "/api/v1/alerts");
    assert!(
        alerts.to_string().contains("ScanfleetNoLiveWorkers"),
        "{alerts}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(150),
        "took {:?}",
        started.elapsed()
    );
}
