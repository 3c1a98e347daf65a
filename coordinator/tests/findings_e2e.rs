//! Issue 11's "done when", end to end through the `scanfleet` binary: a lab of
//! the test's own (`sff`, 10.219.0.0/24, two hosts from
//! loadtest/lab/manifest.findings-1) plays the EC2 estate moto holds (the
//! instances' private IPs are the lab hosts' addresses; an internet gateway, a
//! network ACL that denies 22 and security groups open to 0.0.0.0/0). The
//! scanner runs in the lab's scanner namespace, discovers the estate through a
//! relay to moto, scans and records the scan in a temporary state directory.
//! Then the lab takes manifest.findings-2 (t1's 8080 turns from http into ssh,
//! t1 starts smtp on 25, t2's https on 8443 stops) and a second scan follows.
//! Checked: the findings of both scans with their adjusted scores and reasons
//! (internet reachability from IGW, route, NACL and security group; a latent
//! exposure for 3389, which the security group opens and nothing listens on;
//! observed-but-unreachable for the ports the NACL or the groups close), the
//! `scanfleet diff` (new, gone, changed), and Security Hub in moto after
//! `scanfleet export SCAN --import` of each scan: created, updated, archived,
//! GetFindings holding exactly the expected set. Needs root and SCANFLEET_LAB=1.

mod aws_support;
mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};

use aws_support::{Ec2, LINUX, Launch, Moto, anywhere};
use serde_json::Value;

const PREFIX: &str = "sff";
const NET: &str = "10.219.0";
const T1: &str = "10.219.0.11";
const T2: &str = "10.219.0.12";
const PORTS: &str = "22,25,80,3389,6379,8080,8443";
const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";

fn manifest(n: u8) -> PathBuf {
    support::repo().join(format!("loadtest/lab/manifest.findings-{n}"))
}

/// `loadtest/lab.sh` on this test's own lab.
fn sff(manifest_n: u8, args: &[&str]) -> Output {
    Command::new(support::repo().join("loadtest/lab.sh"))
        .args(args)
        .env("SFLAB_PREFIX", PREFIX)
        .env("SFLAB_NET", NET)
        .env("SFLAB_MANIFEST", manifest(manifest_n))
        .output()
        .expect("run lab.sh")
}

fn ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Brings the lab to a manifest and takes it down when dropped.
struct Lab;

impl Lab {
    fn apply(n: u8) {
        ok(
            &sff(n, &["up", "2"]),
            &format!("lab.sh up 2 (manifest {n})"),
        );
        ok(&sff(n, &["status"]), "lab.sh status");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = sff(1, &["down"]);
    }
}

fn aws_env(c: &mut Command) -> &mut Command {
    c.env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("SCANFLEET_REDIS")
        .env_remove("SCANFLEET_STATE_DIR")
        .env_remove("SCANFLEET_QUEUE")
        .env_remove("AWS_ENDPOINT_URL")
}

/// `scanfleet` on the host (reads the history, talks to moto directly).
fn scanfleet(args: &[&str]) -> Output {
    aws_env(&mut Command::new(env!("CARGO_BIN_EXE_scanfleet")))
        .args(args)
        .output()
        .expect("run scanfleet")
}

fn stdout_ok(o: &Output, what: &str) -> String {
    ok(o, what);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// An embedded scan of the discovered estate from the lab's scanner namespace;
/// returns the scan id.
fn scan(moto: &Moto, state: &str) -> String {
    let o = aws_env(Command::new("ip").args([
        "netns",
        "exec",
        &format!("{PREFIX}-scan"),
        env!("CARGO_BIN_EXE_scanfleet"),
    ]))
    .args([
        "scan",
        "--discover",
        "aws",
        "--caller",
        "--regions",
        REGION,
        "--endpoint-url",
        &moto.url,
        "-p",
        PORTS,
        "--mode",
        "connect",
        "--format",
        "json",
        "--progress",
        "never",
        "--state-dir",
        state,
    ])
    .output()
    .unwrap();
    let out = stdout_ok(&o, "scan --discover aws");
    let v: Value = serde_json::from_str(&out).expect("scan json");
    v["scan_id"].as_str().expect("scan_id").to_string()
}

/// The findings of a scan, by (ip, port).
fn findings(scan: &str, state: &str) -> BTreeMap<(String, u64), Value> {
    let out = stdout_ok(
        &scanfleet(&["findings", scan, "--format", "jsonl", "--state-dir", state]),
        "findings",
    );
    out.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                (
                    v["ip"].as_str().unwrap().to_string(),
                    v["port"].as_u64().unwrap(),
                ),
                v,
            )
        })
        .collect()
}

