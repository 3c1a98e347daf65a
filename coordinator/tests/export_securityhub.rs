//! `asff` and the Security Hub import against moto's Security Hub (a private
//! moto_server per test): the ASFF a file export writes, then import, re-import
//! with a finding changed (updated, not duplicated), an import where a finding is
//! gone (archived), and GetFindings shows exactly the expected set; batches of at
//! most 100; per-member import through the assumed role.

#[path = "fixtures/export/findings.rs"]
mod fixture;

use std::collections::BTreeMap;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_securityhub::config::Credentials;
use aws_sdk_securityhub::types::AwsSecurityFinding;
use scanfleet_coordinator::export::securityhub::{self, AccountModel, ImportOptions};
use scanfleet_coordinator::export::{self, Format, asff};
use scanfleet_testkit::Moto;

const CALLER: &str = "123456789012";
const MEMBER: &str = "111122223333";

async fn sdk(moto: &Moto, creds: Credentials) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .credentials_provider(creds)
        .region(Region::new("us-east-1"))
        .endpoint_url(&moto.url)
        .http_client(scanfleet_common::aws::https_client())
        .load()
        .await
}

async fn root(moto: &Moto) -> SdkConfig {
    sdk(
        moto,
        Credentials::new("testing", "testing", None, None, "test"),
    )
    .await
}

/// Credentials in `account` (moto maps an assumed role's keys to its account).
async fn in_account(moto: &Moto, account: &str) -> SdkConfig {
    let sts = aws_sdk_sts::Client::new(&root(moto).await);
    let out = sts
        .assume_role()
        .role_arn(format!("arn:aws:iam::{account}:role/check"))
        .role_session_name("check")
        .send()
        .await
        .unwrap();
    let c = out.credentials().unwrap();
    sdk(
        moto,
        Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().into()),
            None,
            "check",
        ),
    )
    .await
}

