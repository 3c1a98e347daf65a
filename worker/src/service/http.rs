//! HTTP: the request we send, and the facts we keep from an answer (status, Server
//! header, page title). Used for plain HTTP and for HTTP inside TLS.

use std::collections::BTreeMap;
use std::net::IpAddr;

use memchr::memmem::find;
use scanfleet_common::escape_bytes;

/// Longest header value or title kept, in input bytes.
const MAX_FACT: usize = 128;

/// `GET /` with a `Host` header (HTTP/1.1 requires one) and `Connection: close`, so
/// a polite server ends the answer by closing instead of making us wait.
pub(crate) fn request(ip: IpAddr, port: u16, tls: bool) -> Vec<u8> {
    request_path(ip, port, tls, "/")
}

/// `GET path`, otherwise as [`request`].
pub(crate) fn request_path(ip: IpAddr, port: u16, tls: bool, path: &str) -> Vec<u8> {
    let host = match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let default_port = if tls { 443 } else { 80 };
    let host = if port == default_port {
        host
    } else {
        format!("{host}:{port}")
    };
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: scanfleet-service-detection/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes()
}

/// The name the proxy probe asks for: `.invalid` is reserved (RFC 2606) and
/// never resolves, so a proxy cannot reach anything with it; it can only say
/// that it tried.
pub(crate) const PROXY_CHECK_HOST: &str = "scanfleet-proxy-check.invalid";

/// `CONNECT` to [`PROXY_CHECK_HOST`]: a forward proxy answers with its own
/// error (502, 503, 504), or 407 when it wants credentials; an origin server
/// refuses the method (400, 405, 501).
pub(crate) fn connect_request() -> Vec<u8> {
    format!(
        "CONNECT {PROXY_CHECK_HOST}:443 HTTP/1.1\r\nHost: {PROXY_CHECK_HOST}:443\r\nUser-Agent: scanfleet-service-detection/{}\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes()
}

/// Where the header block ends and the body starts.
fn split_head(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    if let Some(i) = find(buf, b"\r\n\r\n") {
        return Some((&buf[..i], &buf[i + 4..]));
    }
    find(buf, b"\n\n").map(|i| (&buf[..i], &buf[i + 2..]))
}

/// Header lines after the status line, as (lowercased name, trimmed value).
fn headers(head: &[u8]) -> impl Iterator<Item = (Vec<u8>, &[u8])> {
    head.split(|&b| b == b'\n').skip(1).filter_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        let name = line[..colon].to_ascii_lowercase();
        Some((name, line[colon + 1..].trim_ascii()))
    })
}

/// Whether the answer is whole: headers in, and either the body reached its
/// `Content-Length` or the title already went by (the rest of the page is of no use).
pub(crate) fn is_complete(buf: &[u8]) -> bool {
    let Some((head, body)) = split_head(buf) else {
        return false;
    };
    let content_length = headers(head)
        .find(|(n, _)| n == b"content-length")
        .and_then(|(_, v)| std::str::from_utf8(v).ok()?.parse::<usize>().ok());
    if content_length.is_some_and(|len| body.len() >= len) {
        return true;
    }
    let lower = body.to_ascii_lowercase();
    // HAProxy's statistics page names its release only after a long style
    // sheet; keep reading until that line (the read cap still bounds it).
    if find(&lower, b"<title>statistics report for haproxy").is_some() {
        return find(&lower, b"haproxy version ").is_some();
    }
    find(&lower, b"</title").is_some()
}

