//! Bytes per stored result, measured on a private redis-server: the same results
//! written as the store writes them now (compact values) and as it wrote them
//! before (a whole `ProbeResult` as JSON per value), each into an empty server,
//! `used_memory` compared. A measurement, not a timed test: it asserts only that
//! the compact form is smaller and prints the figures.
//!
//! `RESULT_SIZE_N=1000000 cargo test -p scanfleet-common --release --test result_size -- --nocapture`
//! (default 100000).

use std::net::{IpAddr, Ipv4Addr};

use scanfleet_common::store::ResultStore;
use scanfleet_common::store::redis::{RedisConfig, RedisStore, result_field};
use scanfleet_common::{PortState, ProbeResult, Protocol, ServiceInfo};
use scanfleet_testkit::PrivateRedis;

fn results(scan: &str, n: usize) -> Vec<ProbeResult> {
    (0..n)
        .map(|i| {
            let host = (i / 100) as u32;
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + host));
            let port = 1 + (i % 100) as u16 * 7;
            ProbeResult {
                scan_id: scan.into(),
                asset_id: format!("i-{:017x}", host),
                ip,
                port,
                protocol: Protocol::Tcp,
                state: PortState::Open,
                reason: "syn-ack".into(),
                // One port in ten has a service, as detection names them.
                service: (i % 10 == 0).then(|| ServiceInfo {
                    name: "http".into(),
                    product: Some("nginx".into()),
                    version: Some("1.22.1".into()),
                    ..ServiceInfo::default()
                }),
            }
        })
        .collect()
}

fn used_memory(port: u16) -> u64 {
    let o = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "info", "memory"])
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory")
}

#[tokio::test(flavor = "multi_thread")]
async fn compact_results_take_less_memory_than_whole_json_values() {
    let n: usize = std::env::var("RESULT_SIZE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let scan = "sf-size";
    let rs = results(scan, n);

    // Now: through the store.
    let now = PrivateRedis::new();
    now.start_with(&[]);
    let base = used_memory(now.port);
    let st = RedisStore::connect(&now.url(), RedisConfig::default())
        .await
        .unwrap();
    st.begin_scan(scan, 1).await.unwrap();
    for chunk in rs.chunks(10_000) {
        st.write_results(scan, chunk).await.unwrap();
    }
    let compact = used_memory(now.port) - base;
    assert_eq!(st.results(scan).await.unwrap().len(), n);

    // Before: the same fields, each value the whole result as JSON.
    let before = PrivateRedis::new();
    before.start_with(&[]);
    let base = used_memory(before.port);
    let client = redis::Client::open(before.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("scanfleet:{{{scan}}}:results");
    for chunk in rs.chunks(10_000) {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(&key);
        for r in chunk {
            cmd.arg(result_field(r)).arg(serde_json::to_vec(r).unwrap());
        }
        let _: () = cmd.query_async(&mut c).await.unwrap();
    }
    let whole = used_memory(before.port) - base;
    let per = |b: u64| b as f64 / n as f64;
    eprintln!(
        "result_size: {n} results: compact {:.1} B/result ({:.1} MB per 1M), whole JSON {:.1} B/result ({:.1} MB per 1M): {:.2}x smaller",
        per(compact),
        per(compact),
        per(whole),
        per(whole),
        whole as f64 / compact as f64
    );
    assert!(compact < whole, "compact {compact} >= whole {whole}");
}
