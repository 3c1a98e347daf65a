//! `inspector`: findings shaped like Amazon Inspector v2's network reachability
//! findings (`type: NETWORK_REACHABILITY`), `{"findings": [...]}` as ListFindings
//! answers, so that tools reading Inspector's findings read scanfleet's: the open
//! port range, the protocol, the path from the internet (`networkPath.steps`),
//! the resource, severity, status and the observation times.
//!
//! Differences from Inspector: a finding is also written for a port that is open
//! but not reachable from the internet (its `networkPath.steps` is empty), and an
//! asset that is a bare address has a resource of type `OTHER`.

use std::io::{self, Write};

use serde_json::{Map, Value, json};

use crate::export::asff::partition_of;
use crate::export::{Export, flat, rfc3339_ms};
use crate::findings::{Finding, Severity};

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Informational => "INFORMATIONAL",
        Severity::Low => "LOW",
        Severity::Medium => "MEDIUM",
        Severity::High => "HIGH",
        Severity::Critical => "CRITICAL",
    }
}

fn component_type(kind: &str) -> String {
    match kind {
        "internet-gateway" => "AWS::EC2::InternetGateway".into(),
        "route-table" => "AWS::EC2::RouteTable".into(),
        "network-acl" => "AWS::EC2::NetworkAcl".into(),
        "security-group" => "AWS::EC2::SecurityGroup".into(),
        "instance" => "AWS::EC2::Instance".into(),
        "network-interface" => "AWS::EC2::NetworkInterface".into(),
        "subnet" => "AWS::EC2::Subnet".into(),
        other => other.into(),
    }
}

/// One finding in Inspector v2's shape.
pub fn finding(f: &Finding) -> Value {
    let region = f.region.as_deref().unwrap_or("-");
    let account = f.account_id.as_deref().unwrap_or("-");
    let partition = partition_of(f.region.as_deref().unwrap_or("us-east-1"));
    let is_instance = f.asset_id.starts_with("i-");
    let mut details = Map::new();
    if is_instance {
        let mut i = Map::new();
        let ips = if f.ip.is_ipv4() {
            "ipV4Addresses"
        } else {
            "ipV6Addresses"
        };
        i.insert(ips.into(), json!([f.ip.to_string()]));
        for (k, v) in [
            ("type", &f.instance_type),
            ("vpcId", &f.vpc_id),
            ("subnetId", &f.subnet_id),
        ] {
            if let Some(v) = v {
                i.insert(k.into(), json!(v));
            }
        }
        details.insert("awsEc2Instance".into(), Value::Object(i));
    } else {
        details.insert("other".into(), json!({"ipAddress": f.ip.to_string()}));
    }
    let steps: Vec<Value> = f
        .network_path
        .iter()
        .map(|s| json!({"componentId": s.id, "componentType": component_type(&s.kind)}))
        .collect();
    let status = if f.suppressed.is_some() {
        "SUPPRESSED"
    } else {
        "ACTIVE"
    };
    json!({
        "findingArn": format!(
            "arn:{partition}:inspector2:{region}:{account}:finding/scanfleet/{}",
            f.id
        ),
        "awsAccountId": account,
        "type": "NETWORK_REACHABILITY",
        "title": f.title,
        "description": format!(
            "{} Score {:.1} (base {:.1}): {}.",
            f.title, f.score, f.base_score, flat::reasons_text(f)
        ),
        "severity": severity(f.severity),
        "status": status,
        "firstObservedAt": rfc3339_ms(f.first_observed_unix_ms),
        "lastObservedAt": rfc3339_ms(f.last_observed_unix_ms),
        "updatedAt": rfc3339_ms(f.last_observed_unix_ms),
        "networkReachabilityDetails": {
            "openPortRange": {"begin": f.port, "end": f.port},
            "protocol": f.protocol.as_str().to_uppercase(),
            "networkPath": {"steps": steps},
        },
        "remediation": {"recommendation": {"text": super::remediation_of(f)}},
        "resources": [{
            "type": if is_instance { "AWS_EC2_INSTANCE" } else { "OTHER" },
            "id": f.asset_id,
            "partition": partition,
            "region": region,
            "tags": f.tags,
            "details": details,
        }],
        "inspectorScore": (f.score * 10.0).round() / 10.0,
        "scanfleet": {
            "id": f.id,
            "scanId": f.scan_id,
            "kind": flat::serde_plain(&f.kind),
            "state": f.state.as_str(),
            "rules": f.rules,
            "baseScore": f.base_score,
            "reasons": f.reasons,
            "internetReachable": f.internet_reachable,
            "service": f.service,
            "suppressed": f.suppressed,
        },
    })
}

pub(crate) fn write(ex: &Export<'_>, w: &mut dyn Write) -> io::Result<()> {
    let doc = json!({"findings": ex.findings.iter().map(finding).collect::<Vec<_>>()});
    serde_json::to_writer_pretty(&mut *w, &doc)?;
    w.write_all(b"\n")
}
