//! The command-line contract, end to end on loopback: real scans of listeners
//! this test starts on 127.0.0.1, and bad input refused with exit 2 before any
//! probe reaches them. Other listeners may exist on this machine's loopback, so
//! assertions cover only ports this test owns.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use scanfleet_testkit::free_port;

fn scanfleet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scanfleet"))
        .args(args)
        .output()
        .expect("run scanfleet")
}

/// A listener that counts accepted connections and answers like a tiny service.
struct Listener {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

fn listener(greeting: &'static [u8]) -> Listener {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
                let _ = s.write_all(greeting);
                let mut buf = [0u8; 512];
                if let Ok(n) = s.read(&mut buf)
                    && buf[..n].starts_with(b"GET ")
                {
                    let _ = s.write_all(
                        b"HTTP/1.1 200 OK\r\nServer: test-httpd/2.1\r\nContent-Length: 0\r\n\r\n",
                    );
                }
            });
        }
    });
    Listener { port, accepted }
}

fn stdout_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("jsonl line"))
        .collect()
}

#[test]
fn loopback_scan_reports_exactly_our_listeners() {
    let ssh = listener(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n");
    let web = listener(b"");
    let closed = free_port();
    let ports = format!("{},{},{}", ssh.port, web.port, closed);
    let out = scanfleet(&[
        "scan",
        "-t",
        "127.0.0.1",
        "-p",
        &ports,
        "--format",
        "jsonl",
        "--mode",
        "connect",
        "--Pn",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {err}");
    let lines = stdout_lines(&out);
    let mut open: Vec<u16> = lines
        .iter()
        .map(|v| v["port"].as_u64().unwrap() as u16)
        .collect();
    open.sort();
    let mut want = vec![ssh.port, web.port];
    want.sort();
    assert_eq!(open, want, "stdout: {lines:?}");
    for v in &lines {
        assert_eq!(v["ip"], "127.0.0.1");
        assert_eq!(v["protocol"], "tcp");
        assert_eq!(v["state"], "open");
        assert!(v["scan_id"].as_str().unwrap().starts_with("sf-"));
        assert_eq!(v["asset_id"], "127.0.0.1");
    }
    assert!(
        err.contains("scanfleet: scan sf-") && err.contains("3 ports each, 2 open ports"),
        "summary missing: {err}"
    );
}

#[test]
fn all_states_adds_closed_ports_and_other_formats_agree() {
    let web = listener(b"");
    let closed = free_port();
    let ports = format!("{},{}", web.port, closed);
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("out.csv");
    let out = scanfleet(&[
        "scan",
        "-t",
        "127.0.0.1",
        "-p",
        &ports,
        "--all-states",
        "--format",
        "csv",
        "-o",
        csv_path.to_str().unwrap(),
        "--mode",
        "connect",
        "--Pn",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "-o must keep stdout clean");
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert!(rows[0].starts_with("scan_id,asset_id,ip,port,protocol,state"));
    assert!(
        rows.iter()
            .any(|r| r.contains(&format!(",127.0.0.1,{},tcp,open,", web.port))),
        "{csv}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains(&format!(",127.0.0.1,{closed},tcp,closed,"))),
        "{csv}"
    );

    let out = scanfleet(&[
        "scan",
        "-t",
        "127.0.0.1",
        "-p",
        &ports,
        "--format",
        "json",
        "--mode",
        "connect",
        "--Pn",
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["results"].as_array().unwrap().len(), 1);
    assert_eq!(doc["engine"], "connect");
    assert_eq!(doc["targets"], 1);

    let out = scanfleet(&[
        "scan",
        "-t",
        "127.0.0.1",
        "-p",
        &ports,
        "--mode",
        "connect",
        "--Pn",
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.starts_with("HOST") && table.contains(&format!("{}/tcp", web.port)),
        "{table}"
    );
}

#[test]
fn inventory_scan_skips_prohibited_instance_types() {
    let web = listener(b"");
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv.json");
    std::fs::write(
        &inv,
        r#"[{"id":"i-ok","private_ip":"127.0.0.1","instance_type":"m5.large"},
            {"id":"i-nano","private_ip":"127.0.0.2","instance_type":"t2.nano"}]"#,
    )
    .unwrap();
    let out = scanfleet(&[
        "scan",
        "--inventory",
        inv.to_str().unwrap(),
        "-p",
        &web.port.to_string(),
        "--format",
        "jsonl",
        "--mode",
        "connect",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["asset_id"], "i-ok");
    assert!(
        err.contains("skipped i-nano (127.0.0.2): instance type t2.nano may not be scanned"),
        "{err}"
    );
}

#[test]
fn bad_input_exits_2_naming_the_input_before_any_probe() {
    let watched = listener(b"");
    let p = watched.port.to_string();
    let dir = tempfile::tempdir().unwrap();
    let malformed = dir.path().join("bad.json");
    std::fs::write(
        &malformed,
        r#"[{"private_ip":"127.0.0.1"},{"private_ip":"not-an-ip"}]"#,
    )
    .unwrap();
    let truncated = dir.path().join("trunc.json");
    std::fs::write(&truncated, r#"[{"private_ip":"127.0.0.1"}"#).unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "-t".into(),
                "127.0.0.1".into(),
                "-p".into(),
                format!("{p},70000"),
            ],
            "\"70000\"",
        ),
        (
            vec![
                "-t".into(),
                "127.0.0.1".into(),
                "-p".into(),
                format!("{p},90-80"),
            ],
            "\"90-80\"",
        ),
        (
            vec![
                "-t".into(),
                "127.0.0.1".into(),
                "-p".into(),
                format!("{p},ssh"),
            ],
            "\"ssh\"",
        ),
        (
            vec![
                "-t".into(),
                "127.0.0.1,127.0.0.300".into(),
                "-p".into(),
                p.clone(),
            ],
            "\"127.0.0.300\"",
        ),
        (
            vec!["-t".into(), "127.0.0.0/4".into(), "-p".into(), p.clone()],
            "--max-targets",
        ),
        (
            vec![
                "-i".into(),
                "/nonexistent/inventory.json".into(),
                "-p".into(),
                p.clone(),
            ],
            "/nonexistent/inventory.json",
        ),
        (
            vec![
                "-i".into(),
                malformed.to_str().unwrap().into(),
                "-p".into(),
                p.clone(),
            ],
            "asset #1",
        ),
        (
            vec![
                "-i".into(),
                truncated.to_str().unwrap().into(),
                "-p".into(),
                p.clone(),
            ],
            "trunc.json: not valid JSON",
        ),
        (
            vec![
                "-t".into(),
                "127.0.0.1".into(),
                "-p".into(),
                p.clone(),
                "--format".into(),
                "xml".into(),
            ],
            "xml",
        ),
        (
            vec![
                "-t".into(),
                "127.0.0.1".into(),
                "-p".into(),
                p.clone(),
                "--rate".into(),
                "0".into(),
            ],
            "--rate 0",
        ),
    ];
    for (args, needle) in cases {
        let mut argv = vec!["scan".to_string()];
        argv.extend(args.clone());
        let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = scanfleet(&refs);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(needle),
            "{args:?}: stderr does not name {needle:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: printed results");
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        watched.accepted.load(Ordering::SeqCst),
        0,
        "a refused scan still probed"
    );

    let out = scanfleet(&["scan"]);
    assert_eq!(out.status.code(), Some(2));
    let _ = TcpStream::connect(("127.0.0.1", watched.port)); // the listener itself still works
}

/// `--redis-ca`, `--redis-cert` and `--redis-key` reach the store: `status` reads a
/// scan from a TLS-only redis-server that requires client certificates, and without
/// the client certificate it cannot.
#[test]
fn status_reads_a_scan_over_mutual_tls() {
    use scanfleet_common::store::ResultStore;
    use scanfleet_common::store::redis::tls::{TlsFiles, join};
    use scanfleet_common::store::redis::{RedisConfig, RedisStore};
    use std::ffi::OsStr;

    let pki = scanfleet_testkit::TestPki::new();
    let redis = scanfleet_testkit::PrivateRedis::new();
    let port = redis.port.to_string();
    let p = |f: &str| pki.path(f).into_os_string();
    let (cert, key, ca) = (p("server.pem"), p("server.key"), p("ca.pem"));
    let tls_args: Vec<&OsStr> = vec![
        "--port".as_ref(),
        "0".as_ref(),
        "--tls-port".as_ref(),
        port.as_ref(),
        "--tls-cert-file".as_ref(),
        &cert,
        "--tls-key-file".as_ref(),
        &key,
        "--tls-ca-cert-file".as_ref(),
        &ca,
        "--tls-auth-clients".as_ref(),
        "yes".as_ref(),
    ];
    redis.start_with(&tls_args);
    let base = format!("rediss://127.0.0.1:{port}");
    let scan = scanfleet_testkit::unique_name("sftest-tls");
    let files = TlsFiles {
        ca: Some(pki.path("ca.pem")),
        cert: Some(pki.path("client.pem")),
        key: Some(pki.path("client.key")),
    };
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = RedisStore::connect(&join(&base, &files), RedisConfig::default())
            .await
            .unwrap();
        store.begin_scan(&scan, 3).await.unwrap();
    });
    let path = |f: &str| pki.path(f).display().to_string();
    let (ca, cert, key) = (path("ca.pem"), path("client.pem"), path("client.key"));
    let ok = scanfleet(&[
        "status",
        &scan,
        "--json",
        "--redis",
        &base,
        "--redis-ca",
        &ca,
        "--redis-cert",
        &cert,
        "--redis-key",
        &key,
    ]);
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["progress"]["shards_total"], 3, "{v}");
    // The CA alone does not get past tls-auth-clients.
    let refused = scanfleet(&[
        "status",
        &scan,
        "--json",
        "--redis",
        &base,
        "--redis-ca",
        &ca,
    ]);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "a runtime error, not bad input"
    );
    // A certificate without its key is bad input, refused before connecting.
    let half = scanfleet(&[
        "status",
        &scan,
        "--redis",
        &base,
        "--redis-ca",
        &ca,
        "--redis-cert",
        &cert,
    ]);
    assert_eq!(half.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&half.stderr).contains("needs its key"),
        "{}",
        String::from_utf8_lossy(&half.stderr)
    );
}
