//! DNS (RFC 1035) on 53 and multicast DNS (RFC 6762) on 5353.
//!
//! To 53 we ask `version.bind` in class CHAOS (TXT): BIND, Unbound, Knot,
//! PowerDNS and dnsmasq answer it with their name and version unless told not
//! to, and a server that refuses still answers, which is all "open" needs. To
//! 5353 we ask for `_services._dns-sd._udp.local` PTR with the unicast-response
//! bit, so the responder answers our port directly (RFC 6762 5.4, 6.7) and lists
//! the service types it announces.

use std::collections::BTreeMap;

use scanfleet_common::ServiceInfo;

use super::wire::{Reader, fact};

/// Most names a reply may carry before we stop reading (a hostile reply
/// cannot make the parser loop long).
const MAX_RECORDS: usize = 64;
/// Most labels followed in one name, compression pointers included.
const MAX_LABELS: usize = 128;

const TYPE_TXT: u16 = 16;
const TYPE_PTR: u16 = 12;
const CLASS_IN: u16 = 1;
const CLASS_CH: u16 = 3;

fn query(id: u16, flags: u16, labels: &[&str], qtype: u16, qclass: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&flags.to_be_bytes());
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QD=1, AN=NS=AR=0
    for l in labels {
        q.push(l.len() as u8);
        q.extend_from_slice(l.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&qclass.to_be_bytes());
    q
}

/// `version.bind. CH TXT`, transaction id `id`, recursion not desired.
pub fn version_bind_query(id: u16) -> Vec<u8> {
    query(id, 0x0000, &["version", "bind"], TYPE_TXT, CLASS_CH)
}

/// `_services._dns-sd._udp.local. IN PTR` with the unicast-response (QU) bit.
/// mDNS queries carry id 0 (RFC 6762 18.1); a legacy unicast reply echoes it.
pub fn mdns_services_query() -> Vec<u8> {
    query(
        0,
        0x0000,
        &["_services", "_dns-sd", "_udp", "local"],
        TYPE_PTR,
        CLASS_IN | 0x8000,
    )
}

/// Read a (possibly compressed) name starting at the reader's position; the
/// reader ends after the name as it appears in place.
fn read_name(r: &mut Reader<'_>) -> Option<String> {
    let whole = r.whole();
    let mut out = String::new();
    let mut pos = r.pos();
    let mut jumped = false;
    for _ in 0..MAX_LABELS {
        let len = *whole.get(pos)? as usize;
        if len == 0 {
            if !jumped {
                r.skip(pos + 1 - r.pos())?;
            }
            return Some(if out.is_empty() { ".".into() } else { out });
        }
        if len & 0xc0 == 0xc0 {
            let lo = *whole.get(pos + 1)? as usize;
            let target = ((len & 0x3f) << 8) | lo;
            if !jumped {
                r.skip(pos + 2 - r.pos())?;
                jumped = true;
            }
            pos = target;
            continue;
        }
        if len & 0xc0 != 0 {
            return None;
        }
        let label = whole.get(pos + 1..pos + 1 + len)?;
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(&fact(label));
        if out.len() > 512 {
            return None;
        }
        pos += 1 + len;
    }
    None
}

/// One resource record of an answer section.
struct Record<'a> {
    rtype: u16,
    rdata: &'a [u8],
    /// Offset of the rdata in the datagram (PTR targets may point before it).
    rdata_at: usize,
}

/// The header and answer records of a DNS reply; `None` when it is not one.
struct Reply<'a> {
    id: u16,
    rcode: u8,
    answers: Vec<Record<'a>>,
}

fn parse_reply(buf: &[u8]) -> Option<Reply<'_>> {
    let mut r = Reader::new(buf);
    let id = r.u16()?;
    let flags = r.u16()?;
    if flags & 0x8000 == 0 {
        return None; // QR = 0: a query, not an answer
    }
    let qd = r.u16()? as usize;
    let an = r.u16()? as usize;
    r.skip(4)?;
    for _ in 0..qd.min(MAX_RECORDS) {
        read_name(&mut r)?;
        r.skip(4)?;
    }
    let mut answers = Vec::new();
    for _ in 0..an.min(MAX_RECORDS) {
        if read_name(&mut r).is_none() {
            break;
        }
        let (Some(rtype), Some(_class), Some(_ttl), Some(len)) =
            (r.u16(), r.u16(), r.u32(), r.u16())
        else {
            break;
        };
        let rdata_at = r.pos();
        let Some(rdata) = r.take(len as usize) else {
            break;
        };
        answers.push(Record {
            rtype,
            rdata,
            rdata_at,
        });
    }
    Some(Reply {
        id,
        rcode: (flags & 0x000f) as u8,
        answers,
    })
}

fn rcode_name(rcode: u8) -> String {
    match rcode {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        n => n.to_string(),
    }
}

/// Split a `version.bind` answer into product and version where the text is a
/// known server's own format; other text stays only in `dns.version`.
fn product_of(txt: &str) -> Option<(&'static str, String)> {
    let first = |s: &str| s.split_whitespace().next().map(str::to_string);
    if let Some(v) = txt.strip_prefix("dnsmasq-") {
        return Some(("dnsmasq", v.to_string()));
    }
    if let Some(v) = txt.strip_prefix("unbound ") {
        return first(v).map(|v| ("Unbound", v));
    }
    if let Some(v) = txt.strip_prefix("Knot DNS ") {
        return first(v).map(|v| ("Knot DNS", v));
    }
    if let Some(v) = txt.strip_prefix("PowerDNS Recursor ") {
        return first(v).map(|v| ("PowerDNS Recursor", v));
    }
    if let Some(v) = txt.strip_prefix("PowerDNS Authoritative Server ") {
        return first(v).map(|v| ("PowerDNS Authoritative Server", v));
    }
    // BIND answers its bare version, `9.18.41-1~deb12u1-Debian`: the upstream
    // version is the product's (as over TCP); the whole answer stays in `dns.version`.
    let bind = txt
        .strip_prefix("9.")
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
    bind.then(|| ("ISC BIND", txt.split('-').next().unwrap_or(txt).to_string()))
}

