//! SNMP on 161, two datagrams per attempt:
//!
//! * v2c (RFC 3416): a GetRequest for sysDescr.0 with the community `public`.
//!   An agent that answers it serves anyone who knows the default community;
//!   its sysDescr usually names the system and its version. An agent with
//!   another community stays silent to it, as SNMP intends.
//! * v3 (RFC 3414 4, engine discovery): a request with no user that every v3
//!   agent answers with a Report carrying its authoritative engine id, whatever
//!   its communities; the engine id names the vendor (its IANA enterprise
//!   number, RFC 3411 5), `8072` being net-snmp.

use std::collections::BTreeMap;

use scanfleet_common::ServiceInfo;

use super::wire::{Reader, fact};

/// The community tried: the factory default of nearly every agent.
pub const COMMUNITY: &str = "public";
/// 1.3.6.1.2.1.1.1.0 (sysDescr.0), BER-encoded.
const SYS_DESCR: [u8; 8] = [0x2b, 6, 1, 2, 1, 1, 1, 0];

fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    if body.len() < 0x80 {
        v.push(body.len() as u8);
    } else {
        v.push(0x82);
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
    }
    v.extend_from_slice(body);
    v
}

/// GetRequest sysDescr.0, community `public`, request id `id` (kept to 31 bits
/// so it encodes as a positive 4-byte INTEGER).
pub fn request(id: u32) -> Vec<u8> {
    let id = id & 0x7fff_ffff;
    let varbind = tlv(0x30, &[tlv(0x06, &SYS_DESCR), vec![0x05, 0x00]].concat());
    let pdu = [
        tlv(0x02, &id.to_be_bytes()),
        vec![0x02, 0x01, 0x00], // error-status
        vec![0x02, 0x01, 0x00], // error-index
        tlv(0x30, &varbind),
    ]
    .concat();
    let msg = [
        vec![0x02, 0x01, 0x01], // version: 1 = v2c
        tlv(0x04, COMMUNITY.as_bytes()),
        tlv(0xa0, &pdu),
    ]
    .concat();
    tlv(0x30, &msg)
}

/// The v3 engine-discovery request (no user, no auth, reportable), message
/// and request id `id`.
pub fn discovery_request(id: u32) -> Vec<u8> {
    let id = (id & 0x7fff_ffff).to_be_bytes();
    let global = [
        tlv(0x02, &id),
        vec![0x02, 0x03, 0x00, 0xff, 0xe3], // msgMaxSize 65507
        vec![0x04, 0x01, 0x04],             // msgFlags: reportable
        vec![0x02, 0x01, 0x03],             // msgSecurityModel: USM
    ]
    .concat();
    let usm = tlv(
        0x30,
        &[
            vec![0x04, 0x00], // engine id
            vec![0x02, 0x01, 0x00, 0x02, 0x01, 0x00],
            vec![0x04, 0x00, 0x04, 0x00, 0x04, 0x00], // user, auth, priv
        ]
        .concat(),
    );
    let pdu = [
        tlv(0x02, &id),
        vec![0x02, 0x01, 0x00, 0x02, 0x01, 0x00],
        vec![0x30, 0x00],
    ]
    .concat();
    let scoped = tlv(
        0x30,
        &[vec![0x04, 0x00, 0x04, 0x00], tlv(0xa0, &pdu)].concat(),
    );
    tlv(
        0x30,
        &[
            vec![0x02, 0x01, 0x03],
            tlv(0x30, &global),
            tlv(0x04, &usm),
            scoped,
        ]
        .concat(),
    )
}

/// The vendor an engine id's enterprise number names (RFC 3411 5).
fn vendor(enterprise: u32) -> Option<&'static str> {
    Some(match enterprise {
        8072 => "net-snmp",
        9 => "Cisco",
        311 => "Microsoft",
        2636 => "Juniper",
        11 => "HP",
        4526 => "Netgear",
        6876 => "VMware",
        _ => return None,
    })
}

