//! `asff`: a scan's findings as AWS Security Hub findings (ASFF 2018-10-08), built
//! with aws-sdk-securityhub's types, and their JSON (`{"Findings": [...]}`, the
//! body BatchImportFindings takes) for `scanfleet export --to asff`.
//!
//! The SDK's types carry no serde, so [`to_json`] writes the fields
//! [`security_hub_finding`] sets, reading them back from the built
//! `AwsSecurityFinding`: the file and the import send the same finding.

use std::io::{self, Write};

use aws_sdk_securityhub::types::{
    AwsEc2InstanceDetails, AwsSecurityFinding, FindingProviderFields, FindingProviderSeverity,
    Network, NetworkDirection, NetworkHeader, NetworkPathComponent, NetworkPathComponentDetails,
    Partition, PortRange, Recommendation, RecordState, Remediation, Resource, ResourceDetails,
    Severity as AsffSeverity, SeverityLabel, Workflow, WorkflowStatus,
};
use serde_json::{Map, Value, json};

use crate::export::{Export, flat, rfc3339_ms};
use crate::findings::{Finding, FindingKind, Severity};

/// ASFF's schema version.
pub const SCHEMA_VERSION: &str = "2018-10-08";
/// Every GeneratorId scanfleet writes starts with this, so a GetFindings filter on
/// the prefix finds scanfleet's findings and no other provider's.
pub const GENERATOR_PREFIX: &str = "scanfleet/";
/// The ASFF type of every scanfleet finding (ASFF's types taxonomy,
/// namespace/category/classifier): a port reachable on the network, the type
/// Amazon Inspector's network reachability findings carry too.
pub const FINDING_TYPE: &str =
    "Software and Configuration Checks/AWS Security Best Practices/Network Reachability";
/// The longest NetworkPath component id (and type) Security Hub takes.
pub const COMPONENT_ID_MAX: usize = 32;
/// Title and Description limits of ASFF.
const TITLE_MAX: usize = 256;
const DESCRIPTION_MAX: usize = 1024;
/// ProductFields values are at most 2048 characters.
const FIELD_MAX: usize = 2048;
/// The account in findings of assets without an account, when no importing
/// account is given (a file written without asking AWS who we are).
pub const UNKNOWN_ACCOUNT: &str = "000000000000";
/// Region of the Security Hub when neither the options nor the finding name one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// Which Security Hub the findings are for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AsffTarget {
    /// The account that imports the findings: their AwsAccountId and the account of
    /// their ProductArn (Security Hub's default product). `None`: each finding's
    /// own account (the per-member layout), [`UNKNOWN_ACCOUNT`] when it has none.
    pub account_id: Option<String>,
    /// The Security Hub's region (of the ProductArn). `None`: each finding's
    /// region, else [`DEFAULT_REGION`].
    pub region: Option<String>,
    /// UpdatedAt of every finding (unix ms) instead of its last observation (an
    /// archive must be newer than what Security Hub holds).
    pub updated_unix_ms: Option<u64>,
    /// RecordState ARCHIVED instead of ACTIVE.
    pub archived: bool,
}

/// The partition of a region (`aws`, `aws-cn`, `aws-us-gov`).
pub fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// `arn:<partition>:securityhub:<region>:<account>:product/<account>/default`.
pub fn product_arn(region: &str, account: &str) -> String {
    format!(
        "arn:{}:securityhub:{region}:{account}:product/{account}/default",
        partition_of(region)
    )
}

/// The GeneratorId of a finding: [`GENERATOR_PREFIX`] and its most severe rule
/// (`scanfleet/SF-TELNET`), or its kind when no rule matched.
pub fn generator_id(f: &Finding) -> String {
    let rule = f.rules.first().map_or_else(
        || match f.kind {
            FindingKind::OpenPort => "open-port",
            FindingKind::LatentExposure => "latent-exposure",
        },
        String::as_str,
    );
    format!("{GENERATOR_PREFIX}{rule}")
}

fn label(s: Severity) -> SeverityLabel {
    match s {
        Severity::Informational => SeverityLabel::Informational,
        Severity::Low => SeverityLabel::Low,
        Severity::Medium => SeverityLabel::Medium,
        Severity::High => SeverityLabel::High,
        Severity::Critical => SeverityLabel::Critical,
    }
}

