//! Discovery of an AWS estate seeded into a private moto server: an organization
//! of four accounts in two regions, peered and unpeered VPCs (across accounts and
//! regions), public and private subnets, an internet gateway, a strict network
//! ACL, security groups open to the internet and not, instances of mixed types
//! (t2.nano, t1.micro, m1.small among them), tags, a stopped instance, Elastic
//! IPs, secondary addresses and a second interface. One account's role cannot be
//! assumed: moto's IAM enforcement refuses the discovery user's AssumeRole.

mod aws_support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use aws_support::*;
use scanfleet_common::rate::RatePolicy;
use scanfleet_common::scope::{self, ScopePolicy};
use scanfleet_coordinator::discovery::aws::{
    AccountRef, AccountSource, AwsDiscoverer, AwsDiscoveryOptions,
};
use scanfleet_coordinator::discovery::{AccountStatus, Summary};
use scanfleet_coordinator::estate::reachability::exposed;
use scanfleet_coordinator::estate::zones;

const ROLE: &str = "scanfleet-discovery";
const EXTERNAL_ID: &str = "ext-4f2a9c";
const WINDOWS: &str = "ami-12c6146b";

/// Resource ids to readable names, so that assertions are exact and stable.
#[derive(Default)]
struct Names(HashMap<String, String>);

impl Names {
    fn add(&mut self, id: &str, name: &str) -> String {
        self.0.insert(id.to_string(), name.to_string());
        id.to_string()
    }

    fn of(&self, id: &str) -> String {
        self.0.get(id).cloned().unwrap_or_else(|| "?".into())
    }

    fn opt(&self, id: Option<&str>) -> String {
        id.map_or_else(|| "-".into(), |i| self.of(i))
    }
}

struct Estate {
    names: Names,
    prod: String,
    shared: String,
    sandbox: String,
    eips: BTreeMap<String, String>,
}

/// A Linux instance.
fn l<'a>(
    name: &'a str,
    ty: &'a str,
    subnet: &'a str,
    ip: &'a str,
    groups: &'a [&'a str],
    tags: &'a [(&'a str, &'a str)],
) -> Launch<'a> {
    Launch {
        name,
        instance_type: ty,
        image: LINUX,
        subnet,
        ip,
        groups,
        tags,
    }
}

