//! docker-compose.yml and the Dockerfile, without a container engine: Debian's
//! `docker-compose config` validates and resolves the file, `/usr/bin/python3`'s
//! yaml module (a dependency of Debian's docker-compose) turns the result into JSON,
//! and the checks below hold it against the repository and the binaries under test:
//! mounted files exist, named volumes are declared, published ports do not collide,
//! every scanfleet flag and `SCANFLEET_*` variable is one the binaries accept (each
//! scanfleet service's command is run with its environment, its URLs pointed at a
//! closed loopback port: settings must pass, exit 2, and the connection fail, exit 1),
//! NET_RAW is granted to the worker alone, and Prometheus' targets are compose services.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const SECRET: &str = "compose-test-secret-0123456789abcdef0123456789";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
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

/// `docker-compose config` of the repository's file, with `env` on top of a clean
/// environment (PATH only), so that the user's own variables change nothing.
fn compose_config(env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("docker-compose");
    cmd.current_dir(repo())
        .args(["-f", "docker-compose.yml", "config"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
        .expect("run docker-compose (Debian package docker-compose)")
}

/// YAML text to JSON through Debian's python3 and its yaml module.
fn yaml_to_json(yaml: &[u8]) -> Value {
    let mut child = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run /usr/bin/python3 (python3-yaml comes with docker-compose)");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(yaml).expect("write yaml");
    }
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "yaml -> json: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json from python3")
}