/// At most `max` characters of `s` (ASFF limits count characters).
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(3)).collect();
        out.push_str("...");
        out
    }
}

/// The AWS type of a path step (`AWS::EC2::SecurityGroup`), at most 32 characters.
fn component_type(kind: &str) -> String {
    let t = match kind {
        "internet-gateway" => "AWS::EC2::InternetGateway",
        "route-table" => "AWS::EC2::RouteTable",
        "network-acl" => "AWS::EC2::NetworkAcl",
        "security-group" => "AWS::EC2::SecurityGroup",
        "instance" => "AWS::EC2::Instance",
        "network-interface" => "AWS::EC2::NetworkInterface",
        "subnet" => "AWS::EC2::Subnet",
        other => other,
    };
    cut_exact(t, COMPONENT_ID_MAX)
}

/// At most `max` characters, without a marker (ids are cut, not decorated).
fn cut_exact(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

fn description(f: &Finding) -> String {
    let mut d = format!(
        "{} (score {:.1}, base {:.1}). {}.",
        f.title,
        f.score,
        f.base_score,
        f.reasons
            .iter()
            .map(|r| format!("{} ({:+.1}): {}", r.code, r.delta, r.text))
            .collect::<Vec<_>>()
            .join("; ")
    );
    if let Some(s) = &f.service {
        let sv: Vec<&str> = [
            Some(s.name.as_str()),
            s.product.as_deref(),
            s.version.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect();
        d.push_str(&format!(" Service: {}.", sv.join(" ")));
    }
    if let Some(s) = &f.suppressed {
        d.push_str(&format!(" Suppressed by {}: {}.", s.rule, s.reason));
    }
    cut(&d, DESCRIPTION_MAX)
}

/// One finding as an ASFF `AwsSecurityFinding`.
pub fn security_hub_finding(t: &AsffTarget, f: &Finding) -> AwsSecurityFinding {
    let account = t
        .account_id
        .clone()
        .or_else(|| f.account_id.clone())
        .unwrap_or_else(|| UNKNOWN_ACCOUNT.into());
    let hub_region = t
        .region
        .clone()
        .or_else(|| f.region.clone())
        .unwrap_or_else(|| DEFAULT_REGION.into());
    let resource_region = f.region.clone().unwrap_or_else(|| hub_region.clone());
    let partition = partition_of(&resource_region);
    let updated = t.updated_unix_ms.unwrap_or(f.last_observed_unix_ms);
    let types = FINDING_TYPE.to_string();

    let is_instance = f.asset_id.starts_with("i-");
    let mut resource = Resource::builder()
        .partition(Partition::from(partition))
        .region(&resource_region);
    resource = if is_instance {
        let mut details = AwsEc2InstanceDetails::builder()
            .set_type(f.instance_type.clone())
            .set_vpc_id(f.vpc_id.clone())
            .set_subnet_id(f.subnet_id.clone());
        details = if f.ip.is_ipv4() {
            details.ipv4_addresses(f.ip.to_string())
        } else {
            details.ipv6_addresses(f.ip.to_string())
        };
        resource
            .r#type("AwsEc2Instance")
            .id(format!(
                "arn:{partition}:ec2:{resource_region}:{}:instance/{}",
                f.account_id.as_deref().unwrap_or(&account),
                f.asset_id
            ))
            .details(
                ResourceDetails::builder()
                    .aws_ec2_instance(details.build())
                    .build(),
            )
    } else {
        resource.r#type("Other").id(f.asset_id.clone()).details(
            ResourceDetails::builder()
                .other("IpAddress", f.ip.to_string())
                .other("Port", format!("{}/{}", f.port, f.protocol.as_str()))
                .build(),
        )
    };
    for (k, v) in f.tags.iter().take(50) {
        resource = resource.tags(cut_exact(k, 128), cut_exact(v, 256));
    }

    let mut network = Network::builder()
        .direction(NetworkDirection::In)
        .protocol(f.protocol.as_str().to_uppercase())
        .destination_port(i32::from(f.port))
        .open_port_range(
            PortRange::builder()
                .begin(i32::from(f.port))
                .end(i32::from(f.port))
                .build(),
        );
    network = if f.ip.is_ipv4() {
        network.destination_ipv4(f.ip.to_string())
    } else {
        network.destination_ipv6(f.ip.to_string())
    };

    let sev = label(f.severity);
    let mut b = AwsSecurityFinding::builder()
        .schema_version(SCHEMA_VERSION)
        .id(&f.id)
        .product_arn(product_arn(&hub_region, &account))
        .product_name("scanfleet")
        .company_name("scanfleet")
        .generator_id(generator_id(f))
        .aws_account_id(&account)
        .types(&types)
        .created_at(rfc3339_ms(f.first_observed_unix_ms))
        .updated_at(rfc3339_ms(updated))
        .first_observed_at(rfc3339_ms(f.first_observed_unix_ms))
        .last_observed_at(rfc3339_ms(f.last_observed_unix_ms))
        .severity(
            AsffSeverity::builder()
                .label(sev.clone())
                .original(format!("{:.1}", f.score))
                .build(),
        )
        .finding_provider_fields(
            FindingProviderFields::builder()
                .severity(
                    FindingProviderSeverity::builder()
                        .label(sev)
                        .original(format!("{:.1}", f.score))
                        .build(),
                )
                .types(&types)
                .build(),
        )
        .title(cut(&f.title, TITLE_MAX))
        .description(description(f))
        .remediation(
            Remediation::builder()
                .recommendation(
                    Recommendation::builder()
                        .text(cut(super::remediation_of(f), 512))
                        .build(),
                )
                .build(),
        )
        .resources(resource.build())
        .network(network.build())
        .record_state(if t.archived {
            RecordState::Archived
        } else {
            RecordState::Active
        })
        .workflow(
            Workflow::builder()
                .status(if f.suppressed.is_some() {
                    WorkflowStatus::Suppressed
                } else {
                    WorkflowStatus::New
                })
                .build(),
        );
    for step in network_path(f) {
        b = b.network_path(step);
    }
    for (k, v) in product_fields(f) {
        b = b.product_fields(k, cut(&v, FIELD_MAX));
    }
    b.build()
}

/// The path from the internet as NetworkPath components: the first admits the
/// internet (`0.0.0.0/0`) in, the last hands the port to the asset.
fn network_path(f: &Finding) -> Vec<NetworkPathComponent> {
    let n = f.network_path.len();
    let port = PortRange::builder()
        .begin(i32::from(f.port))
        .end(i32::from(f.port))
        .build();
    let world = if f.ip.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
    f.network_path
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let mut c = NetworkPathComponent::builder()
                .component_id(cut_exact(&step.id, COMPONENT_ID_MAX))
                .component_type(component_type(&step.kind));
            if i == 0 {
                c = c.ingress(
                    NetworkHeader::builder()
                        .protocol(f.protocol.as_str().to_uppercase())
                        .source(
                            NetworkPathComponentDetails::builder()
                                .address(world)
                                .build(),
                        )
                        .destination(
                            NetworkPathComponentDetails::builder()
                                .address(
                                    f.exposure
                                        .as_ref()
                                        .map_or(f.ip, |e| e.public_ip)
                                        .to_string(),
                                )
                                .port_ranges(port.clone())
                                .build(),
                        )
                        .build(),
                );
            }
            if i + 1 == n {
                c = c.egress(
                    NetworkHeader::builder()
                        .protocol(f.protocol.as_str().to_uppercase())
                        .destination(
                            NetworkPathComponentDetails::builder()
                                .address(f.ip.to_string())
                                .port_ranges(port.clone())
                                .build(),
                        )
                        .build(),
                );
            }
            c.build()
        })
        .collect()
}