/// Every finding the account's hub holds, by id.
async fn held(sdk: &SdkConfig) -> BTreeMap<String, AwsSecurityFinding> {
    let client = aws_sdk_securityhub::Client::new(sdk);
    let mut out = BTreeMap::new();
    let mut token = None;
    for _ in 0..100 {
        let page = client
            .get_findings()
            .max_results(100)
            .set_next_token(token)
            .send()
            .await
            .unwrap();
        for f in page.findings() {
            out.insert(f.id.clone().unwrap(), f.clone());
        }
        token = page
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    out
}

fn state(f: &AwsSecurityFinding) -> &str {
    f.record_state.as_ref().map_or("", |s| s.as_str())
}

fn opts(moto: &Moto) -> ImportOptions {
    ImportOptions {
        endpoint_url: Some(moto.url.clone()),
        region: Some("us-east-1".into()),
        max_attempts: 3,
        ..ImportOptions::default()
    }
}

#[test]
fn asff_file_has_the_required_fields_and_limits() {
    let scan = fixture::scan("exp-asff-file");
    let mut out = Vec::new();
    export::write(Format::Asff, &scan.export(), &mut out).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let findings = doc["Findings"].as_array().unwrap();
    assert_eq!(findings.len(), 5);
    let telnet = findings
        .iter()
        .find(|f| f["Id"] == "us-east-1/111122223333/i-0abc1234def567890/tcp/23")
        .unwrap();
    for k in [
        "SchemaVersion",
        "Id",
        "ProductArn",
        "GeneratorId",
        "AwsAccountId",
        "Types",
        "CreatedAt",
        "UpdatedAt",
        "FirstObservedAt",
        "LastObservedAt",
        "Severity",
        "FindingProviderFields",
        "Title",
        "Description",
        "Resources",
        "Network",
        "NetworkPath",
        "RecordState",
        "Workflow",
    ] {
        assert!(telnet.get(k).is_some(), "{k} missing in {telnet:#}");
    }
    assert_eq!(telnet["SchemaVersion"], "2018-10-08");
    // Without an importing account, the file uses the resource's own account.
    assert_eq!(
        telnet["ProductArn"],
        "arn:aws:securityhub:us-east-1:111122223333:product/111122223333/default"
    );
    assert_eq!(telnet["AwsAccountId"], "111122223333");
    assert_eq!(telnet["GeneratorId"], "scanfleet/SF-TELNET");
    assert_eq!(telnet["Types"][0], asff::FINDING_TYPE);
    assert_eq!(
        telnet["FindingProviderFields"]["Types"][0],
        asff::FINDING_TYPE
    );
    assert_eq!(
        telnet["FindingProviderFields"]["Severity"]["Label"],
        "CRITICAL"
    );
    assert_eq!(
        telnet["FindingProviderFields"]["Severity"]["Original"],
        "9.5"
    );
    assert_eq!(telnet["CreatedAt"], "2026-05-28T20:26:40.000Z");
    assert_eq!(telnet["UpdatedAt"], "2026-05-28T20:27:40.000Z");
    assert_eq!(telnet["RecordState"], "ACTIVE");
    assert_eq!(telnet["Workflow"]["Status"], "NEW");
    let r = &telnet["Resources"][0];
    assert_eq!(r["Type"], "AwsEc2Instance");
    assert_eq!(
        r["Id"],
        "arn:aws:ec2:us-east-1:111122223333:instance/i-0abc1234def567890"
    );
    assert_eq!(
        r["Details"]["AwsEc2Instance"]["IpV4Addresses"][0],
        "10.0.0.5"
    );
    assert_eq!(r["Details"]["AwsEc2Instance"]["VpcId"], "vpc-0123abcd");
    assert_eq!(telnet["Network"]["DestinationPort"], 23);
    assert_eq!(telnet["Network"]["Direction"], "IN");
    let path = telnet["NetworkPath"].as_array().unwrap();
    assert_eq!(path.len(), 5);
    assert_eq!(path[0]["ComponentId"], "igw-0a1b2c");
    assert_eq!(path[0]["ComponentType"], "AWS::EC2::InternetGateway");
    assert_eq!(path[0]["Ingress"]["Source"]["Address"][0], "0.0.0.0/0");
    assert_eq!(
        path[0]["Ingress"]["Destination"]["Address"][0],
        "203.0.113.10"
    );
    assert_eq!(
        path[4]["Egress"]["Destination"]["PortRanges"][0]["Begin"],
        23
    );
    for c in path {
        assert!(c["ComponentId"].as_str().unwrap().len() <= 32);
        assert!(c["ComponentType"].as_str().unwrap().len() <= 32);
    }
    assert_eq!(
        telnet["ProductFields"]["scanfleet/Banner"],
        fixture::EVIL_BANNER
    );
    // The bare-IP asset is an Other resource; the suppressed one is SUPPRESSED.
    let redis = findings
        .iter()
        .find(|f| f["Network"]["DestinationPort"] == 6379)
        .unwrap();
    assert_eq!(redis["Resources"][0]["Type"], "Other");
    assert_eq!(redis["Resources"][0]["Id"], "10.0.0.9");
    assert_eq!(redis["AwsAccountId"], asff::UNKNOWN_ACCOUNT);
    let https = findings
        .iter()
        .find(|f| f["Network"]["DestinationPort"] == 443)
        .unwrap();
    assert_eq!(https["Workflow"]["Status"], "SUPPRESSED");
    assert_eq!(https["FindingProviderFields"]["Severity"]["Label"], "LOW");

    // A long path id is cut to 32 characters; a long title to ASFF's 256.
    let mut long = scan.clone();
    long.findings[0].network_path[3].id = "sg-".to_string() + &"a".repeat(60);
    long.findings[0].title = "t".repeat(400);
    let f = asff::security_hub_finding(&asff::AsffTarget::default(), &long.findings[0]);
    assert_eq!(f.network_path()[3].component_id().unwrap().len(), 32);
    assert!(f.title().unwrap().chars().count() <= 256);
}

#[tokio::test]
async fn import_reimport_and_archive_in_moto() {
    let moto = Moto::start();
    let sdk = root(&moto).await;
    let opts = opts(&moto);

    // 1. First import: every finding created, in the caller's account.
    let first = fixture::scan("exp-sh-1");
    let r = securityhub::import_with(&sdk, &opts, &first.export())
        .await
        .unwrap();
    assert_eq!((r.imported, r.archived, r.failed.len()), (5, 0, 0), "{r:?}");
    let now = held(&sdk).await;
    let ids: Vec<&str> = now.keys().map(String::as_str).collect();
    let mut want: Vec<&str> = first.findings.iter().map(|f| f.id.as_str()).collect();
    want.sort_unstable();
    assert_eq!(ids, want);
    for f in now.values() {
        assert_eq!(f.aws_account_id.as_deref(), Some(CALLER));
        assert_eq!(
            f.product_arn.as_deref(),
            Some("arn:aws:securityhub:us-east-1:123456789012:product/123456789012/default")
        );
        assert_eq!(state(f), "ACTIVE");
        // The resource keeps its own account.
        if f.id.as_deref().unwrap().contains("/i-") {
            assert!(
                f.resources()[0]
                    .id()
                    .unwrap()
                    .contains(":111122223333:instance/")
            );
        }
    }

    // 2. Re-import with telnet changed (newer observation, new score): updated,
    // not duplicated.
    let mut second = fixture::scan("exp-sh-2");
    let telnet_id = "us-east-1/111122223333/i-0abc1234def567890/tcp/23";
    let t = second
        .findings
        .iter_mut()
        .find(|f| f.id == telnet_id)
        .unwrap();
    t.last_observed_unix_ms += 3_600_000;
    t.score = 10.0;
    t.title = "Telnet still open on 10.0.0.5:23/tcp".into();
    let r = securityhub::import_with(&sdk, &opts, &second.export())
        .await
        .unwrap();
    assert_eq!((r.imported, r.archived, r.failed.len()), (5, 0, 0), "{r:?}");
    let now = held(&sdk).await;
    assert_eq!(now.len(), 5, "a re-import added findings: {:?}", now.keys());
    let t = &now[telnet_id];
    assert_eq!(
        t.title.as_deref(),
        Some("Telnet still open on 10.0.0.5:23/tcp")
    );
    assert_eq!(t.updated_at.as_deref(), Some("2026-05-28T21:27:40.000Z"));
    assert_eq!(
        t.finding_provider_fields
            .as_ref()
            .and_then(|p| p.severity())
            .and_then(|s| s.original()),
        Some("10.0")
    );

    // 3. SSH closed: the ssh finding is archived, the others stay active.
    let mut third = fixture::scan("exp-sh-3");
    third.remove("10.0.0.5", 22);
    let mut o = opts.clone();
    o.now_unix_ms = Some(fixture::T0 + 7_200_000);
    let r = securityhub::import_with(&sdk, &o, &third.export())
        .await
        .unwrap();
    assert_eq!((r.imported, r.archived, r.failed.len()), (4, 1, 0), "{r:?}");
    let now = held(&sdk).await;
    assert_eq!(now.len(), 5);
    let ssh_id = "us-east-1/111122223333/i-0abc1234def567890/tcp/22";
    let states: BTreeMap<&str, &str> = now.iter().map(|(k, v)| (k.as_str(), state(v))).collect();
    for (id, st) in &states {
        assert_eq!(
            *st,
            if *id == ssh_id { "ARCHIVED" } else { "ACTIVE" },
            "{states:?}"
        );
    }
    assert_eq!(
        now[ssh_id].updated_at.as_deref(),
        Some("2026-05-28T22:26:40.000Z")
    );
    // The archived finding kept what the provider said about it.
    assert_eq!(
        now[ssh_id].generator_id.as_deref(),
        Some("scanfleet/SF-SSH")
    );
    assert_eq!(now[ssh_id].resources().len(), 1);

    // 4. The same scan again: nothing more to archive.
    let r = securityhub::import_with(&sdk, &o, &third.export())
        .await
        .unwrap();
    assert_eq!((r.imported, r.archived), (4, 0), "{r:?}");
    assert_eq!(held(&sdk).await.len(), 5);
}

#[tokio::test]
async fn large_imports_go_in_batches_of_100() {
    let moto = Moto::start();
    let sdk = root(&moto).await;
    let mut scan = fixture::scan("exp-sh-batch");
    for i in 0..245u16 {
        scan.add(fixture::finding(
            "exp-sh-batch",
            "",
            &format!("10.1.{}.{}", i / 200, i % 200 + 1),
            8000 + i,
            "SF-HTTP",
            4.0,
            4.0,
            Some(fixture::service("http", "nginx", "1.22.1", "")),
        ));
    }
    // Untrusted text of any length is cut to ASFF's limits, so the finding
    // stays under Security Hub's 240 KB and is imported.
    let mut huge = fixture::finding(
        "exp-sh-batch",
        "",
        "10.2.0.1",
        80,
        "SF-HTTP",
        4.0,
        4.0,
        None,
    );
    huge.title = "x".repeat(2000);
    huge.reasons[0].text = "y".repeat(300 * 1024);
    scan.add(huge);
    let r = securityhub::import_with(&sdk, &opts(&moto), &scan.export())
        .await
        .unwrap();
    assert_eq!(
        (r.imported, r.batches, r.failed.len()),
        (251, 3, 0),
        "{r:?}"
    );
    let now = held(&sdk).await;
    assert_eq!(now.len(), 251);
    let h = &now["-/-/10.2.0.1/tcp/80"];
    assert!(h.title.as_ref().unwrap().chars().count() <= 256);
    assert!(h.description.as_ref().unwrap().chars().count() <= 1024);
}

#[tokio::test]
async fn per_member_import_goes_to_each_accounts_hub() {
    let moto = Moto::start();
    let sdk = root(&moto).await;
    let mut o = opts(&moto);
    o.accounts = AccountModel::PerMember {
        role_name: "ScanfleetDiscovery".into(),
        external_id: None,
    };
    let scan = fixture::scan("exp-sh-member");
    let r = securityhub::import_with(&sdk, &o, &scan.export())
        .await
        .unwrap();
    assert_eq!((r.imported, r.failed.len()), (5, 0), "{r:?}");
    let member = held(&in_account(&moto, MEMBER).await).await;
    let caller = held(&sdk).await;
    // The instance's four findings in the member's hub, the bare IP's in the caller's.
    assert_eq!(member.len(), 4, "{:?}", member.keys());
    assert!(
        member
            .values()
            .all(|f| f.aws_account_id.as_deref() == Some(MEMBER)
                && f.product_arn.as_deref()
                    == Some(
                        "arn:aws:securityhub:us-east-1:111122223333:product/111122223333/default"
                    ))
    );
    assert_eq!(caller.keys().collect::<Vec<_>>(), ["-/-/10.0.0.9/tcp/6379"]);
}
