//! SSDP (UPnP Device Architecture 1.1, section 1.3) on 1900: an `M-SEARCH` for
//! every device and service, sent unicast to the target. A device answers with
//! HTTP-over-UDP headers naming its software (`SERVER`) and description URL.

use std::collections::BTreeMap;

use scanfleet_common::ServiceInfo;

use super::wire::fact;

/// M-SEARCH for `ssdp:all`.
pub fn request() -> Vec<u8> {
    b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n"
        .to_vec()
}

/// Facts from an `HTTP/1.1 200 OK` search answer (or a NOTIFY).
pub fn parse(buf: &[u8]) -> Option<ServiceInfo> {
    let mut lines = buf
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status = lines.next()?;
    if !(status.starts_with(b"HTTP/1.") || status.starts_with(b"NOTIFY * HTTP/1.")) {
        return None;
    }
    let mut extra = BTreeMap::new();
    for line in lines.take(32) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (k, v) = line.split_at(colon);
        let v = v[1..].trim_ascii();
        let key = match k.trim_ascii().to_ascii_lowercase().as_slice() {
            b"server" => "ssdp.server",
            b"location" => "ssdp.location",
            b"st" => "ssdp.st",
            b"usn" => "ssdp.usn",
            _ => continue,
        };
        extra.entry(key.to_string()).or_insert_with(|| fact(v));
    }
    Some(ServiceInfo {
        name: "upnp".into(),
        extra,
        ..ServiceInfo::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_is_an_m_search_for_everything() {
        let q = String::from_utf8(request()).unwrap();
        assert!(q.starts_with("M-SEARCH * HTTP/1.1\r\n"));
        assert!(q.contains("MAN: \"ssdp:discover\"\r\n") && q.ends_with("\r\n\r\n"));
        assert!(parse(q.as_bytes()).is_none(), "a search is not an answer");
    }

    #[test]
    fn search_answer_as_the_specification_writes_it() {
        // UDA 1.1, 1.3.3: the response to a search, from a MiniUPnPd router.
        let reply = b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: upnp:rootdevice\r\nUSN: uuid:0001::upnp:rootdevice\r\nEXT:\r\nSERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.3\r\nLOCATION: http://10.0.0.1:5000/rootDesc.xml\r\n\r\n";
        let info = parse(reply).unwrap();
        assert_eq!(info.name, "upnp");
        assert_eq!(
            info.extra["ssdp.server"],
            "Debian/12 UPnP/1.1 MiniUPnPd/2.3.3"
        );
        assert_eq!(
            info.extra["ssdp.location"],
            "http://10.0.0.1:5000/rootDesc.xml"
        );
        assert_eq!(info.extra["ssdp.st"], "upnp:rootdevice");
        let evil = b"HTTP/1.1 200 OK\r\nSERVER: \x1b[31mred\r\n\r\n";
        assert_eq!(parse(evil).unwrap().extra["ssdp.server"], "\\x1b[31mred");
    }
}