/// Facts from a v3 Report answering [`discovery_request`] with id `id`.
pub fn parse_discovery(buf: &[u8], id: u32) -> Option<ServiceInfo> {
    let (0x30, msg) = element(&mut Reader::new(buf))? else {
        return None;
    };
    let mut r = Reader::new(msg);
    let (0x02, version) = element(&mut r)? else {
        return None;
    };
    if integer(version)? != 3 {
        return None;
    }
    let (0x30, global) = element(&mut r)? else {
        return None;
    };
    let (0x02, msg_id) = element(&mut Reader::new(global))? else {
        return None;
    };
    if integer(msg_id)? != i64::from(id & 0x7fff_ffff) {
        return None;
    }
    let (0x04, usm) = element(&mut r)? else {
        return None;
    };
    let (0x30, usm) = element(&mut Reader::new(usm))? else {
        return None;
    };
    let mut u = Reader::new(usm);
    let (0x04, engine) = element(&mut u)? else {
        return None;
    };
    let boots = element(&mut u).and_then(|(_, b)| integer(b));
    let time = element(&mut u).and_then(|(_, t)| integer(t));
    let mut extra = BTreeMap::from([("snmp.version".to_string(), "3".to_string())]);
    let mut info = ServiceInfo {
        name: "snmp".into(),
        ..ServiceInfo::default()
    };
    if !engine.is_empty() {
        let hex: String = engine.iter().take(32).map(|b| format!("{b:02x}")).collect();
        extra.insert("snmp.engine_id".to_string(), hex);
    }
    if engine.len() >= 4 && engine[0] & 0x80 != 0 {
        let enterprise = u32::from_be_bytes([engine[0] & 0x7f, engine[1], engine[2], engine[3]]);
        extra.insert("snmp.enterprise".to_string(), enterprise.to_string());
        info.product = vendor(enterprise).map(str::to_string);
    }
    if let Some(b) = boots {
        extra.insert("snmp.engine_boots".to_string(), b.to_string());
    }
    if let Some(t) = time {
        extra.insert("snmp.engine_time".to_string(), t.to_string());
    }
    info.extra = extra;
    Some(info)
}

/// One BER element: tag and contents.
fn element<'a>(r: &mut Reader<'a>) -> Option<(u8, &'a [u8])> {
    let tag = r.u8()?;
    let first = r.u8()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 {
            return None;
        }
        let mut len = 0usize;
        for b in r.take(n)? {
            len = (len << 8) | usize::from(*b);
        }
        len
    };
    Some((tag, r.take(len)?))
}

fn integer(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() || bytes.len() > 8 {
        return None;
    }
    let mut v: i64 = if bytes[0] & 0x80 != 0 { -1 } else { 0 };
    for b in bytes {
        v = (v << 8) | i64::from(*b);
    }
    Some(v)
}

