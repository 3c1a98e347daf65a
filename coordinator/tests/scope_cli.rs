//! Scope and input rules at the command line, end to end on loopback: what must
//! not be probed is not, and input that is wrong is refused with exit 2 and a
//! message that says why, before any probe. Every assertion on traffic is on a
//! listener this test started (other services listen on this machine's loopback).

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

fn scanfleet(args: &[&str], env: &[(&str, &str)]) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_scanfleet")), args, env)
}

/// `scanfleet` in a network namespace of its own with no interface up: a refusal
/// under test that regressed could not send anything off this machine.
fn scanfleet_isolated(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("unshare");
    // As root a network namespace alone; otherwise inside a user namespace too.
    cmd.arg(if is_root() { "--net" } else { "-rn" })
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_scanfleet"));
    run(cmd, args, env)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// Whether a target spec can only reach this machine (loopback or unspecified,
/// IPv4-mapped spellings included): the only targets run outside isolation.
fn stays_local(spec: &str) -> bool {
    let addr = spec.split('/').next().unwrap_or(spec);
    match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => v4.is_loopback() || v4.is_unspecified(),
        Ok(std::net::IpAddr::V6(v6)) => {
            let o = v6.octets();
            let v4 = std::net::Ipv4Addr::new(o[12], o[13], o[14], o[15]);
            v6.is_loopback()
                || v6.is_unspecified()
                || (o[..10].iter().all(|b| *b == 0)
                    && (o[10..12] == [0xff, 0xff] || o[10..12] == [0, 0])
                    && (v4.is_loopback() || v4.is_unspecified()))
        }
        Err(_) => false,
    }
}

fn run(mut cmd: Command, args: &[&str], env: &[(&str, &str)]) -> Output {
    cmd.args(args)
        .env_remove("SCANFLEET_JOB_SECRET")
        .env_remove("SCANFLEET_QUEUE")
        .env_remove("SCANFLEET_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run scanfleet")
}

