//! Shared by the integration tests: the namespace lab (`loadtest/lab.sh`) and its
//! ground truth. Every test that uses it needs root; `lab_ready` says why it
//! skips otherwise.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// Tests of one binary run in parallel threads under `cargo test`: lab users take turns.
pub static LAB: Mutex<()> = Mutex::new(());

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn lab_sh(args: &[&str]) -> Output {
    Command::new(repo().join("loadtest/lab.sh"))
        .args(args)
        .output()
        .expect("run loadtest/lab.sh")
}

unsafe extern "C" {
    fn geteuid() -> u32;
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { geteuid() == 0 }
}

/// Bring the lab up when it is not, or say why this test cannot run.
pub fn lab_ready() -> bool {
    if !is_root() {
        eprintln!("skipped: the lab needs root (network namespaces); CI runs as root");
        return false;
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(o) if String::from_utf8_lossy(&o.stdout).contains("sflab-scan") => true,
        Ok(_) => {
            let o = lab_sh(&["up", "6"]);
            assert!(
                o.status.success(),
                "lab.sh up 6 failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            true
        }
        Err(e) => {
            eprintln!("skipped: cannot run `ip netns` ({e})");
            false
        }
    }
}

/// The lab's ground truth.
pub struct Truth {
    /// (ip, port) -> service name the banner identifies, if any.
    pub open: BTreeMap<(String, u16), Option<String>>,
    /// Hosts whose instance type scope must skip.
    pub prohibited: BTreeSet<String>,
    /// The lab inventory, written to a file.
    pub inventory: PathBuf,
    pub _dir: tempfile::TempDir,
}

impl Truth {
    /// Open ports scope allows to be scanned.
    pub fn in_scope(&self) -> BTreeMap<(String, u16), Option<String>> {
        self.open
            .iter()
            .filter(|((ip, _), _)| !self.prohibited.contains(ip))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

pub fn truth() -> Truth {
    let dir = tempfile::tempdir().unwrap();
    let inv = lab_sh(&["inventory"]);
    assert!(inv.status.success());
    let inventory = dir.path().join("lab-inventory.json");
    std::fs::write(&inventory, &inv.stdout).unwrap();
    let assets: Vec<serde_json::Value> = serde_json::from_slice(&inv.stdout).unwrap();
    let prohibited = assets
        .iter()
        .filter(|a| {
            ["t2.nano", "t1.micro", "m1.small"].contains(&a["instance_type"].as_str().unwrap_or(""))
        })
        .map(|a| a["private_ip"].as_str().unwrap().to_string())
        .collect();
    let t = lab_sh(&["truth"]);
    assert!(t.status.success());
    let open = String::from_utf8_lossy(&t.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                (
                    v["ip"].as_str().unwrap().to_string(),
                    v["port"].as_u64().unwrap() as u16,
                ),
                v["service"].as_str().map(str::to_string),
            )
        })
        .collect();
    Truth {
        open,
        prohibited,
        inventory,
        _dir: dir,
    }
}

/// Parse JSON-lines results into (ip, port) -> service name, failing on duplicates.
pub fn parse_open(stdout: &[u8]) -> BTreeMap<(String, u16), Option<String>> {
    let mut got = BTreeMap::new();
    for line in String::from_utf8_lossy(stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("jsonl");
        assert_eq!(v["state"], "open");
        let key = (
            v["ip"].as_str().unwrap().to_string(),
            v["port"].as_u64().unwrap() as u16,
        );
        let svc = v["service"]["name"].as_str().map(str::to_string);
        assert!(
            got.insert(key.clone(), svc).is_none(),
            "{key:?} reported twice"
        );
    }
    got
}

/// Packets lab host `i` received from the scanner (optionally resetting the counter).
pub fn packets(host: usize, reset: bool) -> u64 {
    let h = host.to_string();
    let o = if reset {
        lab_sh(&["packets", &h, "--reset"])
    } else {
        lab_sh(&["packets", &h])
    };
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------
// Fleet fixtures: services of a test's own, relays into the scanner namespace,
// metrics scraped from processes in it. (Appended for `fleet_failures.rs`.)

/// A TCP port nothing listens on now on the host's loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until something accepts TCP on the host's 127.0.0.1:`port`.
pub fn wait_listening(port: u16, within: std::time::Duration) -> bool {
    let until = std::time::Instant::now() + within;
    while std::time::Instant::now() < until {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

/// `lab.sh relay PORT` for a service the test started itself, stopped on drop
/// (the relays of the shared 5672 and 6379 stay up for every test).
pub struct Relay(pub u16);

impl Relay {
    pub fn new(port: u16) -> Relay {
        let o = lab_sh(&["relay", &port.to_string()]);
        assert!(
            o.status.success(),
            "lab.sh relay {port}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Relay(port)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = lab_sh(&["relay-stop", &self.0.to_string()]);
    }
}

/// The Prometheus text of a process in the scanner namespace serving `/metrics`
/// on 127.0.0.1:`port` there; empty when it does not answer.
pub fn scrape_scan_ns(port: u16) -> String {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            "sflab-scan",
            "curl",
            "-s",
            "--max-time",
            "5",
        ])
        .arg(format!("http://127.0.0.1:{port}/metrics"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Sum of the samples of metric `name` (exact name, so `_sum`/`_count` are other
/// metrics) whose labels include every `labels` pair.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, lbl) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let wanted = n == name
                && labels
                    .iter()
                    .all(|(k, v)| lbl.split(',').any(|p| p == format!("{k}=\"{v}\"")));
            if wanted {
                value.parse::<f64>().ok()
            } else {
                None
            }
        })
        .sum()
}

/// moto's server on a free port of the host (relay it into the scanner namespace
/// for workers there); killed on drop.
pub struct Moto {
    child: std::process::Child,
    pub port: u16,
}

impl Moto {
    /// `None` (and a note) when moto_server is not installed.
    pub fn start() -> Option<Moto> {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let Ok(child) = child else {
            eprintln!("skipped: moto_server not installed (scripts/setup.sh installs it)");
            return None;
        };
        let moto = Moto { child, port };
        assert!(
            wait_listening(port, std::time::Duration::from_secs(30)),
            "moto_server did not start"
        );
        Some(moto)
    }

    /// Environment for AWS SDK clients (coordinator and workers) to use this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A RabbitMQ node of the test's own (`rabbitmq-server -detached`) on a spare port
/// with the distribution port 20000 above it, its data in a temporary directory
/// owned by the rabbitmq user. Stopped and removed on drop.
pub struct PrivateRabbit {
    pub node: String,
    pub port: u16,
    dir: PathBuf,
}

impl PrivateRabbit {
    pub fn new() -> PrivateRabbit {
        let port = (0..100)
            .map(|_| free_port())
            .find(|p| *p < 45000 && std::net::TcpListener::bind(("127.0.0.1", p + 20000)).is_ok())
            .expect("no spare port pair for a private RabbitMQ node");
        let node = format!("sftest{}-{port}@localhost", std::process::id());
        let dir = std::env::temp_dir().join(format!("sftest-rabbit-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("mnesia")).unwrap();
        std::fs::create_dir_all(dir.join("log")).unwrap();
        std::fs::write(dir.join("enabled_plugins"), "[].\n").unwrap();
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!("listeners.tcp.local = 127.0.0.1:{port}\n"),
        )
        .unwrap();
        let ok = Command::new("chown")
            .arg("-R")
            .arg("rabbitmq:rabbitmq")
            .arg(&dir)
            .status()
            .unwrap();
        assert!(
            ok.success(),
            "chown to the rabbitmq user (tests run as root)"
        );
        PrivateRabbit { node, port, dir }
    }

    /// The default vhost of this node, as seen from the host and, through a relay
    /// of `port`, from the scanner namespace.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Boot the node and wait until it accepts connections (6 to 13 s here).
    pub fn start(&self) {
        let d = |p: &str| self.dir.join(p);
        let status = Command::new("rabbitmq-server")
            .arg("-detached")
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env(
                "RABBITMQ_DIST_PORT",
                (u32::from(self.port) + 20000).to_string(),
            )
            .env("RABBITMQ_MNESIA_BASE", d("mnesia"))
            .env("RABBITMQ_LOG_BASE", d("log"))
            .env("RABBITMQ_FEATURE_FLAGS_FILE", d("feature_flags"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", d("rabbitmq.conf"))
            .stdout(std::process::Stdio::null())
            .status()
            .expect("rabbitmq-server");
        assert!(status.success(), "rabbitmq-server -detached failed");
        assert!(
            wait_listening(self.port, std::time::Duration::from_secs(60)),
            "private RabbitMQ node {} did not boot",
            self.node
        );
    }

    /// A clean stop of the node (connections are closed by the broker).
    pub fn stop(&self) {
        let _ = Command::new("rabbitmqctl")
            .args(["-n", &self.node, "stop"])
            .output();
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A redis-server of the test's own on a spare port, daemonized, with AOF and
/// `appendfsync always`: a write it acknowledged survives `kill -9`, so a restart
/// loses nothing (what production gets from AOF or replicas). Killed and removed on drop.
pub struct PrivateRedis {
    pub port: u16,
    dir: PathBuf,
}

impl PrivateRedis {
    pub fn new() -> PrivateRedis {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("sftest-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        PrivateRedis { port, dir }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn pidfile(&self) -> PathBuf {
        self.dir.join("redis.pid")
    }

    pub fn start(&self) {
        let status = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--daemonize",
                "yes",
            ])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--pidfile")
            .arg(self.pidfile())
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .status()
            .expect("redis-server");
        assert!(status.success(), "redis-server failed to start");
        assert!(
            wait_listening(self.port, std::time::Duration::from_secs(20)),
            "private redis did not start"
        );
    }

    /// SIGKILL: a crash, not a clean shutdown. Returns once the port is closed.
    pub fn kill(&self) {
        let Ok(pid) = std::fs::read_to_string(self.pidfile()) else {
            return;
        };
        let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && std::time::Instant::now() < until
        {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = std::fs::remove_file(self.pidfile());
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A RabbitMQ vhost of its own on the shared broker (127.0.0.1:5672), so that queue
/// names never collide between tests; deleted, with its queues, on drop.
pub struct Vhost(pub String);

impl Vhost {
    pub fn new(tag: &str) -> Vhost {
        let name = format!("sftest-{}-{tag}", std::process::id());
        let ok = |args: &[&str]| {
            let o = Command::new("rabbitmqctl")
                .args(args)
                .output()
                .expect("rabbitmqctl");
            assert!(
                o.status.success(),
                "rabbitmqctl {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        ok(&["add_vhost", &name]);
        ok(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        Vhost(name)
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.0)
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.0])
            .output();
    }
}

/// The `scanfleet-worker` binary next to the `scanfleet` binary under test.
pub fn worker_bin() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_BIN_EXE_scanfleet")).with_file_name("scanfleet-worker");
    assert!(
        p.exists(),
        "{} missing: run `cargo build --workspace` first",
        p.display()
    );
    p
}

/// Relay a host service's port into the scanner namespace (`lab.sh relay`); left
/// up, as every fleet test uses the shared ones.
pub fn relay(port: u16) {
    let o = lab_sh(&["relay", &port.to_string()]);
    assert!(
        o.status.success(),
        "lab.sh relay {port}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}
