//! Continuous discovery against a private moto server: EC2 state-change events
//! (EventBridge's JSON) read off an SQS queue make the instance's account-region
//! be described again within seconds, and a scheduled rediscovery reports what
//! appeared and disappeared.

mod aws_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_support::*;
use scanfleet_coordinator::discovery::Discovery;
use scanfleet_coordinator::discovery::aws::{
    AccountRef, AccountSource, AwsDiscoverer, AwsDiscoveryOptions,
};
use scanfleet_coordinator::discovery::events::{WatchEvent, WatchOptions, watch};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn event(account: &str, instance: &str, state: &str) -> String {
    serde_json::json!({
        "version": "0",
        "id": format!("evt-{instance}-{state}"),
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": account,
        "time": "2026-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [format!("arn:aws:ec2:us-east-1:{account}:instance/{instance}")],
        "detail": {"instance-id": instance, "state": state}
    })
    .to_string()
}

async fn next(rx: &mut mpsc::Receiver<WatchEvent>) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("a watch event within 30 s")
        .expect("watch still running")
}

struct Rig {
    moto: Moto,
    account: String,
    ec2: Ec2,
    subnet: String,
    discoverer: Arc<AwsDiscoverer>,
    initial: Discovery,
}

async fn rig() -> Rig {
    let moto = Moto::start();
    let account = organization(&moto, &["app"]).await.remove(0);
    let ec2 = Ec2::new(&moto.account(&account, "us-east-1").await).await;
    let subnet = ec2
        .vpc_with_subnet("10.20.0.0/16", "10.20.1.0/24", "us-east-1a")
        .await;
    ec2.launch(Launch::plain("old-1", &subnet, "10.20.1.10"))
        .await;
    let opts = AwsDiscoveryOptions {
        accounts: AccountSource::List(vec![AccountRef {
            account_id: account.clone(),
            name: None,
        }]),
        regions: Some(vec!["us-east-1".into()]),
        describe_images: false,
        ..AwsDiscoveryOptions::default()
    };
    let discoverer =
        Arc::new(AwsDiscoverer::with_sdk_config(opts, &moto.root("us-east-1").await).unwrap());
    let initial = discoverer.discover().await.unwrap();
    assert_eq!(initial.assets.len(), 1);
    Rig {
        moto,
        account,
        ec2,
        subnet,
        discoverer,
        initial,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_change_events_rediscover_the_region_within_seconds() {
    let r = rig().await;
    let sqs = aws_sdk_sqs::Client::new(&r.moto.root("us-east-1").await);
    let queue = sqs
        .create_queue()
        .queue_name("scanfleet-ec2-events")
        .send()
        .await
        .unwrap();
    let queue_url = queue.queue_url().unwrap().to_string();

    let (tx, mut rx) = mpsc::channel(16);
    let shutdown = CancellationToken::new();
    let opts = WatchOptions {
        wait: Duration::from_secs(1),
        rediscover_every: None,
        ..WatchOptions::new(&queue_url)
    };
    let task = tokio::spawn(watch(
        r.discoverer.clone(),
        r.initial.clone(),
        opts,
        sqs.clone(),
        tx,
        shutdown.clone(),
    ));

    // A new instance starts: it is in the inventory, with its zone, seconds later.
    let new = r
        .ec2
        .launch(Launch {
            instance_type: "c5.large",
            ..Launch::plain("new-1", &r.subnet, "10.20.1.20")
        })
        .await;
    let sent = Instant::now();
    sqs.send_message()
        .queue_url(&queue_url)
        .message_body(event(&r.account, &new, "running"))
        .send()
        .await
        .unwrap();
    let WatchEvent::Changed {
        location,
        events,
        diff,
    } = next(&mut rx).await
    else {
        panic!("expected a change")
    };
    let latency = sent.elapsed();
    assert!(latency < Duration::from_secs(10), "took {latency:?}");
    assert_eq!(
        (location.account_id.as_str(), location.region.as_str()),
        (r.account.as_str(), "us-east-1")
    );
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].instance_id, new);
    assert_eq!(diff.new.len(), 1, "{diff:?}");
    assert!(diff.gone.is_empty() && diff.changed.is_empty(), "{diff:?}");
    let a = &diff.new[0];
    assert_eq!(
        (a.id.as_str(), a.private_ip.to_string(), a.state.as_deref()),
        (new.as_str(), "10.20.1.20".to_string(), Some("running"))
    );
    assert!(
        a.zone
            .as_deref()
            .is_some_and(|z| z.starts_with("zone-vpc-"))
    );
    assert!(a.exposure.is_some());

    // Not an EC2 event: dropped with its reason, deleted from the queue.
    sqs.send_message()
        .queue_url(&queue_url)
        .message_body("{\"source\":\"aws.s3\"}")
        .send()
        .await
        .unwrap();
    let WatchEvent::Dropped { reason, .. } = next(&mut rx).await else {
        panic!("expected a drop")
    };
    assert!(
        reason.contains("not an EC2 instance state-change event"),
        "{reason}"
    );

    // An instance stops: it changes.
    let old = &r.initial.assets[0].id;
    r.ec2.stop(old).await;
    sqs.send_message()
        .queue_url(&queue_url)
        .message_body(event(&r.account, old, "stopped"))
        .send()
        .await
        .unwrap();
    let WatchEvent::Changed { diff, .. } = next(&mut rx).await else {
        panic!("expected a change")
    };
    assert_eq!(
        diff.changed
            .iter()
            .map(|a| (a.id.as_str(), a.state.as_deref()))
            .collect::<Vec<_>>(),
        [(old.as_str(), Some("stopped"))]
    );

    // Every handled message was deleted.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let attrs = attrs.attributes().unwrap();
    for k in [
        aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages,
        aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
    ] {
        assert_eq!(attrs.get(&k).map(String::as_str), Some("0"), "{k:?}");
    }

    shutdown.cancel();
    let last = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("watch stops on shutdown")
        .unwrap()
        .unwrap();
    assert_eq!(last.assets.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_rediscovery_reports_new_and_gone() {
    let r = rig().await;
    let sqs = aws_sdk_sqs::Client::new(&r.moto.root("us-east-1").await);
    let queue = sqs.create_queue().queue_name("quiet").send().await.unwrap();
    let queue_url = queue.queue_url().unwrap().to_string();
    let new = r
        .ec2
        .launch(Launch::plain("new-2", &r.subnet, "10.20.1.30"))
        .await;
    r.ec2
        .0
        .terminate_instances()
        .instance_ids(&r.initial.assets[0].id)
        .send()
        .await
        .unwrap();

    let (tx, mut rx) = mpsc::channel(16);
    let shutdown = CancellationToken::new();
    let opts = WatchOptions {
        wait: Duration::from_secs(1),
        rediscover_every: Some(Duration::from_secs(2)),
        ..WatchOptions::new(&queue_url)
    };
    let task = tokio::spawn(watch(
        r.discoverer.clone(),
        r.initial.clone(),
        opts,
        sqs,
        tx,
        shutdown.clone(),
    ));
    let WatchEvent::Rediscovered { diff, failures } = next(&mut rx).await else {
        panic!("expected a rediscovery")
    };
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(
        diff.new.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        [new.as_str()]
    );
    // A terminated instance is gone from the inventory (moto, unlike EC2, still
    // shows its address; EC2 lists it for an hour either way).
    assert_eq!(
        diff.gone.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        [r.initial.assets[0].id.as_str()]
    );
    assert!(diff.changed.is_empty(), "{diff:?}");
    shutdown.cancel();
    task.await.unwrap().unwrap();
}
