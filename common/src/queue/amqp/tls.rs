//! AMQPS with a CA of one's own and client certificates: the files ride in the
//! queue URL as RabbitMQ's URI query parameters `cacertfile`, `certfile` and
//! `keyfile` (what `--queue-ca`, `--queue-cert` and `--queue-key` add), and are
//! taken off before the URL reaches lapin.

use std::path::{Path, PathBuf};

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};

/// The TLS files of an `amqps://` URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AmqpTlsFiles {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl AmqpTlsFiles {
    pub fn is_empty(&self) -> bool {
        *self == AmqpTlsFiles::default()
    }
}

const PARAMS: [&str; 3] = ["cacertfile", "certfile", "keyfile"];

/// `url` with the files added as query parameters (percent-encoded).
pub fn join(url: &str, files: &AmqpTlsFiles) -> String {
    let mut out = url.to_string();
    for (name, path) in PARAMS.iter().zip([&files.ca, &files.cert, &files.key]) {
        if let Some(p) = path {
            out.push(if out.contains('?') { '&' } else { '?' });
            out.push_str(name);
            out.push('=');
            out.push_str(&crate::text::percent_encode(&p.to_string_lossy()));
        }
    }
    out
}

/// The URL without the TLS parameters, and the files they named.
///
/// # Errors
/// A message naming what is wrong: TLS files on an `amqp://` URL, a client
/// certificate without its key (or the reverse), a parameter given twice.
pub fn split(url: &str) -> Result<(String, AmqpTlsFiles), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), AmqpTlsFiles::default()));
    };
    let mut files = AmqpTlsFiles::default();
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match k {
            "cacertfile" => &mut files.ca,
            "certfile" => &mut files.cert,
            "keyfile" => &mut files.key,
            _ => {
                rest.push(pair);
                continue;
            }
        };
        if slot.is_some() {
            return Err(format!("{k} is given twice"));
        }
        let v =
            crate::text::percent_decode(v).ok_or_else(|| format!("{k}: bad percent-encoding"))?;
        if v.is_empty() {
            return Err(format!("{k} is empty"));
        }
        *slot = Some(PathBuf::from(v));
    }
    if !files.is_empty() && !base.starts_with("amqps://") {
        return Err(
            "TLS files (--queue-ca, --queue-cert, --queue-key) need an amqps:// URL".into(),
        );
    }
    if files.cert.is_some() != files.key.is_some() {
        return Err("a client certificate needs its key, and a key its certificate (--queue-cert with --queue-key)".into());
    }
    let stripped = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((stripped, files))
}

/// The TLS configuration lapin takes, with the files read.
///
/// # Errors
/// A message naming the file that cannot be read.
pub fn config(files: &AmqpTlsFiles) -> Result<OwnedTLSConfig, String> {
    let read =
        |what: &str, p: &Path| std::fs::read(p).map_err(|e| format!("{what} {}: {e}", p.display()));
    let cert_chain = match &files.ca {
        Some(p) => Some(
            String::from_utf8(read("CA certificate", p)?)
                .map_err(|_| format!("CA certificate {}: not PEM text", p.display()))?,
        ),
        None => None,
    };
    let identity = match (&files.cert, &files.key) {
        (Some(c), Some(k)) => Some(OwnedIdentity::PKCS8 {
            pem: read("client certificate", c)?,
            key: read("client key", k)?,
        }),
        _ => None,
    };
    Ok(OwnedTLSConfig {
        identity,
        cert_chain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_ride_in_the_url_and_come_off_again() {
        let files = AmqpTlsFiles {
            ca: Some("/etc/ssl/our ca.pem".into()),
            cert: Some("/c.pem".into()),
            key: Some("/c.key".into()),
        };
        let url = join("amqps://u:p@mq:5671/%2f?heartbeat=30", &files);
        assert_eq!(
            url,
            "amqps://u:p@mq:5671/%2f?heartbeat=30&cacertfile=/etc/ssl/our%20ca.pem&certfile=/c.pem&keyfile=/c.key"
        );
        let (base, back) = split(&url).unwrap();
        assert_eq!(base, "amqps://u:p@mq:5671/%2f?heartbeat=30");
        assert_eq!(back, files);
        assert_eq!(
            split("amqp://h/%2f").unwrap(),
            ("amqp://h/%2f".to_string(), AmqpTlsFiles::default())
        );
    }

    #[test]
    fn bad_tls_parameters_are_named() {
        assert!(
            split("amqp://h/?cacertfile=/ca.pem")
                .unwrap_err()
                .contains("amqps://")
        );
        assert!(
            split("amqps://h/?certfile=/c.pem")
                .unwrap_err()
                .contains("needs its key")
        );
        assert!(
            split("amqps://h/?keyfile=/k&keyfile=/k")
                .unwrap_err()
                .contains("twice")
        );
        assert!(
            split("amqps://h/?cacertfile=")
                .unwrap_err()
                .contains("empty")
        );
        assert!(
            split("amqps://h/?cacertfile=%zz")
                .unwrap_err()
                .contains("percent")
        );
        assert!(
            config(&AmqpTlsFiles {
                ca: Some("/nonexistent/ca.pem".into()),
                ..AmqpTlsFiles::default()
            })
            .unwrap_err()
            .contains("CA certificate /nonexistent/ca.pem")
        );
    }
}
