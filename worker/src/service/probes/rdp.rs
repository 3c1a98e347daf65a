//! RDP's first message ([MS-RDPBCGR] 2.2.1.1 and 2.2.1.2): an X.224
//! Connection Request in a TPKT (RFC 1006) carrying RDP_NEG_REQ, which asks for
//! TLS, CredSSP (NLA) and early-auth CredSSP. The Connection Confirm says which
//! one the server picked, or why it refuses.

use super::decoded::{Decoded, le32};

/// TPKT (3, 0, length 19), X.224 CR (length 14, code 0xe0, dst/src refs,
/// class 0), RDP_NEG_REQ (type 1, flags 0, length 8, protocols 0x0b).
pub const CONNECTION_REQUEST: &[u8] =
    b"\x03\x00\x00\x13\x0e\xe0\x00\x00\x00\x00\x00\x01\x00\x08\x00\x0b\x00\x00\x00";

pub fn is_complete(buf: &[u8]) -> bool {
    match buf.get(2..4) {
        Some(&[a, b]) => buf.len() >= usize::from(u16::from_be_bytes([a, b])),
        _ => false,
    }
}

/// `rdp.security`: `rdp` (legacy RDP security), `tls`, `credssp` (NLA),
/// `rdstls`, `credssp-early`; or `rdp.failure` with the refusal code.
pub fn decode(buf: &[u8]) -> Decoded {
    let mut d = Decoded::default();
    if !buf.starts_with(b"\x03\x00") || buf.get(5) != Some(&0xd0) {
        return d;
    }
    match (buf.get(11), le32(buf, 15)) {
        (Some(2), Some(p)) => {
            let name: &[u8] = match p {
                0 => b"rdp",
                1 => b"tls",
                2 => b"credssp",
                4 => b"rdstls",
                8 => b"credssp-early",
                _ => b"other",
            };
            d.put("rdp.security", name);
        }
        (Some(3), Some(code)) => d.put("rdp.failure", code.to_string().as_bytes()),
        (None, _) => d.put("rdp.security", b"rdp"),
        _ => {}
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_answers() {
        assert!(is_complete(CONNECTION_REQUEST));
        assert_eq!(CONNECTION_REQUEST.len(), 19);
        let legacy = b"\x03\x00\x00\x0b\x06\xd0\x00\x00\x12\x34\x00";
        assert_eq!(decode(legacy).extra["rdp.security"], "rdp");
        let failure =
            b"\x03\x00\x00\x13\x0e\xd0\x00\x00\x12\x34\x00\x03\x00\x08\x00\x05\x00\x00\x00";
        assert_eq!(decode(failure).extra["rdp.failure"], "5");
        assert!(decode(b"\x03\x00\x00").is_empty());
    }
}
