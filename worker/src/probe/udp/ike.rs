//! IKE on 500: an IKEv1 Main Mode first message (RFC 2408 3.1, RFC 2409 5) with
//! one proposal of common transforms. Any IKE daemon answers it: with its own
//! SA choice, a NO-PROPOSAL-CHOSEN notify, or (an IKEv2-only responder) an
//! INVALID-MAJOR-VERSION notify. Vendor ID payloads in the answer often name
//! the implementation.

use std::collections::BTreeMap;

use scanfleet_common::ServiceInfo;

use super::wire::Reader;

const PAYLOAD_SA: u8 = 1;
const PAYLOAD_NOTIFY: u8 = 11;
const PAYLOAD_VENDOR: u8 = 13;
/// Most payloads walked in an answer.
const MAX_PAYLOADS: usize = 32;

/// One transform (RFC 2409 appendix A attributes, TV format).
fn transform(
    number: u8,
    last: bool,
    cipher: u16,
    key_bits: Option<u16>,
    hash: u16,
    group: u16,
) -> Vec<u8> {
    let mut attrs = Vec::new();
    let mut tv = |t: u16, v: u16| {
        attrs.extend_from_slice(&(0x8000 | t).to_be_bytes());
        attrs.extend_from_slice(&v.to_be_bytes());
    };
    tv(1, cipher);
    if let Some(bits) = key_bits {
        tv(14, bits);
    }
    tv(2, hash);
    tv(3, 1); // pre-shared key
    tv(4, group);
    tv(11, 1); // life type: seconds
    tv(12, 28800);
    let mut t = vec![if last { 0 } else { 3 }, 0];
    t.extend_from_slice(&((8 + attrs.len()) as u16).to_be_bytes());
    t.extend_from_slice(&[number, 1, 0, 0]); // KEY_IKE
    t.extend_from_slice(&attrs);
    t
}

/// The Main Mode SA message with initiator cookie `cookie`.
pub fn request(cookie: [u8; 8]) -> Vec<u8> {
    let transforms = [
        transform(1, false, 7, Some(256), 2, 14), // AES-256, SHA1, MODP2048
        transform(2, false, 7, Some(128), 2, 2),  // AES-128, SHA1, MODP1024
        transform(3, false, 5, None, 2, 2),       // 3DES, SHA1, MODP1024
        transform(4, true, 5, None, 1, 2),        // 3DES, MD5, MODP1024
    ]
    .concat();
    let mut proposal = vec![0, 0];
    proposal.extend_from_slice(&((8 + transforms.len()) as u16).to_be_bytes());
    proposal.extend_from_slice(&[1, 1, 0, 4]); // #1, PROTO_ISAKMP, no SPI, 4 transforms
    proposal.extend_from_slice(&transforms);
    let mut sa = vec![0, 0];
    sa.extend_from_slice(&((12 + proposal.len()) as u16).to_be_bytes());
    sa.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]); // DOI IPsec, SIT_IDENTITY_ONLY
    sa.extend_from_slice(&proposal);
    let mut m = cookie.to_vec();
    m.extend_from_slice(&[0; 8]); // responder cookie
    m.extend_from_slice(&[PAYLOAD_SA, 0x10, 2, 0, 0, 0, 0, 0]); // v1.0, Main Mode
    m.extend_from_slice(&((28 + sa.len()) as u32).to_be_bytes());
    m.extend_from_slice(&sa);
    m
}

/// Facts from an answer to [`request`] with initiator cookie `cookie`.
pub fn parse(buf: &[u8], cookie: [u8; 8]) -> Option<ServiceInfo> {
    let mut r = Reader::new(buf);
    if r.take(8)? != cookie {
        return None;
    }
    r.skip(8)?;
    let mut next = r.u8()?;
    let version = r.u8()?;
    let exchange = r.u8()?;
    r.skip(5)?; // flags, message id
    r.u32()?; // length
    let major = version >> 4;
    if major != 1 && major != 2 {
        return None;
    }
    let mut extra = BTreeMap::new();
    extra.insert("ike.version".to_string(), major.to_string());
    extra.insert("ike.exchange".to_string(), exchange.to_string());
    let mut vendors = Vec::new();
    for _ in 0..MAX_PAYLOADS {
        if next == 0 {
            break;
        }
        let (Some(n), Some(_), Some(len)) = (r.u8(), r.u8(), r.u16()) else {
            break;
        };
        let Some(body) = r.take(usize::from(len).saturating_sub(4)) else {
            break;
        };
        match next {
            PAYLOAD_SA => {
                extra.insert("ike.sa".to_string(), "accepted".to_string());
            }
            PAYLOAD_NOTIFY if body.len() >= 8 => {
                let ty = u16::from_be_bytes([body[6], body[7]]);
                extra.insert("ike.notify".to_string(), ty.to_string());
            }
            PAYLOAD_VENDOR if vendors.len() < 8 => {
                let hex: String = body.iter().take(20).map(|b| format!("{b:02x}")).collect();
                vendors.push(hex);
            }
            _ => {}
        }
        next = n;
    }
    if !vendors.is_empty() {
        extra.insert("ike.vendor_ids".to_string(), vendors.join(","));
    }
    Some(ServiceInfo {
        name: "isakmp".into(),
        extra,
        ..ServiceInfo::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOKIE: [u8; 8] = *b"sfcookie";

    #[test]
    fn request_is_a_consistent_main_mode_sa() {
        let q = request(COOKIE);
        assert_eq!(&q[..8], b"sfcookie");
        assert_eq!(&q[16..20], &[PAYLOAD_SA, 0x10, 2, 0]);
        assert_eq!(
            u32::from_be_bytes([q[24], q[25], q[26], q[27]]) as usize,
            q.len()
        );
        let sa_len = u16::from_be_bytes([q[30], q[31]]) as usize;
        assert_eq!(28 + sa_len, q.len());
        // Our own request carries a zero responder cookie but parses as IKEv1.
        assert_eq!(parse(&q, COOKIE).unwrap().extra["ike.sa"], "accepted");
        assert!(parse(&q, *b"another!").is_none());
    }

    #[test]
    fn notify_and_vendor_id_answers() {
        // An answer as RFC 2408 lays it out: NOTIFY NO-PROPOSAL-CHOSEN (14),
        // then a Vendor ID (the RFC 3947 NAT-T hash).
        let mut a = COOKIE.to_vec();
        a.extend_from_slice(b"respondr");
        a.extend_from_slice(&[PAYLOAD_NOTIFY, 0x10, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        a.extend_from_slice(&[PAYLOAD_VENDOR, 0, 0, 12, 0, 0, 0, 1, 1, 0, 0, 14]);
        let vid = [
            0x4a, 0x13, 0x1c, 0x81, 0x07, 0x03, 0x58, 0x45, 0x5c, 0x57, 0x28, 0xf2, 0x0e, 0x95,
            0x45, 0x2f,
        ];
        a.extend_from_slice(&[0, 0, 0, 20]);
        a.extend_from_slice(&vid);
        let info = parse(&a, COOKIE).unwrap();
        assert_eq!(info.name, "isakmp");
        assert_eq!(info.extra["ike.notify"], "14");
        assert_eq!(
            info.extra["ike.vendor_ids"],
            "4a131c81070358455c5728f20e95452f"
        );
        for n in 0..a.len() {
            let _ = parse(&a[..n], COOKIE);
        }
    }
}
