//! Findings, history and diff end to end through the `scanfleet` binary: real
//! embedded scans of listeners this test starts on 127.0.0.1 (and of the
//! standard namespace lab when it is up), recorded in a temporary state
//! directory or in the shared Redis under a key prefix of the test's own, then
//! `findings`, `diff`, `history` and `export` read them back. Bad inputs exit 2
//! with a message naming the input.

mod support;

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

fn scanfleet(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_scanfleet"));
    c.args(args)
        .env_remove("SCANFLEET_REDIS")
        .env_remove("SCANFLEET_STATE_DIR")
        .env_remove("SCANFLEET_QUEUE");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run scanfleet")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A listener on 127.0.0.1 that greets every connection with `banner`, until dropped.
struct Banner {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Banner {
    fn start(banner: &'static [u8]) -> Banner {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut c, _)) => {
                        let _ = c.write_all(banner);
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            }
        });
        Banner { port, stop }
    }
}

impl Drop for Banner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// An inventory of one asset on 127.0.0.1 whose configuration opens `exposed`
/// to the internet.
fn inventory(dir: &Path, exposed: &[u16]) -> String {
    let tcp: Vec<Value> = exposed
        .iter()
        .map(|p| serde_json::json!({"from": p, "to": p}))
        .collect();
    let inv = serde_json::json!([{
        "id": "i-0f1ndings",
        "private_ip": "127.0.0.1",
        "instance_type": "m5.large",
        "account_id": "111122223333",
        "region": "eu-west-1",
        "vpc_id": "vpc-1",
        "tags": {"env": "test", "role": "bastion"},
        "exposure": {"paths": [{
            "public_ip": "203.0.113.7",
            "private_ip": "127.0.0.1",
            "tcp": tcp,
            "internet_gateway": "igw-0a",
            "route_table": "rtb-0b",
            "network_acl": "acl-0c",
            "security_groups": ["sg-0d"]
        }]}
    }]);
    let p = dir.join("inventory.json");
    std::fs::write(&p, inv.to_string()).unwrap();
    p.to_str().unwrap().to_string()
}

/// Run an embedded connect scan and return its scan id.
fn scan(inv: &str, ports: &str, store: &[&str], extra: &[&str], env: &[(&str, &str)]) -> String {
    let mut args = vec![
        "scan",
        "-i",
        inv,
        "-p",
        ports,
        "--mode",
        "connect",
        "--format",
        "json",
        "--Pn",
        "--timeout-ms",
        "500",
        "--retries",
        "0",
    ];
    args.extend_from_slice(store);
    args.extend_from_slice(extra);
    let o = scanfleet(&args, env);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "scan failed: {err}");
    assert!(err.contains("recorded in"), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    v["scan_id"].as_str().unwrap().to_string()
}

fn findings_json(
    scan_id: &str,
    store: &[&str],
    extra: &[&str],
    env: &[(&str, &str)],
) -> Vec<Value> {
    let mut args = vec!["findings", scan_id, "--format", "jsonl"];
    args.extend_from_slice(store);
    args.extend_from_slice(extra);
    let o = scanfleet(&args, env);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "findings failed: {err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn by_port(f: &[Value], port: u16) -> &Value {
    f.iter()
        .find(|f| f["port"] == port)
        .unwrap_or_else(|| panic!("no finding on port {port}: {f:#?}"))
}