/// What ASFF has no field for, under `scanfleet/` keys.
fn product_fields(f: &Finding) -> Vec<(String, String)> {
    let mut out = vec![
        ("scanfleet/AssetId".to_string(), f.asset_id.clone()),
        ("scanfleet/ScanId".into(), f.scan_id.clone()),
        ("scanfleet/Kind".into(), flat::serde_plain(&f.kind)),
        ("scanfleet/State".into(), f.state.as_str().into()),
        ("scanfleet/Score".into(), format!("{:.1}", f.score)),
        ("scanfleet/BaseScore".into(), format!("{:.1}", f.base_score)),
        ("scanfleet/Rules".into(), f.rules.join(",")),
        ("scanfleet/Reasons".into(), flat::reasons_text(f)),
        (
            "scanfleet/InternetReachable".into(),
            f.internet_reachable.to_string(),
        ),
    ];
    if let Some(a) = &f.account_id {
        out.push(("scanfleet/ResourceAccountId".into(), a.clone()));
    }
    if let Some(s) = &f.service {
        out.push(("scanfleet/Service".into(), s.name.clone()));
        for (k, v) in [
            ("scanfleet/Product", &s.product),
            ("scanfleet/Version", &s.version),
            ("scanfleet/Cpe", &s.cpe),
            ("scanfleet/Banner", &s.banner),
        ] {
            if let Some(v) = v {
                out.push((k.into(), v.clone()));
            }
        }
    }
    if let Some(s) = &f.suppressed {
        out.push(("scanfleet/SuppressedBy".into(), s.rule.clone()));
        out.push(("scanfleet/SuppressedReason".into(), s.reason.clone()));
    }
    out.retain(|(_, v)| !v.is_empty());
    out
}