/// A listener on `ip` that counts the connections it accepts.
struct Listener {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl Listener {
    fn on(ip: &str) -> Listener {
        let l = TcpListener::bind((ip, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = accepted.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                if s.is_ok() {
                    a.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Listener { port, accepted }
    }

    fn accepted(&self) -> usize {
        // A connect that raced the process exit is counted by now.
        std::thread::sleep(Duration::from_millis(100));
        self.accepted.load(Ordering::SeqCst)
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The flags of a quick connect scan of one port, no ping, no service detection.
fn quick(port: &str) -> Vec<String> {
    [
        "-p",
        port,
        "--mode",
        "connect",
        "--no-ping",
        "--no-service-detection",
        "--timeout-ms",
        "500",
        "--retries",
        "0",
        "--format",
        "jsonl",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn scan(targets: &[&str], extra: &[&str], port: u16) -> Output {
    let mut args: Vec<String> = vec!["scan".into()];
    for t in targets {
        args.push("-t".into());
        args.push(t.to_string());
    }
    args.extend(quick(&port.to_string()));
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    if targets.iter().all(|t| stays_local(t)) {
        scanfleet(&refs, &[])
    } else {
        scanfleet_isolated(&refs, &[])
    }
}

#[test]
fn mapped_target_inside_an_exclusion_is_never_probed() {
    let l = Listener::on("127.0.0.77");
    for spelling in ["::ffff:127.0.0.77", "::127.0.0.77", "::ffff:127.0.0.64/122"] {
        let out = scan(&[spelling], &["--exclude", "127.0.0.0/8"], l.port);
        let err = stderr(&out);
        assert!(
            err.contains("127.0.0.77") && err.contains("excluded block 127.0.0.0/8"),
            "{spelling}: skip not reported: {err}"
        );
        assert!(
            out.stdout.is_empty(),
            "{spelling}: results for an excluded target"
        );
        assert_eq!(
            l.accepted(),
            0,
            "{spelling}: the excluded 127.0.0.77 was probed"
        );
    }
    // Control: without the exclusion the same spelling reaches the listener, and the
    // result names the IPv4 address.
    let out = scan(&["::ffff:127.0.0.77"], &[], l.port);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\"ip\":\"127.0.0.77\"") && text.contains("\"open\""),
        "{text}"
    );
    assert!(l.accepted() >= 1);
}

#[test]
fn non_unicast_targets_are_refused_with_the_reason_before_any_probe() {
    // 0.0.0.0 reaches the scanner itself: this listener would see it.
    let l = Listener::on("127.0.0.1");
    for (target, class, why) in [
        ("0.0.0.0", "unspecified", "0.0.0.0 is unspecified"),
        ("::", "unspecified", ":: is unspecified"),
        ("::ffff:0.0.0.0", "unspecified", "0.0.0.0 is unspecified"),
        ("224.0.0.1", "multicast", "224.0.0.1 is multicast"),
        ("ff02::1", "multicast", "ff02::1 is multicast"),
        (
            "255.255.255.255",
            "broadcast",
            "255.255.255.255 is the limited broadcast address",
        ),
        (
            "169.254.169.254",
            "link-local",
            "169.254.169.254 is link-local (the instance metadata service)",
        ),
        ("169.254.0.0/30", "link-local", "169.254.0.0 is link-local"),
        ("fe80::1", "link-local", "fe80::1 is link-local"),
    ] {
        let out = scan(&[target], &[], l.port);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{target}: {err}");
        assert!(
            err.contains(why)
                && err.contains(&format!(
                    "scanfleet refuses {class} targets unless --allow-address-class {class}"
                )),
            "{target}: {err}"
        );
    }
    assert_eq!(l.accepted(), 0, "a refused target was probed");

    // --private-only never passes the metadata service, even with link-local allowed.
    let out = scan(
        &["169.254.169.254"],
        &["--private-only", "--allow-address-class", "link-local"],
        l.port,
    );
    assert!(
        stderr(&out).contains("not a private address"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());

    // Naming the class lets it through (0.0.0.0 is the scanner itself, on loopback).
    let out = scan(
        &["0.0.0.0"],
        &["--allow-address-class", "multicast,unspecified"],
        l.port,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(l.accepted() >= 1, "the allowed target was not probed");

    let out = scan(
        &["127.0.0.1"],
        &["--allow-address-class", "anycast"],
        l.port,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("anycast"), "{}", stderr(&out));
}

#[test]
fn an_empty_prohibited_list_in_a_config_keeps_t2_nano_unscanned() {
    let l = Listener::on("127.0.0.1");
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv.json");
    std::fs::write(
        &inv,
        r#"[{"id":"i-nano","private_ip":"127.0.0.1","instance_type":"t2.nano"}]"#,
    )
    .unwrap();
    let cfg = dir.path().join("sf.toml");
    std::fs::write(&cfg, "[scope]\nprohibited_instance_types = []\n").unwrap();
    let mut args: Vec<String> = vec![
        "scan".into(),
        "-i".into(),
        inv.to_str().unwrap().into(),
        "-c".into(),
        cfg.to_str().unwrap().into(),
    ];
    args.extend(quick(&l.port.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = scanfleet(&refs, &[]);
    let err = stderr(&out);
    assert!(
        err.contains("instance type t2.nano may not be scanned"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "the t2.nano was scanned");
    assert_eq!(l.accepted(), 0, "the t2.nano was probed");
}

#[test]
fn an_inventory_with_an_unknown_field_exits_2_naming_file_asset_and_field() {
    let l = Listener::on("127.0.0.1");
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("typo.json");
    std::fs::write(
        &inv,
        r#"[{"id":"i-ok","private_ip":"127.0.0.1"},
            {"id":"i-nano","private_ip":"127.0.0.1","instance_typ":"t2.nano"}]"#,
    )
    .unwrap();
    let mut args: Vec<String> = vec!["scan".into(), "-i".into(), inv.to_str().unwrap().into()];
    args.extend(quick(&l.port.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = scanfleet(&refs, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("typo.json")
            && err.contains("asset #1 (id \"i-nano\")")
            && err.contains("unknown field `instance_typ`"),
        "{err}"
    );
    assert_eq!(l.accepted(), 0);
}

#[test]
fn short_job_secrets_are_refused_before_connecting() {
    // Nothing listens on this port: a run that got past the secret check fails to
    // connect (exit 1) instead of refusing the secret (exit 2).
    let queue = format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port());
    for secret in ["", "x", "fleet-test-secret", &"k".repeat(31)] {
        let out = scanfleet(
            &["scan", "-t", "127.0.0.1", "-p", "9", "--queue", &queue],
            &[("SCANFLEET_JOB_SECRET", secret)],
        );
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "secret {secret:?}: {err}");
        assert!(
            err.contains("SCANFLEET_JOB_SECRET") && err.contains("openssl rand -hex 32"),
            "{err}"
        );
        let port = free_port().to_string();
        let out = scanfleet(
            &[
                "watch",
                "--events-queue",
                &format!("http://127.0.0.1:{port}/000000000000/events"),
                "--endpoint-url",
                &format!("http://127.0.0.1:{port}"),
                "--queue",
                &queue,
            ],
            &[
                ("SCANFLEET_JOB_SECRET", secret),
                ("AWS_ACCESS_KEY_ID", "test"),
                ("AWS_SECRET_ACCESS_KEY", "test"),
                ("AWS_REGION", "us-east-1"),
            ],
        );
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(2),
            "watch, secret {secret:?}: {err}"
        );
        assert!(err.contains("openssl rand -hex 32"), "{err}");
    }
}

#[test]
fn signed_and_zero_padded_ports_are_refused() {
    let l = Listener::on("127.0.0.1");
    for (spec, why) in [
        (format!("0{}", l.port), "without leading zeros"),
        (format!("+{}", l.port), "is not a port number"),
        (format!("1-+{}", l.port), "is not a port number"),
    ] {
        let out = scanfleet(&["scan", "-t", "127.0.0.1", "-p", &spec, "--Pn"], &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "-p {spec}: {err}");
        assert!(err.contains(why) && err.contains(&spec), "-p {spec}: {err}");
    }
    assert_eq!(l.accepted(), 0);
}

#[test]
fn counts_are_exact_and_echoed_input_is_bounded() {
    let out = scanfleet(&["scan", "-t", "::/0"], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains(&format!(
            "targets expand to more than {} addresses",
            u128::MAX
        )),
        "{err}"
    );
    let huge = format!("10.0.0.1{}", "x".repeat(100_000));
    for args in [
        vec!["scan", "-t", huge.as_str()],
        vec!["scan", "-t", "127.0.0.1", "-p", huge.as_str()],
    ] {
        let out = scanfleet(&args, &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{}", &err[..err.len().min(300)]);
        assert!(err.len() < 1_000, "{} bytes of stderr", err.len());
        assert!(err.contains("xxx..."), "{err}");
    }
    // Control characters typed into a spec are shown, not sent to the terminal.
    let out = scanfleet(&["scan", "-t", "\x1b]0;pwned\x07"], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        !err.contains('\x1b') && err.contains("\\x1b]0;pwned\\x07"),
        "{err:?}"
    );
    let _ = std::io::stderr().flush();
}
