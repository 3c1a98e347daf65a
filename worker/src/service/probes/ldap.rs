//! LDAPv3 (RFC 4511): an anonymous simple bind (message 1) and a base-scope
//! search of the root DSE (message 2, RFC 4512 section 5.1) in one write. The
//! bind result says whether anonymous binds are allowed; the root DSE names the
//! naming contexts, the supported extensions (StartTLS is 1.3.6.1.4.1.1466.20037,
//! RFC 4511 section 4.14) and, for some servers, the vendor.

use super::decoded::Decoded;

/// The StartTLS extended operation's OID.
pub const STARTTLS_OID: &[u8] = b"1.3.6.1.4.1.1466.20037";

/// Root DSE attributes we ask for: the standard ones, the vendor ones of RFC
/// 3045, OpenLDAP's `structuralObjectClass` and Active Directory's own.
const ATTRIBUTES: [&str; 10] = [
    "namingContexts",
    "supportedLDAPVersion",
    "supportedExtension",
    "supportedSASLMechanisms",
    "vendorName",
    "vendorVersion",
    "structuralObjectClass",
    "dnsHostName",
    "domainControllerFunctionality",
    "forestFunctionality",
];

/// A BER TLV with a definite length.
fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = body.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(body);
    out
}

fn message(id: u8, op: Vec<u8>) -> Vec<u8> {
    tlv(0x30, &[tlv(0x02, &[id]), op].concat())
}

/// Anonymous bind (version 3, empty name, empty simple password), then the
/// root DSE search with the filter `(objectClass=*)`.
pub fn request() -> Vec<u8> {
    let bind = tlv(
        0x60,
        &[tlv(0x02, &[3]), tlv(0x04, b""), tlv(0x80, b"")].concat(),
    );
    let attrs: Vec<u8> = ATTRIBUTES
        .iter()
        .flat_map(|a| tlv(0x04, a.as_bytes()))
        .collect();
    let search = tlv(
        0x63,
        &[
            tlv(0x04, b""),            // baseObject: the root DSE
            tlv(0x0a, &[0]),           // scope baseObject
            tlv(0x0a, &[0]),           // derefAliases never
            tlv(0x02, &[0]),           // sizeLimit
            tlv(0x02, &[5]),           // timeLimit, seconds
            tlv(0x01, &[0]),           // typesOnly false
            tlv(0x87, b"objectClass"), // present filter
            tlv(0x30, &attrs),
        ]
        .concat(),
    );
    [message(1, bind), message(2, search)].concat()
}

/// The StartTLS extended request (message 3).
pub fn starttls_request() -> Vec<u8> {
    message(3, tlv(0x77, &tlv(0x80, STARTTLS_OID)))
}

/// One BER element at the start of `buf`: (tag, content, rest).
fn element(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *buf.first()?;
    let first = *buf.get(1)?;
    let (len, head) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = buf.get(2..2 + n)?;
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, 2 + n)
    };
    let end = head.checked_add(len)?;
    let content = buf.get(head..end)?;
    Some((tag, content, &buf[end..]))
}

/// Whether the search's done message (or a failed bind's result followed by a
/// close) is in: message 2 with tag `searchResDone`, or any result for
/// message 3.
pub fn is_complete(buf: &[u8]) -> bool {
    let mut rest = buf;
    while let Some((0x30, msg, after)) = element(rest) {
        if let Some((0x02, id, ops)) = element(msg)
            && let Some((op, _, _)) = element(ops)
            && ((id == [2] && op == 0x65) || (id == [3] && op == 0x78))
        {
            return true;
        }
        rest = after;
    }
    false
}

/// Whether `buf` holds a successful StartTLS extended response (message 3).
pub fn starttls_accepted(buf: &[u8]) -> bool {
    let Some((0x30, msg, _)) = element(buf) else {
        return false;
    };
    let Some((0x02, [3], ops)) = element(msg) else {
        return false;
    };
    matches!(element(ops), Some((0x78, body, _)) if result_code(body) == Some(0))
}