/// Facts from a GetResponse to [`request`] with id `id`.
pub fn parse(buf: &[u8], id: u32) -> Option<ServiceInfo> {
    let (tag, msg) = element(&mut Reader::new(buf))?;
    if tag != 0x30 {
        return None;
    }
    let mut r = Reader::new(msg);
    let (t, version) = element(&mut r)?;
    if t != 0x02 {
        return None;
    }
    let version = integer(version)?;
    let (t, community) = element(&mut r)?;
    if t != 0x04 {
        return None;
    }
    let (pdu_tag, pdu) = element(&mut r)?;
    if pdu_tag != 0xa2 {
        return None; // not a GetResponse
    }
    let mut p = Reader::new(pdu);
    let (t, req_id) = element(&mut p)?;
    if t != 0x02 || integer(req_id)? != i64::from(id & 0x7fff_ffff) {
        return None;
    }
    let (_, status) = element(&mut p)?;
    let status = integer(status)?;
    let _index = element(&mut p)?;
    let mut extra = BTreeMap::new();
    extra.insert(
        "snmp.version".to_string(),
        match version {
            0 => "1".to_string(),
            1 => "2c".to_string(),
            3 => "3".to_string(),
            v => v.to_string(),
        },
    );
    extra.insert("snmp.community".to_string(), fact(community));
    // The agent answered a data request on the default community.
    extra.insert("auth".to_string(), "none".to_string());
    if status != 0 {
        extra.insert("snmp.error_status".to_string(), status.to_string());
    }
    if let Some((0x30, list)) = element(&mut p)
        && let Some((0x30, vb)) = element(&mut Reader::new(list))
    {
        let mut v = Reader::new(vb);
        if let (Some((0x06, oid)), Some((0x04, value))) = (element(&mut v), element(&mut v))
            && oid == SYS_DESCR
        {
            extra.insert("snmp.sysdescr".to_string(), fact(value));
        }
    }
    Some(ServiceInfo {
        name: "snmp".into(),
        extra,
        ..ServiceInfo::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_a_v2c_get_of_sysdescr() {
        let q = request(0x0102_0304);
        assert_eq!(q[0], 0x30);
        assert_eq!(usize::from(q[1]) + 2, q.len());
        assert_eq!(&q[2..5], &[0x02, 0x01, 0x01]);
        assert_eq!(&q[5..13], b"\x04\x06public");
        assert_eq!(q[13], 0xa0);
        assert!(
            q.windows(10)
                .any(|w| w == b"\x06\x08\x2b\x06\x01\x02\x01\x01\x01\x00")
        );
        assert!(
            parse(&q, 0x0102_0304).is_none(),
            "a request is not a response"
        );
    }

    #[test]
    fn snmpd_answer_captured_in_the_lab() {
        let reply = include_bytes!("../../../tests/fixtures/udp/snmpd.bin");
        // The capture answered request id 0x5ca9f1ee.
        let info = parse(reply, 0x5ca9_f1ee).expect("a GetResponse");
        assert_eq!(info.name, "snmp");
        assert_eq!(info.extra["snmp.version"], "2c");
        assert_eq!(info.extra["snmp.community"], "public");
        assert_eq!(info.extra["auth"], "none");
        // The lab's snmpd keeps its default sysDescr: the kernel's uname.
        assert!(
            info.extra["snmp.sysdescr"].starts_with("Linux "),
            "{info:?}"
        );
        assert!(parse(reply, 1).is_none(), "another request id");
    }

    #[test]
    fn discovery_request_is_a_reportable_v3_message_without_a_user() {
        let q = discovery_request(0x5ca9_f1ee);
        assert_eq!(q[0], 0x30);
        assert_eq!(usize::from(q[1]) + 2, q.len());
        assert_eq!(&q[2..5], &[0x02, 0x01, 0x03]);
        assert!(
            q.windows(3).any(|w| w == [0x04, 0x01, 0x04]),
            "reportable flag"
        );
        assert!(
            parse_discovery(&q, 0x5ca9_f1ee)
                .is_some_and(|i| !i.extra.contains_key("snmp.engine_id"))
        );
        assert!(parse_discovery(&q, 1).is_none());
    }

    #[test]
    fn snmpd_v3_report_captured_in_the_lab() {
        // From the lab's second snmpd, whose community is not `public`: it
        // ignores the v2c request and still answers engine discovery.
        let reply = include_bytes!("../../../tests/fixtures/udp/snmpd-v3.bin");
        let info = parse_discovery(reply, 0x5ca9_f1ee).expect("a v3 Report");
        assert_eq!(info.name, "snmp");
        assert_eq!(info.product.as_deref(), Some("net-snmp"));
        assert_eq!(info.extra["snmp.enterprise"], "8072");
        assert!(
            info.extra["snmp.engine_id"].starts_with("80001f88"),
            "{info:?}"
        );
        assert!(parse(reply, 0x5ca9_f1ee).is_none(), "not a v2c GetResponse");
    }

    #[test]
    fn truncated_and_long_lengths_end() {
        let q = request(5);
        for n in 0..q.len() {
            assert!(parse(&q[..n], 5).is_none());
        }
        let d = discovery_request(5);
        for n in 0..d.len() {
            assert!(parse_discovery(&d[..n], 5).is_none());
        }
        assert!(element(&mut Reader::new(&[0x30, 0x84, 1, 2, 3, 4])).is_none());
        assert_eq!(integer(&[0xff]), Some(-1));
    }
}
