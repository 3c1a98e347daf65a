//! TLS options of a Redis URL: `rediss://host:6380/0?ssl_ca_certs=CA.pem` and, for
//! mutual TLS, `&ssl_certfile=CLIENT.pem&ssl_keyfile=CLIENT.key` (the spellings
//! redis-py uses). `--redis-ca`, `--redis-cert` and `--redis-key` add them, so the one
//! URL string carries everything a connection needs through every layer.
//!
//! Without `ssl_ca_certs`, a `rediss://` server's certificate is checked against the
//! Mozilla roots (webpki-roots), as ElastiCache's are.

use std::path::PathBuf;

/// The files a TLS connection needs, as the URL named them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

const CA: &str = "ssl_ca_certs";
const CERT: &str = "ssl_certfile";
const KEY: &str = "ssl_keyfile";

/// Take scanfleet's TLS parameters out of `url`: the URL for redis-rs (other query
/// parameters kept) and the files, if any.
///
/// # Errors
/// A sentence naming what is wrong: TLS files on a `redis://` URL, a certificate
/// without its key, an empty path, a parameter given twice.
pub fn split(url: &str) -> Result<(String, Option<TlsFiles>), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None));
    };
    let mut files = TlsFiles::default();
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match k {
            CA => &mut files.ca,
            CERT => &mut files.cert,
            KEY => &mut files.key,
            _ => {
                kept.push(pair);
                continue;
            }
        };
        let v =
            crate::text::percent_decode(v).ok_or_else(|| format!("{k}: bad %-escape in {v:?}"))?;
        if v.is_empty() {
            return Err(format!("{k} is empty: give a file path"));
        }
        if slot.replace(PathBuf::from(v)).is_some() {
            return Err(format!("{k} is given twice"));
        }
    }
    let rebuilt = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    if files == TlsFiles::default() {
        return Ok((rebuilt, None));
    }
    if !base.starts_with("rediss://") {
        return Err(
            "TLS files (--redis-ca, --redis-cert, --redis-key) need a rediss:// URL".into(),
        );
    }
    if files.cert.is_some() != files.key.is_some() {
        return Err(
            "a client certificate needs its key: give both --redis-cert and --redis-key".into(),
        );
    }
    Ok((rebuilt, Some(files)))
}

/// Add the TLS files to `url` as query parameters.
pub fn join(url: &str, files: &TlsFiles) -> String {
    let mut out = url.to_string();
    for (k, v) in [(CA, &files.ca), (CERT, &files.cert), (KEY, &files.key)] {
        if let Some(p) = v {
            out.push(if out.contains('?') { '&' } else { '?' });
            out.push_str(k);
            out.push('=');
            out.push_str(&crate::text::percent_encode(&p.to_string_lossy()));
        }
    }
    out
}

/// Read the files into what redis-rs takes.
///
/// # Errors
/// Naming the option and the file that could not be read or holds no PEM block.
pub fn load(files: &TlsFiles) -> Result<redis::TlsCertificates, String> {
    let read = |flag: &str, p: &PathBuf| -> Result<Vec<u8>, String> {
        let bytes = std::fs::read(p).map_err(|e| format!("{flag} {}: {e}", p.display()))?;
        if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
            return Err(format!("{flag} {}: not a PEM file", p.display()));
        }
        Ok(bytes)
    };
    let root_cert = files
        .ca
        .as_ref()
        .map(|p| read("--redis-ca", p))
        .transpose()?;
    let client_tls = match (&files.cert, &files.key) {
        (Some(c), Some(k)) => Some(redis::ClientTlsConfig {
            client_cert: read("--redis-cert", c)?,
            client_key: read("--redis-key", k)?,
        }),
        _ => None,
    };
    Ok(redis::TlsCertificates {
        client_tls,
        root_cert,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_trip_through_the_url() {
        let files = TlsFiles {
            ca: Some("/etc/ssl/my ca.pem".into()),
            cert: Some("/c.pem".into()),
            key: Some("/k&ey.pem".into()),
        };
        let url = join("rediss://h:6380/0", &files);
        assert_eq!(
            url,
            "rediss://h:6380/0?ssl_ca_certs=/etc/ssl/my%20ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k%26ey.pem"
        );
        assert_eq!(
            split(&url).unwrap(),
            ("rediss://h:6380/0".into(), Some(files))
        );
        assert_eq!(
            split("rediss://h/0?protocol=resp3&ssl_ca_certs=/ca")
                .unwrap()
                .0,
            "rediss://h/0?protocol=resp3"
        );
        assert_eq!(
            split("redis://h:6379").unwrap(),
            ("redis://h:6379".into(), None)
        );
    }

    #[test]
    fn bad_tls_options_say_what_is_wrong() {
        let e = |u: &str| split(u).unwrap_err();
        assert!(e("redis://h?ssl_ca_certs=/ca").contains("need a rediss:// URL"));
        assert!(e("rediss://h?ssl_certfile=/c").contains("needs its key"));
        assert!(e("rediss://h?ssl_ca_certs=").contains("is empty"));
        assert!(e("rediss://h?ssl_ca_certs=/a&ssl_ca_certs=/b").contains("twice"));
        assert!(e("rediss://h?ssl_ca_certs=%zz").contains("bad %-escape"));
        let dir = tempfile_dir();
        let missing = TlsFiles {
            ca: Some(dir.join("none.pem")),
            ..TlsFiles::default()
        };
        assert!(load(&missing).unwrap_err().starts_with("--redis-ca "));
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let e = load(&TlsFiles {
            ca: Some(junk),
            ..TlsFiles::default()
        })
        .unwrap_err();
        assert!(e.ends_with("not a PEM file"), "{e}");
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("sf-redis-tls-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
