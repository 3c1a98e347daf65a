//! Secrets never leak: a fleet run (coordinator and worker on the host, a real
//! RabbitMQ user and a password-protected Redis of the test's own, AWS keys in the
//! environment, debug logging) and its failure paths (wrong passwords), with every
//! byte they wrote collected: stdout, stderr, the worker's metrics, every key and
//! value the run left in Redis, an export, and `--help` of every command. None may
//! hold the job secret, a password or an AWS secret. The probe goes to a listener
//! on 127.0.0.1 that the test starts.

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use scanfleet_testkit::{terminate, wait_until};
use support::{PrivateRedis, Vhost, free_port, is_root};

const JOB_SECRET: &str = "job-secret-Kx81vQ-0123456789abcdef";
const AMQP_PASSWORD: &str = "amqp-pw-Zr4tW9m";
const REDIS_PASSWORD: &str = "redis-pw-Qe7uN2c";
const WRONG_PASSWORD: &str = "wrong-pw-Hy3bL5x";
const AWS_KEY_ID: &str = "AKIASFTESTLEAKCHECK1";
const AWS_SECRET: &str = "aws-secret-Vb9Lp0Ww2e3r4t5y6u7i8o9p";

/// A RabbitMQ user of the test's own, with permissions on one vhost; deleted on drop.
struct AmqpUser(String);

impl AmqpUser {
    fn new(vhost: &Vhost) -> AmqpUser {
        let name = format!("sftest-secrets-{}", std::process::id());
        let ctl = |args: &[&str]| {
            let o = Command::new("rabbitmqctl").args(args).output().unwrap();
            assert!(
                o.status.success(),
                "rabbitmqctl {:?}: {}",
                args.first(),
                String::from_utf8_lossy(&o.stderr)
            );
        };
        let _ = Command::new("rabbitmqctl")
            .args(["delete_user", &name])
            .output();
        ctl(&["add_user", &name, AMQP_PASSWORD]);
        ctl(&["set_permissions", "-p", &vhost.0, &name, ".*", ".*", ".*"]);
        AmqpUser(name)
    }
}

impl Drop for AmqpUser {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_user", &self.0])
            .output();
    }
}

fn env(cmd: &mut Command) -> &mut Command {
    cmd.env("SCANFLEET_JOB_SECRET", JOB_SECRET)
        .env("SCANFLEET_LOG", "debug")
        .env("AWS_ACCESS_KEY_ID", AWS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
        .env("AWS_REGION", "us-east-1")
        .env("NO_COLOR", "1")
}

fn scanfleet() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_scanfleet"));
    env(&mut c);
    c
}

fn worker() -> Command {
    let mut c = Command::new(support::worker_bin());
    env(&mut c);
    c
}

