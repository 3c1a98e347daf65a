//! Cassandra's native protocol (CQL binary protocol v4 spec, sections 2 and
//! 4.1.3/4.2.4): OPTIONS, answered by SUPPORTED with a string multimap of the
//! CQL versions, compression algorithms and protocol versions the node offers.
//! A node that does not speak v4 answers an ERROR frame in its own version.

use super::decoded::{Decoded, be16, be32};

/// Version 4 request, no flags, stream 1, OPTIONS, empty body.
pub const OPTIONS: &[u8] = b"\x04\x00\x00\x01\x05\x00\x00\x00\x00";

pub fn is_complete(buf: &[u8]) -> bool {
    be32(buf, 5).is_some_and(|n| buf.len() as u64 >= u64::from(n) + 9)
}

/// `cql.version`, `cql.protocol_versions`, `cql.compression`; product
/// ScyllaDB when the options carry Scylla's own keys, Cassandra otherwise.
pub fn decode(buf: &[u8]) -> Decoded {
    let mut d = Decoded::default();
    if buf.get(4) != Some(&0x06) || buf.first().is_none_or(|v| v & 0x80 == 0) {
        return d;
    }
    let body = &buf[9.min(buf.len())..];
    let mut at = 2;
    let mut scylla = false;
    for _ in 0..be16(body, 0).unwrap_or(0).min(64) {
        let Some(klen) = be16(body, at) else {
            break;
        };
        let Some(key) = body.get(at + 2..at + 2 + usize::from(klen)) else {
            break;
        };
        at += 2 + usize::from(klen);
        let Some(n) = be16(body, at) else {
            break;
        };
        at += 2;
        let mut values = Vec::new();
        for _ in 0..n.min(64) {
            let Some(vlen) = be16(body, at) else {
                break;
            };
            let Some(v) = body.get(at + 2..at + 2 + usize::from(vlen)) else {
                break;
            };
            values.push(v);
            at += 2 + usize::from(vlen);
        }
        let joined = values.join(&b',');
        match key {
            b"CQL_VERSION" => d.put("cql.version", &joined),
            b"PROTOCOL_VERSIONS" => d.put("cql.protocol_versions", &joined),
            b"COMPRESSION" => d.put("cql.compression", &joined),
            k if k.starts_with(b"SCYLLA_") => scylla = true,
            _ => {}
        }
    }
    d.product = Some(
        if scylla {
            "ScyllaDB"
        } else {
            "Apache Cassandra"
        }
        .into(),
    );
    d.cpe = Some(
        if scylla {
            "cpe:/a:scylladb:scylladb"
        } else {
            "cpe:/a:apache:cassandra"
        }
        .into(),
    );
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_foreign_frames() {
        assert!(is_complete(OPTIONS));
        assert!(decode(OPTIONS).is_empty());
        let d = decode(b"\x84\x00\x00\x01\x06\x00\x00\x00\x06\x00\x09\x00\x05ab");
        assert_eq!(d.product.as_deref(), Some("Apache Cassandra"));
        assert!(d.extra.is_empty());
    }
}
