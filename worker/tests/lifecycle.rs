//! The terminating lifecycle hook, against moto's autoscaling API on 127.0.0.1.
//!
//! moto runs the group (CreateLaunchConfiguration, CreateAutoScalingGroup,
//! PutLifecycleHook, DescribeAutoScalingInstances with a real instance of it) but
//! never puts an instance into `Terminating:Wait` and has no
//! RecordLifecycleActionHeartbeat or CompleteLifecycleAction. So the worker talks
//! to moto through a small proxy on 127.0.0.1 that forwards every call to moto,
//! reports the instance as `Terminating:Wait` once the test says so, and answers
//! and records the two hook calls itself. Nothing leaves 127.0.0.0/8.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_autoscaling::config::{BehaviorVersion, Credentials, Region};
use scanfleet_testkit::Moto;
use scanfleet_worker::lifecycle::{Lifecycle, LifecycleConfig, Outcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const HOOK: &str = "scanfleet-drain";

/// One call the proxy saw: its action and its form parameters.
type Call = (String, HashMap<String, String>);

#[derive(Default)]
struct Fake {
    terminating: AtomicBool,
    calls: Mutex<Vec<Call>>,
}

impl Fake {
    fn calls(&self, action: &str) -> Vec<HashMap<String, String>> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(a, _)| a == action)
            .map(|(_, p)| p.clone())
            .collect()
    }

    fn actions(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(a, _)| a.clone())
            .collect()
    }
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form(body: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (url_decode(k), url_decode(v)))
        .collect()
}

/// Read one HTTP/1.1 message (head and Content-Length body) off `s`.
async fn read_message(s: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((head, body))
}

/// Head lines without the hop-by-hop and length headers we rewrite.
fn kept_headers(head: &str) -> Vec<&str> {
    head.lines()
        .skip(1)
        .filter(|l| {
            let k = l
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            !matches!(
                k.as_str(),
                "connection" | "content-length" | "transfer-encoding" | "keep-alive"
            )
        })
        .collect()
}

async fn respond(s: &mut TcpStream, status: &str, headers: &[&str], body: &[u8]) {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let _ = s.write_all(out.as_bytes()).await;
    let _ = s.write_all(body).await;
    let _ = s.shutdown().await;
}

fn hook_answer(action: &str) -> Vec<u8> {
    format!(
        "<{action}Response xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\">\
         <{action}Result/><ResponseMetadata><RequestId>proxy</RequestId></ResponseMetadata>\
         </{action}Response>"
    )
    .into_bytes()
}

async fn handle(mut s: TcpStream, moto: u16, fake: Arc<Fake>) {
    let Some((head, body)) = read_message(&mut s).await else {
        return;
    };
    let params = form(&body);
    let action = params.get("Action").cloned().unwrap_or_default();
    if !action.is_empty() {
        fake.calls
            .lock()
            .unwrap()
            .push((action.clone(), params.clone()));
    }
    if matches!(
        action.as_str(),
        "RecordLifecycleActionHeartbeat" | "CompleteLifecycleAction"
    ) {
        let answer = hook_answer(&action);
        respond(&mut s, "200 OK", &["Content-Type: text/xml"], &answer).await;
        return;
    }
    // Everything else goes to moto, as it came.
    let Ok(mut up) = TcpStream::connect(("127.0.0.1", moto)).await else {
        respond(&mut s, "502 Bad Gateway", &[], b"moto is down").await;
        return;
    };
    let request_line = head.lines().next().unwrap_or_default();
    let mut req = format!("{request_line}\r\n");
    for h in kept_headers(&head) {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    if up.write_all(req.as_bytes()).await.is_err() || up.write_all(&body).await.is_err() {
        return;
    }
    let Some((rhead, mut rbody)) = read_message(&mut up).await else {
        return;
    };
    if action == "DescribeAutoScalingInstances" && fake.terminating.load(Ordering::SeqCst) {
        let text = String::from_utf8_lossy(&rbody).replace(
            "<LifecycleState>InService</LifecycleState>",
            "<LifecycleState>Terminating:Wait</LifecycleState>",
        );
        rbody = text.into_bytes();
    }
    let status = rhead
        .lines()
        .next()
        .and_then(|l| l.split_once(' ').map(|(_, s)| s.to_string()))
        .unwrap_or_else(|| "502 Bad Gateway".into());
    respond(&mut s, &status, &kept_headers(&rhead), &rbody).await;
}

/// The proxy on 127.0.0.1; returns its endpoint URL.
async fn proxy(moto: u16, fake: Arc<Fake>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            tokio::spawn(handle(s, moto, fake.clone()));
        }
    });
    format!("http://127.0.0.1:{port}")
}

