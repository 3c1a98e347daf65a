//! `scanfleet watch` end to end against moto: an EC2 state-change event on the
//! events queue makes the command describe the region again and report the new
//! instance. No scan traffic: without `--queue` it only reports.

mod aws_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use aws_support::{Ec2, Launch, MANAGEMENT, Moto};

#[test]
fn watch_reports_a_newly_running_instance() {
    let moto = Moto::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (ec2, subnet, queue_url) = rt.block_on(async {
        let sdk = moto.root("us-east-1").await;
        let ec2 = Ec2::new(&sdk).await;
        let subnet = ec2
            .vpc_with_subnet("10.30.0.0/16", "10.30.1.0/24", "us-east-1a")
            .await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let q = sqs
            .create_queue()
            .queue_name("ec2-events")
            .send()
            .await
            .unwrap();
        (ec2, subnet, q.queue_url().unwrap().to_string())
    });
    let mut child = Command::new(env!("CARGO_BIN_EXE_scanfleet"))
        .args([
            "watch",
            "--caller",
            "--regions",
            "us-east-1",
            "--endpoint-url",
            &moto.url,
        ])
        .args(["--events-queue", &queue_url, "--rediscover-every-secs", "0"])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .for_each(|l| drop(tx.send(l)))
    });
    std::thread::spawn(move || {
        BufReader::new(err)
            .lines()
            .map_while(Result::ok)
            .for_each(|l| drop(tx2.send(l)))
    });
    let wait_for = |needle: &str| -> Result<String, Vec<String>> {
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(45);
        while std::time::Instant::now() < deadline {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
                if l.contains(needle) {
                    return Ok(l);
                }
                seen.push(l);
            }
        }
        Err(seen)
    };
    let ready = wait_for("watching");
    assert!(ready.is_ok(), "watch did not start: {:?}", ready.err());

    let instance = rt.block_on(async {
        let id = ec2
            .launch(Launch::plain("new-1", &subnet, "10.30.1.7"))
            .await;
        let event = serde_json::json!({
            "version": "0", "id": "evt-1", "detail-type": "EC2 Instance State-change Notification",
            "source": "aws.ec2", "account": MANAGEMENT, "time": "2026-01-01T00:00:00Z", "region": "us-east-1",
            "resources": [], "detail": {"instance-id": id, "state": "running"}
        });
        let sqs = aws_sdk_sqs::Client::new(&moto.root("us-east-1").await);
        sqs.send_message().queue_url(&queue_url).message_body(event.to_string()).send().await.unwrap();
        id
    });
    let line = wait_for("\"changed\"");
    let _ = child.kill();
    let _ = child.wait();
    let line = line.unwrap_or_else(|seen| panic!("no change reported: {seen:?}"));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    let new: Vec<&str> = v["new"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x.as_str())
        .collect();
    assert_eq!(new, [instance.as_str()], "{line}");
}
