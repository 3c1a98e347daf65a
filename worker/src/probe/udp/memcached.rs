//! memcached's UDP protocol on 11211: an 8-byte frame header (request id,
//! sequence number, datagram count, reserved) before an ordinary text command.
//! We send `version`; an exposed UDP memcached is also a known amplifier.

use std::collections::BTreeMap;

use scanfleet_common::ServiceInfo;

use super::wire::{Reader, fact};

/// `version` in one frame with request id `id`.
pub fn request(id: u16) -> Vec<u8> {
    let mut p = Vec::with_capacity(17);
    p.extend_from_slice(&id.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 1, 0, 0]); // seq 0 of 1 datagram, reserved
    p.extend_from_slice(b"version\r\n");
    p
}

/// Facts from the answer to [`request`] with id `id`: `VERSION 1.6.18`.
pub fn parse(buf: &[u8], id: u16) -> Option<ServiceInfo> {
    let mut r = Reader::new(buf);
    if r.u16()? != id {
        return None;
    }
    r.skip(6)?;
    let body = r.take(r.remaining())?;
    let line = body.split(|&b| b == b'\r' || b == b'\n').next()?;
    let mut extra = BTreeMap::from([("auth".to_string(), "none".to_string())]);
    let version = match line.strip_prefix(b"VERSION ") {
        Some(v) => Some(fact(v)),
        // ERROR / SERVER_ERROR: still memcached's text protocol.
        None if line.starts_with(b"ERROR") || line.starts_with(b"SERVER_ERROR") => {
            extra.insert("memcached.reply".to_string(), fact(line));
            None
        }
        None => return None,
    };
    Some(ServiceInfo {
        name: "memcached".into(),
        product: Some("memcached".into()),
        version,
        extra,
        ..ServiceInfo::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_frames_the_version_command() {
        assert_eq!(
            request(0xabcd),
            b"\xab\xcd\x00\x00\x00\x01\x00\x00version\r\n"
        );
    }

    #[test]
    fn memcached_answer_captured_in_the_lab() {
        let reply = include_bytes!("../../../tests/fixtures/udp/memcached.bin");
        let id = u16::from_be_bytes([reply[0], reply[1]]);
        let info = parse(reply, id).expect("a memcached answer");
        assert_eq!(info.product.as_deref(), Some("memcached"));
        assert!(
            info.version.as_deref().unwrap().starts_with("1.6."),
            "{info:?}"
        );
        assert!(parse(reply, id.wrapping_add(1)).is_none());
    }

    #[test]
    fn other_text_is_not_memcached() {
        assert!(parse(b"\x00\x01\x00\x00\x00\x01\x00\x00HTTP/1.1 400\r\n", 1).is_none());
        assert!(parse(b"\x00\x01\x00\x00\x00\x01\x00\x00ERROR\r\n", 1).is_some());
        assert!(parse(b"\x00\x01", 1).is_none());
    }
}