/// Facts worth keeping from an HTTP answer, all escaped and bounded:
/// `http.status`, `http.server`, `http.title`, `http.location` (redirect target),
/// `http.powered_by`. Nothing when `buf` is not an HTTP answer.
pub(crate) fn facts(buf: &[u8]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if !buf.starts_with(b"HTTP/") {
        return out;
    }
    let (head, body) = split_head(buf).unwrap_or((buf, &[]));
    let status_line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    if let Some(code) = status_line.split(|&b| b == b' ').nth(1)
        && code.len() == 3
        && code.iter().all(u8::is_ascii_digit)
    {
        out.insert("http.status".into(), escape_bytes(code, 3));
    }
    for (name, value) in headers(head) {
        let key = match name.as_slice() {
            b"server" => "http.server",
            b"location" => "http.location",
            b"x-powered-by" => "http.powered_by",
            _ => continue,
        };
        if !value.is_empty() {
            out.entry(key.into())
                .or_insert_with(|| escape_bytes(value, MAX_FACT));
        }
    }
    if let Some(title) = title(body) {
        out.insert("http.title".into(), escape_bytes(&title, MAX_FACT));
    }
    out
}

/// The page title with runs of whitespace collapsed, if the page has a non-empty one.
fn title(body: &[u8]) -> Option<Vec<u8>> {
    let lower = body.to_ascii_lowercase();
    let open = find(&lower, b"<title")?;
    let start = open + lower[open..].iter().position(|&b| b == b'>')? + 1;
    let len = find(&lower[start..], b"</title").unwrap_or(lower.len() - start);
    let raw = body.get(start..start + len)?;
    let words: Vec<&[u8]> = raw
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .collect();
    let title = words.join(&b' ');
    (!title.is_empty()).then_some(title)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: scanfleet-lab-httpd/1.0\r\nContent-Type: text/html\r\nContent-Length: 58\r\n\r\n<html><head><title>Lab  t1\n home</title></head></html>\n";

    #[test]
    fn request_carries_host_and_port() {
        let r = String::from_utf8(request("10.0.0.1".parse().unwrap(), 80, false)).unwrap();
        assert!(r.starts_with("GET / HTTP/1.1\r\nHost: 10.0.0.1\r\n"));
        assert!(r.ends_with("Connection: close\r\n\r\n"));
        let r = String::from_utf8(request("::1".parse().unwrap(), 8443, true)).unwrap();
        assert!(r.contains("Host: [::1]:8443\r\n"));
        let r = String::from_utf8(request("10.0.0.1".parse().unwrap(), 443, true)).unwrap();
        assert!(r.contains("Host: 10.0.0.1\r\n"));
    }

    #[test]
    fn facts_from_a_page() {
        let f = facts(PAGE);
        assert_eq!(f["http.status"], "200");
        assert_eq!(f["http.server"], "scanfleet-lab-httpd/1.0");
        assert_eq!(f["http.title"], "Lab t1 home");
        assert!(!f.contains_key("http.location"));
    }

    #[test]
    fn facts_of_a_redirect_and_hostile_values() {
        let f = facts(b"HTTP/1.0 301 Moved\nLocation: http://x/\nserver: \x1b[31mevil\x00\n\n");
        assert_eq!(f["http.status"], "301");
        assert_eq!(f["http.location"], "http://x/");
        assert_eq!(f["http.server"], "\\x1b[31mevil\\x00");
        let long = [b"HTTP/1.1 200 OK\r\n\r\n<title>".as_slice(), &[b'a'; 1000]].concat();
        assert_eq!(facts(&long)["http.title"].len(), MAX_FACT + 3);
        assert!(facts(b"SSH-2.0-x\r\n").is_empty());
        assert!(!facts(b"HTTP/1.1 200 OK\r\n\r\n<title>  </title>").contains_key("http.title"));
    }

    proptest::proptest! {
        #[test]
        fn facts_never_panic_and_stay_printable(
            head in proptest::sample::select(vec![b"HTTP/1.1 200 OK\r\n".to_vec(), b"HTTP/".to_vec(), Vec::new()]),
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1024),
        ) {
            let buf = [head, tail].concat();
            let _ = is_complete(&buf);
            for v in facts(&buf).values() {
                proptest::prop_assert!(v.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            }
        }
    }

    #[test]
    fn completeness() {
        assert!(is_complete(PAGE));
        assert!(!is_complete(&PAGE[..60]));
        assert!(!is_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"
        ));
        assert!(is_complete(b"HTTP/1.1 200 OK\r\n\r\n<TITLE>x</TITLE>"));
        assert!(is_complete(
            b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"
        ));
    }
}
