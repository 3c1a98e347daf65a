//! DNS over TCP (RFC 1035 section 4.2.2, RFC 7766): the `version.bind` CHAOS
//! TXT query, which BIND, Unbound, Knot, PowerDNS and dnsmasq answer with
//! their version unless configured not to. Any well-formed response with our
//! ID proves DNS, refusals included.

use super::decoded::{Decoded, be16};

/// The query ID ("SF").
pub const ID: u16 = 0x5346;

/// The query, with its 2-byte TCP length prefix. RD off: nothing to recurse.
pub fn request() -> Vec<u8> {
    let mut q = Vec::with_capacity(32);
    q.extend_from_slice(&ID.to_be_bytes());
    q.extend_from_slice(&[0x00, 0x00]); // flags: standard query
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    q.extend_from_slice(b"\x07version\x04bind\x00");
    q.extend_from_slice(&[0, 16, 0, 3]); // TXT, CH
    let mut out = (q.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&q);
    out
}

pub fn is_complete(buf: &[u8]) -> bool {
    be16(buf, 0).is_some_and(|n| buf.len() >= usize::from(n) + 2)
}

/// Skip a (possibly compressed) name at `at`; the offset after it.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    for _ in 0..128 {
        let len = *msg.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l if l & 0xc0 == 0 => at += 1 + usize::from(l),
            _ => return None,
        }
    }
    None
}

/// `dns.rcode`, `dns.version_bind` (the TXT text), and product and version for
/// the servers whose answer format is documented: BIND (a bare version),
/// Unbound (`unbound X`), dnsmasq (`dnsmasq-X`), PowerDNS (`PowerDNS ... X`),
/// Knot (`Knot DNS X`).
pub fn decode(buf: &[u8]) -> Decoded {
    let mut d = Decoded::default();
    let Some(msg) = buf.get(2..) else {
        return d;
    };
    if be16(msg, 0) != Some(ID) || msg.get(2).is_none_or(|f| f & 0x80 == 0) {
        return d;
    }
    let rcode = msg.get(3).map_or(0, |f| f & 0x0f);
    d.put("dns.rcode", rcode.to_string().as_bytes());
    let (Some(qd), Some(an)) = (be16(msg, 4), be16(msg, 6)) else {
        return d;
    };
    let mut at = 12;
    for _ in 0..qd.min(4) {
        let Some(next) = skip_name(msg, at) else {
            return d;
        };
        at = next + 4;
    }
    for _ in 0..an.min(8) {
        let Some(next) = skip_name(msg, at) else {
            return d;
        };
        let (Some(kind), Some(rdlen)) = (be16(msg, next), be16(msg, next + 8)) else {
            return d;
        };
        let start = next + 10;
        let Some(rdata) = msg.get(start..start + usize::from(rdlen)) else {
            return d;
        };
        if kind == 16 && !rdata.is_empty() {
            let n = usize::from(rdata[0]);
            if let Some(text) = rdata.get(1..1 + n) {
                d.put("dns.version_bind", text);
                identify(&mut d, text);
                return d;
            }
        }
        at = start + usize::from(rdlen);
    }
    d
}

fn identify(d: &mut Decoded, text: &[u8]) {
    let word_after = |prefix: &[u8]| {
        text.strip_prefix(prefix)
            .map(|v| v.split(|&b| b == b' ').next().unwrap_or_default())
    };
    let (product, version, cpe) = if text.first().is_some_and(u8::is_ascii_digit) {
        let v = text.split(|&b| b == b' ').next().unwrap_or_default();
        // Debian appends "-1~deb12u3-Debian"; the upstream version comes first
        // (the whole text stays in `dns.version_bind`).
        let upstream = v.split(|&b| b == b'-').next().unwrap_or_default();
        ("ISC BIND", upstream, Some(("isc:bind", upstream)))
    } else if let Some(v) = word_after(b"unbound ") {
        ("Unbound", v, Some(("nlnetlabs:unbound", v)))
    } else if let Some(v) = word_after(b"dnsmasq-") {
        ("dnsmasq", v, Some(("thekelleys:dnsmasq", v)))
    } else if let Some(v) = word_after(b"Knot DNS ") {
        ("Knot DNS", v, Some(("nic:knot_dns", v)))
    } else if text.starts_with(b"PowerDNS") {
        let v = text
            .rsplit(|&b| b == b' ')
            .find(|w| w.first().is_some_and(u8::is_ascii_digit));
        ("PowerDNS", v.unwrap_or_default(), None)
    } else {
        return;
    };
    d.product = Some(product.into());
    d.version = Decoded::text(version);
    if let Some((vendor, v)) = cpe
        && let Some(v) = Decoded::text(v)
    {
        d.cpe = Some(format!("cpe:/a:{vendor}:{v}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_shape() {
        let q = request();
        assert!(is_complete(&q));
        assert_eq!(be16(&q, 2), Some(ID));
        assert_eq!(skip_name(&q[2..], 12), Some(q.len() - 2 - 4));
    }

    #[test]
    fn refused_and_hostile() {
        // REFUSED (5), no answers.
        let r = b"\x00\x0c\x53\x46\x80\x05\x00\x00\x00\x00\x00\x00\x00\x00";
        assert_eq!(decode(r).extra["dns.rcode"], "5");
        // A compression loop and a truncated answer: no panic, nothing invented.
        let bad = b"\x00\x20\x53\x46\x84\x00\x00\x01\x00\x01\x00\x00\x00\x00\x3f\x3f";
        assert!(!decode(bad).extra.contains_key("dns.version_bind"));
        assert!(decode(b"\x00\x02\x12\x34").is_empty());
    }

    #[test]
    fn products_from_version_strings() {
        for (text, product, version) in [
            (&b"unbound 1.17.1"[..], "Unbound", "1.17.1"),
            (b"dnsmasq-2.89", "dnsmasq", "2.89"),
            (b"PowerDNS Recursor 4.8.4", "PowerDNS", "4.8.4"),
        ] {
            let mut d = Decoded::default();
            identify(&mut d, text);
            assert_eq!(
                (d.product.as_deref(), d.version.as_deref()),
                (Some(product), Some(version))
            );
        }
    }
}
