//! NetBIOS name service (RFC 1002, 4.2.17-18) on 137: a NODE STATUS request
//! for the wildcard name `*`. Windows and Samba's nmbd answer with the names the
//! host holds (computer name, workgroup) and often its MAC address.

use std::collections::BTreeMap;

use scanfleet_common::ServiceInfo;

use super::wire::{Reader, fact};

const NBSTAT: u16 = 0x21;

/// First-level encoding (RFC 1001, 14.1) of `*` padded with NULs to 16 bytes.
fn wildcard_name() -> Vec<u8> {
    let mut raw = [0u8; 16];
    raw[0] = b'*';
    let mut out = vec![32u8];
    for b in raw {
        out.push(b'A' + (b >> 4));
        out.push(b'A' + (b & 0x0f));
    }
    out.push(0);
    out
}

/// NODE STATUS request with transaction id `id`.
pub fn request(id: u16) -> Vec<u8> {
    let mut p = Vec::with_capacity(50);
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]); // flags 0, QD=1
    p.extend_from_slice(&wildcard_name());
    p.extend_from_slice(&NBSTAT.to_be_bytes());
    p.extend_from_slice(&[0, 1]); // class IN
    p
}

/// Facts from a NODE STATUS response to [`request`] with id `id`.
pub fn parse(buf: &[u8], id: u16) -> Option<ServiceInfo> {
    let mut r = Reader::new(buf);
    if r.u16()? != id {
        return None;
    }
    let flags = r.u16()?;
    if flags & 0x8000 == 0 {
        return None;
    }
    r.skip(8)?; // counts
    // The RR name: the encoded wildcard (a length-prefixed label list).
    loop {
        let n = r.u8()? as usize;
        if n == 0 {
            break;
        }
        if n > 63 {
            return None;
        }
        r.skip(n)?;
    }
    if r.u16()? != NBSTAT {
        return None;
    }
    r.skip(2 + 4 + 2)?; // class, TTL, RDLENGTH
    let count = r.u8()? as usize;
    let mut names = Vec::new();
    let mut host = None;
    let mut group = None;
    for _ in 0..count.min(64) {
        let Some(entry) = r.take(18) else { break };
        let name = fact(entry[..15].trim_ascii_end());
        let suffix = entry[15];
        let is_group = entry[16] & 0x80 != 0;
        if suffix == 0 && !is_group && host.is_none() {
            host = Some(name.clone());
        }
        if suffix == 0 && is_group && group.is_none() {
            group = Some(name.clone());
        }
        if names.len() < 16 {
            names.push(format!(
                "{name}<{suffix:02x}>{}",
                if is_group { "g" } else { "" }
            ));
        }
    }
    let mut extra = BTreeMap::new();
    if let Some(h) = host {
        extra.insert("netbios.name".to_string(), h);
    }
    if let Some(g) = group {
        extra.insert("netbios.workgroup".to_string(), g);
    }
    if !names.is_empty() {
        extra.insert("netbios.names".to_string(), names.join(","));
    }
    if let Some(mac) = r.take(6)
        && mac.iter().any(|&b| b != 0)
    {
        let mac: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
        extra.insert("netbios.mac".to_string(), mac.join(":"));
    }
    Some(ServiceInfo {
        name: "netbios-ns".into(),
        extra,
        ..ServiceInfo::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_asks_node_status_of_the_wildcard() {
        let q = request(0x0a0b);
        assert_eq!(q.len(), 50);
        assert_eq!(&q[12..15], b"\x20CK");
        assert!(q[15..45].iter().all(|&b| b == b'A'));
        assert_eq!(&q[46..], &[0, 0x21, 0, 1]);
        assert!(parse(&q, 0x0a0b).is_none(), "a request is not a response");
    }

    /// A response laid out as RFC 1002 4.2.18 specifies.
    fn response(id: u16) -> Vec<u8> {
        let mut p = id.to_be_bytes().to_vec();
        p.extend_from_slice(&[0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
        p.extend_from_slice(&wildcard_name());
        p.extend_from_slice(&[0, 0x21, 0, 1, 0, 0, 0, 0, 0, 65, 3]);
        for (n, s, g) in [
            ("LAB-T1", 0u8, false),
            ("LAB-T1", 0x20, false),
            ("WORKGROUP", 0, true),
        ] {
            let mut e = format!("{n:<15}").into_bytes();
            e.push(s);
            e.extend_from_slice(&[if g { 0x84 } else { 0x04 }, 0]);
            p.extend_from_slice(&e);
        }
        p.extend_from_slice(&[2, 0x53, 0x46, 0x4c, 0, 0x0b]);
        p
    }

    #[test]
    fn node_status_names_host_workgroup_and_mac() {
        let info = parse(&response(9), 9).unwrap();
        assert_eq!(info.name, "netbios-ns");
        assert_eq!(info.extra["netbios.name"], "LAB-T1");
        assert_eq!(info.extra["netbios.workgroup"], "WORKGROUP");
        assert_eq!(
            info.extra["netbios.names"],
            "LAB-T1<00>,LAB-T1<20>,WORKGROUP<00>g"
        );
        assert_eq!(info.extra["netbios.mac"], "02:53:46:4c:00:0b");
        let r = response(9);
        for n in 0..r.len() {
            let _ = parse(&r[..n], 9);
        }
    }
}
