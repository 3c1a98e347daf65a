//! MQTT 3.1.1 (OASIS standard, sections 3.1-3.3, 3.8-3.9): CONNECT with a clean
//! session and no credentials, then SUBSCRIBE to the broker's version topic.
//! The CONNACK return code says whether anonymous clients are let in (0) or
//! not (4 bad credentials, 5 not authorised); a broker that publishes its
//! version under `$SYS/broker/version` (Mosquitto does, retained) names itself.

use super::decoded::{Decoded, be16};

/// The client identifier we connect with.
const CLIENT_ID: &[u8] = b"scanfleet-detect";
/// The topic Mosquitto publishes its version under (retained).
const VERSION_TOPIC: &[u8] = b"$SYS/broker/version";

/// CONNECT (protocol level 4, clean session, keep-alive 30 s) and SUBSCRIBE
/// (packet id 1, QoS 0) in one write: the broker handles them in order.
pub fn request() -> Vec<u8> {
    let mut connect_body = Vec::with_capacity(32);
    connect_body.extend_from_slice(b"\x00\x04MQTT\x04\x02\x00\x1e");
    connect_body.extend_from_slice(&(CLIENT_ID.len() as u16).to_be_bytes());
    connect_body.extend_from_slice(CLIENT_ID);
    let mut subscribe_body = Vec::with_capacity(32);
    subscribe_body.extend_from_slice(&1u16.to_be_bytes());
    subscribe_body.extend_from_slice(&(VERSION_TOPIC.len() as u16).to_be_bytes());
    subscribe_body.extend_from_slice(VERSION_TOPIC);
    subscribe_body.push(0);
    let mut out = vec![0x10, connect_body.len() as u8];
    out.extend_from_slice(&connect_body);
    out.extend_from_slice(&[0x82, subscribe_body.len() as u8]);
    out.extend_from_slice(&subscribe_body);
    out
}

/// One control packet at the start of `buf`: (type nibble, body, rest).
fn packet(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let first = *buf.first()?;
    let mut len: usize = 0;
    let mut shift = 0;
    let mut i = 1;
    loop {
        let b = *buf.get(i)?;
        len |= usize::from(b & 0x7f) << shift;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 21 {
            return None;
        }
    }
    let end = i.checked_add(len)?;
    let body = buf.get(i..end)?;
    Some((first >> 4, body, &buf[end..]))
}

/// Whole when the broker refused us (CONNACK with a non-zero code) or when a
/// PUBLISH arrived in full; otherwise the read ends at the idle gap.
pub fn is_complete(buf: &[u8]) -> bool {
    let mut rest = buf;
    while let Some((kind, body, after)) = packet(rest) {
        match kind {
            2 if body.get(1).is_some_and(|&rc| rc != 0) => return true,
            3 => return true,
            _ => {}
        }
        rest = after;
    }
    false
}

/// `auth` from the CONNACK code, `mqtt.connack` (the code), and the broker's
/// product and version from the `$SYS/broker/version` PUBLISH.
pub fn decode(buf: &[u8]) -> Decoded {
    let mut d = Decoded::default();
    let mut rest = buf;
    while let Some((kind, body, after)) = packet(rest) {
        match kind {
            2 => {
                if let Some(&rc) = body.get(1) {
                    d.put("mqtt.connack", rc.to_string().as_bytes());
                    match rc {
                        0 => d.put("auth", b"none"),
                        4 | 5 => d.put("auth", b"required"),
                        _ => {}
                    }
                }
            }
            3 => {
                let topic_len = usize::from(be16(body, 0).unwrap_or(u16::MAX));
                let Some(topic) = body.get(2..2 + topic_len) else {
                    break;
                };
                // QoS 0 (we subscribed with 0): no packet identifier follows.
                let payload = &body[2 + topic_len..];
                if topic == VERSION_TOPIC {
                    if let Some(v) = payload.strip_prefix(b"mosquitto version ") {
                        d.product = Some("Mosquitto".into());
                        d.version = Decoded::text(v.trim_ascii());
                        d.cpe = d
                            .version
                            .as_ref()
                            .map(|v| format!("cpe:/a:eclipse:mosquitto:{v}"));
                    } else {
                        d.put("mqtt.broker_version", payload.trim_ascii());
                    }
                }
            }
            _ => {}
        }
        rest = after;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_two_well_formed_packets() {
        let r = request();
        let (kind, body, rest) = packet(&r).unwrap();
        assert_eq!((kind, &body[..6]), (1, b"\x00\x04MQTT".as_slice()));
        let (kind, body, rest) = packet(rest).unwrap();
        assert_eq!(kind, 8);
        assert!(body.ends_with(b"$SYS/broker/version\x00"));
        assert!(rest.is_empty());
    }

    #[test]
    fn refusals_and_broken_lengths() {
        assert!(is_complete(b"\x20\x02\x00\x05"));
        assert_eq!(decode(b"\x20\x02\x00\x05").extra["auth"], "required");
        assert!(!is_complete(b"\x20\x02\x00\x00\x90\x03\x00\x01\x00"));
        assert!(decode(b"\x30\xff\xff\xff\xff\x01").is_empty());
        assert!(packet(b"\x30\x05ab").is_none());
    }
}
