//! Request bytes of the text and simple binary probes, and the checks that say
//! when a reply is complete enough to decode.

use memchr::memmem;
use std::net::SocketAddr;

/// `host:port` for a URI, IPv6 in brackets.
pub(super) fn host_port(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// A SIP OPTIONS request (RFC 3261 section 11.1) with every mandatory header.
/// `Max-Forwards: 0` so that a proxy answers itself instead of forwarding.
pub(super) fn sip_options(addr: SocketAddr) -> Vec<u8> {
    let target = host_port(addr);
    format!(
        "OPTIONS sip:{target} SIP/2.0\r\n\
         Via: SIP/2.0/TCP scanfleet.invalid;branch=z9hG4bK-scanfleet-detect\r\n\
         Max-Forwards: 0\r\n\
         To: <sip:{target}>\r\n\
         From: <sip:scanfleet@scanfleet.invalid>;tag=scanfleet\r\n\
         Call-ID: scanfleet-detect@scanfleet.invalid\r\n\
         CSeq: 1 OPTIONS\r\n\
         Accept: application/sdp\r\n\
         User-Agent: scanfleet-service-detection/{}\r\n\
         Content-Length: 0\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes()
}

/// SIP and RTSP answers: the header block is in (bodies are rare and useless).
pub(super) fn text_head_complete(buf: &[u8]) -> bool {
    memmem::find(buf, b"\r\n\r\n").is_some()
}

/// `PING` then `INFO server`: PING proves Redis even when INFO is renamed or
/// forbidden, INFO gives the version.
pub(super) const REDIS_PROBE: &[u8] = b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n";

/// Length 8, request code 80877103.
pub(super) const POSTGRES_SSL_REQUEST: &[u8] = &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

pub(super) const AMQP_091_HEADER: &[u8] = b"AMQP\x00\x00\x09\x01";

/// An `OP_QUERY` of `{isMaster: 1}` against `admin.$cmd`.
pub(crate) fn mongodb_is_master() -> Vec<u8> {
    // BSON document {isMaster: int32 1}.
    let mut doc = Vec::with_capacity(32);
    doc.extend_from_slice(&[0; 4]);
    doc.push(0x10); // int32 element
    doc.extend_from_slice(b"isMaster\0");
    doc.extend_from_slice(&1i32.to_le_bytes());
    doc.push(0);
    let doc_len = doc.len() as i32;
    doc[..4].copy_from_slice(&doc_len.to_le_bytes());

    let mut body = Vec::with_capacity(64);
    body.extend_from_slice(&0i32.to_le_bytes()); // flags
    body.extend_from_slice(b"admin.$cmd\0");
    body.extend_from_slice(&0i32.to_le_bytes()); // numberToSkip
    body.extend_from_slice(&(-1i32).to_le_bytes()); // numberToReturn
    body.extend_from_slice(&doc);

    let mut msg = Vec::with_capacity(16 + body.len());
    msg.extend_from_slice(&((16 + body.len()) as i32).to_le_bytes());
    msg.extend_from_slice(&0x5343_4e46i32.to_le_bytes()); // requestID, arbitrary
    msg.extend_from_slice(&0i32.to_le_bytes()); // responseTo
    msg.extend_from_slice(&2004i32.to_le_bytes()); // OP_QUERY
    msg.extend_from_slice(&body);
    msg
}

/// Number of complete RESP replies at the start of `buf` (simple strings, errors,
/// integers and bulk strings; anything else ends the count).
pub(crate) fn resp_replies(buf: &[u8]) -> usize {
    let mut rest = buf;
    let mut count = 0;
    loop {
        let Some(line_end) = memmem::find(rest, b"\r\n") else {
            return count;
        };
        let (line, after) = (&rest[..line_end], &rest[line_end + 2..]);
        match line.first() {
            Some(b'+' | b'-' | b':') => rest = after,
            Some(b'$') => {
                let len = std::str::from_utf8(&line[1..])
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok());
                match len {
                    Some(-1) => rest = after,
                    Some(n) if n >= 0 => {
                        let need = (n as usize).saturating_add(2);
                        if after.len() < need {
                            return count;
                        }
                        rest = &after[need..];
                    }
                    _ => return count,
                }
            }
            _ => return count,
        }
        count += 1;
    }
}

/// MongoDB messages start with their total length, little endian.
pub(super) fn le_length_prefixed_complete(buf: &[u8]) -> bool {
    match buf.get(..4) {
        Some(&[a, b, c, d]) => {
            let len = u32::from_le_bytes([a, b, c, d]) as usize;
            buf.len() >= len
        }
        _ => false,
    }
}

/// An AMQP frame is 7 header bytes, the payload and a frame-end octet; a broker
/// that refuses our version answers its own 8-byte protocol header instead.
pub(super) fn amqp_frame_complete(buf: &[u8]) -> bool {
    if buf.starts_with(b"AMQP") {
        return buf.len() >= 8;
    }
    match buf.get(3..7) {
        Some(&[a, b, c, d]) => {
            let size = u32::from_be_bytes([a, b, c, d]) as usize;
            buf.len() >= size.saturating_add(8)
        }
        _ => false,
    }
}
