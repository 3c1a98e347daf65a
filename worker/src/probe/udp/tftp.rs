//! TFTP (RFC 1350) on 69: a read request for a file that does not exist. A
//! server answers with an ERROR packet (file not found), or DATA if the name
//! happens to exist, and it answers from a new port of its own (its transfer
//! id), which is why the engine accepts a TFTP answer from any source port.

use std::collections::BTreeMap;

use scanfleet_common::ServiceInfo;

use super::wire::{Reader, fact};

/// A name no server should have.
pub const FILE: &str = "scanfleet-probe-nonexistent";

/// RRQ for [`FILE`] in octet mode.
pub fn request() -> Vec<u8> {
    [&[0u8, 1][..], FILE.as_bytes(), &[0], b"octet", &[0]].concat()
}

/// Facts from an ERROR (5) or DATA (3) answer.
pub fn parse(buf: &[u8]) -> Option<ServiceInfo> {
    let mut r = Reader::new(buf);
    let op = r.u16()?;
    let mut extra = BTreeMap::new();
    match op {
        5 => {
            let code = r.u16()?;
            if code > 8 {
                return None;
            }
            let msg = r.take(r.remaining())?;
            let msg = msg.split(|&b| b == 0).next().unwrap_or_default();
            extra.insert("tftp.error".to_string(), format!("{code} {}", fact(msg)));
        }
        3 => {
            r.u16()?; // block number
            extra.insert("tftp.file_exists".to_string(), FILE.to_string());
        }
        _ => return None,
    }
    Some(ServiceInfo {
        name: "tftp".into(),
        extra,
        ..ServiceInfo::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_an_octet_rrq() {
        let q = request();
        assert_eq!(&q[..2], &[0, 1]);
        assert!(q.ends_with(b"\0octet\0"));
        assert!(parse(&q).is_none(), "an RRQ is not an answer");
    }

    #[test]
    fn tftpd_hpa_answer_captured_in_the_lab() {
        let reply = include_bytes!("../../../tests/fixtures/udp/tftpd-hpa.bin");
        let info = parse(reply).expect("a TFTP error");
        assert_eq!(info.name, "tftp");
        assert!(info.extra["tftp.error"].starts_with("1 "), "{info:?}");
    }

    #[test]
    fn other_opcodes_and_codes_are_refused() {
        assert!(parse(b"\x00\x05\x00\x63x\x00").is_none());
        assert!(parse(b"\x00\x04\x00\x01").is_none());
        assert!(parse(b"\x00\x03\x00\x01data").is_some());
        assert!(parse(b"\x00").is_none());
    }
}
