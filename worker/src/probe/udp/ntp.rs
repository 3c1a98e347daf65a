//! NTP (RFC 5905) on 123: a version 4 client request (mode 3). Every server
//! answers one with mode 4 and tells its stratum and reference; that is what an
//! exposed time server gives away (and what makes it usable for amplification).

use std::collections::BTreeMap;

use scanfleet_common::ServiceInfo;

use super::wire::{Reader, fact};

/// A 48-byte client request. `nonce` goes in the transmit timestamp, which a
/// server copies into the origin timestamp of its answer.
pub fn request(nonce: u64) -> Vec<u8> {
    let mut p = vec![0u8; 48];
    p[0] = 0x23; // LI 0, VN 4, mode 3 (client)
    p[40..48].copy_from_slice(&nonce.to_be_bytes());
    p
}

/// Facts from a server's answer (mode 4); `None` for anything else.
pub fn parse(buf: &[u8]) -> Option<ServiceInfo> {
    if buf.len() < 48 {
        return None;
    }
    let mut r = Reader::new(buf);
    let first = r.u8()?;
    let stratum = r.u8()?;
    r.skip(10)?; // poll, precision, root delay, root dispersion
    let refid = r.take(4)?;
    let (leap, version, mode) = (first >> 6, (first >> 3) & 7, first & 7);
    if mode != 4 && mode != 2 {
        return None;
    }
    let mut extra = BTreeMap::new();
    extra.insert("ntp.version".to_string(), version.to_string());
    extra.insert("ntp.stratum".to_string(), stratum.to_string());
    extra.insert(
        "ntp.leap".to_string(),
        match leap {
            3 => "unsynchronized".to_string(),
            l => l.to_string(),
        },
    );
    // Stratum 1: a four-letter source code (GPS, PPS); 2..15: the upstream
    // server's IPv4 address; 0: a kiss code (RATE, DENY).
    let refid = match stratum {
        0 | 1 => fact(refid.split(|&b| b == 0).next().unwrap_or_default()),
        _ => format!("{}.{}.{}.{}", refid[0], refid[1], refid[2], refid[3]),
    };
    extra.insert("ntp.refid".to_string(), refid);
    Some(ServiceInfo {
        name: "ntp".into(),
        version: Some(format!("v{version}")),
        extra,
        ..ServiceInfo::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_a_v4_client_packet_with_the_nonce() {
        let p = request(0x0102_0304_0506_0708);
        assert_eq!(p.len(), 48);
        assert_eq!(p[0], 0x23);
        assert_eq!(&p[40..], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(parse(&p).is_none(), "a client request is not an answer");
    }

    #[test]
    fn chrony_answer_captured_in_the_lab() {
        let reply = include_bytes!("../../../tests/fixtures/udp/chrony.bin");
        let info = parse(reply).expect("an NTP answer");
        assert_eq!(info.name, "ntp");
        assert_eq!(info.extra["ntp.version"], "4");
        // The lab's chrony serves its local clock at stratum 10.
        assert_eq!(info.extra["ntp.stratum"], "10");
    }

    #[test]
    fn short_or_odd_packets_are_refused() {
        let mut p = request(1);
        p[0] = 0x24; // mode 4
        assert!(parse(&p).is_some());
        for n in 0..48 {
            assert!(parse(&p[..n]).is_none());
        }
    }
}
