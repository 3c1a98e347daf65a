//! The Redis result store over TLS against a real redis-server of the test's own
//! (`--tls-port`, no plaintext port, `--tls-auth-clients yes`) with certificates
//! made by the test (`scanfleet_testkit::TestPki`): the store works with the CA and
//! a client certificate, and refuses, with errors that say so, a server whose
//! certificate the CA did not sign, a missing client certificate, and TLS files on a
//! plaintext URL.

use std::ffi::OsStr;
use std::path::Path;

use scanfleet_common::store::redis::tls::{TlsFiles, join};
use scanfleet_common::store::redis::{RedisConfig, RedisStore};
use scanfleet_common::store::{ResultStore, StoreError};
use scanfleet_common::{PortState, ProbeResult, Protocol, ShardOutcome};
use scanfleet_testkit::{PrivateRedis, TestPki, unique_name};

/// A TLS-only private redis-server that requires client certificates.
fn tls_redis(pki: &TestPki) -> PrivateRedis {
    let redis = PrivateRedis::new();
    let port = redis.port.to_string();
    let p = |f: &str| pki.path(f).into_os_string();
    let (cert, key, ca) = (p("server.pem"), p("server.key"), p("ca.pem"));
    let args: Vec<&OsStr> = vec![
        OsStr::new("--port"),
        OsStr::new("0"),
        OsStr::new("--tls-port"),
        OsStr::new(&port),
        OsStr::new("--tls-cert-file"),
        &cert,
        OsStr::new("--tls-key-file"),
        &key,
        OsStr::new("--tls-ca-cert-file"),
        &ca,
        OsStr::new("--tls-auth-clients"),
        OsStr::new("yes"),
    ];
    redis.start_with(&args);
    redis
}

fn files(pki: &TestPki, client: bool) -> TlsFiles {
    TlsFiles {
        ca: Some(pki.path("ca.pem")),
        cert: client.then(|| pki.path("client.pem")),
        key: client.then(|| pki.path("client.key")),
    }
}

fn url(redis: &PrivateRedis, f: &TlsFiles) -> String {
    join(&format!("rediss://127.0.0.1:{}", redis.port), f)
}

fn quick() -> RedisConfig {
    RedisConfig {
        reconnect_attempts: 1,
        connect_timeout: std::time::Duration::from_secs(3),
        op_timeout: std::time::Duration::from_secs(5),
        ..RedisConfig::default()
    }
}

#[tokio::test]
async fn the_store_works_over_mutual_tls() {
    let pki = TestPki::new();
    let redis = tls_redis(&pki);
    let store = RedisStore::connect(&url(&redis, &files(&pki, true)), quick())
        .await
        .expect("connect over TLS with the test CA and a client certificate");
    let scan = unique_name("sftest-tls");
    store.begin_scan(&scan, 1).await.unwrap();
    let result = ProbeResult {
        scan_id: scan.clone(),
        asset_id: "i-tls".into(),
        ip: "10.0.0.5".parse().unwrap(),
        port: 443,
        protocol: Protocol::Tcp,
        state: PortState::Open,
        reason: "syn-ack".into(),
        service: None,
    };
    store
        .write_results(&scan, std::slice::from_ref(&result))
        .await
        .unwrap();
    store
        .finish_shard(&scan, 0, &ShardOutcome::Done)
        .await
        .unwrap();
    assert_eq!(store.results(&scan).await.unwrap(), vec![result]);
    let p = store.progress(&scan).await.unwrap();
    assert_eq!((p.shards_done, p.results), (1, 1));
}

fn permanent_or_transient(e: StoreError) -> String {
    match e {
        StoreError::Permanent(m) | StoreError::Transient(m) => m,
        other => format!("{other:?}"),
    }
}

#[tokio::test]
async fn tls_refusals_say_what_is_wrong() {
    let pki = TestPki::new();
    let other = TestPki::new();
    let redis = tls_redis(&pki);
    // A CA that did not sign the server's certificate.
    let e = RedisStore::connect(&url(&redis, &files(&other, true)), quick())
        .await
        .err()
        .map(permanent_or_transient)
        .expect("an unknown CA is refused");
    assert!(
        e.to_lowercase().contains("certificate") || e.contains("UnknownIssuer"),
        "{e}"
    );
    // No client certificate: the server (tls-auth-clients yes) refuses the handshake.
    let refused = async {
        let store = RedisStore::connect(&url(&redis, &files(&pki, false)), quick()).await?;
        store.progress("sftest-none").await.map(|_| ())
    }
    .await;
    assert!(refused.is_err(), "a client without a certificate got in");
    // TLS files on a plaintext URL, and unreadable files, never reach the network.
    let plain = join(
        &format!("redis://127.0.0.1:{}", redis.port),
        &files(&pki, true),
    );
    match RedisStore::connect(&plain, quick()).await {
        Err(StoreError::Permanent(m)) => assert!(m.contains("need a rediss:// URL"), "{m}"),
        other => panic!("expected a permanent error, got {:?}", other.err()),
    }
    let missing = TlsFiles {
        ca: Some(Path::new("/nonexistent/ca.pem").into()),
        ..TlsFiles::default()
    };
    match RedisStore::connect(&url(&redis, &missing), quick()).await {
        Err(StoreError::Permanent(m)) => {
            assert!(m.starts_with("--redis-ca /nonexistent/ca.pem: "), "{m}")
        }
        other => panic!("expected a permanent error, got {:?}", other.err()),
    }
}
