//! `scanfleet scan --discover aws` end to end: moto's EC2 holds instances whose
//! private IPs are the lab hosts' addresses, the scanner runs in the lab's
//! scanner namespace (reaching moto through a unix-socket relay), discovers
//! them, applies the AWS pre-authorized scope and scans the lab. The host that
//! plays a t2.nano must receive zero packets. Needs root.

mod aws_support;
mod support;

use std::process::Command;

use aws_support::{Ec2, LINUX, Launch, Moto};
use support::{LAB, lab_ready, lab_sh, packets, parse_open, truth};

#[test]
fn lab_scan_discover_aws_scans_exactly_the_discovered_lab() {
    let _turn = LAB.lock().unwrap_or_else(|p| p.into_inner());
    if !lab_ready() {
        return;
    }
    let t = truth();
    let moto = Moto::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let assets: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&t.inventory).unwrap()).unwrap();
    rt.block_on(async {
        let ec2 = Ec2::new(&moto.root("us-east-1").await).await;
        let subnet = ec2
            .vpc_with_subnet("10.213.0.0/16", "10.213.0.0/24", "us-east-1a")
            .await;
        for a in &assets {
            let name = a["id"].as_str().unwrap();
            ec2.launch(Launch {
                name,
                instance_type: a["instance_type"].as_str().unwrap_or("m5.large"),
                image: LINUX,
                subnet: &subnet,
                ip: a["private_ip"].as_str().unwrap(),
                groups: &[],
                tags: &[("role", a["tags"]["role"].as_str().unwrap_or("lab"))],
            })
            .await;
        }
    });
    let o = lab_sh(&["relay", &moto.port.to_string()]);
    assert!(
        o.status.success(),
        "relay: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    packets(6, true);
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            "sflab-scan",
            env!("CARGO_BIN_EXE_scanfleet"),
        ])
        .args([
            "scan",
            "--discover",
            "aws",
            "--caller",
            "--regions",
            "us-east-1",
            "--endpoint-url",
            &moto.url,
        ])
        .args(["-p", "1-10000", "--format", "jsonl", "--progress", "never"])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    let _ = lab_sh(&["relay-stop", &moto.port.to_string()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "scan --discover aws failed: {err}"
    );
    assert_eq!(
        parse_open(&out.stdout),
        t.in_scope(),
        "results differ from the ground truth; stderr: {err}"
    );
    assert!(
        err.contains("t2.nano"),
        "the t2.nano skip is not reported: {err}"
    );
    assert_eq!(packets(6, false), 0, "the t2.nano host received packets");
}

#[test]
fn scan_discover_aws_refuses_hand_typed_targets() {
    let out = Command::new(env!("CARGO_BIN_EXE_scanfleet"))
        .args(["scan", "--discover", "aws", "--target", "10.0.0.1"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
