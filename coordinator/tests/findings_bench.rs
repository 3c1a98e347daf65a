//! The synthetic history `loadtest/findings_bench.sh` measures `scanfleet findings`
//! on: FINDINGS_BENCH_RESULTS results (default 1,000,000) over assets of 100
//! open ports each, a tenth of them with an internet exposure, recorded in the
//! state directory FINDINGS_BENCH_DIR as a scan would record it. Ignored: run by
//! the script, not by the suite (it writes a few hundred MB).

use std::collections::BTreeMap;

use scanfleet_common::{
    Asset, Exposure, ExposurePath, PortRange, PortState, ProbeResult, Protocol, ServiceInfo,
};
use scanfleet_coordinator::findings::{self, ScanRecord};
use scanfleet_coordinator::history::{self, History, Location};

#[tokio::test]
#[ignore = "writes a large synthetic history; run by loadtest/findings_bench.sh"]
async fn write_synthetic_history() {
    let dir = std::env::var("FINDINGS_BENCH_DIR").expect("FINDINGS_BENCH_DIR");
    let n: usize = std::env::var("FINDINGS_BENCH_RESULTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let per_asset = 100usize;
    let assets_n = n.div_ceil(per_asset);
    let services = ["ssh", "http", "https", "redis", "mysql", "telnet", "smtp"];
    let mut assets = Vec::with_capacity(assets_n);
    let mut results = Vec::with_capacity(n);
    for a in 0..assets_n {
        let ip = std::net::Ipv4Addr::from(0x0a00_0000u32 + a as u32 + 1);
        let mut asset = Asset::from_ip(ip.into());
        asset.id = format!("i-{a:017x}");
        asset.region = Some("eu-west-1".into());
        asset.account_id = Some(format!("{:012}", 100_000_000_000u64 + (a % 50) as u64));
        asset.tags = BTreeMap::from([("env".to_string(), "bench".to_string())]);
        if a % 10 == 0 {
            asset.exposure = Some(Exposure {
                paths: vec![ExposurePath {
                    public_ip: std::net::Ipv4Addr::new(203, 0, 113, (a % 250) as u8).into(),
                    private_ip: ip.into(),
                    tcp: vec![PortRange { from: 1, to: 200 }],
                    internet_gateway: "igw-1".into(),
                    route_table: "rtb-1".into(),
                    network_acl: "acl-1".into(),
                    security_groups: vec!["sg-1".into()],
                }],
                notes: vec![],
            });
        }
        for p in 0..per_asset.min(n - results.len()) {
            let port = 1 + p as u16;
            let name = services[p % services.len()];
            results.push(ProbeResult {
                scan_id: "sf-bench".into(),
                asset_id: asset.id.clone(),
                ip: ip.into(),
                port,
                protocol: Protocol::Tcp,
                state: PortState::Open,
                reason: "syn-ack".into(),
                service: Some(ServiceInfo {
                    name: name.into(),
                    product: (name == "ssh").then(|| "OpenSSH".to_string()),
                    version: (name == "ssh").then(|| "7.2p2".to_string()),
                    banner: Some(format!("{name} banner {p}")),
                    ..ServiceInfo::default()
                }),
            });
        }
        assets.push(asset);
    }
    let record = ScanRecord {
        scan_id: "sf-bench".into(),
        started_unix_ms: 1_780_000_000_000,
        finished_unix_ms: Some(1_780_000_100_000),
        engine: "syn".into(),
        ports: "1-200".into(),
        udp_ports: String::new(),
        args: "synthetic".into(),
        targets: assets.len(),
        skipped: vec![],
        notes: vec![],
    };
    let h = History::open(&Location::Dir(dir.into())).await.unwrap();
    let ordered = history::storage_order(&results);
    let ids = findings::observed_ids(&record, &assets, &ordered).unwrap();
    h.record(&record, &assets, &ordered, &ids, 1_780_000_100_000)
        .await
        .unwrap();
    eprintln!(
        "wrote {} results, {} assets, {} observed ids",
        results.len(),
        assets.len(),
        ids.len()
    );
}