/// Facts from a reply to [`version_bind_query`] with id `id`.
pub fn parse_version_bind(buf: &[u8], id: u16) -> Option<ServiceInfo> {
    let reply = parse_reply(buf)?;
    if reply.id != id {
        return None;
    }
    let mut extra = BTreeMap::new();
    extra.insert("dns.rcode".to_string(), rcode_name(reply.rcode));
    let mut info = ServiceInfo {
        // The name TCP detection gives DNS too, so both protocols' findings match.
        name: "dns".into(),
        ..ServiceInfo::default()
    };
    if let Some(txt) = reply.answers.iter().find(|a| a.rtype == TYPE_TXT) {
        // TXT rdata: one or more <len><bytes> strings; the first is the version.
        let mut r = Reader::new(txt.rdata);
        if let Some(s) = r.u8().and_then(|n| r.take(n as usize)) {
            let v = fact(s);
            if let Some((product, version)) = product_of(&v) {
                info.product = Some(product.to_string());
                info.version = Some(version);
            }
            extra.insert("dns.version".to_string(), v);
        }
    }
    info.extra = extra;
    Some(info)
}

/// Facts from a reply to [`mdns_services_query`]: the service types announced.
pub fn parse_mdns(buf: &[u8]) -> Option<ServiceInfo> {
    let reply = parse_reply(buf)?;
    let mut services: Vec<String> = Vec::new();
    for a in reply.answers.iter().filter(|a| a.rtype == TYPE_PTR) {
        // Names in rdata may be compressed against the whole datagram.
        let mut r = Reader::new(buf);
        if r.skip(a.rdata_at).is_none() || a.rdata.is_empty() {
            continue;
        }
        if let Some(n) = read_name(&mut r)
            && !services.contains(&n)
        {
            services.push(n);
        }
    }
    let mut extra = BTreeMap::new();
    if !services.is_empty() {
        let mut list = services.join(",");
        list.truncate(super::wire::FACT_MAX * 2);
        extra.insert("mdns.services".to_string(), list);
    }
    Some(ServiceInfo {
        name: "mdns".into(),
        extra,
        ..ServiceInfo::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_bind_query_is_a_chaos_txt_question() {
        let q = version_bind_query(0x1234);
        assert_eq!(&q[..4], &[0x12, 0x34, 0, 0]);
        assert_eq!(&q[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&q[12..26], b"\x07version\x04bind\x00");
        assert_eq!(&q[26..], &[0, 16, 0, 3]);
    }

    #[test]
    fn mdns_query_asks_for_a_unicast_answer() {
        let q = mdns_services_query();
        assert_eq!(&q[..2], &[0, 0]);
        assert_eq!(&q[q.len() - 4..], &[0, 12, 0x80, 1]);
        assert!(q.windows(10).any(|w| w == b"\x09_services"));
    }

    #[test]
    fn bind9_answer_captured_in_the_lab() {
        let reply = include_bytes!("../../../tests/fixtures/udp/bind9.bin");
        let id = u16::from_be_bytes([reply[0], reply[1]]);
        let info = parse_version_bind(reply, id).expect("a DNS answer");
        assert_eq!(info.name, "dns");
        assert_eq!(info.product.as_deref(), Some("ISC BIND"));
        assert!(
            info.version.as_deref().unwrap().starts_with("9.18."),
            "{info:?}"
        );
        assert_eq!(info.extra["dns.rcode"], "NOERROR");
        assert!(parse_version_bind(reply, id.wrapping_add(1)).is_none());
    }

    #[test]
    fn refused_still_names_dns_and_known_formats_split() {
        let mut r = version_bind_query(7);
        r[2] = 0x84; // QR, AA
        r[3] = 0x05; // REFUSED
        let info = parse_version_bind(&r, 7).unwrap();
        assert_eq!((info.name.as_str(), info.product), ("dns", None));
        assert_eq!(info.extra["dns.rcode"], "REFUSED");
        assert_eq!(
            product_of("dnsmasq-2.89"),
            Some(("dnsmasq", "2.89".to_string()))
        );
        assert_eq!(
            product_of("unbound 1.17.1"),
            Some(("Unbound", "1.17.1".to_string()))
        );
        assert_eq!(product_of("none of your business"), None);
        // A query is not an answer.
        assert!(parse_version_bind(&version_bind_query(7), 7).is_none());
    }

    #[test]
    fn avahi_answer_captured_in_the_lab() {
        let reply = include_bytes!("../../../tests/fixtures/udp/avahi.bin");
        let info = parse_mdns(reply).expect("an mDNS answer");
        assert_eq!(info.name, "mdns");
        assert!(
            info.extra
                .get("mdns.services")
                .is_some_and(|s| s.contains("._tcp.local")),
            "{info:?}"
        );
    }

    #[test]
    fn compression_loops_and_truncation_end() {
        // A name that points at itself.
        let mut r = version_bind_query(1);
        r[2] = 0x80;
        r[7] = 1; // AN = 1
        r.extend_from_slice(&[0xc0, r.len() as u8, 0, 16, 0, 3, 0, 0, 0, 0, 0, 4]);
        assert!(parse_version_bind(&r, 1).is_some());
        for n in 0..r.len() {
            let _ = parse_version_bind(&r[..n], 1);
            let _ = parse_mdns(&r[..n]);
        }
    }
}
