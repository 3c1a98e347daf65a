//! Erlang: the port mapper daemon (epmd, port 4369) and the distribution
//! protocol of the nodes it lists, as the Erlang/OTP "Distribution Protocol"
//! documentation (erts, `erl_dist_protocol`) describes them.

use super::decoded::{Decoded, be16};

/// NAMES_REQ: length 1, request 110 (`n`). epmd answers its own port (4 bytes)
/// and one `name N at port P` line per registered node, then closes.
pub const NAMES_REQUEST: &[u8] = b"\x00\x01n";

/// Our node name in the handshake. `.invalid` (RFC 2606) so it can never be
/// mistaken for a real host.
const NODE: &[u8] = b"scanfleet@scanfleet.invalid";

/// The distribution flags OTP 25+ requires of a peer (extended references and
/// pids, fun tags, new floats, UTF-8 atoms, maps, big creation, export and bit
/// binaries) plus HANDSHAKE_23, so that a current node answers at all.
const FLAGS: u64 =
    0x4 | 0x10 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800 | 0x1_0000 | 0x2_0000 | 0x4_0000 | 0x100_0000;

/// The version 6 `send_name` message (`N`, flags, creation, name). The node
/// answers a status (`sok`, `snot_allowed`, ...) and, when it goes on, its
/// challenge carrying its own node name. We never answer the challenge.
pub fn send_name() -> Vec<u8> {
    let mut msg = Vec::with_capacity(48);
    msg.push(b'N');
    msg.extend_from_slice(&FLAGS.to_be_bytes());
    msg.extend_from_slice(&0x5346_0001u32.to_be_bytes()); // creation, arbitrary
    msg.extend_from_slice(&(NODE.len() as u16).to_be_bytes());
    msg.extend_from_slice(NODE);
    let mut out = (msg.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&msg);
    out
}

/// `epmd.nodes`: `name:port` for every node epmd lists, comma separated.
pub fn decode_names(buf: &[u8]) -> Decoded {
    let mut d = Decoded::default();
    let Some(lines) = buf.get(4..) else {
        return d;
    };
    let mut nodes = Vec::new();
    for line in lines.split(|&b| b == b'\n') {
        let Some(rest) = line.strip_prefix(b"name ") else {
            continue;
        };
        let Some(at) = memchr::memmem::rfind(rest, b" at port ") else {
            continue;
        };
        let (name, port) = (&rest[..at], &rest[at + 9..]);
        if !port.is_empty() && port.len() <= 5 && port.iter().all(u8::is_ascii_digit) {
            nodes.push([name, b":", port].concat());
        }
        if nodes.len() >= 32 {
            break;
        }
    }
    d.put("epmd.nodes", &nodes.join(&b','));
    d
}

/// Whether the buffer holds the status message and, after a go-ahead, the
/// challenge (both length-prefixed).
pub fn dist_complete(buf: &[u8]) -> bool {
    let Some(len) = be16(buf, 0) else {
        return false;
    };
    let end = 2 + usize::from(len);
    let Some(status) = buf.get(2..end) else {
        return false;
    };
    if !status.starts_with(b"sok") {
        return true;
    }
    be16(buf, end).is_some_and(|n| buf.len() >= end + 2 + usize::from(n))
}

/// `erlang.status` (the handshake status) and `erlang.node` (the node's own
/// name, from its challenge: `N` flags(8) challenge(4) creation(4) len(2) name,
/// or the old `n` version(2) flags(4) challenge(4) name).
pub fn decode_dist(buf: &[u8]) -> Decoded {
    let mut d = Decoded::default();
    let Some(len) = be16(buf, 0) else {
        return d;
    };
    let end = 2 + usize::from(len);
    let Some(status) = buf.get(2..end) else {
        return d;
    };
    if let Some(s) = status.strip_prefix(b"s") {
        d.put("erlang.status", s);
    }
    let Some(clen) = be16(buf, end) else {
        return d;
    };
    let Some(challenge) = buf.get(end + 2..end + 2 + usize::from(clen)) else {
        return d;
    };
    let name = match challenge.first() {
        Some(b'N') => be16(challenge, 17).and_then(|n| challenge.get(19..19 + usize::from(n))),
        Some(b'n') => challenge.get(11..),
        _ => None,
    };
    if let Some(name) = name {
        d.put("erlang.node", name);
        if name.starts_with(b"rabbit@") {
            d.product = Some("RabbitMQ".into());
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_name_is_length_prefixed() {
        let m = send_name();
        assert_eq!(usize::from(be16(&m, 0).unwrap()), m.len() - 2);
        assert_eq!(m[2], b'N');
        assert!(m.ends_with(NODE));
    }

    #[test]
    fn odd_replies() {
        assert!(decode_names(b"\x00\x00\x11\x11").is_empty());
        let d = decode_names(b"\x00\x00\x11\x11name a at port 1\nname b at port x\nname c");
        assert_eq!(d.extra["epmd.nodes"], "a:1");
        assert!(dist_complete(b"\x00\x03nok"));
        assert!(!dist_complete(b"\x00\x03sok\x00\x30N"));
        assert_eq!(
            decode_dist(b"\x00\x0csnot_allowed").extra["erlang.status"],
            "not_allowed"
        );
        assert!(decode_dist(b"\xff\xff").is_empty());
    }
}
