//! The Redis result store against a real server: `SCANFLEET_REDIS_URL`, default
//! `redis://127.0.0.1:6379`. What every store must do is the contract in
//! `store_contract.rs`; these tests cover what only Redis has: key names and
//! expiry, the result stream, corrupt contents, connection errors and a restart.
//! Every test uses its own scan ids (`sftest-<pid>-<n>-<t>`) and deletes their keys
//! at the end. The restart test runs a private redis-server on a spare port
//! (`scanfleet_testkit::PrivateRedis`) and kills it itself; the shared server is
//! never stopped.

use std::future::Future;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use scanfleet_common::store::redis::{RedisConfig, RedisStore, ScanKeys};
use scanfleet_common::store::{ResultStore, StoreError};
use scanfleet_common::{PortState, ProbeResult, Progress, Protocol, ServiceInfo, ShardOutcome};
use scanfleet_testkit::{PrivateRedis, redis_url, unique_name};

fn unique_scan() -> String {
    unique_name("sftest")
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Run `body` with a store and a fresh scan id, then delete the scan's keys whether
/// the body passed or panicked.
async fn with_scan<F, Fut>(cfg: RedisConfig, body: F)
where
    F: FnOnce(RedisStore, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let store = RedisStore::connect(&redis_url(), cfg)
        .await
        .expect("Redis on SCANFLEET_REDIS_URL (127.0.0.1:6379) must be running");
    let scan = unique_scan();
    let outcome = AssertUnwindSafe(body(store.clone(), scan.clone()))
        .catch_unwind()
        .await;
    store.delete_scan(&scan).await.unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn r(scan: &str, ip: &str, port: u16, state: PortState) -> ProbeResult {
    ProbeResult {
        scan_id: scan.into(),
        asset_id: format!("i-{ip}"),
        ip: ip.parse().unwrap(),
        port,
        protocol: Protocol::Tcp,
        state,
        reason: "syn-ack".into(),
        service: None,
    }
}

#[tokio::test]
async fn key_names_carry_the_scan_hash_tag() {
    with_scan(RedisConfig::default(), |st, scan| async move {
        let k = st.keys(&scan).unwrap();
        assert_eq!(
            k,
            ScanKeys {
                meta: format!("scanfleet:{{{scan}}}:meta"),
                results: format!("scanfleet:{{{scan}}}:results"),
                shards: format!("scanfleet:{{{scan}}}:shards"),
                ports: format!("scanfleet:{{{scan}}}:ports"),
                stream: format!("scanfleet:{{{scan}}}:stream"),
                stats: format!("scanfleet:{{{scan}}}:stats"),
                jobs: format!("scanfleet:{{{scan}}}:jobs"),
            }
        );
        assert_eq!(st.keys("s1").unwrap().results, "scanfleet:{s1}:results");
        for bad in ["", "a{b", "x}"] {
            assert!(
                matches!(st.keys(bad), Err(StoreError::Permanent(_))),
                "{bad:?}"
            );
            assert!(matches!(
                st.begin_scan(bad, 1).await,
                Err(StoreError::Permanent(_))
            ));
        }

        st.begin_scan(&scan, 2).await.unwrap();
        st.write_results(&scan, &[r(&scan, "10.0.0.1", 22, PortState::Open)])
            .await
            .unwrap();
        st.finish_shard(&scan, 0, &ShardOutcome::Done)
            .await
            .unwrap();
        let mut c = raw(&redis_url()).await;
        for (key, ty) in [
            (&k.meta, "hash"),
            (&k.results, "hash"),
            (&k.shards, "hash"),
            (&k.stream, "stream"),
        ] {
            let t: String = redis::cmd("TYPE")
                .arg(key)
                .query_async(&mut c)
                .await
                .unwrap();
            assert_eq!(t, ty, "{key}");
            let ttl: i64 = redis::cmd("PTTL")
                .arg(key)
                .query_async(&mut c)
                .await
                .unwrap();
            assert!(
                ttl > 29 * 24 * 3600 * 1000,
                "{key} expires in 30 days: {ttl}"
            );
        }
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("scanfleet:{{{scan}}}:*"))
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(keys.len(), 4, "{keys:?}");
        let field: Option<String> = redis::cmd("HGET")
            .arg(&k.results)
            .arg("10.0.0.1|22|tcp")
            .query_async(&mut c)
            .await
            .unwrap();
        // Stored compact: the field and the key already say scan, address, port, protocol.
        let field = field.unwrap();
        assert!(
            field.starts_with("1{") && field.contains("\"s\":\"open\""),
            "{field}"
        );
        assert!(
            !field.contains("\"ip\"") && !field.contains(scan.as_str()),
            "{field}"
        );
        let shard: String = redis::cmd("HGET")
            .arg(&k.shards)
            .arg("0")
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(shard, r#"{"outcome":"done"}"#);
        let meta: Vec<String> = redis::cmd("HKEYS")
            .arg(&k.meta)
            .query_async(&mut c)
            .await
            .unwrap();
        let mut meta = meta;
        meta.sort();
        assert_eq!(
            meta,
            ["created", "shards_done", "shards_failed", "shards_total"]
        );
    })
    .await;
}

#[tokio::test]
async fn roundtrip_sorted_and_rewrites_never_double_count() {
    with_scan(RedisConfig::default(), |st, scan| async move {
        st.begin_scan(&scan, 3).await.unwrap();
        let mut tls = r(&scan, "10.0.0.10", 443, PortState::Open);
        tls.service = Some(ServiceInfo {
            name: "https".into(),
            banner: Some("HTTP/1.1 200 OK\\r\\n".into()),
            ..ServiceInfo::default()
        });
        st.write_results(
            &scan,
            &[
                tls.clone(),
                r(&scan, "10.0.0.2", 80, PortState::Open),
                r(&scan, "10.0.0.2", 22, PortState::Closed),
                r(&scan, "fd00::1", 22, PortState::Filtered),
            ],
        )
        .await
        .unwrap();
        // The redelivered shard writes again, with a changed state for one port.
        st.write_results(&scan, &[r(&scan, "10.0.0.2", 22, PortState::Open)])
            .await
            .unwrap();
        st.write_results(&scan, &[]).await.unwrap();

        let got = st.results(&scan).await.unwrap();
        let order: Vec<(IpAddr, u16)> = got.iter().map(|r| (r.ip, r.port)).collect();
        let want: Vec<(IpAddr, u16)> = [
            ("10.0.0.2", 22),
            ("10.0.0.2", 80),
            ("10.0.0.10", 443),
            ("fd00::1", 22),
        ]
        .iter()
        .map(|(ip, p)| (ip.parse().unwrap(), *p))
        .collect();
        assert_eq!(order, want, "ordered by ip then port");
        assert_eq!(
            got[0].state,
            PortState::Open,
            "the rewrite replaced the old result"
        );
        assert_eq!(got[2], tls, "service info survives the roundtrip");
        let p = st.progress(&scan).await.unwrap();
        assert_eq!(
            p,
            Progress {
                shards_total: 3,
                shards_done: 0,
                shards_failed: 0,
                results: 4,
                ports_done: 0,
            }
        );

        // One stream entry per non-empty batch, naming the written fields.
        let k = st.keys(&scan).unwrap();
        let mut c = raw(&redis_url()).await;
        let n: u64 = redis::cmd("XLEN")
            .arg(&k.stream)
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(n, 2);
        let last: Vec<(String, Vec<(String, String)>)> = redis::cmd("XREVRANGE")
            .arg(&k.stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(
            last[0].1,
            [
                ("n".to_string(), "1".to_string()),
                ("keys".to_string(), "10.0.0.2|22|tcp".to_string())
            ]
        );

        // begin_scan again (a coordinator restart) keeps what is there.
        st.begin_scan(&scan, 3).await.unwrap();
        assert_eq!(st.progress(&scan).await.unwrap().results, 4);
    })
    .await;
}

/// The shard outcome semantics themselves are the store contract
/// (`store_contract.rs`); what only Redis shows is which reason it keeps.
#[tokio::test]
async fn first_failure_reason_is_kept_in_the_shard_hash() {
    with_scan(RedisConfig::default(), |st, scan| async move {
        st.begin_scan(&scan, 3).await.unwrap();
        let failed = |why: &str| ShardOutcome::Failed { reason: why.into() };
        assert!(!st.finish_shard(&scan, 2, &failed("z")).await.unwrap());
        assert!(!st.finish_shard(&scan, 2, &failed("again")).await.unwrap());
        let k = st.keys(&scan).unwrap();
        let mut c = raw(&redis_url()).await;
        let kept: String = redis::cmd("HGET")
            .arg(&k.shards)
            .arg("2")
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(
            kept, r#"{"outcome":"failed","reason":"z"}"#,
            "first failure reason kept"
        );
    })
    .await;
}

#[tokio::test]
async fn unknown_scan_everywhere() {
    let st = RedisStore::connect(&redis_url(), RedisConfig::default())
        .await
        .unwrap();
    let scan = unique_scan();
    let unknown =
        |e: Result<_, StoreError>| matches!(e, Err(StoreError::UnknownScan(s)) if s == scan);
    assert!(unknown(st.progress(&scan).await.map(|_| ())));
    assert!(unknown(st.results(&scan).await.map(|_| ())));
    assert!(unknown(
        st.write_results(&scan, &[r(&scan, "10.0.0.1", 1, PortState::Open)])
            .await
    ));
    assert!(unknown(st.write_results(&scan, &[]).await));
    assert!(unknown(
        st.finish_shard(&scan, 0, &ShardOutcome::Done)
            .await
            .map(|_| ())
    ));
    // Nothing was created by those calls.
    assert_eq!(st.delete_scan(&scan).await.unwrap(), 0);
}

#[tokio::test]
async fn bad_contents_are_errors_that_name_key_and_field() {
    with_scan(RedisConfig::default(), |st, scan| async move {
        st.begin_scan(&scan, 1).await.unwrap();
        st.write_results(&scan, &[r(&scan, "10.0.0.1", 22, PortState::Open)])
            .await
            .unwrap();
        let k = st.keys(&scan).unwrap();
        let mut c = raw(&redis_url()).await;

        let _: () = redis::cmd("HSET")
            .arg(&k.results)
            .arg("10.0.0.9|80|tcp")
            .arg("not json\x1b")
            .query_async(&mut c)
            .await
            .unwrap();
        match st.results(&scan).await {
            Err(StoreError::Permanent(m)) => {
                assert!(
                    m.contains(&k.results) && m.contains("10.0.0.9|80|tcp"),
                    "{m}"
                );
            }
            other => panic!("expected a permanent error, got {other:?}"),
        }
        // A valid result under the wrong field is corruption too.
        let json = serde_json::to_string(&r(&scan, "10.0.0.7", 443, PortState::Open)).unwrap();
        let _: () = redis::cmd("HSET")
            .arg(&k.results)
            .arg("10.0.0.9|80|tcp")
            .arg(json)
            .query_async(&mut c)
            .await
            .unwrap();
        match st.results(&scan).await {
            Err(StoreError::Permanent(m)) => assert!(m.contains("10.0.0.7|443|tcp"), "{m}"),
            other => panic!("expected a permanent error, got {other:?}"),
        }
        let _: () = redis::cmd("HDEL")
            .arg(&k.results)
            .arg("10.0.0.9|80|tcp")
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(
            st.results(&scan).await.unwrap().len(),
            1,
            "repaired by HDEL"
        );

        let _: () = redis::cmd("HSET")
            .arg(&k.shards)
            .arg("5")
            .arg("garbage")
            .query_async(&mut c)
            .await
            .unwrap();
        match st.finish_shard(&scan, 5, &ShardOutcome::Done).await {
            Err(StoreError::Permanent(m)) => {
                assert!(m.contains(&k.shards) && m.contains("field 5"), "{m}")
            }
            other => panic!("expected a permanent error, got {other:?}"),
        }
        let _: () = redis::cmd("HSET")
            .arg(&k.meta)
            .arg("shards_done")
            .arg("many")
            .query_async(&mut c)
            .await
            .unwrap();
        match st.progress(&scan).await {
            Err(StoreError::Permanent(m)) => {
                assert!(m.contains(&k.meta) && m.contains("shards_done"), "{m}")
            }
            other => panic!("expected a permanent error, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn large_batches_and_paged_reads() {
    let cfg = RedisConfig {
        scan_page: 100,
        stream_maxlen: 0,
        ttl: None,
        ..RedisConfig::default()
    };
    with_scan(cfg, |st, scan| async move {
        st.begin_scan(&scan, 1).await.unwrap();
        let batch: Vec<ProbeResult> = (0..2500u32)
            .map(|i| {
                r(
                    &scan,
                    &format!("10.1.{}.{}", i / 250, i % 250),
                    1000 + (i % 7) as u16,
                    PortState::Open,
                )
            })
            .collect();
        st.write_results(&scan, &batch).await.unwrap();
        st.write_results(&scan, &batch[..1200]).await.unwrap();
        let got = st.results(&scan).await.unwrap();
        assert_eq!(got.len(), 2500);
        assert!(
            got.windows(2)
                .all(|w| (w[0].ip, w[0].port) < (w[1].ip, w[1].port))
        );
        assert_eq!(st.progress(&scan).await.unwrap().results, 2500);
        let k = st.keys(&scan).unwrap();
        let mut c = raw(&redis_url()).await;
        let exists: u64 = redis::cmd("EXISTS")
            .arg(&k.stream)
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(exists, 0, "stream off with stream_maxlen = 0");
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&k.results)
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(ttl, -1, "no expiry with ttl = None");
    })
    .await;
}

#[tokio::test]
async fn connect_errors_say_whether_to_retry() {
    let cfg = RedisConfig {
        op_timeout: Duration::from_secs(2),
        reconnect_attempts: 1,
        ..RedisConfig::default()
    };
    let t = Instant::now();
    let down = RedisStore::connect("redis://127.0.0.1:1", cfg.clone()).await;
    assert!(matches!(down, Err(StoreError::Transient(_))), "{down:?}");
    assert!(t.elapsed() < Duration::from_secs(3));
    let bad = RedisStore::connect("nope://:secret@host", cfg.clone()).await;
    match bad {
        Err(StoreError::Permanent(m)) => assert!(!m.contains("secret"), "{m}"),
        other => panic!("{other:?}"),
    }
    let pw = RedisStore::connect("redis://:hunter2@127.0.0.1:1", cfg).await;
    assert!(!pw.unwrap_err().to_string().contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_redis_restart_transient_then_no_loss() {
    let redis = PrivateRedis::new();
    redis.start();
    let cfg = RedisConfig {
        op_timeout: Duration::from_secs(2),
        reconnect_max_delay: Duration::from_millis(500),
        ..RedisConfig::default()
    };
    let st = RedisStore::connect(&redis.url(), cfg).await.unwrap();
    let scan = unique_scan();
    st.begin_scan(&scan, 2).await.unwrap();
    let first: Vec<ProbeResult> = (1..=100)
        .map(|p| r(&scan, "10.0.0.1", p, PortState::Open))
        .collect();
    let second: Vec<ProbeResult> = (1..=100)
        .map(|p| r(&scan, "10.0.0.2", p, PortState::Open))
        .collect();
    st.write_results(&scan, &first).await.unwrap();
    assert!(
        st.finish_shard(&scan, 0, &ShardOutcome::Done)
            .await
            .unwrap()
    );

    redis.kill();
    let t = Instant::now();
    let down = st.write_results(&scan, &second).await;
    let down_write = t.elapsed();
    assert!(matches!(down, Err(StoreError::Transient(_))), "{down:?}");
    assert!(matches!(
        st.progress(&scan).await,
        Err(StoreError::Transient(_))
    ));
    assert!(
        down_write < Duration::from_secs(4),
        "bounded by op_timeout: {down_write:?}"
    );

    // The worker's loop: retry transient failures while it holds the shard.
    let writer = {
        let (st, scan, second) = (st.clone(), scan.clone(), second.clone());
        tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                match st.write_results(&scan, &second).await {
                    Ok(()) => return failures,
                    Err(e) if e.is_transient() => failures += 1,
                    Err(e) => panic!("permanent while Redis restarts: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // Down for longer than one call may wait (op_timeout), so the loop sees failures.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t = Instant::now();
    redis.start();
    let failures = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .unwrap()
        .unwrap();
    let recovered = t.elapsed();
    assert!(failures > 0, "writes failed while Redis was down");

    let got = st.results(&scan).await.unwrap();
    assert_eq!(
        got.len(),
        200,
        "the acknowledged batch survived the crash and the retried one landed"
    );
    assert_eq!(
        got,
        first.iter().chain(&second).cloned().collect::<Vec<_>>()
    );
    let p = st.progress(&scan).await.unwrap();
    assert_eq!(
        p,
        Progress {
            shards_total: 2,
            shards_done: 1,
            shards_failed: 0,
            results: 200,
            ports_done: 0,
        }
    );
    assert!(
        !st.finish_shard(&scan, 0, &ShardOutcome::Done)
            .await
            .unwrap(),
        "shard 0 stays done"
    );
    assert!(
        st.finish_shard(&scan, 1, &ShardOutcome::Done)
            .await
            .unwrap(),
        "scripts reload after restart"
    );
    eprintln!(
        "private Redis timings: write while down failed after {down_write:?}; \
         restart to first successful write {recovered:?} ({failures} transient failures)"
    );
}