fn autoscaling(endpoint: &str) -> aws_sdk_autoscaling::Client {
    let conf = aws_sdk_autoscaling::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .endpoint_url(endpoint)
        .http_client(scanfleet_common::aws::https_client())
        .build();
    aws_sdk_autoscaling::Client::from_conf(conf)
}

/// A one-instance group with the terminating hook, in moto; its instance id.
async fn group(moto: &Moto, name: &str) -> String {
    let c = autoscaling(&moto.url);
    c.create_launch_configuration()
        .launch_configuration_name(format!("{name}-lc"))
        .image_id("ami-12c6146b")
        .instance_type("c6in.large")
        .send()
        .await
        .expect("CreateLaunchConfiguration");
    c.create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_configuration_name(format!("{name}-lc"))
        .min_size(1)
        .max_size(1)
        .desired_capacity(1)
        .availability_zones("us-east-1a")
        .send()
        .await
        .expect("CreateAutoScalingGroup");
    c.put_lifecycle_hook()
        .auto_scaling_group_name(name)
        .lifecycle_hook_name(HOOK)
        .lifecycle_transition("autoscaling:EC2_INSTANCE_TERMINATING")
        .heartbeat_timeout(300)
        .default_result("CONTINUE")
        .send()
        .await
        .expect("PutLifecycleHook");
    let hooks = c
        .describe_lifecycle_hooks()
        .auto_scaling_group_name(name)
        .send()
        .await
        .expect("DescribeLifecycleHooks");
    assert_eq!(hooks.lifecycle_hooks().len(), 1);
    let g = c
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .expect("DescribeAutoScalingGroups");
    let id = g.auto_scaling_groups()[0].instances()[0]
        .instance_id()
        .expect("an instance id")
        .to_string();
    assert!(scanfleet_worker::lifecycle::is_instance_id(&id), "{id}");
    id
}

fn config(poll_ms: u64, heartbeat_ms: u64) -> LifecycleConfig {
    LifecycleConfig {
        hook: HOOK.into(),
        instance_id: None,
        poll: Duration::from_millis(poll_ms),
        heartbeat: Duration::from_millis(heartbeat_ms),
    }
}