/// What a finding must be: kind, its rule, score, severity and the codes of
/// its reasons in order, with their deltas.
struct Want<'a> {
    ip: &'a str,
    port: u64,
    kind: &'a str,
    service: Option<&'a str>,
    rule: &'a str,
    score: f64,
    severity: &'a str,
    reasons: &'a [(&'a str, f64)],
}

fn check(got: &BTreeMap<(String, u64), Value>, want: &[Want<'_>], ids: &BTreeMap<&str, String>) {
    let keys: Vec<(String, u64)> = want.iter().map(|w| (w.ip.to_string(), w.port)).collect();
    assert_eq!(
        got.keys().cloned().collect::<Vec<_>>(),
        {
            let mut k = keys.clone();
            k.sort();
            k
        },
        "the set of findings: {got:#?}"
    );
    for w in want {
        let f = &got[&(w.ip.to_string(), w.port)];
        let ctx = format!("{}:{} {f:#}", w.ip, w.port);
        assert_eq!(
            f["id"],
            format!("{REGION}/{ACCOUNT}/{}/tcp/{}", ids[w.ip], w.port),
            "{ctx}"
        );
        assert_eq!(f["kind"], w.kind, "{ctx}");
        assert_eq!(f["service"]["name"].as_str(), w.service, "{ctx}");
        assert_eq!(f["rules"][0], w.rule, "{ctx}");
        assert_eq!(f["score"].as_f64(), Some(w.score), "{ctx}");
        assert_eq!(f["severity"], w.severity, "{ctx}");
        let reasons: Vec<(String, f64)> = f["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["code"].as_str().unwrap().to_string(),
                    r["delta"].as_f64().unwrap(),
                )
            })
            .collect();
        let wanted: Vec<(String, f64)> =
            w.reasons.iter().map(|(c, d)| (c.to_string(), *d)).collect();
        assert_eq!(reasons, wanted, "{ctx}");
        assert_eq!(
            f["internet_reachable"],
            w.reasons.iter().any(|(c, _)| *c == "internet-reachable"),
            "{ctx}"
        );
    }
}

/// The reason with `code` of a finding.
fn reason<'a>(f: &'a Value, code: &str) -> &'a str {
    f["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["code"] == code)
        .unwrap_or_else(|| panic!("no {code} reason: {f:#}"))["text"]
        .as_str()
        .unwrap()
}