async fn seed(moto: &Moto) -> Estate {
    let ids = organization(moto, &["prod", "shared", "sandbox"]).await;
    let (prod, shared, sandbox) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
    let mut n = Names::default();
    for (id, name) in [
        (MANAGEMENT, "management"),
        (prod.as_str(), "prod"),
        (shared.as_str(), "shared"),
        (sandbox.as_str(), "sandbox"),
    ] {
        n.add(id, name);
    }
    let mut eips = BTreeMap::new();

    // prod, us-east-1: VPC A1 with a public, a private and a locked-down subnet;
    // VPC A2 alone.
    let p = Ec2::new(&moto.account(&prod, "us-east-1").await).await;
    let a1 = n.add(&p.vpc("10.1.0.0/16").await, "A1");
    let public = n.add(&p.subnet(&a1, "10.1.1.0/24", "us-east-1a").await, "public");
    let private = n.add(&p.subnet(&a1, "10.1.2.0/24", "us-east-1b").await, "private");
    let locked = n.add(&p.subnet(&a1, "10.1.3.0/24", "us-east-1a").await, "locked");
    let (igw, rt) = p.public_route(&a1, &public).await;
    n.add(&igw, "igw");
    n.add(&rt, "rtb-public");
    p.associate(&rt, &locked).await;
    let acl = p
        .acl(
            &a1,
            &locked,
            &[
                (100, false, "6", Some((22, 22))),
                (200, true, "6", Some((0, 65535))),
            ],
        )
        .await;
    n.add(&acl, "acl-locked");
    let web = n.add(
        &p.group(
            &a1,
            "web",
            vec![
                anywhere("tcp", 443, 443),
                from_cidr("tcp", 22, 22, "10.0.0.0/8"),
            ],
        )
        .await,
        "sg-web",
    );
    let open = n.add(
        &p.group(
            &a1,
            "open",
            vec![anywhere("tcp", 22, 22), anywhere("tcp", 443, 443)],
        )
        .await,
        "sg-open",
    );
    let internal = n.add(
        &p.group(&a1, "internal", vec![from_cidr("-1", -1, -1, "10.0.0.0/8")])
            .await,
        "sg-internal",
    );
    let web1 = p
        .launch(l(
            "web-1",
            "m5.large",
            &public,
            "10.1.1.10",
            &[web.as_str()],
            &[("env", "prod"), ("aws:autoscaling:groupName", "web-asg")],
        ))
        .await;
    p.secondary_ip(&web1, "10.1.1.11").await;
    p.second_eni(&web1, &public, "10.1.1.20", &[internal.as_str()])
        .await;
    eips.insert("web-1".to_string(), p.eip(&web1).await);
    let db1 = p
        .launch(l(
            "db-1",
            "m5.xlarge",
            &private,
            "10.1.2.10",
            &[internal.as_str()],
            &[("env", "prod")],
        ))
        .await;
    eips.insert("db-1".to_string(), p.eip(&db1).await);
    p.launch(l(
        "nano-1",
        "t2.nano",
        &private,
        "10.1.2.11",
        &[internal.as_str()],
        &[],
    ))
    .await;
    let stopped = p
        .launch(l(
            "stopped-1",
            "m5.large",
            &private,
            "10.1.2.12",
            &[internal.as_str()],
            &[],
        ))
        .await;
    p.stop(&stopped).await;
    let locked1 = p
        .launch(l(
            "locked-1",
            "c5.large",
            &locked,
            "10.1.3.10",
            &[open.as_str()],
            &[],
        ))
        .await;
    eips.insert("locked-1".to_string(), p.eip(&locked1).await);
    let a2 = n.add(&p.vpc("10.2.0.0/16").await, "A2");
    let a2s = n.add(
        &p.subnet(&a2, "10.2.1.0/24", "us-east-1c").await,
        "a2-subnet",
    );
    let a2g = n.add(&p.group(&a2, "a2", vec![]).await, "sg-a2");
    p.launch(l(
        "micro-1",
        "t1.micro",
        &a2s,
        "10.2.1.10",
        &[a2g.as_str()],
        &[],
    ))
    .await;
    p.launch(l(
        "excl-1",
        "t3.micro",
        &a2s,
        "10.2.1.11",
        &[a2g.as_str()],
        &[("scan", "no")],
    ))
    .await;

    // prod, eu-west-1: VPC A3, peered with A1 across regions.
    let pe = Ec2::new(&moto.account(&prod, "eu-west-1").await).await;
    let a3 = n.add(&pe.vpc("10.3.0.0/16").await, "A3");
    let a3s = n.add(
        &pe.subnet(&a3, "10.3.1.0/24", "eu-west-1a").await,
        "a3-subnet",
    );
    let a3g = n.add(&pe.group(&a3, "a3", vec![]).await, "sg-a3");
    let _ = &a3g;
    pe.launch(l("eu-1", "m1.small", &a3s, "10.3.1.10", &[], &[]))
        .await;
    pe.launch(l("eu-2", "t3.medium", &a3s, "10.3.1.11", &[], &[]))
        .await;
    let pcx_region = n.add(
        &p.peer(&a1, &a3, None, Some("eu-west-1")).await,
        "pcx-A1-A3",
    );
    pe.accept(&pcx_region).await;

    // shared, us-east-1: B1 peered with A1 across accounts; B2 asked to peer with
    // A2 but was never accepted.
    let s = Ec2::new(&moto.account(&shared, "us-east-1").await).await;
    let b1 = n.add(&s.vpc("10.4.0.0/16").await, "B1");
    let b1s = n.add(
        &s.subnet(&b1, "10.4.1.0/24", "us-east-1a").await,
        "b1-subnet",
    );
    let b2 = n.add(&s.vpc("10.5.0.0/16").await, "B2");
    let b2s = n.add(
        &s.subnet(&b2, "10.5.1.0/24", "us-east-1b").await,
        "b2-subnet",
    );
    s.launch(Launch {
        name: "b-1",
        instance_type: "r5.large",
        image: LINUX,
        subnet: &b1s,
        ip: "10.4.1.10",
        groups: &[],
        tags: &[("team", "data")],
    })
    .await;
    s.launch(Launch {
        name: "b-2",
        instance_type: "m5.large",
        image: WINDOWS,
        subnet: &b2s,
        ip: "10.5.1.10",
        groups: &[],
        tags: &[],
    })
    .await;
    let pcx_account = n.add(&p.peer(&a1, &b1, Some(&shared), None).await, "pcx-A1-B1");
    s.accept(&pcx_account).await;
    n.add(
        &s.peer(&b2, &a2, Some(&prod), None).await,
        "pcx-B2-A2-pending",
    );

    // sandbox: an instance that must never show up.
    let x = Ec2::new(&moto.account(&sandbox, "us-east-1").await).await;
    let c = n.add(&x.vpc("10.9.0.0/16").await, "C1");
    let cs = x.subnet(&c, "10.9.1.0/24", "us-east-1a").await;
    x.launch(Launch::plain("c-1", &cs, "10.9.1.10")).await;

    Estate {
        names: n,
        prod,
        shared,
        sandbox,
        eips,
    }
}