async fn within<F: std::future::Future>(secs: u64, what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not within {secs} s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminating_wait_drains_sends_heartbeats_then_completes_continue() {
    let moto = Moto::start();
    let id = group(&moto, "sf-lc-drain").await;
    let fake = Arc::new(Fake::default());
    let endpoint = proxy(moto.port, fake.clone()).await;
    let lc = Lifecycle::new(autoscaling(&endpoint), &config(100, 250), id.clone());
    assert_eq!(
        lc.state().await.unwrap(),
        Some(("InService".into(), "sf-lc-drain".into()))
    );

    let (shutdown, drained) = (CancellationToken::new(), CancellationToken::new());
    let task = {
        let (s, d) = (shutdown.clone(), drained.clone());
        tokio::spawn(async move { lc.guard(s, d).await })
    };
    // In service: the worker keeps working.
    within(10, "three polls", async {
        while fake.calls("DescribeAutoScalingInstances").len() < 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        !shutdown.is_cancelled(),
        "an instance in service must not drain"
    );
    let polls = fake.calls("DescribeAutoScalingInstances");
    assert!(
        polls
            .iter()
            .all(|p| p.get("InstanceIds.member.1") == Some(&id))
    );

    // Scale-in: the instance waits on the hook, the worker drains.
    fake.terminating.store(true, Ordering::SeqCst);
    within(5, "shutdown after Terminating:Wait", shutdown.cancelled()).await;
    // Draining takes a while: heartbeats, and no completion before it is done.
    within(10, "two heartbeats while draining", async {
        while fake.calls("RecordLifecycleActionHeartbeat").len() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        fake.calls("CompleteLifecycleAction").is_empty(),
        "completed before drained"
    );
    let beats_while_draining = fake.calls("RecordLifecycleActionHeartbeat").len();
    drained.cancel();
    let outcome = within(5, "guard end", task).await.unwrap().unwrap();
    let Outcome::Completed { group, heartbeats } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(group, "sf-lc-drain");
    assert!(heartbeats as usize >= beats_while_draining);

    let expect = |p: &HashMap<String, String>| {
        assert_eq!(
            p.get("AutoScalingGroupName").map(String::as_str),
            Some("sf-lc-drain")
        );
        assert_eq!(p.get("LifecycleHookName").map(String::as_str), Some(HOOK));
        assert_eq!(p.get("InstanceId"), Some(&id));
    };
    fake.calls("RecordLifecycleActionHeartbeat")
        .iter()
        .for_each(expect);
    let completes = fake.calls("CompleteLifecycleAction");
    assert_eq!(completes.len(), 1, "{:?}", fake.actions());
    expect(&completes[0]);
    assert_eq!(
        completes[0]
            .get("LifecycleActionResult")
            .map(String::as_str),
        Some("CONTINUE")
    );
    assert_eq!(
        fake.actions().last().map(String::as_str),
        Some("CompleteLifecycleAction")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_in_service_completes_nothing() {
    let moto = Moto::start();
    let id = group(&moto, "sf-lc-sigterm").await;
    let fake = Arc::new(Fake::default());
    let endpoint = proxy(moto.port, fake.clone()).await;
    let lc = Lifecycle::new(autoscaling(&endpoint), &config(100, 100), id);
    let (shutdown, drained) = (CancellationToken::new(), CancellationToken::new());
    let task = {
        let (s, d) = (shutdown.clone(), drained.clone());
        tokio::spawn(async move { lc.guard(s, d).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    shutdown.cancel(); // SIGTERM
    tokio::time::sleep(Duration::from_millis(200)).await;
    drained.cancel();
    let outcome = within(5, "guard end", task).await.unwrap().unwrap();
    assert_eq!(outcome, Outcome::NotTerminating);
    assert!(fake.calls("RecordLifecycleActionHeartbeat").is_empty());
    assert!(fake.calls("CompleteLifecycleAction").is_empty());
}

/// The whole binary: `scanfleet-worker --lifecycle-hook` on an SQS queue in moto
/// and a private Redis, through the proxy; on Terminating:Wait it drains (the
/// SIGTERM drain), completes the action and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_process_exits_after_completing_the_hook() {
    let moto = Moto::start();
    let id = group(&moto, "sf-lc-process").await;
    let redis = scanfleet_testkit::PrivateRedis::new();
    redis.start();
    let sqs = aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .endpoint_url(&moto.url)
            .http_client(scanfleet_common::aws::https_client())
            .build(),
    );
    sqs.create_queue()
        .queue_name("sf-lc")
        .send()
        .await
        .expect("CreateQueue");
    let fake = Arc::new(Fake::default());
    let endpoint = proxy(moto.port, fake.clone()).await;

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_scanfleet-worker"))
        .args(["--queue", "sqs://sf-lc", "--redis", &redis.url()])
        .args(["--lifecycle-hook", HOOK, "--instance-id", &id])
        .args([
            "--lifecycle-poll-secs",
            "1",
            "--lifecycle-heartbeat-secs",
            "1",
        ])
        .args(["--grace-secs", "1"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SCANFLEET_JOB_SECRET", "0123456789abcdef0123456789abcdef")
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("SCANFLEET_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start scanfleet-worker");

    // Receiving (it polls the queue through the proxy) and watching its instance.
    within(20, "the worker polls its lifecycle state", async {
        while fake.calls("DescribeAutoScalingInstances").is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the worker exited while in service"
    );

    fake.terminating.store(true, Ordering::SeqCst);
    let status = within(30, "the worker exits after the hook", child.wait())
        .await
        .unwrap();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr).await;
    }
    assert!(status.success(), "exit {status}\n{stderr}");
    // With nothing in hand the drain can end before the first heartbeat is due
    // (the guard test covers heartbeats); the action is completed last, once.
    // The proxy records a call as it answers it: the worker may have exited a
    // moment before the record is in.
    within(5, "the completion is recorded", async {
        while fake.calls("CompleteLifecycleAction").is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let completes = fake.calls("CompleteLifecycleAction");
    assert_eq!(completes.len(), 1, "{:?}\n{stderr}", fake.actions());
    assert_eq!(completes[0].get("InstanceId"), Some(&id));
    assert_eq!(
        completes[0]
            .get("LifecycleActionResult")
            .map(String::as_str),
        Some("CONTINUE")
    );
    assert_eq!(
        fake.actions()
            .iter()
            .rfind(|a| a.contains("Lifecycle"))
            .map(String::as_str),
        Some("CompleteLifecycleAction")
    );
    assert!(stderr.contains("Terminating:Wait"), "{stderr}");
}
