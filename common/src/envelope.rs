//! The signed wire form of a job. A worker opens an envelope before it touches
//! the job: version, signature (HMAC-SHA256 with the fleet secret), deadline and
//! consistency of header and body are checked, and any failure is permanent:
//! the message goes to the dead-letter queue with the error as its reason.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::types::ScanJob;

/// Envelope format version this build writes and reads.
pub const ENVELOPE_VERSION: u32 = 1;

/// The environment variable that holds the fleet's job secret.
pub const SECRET_ENV: &str = "SCANFLEET_JOB_SECRET";

/// Shortest job secret accepted, in bytes: 256 bits, the HMAC-SHA256 key size.
pub const MIN_SECRET_BYTES: usize = 32;

/// Why a job secret cannot sign or verify jobs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error(
        "{SECRET_ENV} is not set: fleet jobs are signed with a secret the coordinator and the \
         workers share; make one with `openssl rand -hex 32`"
    )]
    Missing,
    #[error(
        "{SECRET_ENV} is {len} bytes, shorter than {MIN_SECRET_BYTES}: a short secret can be \
         guessed and jobs forged; make one with `openssl rand -hex 32`"
    )]
    TooShort { len: usize },
}

/// Check a fleet job secret, as read from [`SECRET_ENV`] (`None` when unset): it
/// must hold at least [`MIN_SECRET_BYTES`] bytes. Both binaries call this before
/// they connect to anything; a refusal is a usage error (exit 2).
///
/// # Errors
/// [`SecretError`], saying how to make a good secret.
pub fn check_secret(secret: Option<&[u8]>) -> Result<&[u8], SecretError> {
    match secret {
        None | Some([]) => Err(SecretError::Missing),
        Some(s) if s.len() < MIN_SECRET_BYTES => Err(SecretError::TooShort { len: s.len() }),
        Some(s) => Ok(s),
    }
}

/// Read [`SECRET_ENV`] and [`check_secret`] it.
///
/// # Errors
/// [`SecretError`] when it is unset, empty or too short.
pub fn secret_from_env() -> Result<Vec<u8>, SecretError> {
    let raw = std::env::var_os(SECRET_ENV).map(|v| v.into_encoded_bytes());
    check_secret(raw.as_deref()).map(<[u8]>::to_vec)
}

/// Why an envelope was refused. Every variant is permanent: retrying cannot fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("job message is not a valid envelope: {0}")]
    Malformed(String),
    #[error("envelope version {0} is not supported (this worker reads version {ENVELOPE_VERSION})")]
    UnsupportedVersion(u32),
    #[error("envelope signature does not verify (forged, or signed with another secret)")]
    BadSignature,
    #[error("envelope is unsigned but this worker requires signed jobs")]
    Unsigned,
    #[error("envelope deadline passed {0} ms ago")]
    Expired(u64),
    #[error("envelope header does not match its job body ({0})")]
    Mismatch(&'static str),
    #[error("job body is not a valid scan job: {0}")]
    BadBody(String),
}

/// A job on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEnvelope {
    pub version: u32,
    pub scan_id: String,
    pub shard_id: u32,
    /// How many times the publisher has sent this shard (1 for the first).
    pub attempt: u32,
    /// Unix time in milliseconds after which the job must not start.
    pub deadline_unix_ms: u64,
    /// The [`ScanJob`] as JSON; signed byte for byte.
    pub body: String,
    /// Hex HMAC-SHA256 over version, scan id, shard id, deadline and body; empty when unsigned.
    #[serde(default)]
    pub signature: String,
}

type HmacSha256 = Hmac<Sha256>;

fn mac(
    secret: &[u8],
    version: u32,
    scan_id: &str,
    shard_id: u32,
    deadline: u64,
    body: &str,
) -> HmacSha256 {
    // new_from_slice accepts keys of any length for HMAC; an error is impossible.
    let mut m = <HmacSha256 as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    for part in [
        version.to_string(),
        scan_id.to_string(),
        shard_id.to_string(),
        deadline.to_string(),
    ] {
        m.update(part.as_bytes());
        m.update(b"\n");
    }
    m.update(body.as_bytes());
    m
}

