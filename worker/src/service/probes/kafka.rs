//! Apache Kafka's wire protocol (the protocol guide on kafka.apache.org):
//! `ApiVersions` (API key 18) version 0, which every broker since 0.10 answers
//! before authentication, with the API keys and version ranges it supports.

use super::decoded::{Decoded, be16, be32};

/// Our correlation ID ("SFK1"), echoed in the response.
pub const CORRELATION: u32 = 0x5346_4b31;

pub fn request() -> Vec<u8> {
    let client = b"scanfleet";
    let mut body = Vec::with_capacity(24);
    body.extend_from_slice(&18u16.to_be_bytes()); // ApiVersions
    body.extend_from_slice(&0u16.to_be_bytes()); // version 0
    body.extend_from_slice(&CORRELATION.to_be_bytes());
    body.extend_from_slice(&(client.len() as u16).to_be_bytes());
    body.extend_from_slice(client);
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

pub fn is_complete(buf: &[u8]) -> bool {
    be32(buf, 0).is_some_and(|n| buf.len() as u64 >= u64::from(n) + 4)
}

/// `kafka.error` (the response's error code), `kafka.api_keys` (how many APIs
/// the broker offers) and `kafka.api_versions_max` (the highest ApiVersions
/// version, which grows with the broker release).
pub fn decode(buf: &[u8]) -> Decoded {
    let mut d = Decoded::default();
    if be32(buf, 4) != Some(CORRELATION) {
        return d;
    }
    let Some(error) = be16(buf, 8) else {
        return d;
    };
    d.put("kafka.error", error.to_string().as_bytes());
    let Some(count) = be32(buf, 10) else {
        return d;
    };
    let mut keys = 0u32;
    for i in 0..count.min(1024) as usize {
        let at = 14 + i * 6;
        let (Some(key), Some(max)) = (be16(buf, at), be16(buf, at + 4)) else {
            break;
        };
        keys += 1;
        if key == 18 {
            d.put("kafka.api_versions_max", max.to_string().as_bytes());
        }
    }
    d.put("kafka.api_keys", keys.to_string().as_bytes());
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_shape_and_short_replies() {
        let r = request();
        assert!(is_complete(&r));
        assert_eq!(be16(&r, 4), Some(18));
        assert!(decode(b"\x00\x00\x00\x06SFK2\x00\x00").is_empty());
        let d = decode(b"\x00\x00\x00\x06SFK1\x00\x23");
        assert_eq!(d.extra["kafka.error"], "35");
        assert!(!d.extra.contains_key("kafka.api_keys"));
    }
}