/// Every finding of `ex`, for `t`.
pub fn findings(t: &AsffTarget, ex: &Export<'_>) -> Vec<AwsSecurityFinding> {
    ex.findings
        .iter()
        .map(|f| security_hub_finding(t, f))
        .collect()
}

/// `{"Findings": [...]}`, the body of BatchImportFindings.
///
/// # Errors
/// I/O errors of the writer.
pub fn write(t: &AsffTarget, ex: &Export<'_>, w: &mut dyn Write) -> io::Result<()> {
    let doc = json!({
        "Findings": findings(t, ex).iter().map(to_json).collect::<Vec<_>>()
    });
    serde_json::to_writer_pretty(&mut *w, &doc)?;
    w.write_all(b"\n")
}

fn put(m: &mut Map<String, Value>, k: &str, v: Option<&str>) {
    if let Some(v) = v {
        m.insert(k.into(), Value::String(v.into()));
    }
}

fn port_range(p: &PortRange) -> Value {
    json!({"Begin": p.begin(), "End": p.end()})
}

fn header(h: &NetworkHeader) -> Value {
    let details = |d: &NetworkPathComponentDetails| {
        let mut m = Map::new();
        if !d.address().is_empty() {
            m.insert("Address".into(), json!(d.address()));
        }
        if !d.port_ranges().is_empty() {
            m.insert(
                "PortRanges".into(),
                Value::Array(d.port_ranges().iter().map(port_range).collect()),
            );
        }
        Value::Object(m)
    };
    let mut m = Map::new();
    put(&mut m, "Protocol", h.protocol());
    if let Some(d) = h.source() {
        m.insert("Source".into(), details(d));
    }
    if let Some(d) = h.destination() {
        m.insert("Destination".into(), details(d));
    }
    Value::Object(m)
}