fn resolved() -> Value {
    let out = compose_config(&[("SCANFLEET_JOB_SECRET", SECRET)]);
    assert!(
        out.status.success(),
        "docker-compose config failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    yaml_to_json(&out.stdout)
}

fn services(doc: &Value) -> &serde_json::Map<String, Value> {
    doc["services"].as_object().expect("services")
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a
            .iter()
            .map(|x| match x {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn env_of(svc: &Value) -> BTreeMap<String, String> {
    match &svc["environment"] {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect(),
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str())
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.to_string(), String::new()),
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// Services built from (or running the image of) this repository's Dockerfile.
fn scanfleet_services(doc: &Value) -> Vec<(String, Value)> {
    services(doc)
        .iter()
        .filter(|(_, s)| {
            s["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("scanfleet:"))
                || s.get("build").is_some()
        })
        .map(|(n, s)| (n.clone(), s.clone()))
        .collect()
}

#[test]
fn compose_file_is_valid_and_requires_a_job_secret() {
    let doc = resolved();
    let names: BTreeSet<&str> = services(&doc).keys().map(String::as_str).collect();
    for want in [
        "rabbitmq",
        "redis",
        "moto",
        "worker",
        "watch",
        "scan",
        "prometheus",
        "grafana",
        "target-web",
        "target-ssh",
        "target-redis",
    ] {
        assert!(names.contains(want), "service {want} missing: {names:?}");
    }
    let missing = compose_config(&[]);
    assert!(
        !missing.status.success(),
        "config must fail without SCANFLEET_JOB_SECRET"
    );
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("SCANFLEET_JOB_SECRET") && err.contains("32 bytes"),
        "{err}"
    );
    assert!(
        SECRET.len() >= 32,
        "the test's own secret must be a valid one"
    );
    // The one-shot scan is under a profile; the long-running coordinator is not.
    let svcs = services(&doc);
    assert_eq!(strings(&svcs["scan"]["profiles"]), vec!["scan".to_string()]);
    assert!(svcs["watch"].get("profiles").is_none());
    // Redis keeps an append-only file on a volume.
    let redis_cmd = strings(&svcs["redis"]["command"]).join(" ");
    assert!(redis_cmd.contains("--appendonly yes"), "{redis_cmd}");
    // RabbitMQ gets its management and prometheus plugins from the mounted file.
    let plugins = std::fs::read_to_string(repo().join("compose/rabbitmq/enabled_plugins"))
        .expect("compose/rabbitmq/enabled_plugins");
    assert!(
        plugins.contains("rabbitmq_management") && plugins.contains("rabbitmq_prometheus"),
        "{plugins}"
    );
}

#[test]
fn mounted_files_exist_and_volumes_are_declared() {
    let doc = resolved();
    let root = repo();
    let declared: BTreeSet<String> = doc["volumes"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let mut binds = 0;
    for (name, svc) in services(&doc) {
        if let Some(ctx) = svc["build"]["context"].as_str() {
            let ctx = Path::new(ctx);
            assert!(ctx.is_dir(), "{name}: build context {}", ctx.display());
            let file = svc["build"]["dockerfile"].as_str().unwrap_or("Dockerfile");
            assert!(ctx.join(file).is_file(), "{name}: {file} missing");
        }
        for v in strings(&svc["volumes"]) {
            let src = v.split(':').next().unwrap_or_default();
            if src.starts_with('/') {
                let p = Path::new(src);
                assert!(
                    p.starts_with(&root),
                    "{name}: bind mount {src} is outside the repository"
                );
                assert!(p.exists(), "{name}: bind mount {src} does not exist");
                binds += 1;
            } else {
                assert!(
                    declared.contains(src),
                    "{name}: volume {src} is not declared at the top level"
                );
            }
        }
    }
    assert!(binds >= 5, "expected the monitoring and init files mounted");
    // The Dockerfile: multi-stage, the lock file, both binaries, a non-root user.
    let df = std::fs::read_to_string(root.join("Dockerfile")).expect("Dockerfile");
    assert!(df.contains("FROM rust:1.95"), "builder is rust:1.95");
    assert!(df.contains("cargo build --release --locked"), "--locked");
    assert!(
        df.matches("\nFROM ").count() >= 1 && df.contains("debian:"),
        "slim runtime"
    );
    assert!(
        df.contains("target/release/scanfleet ") && df.contains("target/release/scanfleet-worker"),
        "both binaries"
    );
    let user = df
        .lines()
        .rfind(|l| l.starts_with("USER "))
        .expect("a USER line");
    assert!(!user.contains("root") && !user.contains(" 0"), "{user}");
    for dir in ["common", "coordinator", "worker", "testkit", "data"] {
        assert!(df.contains(&format!("COPY {dir} {dir}")), "COPY {dir}");
        assert!(root.join(dir).is_dir(), "{dir}");
    }
    // Every workspace member is in the build context (cargo needs them all for --locked).
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let members = manifest
        .split_once("members = [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .expect("workspace members");
    for m in members.split(',').map(|m| m.trim().trim_matches('"')) {
        if !m.is_empty() {
            assert!(
                df.contains(&format!("COPY {m} {m}")),
                "member {m} not copied"
            );
        }
    }
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).expect(".dockerignore");
    assert!(
        ignore.lines().any(|l| l.trim() == "target/"),
        "target/ ignored"
    );
}

#[test]
fn published_ports_do_not_collide_and_net_raw_is_the_workers_alone() {
    let doc = resolved();
    let mut seen: BTreeMap<(String, String, String), String> = BTreeMap::new();
    for (name, svc) in services(&doc) {
        for p in strings(&svc["ports"]) {
            // ip:host:container[/proto], as docker-compose config prints it.
            let (spec, proto) = p.split_once('/').unwrap_or((&p, "tcp"));
            let parts: Vec<&str> = spec.split(':').collect();
            assert_eq!(parts.len(), 3, "{name}: publish {p} on an explicit address");
            assert_eq!(
                parts[0], "127.0.0.1",
                "{name}: {p} published beyond loopback"
            );
            let key = (
                parts[0].to_string(),
                parts[1].to_string(),
                proto.to_string(),
            );
            if let Some(other) = seen.insert(key, name.clone()) {
                panic!("{name} and {other} both publish {p}");
            }
        }
        let caps = strings(&svc["cap_add"]);
        if name == "worker" {
            assert_eq!(caps, vec!["NET_RAW".to_string()], "worker cap_add");
            assert_eq!(strings(&svc["cap_drop"]), vec!["ALL".to_string()]);
        } else {
            assert!(
                caps.is_empty(),
                "{name} must not add capabilities: {caps:?}"
            );
        }
    }
    assert!(
        seen.len() >= 3,
        "Grafana, Prometheus and RabbitMQ published"
    );
    // Workers and targets live on internal networks only: probes cannot leave the host.
    let nets = doc["networks"].as_object().expect("networks");
    for svc in ["worker", "target-web", "target-ssh", "target-redis"] {
        let attached = services(&doc)[svc]["networks"]
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        assert!(!attached.is_empty(), "{svc} has no network");
        for n in attached {
            assert_eq!(
                nets[&n]["internal"],
                Value::Bool(true),
                "{svc} is on {n}, which is not internal"
            );
        }
    }
}

/// `-x`/`--long` flags of a `--help` text.
fn help_flags(bin: &Path, sub: &[&str]) -> BTreeSet<String> {
    let out = Command::new(bin)
        .args(sub)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success(), "{} {sub:?} --help", bin.display());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
        .filter(|w| w.starts_with('-') && w.len() > 1 && !w.starts_with("---"))
        .map(|w| w.split('=').next().unwrap_or(w).to_string())
        .collect()
}

/// `scheme://[user@]host:port/rest` with `host:port` replaced by a closed loopback
/// port; the host must be a compose service. Other values are kept.
fn to_closed_port(value: &str, services: &BTreeSet<&str>, who: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else {
        return value.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let host = hostport.split(':').next().unwrap_or_default();
    assert!(
        services.contains(host),
        "{who}: {value} names host {host}, which is not a compose service"
    );
    format!("{scheme}://{user}127.0.0.1:1{path}")
}

#[test]
fn scanfleet_services_pass_only_flags_and_variables_the_binaries_accept() {
    let doc = resolved();
    let names: BTreeSet<&str> = services(&doc).keys().map(String::as_str).collect();
    let scanfleet = scanfleet_bin();
    let worker = worker_bin();
    let known_env = |bin: &Path| -> Vec<u8> { std::fs::read(bin).expect("read binary") };
    let bins: BTreeMap<&str, (PathBuf, Vec<u8>)> = [
        ("scanfleet", (scanfleet.clone(), known_env(&scanfleet))),
        ("scanfleet-worker", (worker.clone(), known_env(&worker))),
    ]
    .into_iter()
    .collect();
    let svcs = scanfleet_services(&doc);
    assert!(
        svcs.len() >= 4,
        "queues-init, worker, watch, scan: {svcs:?}"
    );
    for (name, svc) in &svcs {
        let cmd = strings(&svc["command"]);
        let (bin_name, args) = cmd.split_first().expect("a command");
        let (bin, bytes) = bins
            .get(bin_name.as_str())
            .unwrap_or_else(|| panic!("{name}: {bin_name} is not a scanfleet binary"));
        // The subcommand path: leading words without a dash.
        let sub: Vec<&str> = args
            .iter()
            .take_while(|a| !a.starts_with('-'))
            .map(String::as_str)
            .collect();
        let flags = help_flags(bin, &sub);
        for a in args.iter().filter(|a| a.starts_with('-')) {
            let flag = a.split('=').next().unwrap_or(a);
            assert!(
                flags.contains(flag),
                "{name}: {bin_name} {} does not accept {flag}",
                sub.join(" ")
            );
        }
        let env = env_of(svc);
        for k in env.keys().filter(|k| k.starts_with("SCANFLEET_")) {
            assert!(
                bytes.windows(k.len()).any(|w| w == k.as_bytes()),
                "{name}: {bin_name} does not know {k}"
            );
        }
        assert_eq!(
            env.get("SCANFLEET_JOB_SECRET").map(String::as_str),
            Some(SECRET),
            "{name}: the job secret comes from the environment"
        );
        // Run it: settings must be accepted (not exit 2), then the connection fails.
        let mut run = Command::new(bin);
        run.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null());
        for a in args {
            run.arg(to_closed_port(a, &names, name));
        }
        for (k, v) in &env {
            let v = if k.ends_with("METRICS_ADDR") {
                assert!(v.ends_with(":9464"), "{name}: {k}={v}");
                "127.0.0.1:0".to_string()
            } else {
                to_closed_port(v, &names, name)
            };
            run.env(k, v);
        }
        let out = run_bounded(run, Duration::from_secs(60));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{name}: expected the settings to pass and the connection to fail (exit 1): {err}"
        );
        assert!(
            err.contains("127.0.0.1:1") && !err.contains("usage"),
            "{name}: {err}"
        );
    }
    // The worker's metrics port is the one Prometheus scrapes.
    let w = &services(&doc)["worker"];
    assert_eq!(
        env_of(w).get("SCANFLEET_METRICS_ADDR").map(String::as_str),
        Some("0.0.0.0:9464")
    );
}

fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let start = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{cmd:?} did not exit within {:?}", start.elapsed());
        }
    }
}

