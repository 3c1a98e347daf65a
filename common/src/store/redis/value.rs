//! The stored form of a result. A result's field is `ip|port|proto` and its key
//! names the scan, so the value keeps only the rest: a version byte `1`, then
//! JSON of the asset id (left out when it is the address), state, reason and
//! service. Values of older stores (a whole `ProbeResult` as JSON, `{...}`) are
//! still read.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::types::{PortState, ProbeResult, Protocol, ServiceInfo};

const COMPACT: u8 = b'1';

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Compact {
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    asset_id: Option<String>,
    #[serde(rename = "s")]
    state: PortState,
    #[serde(rename = "r", default, skip_serializing_if = "String::is_empty")]
    reason: String,
    #[serde(rename = "v", default, skip_serializing_if = "Option::is_none")]
    service: Option<ServiceInfo>,
}

/// The hash field of a result.
pub fn result_field(r: &ProbeResult) -> String {
    format!("{}|{}|{}", r.ip, r.port, r.protocol.as_str())
}

/// The stored value of a result (its field and scan are not repeated in it).
pub fn encode_result(r: &ProbeResult) -> Vec<u8> {
    let c = Compact {
        asset_id: (r.asset_id != r.ip.to_string()).then(|| r.asset_id.clone()),
        state: r.state,
        reason: r.reason.clone(),
        service: r.service.clone(),
    };
    let mut out = vec![COMPACT];
    // Serialising plain data into a Vec cannot fail.
    serde_json::to_writer(&mut out, &c).unwrap_or_default();
    out
}

/// The field's parts: address, port, protocol.
fn parse_field(field: &[u8]) -> Option<(IpAddr, u16, Protocol)> {
    let f = std::str::from_utf8(field).ok()?;
    let mut parts = f.split('|');
    let ip = parts.next()?.parse().ok()?;
    let port = parts.next()?.parse().ok()?;
    let proto = match parts.next()? {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        _ => return None,
    };
    // Only the spelling `result_field` writes (no `022`, no `::FFFF:...`).
    (parts.next().is_none() && format!("{ip}|{port}|{}", proto.as_str()) == f)
        .then_some((ip, port, proto))
}

/// A stored result of `scan_id` under `field`, in either form.
///
/// # Errors
/// What is wrong with it: a field that is not `ip|port|proto`, a value that is
/// not a result, or (old form) a result of another field.
pub fn decode_result(scan_id: &str, field: &[u8], value: &[u8]) -> Result<ProbeResult, String> {
    if value.first() == Some(&COMPACT) {
        let (ip, port, protocol) =
            parse_field(field).ok_or_else(|| "the field is not ip|port|proto".to_string())?;
        let c: Compact = serde_json::from_slice(&value[1..])
            .map_err(|e| format!("does not hold a result: {e}"))?;
        return Ok(ProbeResult {
            scan_id: scan_id.to_string(),
            asset_id: c.asset_id.unwrap_or_else(|| ip.to_string()),
            ip,
            port,
            protocol,
            state: c.state,
            reason: c.reason,
            service: c.service,
        });
    }
    let r: ProbeResult =
        serde_json::from_slice(value).map_err(|e| format!("does not hold a result: {e}"))?;
    if result_field(&r).as_bytes() != field {
        return Err(format!("holds the result of {}", result_field(&r)));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn result(asset: &str, service: bool) -> ProbeResult {
        ProbeResult {
            scan_id: "sf-1".into(),
            asset_id: asset.into(),
            ip: "10.0.12.34".parse().unwrap(),
            port: 8443,
            protocol: Protocol::Tcp,
            state: PortState::Open,
            reason: "syn-ack".into(),
            service: service.then(|| ServiceInfo {
                name: "https".into(),
                product: Some("nginx".into()),
                version: Some("1.22.1".into()),
                extra: BTreeMap::from([("tls.versions".into(), "TLSv1.2,TLSv1.3".into())]),
                ..ServiceInfo::default()
            }),
        }
    }

    #[test]
    fn compact_values_round_trip_and_are_smaller() {
        for r in [
            result("10.0.12.34", false),
            result("i-0123456789abcdef0", false),
            result("i-0123456789abcdef0", true),
        ] {
            let field = result_field(&r);
            let v = encode_result(&r);
            assert_eq!(decode_result("sf-1", field.as_bytes(), &v).unwrap(), r);
            let old = serde_json::to_vec(&r).unwrap();
            assert!(v.len() < old.len(), "{} >= {}", v.len(), old.len());
        }
        // A bare port result: 28 bytes instead of 123.
        let r = result("10.0.12.34", false);
        assert_eq!(encode_result(&r), b"1{\"s\":\"open\",\"r\":\"syn-ack\"}");
        assert_eq!(serde_json::to_vec(&r).unwrap().len(), 123);
    }

    #[test]
    fn old_values_are_read_and_checked_against_their_field() {
        let r = result("i-0abc", true);
        let old = serde_json::to_vec(&r).unwrap();
        assert_eq!(
            decode_result("sf-1", result_field(&r).as_bytes(), &old).unwrap(),
            r
        );
        let e = decode_result("sf-1", b"10.0.0.1|22|tcp", &old).unwrap_err();
        assert!(e.contains("holds the result of 10.0.12.34|8443|tcp"), "{e}");
    }

    #[test]
    fn bad_values_and_fields_are_named() {
        assert!(
            decode_result("s", b"x|1|tcp", b"1{\"s\":\"open\"}")
                .unwrap_err()
                .contains("ip|port|proto")
        );
        assert!(decode_result("s", b"10.0.0.1|1|sctp", b"1{\"s\":\"open\"}").is_err());
        assert!(decode_result("s", b"10.0.0.1|022|tcp", b"1{\"s\":\"open\"}").is_err());
        assert!(
            decode_result("s", b"10.0.0.1|1|tcp", b"1{\"s\":\"ajar\"}")
                .unwrap_err()
                .contains("does not hold a result")
        );
        assert!(decode_result("s", b"10.0.0.1|1|tcp", b"1{\"s\":\"open\",\"zz\":1}").is_err());
        assert!(decode_result("s", b"10.0.0.1|1|tcp", b"").is_err());
    }
}