/// Two scans of loopback listeners: the first sees an old OpenSSH and a
/// telnet-port greeter; then the SSH listener stops and an SMTP one starts.
/// Findings carry base rules, internet reachability (from the inventory's
/// exposure), drift notes and latent exposures; diff says new and gone.
fn two_scans_findings_and_diff(store: &[&str], env: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let ssh = Banner::start(b"SSH-2.0-OpenSSH_7.2p2 Ubuntu-4ubuntu2.10\r\n");
    let other = Banner::start(b"hello\r\n");
    let closed = support::free_port();
    let later = TcpListener::bind("127.0.0.1:0").unwrap();
    let smtp_port = later.local_addr().unwrap().port();
    drop(later);
    // The configuration opens ssh and the closed port to the internet, not `other`.
    let inv = inventory(dir.path(), &[ssh.port, closed]);
    let ports = format!("{},{},{},{}", ssh.port, other.port, closed, smtp_port);
    let s1 = scan(&inv, &ports, store, &[], env);

    let f = findings_json(&s1, store, &[], env);
    let old_ssh = by_port(&f, ssh.port);
    assert_eq!(old_ssh["kind"], "open-port");
    assert_eq!(old_ssh["rules"][0], "SF-OPENSSH-OLD", "{old_ssh:#}");
    assert_eq!(old_ssh["base_score"], 6.5);
    assert_eq!(old_ssh["score"], 8.5, "internet-reachable adds 2");
    assert_eq!(old_ssh["severity"], "high");
    assert_eq!(old_ssh["internet_reachable"], true);
    assert_eq!(old_ssh["reasons"][1]["code"], "internet-reachable");
    let path: Vec<&str> = old_ssh["network_path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(path, ["igw-0a", "rtb-0b", "acl-0c", "sg-0d", "i-0f1ndings"]);
    assert_eq!(
        old_ssh["id"],
        format!("eu-west-1/111122223333/i-0f1ndings/tcp/{}", ssh.port)
    );
    let drift = by_port(&f, other.port);
    assert_eq!(drift["rules"][0], "SF-OPEN-PORT");
    assert_eq!(drift["reasons"][1]["code"], "observed-but-unreachable");
    assert_eq!(drift["score"], drift["base_score"]);
    let latent = by_port(&f, closed);
    assert_eq!(latent["kind"], "latent-exposure");
    assert_eq!(latent["state"], "closed");
    assert!(
        f.iter().all(|x| x["port"] != smtp_port),
        "a closed port the configuration does not open is no finding"
    );
    let first_seen = old_ssh["first_observed_unix_ms"].as_u64().unwrap();

    // The table is sorted by score and shows the reasons.
    let mut args = vec!["findings", s1.as_str()];
    args.extend_from_slice(store);
    let o = scanfleet(&args, env);
    let (table, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let ssh_line = table.find("SF-OPENSSH-OLD").unwrap();
    let low_line = table.find("SF-OPEN-PORT").unwrap();
    assert!(ssh_line < low_line, "sorted by score:\n{table}");
    assert!(
        table.contains("internet-reachable: reachable from the internet at 203.0.113.7"),
        "{table}"
    );
    // --min-severity filters.
    let high = findings_json(&s1, store, &["--min-severity", "high"], env);
    assert!(
        !high.is_empty()
            && high
                .iter()
                .all(|f| f["severity"] == "high" || f["severity"] == "critical"),
        "{high:#?}"
    );

    // Suppressions mark, never drop.
    let sup = dir.path().join("sup.toml");
    std::fs::write(
        &sup,
        "[[suppression]]\nid = \"bastion-ssh\"\nreason = \"reviewed\"\ntag = \"role=bastion\"\nrule = \"SF-OPENSSH-OLD\"\n",
    )
    .unwrap();
    let fs = findings_json(&s1, store, &["--suppressions", sup.to_str().unwrap()], env);
    assert_eq!(fs.len(), f.len(), "nothing dropped");
    let s = by_port(&fs, ssh.port);
    assert_eq!(s["suppressed"]["rule"], "bastion-ssh");
    assert_eq!(s["suppressed"]["reason"], "reviewed");
    assert!(by_port(&fs, other.port).get("suppressed").is_none());

    // The SSH service stops, an SMTP one starts on the port that was closed.
    drop(ssh);
    let smtp_l = TcpListener::bind(("127.0.0.1", smtp_port)).unwrap();
    smtp_l.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let smtp = std::thread::spawn(move || {
        while !st.load(Ordering::Relaxed) {
            if let Ok((mut c, _)) = smtp_l.accept() {
                let _ = c.write_all(b"220 mail.example.test ESMTP Postfix\r\n");
                std::thread::sleep(std::time::Duration::from_millis(50));
            } else {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    });
    let s2 = scan(&inv, &ports, store, &[], env);
    stop.store(true, Ordering::Relaxed);
    smtp.join().unwrap();

    let mut args = vec!["diff", s1.as_str(), s2.as_str(), "--format", "json"];
    args.extend_from_slice(store);
    let o = scanfleet(&args, env);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let d: Value = serde_json::from_str(&out).unwrap();
    let ports_of = |k: &str| -> Vec<u64> {
        d[k].as_array()
            .unwrap()
            .iter()
            .map(|p| p["port"].as_u64().unwrap())
            .collect()
    };
    let gone_ssh = ports_of("gone");
    assert_eq!(ports_of("new"), [u64::from(smtp_port)], "{d:#}");
    assert_eq!(gone_ssh.len(), 1, "{d:#}");
    assert_eq!(d["new"][0]["service"], "smtp");
    assert_eq!(d["gone"][0]["service"], "ssh");
    assert_eq!(d["unchanged"], 1, "the other listener: {d:#}");
    let mut args = vec!["diff", s1.as_str(), s2.as_str()];
    args.extend_from_slice(store);
    let (table, _) = text(&scanfleet(&args, env));
    assert!(
        table.contains("1 new, 1 gone, 0 changed, 1 unchanged"),
        "{table}"
    );

    // The port that was open keeps its first-observed time across scans; the
    // SSH port closed, and its exposure is latent now.
    let f2 = findings_json(&s2, store, &[], env);
    let o2 = by_port(&f2, other.port);
    assert_eq!(
        o2["first_observed_unix_ms"],
        by_port(&f, other.port)["first_observed_unix_ms"]
    );
    assert!(
        o2["last_observed_unix_ms"].as_u64()
            > by_port(&f, other.port)["last_observed_unix_ms"].as_u64()
    );
    let was_ssh = f2.iter().find(|x| x["id"] == old_ssh["id"]).unwrap();
    assert_eq!(was_ssh["kind"], "latent-exposure");
    assert_eq!(
        was_ssh["first_observed_unix_ms"].as_u64().unwrap(),
        first_seen
    );

    // The history lists both, oldest first.
    let mut args = vec!["history", "--format", "json"];
    args.extend_from_slice(store);
    let (out, _) = text(&scanfleet(&args, env));
    let list: Vec<Value> = serde_json::from_str(&out).unwrap();
    let ids: Vec<&str> = list
        .iter()
        .map(|r| r["scan_id"].as_str().unwrap())
        .collect();
    let (i1, i2) = (
        ids.iter().position(|i| *i == s1).unwrap(),
        ids.iter().position(|i| *i == s2).unwrap(),
    );
    assert!(i1 < i2, "{ids:?}");

    // CSV streams the same findings with a header.
    let mut args = vec!["findings", s2.as_str(), "--format", "csv"];
    args.extend_from_slice(store);
    let (csv, _) = text(&scanfleet(&args, env));
    assert!(csv.starts_with("id,kind,score,severity"), "{csv}");
    assert_eq!(csv.lines().count(), f2.len() + 1);
}

#[test]
fn findings_and_diff_in_a_state_directory() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().join("state");
    let d = dir.to_str().unwrap();
    two_scans_findings_and_diff(&["--state-dir", d], &[]);
    // SCANFLEET_STATE_DIR names the same history.
    let (out, _) = text(&scanfleet(&["history"], &[("SCANFLEET_STATE_DIR", d)]));
    assert_eq!(out.lines().count(), 3, "a head line and two scans:\n{out}");
    assert!(dir.join("observed.jsonl").is_file());
}

#[test]
fn findings_and_diff_in_redis() {
    let url = scanfleet_testkit::redis_url();
    let prefix = scanfleet_testkit::unique_name("sf-findings-test");
    two_scans_findings_and_diff(&["--redis", &url], &[("SCANFLEET_HISTORY_PREFIX", &prefix)]);
    // The history's keys are in their own namespace, beside the result keys.
    let keys = Command::new("redis-cli")
        .args(["-u", &url, "--scan", "--pattern", &format!("{prefix}:*")])
        .output();
    if let Ok(k) = keys {
        let k = String::from_utf8_lossy(&k.stdout);
        assert!(k.contains(&format!("{prefix}:history:scans")), "{k}");
        assert!(k.contains(&format!("{prefix}:history:observed")), "{k}");
        for key in k.lines() {
            let _ = Command::new("redis-cli")
                .args(["-u", &url, "DEL", key])
                .output();
        }
    }
    // A scan id that is not in Redis: exit 2, saying where it looked.
    let o = scanfleet(
        &["findings", "sf-nope", "--redis", &url],
        &[("SCANFLEET_HISTORY_PREFIX", &prefix)],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("scan \"sf-nope\" is not in the history in Redis"),
        "{err}"
    );
}

#[test]
fn bad_inputs_exit_2_naming_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let check = |args: &[&str], want: &str| {
        let o = scanfleet(args, &[]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: expected {want:?} in {err}");
    };
    check(
        &["findings", "sf-missing", "--state-dir", d],
        "scan \"sf-missing\" is not in the history in",
    );
    check(
        &["diff", "sf-a", "sf-b", "--state-dir", d],
        "scan \"sf-a\" is not in the history",
    );
    check(
        &["export", "sf-missing", "--to", "jsonl", "--state-dir", d],
        "is not in the history",
    );
    check(&["findings", "a{b", "--state-dir", d], "scan id \"a{b\"");
    let bad = dir.path().join("bad-rules.toml");
    std::fs::write(
        &bad,
        "[[rule]]\nid = \"SF-BAD\"\nscore = 5.0\ntitle = \"x\"\nremediation = \"y\"\n[rule.match]\nproduct = \"(oops\"\n",
    )
    .unwrap();
    let b = bad.to_str().unwrap();
    check(
        &["findings", "sf-x", "--state-dir", d, "--rules", b],
        &format!("--rules {b}: rule SF-BAD: match.product: bad regex"),
    );
    std::fs::write(&bad, "[[rule]]\nid = \"SF-BAD\"\nscor = 5.0\n").unwrap();
    check(
        &["findings", "sf-x", "--state-dir", d, "--rules", b],
        &format!("--rules {b}: TOML parse error at line 3"),
    );
    check(
        &["findings", "sf-x", "--state-dir", d, "--rules", b],
        "unknown field `scor`",
    );
    // Missing history: a state directory that does not exist yet, or a file.
    let none = dir.path().join("never-used");
    check(
        &["findings", "sf-x", "--state-dir", none.to_str().unwrap()],
        &format!(
            "scan \"sf-x\" is not in the history in {} (it holds no scans yet",
            none.display()
        ),
    );
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    check(
        &[
            "diff",
            "sf-a",
            "sf-b",
            "--state-dir",
            file.to_str().unwrap(),
        ],
        &format!("--state-dir {}: is not a directory", file.display()),
    );
    let sup = dir.path().join("sup.toml");
    std::fs::write(&sup, "[[suppression]]\nid = \"no-why\"\nport = 22\n").unwrap();
    let s = sup.to_str().unwrap();
    check(
        &["findings", "sf-x", "--state-dir", d, "--suppressions", s],
        &format!("--suppressions {s}: suppression 1 (no-why): has no reason"),
    );
    std::fs::write(
        &sup,
        "[[suppression]]\nid = \"x\"\nreason = \"r\"\nport = 22\nexpires = \"soon\"\n",
    )
    .unwrap();
    check(
        &["findings", "sf-x", "--state-dir", d, "--suppressions", s],
        &format!("--suppressions {s}: suppression 1 (x): expires \"soon\" is not an RFC 3339 time"),
    );
    std::fs::write(
        &sup,
        "[[suppression]]\nid = \"x\"\nreason = \"r\"\nports = [22]\n",
    )
    .unwrap();
    check(
        &["findings", "sf-x", "--state-dir", d, "--suppressions", s],
        "unknown field `ports`",
    );
    // The scan refuses them before the first probe, and a bad --export too.
    check(
        &[
            "scan",
            "-t",
            "127.0.0.1",
            "-p",
            "1",
            "--state-dir",
            d,
            "--rules",
            b,
        ],
        "--rules",
    );
    check(
        &[
            "scan",
            "-t",
            "127.0.0.1",
            "-p",
            "1",
            "--state-dir",
            d,
            "--export",
            "pdf=x",
        ],
        "unknown export format \"pdf\"",
    );
    check(
        &[
            "scan",
            "-t",
            "127.0.0.1",
            "-p",
            "1",
            "--state-dir",
            d,
            "--export",
            "html=/nonexistent/r.html",
        ],
        "--export html=/nonexistent/r.html: directory",
    );
    assert!(
        !dir.path().join("scans").exists(),
        "nothing was scanned or recorded"
    );
    // A corrupt history file is named.
    let rec = dir.path().join("scans/sf-c");
    std::fs::create_dir_all(&rec).unwrap();
    std::fs::write(
        rec.join("scan.json"),
        "{\"format\":\"scanfleet-history\",\"version\":9}",
    )
    .unwrap();
    check(
        &["findings", "sf-c", "--state-dir", d],
        "scans/sf-c/scan.json: history format version 9",
    );
}

/// A suppression whose expiry has passed: a warning naming the file and the
/// suppression, exit 0, and the finding it matched is no longer suppressed; one
/// still valid beside it keeps suppressing.
#[test]
fn an_expired_suppression_warns_and_unsuppresses() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let telnet = Banner::start(b"\xff\xfd\x18\xff\xfd\x20login: ");
    let web = Banner::start(b"HTTP/1.0 200 OK\r\nServer: test\r\n\r\n");
    let inv = inventory(dir.path(), &[]);
    let ports = format!("{},{}", telnet.port, web.port);
    let id = scan(&inv, &ports, &["--state-dir", d], &[], &[]);
    let sup = dir.path().join("sup.toml");
    std::fs::write(
        &sup,
        format!(
            "[[suppression]]\nid = \"old-waiver\"\nreason = \"until the migration\"\nport = {}\nexpires = \"2020-01-31T00:00:00Z\"\n\n[[suppression]]\nid = \"current\"\nreason = \"reviewed\"\nport = {}\nexpires = \"2999-01-01T00:00:00Z\"\n",
            telnet.port, web.port
        ),
    )
    .unwrap();
    let s = sup.to_str().unwrap();
    let o = scanfleet(
        &[
            "findings",
            &id,
            "--format",
            "jsonl",
            "--state-dir",
            d,
            "--suppressions",
            s,
        ],
        &[],
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "scanfleet: warning: --suppressions {s}: suppression old-waiver expired at 2020-01-31T00:00:00Z; the findings it matched are no longer suppressed"
        )),
        "{err}"
    );
    assert!(!err.contains("current"), "{err}");
    let f: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(f.len(), 2, "{f:#?}");
    let expired = by_port(&f, telnet.port);
    assert!(expired.get("suppressed").is_none(), "{expired:#}");
    assert!(
        expired["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["code"] != "suppressed"),
        "{expired:#}"
    );
    let kept = by_port(&f, web.port);
    assert_eq!(kept["suppressed"]["rule"], "current", "{kept:#}");
    assert_eq!(kept["suppressed"]["reason"], "reviewed", "{kept:#}");
    // The export says the same.
    let o = scanfleet(
        &[
            "export",
            &id,
            "--to",
            "jsonl",
            "--state-dir",
            d,
            "--suppressions",
            s,
        ],
        &[],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("suppression old-waiver expired at"), "{err}");
}

/// The standard lab (`loadtest/lab.sh`, hosts 1-6), scanned embedded from its
/// scanner namespace into a temporary state directory: the lab's services get
/// the findings their rules say.
#[test]
fn lab_scan_findings() {
    let _turn = support::LAB.lock().unwrap_or_else(|p| p.into_inner());
    if std::env::var("SCANFLEET_LAB").as_deref() != Ok("1") || !support::lab_ready() {
        eprintln!("skipped: set SCANFLEET_LAB=1 (scripts/test.sh does) with the lab up");
        return;
    }
    let t = support::truth();
    let state = tempfile::tempdir().unwrap();
    let d = state.path().to_str().unwrap();
    let ns = |args: &[&str]| -> Output {
        Command::new("ip")
            .args([
                "netns",
                "exec",
                "sflab-scan",
                env!("CARGO_BIN_EXE_scanfleet"),
            ])
            .args(args)
            .env_remove("SCANFLEET_REDIS")
            .output()
            .unwrap()
    };
    let o = ns(&[
        "scan",
        "-i",
        t.inventory.to_str().unwrap(),
        "-p",
        "22,25,80,443,2222,6379,6380,8080,8081,9999",
        "--mode",
        "connect",
        "--format",
        "json",
        "--state-dir",
        d,
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let id = serde_json::from_str::<Value>(&out).unwrap()["scan_id"]
        .as_str()
        .unwrap()
        .to_string();
    let f = findings_json(&id, &["--state-dir", d], &[], &[]);
    let rule = |ip: &str, port: u16| -> String {
        f.iter()
            .find(|x| x["ip"] == ip && x["port"] == port)
            .unwrap_or_else(|| panic!("no finding {ip}:{port}"))["rules"][0]
            .as_str()
            .unwrap()
            .to_string()
    };
    // The lab's OpenSSH 9.2p1 banner is in regreSSHion's range.
    assert_eq!(rule("10.213.0.11", 22), "SF-OPENSSH-REGRESSHION");
    assert_eq!(
        rule("10.213.0.11", 8081),
        "SF-MGMT-CONSOLE",
        "its title says admin console"
    );
    assert!(rule("10.213.0.12", 6379).starts_with("SF-REDIS"));
    assert_eq!(rule("10.213.0.13", 443), "SF-TLS-SELF-SIGNED");
    assert_eq!(rule("10.213.0.11", 80), "SF-OPEN-PORT");
    // Ids carry the lab's region and account; the t2.nano host is not scanned.
    let any = &f[0];
    assert!(
        any["id"]
            .as_str()
            .unwrap()
            .starts_with("lab-1/000000000000/lab-t"),
        "{any:#}"
    );
    assert!(
        f.iter()
            .all(|x| !t.prohibited.contains(x["ip"].as_str().unwrap()))
    );
    let open = t
        .in_scope()
        .keys()
        .filter(|(_, p)| [22, 25, 80, 443, 2222, 6379, 6380, 8080, 8081, 9999].contains(p))
        .count();
    assert_eq!(f.len(), open, "one finding per open port");
}
