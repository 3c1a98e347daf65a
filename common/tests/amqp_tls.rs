//! AMQPS against a private RabbitMQ node with a TLS listener that requires client
//! certificates, all made by the test (`scanfleet_testkit::TestPki`): with the CA
//! and a client certificate a job goes round (publish, receive, ack); without the
//! client certificate, or without our CA (the public roots), the connection is
//! refused with an error that names the broker and never the password.

use std::time::Duration;

use scanfleet_common::queue::amqp::tls::{AmqpTlsFiles, join};
use scanfleet_common::queue::amqp::{AmqpConfig, AmqpQueue};
use scanfleet_common::queue::{JobQueue, QueueAdmin, Topology};
use scanfleet_testkit::{PrivateRabbit, TestPki, unique_name};

unsafe extern "C" {
    fn geteuid() -> u32;
}

fn config(prefix: &str) -> AmqpConfig {
    AmqpConfig {
        prefix: prefix.into(),
        reconnect_min: Duration::from_millis(100),
        reconnect_max: Duration::from_secs(1),
        op_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(10),
        ..AmqpConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn amqps_with_our_ca_and_a_client_certificate_carries_jobs_and_refuses_otherwise() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { geteuid() } != 0 {
        eprintln!("skipped: the private RabbitMQ node needs root; CI runs as root");
        return;
    }
    let pki = TestPki::new();
    let (rabbit, tls_port) = PrivateRabbit::with_tls(&pki);
    rabbit.start();
    assert!(
        scanfleet_testkit::wait_listening(tls_port, Duration::from_secs(60)),
        "the TLS listener did not come up on {tls_port}"
    );
    let base = format!("amqps://guest:guest@localhost:{tls_port}/%2f");
    let full = AmqpTlsFiles {
        ca: Some(pki.path("ca.pem")),
        cert: Some(pki.path("client.pem")),
        key: Some(pki.path("client.key")),
    };
    let prefix = unique_name("sftls");
    let q = AmqpQueue::connect(&join(&base, &full), config(&prefix))
        .await
        .expect("amqps with the CA and a client certificate");
    q.init(&["z".to_string()], &Topology::default())
        .await
        .unwrap();
    q.publish("z", b"job over tls").await.unwrap();
    let d = q
        .receive("z", Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the job comes back over TLS");
    assert_eq!(d.payload, b"job over tls");
    q.ack(&d).await.unwrap();
    assert!(
        q.receive("z", Duration::from_millis(500))
            .await
            .unwrap()
            .is_none()
    );

    // No client certificate: the broker requires one.
    let no_cert = AmqpTlsFiles {
        ca: Some(pki.path("ca.pem")),
        ..AmqpTlsFiles::default()
    };
    let e = AmqpQueue::connect(&join(&base, &no_cert), config(&prefix))
        .await
        .expect_err("a broker that requires client certificates let one in without");
    let msg = e.to_string();
    assert!(msg.contains(&tls_port.to_string()), "{msg}");
    assert!(!msg.contains("guest:guest"), "{msg}");

    // The public roots do not know our CA.
    let no_ca = AmqpTlsFiles {
        ca: None,
        ..full.clone()
    };
    let e = AmqpQueue::connect(&join(&base, &no_ca), config(&prefix))
        .await
        .expect_err("a certificate of an unknown CA was trusted");
    assert!(e.to_string().contains(&tls_port.to_string()), "{e}");

    // TLS files on a plain amqp:// URL are a configuration error, before connecting.
    let plain = format!("amqp://guest:guest@127.0.0.1:{}/%2f", rabbit.port);
    let e = AmqpQueue::connect(&join(&plain, &full), config(&prefix))
        .await
        .expect_err("TLS files on amqp://");
    assert!(e.to_string().contains("amqps://"), "{e}");
    drop(rabbit);
}
