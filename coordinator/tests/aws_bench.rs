//! Discovery benchmark: an organization of many accounts (1,000 by default) with
//! instances in two regions each, seeded into a private moto server, then
//! discovered at several concurrency levels. Ignored by default; run by
//! `loadtest/discovery_bench.sh`, which passes the knobs below and keeps the
//! table it prints.
//!
//! | variable | default |
//! |---|---|
//! | `SCANFLEET_BENCH_ACCOUNTS` | 1000 member accounts (plus the management account) |
//! | `SCANFLEET_BENCH_REGIONS` | `us-east-1,eu-west-1` |
//! | `SCANFLEET_BENCH_INSTANCES` | 2 instances per account and region |
//! | `SCANFLEET_BENCH_CONCURRENCY` | `16,64` |
//! | `SCANFLEET_BENCH_OUT` | also write the table to this file |

mod aws_support;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use aws_support::*;
use futures_util::StreamExt;
use scanfleet_coordinator::discovery::aws::{AccountSource, AwsDiscoverer, AwsDiscoveryOptions};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: loadtest/discovery_bench.sh runs it"]
async fn discovery_benchmark() {
    let accounts: usize = env_or("SCANFLEET_BENCH_ACCOUNTS", "1000")
        .parse()
        .expect("SCANFLEET_BENCH_ACCOUNTS");
    let regions: Vec<String> = env_or("SCANFLEET_BENCH_REGIONS", "us-east-1,eu-west-1")
        .split(',')
        .map(str::to_string)
        .collect();
    let per_region: usize = env_or("SCANFLEET_BENCH_INSTANCES", "2")
        .parse()
        .expect("SCANFLEET_BENCH_INSTANCES");
    let levels: Vec<usize> = env_or("SCANFLEET_BENCH_CONCURRENCY", "16,64")
        .split(',')
        .map(|c| c.parse().expect("SCANFLEET_BENCH_CONCURRENCY"))
        .collect();

    let moto = Moto::start();
    let seed_started = Instant::now();
    let org = new_organization(&moto).await;
    let ids: Vec<String> = futures_util::stream::iter(0..accounts)
        .map(|i| {
            let org = org.clone();
            async move { create_account(&org, &format!("bench-{i}")).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let jobs: Vec<(usize, String, String)> = ids
        .iter()
        .enumerate()
        .flat_map(|(i, a)| regions.iter().map(move |r| (i, a.clone(), r.clone())))
        .collect();
    futures_util::stream::iter(jobs)
        .map(|(i, account, region)| {
            let moto = &moto;
            async move {
                let ec2 = Ec2::new(&moto.account(&account, &region).await).await;
                let second = (i / 250) % 250;
                let third = i % 250;
                let subnet = ec2
                    .vpc_with_subnet(
                        &format!("10.{second}.0.0/16"),
                        &format!("10.{second}.{third}.0/24"),
                        &format!("{region}a"),
                    )
                    .await;
                for k in 0..per_region {
                    let ip = format!("10.{second}.{third}.{}", 10 + k);
                    ec2.launch(Launch::plain("bench", &subnet, &ip)).await;
                }
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
    let seeded = seed_started.elapsed();

    let mut table = String::new();
    let _ = writeln!(
        table,
        "{accounts} member accounts + management, regions {}, {per_region} instances per account-region; seeding took {:.0} s\n",
        regions.join(","),
        seeded.as_secs_f64()
    );
    let _ = writeln!(
        table,
        "| concurrency | wall time | accounts ok | assets | requests | attempts | requests/s | AssumeRole | DescribeInstances |"
    );
    let _ = writeln!(table, "|---|---|---|---|---|---|---|---|---|");
    for c in levels {
        let opts = AwsDiscoveryOptions {
            accounts: AccountSource::Organization,
            regions: Some(regions.clone()),
            concurrency: c,
            describe_images: false,
            ..AwsDiscoveryOptions::default()
        };
        let started = Instant::now();
        let d =
            Arc::new(AwsDiscoverer::with_sdk_config(opts, &moto.root("us-east-1").await).unwrap())
                .discover()
                .await
                .unwrap();
        let wall = started.elapsed();
        assert!(
            d.is_complete(),
            "{:?}",
            &d.failures[..d.failures.len().min(5)]
        );
        assert_eq!(d.assets.len(), accounts * regions.len() * per_region);
        let req = &d.api_calls.requests;
        let _ = writeln!(
            table,
            "| {c} | {:.1} s | {} | {} | {} | {} | {:.0} | {} | {} |",
            wall.as_secs_f64(),
            d.accounts.len(),
            d.assets.len(),
            d.api_calls.total_requests(),
            d.api_calls.total_attempts(),
            d.api_calls.total_requests() as f64 / wall.as_secs_f64(),
            req.get("sts:AssumeRole").copied().unwrap_or(0),
            req.get("ec2:DescribeInstances").copied().unwrap_or(0),
        );
        println!("{table}");
    }
    if let Ok(path) = std::env::var("SCANFLEET_BENCH_OUT") {
        std::fs::write(&path, &table).expect("write results");
    }
}