/// Everything a command printed, as one text.
fn text(what: &str, o: &Output) -> String {
    format!(
        "== {what} (exit {:?})\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run(what: &str, c: &mut Command) -> (Output, String) {
    let o = c.output().unwrap_or_else(|e| panic!("run {what}: {e}"));
    let t = text(what, &o);
    (o, t)
}

/// Every key and value of the private Redis, dumped as text.
fn redis_dump(port: u16) -> String {
    let cli = |args: &[&str]| {
        let o = Command::new("redis-cli")
            .args([
                "-p",
                &port.to_string(),
                "--no-auth-warning",
                "-a",
                REDIS_PASSWORD,
            ])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let mut out = String::new();
    for key in cli(&["--scan"]).lines().filter(|k| !k.is_empty()) {
        out.push_str(key);
        out.push('\n');
        let kind = cli(&["type", key]);
        let value = match kind.trim() {
            "string" => cli(&["get", key]),
            "hash" => cli(&["hgetall", key]),
            "list" => cli(&["lrange", key, "0", "-1"]),
            "set" => cli(&["smembers", key]),
            "zset" => cli(&["zrange", key, "0", "-1", "withscores"]),
            "stream" => cli(&["xrange", key, "-", "+"]),
            other => format!("({other})"),
        };
        out.push_str(&value);
    }
    out
}

/// A process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn no_secret_reaches_logs_errors_metrics_help_or_the_store() {
    if !is_root() {
        eprintln!("skipped: rabbitmqctl needs root; CI runs as root");
        return;
    }
    let vhost = Vhost::new("secrets");
    let user = AmqpUser::new(&vhost);
    let amqp = format!(
        "amqp://{}:{AMQP_PASSWORD}@127.0.0.1:5672/{}",
        user.0, vhost.0
    );
    let redis = PrivateRedis::new();
    redis.start_with(&["--requirepass".as_ref(), REDIS_PASSWORD.as_ref()]);
    let redis_url = format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{}", redis.port);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let metrics_port = free_port();
    let state = tempfile::tempdir().unwrap();
    let mut all = String::new();

    // The worker, at debug level, with its metrics served.
    let w = worker()
        .args(["--queue", &amqp, "--redis", &redis_url])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .args(["--grace-secs", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn scanfleet-worker");
    let mut w = Proc(w);
    assert!(
        support::wait_listening(metrics_port, Duration::from_secs(30)),
        "the worker never served its metrics"
    );

    // A fleet scan of the listener, with an export.
    let html = state.path().join("report.html");
    let (o, t) = run(
        "scanfleet scan (fleet)",
        scanfleet()
            .args(["scan", "-t", "127.0.0.1", "-p", &port, "--mode", "connect"])
            .args(["--queue", &amqp, "--redis", &redis_url])
            .args(["--format", "jsonl", "--progress", "never"])
            .arg("--export")
            .arg(format!("html={}", html.display())),
    );
    all.push_str(&t);
    assert_eq!(o.status.code(), Some(0), "{t}");
    assert!(
        t.contains(&format!("\"port\":{port}")),
        "the scan did not find the test's listener: {t}"
    );
    let scan_id = t
        .split("\"scan_id\":\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .filter(|s| s.starts_with("sf-"))
        .unwrap_or_else(|| panic!("no scan id in the results: {t}"))
        .to_string();
    all.push_str(&std::fs::read_to_string(&html).expect("the html export"));

    // What the coordinator reads back and writes later.
    for (what, args) in [
        ("status", vec!["status", &scan_id, "--json"]),
        ("results", vec!["results", &scan_id]),
        ("findings", vec!["findings", &scan_id, "--format", "json"]),
        (
            "export nmap-xml",
            vec!["export", &scan_id, "--to", "nmap-xml"],
        ),
        ("export asff", vec!["export", &scan_id, "--to", "asff"]),
        ("history", vec!["history"]),
    ] {
        let (_, t) = run(what, scanfleet().args(&args).args(["--redis", &redis_url]));
        all.push_str(&t);
    }
    let (_, t) = run(
        "queues",
        scanfleet().args(["queues", "--queue", &amqp, "dead-letters"]),
    );
    all.push_str(&t);

    // The worker's metrics, then its logs once it has stopped.
    let scrape = Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{metrics_port}/metrics")])
        .output()
        .expect("curl");
    let scrape = String::from_utf8_lossy(&scrape.stdout).into_owned();
    assert!(scrape.contains("scanfleet_"), "no metrics: {scrape}");
    all.push_str(&scrape);
    terminate(&mut w.0, Duration::from_secs(20));
    let mut out = String::new();
    let mut err = String::new();
    use std::io::Read;
    if let Some(mut s) = w.0.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    if let Some(mut s) = w.0.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    assert!(!err.is_empty(), "the worker logged nothing at debug level");
    all.push_str(&out);
    all.push_str(&err);

    // Everything the run left in Redis (the scan's record keeps the command line).
    let dump = redis_dump(redis.port);
    assert!(dump.contains(&scan_id), "the dump misses the scan: {dump}");
    all.push_str(&dump);

    // Failure paths: wrong passwords, in URLs and in the environment.
    let wrong_redis = format!("redis://:{WRONG_PASSWORD}@127.0.0.1:{}", redis.port);
    let wrong_amqp = format!(
        "amqp://{}:{WRONG_PASSWORD}@127.0.0.1:5672/{}",
        user.0, vhost.0
    );
    for (what, mut c) in [
        ("status, wrong Redis password", {
            let mut c = scanfleet();
            c.args(["status", &scan_id, "--redis", &wrong_redis]);
            c
        }),
        ("scan, wrong Redis password", {
            let mut c = scanfleet();
            c.args(["scan", "-t", "127.0.0.1", "-p", &port, "--mode", "connect"])
                .args(["--queue", &amqp, "--redis", &wrong_redis]);
            c
        }),
        ("scan, wrong broker password", {
            let mut c = scanfleet();
            c.args(["scan", "-t", "127.0.0.1", "-p", &port, "--mode", "connect"])
                .args(["--queue", &wrong_amqp, "--redis", &redis_url]);
            c
        }),
        ("queues, wrong broker password", {
            let mut c = scanfleet();
            c.args(["queues", "--queue", &wrong_amqp]);
            c
        }),
    ] {
        let (o, t) = run(what, c.stdin(Stdio::null()));
        assert_ne!(o.status.code(), Some(0), "{what} succeeded: {t}");
        all.push_str(&t);
    }
    // A worker that cannot log in gives up within its bounded retries or is stopped.
    let bad = worker()
        .args(["--queue", &wrong_amqp, "--redis", &redis_url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn scanfleet-worker");
    let mut bad = Proc(bad);
    let exited = wait_until(Duration::from_secs(8), || {
        matches!(bad.0.try_wait(), Ok(Some(_)))
    });
    if !exited {
        terminate(&mut bad.0, Duration::from_secs(10));
    }
    let mut err = String::new();
    if let Some(mut s) = bad.0.stderr.take() {
        let _ = s.read_to_string(&mut err);
    }
    assert!(
        err.contains("127.0.0.1:5672") || err.to_lowercase().contains("broker"),
        "the worker did not say the broker refused it: {err}"
    );
    all.push_str(&err);

    // Help of every command, with the secrets in the environment.
    for args in [
        vec!["--help"],
        vec!["scan", "--help"],
        vec!["status", "--help"],
        vec!["results", "--help"],
        vec!["queues", "--help"],
        vec!["watch", "--help"],
        vec!["export", "--help"],
        vec!["findings", "--help"],
    ] {
        let (_, t) = run(&args.join(" "), scanfleet().args(&args));
        all.push_str(&t);
    }
    let (_, t) = run("worker --help", worker().arg("--help"));
    all.push_str(&t);

    let leaks: Vec<&str> = [
        JOB_SECRET,
        AMQP_PASSWORD,
        REDIS_PASSWORD,
        WRONG_PASSWORD,
        AWS_SECRET,
    ]
    .into_iter()
    .filter(|s| all.contains(s))
    .collect();
    if !leaks.is_empty() {
        let lines: Vec<&str> = all
            .lines()
            .filter(|l| leaks.iter().any(|s| l.contains(s)))
            .take(20)
            .collect();
        panic!(
            "secrets {leaks:?} appear in what the run wrote ({} bytes checked):\n{}",
            all.len(),
            lines.join("\n")
        );
    }
    eprintln!("secrets: {} bytes checked, no secret found", all.len());
}