/// The result code of an LDAPResult body (resultCode, matchedDN, diagnostic).
fn result_code(body: &[u8]) -> Option<u8> {
    match element(body)? {
        (0x0a, [code], _) => Some(*code),
        _ => None,
    }
}

/// Facts from the bind result and the root DSE entry: `anonymous`,
/// `ldap.naming_contexts`, `ldap.versions`, `ldap.sasl`, `ldap.dns_host_name`,
/// `starttls`; product and version from the vendor attributes or the
/// server-specific ones.
pub fn decode(buf: &[u8]) -> Decoded {
    let mut d = Decoded::default();
    let mut rest = buf;
    let mut attrs: Vec<(Vec<u8>, Vec<&[u8]>)> = Vec::new();
    let mut messages = 0;
    while let Some((0x30, msg, after)) = element(rest) {
        messages += 1;
        if messages > 16 {
            break;
        }
        rest = after;
        let Some((0x02, _id, ops)) = element(msg) else {
            continue;
        };
        let Some((op, body, _)) = element(ops) else {
            continue;
        };
        match op {
            0x61 => match result_code(body) {
                Some(0) => d.put("anonymous", b"allowed"),
                Some(_) => d.put("anonymous", b"refused"),
                None => {}
            },
            0x64 => {
                let Some((0x04, _dn, tail)) = element(body) else {
                    continue;
                };
                let Some((0x30, mut list, _)) = element(tail) else {
                    continue;
                };
                while let Some((0x30, attr, next)) = element(list) {
                    list = next;
                    let Some((0x04, name, vals)) = element(attr) else {
                        continue;
                    };
                    let Some((0x31, mut set, _)) = element(vals) else {
                        continue;
                    };
                    let mut values = Vec::new();
                    while let Some((0x04, v, next)) = element(set) {
                        values.push(v);
                        set = next;
                        if values.len() >= 64 {
                            break;
                        }
                    }
                    attrs.push((name.to_ascii_lowercase(), values));
                }
            }
            _ => {}
        }
    }
    let get = |name: &str| {
        attrs
            .iter()
            .find(|(n, _)| n == name.to_ascii_lowercase().as_bytes())
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let joined = |name: &str| get(name).join(&b',');
    d.put("ldap.naming_contexts", &joined("namingContexts"));
    d.put("ldap.versions", &joined("supportedLDAPVersion"));
    d.put("ldap.sasl", &joined("supportedSASLMechanisms"));
    d.put("ldap.dns_host_name", &joined("dnsHostName"));
    if get("supportedExtension").contains(&STARTTLS_OID) {
        d.put("starttls", b"offered");
    }
    let vendor = joined("vendorName");
    if !get("domainControllerFunctionality").is_empty() || !get("forestFunctionality").is_empty() {
        d.product = Some("Microsoft Active Directory LDAP".into());
        d.cpe = Some("cpe:/a:microsoft:active_directory".into());
    } else if get("structuralObjectClass").contains(&b"OpenLDAProotDSE".as_slice()) {
        d.product = Some("OpenLDAP".into());
        d.cpe = Some("cpe:/a:openldap:openldap".into());
    } else if !vendor.is_empty() {
        d.product = Decoded::text(&vendor);
        d.version = Decoded::text(&joined("vendorVersion"));
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_two_messages() {
        let r = request();
        let (tag, first, rest) = element(&r).unwrap();
        assert_eq!(tag, 0x30);
        assert_eq!(&first[..3], b"\x02\x01\x01");
        let (tag, second, rest) = element(rest).unwrap();
        assert_eq!((tag, &second[..3]), (0x30, b"\x02\x01\x02".as_slice()));
        assert!(rest.is_empty());
        assert_eq!(starttls_request()[5], 0x77);
    }

    #[test]
    fn refused_bind_and_garbage() {
        // bindResponse, resultCode 48 (inappropriateAuthentication).
        let d = decode(b"\x30\x0c\x02\x01\x01\x61\x07\x0a\x01\x30\x04\x00\x04\x00");
        assert_eq!(d.extra["anonymous"], "refused");
        assert!(decode(b"\x30\x84\xff\xff\xff\xff").is_empty());
        assert!(!is_complete(b"\x30\x85"));
    }
}