/// Milliseconds since the Unix epoch.
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl JobEnvelope {
    /// Wrap and sign a job. Without a secret the envelope is unsigned, as in the
    /// embedded mode where the queue never leaves the process.
    pub fn seal(
        job: &ScanJob,
        attempt: u32,
        deadline_unix_ms: u64,
        secret: Option<&[u8]>,
    ) -> JobEnvelope {
        // ScanJob holds only strings, numbers and enums: serialisation cannot fail.
        let body = serde_json::to_string(job).unwrap_or_default();
        let signature = secret
            .map(|s| {
                let m = mac(
                    s,
                    ENVELOPE_VERSION,
                    &job.scan_id,
                    job.shard_id,
                    deadline_unix_ms,
                    &body,
                );
                hex::encode(m.finalize().into_bytes())
            })
            .unwrap_or_default();
        JobEnvelope {
            version: ENVELOPE_VERSION,
            scan_id: job.scan_id.clone(),
            shard_id: job.shard_id,
            attempt,
            deadline_unix_ms,
            body,
            signature,
        }
    }

    /// Verify and unwrap. With a secret, the signature must verify; without one,
    /// only unsigned envelopes are accepted.
    ///
    /// # Errors
    /// [`EnvelopeError`], always permanent.
    pub fn open(&self, secret: Option<&[u8]>, now_unix_ms: u64) -> Result<ScanJob, EnvelopeError> {
        if self.version != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(self.version));
        }
        match secret {
            Some(s) => {
                if self.signature.is_empty() {
                    return Err(EnvelopeError::Unsigned);
                }
                let sig = hex::decode(&self.signature).map_err(|_| EnvelopeError::BadSignature)?;
                mac(
                    s,
                    self.version,
                    &self.scan_id,
                    self.shard_id,
                    self.deadline_unix_ms,
                    &self.body,
                )
                .verify_slice(&sig)
                .map_err(|_| EnvelopeError::BadSignature)?;
            }
            None if !self.signature.is_empty() => return Err(EnvelopeError::BadSignature),
            None => {}
        }
        if now_unix_ms > self.deadline_unix_ms {
            return Err(EnvelopeError::Expired(now_unix_ms - self.deadline_unix_ms));
        }
        let job: ScanJob =
            serde_json::from_str(&self.body).map_err(|e| EnvelopeError::BadBody(e.to_string()))?;
        if job.scan_id != self.scan_id {
            return Err(EnvelopeError::Mismatch("scan id"));
        }
        if job.shard_id != self.shard_id {
            return Err(EnvelopeError::Mismatch("shard id"));
        }
        Ok(job)
    }

    /// Serialise for a queue.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parse bytes from a queue.
    ///
    /// # Errors
    /// [`EnvelopeError::Malformed`].
    pub fn from_bytes(bytes: &[u8]) -> Result<JobEnvelope, EnvelopeError> {
        serde_json::from_slice(bytes).map_err(|e| EnvelopeError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PortSpec, ProbeProfile, Target};
    use proptest::prelude::*;

    fn job() -> ScanJob {
        ScanJob {
            scan_id: "s1".into(),
            shard_id: 3,
            zone: "default".into(),
            targets: vec![Target {
                ip: "10.0.0.1".parse().unwrap(),
                asset_id: "i-1".into(),
                rate_pps: 100,
            }],
            ports: PortSpec::parse("22,80").unwrap(),
            profile: ProbeProfile::default(),
            scope: None,
        }
    }

    #[test]
    fn signed_roundtrip_and_refusals() {
        let key = b"fleet-secret";
        let env = JobEnvelope::seal(&job(), 1, 2_000, Some(key));
        let back = JobEnvelope::from_bytes(&env.to_bytes()).unwrap();
        assert_eq!(back.open(Some(key), 1_000).unwrap(), job());
        assert_eq!(
            back.open(Some(b"other"), 1_000),
            Err(EnvelopeError::BadSignature)
        );
        assert_eq!(
            back.open(Some(key), 2_500),
            Err(EnvelopeError::Expired(500))
        );
        assert_eq!(back.open(None, 1_000), Err(EnvelopeError::BadSignature));

        let mut forged = env.clone();
        forged.body = forged.body.replace("10.0.0.1", "10.0.0.2");
        assert_eq!(
            forged.open(Some(key), 1_000),
            Err(EnvelopeError::BadSignature)
        );

        let unsigned = JobEnvelope::seal(&job(), 1, 2_000, None);
        assert_eq!(
            unsigned.open(Some(key), 1_000),
            Err(EnvelopeError::Unsigned)
        );
        assert_eq!(unsigned.open(None, 1_000).unwrap(), job());

        let mut v2 = env.clone();
        v2.version = 2;
        assert_eq!(
            v2.open(Some(key), 1_000),
            Err(EnvelopeError::UnsupportedVersion(2))
        );
        assert!(matches!(
            JobEnvelope::from_bytes(b"{nope"),
            Err(EnvelopeError::Malformed(_))
        ));
    }

    #[test]
    fn secrets_shorter_than_32_bytes_are_refused() {
        assert_eq!(check_secret(None), Err(SecretError::Missing));
        assert_eq!(check_secret(Some(b"")), Err(SecretError::Missing));
        assert_eq!(
            check_secret(Some(b"x")),
            Err(SecretError::TooShort { len: 1 })
        );
        let e = check_secret(Some(&[b'a'; 31])).unwrap_err().to_string();
        assert!(
            e.contains("SCANFLEET_JOB_SECRET is 31 bytes") && e.contains("openssl rand -hex 32"),
            "{e}"
        );
        assert!(check_secret(Some(&[b'a'; 32])).is_ok());
        assert!(
            SecretError::Missing
                .to_string()
                .contains("openssl rand -hex 32")
        );
    }

    proptest! {
        #[test]
        fn any_body_change_breaks_the_signature(pos in 0usize..200, byte in any::<u8>()) {
            let env = JobEnvelope::seal(&job(), 1, u64::MAX, Some(b"k"));
            let mut body = env.body.clone().into_bytes();
            let pos = pos % body.len();
            prop_assume!(body[pos] != byte);
            body[pos] = byte;
            let tampered = JobEnvelope { body: String::from_utf8_lossy(&body).into_owned(), ..env };
            prop_assert!(tampered.open(Some(b"k"), 0).is_err());
        }
    }
}