/// Every finding Security Hub in moto holds: id -> (record state, generator,
/// updated at).
async fn held(moto: &Moto) -> BTreeMap<String, (String, String, String)> {
    let hub = aws_sdk_securityhub::Client::new(&moto.root(REGION).await);
    let mut out = BTreeMap::new();
    let mut token = None;
    for _ in 0..100 {
        let page = hub
            .get_findings()
            .max_results(100)
            .set_next_token(token)
            .send()
            .await
            .expect("GetFindings");
        for f in page.findings() {
            out.insert(
                f.id.clone().unwrap_or_default(),
                (
                    f.record_state
                        .as_ref()
                        .map_or("", |s| s.as_str())
                        .to_string(),
                    f.generator_id.clone().unwrap_or_default(),
                    f.updated_at.clone().unwrap_or_default(),
                ),
            );
        }
        token = page
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    out
}

fn import(scan: &str, state: &str, moto: &Moto) -> String {
    let o = scanfleet(&[
        "export",
        scan,
        "--import",
        "--region",
        REGION,
        "--endpoint-url",
        &moto.url,
        "--state-dir",
        state,
    ]);
    ok(&o, "export --import");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn lab_and_moto_two_scans_findings_diff_and_security_hub() {
    let _turn = support::LAB.lock().unwrap_or_else(|p| p.into_inner());
    if std::env::var("SCANFLEET_LAB").as_deref() != Ok("1") || !support::is_root() {
        eprintln!("skipped: needs root and SCANFLEET_LAB=1 (scripts/test.sh sets it)");
        return;
    }
    let lab = Lab;
    Lab::apply(1);
    let moto = Moto::start();
    let rt = tokio::runtime::Runtime::new().unwrap();

    // The estate: one public subnet (default route to an internet gateway, a
    // network ACL that denies 22 and allows the rest of TCP), t1 in a group
    // open to the world on 22, 80 and 8080, t2 in one open on 6379 and 3389;
    // both with an Elastic IP.
    let (ids, igw, rtb, acl, sg_web, sg_cache, eips) = rt.block_on(async {
        let ec2 = Ec2::new(&moto.root(REGION).await).await;
        let vpc = ec2.vpc("10.219.0.0/16").await;
        let subnet = ec2.subnet(&vpc, "10.219.0.0/24", "us-east-1a").await;
        let (igw, rtb) = ec2.public_route(&vpc, &subnet).await;
        let acl = ec2
            .acl(
                &vpc,
                &subnet,
                &[
                    (100, false, "6", Some((22, 22))),
                    (200, true, "6", Some((0, 65535))),
                ],
            )
            .await;
        let sg_web = ec2
            .group(
                &vpc,
                "web",
                vec![
                    anywhere("tcp", 22, 22),
                    anywhere("tcp", 80, 80),
                    anywhere("tcp", 8080, 8080),
                ],
            )
            .await;
        let sg_cache = ec2
            .group(
                &vpc,
                "cache",
                vec![anywhere("tcp", 6379, 6379), anywhere("tcp", 3389, 3389)],
            )
            .await;
        let i1 = ec2
            .launch(Launch {
                name: "sff-t1",
                instance_type: "m5.large",
                image: LINUX,
                subnet: &subnet,
                ip: T1,
                groups: &[sg_web.as_str()],
                tags: &[("role", "web")],
            })
            .await;
        let i2 = ec2
            .launch(Launch {
                name: "sff-t2",
                instance_type: "r5.xlarge",
                image: LINUX,
                subnet: &subnet,
                ip: T2,
                groups: &[sg_cache.as_str()],
                tags: &[("role", "cache")],
            })
            .await;
        let e1 = ec2.eip(&i1).await;
        let e2 = ec2.eip(&i2).await;
        (
            BTreeMap::from([(T1, i1), (T2, i2)]),
            igw,
            rtb,
            acl,
            sg_web,
            sg_cache,
            BTreeMap::from([(T1, e1), (T2, e2)]),
        )
    });
    ok(
        &sff(1, &["relay", &moto.port.to_string()]),
        "lab.sh relay (moto)",
    );
    let state_dir = tempfile::tempdir().unwrap();
    let state = state_dir.path().to_str().unwrap();

    // ------------------------------------------------------------ scan 1
    let s1 = scan(&moto, state);
    let f1 = findings(&s1, state);
    // Rules (data/findings-rules.toml): the lab's OpenSSH 9.2p1 is in
    // regreSSHion's range (8.1), redis answers without auth (9.0), the https
    // certificate is self-signed (4.0), a plain port 2.0, RDP 7.5; internet
    // reachability +2.0, a latent exposure -3.0.
    let reachable = ("internet-reachable", 2.0);
    let unreachable = ("observed-but-unreachable", 0.0);
    check(
        &f1,
        &[
            Want {
                ip: T1,
                port: 22,
                kind: "open-port",
                service: Some("ssh"),
                rule: "SF-OPENSSH-REGRESSHION",
                score: 8.1,
                severity: "high",
                reasons: &[("SF-OPENSSH-REGRESSHION", 8.1), unreachable],
            },
            Want {
                ip: T1,
                port: 80,
                kind: "open-port",
                service: Some("http"),
                rule: "SF-OPEN-PORT",
                score: 4.0,
                severity: "medium",
                reasons: &[("SF-OPEN-PORT", 2.0), reachable],
            },
            Want {
                ip: T1,
                port: 8080,
                kind: "open-port",
                service: Some("http"),
                rule: "SF-OPEN-PORT",
                score: 4.0,
                severity: "medium",
                reasons: &[("SF-OPEN-PORT", 2.0), reachable],
            },
            Want {
                ip: T2,
                port: 3389,
                kind: "latent-exposure",
                service: None,
                rule: "SF-RDP",
                score: 6.5,
                severity: "medium",
                reasons: &[("SF-RDP", 7.5), reachable, ("latent-exposure", -3.0)],
            },
            Want {
                ip: T2,
                port: 6379,
                kind: "open-port",
                service: Some("redis"),
                rule: "SF-REDIS-NOAUTH",
                score: 10.0,
                severity: "critical",
                reasons: &[("SF-REDIS-NOAUTH", 9.0), reachable],
            },
            Want {
                ip: T2,
                port: 8443,
                kind: "open-port",
                service: Some("https"),
                rule: "SF-TLS-SELF-SIGNED",
                score: 4.0,
                severity: "medium",
                reasons: &[("SF-TLS-SELF-SIGNED", 4.0), unreachable],
            },
        ],
        &ids,
    );
    // The reasons name the path discovery found: Elastic IP, gateway, route
    // table, ACL and group; the NACL's deny of 22 is why 22 is unreachable.
    let web = &f1[&(T1.to_string(), 80)];
    assert_eq!(
        reason(web, "internet-reachable"),
        format!(
            "reachable from the internet at {}:80 via {igw} (route table {rtb}, network ACL {acl}, security group {sg_web})",
            eips[T1]
        )
    );
    let path: Vec<&str> = web["network_path"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        path,
        [
            igw.as_str(),
            rtb.as_str(),
            acl.as_str(),
            sg_web.as_str(),
            ids[T1].as_str()
        ]
    );
    let rdp = &f1[&(T2.to_string(), 3389)];
    assert!(
        reason(rdp, "internet-reachable").contains(&format!("{}:3389", eips[T2]))
            && reason(rdp, "internet-reachable").contains(&sg_cache),
        "{rdp:#}"
    );
    assert_eq!(rdp["state"], "closed", "{rdp:#}");
    assert!(reason(&f1[&(T1.to_string(), 22)], "observed-but-unreachable").contains("investigate"));

    // Security Hub, first import: the six findings, created ACTIVE.
    let err = import(&s1, state, &moto);
    let hub1 = rt.block_on(held(&moto));
    let id_of = |ip: &str, port: u64| format!("{REGION}/{ACCOUNT}/{}/tcp/{port}", ids[ip]);
    let all1: Vec<String> = [
        (T1, 22),
        (T1, 80),
        (T1, 8080),
        (T2, 3389),
        (T2, 6379),
        (T2, 8443),
    ]
    .iter()
    .map(|(ip, p)| id_of(ip, *p))
    .collect();
    assert_eq!(
        hub1.keys().cloned().collect::<Vec<_>>(),
        {
            let mut a = all1.clone();
            a.sort();
            a
        },
        "after the first import ({err}): {hub1:#?}"
    );
    assert!(hub1.values().all(|(s, _, _)| s == "ACTIVE"), "{hub1:#?}");
    assert_eq!(hub1[&id_of(T1, 8080)].1, "scanfleet/SF-OPEN-PORT");

    // ------------------------------------------------------------ scan 2
    Lab::apply(2);
    let s2 = scan(&moto, state);
    let _ = sff(1, &["relay-stop", &moto.port.to_string()]);
    assert_ne!(s1, s2);
    let f2 = findings(&s2, state);
    check(
        &f2,
        &[
            Want {
                ip: T1,
                port: 22,
                kind: "open-port",
                service: Some("ssh"),
                rule: "SF-OPENSSH-REGRESSHION",
                score: 8.1,
                severity: "high",
                reasons: &[("SF-OPENSSH-REGRESSHION", 8.1), unreachable],
            },
            Want {
                ip: T1,
                port: 25,
                kind: "open-port",
                service: Some("smtp"),
                rule: "SF-OPEN-PORT",
                score: 2.0,
                severity: "low",
                reasons: &[("SF-OPEN-PORT", 2.0), unreachable],
            },
            Want {
                ip: T1,
                port: 80,
                kind: "open-port",
                service: Some("http"),
                rule: "SF-OPEN-PORT",
                score: 4.0,
                severity: "medium",
                reasons: &[("SF-OPEN-PORT", 2.0), reachable],
            },
            Want {
                ip: T1,
                port: 8080,
                kind: "open-port",
                service: Some("ssh"),
                rule: "SF-OPENSSH-REGRESSHION",
                score: 10.0,
                severity: "critical",
                reasons: &[("SF-OPENSSH-REGRESSHION", 8.1), reachable],
            },
            Want {
                ip: T2,
                port: 3389,
                kind: "latent-exposure",
                service: None,
                rule: "SF-RDP",
                score: 6.5,
                severity: "medium",
                reasons: &[("SF-RDP", 7.5), reachable, ("latent-exposure", -3.0)],
            },
            Want {
                ip: T2,
                port: 6379,
                kind: "open-port",
                service: Some("redis"),
                rule: "SF-REDIS-NOAUTH",
                score: 10.0,
                severity: "critical",
                reasons: &[("SF-REDIS-NOAUTH", 9.0), reachable],
            },
        ],
        &ids,
    );
    // A port open in both keeps its first-observed time.
    let (a, b) = (&f1[&(T1.to_string(), 80)], &f2[&(T1.to_string(), 80)]);
    assert_eq!(a["first_observed_unix_ms"], b["first_observed_unix_ms"]);
    assert!(b["last_observed_unix_ms"].as_u64() > a["last_observed_unix_ms"].as_u64());

    // ------------------------------------------------------------ diff
    let d: Value = serde_json::from_str(&stdout_ok(
        &scanfleet(&["diff", &s1, &s2, "--format", "json", "--state-dir", state]),
        "diff --format json",
    ))
    .unwrap();
    let view = |v: &Value| {
        (
            v["id"].as_str().unwrap().to_string(),
            v["service"].as_str().unwrap_or("-").to_string(),
        )
    };
    let list =
        |k: &str| -> Vec<(String, String)> { d[k].as_array().unwrap().iter().map(view).collect() };
    assert_eq!(list("new"), [(id_of(T1, 25), "smtp".into())], "{d:#}");
    assert_eq!(list("gone"), [(id_of(T2, 8443), "https".into())], "{d:#}");
    let changed: Vec<_> = d["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (view(&c["old"]), view(&c["new"])))
        .collect();
    assert_eq!(
        changed,
        [(
            (id_of(T1, 8080), "http".into()),
            (id_of(T1, 8080), "ssh".into())
        )],
        "{d:#}"
    );
    assert_eq!(d["changed"][0]["new"]["product"], "OpenSSH", "{d:#}");
    assert_eq!(d["unchanged"], 3, "22, 80 and 6379: {d:#}");
    let table = stdout_ok(
        &scanfleet(&["diff", &s1, &s2, "--state-dir", state]),
        "diff",
    );
    assert!(
        table.contains("1 new, 1 gone, 1 changed, 3 unchanged"),
        "{table}"
    );

    // Security Hub, second import: 25 created, 8080 updated (same id, now
    // the ssh rule, a newer UpdatedAt), the rest updated, 8443 archived.
    let err = import(&s2, state, &moto);
    let hub2 = rt.block_on(held(&moto));
    let mut want: Vec<String> = all1.clone();
    want.push(id_of(T1, 25));
    want.sort();
    assert_eq!(
        hub2.keys().cloned().collect::<Vec<_>>(),
        want,
        "after the second import ({err}): {hub2:#?}"
    );
    for (id, (st, _, _)) in &hub2 {
        let expect = if *id == id_of(T2, 8443) {
            "ARCHIVED"
        } else {
            "ACTIVE"
        };
        assert_eq!(st, expect, "{id}: {hub2:#?}");
    }
    let (_, g8080, u8080) = &hub2[&id_of(T1, 8080)];
    assert_eq!(g8080, "scanfleet/SF-OPENSSH-REGRESSHION");
    assert!(
        u8080 > &hub1[&id_of(T1, 8080)].2,
        "UpdatedAt moves on: {u8080} vs {}",
        hub1[&id_of(T1, 8080)].2
    );
    drop(lab);
}