/// One line per asset with every field, ids replaced by names.
fn describe(a: &scanfleet_common::Asset, n: &Names, eips: &BTreeMap<String, String>) -> String {
    let name = a.tags.get("Name").cloned().unwrap_or_default();
    let ips: Vec<String> = a.addresses().iter().map(|i| i.to_string()).collect();
    let public: Vec<String> = a
        .public_ips
        .iter()
        .map(|p| {
            if eips.get(&name) == Some(&p.to_string()) {
                "eip".to_string()
            } else {
                p.to_string()
            }
        })
        .collect();
    let mut groups: Vec<String> = a.security_groups.iter().map(|g| n.of(g)).collect();
    groups.sort();
    let mut tags: Vec<String> = a
        .tags
        .iter()
        .filter(|(k, _)| *k != "Name")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    tags.sort();
    let exposure = match &a.exposure {
        None => "unknown".to_string(),
        Some(e) if e.is_closed() => "closed".to_string(),
        Some(e) => e
            .paths
            .iter()
            .flat_map(|p| p.tcp.iter().map(|r| r.to_string()))
            .collect::<Vec<_>>()
            .join(","),
    };
    format!(
        "{name} {} {} {} {} {} {} {} {} ips={} public={} sg={} asg={} tags={} image={} exposure={exposure}",
        n.opt(a.account_id.as_deref()),
        a.region.as_deref().unwrap_or("-"),
        a.availability_zone.as_deref().unwrap_or("-"),
        n.opt(a.vpc_id.as_deref()),
        n.opt(a.subnet_id.as_deref()),
        a.instance_type.as_deref().unwrap_or("-"),
        a.state.as_deref().unwrap_or("-"),
        a.platform.as_deref().unwrap_or("-"),
        ips.join(","),
        public.join(","),
        groups.join(","),
        a.autoscaling_group.as_deref().unwrap_or("-"),
        tags.join(","),
        a.image_id.as_deref().unwrap_or("-"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovers_the_organization_and_reports_the_account_it_cannot_enter() {
    let moto = Moto::start();
    let estate = seed(&moto).await;
    let n = &estate.names;
    for account in [MANAGEMENT, &estate.prod, &estate.shared, &estate.sandbox] {
        discovery_role(
            &moto,
            account,
            ROLE,
            "arn:aws:iam::123456789012:user/scanfleet",
            EXTERNAL_ID,
        )
        .await;
    }
    let user = discovery_user(&moto, ROLE, &[&estate.sandbox]).await;
    moto.enforce_iam();

    let opts = AwsDiscoveryOptions {
        accounts: AccountSource::Organization,
        role_name: ROLE.into(),
        external_id: Some(EXTERNAL_ID.into()),
        regions: Some(vec!["us-east-1".into(), "eu-west-1".into()]),
        page_size: 5,
        concurrency: 4,
        max_attempts: 2,
        ..AwsDiscoveryOptions::default()
    };
    let discoverer =
        Arc::new(AwsDiscoverer::with_sdk_config(opts, &moto.sdk(user, "us-east-1").await).unwrap());
    let d = discoverer.discover().await.unwrap();

    // Accounts: three discovered, the sandbox refused by IAM with its reason.
    let accounts: Vec<String> = d
        .accounts
        .iter()
        .map(|a| {
            format!(
                "{} {:?} {}/{} {}",
                n.of(&a.account_id),
                a.status,
                a.regions_ok,
                a.regions_failed,
                a.reason.as_deref().unwrap_or("-")
            )
        })
        .collect();
    let mut accounts = accounts;
    accounts.sort();
    assert_eq!(
        accounts,
        [
            "management Ok 2/0 -",
            "prod Ok 2/0 -",
            "sandbox Failed 0/0 sts:AssumeRole: AccessDenied",
            "shared Ok 2/0 -",
        ]
    );
    assert_eq!(d.failures.len(), 1, "{:?}", d.failures);
    let f = &d.failures[0];
    assert_eq!(
        (
            f.account_id.as_deref(),
            f.region.as_deref(),
            f.operation.as_str(),
            f.code.as_deref(),
            f.transient
        ),
        (
            Some(estate.sandbox.as_str()),
            None,
            "sts:AssumeRole",
            Some("AccessDenied"),
            false
        )
    );
    assert!(
        f.message
            .contains("is not authorized to perform: sts:AssumeRole"),
        "{}",
        f.message
    );
    assert_eq!(d.regions, ["eu-west-1", "us-east-1"]);
    assert!(d.incomplete.is_empty());

    // The exact inventory.
    let mut lines: Vec<String> = d
        .assets
        .iter()
        .map(|a| describe(a, n, &estate.eips))
        .collect();
    lines.sort();
    let expected = [
        "b-1 shared us-east-1 us-east-1a B1 b1-subnet r5.large running - ips=10.4.1.10 public= sg=? asg=- tags=team=data image=ami-1e749f67 exposure=closed",
        "b-2 shared us-east-1 us-east-1b B2 b2-subnet m5.large running windows ips=10.5.1.10 public= sg=? asg=- tags= image=ami-12c6146b exposure=closed",
        "db-1 prod us-east-1 us-east-1b A1 private m5.xlarge running - ips=10.1.2.10 public=eip sg=sg-internal asg=- tags=env=prod image=ami-1e749f67 exposure=closed",
        "eu-1 prod eu-west-1 eu-west-1a A3 a3-subnet m1.small running - ips=10.3.1.10 public= sg=? asg=- tags= image=ami-1e749f67 exposure=closed",
        "eu-2 prod eu-west-1 eu-west-1a A3 a3-subnet t3.medium running - ips=10.3.1.11 public= sg=? asg=- tags= image=ami-1e749f67 exposure=closed",
        "excl-1 prod us-east-1 us-east-1c A2 a2-subnet t3.micro running - ips=10.2.1.11 public= sg=sg-a2 asg=- tags=scan=no image=ami-1e749f67 exposure=closed",
        "locked-1 prod us-east-1 us-east-1a A1 locked c5.large running - ips=10.1.3.10 public=eip sg=sg-open asg=- tags= image=ami-1e749f67 exposure=443",
        "micro-1 prod us-east-1 us-east-1c A2 a2-subnet t1.micro running - ips=10.2.1.10 public= sg=sg-a2 asg=- tags= image=ami-1e749f67 exposure=closed",
        "nano-1 prod us-east-1 us-east-1b A1 private t2.nano running - ips=10.1.2.11 public= sg=sg-internal asg=- tags= image=ami-1e749f67 exposure=closed",
        "stopped-1 prod us-east-1 us-east-1b A1 private m5.large stopped - ips=10.1.2.12 public= sg=sg-internal asg=- tags= image=ami-1e749f67 exposure=closed",
        "web-1 prod us-east-1 us-east-1a A1 public m5.large running - ips=10.1.1.10,10.1.1.11,10.1.1.20 public=eip sg=sg-internal,sg-web asg=web-asg tags=aws:autoscaling:groupName=web-asg,env=prod image=ami-1e749f67 exposure=443",
    ];
    assert_eq!(lines, expected, "\n{}", lines.join("\n"));

    // Exposure, with its path and the reasons for what is closed.
    let by_name: HashMap<String, &scanfleet_common::Asset> = d
        .assets
        .iter()
        .map(|a| (a.tags["Name"].clone(), a))
        .collect();
    let web = by_name["web-1"].exposure.as_ref().unwrap();
    assert_eq!(web.paths.len(), 1);
    let path = &web.paths[0];
    assert_eq!(
        (
            path.public_ip.to_string(),
            path.private_ip.to_string(),
            n.of(&path.internet_gateway),
            n.of(&path.route_table),
            path.security_groups
                .iter()
                .map(|g| n.of(g))
                .collect::<Vec<_>>()
        ),
        (
            estate.eips["web-1"].clone(),
            "10.1.1.10".to_string(),
            "igw".to_string(),
            "rtb-public".to_string(),
            vec!["sg-web".to_string()]
        )
    );
    assert!(
        web.notes
            .iter()
            .any(|m| m.ends_with(": no public IP or Elastic IP")),
        "{:?}",
        web.notes
    );
    assert!(exposed(by_name["web-1"], 443) && !exposed(by_name["web-1"], 22));
    let locked = by_name["locked-1"].exposure.as_ref().unwrap();
    assert_eq!(n.of(&locked.paths[0].network_acl), "acl-locked");
    assert!(
        exposed(by_name["locked-1"], 443) && !exposed(by_name["locked-1"], 22),
        "rule 100 denies 22 before rule 200 allows it"
    );
    let db = by_name["db-1"].exposure.as_ref().unwrap();
    assert!(
        db.notes[0].contains("has no 0.0.0.0/0 route to an internet gateway"),
        "{:?}",
        db.notes
    );

    // Zones: A1+A3+B1 (across a region and an account), A2 alone (the pending
    // peering does not join it), B2 alone, each default VPC alone.
    // A discovery comes with its zones, each asset already in its zone.
    let zs = d.zones.clone();
    let named: BTreeSet<Vec<String>> = zs
        .iter()
        .map(|z| {
            let mut v: Vec<String> = z
                .vpcs
                .iter()
                .map(|v| n.of(&v.vpc_id))
                .filter(|v| !v.starts_with('?'))
                .collect();
            v.sort();
            v
        })
        .filter(|v| !v.is_empty())
        .collect();
    let expect_zone = |names: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(
        named,
        BTreeSet::from([
            expect_zone(&["A1", "A3", "B1"]),
            expect_zone(&["A2"]),
            expect_zone(&["B2"])
        ])
    );
    let defaults: Vec<_> = zs
        .iter()
        .filter(|z| z.vpcs.iter().all(|v| v.is_default))
        .collect();
    assert_eq!(
        defaults.len(),
        6,
        "one default VPC per discovered account and region"
    );
    assert!(defaults.iter().all(|z| z.vpcs.len() == 1));
    assert_eq!(zs.len(), 9);
    let big = zs.iter().find(|z| z.vpcs.len() == 3).unwrap();
    let smallest = big.vpcs.iter().map(|v| v.vpc_id.clone()).min().unwrap();
    assert_eq!(big.name, format!("zone-{smallest}"));
    assert_eq!(
        big.peerings
            .iter()
            .map(|p| n.of(p))
            .collect::<BTreeSet<_>>(),
        BTreeSet::from(["pcx-A1-A3".to_string(), "pcx-A1-B1".to_string()])
    );
    assert_eq!(big.instances(), 8);
    assert_eq!(by_name["b-1"].zone.as_deref(), Some(big.name.as_str()));
    assert_eq!(by_name["eu-2"].zone.as_deref(), Some(big.name.as_str()));
    assert_ne!(by_name["micro-1"].zone, by_name["b-2"].zone);
    let listing = zones::Listing(&zs).to_string();
    assert!(
        listing.contains(&format!("{}  3 VPCs, 2 accounts, 8 instances", big.name)),
        "{listing}"
    );

    // Scope in AWS pre-authorized mode: every private address of running,
    // allowed instances; each skip with its reason.
    let policy = ScopePolicy {
        exclude_tags: vec!["scan=no".parse().unwrap()],
        ..ScopePolicy::aws_preauthorized()
    };
    let (targets, skipped) = scope::apply(&d.assets, &policy, &RatePolicy::default());
    let name_of: HashMap<&str, &str> = d
        .assets
        .iter()
        .map(|a| (a.id.as_str(), a.tags["Name"].as_str()))
        .collect();
    let mut t: Vec<String> = targets
        .iter()
        .map(|t| format!("{} {}", name_of[t.asset_id.as_str()], t.ip))
        .collect();
    t.sort();
    assert_eq!(
        t,
        [
            "b-1 10.4.1.10",
            "b-2 10.5.1.10",
            "db-1 10.1.2.10",
            "eu-2 10.3.1.11",
            "locked-1 10.1.3.10",
            "web-1 10.1.1.10",
            "web-1 10.1.1.11",
            "web-1 10.1.1.20"
        ]
    );
    let mut s: Vec<String> = skipped
        .iter()
        .map(|s| format!("{} {}: {}", name_of[s.asset_id.as_str()], s.ip, s.reason))
        .collect();
    s.sort();
    assert_eq!(
        s,
        [
            "eu-1 10.3.1.10: instance type m1.small may not be scanned",
            "excl-1 10.2.1.11: tag scan=no is excluded",
            "micro-1 10.2.1.10: instance type t1.micro may not be scanned",
            "nano-1 10.1.2.11: instance type t2.nano may not be scanned",
            "stopped-1 10.1.2.12: instance is stopped, not running",
        ]
    );
    let grouped = zones::group_targets(&d.assets, targets.clone());
    assert_eq!(grouped[&big.name].len(), 7);
    assert!(!grouped.contains_key(zones::DEFAULT_ZONE));

    // The inventory is what `scan --inventory` reads.
    let back = scanfleet_common::inventory::parse(Path::new("inventory.json"), &d.inventory_json())
        .unwrap();
    assert_eq!(back, d.assets);
    // A sample for documentation: SCANFLEET_DUMP_INVENTORY=/tmp/inventory.json.
    if let Ok(path) = std::env::var("SCANFLEET_DUMP_INVENTORY") {
        std::fs::write(path, d.inventory_json()).unwrap();
    }

    // API calls: one ListAccounts, one AssumeRole per account, two pages of
    // DescribeInstances where 7 reservations meet a page size of 5.
    let req = &d.api_calls.requests;
    assert_eq!(req.get("organizations:ListAccounts"), Some(&1), "{req:?}");
    assert_eq!(req.get("sts:AssumeRole"), Some(&4), "{req:?}");
    assert_eq!(req.get("ec2:DescribeInstances"), Some(&7), "{req:?}");
    for op in [
        "DescribeVpcs",
        "DescribeVpcPeeringConnections",
        "DescribeSubnets",
        "DescribeSecurityGroups",
        "DescribeNetworkAcls",
        "DescribeRouteTables",
        "DescribeAddresses",
    ] {
        assert_eq!(req.get(&format!("ec2:{op}")), Some(&6), "{op}: {req:?}");
    }
    assert!(d.api_calls.total_attempts() >= d.api_calls.total_requests());

    let summary = Summary::new(&d, &zs, &targets, &skipped);
    assert_eq!(
        (
            summary.accounts_ok,
            summary.accounts_failed,
            summary.instances,
            summary.running,
            summary.internet_exposed
        ),
        (3, 1, 11, 10, 2)
    );
    let text = summary.to_string();
    assert!(text.contains("accounts   4: 3 ok, 1 failed"), "{text}");
    assert!(text.contains("scope      8 targets in scope, 5 addresses skipped (excluded-tag 1, not-running 1, prohibited-instance-type 3)"), "{text}");
    assert!(
        text.contains(&format!(
            "failed     account {}: sts:AssumeRole: AccessDenied",
            estate.sandbox
        )),
        "{text}"
    );
    assert!(
        d.accounts
            .iter()
            .all(|a| a.status != AccountStatus::Partial)
    );
}

/// An accounts file instead of the organization, the regions from DescribeRegions,
/// and the caller's own account without AssumeRole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_list_regions_from_ec2_and_the_caller_account() {
    let moto = Moto::start();
    let ids = organization(&moto, &["one"]).await;
    let one = Ec2::new(&moto.account(&ids[0], "ap-southeast-2").await).await;
    let subnet = one
        .vpc_with_subnet("10.7.0.0/16", "10.7.1.0/24", "ap-southeast-2a")
        .await;
    one.launch(Launch::plain("far", &subnet, "10.7.1.5")).await;
    let root = moto.root("us-east-1").await;

    let opts = AwsDiscoveryOptions {
        accounts: AccountSource::List(vec![AccountRef {
            account_id: ids[0].clone(),
            name: Some("one".into()),
        }]),
        describe_images: false,
        ..AwsDiscoveryOptions::default()
    };
    let d = Arc::new(AwsDiscoverer::with_sdk_config(opts, &root).unwrap())
        .discover()
        .await
        .unwrap();
    assert!(d.is_complete(), "{:?}", d.failures);
    assert!(
        d.regions.len() > 10,
        "every region EC2 lists: {:?}",
        d.regions
    );
    let far: Vec<_> = d
        .assets
        .iter()
        .filter(|a| a.region.as_deref() == Some("ap-southeast-2"))
        .collect();
    assert_eq!(far.len(), 1);
    assert_eq!(
        (far[0].private_ip.to_string(), far[0].account_id.as_deref()),
        ("10.7.1.5".to_string(), Some(ids[0].as_str()))
    );
    assert_eq!(
        d.api_calls.requests.get("ec2:DescribeRegions"),
        Some(&1),
        "{:?}",
        d.api_calls
    );
    assert_eq!(d.api_calls.requests.get("ec2:DescribeImages"), None);

    let opts = AwsDiscoveryOptions {
        accounts: AccountSource::Caller,
        regions: Some(vec!["us-east-1".into()]),
        ..AwsDiscoveryOptions::default()
    };
    let d = Arc::new(AwsDiscoverer::with_sdk_config(opts, &root).unwrap())
        .discover()
        .await
        .unwrap();
    assert_eq!(
        d.accounts
            .iter()
            .map(|a| a.account_id.as_str())
            .collect::<Vec<_>>(),
        [MANAGEMENT]
    );
    assert_eq!(d.api_calls.requests.get("sts:AssumeRole"), None);
    assert!(d.assets.is_empty() && d.is_complete());
}
