//! PostgreSQL's frontend/backend protocol 3.0 (PostgreSQL documentation,
//! "Frontend/Backend Protocol", Message Formats): a StartupMessage for a role
//! and database named `scanfleet`. The server answers with an authentication
//! request (which method it wants), AuthenticationOk (trust: no password
//! asked), or an ErrorResponse (no pg_hba.conf entry, unknown role, ...).

use super::decoded::{Decoded, be32};

pub fn startup() -> Vec<u8> {
    let params: &[u8] =
        b"user\0scanfleet\0database\0scanfleet\0application_name\0scanfleet-detect\0\0";
    let mut out = ((8 + params.len()) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&196_608u32.to_be_bytes()); // protocol 3.0
    out.extend_from_slice(params);
    out
}

/// Backend messages at the start of `buf`: (type, body).
fn messages(buf: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        let kind = *rest.first()?;
        let len = be32(rest, 1)? as usize;
        let body = rest.get(5..1usize.checked_add(len)?)?;
        rest = &rest[1 + len..];
        Some((kind, body))
    })
    .take(64)
}

/// Whole once an ErrorResponse, a password request or ReadyForQuery is in.
pub fn is_complete(buf: &[u8]) -> bool {
    messages(buf).any(|(k, body)| match k {
        b'E' | b'Z' => true,
        b'R' => be32(body, 0).is_some_and(|code| code != 0),
        _ => false,
    })
}

/// `auth` (`none` for AuthenticationOk, `required` for a password or SASL
/// request), `postgresql.auth` (the method), `postgresql.error` (SQLSTATE and
/// message of an ErrorResponse), and the version when the server went as far
/// as reporting `server_version`.
pub fn decode(buf: &[u8]) -> Decoded {
    let mut d = Decoded::default();
    for (kind, body) in messages(buf) {
        match kind {
            b'R' => {
                let method: &[u8] = match be32(body, 0) {
                    Some(0) => b"trust",
                    Some(3) => b"password",
                    Some(5) => b"md5",
                    Some(7) => b"gss",
                    Some(9) => b"sspi",
                    Some(10) => b"sasl",
                    _ => continue,
                };
                if method == b"sasl" {
                    let mechs: Vec<&[u8]> = body[4..]
                        .split(|&b| b == 0)
                        .filter(|m| !m.is_empty())
                        .collect();
                    d.put("postgresql.sasl", &mechs.join(&b','));
                }
                d.put("postgresql.auth", method);
                d.put(
                    "auth",
                    if method == b"trust" {
                        b"none"
                    } else {
                        b"required"
                    },
                );
            }
            b'E' => {
                let mut code: &[u8] = b"";
                let mut message: &[u8] = b"";
                for f in body.split(|&b| b == 0) {
                    match f.split_first() {
                        Some((b'C', v)) => code = v,
                        Some((b'M', v)) => message = v,
                        _ => {}
                    }
                }
                d.put("postgresql.error", &[code, b" ", message].concat());
            }
            b'S' => {
                let mut kv = body.split(|&b| b == 0);
                if kv.next() == Some(b"server_version") {
                    let v = kv.next().unwrap_or_default();
                    let upstream = v.split(|&b| b == b' ').next().unwrap_or_default();
                    d.version = Decoded::text(upstream);
                }
            }
            _ => {}
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_and_odd_replies() {
        let s = startup();
        assert_eq!(be32(&s, 0).unwrap() as usize, s.len());
        let sasl = b"R\x00\x00\x00\x17\x00\x00\x00\x0aSCRAM-SHA-256\x00\x00";
        assert!(is_complete(sasl));
        let d = decode(sasl);
        assert_eq!(
            (
                d.extra["auth"].as_str(),
                d.extra["postgresql.sasl"].as_str()
            ),
            ("required", "SCRAM-SHA-256")
        );
        assert!(decode(b"R\xff\xff\xff\xff").is_empty());
        assert!(!is_complete(b"R\x00\x00\x00\x08\x00\x00\x00\x00"));
    }
}
