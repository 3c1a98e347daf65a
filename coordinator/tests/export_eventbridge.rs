//! `eventbridge::put` against moto's EventBridge: a bus of the test's own, a rule
//! on Source `scanfleet` targeting an SQS queue, then exactly the findings at or
//! above the severity arrive on the queue, one event each, in batches of at most
//! ten (more than ten findings are sent).

#[path = "fixtures/export/findings.rs"]
mod fixture;

use std::collections::BTreeSet;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_eventbridge::types::Target;
use aws_sdk_sqs::config::Credentials;
use aws_sdk_sqs::types::QueueAttributeName;
use scanfleet_coordinator::export::eventbridge::{self, EventOptions};
use scanfleet_coordinator::findings::Severity;
use scanfleet_testkit::{moto_url, unique_name};

async fn sdk(url: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .http_client(scanfleet_common::aws::https_client())
        .load()
        .await
}

#[tokio::test]
async fn findings_at_or_above_the_severity_arrive_once_each() {
    // A shared moto is fine: the bus, rule and queue are this test's own.
    let url = moto_url();
    let sdk = sdk(url).await;
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let name = unique_name("sftest-export-eb");
    events.create_event_bus().name(&name).send().await.unwrap();
    let queue = sqs.create_queue().queue_name(&name).send().await.unwrap();
    let queue_url = queue.queue_url().unwrap().to_string();
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .unwrap();
    events
        .put_rule()
        .name(&name)
        .event_bus_name(&name)
        .event_pattern(r#"{"source":["scanfleet"],"detail-type":["scanfleet finding"]}"#)
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule(&name)
        .event_bus_name(&name)
        .targets(Target::builder().id("q").arn(&arn).build().unwrap())
        .send()
        .await
        .unwrap();

    // The fixture (critical telnet, high redis, medium rdp and ssh, a suppressed
    // low https) plus 12 high findings: 14 at or above high, over two batches.
    let mut scan = fixture::scan("exp-eb");
    for i in 0..12u16 {
        scan.add(fixture::finding(
            "exp-eb",
            "",
            &format!("10.3.0.{}", i + 1),
            9200,
            "SF-ELASTIC-NOAUTH",
            8.0,
            8.0,
            Some(fixture::service(
                "elasticsearch",
                "Elasticsearch",
                "7.17",
                "",
            )),
        ));
    }
    let want: BTreeSet<String> = scan
        .findings
        .iter()
        .filter(|f| f.severity >= Severity::High)
        .map(|f| f.id.clone())
        .collect();
    assert_eq!(want.len(), 14);
    let opts = EventOptions {
        endpoint_url: Some(url.to_string()),
        region: Some("us-east-1".into()),
        bus: Some(name.clone()),
        min_severity: Severity::High,
        max_attempts: 3,
    };
    let sent = eventbridge::put_with(&sdk, &opts, &scan.export())
        .await
        .unwrap();
    assert_eq!(sent, 14);

    // Read the queue until it is empty (bounded).
    let mut got = Vec::new();
    for _ in 0..20 {
        let out = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        if out.messages().is_empty() {
            break;
        }
        for m in out.messages() {
            let ev: serde_json::Value = serde_json::from_str(m.body().unwrap()).unwrap();
            assert_eq!(ev["source"], "scanfleet");
            assert_eq!(ev["detail-type"], "scanfleet finding");
            got.push(ev["detail"].clone());
            sqs.delete_message()
                .queue_url(&queue_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    let ids: Vec<String> = got
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 14, "one event per finding: {ids:?}");
    assert_eq!(ids.iter().cloned().collect::<BTreeSet<_>>(), want);
    // The detail is the finding as the jsonl export writes it.
    let telnet = got
        .iter()
        .find(|d| d["port"] == 23)
        .expect("the critical finding arrived");
    let f: scanfleet_coordinator::findings::Finding =
        serde_json::from_value(telnet.clone()).unwrap();
    assert_eq!(f, scan.findings[0]);

    // Nothing at or above critical but telnet; nothing at all above critical.
    let mut o = opts.clone();
    o.min_severity = Severity::Critical;
    assert_eq!(
        eventbridge::put_with(&sdk, &o, &scan.export())
            .await
            .unwrap(),
        1
    );
    let empty = fixture::Scan {
        findings: vec![],
        ..fixture::scan("exp-eb-none")
    };
    assert_eq!(
        eventbridge::put_with(&sdk, &opts, &empty.export())
            .await
            .unwrap(),
        0
    );

    sqs.delete_queue()
        .queue_url(&queue_url)
        .send()
        .await
        .unwrap();
}
