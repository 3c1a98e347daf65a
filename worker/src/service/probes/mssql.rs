//! Microsoft SQL Server's TDS PRELOGIN ([MS-TDS] 2.2.6.5): the first message
//! of every connection, answered before any login with the server's version
//! and its encryption setting.

use super::decoded::{Decoded, be16};

/// PRELOGIN with VERSION, ENCRYPTION (off), INSTOPT (empty), THREADID, MARS (off).
pub fn request() -> Vec<u8> {
    // Option table: token, offset, length (big endian); offsets count from the
    // start of the PRELOGIN payload. 5 options of 5 bytes and the terminator.
    let options: [(u8, u16); 5] = [(0, 6), (1, 1), (2, 1), (3, 4), (4, 1)];
    let mut table = Vec::with_capacity(26);
    let mut data = Vec::with_capacity(13);
    let mut offset = (options.len() * 5 + 1) as u16;
    for (token, len) in options {
        table.push(token);
        table.extend_from_slice(&offset.to_be_bytes());
        table.extend_from_slice(&len.to_be_bytes());
        offset += len;
    }
    table.push(0xff);
    data.extend_from_slice(&[0; 6]); // VERSION: the client's, zero
    data.push(0); // ENCRYPT_OFF
    data.push(0); // INSTOPT: empty instance name
    data.extend_from_slice(&0u32.to_be_bytes()); // THREADID
    data.push(0); // MARS off
    let payload = [table, data].concat();
    let mut out = vec![0x12, 0x01];
    out.extend_from_slice(&((payload.len() + 8) as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 1, 0]); // SPID, PacketID, Window
    out.extend_from_slice(&payload);
    out
}

pub fn is_complete(buf: &[u8]) -> bool {
    be16(buf, 2).is_some_and(|n| buf.len() >= usize::from(n))
}

/// The SQL Server release that a major version number belongs to.
fn release(major: u8, minor: u8) -> Option<&'static str> {
    Some(match (major, minor) {
        (8, _) => "2000",
        (9, _) => "2005",
        (10, 50) => "2008 R2",
        (10, _) => "2008",
        (11, _) => "2012",
        (12, _) => "2014",
        (13, _) => "2016",
        (14, _) => "2017",
        (15, _) => "2019",
        (16, _) => "2022",
        _ => return None,
    })
}

/// Product `Microsoft SQL Server <release>`, version `major.minor.build`, and
/// `mssql.encryption` (`off`, `on`, `unsupported`, `required`).
pub fn decode(buf: &[u8]) -> Decoded {
    let mut d = Decoded::default();
    if buf.first() != Some(&0x04) {
        return d;
    }
    let payload = &buf[8.min(buf.len())..];
    let mut at = 0;
    for _ in 0..16 {
        let Some(&token) = payload.get(at) else {
            break;
        };
        if token == 0xff {
            break;
        }
        let (Some(off), Some(len)) = (be16(payload, at + 1), be16(payload, at + 3)) else {
            break;
        };
        let value = payload.get(usize::from(off)..usize::from(off) + usize::from(len));
        match (token, value) {
            (0, Some(v)) if v.len() >= 4 => {
                let build = u16::from_be_bytes([v[2], v[3]]);
                d.version = Some(format!("{}.{}.{}", v[0], v[1], build));
                let rel = release(v[0], v[1]);
                d.product = Some(match rel {
                    Some(r) => format!("Microsoft SQL Server {r}"),
                    None => "Microsoft SQL Server".into(),
                });
                d.cpe = Some(match rel {
                    Some(r) => format!(
                        "cpe:/a:microsoft:sql_server:{}",
                        r.replace(' ', "_").to_ascii_lowercase()
                    ),
                    None => "cpe:/a:microsoft:sql_server".into(),
                });
            }
            (1, Some([e, ..])) => {
                let e: &[u8] = match e {
                    0 => b"off",
                    1 => b"on",
                    2 => b"unsupported",
                    3 => b"required",
                    _ => b"other",
                };
                d.put("mssql.encryption", e);
            }
            _ => {}
        }
        at += 5;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_self_consistent() {
        let r = request();
        assert!(is_complete(&r));
        assert_eq!(r.len(), 8 + 26 + 13);
        assert_eq!(r[8 + 25], 0xff);
    }

    #[test]
    fn not_a_reply() {
        assert!(decode(&request()).is_empty());
        assert!(decode(b"\x04\x01\x00\x10\x00\x00\x01\x00\x00\xff\xff\x00\x06").is_empty());
    }
}
