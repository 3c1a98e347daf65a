//! Oracle Net (TNS): a CONNECT packet to the listener for a service name that
//! does not exist. The listener refuses it with a `(DESCRIPTION=...)` text
//! carrying `VSNNUM`, its version as one decimal number whose hex digits are
//! the release fields, and `ERR`, the refusal code (12514: unknown service).
//! Layout of the CONNECT packet as documented for TNS version 314.

use super::decoded::{Decoded, be16};

const CONNECT_DATA: &[u8] = b"(DESCRIPTION=(CONNECT_DATA=(SERVICE_NAME=scanfleet.invalid)(CID=(PROGRAM=scanfleet)(HOST=scanfleet)(USER=scanfleet))))";

/// Offset of the connect data: the 8-byte packet header, 26 bytes of connect
/// fields and 24 bytes of trace identifiers.
const DATA_OFFSET: u16 = 58;

pub fn request() -> Vec<u8> {
    let total = usize::from(DATA_OFFSET) + CONNECT_DATA.len();
    let mut p = Vec::with_capacity(total);
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]); // packet checksum
    p.push(1); // CONNECT
    p.push(0);
    p.extend_from_slice(&[0, 0]); // header checksum
    p.extend_from_slice(&314u16.to_be_bytes()); // version
    p.extend_from_slice(&300u16.to_be_bytes()); // lowest compatible version
    p.extend_from_slice(&0u16.to_be_bytes()); // service options
    p.extend_from_slice(&0x2000u16.to_be_bytes()); // session data unit
    p.extend_from_slice(&0xffffu16.to_be_bytes()); // max transmission unit
    p.extend_from_slice(&0x7f08u16.to_be_bytes()); // protocol characteristics
    p.extend_from_slice(&0u16.to_be_bytes()); // line turnaround
    p.extend_from_slice(&1u16.to_be_bytes()); // value of 1 in hardware
    p.extend_from_slice(&(CONNECT_DATA.len() as u16).to_be_bytes());
    p.extend_from_slice(&DATA_OFFSET.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes()); // max receivable connect data
    p.extend_from_slice(&[0x41, 0x41]); // connect flags
    p.resize(usize::from(DATA_OFFSET), 0); // trace identifiers
    p.extend_from_slice(CONNECT_DATA);
    p
}

pub fn is_complete(buf: &[u8]) -> bool {
    be16(buf, 0).is_some_and(|n| n >= 8 && buf.len() >= usize::from(n))
}

/// The text between `(KEY=` and the next `)`.
fn field<'a>(buf: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let start = memchr::memmem::find(buf, key)? + key.len();
    let len = buf[start..].iter().position(|&b| b == b')')?;
    Some(&buf[start..start + len])
}

/// The release fields packed in a VSNNUM: 8 bits, 4, 8, 4, 8.
pub fn vsnnum(n: u32) -> String {
    format!(
        "{}.{}.{}.{}.{}",
        n >> 24,
        (n >> 20) & 0xf,
        (n >> 12) & 0xff,
        (n >> 8) & 0xf,
        n & 0xff
    )
}

/// `oracle.error` (the listener's ERR code) and, from VSNNUM, the version.
pub fn decode(buf: &[u8]) -> Decoded {
    let mut d = Decoded::default();
    if let Some(err) = field(buf, b"(ERR=") {
        d.put("oracle.error", err);
    }
    let num =
        field(buf, b"(VSNNUM=").and_then(|v| std::str::from_utf8(v).ok()?.parse::<u32>().ok());
    if let Some(n) = num {
        let v = vsnnum(n);
        d.cpe = Some(format!("cpe:/a:oracle:database_server:{v}"));
        d.version = Some(v);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_packet_and_versions() {
        let r = request();
        assert!(is_complete(&r));
        assert_eq!(usize::from(be16(&r, 24).unwrap()), CONNECT_DATA.len());
        assert!(r.ends_with(CONNECT_DATA));
        assert_eq!(vsnnum(0x0B20_0200), "11.2.0.2.0");
        assert_eq!(vsnnum(318_767_104), "19.0.0.0.0");
        assert!(decode(b"(VSNNUM=abc)(ERR=").is_empty());
    }
}