#[test]
fn scan_targets_are_the_target_network_and_prometheus_scrapes_compose_services() {
    let doc = resolved();
    let svcs = services(&doc);
    let subnet = doc["networks"]["targets"]["ipam"]["config"][0]["subnet"]
        .as_str()
        .expect("targets subnet")
        .to_string();
    let prefix = subnet
        .strip_suffix(".0/24")
        .expect("a /24 target subnet")
        .to_string();
    let mut addrs = BTreeSet::new();
    for t in ["target-web", "target-ssh", "target-redis"] {
        let a = svcs[t]["networks"]["targets"]["ipv4_address"]
            .as_str()
            .unwrap_or_else(|| panic!("{t}: fixed address"))
            .to_string();
        assert!(a.starts_with(&format!("{prefix}.")), "{t}: {a} in {subnet}");
        addrs.insert(
            a.rsplit('.')
                .next()
                .unwrap_or_default()
                .parse::<u8>()
                .expect("octet"),
        );
    }
    let cmd = strings(&svcs["scan"]["command"]);
    let i = cmd.iter().position(|a| a == "--target").expect("--target");
    let target = &cmd[i + 1];
    let (first, last) = target.split_once('-').expect("a range a.b.c.d-e");
    let first = first
        .strip_prefix(&format!("{prefix}."))
        .unwrap_or_else(|| panic!("{target} outside {subnet}"));
    let (lo, hi): (u8, u8) = (first.parse().expect("lo"), last.parse().expect("hi"));
    for a in &addrs {
        assert!((lo..=hi).contains(a), "target .{a} not scanned by {target}");
    }
    assert!(cmd.contains(&"--private-only".to_string()));
    // Prometheus: every scrape target is a compose service on a port it serves.
    let prom = yaml_to_json(
        &std::fs::read(repo().join("monitoring/prometheus.yml")).expect("prometheus.yml"),
    );
    let metrics_port = |svc: &str| -> Option<String> {
        if svc == "rabbitmq" {
            return Some("15692".into());
        }
        env_of(&svcs[svc])
            .get("SCANFLEET_METRICS_ADDR")
            .and_then(|a| a.rsplit(':').next().map(str::to_string))
    };
    let mut jobs = BTreeSet::new();
    for job in prom["scrape_configs"].as_array().expect("scrape_configs") {
        let jn = job["job_name"].as_str().expect("job_name").to_string();
        let mut targets: Vec<(String, String)> = Vec::new();
        for sd in job["dns_sd_configs"].as_array().into_iter().flatten() {
            let port = sd["port"].to_string();
            for n in strings(&sd["names"]) {
                targets.push((n, port.clone()));
            }
        }
        for sc in job["static_configs"].as_array().into_iter().flatten() {
            for t in strings(&sc["targets"]) {
                let (h, p) = t.rsplit_once(':').expect("host:port");
                targets.push((h.to_string(), p.to_string()));
            }
        }
        assert!(!targets.is_empty(), "{jn}: no targets");
        for (host, port) in targets {
            assert!(
                svcs.contains_key(&host),
                "{jn}: {host} is not a compose service"
            );
            assert_eq!(
                metrics_port(&host).as_deref(),
                Some(port.as_str()),
                "{jn}: {host}:{port} is not where {host} serves metrics"
            );
            let prom_nets: BTreeSet<String> = svcs["prometheus"]["networks"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            let shared = svcs[&host]["networks"]
                .as_object()
                .is_some_and(|m| m.keys().any(|n| prom_nets.contains(n)));
            assert!(shared, "{jn}: prometheus shares no network with {host}");
        }
        jobs.insert(jn);
    }
    for j in ["scanfleet-worker", "scanfleet-coordinator", "rabbitmq"] {
        assert!(jobs.contains(j), "scrape job {j} missing: {jobs:?}");
    }
}