/// The ASFF JSON of a finding [`security_hub_finding`] built (the fields it sets).
pub fn to_json(f: &AwsSecurityFinding) -> Value {
    let mut m = Map::new();
    put(&mut m, "SchemaVersion", f.schema_version());
    put(&mut m, "Id", f.id());
    put(&mut m, "ProductArn", f.product_arn());
    put(&mut m, "ProductName", f.product_name());
    put(&mut m, "CompanyName", f.company_name());
    put(&mut m, "GeneratorId", f.generator_id());
    put(&mut m, "AwsAccountId", f.aws_account_id());
    m.insert("Types".into(), json!(f.types()));
    put(&mut m, "CreatedAt", f.created_at());
    put(&mut m, "UpdatedAt", f.updated_at());
    put(&mut m, "FirstObservedAt", f.first_observed_at());
    put(&mut m, "LastObservedAt", f.last_observed_at());
    if let Some(s) = f.severity() {
        let mut sm = Map::new();
        put(&mut sm, "Label", s.label().map(SeverityLabel::as_str));
        put(&mut sm, "Original", s.original());
        m.insert("Severity".into(), Value::Object(sm));
    }
    if let Some(p) = f.finding_provider_fields() {
        let mut pm = Map::new();
        if let Some(s) = p.severity() {
            let mut sm = Map::new();
            put(&mut sm, "Label", s.label().map(SeverityLabel::as_str));
            put(&mut sm, "Original", s.original());
            pm.insert("Severity".into(), Value::Object(sm));
        }
        pm.insert("Types".into(), json!(p.types()));
        m.insert("FindingProviderFields".into(), Value::Object(pm));
    }
    put(&mut m, "Title", f.title());
    put(&mut m, "Description", f.description());
    if let Some(t) = f
        .remediation()
        .and_then(|r| r.recommendation())
        .and_then(|r| r.text())
    {
        m.insert("Remediation".into(), json!({"Recommendation": {"Text": t}}));
    }
    if let Some(pf) = f.product_fields() {
        let sorted: std::collections::BTreeMap<_, _> = pf.iter().collect();
        m.insert("ProductFields".into(), json!(sorted));
    }
    let resources: Vec<Value> = f
        .resources()
        .iter()
        .map(|r| {
            let mut rm = Map::new();
            put(&mut rm, "Type", r.r#type());
            put(&mut rm, "Id", r.id());
            put(&mut rm, "Partition", r.partition().map(Partition::as_str));
            put(&mut rm, "Region", r.region());
            if let Some(tags) = r.tags() {
                let sorted: std::collections::BTreeMap<_, _> = tags.iter().collect();
                rm.insert("Tags".into(), json!(sorted));
            }
            if let Some(d) = r.details() {
                let mut dm = Map::new();
                if let Some(i) = d.aws_ec2_instance() {
                    let mut im = Map::new();
                    put(&mut im, "Type", i.r#type());
                    if !i.ipv4_addresses().is_empty() {
                        im.insert("IpV4Addresses".into(), json!(i.ipv4_addresses()));
                    }
                    if !i.ipv6_addresses().is_empty() {
                        im.insert("IpV6Addresses".into(), json!(i.ipv6_addresses()));
                    }
                    put(&mut im, "VpcId", i.vpc_id());
                    put(&mut im, "SubnetId", i.subnet_id());
                    dm.insert("AwsEc2Instance".into(), Value::Object(im));
                }
                if let Some(o) = d.other() {
                    let sorted: std::collections::BTreeMap<_, _> = o.iter().collect();
                    dm.insert("Other".into(), json!(sorted));
                }
                rm.insert("Details".into(), Value::Object(dm));
            }
            Value::Object(rm)
        })
        .collect();
    m.insert("Resources".into(), Value::Array(resources));
    if let Some(n) = f.network() {
        let mut nm = Map::new();
        put(
            &mut nm,
            "Direction",
            n.direction().map(NetworkDirection::as_str),
        );
        put(&mut nm, "Protocol", n.protocol());
        put(&mut nm, "DestinationIpV4", n.destination_ipv4());
        put(&mut nm, "DestinationIpV6", n.destination_ipv6());
        if let Some(p) = n.destination_port() {
            nm.insert("DestinationPort".into(), json!(p));
        }
        if let Some(p) = n.open_port_range() {
            nm.insert("OpenPortRange".into(), port_range(p));
        }
        m.insert("Network".into(), Value::Object(nm));
    }
    if !f.network_path().is_empty() {
        let path: Vec<Value> = f
            .network_path()
            .iter()
            .map(|c| {
                let mut cm = Map::new();
                put(&mut cm, "ComponentId", c.component_id());
                put(&mut cm, "ComponentType", c.component_type());
                if let Some(h) = c.ingress() {
                    cm.insert("Ingress".into(), header(h));
                }
                if let Some(h) = c.egress() {
                    cm.insert("Egress".into(), header(h));
                }
                Value::Object(cm)
            })
            .collect();
        m.insert("NetworkPath".into(), Value::Array(path));
    }
    put(
        &mut m,
        "RecordState",
        f.record_state().map(RecordState::as_str),
    );
    if let Some(s) = f.workflow().and_then(|w| w.status()) {
        m.insert("Workflow".into(), json!({"Status": s.as_str()}));
    }
    Value::Object(m)
}
