//! The flags both binaries share, each defined once and flattened where a
//! command needs it, each with one resolution that layers it under the
//! environment and the config file and validates it before anything connects.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::Args;
use ipnet::IpNet;

use super::{ConfigError, Origin, Setting, Sources, in_range};
use crate::backend::{self, QueueKind};
use crate::envelope;
use crate::store::redis::tls::{self, TlsFiles};

/// Where Redis is when nobody says.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
pub use crate::queue::DEFAULT_DELIVERY_LIMIT;
/// Longest delivery limit a queue is declared with (SQS's maxReceiveCount cap).
pub const MAX_DELIVERY_LIMIT: u32 = crate::queue::Topology::MAX_DELIVERY_LIMIT;

/// `--config FILE`.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArg {
    /// TOML config file: defaults < file < environment < flags [env: SCANFLEET_CONFIG].
    #[arg(short = 'c', long = "config", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    /// Load the layers: the file from `--config` or `SCANFLEET_CONFIG`, and the environment.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file.
    pub fn sources(&self) -> Result<Sources, ConfigError> {
        let path = self.config.clone().or_else(|| {
            std::env::var_os("SCANFLEET_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        Sources::load(path.as_deref())
    }
}

/// `--queue URL`.
#[derive(Debug, Clone, Default, Args)]
pub struct QueueArg {
    /// Job queue: amqp://user:pass@host:port/vhost, sqs://NAME or an SQS queue URL
    /// [env: SCANFLEET_QUEUE; config fleet.queue].
    #[arg(long, value_name = "URL")]
    pub queue: Option<String>,
    /// CA certificate (PEM) that signs the amqps:// broker's certificate, instead of
    /// the public roots [env: SCANFLEET_QUEUE_CA; config fleet.queue_ca].
    #[arg(long, value_name = "FILE")]
    pub queue_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS with RabbitMQ; needs --queue-key
    /// [env: SCANFLEET_QUEUE_CERT; config fleet.queue_cert].
    #[arg(long, value_name = "FILE")]
    pub queue_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM, PKCS#8)
    /// [env: SCANFLEET_QUEUE_KEY; config fleet.queue_key].
    #[arg(long, value_name = "FILE")]
    pub queue_key: Option<PathBuf>,
}

impl QueueArg {
    /// The queue URL from any layer, checked (scheme, host, port) without connecting.
    ///
    /// # Errors
    /// [`ConfigError`] naming where the bad URL came from.
    pub fn resolve(&self, src: &Sources) -> Result<Option<Setting<String>>, ConfigError> {
        let s = src.pick(
            ("--queue", self.queue.clone()),
            Some("SCANFLEET_QUEUE"),
            ("fleet.queue", src.file.fleet.queue.clone()),
            None,
        )?;
        let Some(s) = s else {
            return Ok(None);
        };
        check_queue_url(&s.value).map_err(|why| s.invalid(why))?;
        let file = &src.file.fleet;
        let pick = |flag: &'static str,
                    v: &Option<PathBuf>,
                    env: &'static str,
                    key: &'static str,
                    f: &Option<PathBuf>| {
            src.pick((flag, v.clone()), Some(env), (key, f.clone()), None)
                .map(|o| o.map(|s| s.value))
        };
        let files = crate::queue::amqp::tls::AmqpTlsFiles {
            ca: pick(
                "--queue-ca",
                &self.queue_ca,
                "SCANFLEET_QUEUE_CA",
                "fleet.queue_ca",
                &file.queue_ca,
            )?,
            cert: pick(
                "--queue-cert",
                &self.queue_cert,
                "SCANFLEET_QUEUE_CERT",
                "fleet.queue_cert",
                &file.queue_cert,
            )?,
            key: pick(
                "--queue-key",
                &self.queue_key,
                "SCANFLEET_QUEUE_KEY",
                "fleet.queue_key",
                &file.queue_key,
            )?,
        };
        if files.is_empty() {
            return Ok(Some(s));
        }
        let joined = crate::queue::amqp::tls::join(&s.value, &files);
        crate::queue::amqp::tls::split(&joined).map_err(|why| s.invalid(why))?;
        Ok(Some(Setting { value: joined, ..s }))
    }

    /// As [`QueueArg::resolve`] for a command that cannot run without a queue.
    ///
    /// # Errors
    /// [`ConfigError`] when no layer names a queue, or the URL is bad.
    pub fn require(&self, src: &Sources) -> Result<Setting<String>, ConfigError> {
        self.resolve(src)?.ok_or_else(|| {
            ConfigError(
                "no queue: give --queue URL (or SCANFLEET_QUEUE, or fleet.queue in the config file)"
                    .into(),
            )
        })
    }
}

/// `--redis URL`.
#[derive(Debug, Clone, Default, Args)]
pub struct RedisArg {
    /// Result store: redis://[:password@]host:port[/db] or rediss://
    /// [env: SCANFLEET_REDIS; config fleet.redis; default redis://127.0.0.1:6379].
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// CA certificate (PEM) that signs the rediss:// server's certificate, instead of
    /// the public roots [env: SCANFLEET_REDIS_CA; config fleet.redis_ca].
    #[arg(long, value_name = "FILE")]
    pub redis_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS with Redis; needs --redis-key
    /// [env: SCANFLEET_REDIS_CERT; config fleet.redis_cert].
    #[arg(long, value_name = "FILE")]
    pub redis_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM)
    /// [env: SCANFLEET_REDIS_KEY; config fleet.redis_key].
    #[arg(long, value_name = "FILE")]
    pub redis_key: Option<PathBuf>,
}

impl RedisArg {
    /// The store URL from any layer, or the default, checked without connecting.
    ///
    /// # Errors
    /// [`ConfigError`] naming where the bad URL came from.
    pub fn resolve(&self, src: &Sources) -> Result<Setting<String>, ConfigError> {
        let s = src.pick_or(
            ("--redis", self.redis.clone()),
            Some("SCANFLEET_REDIS"),
            ("fleet.redis", src.file.fleet.redis.clone()),
            DEFAULT_REDIS_URL.to_string(),
        )?;
        check_redis_url(&s.value).map_err(|why| s.invalid(why))?;
        let file = &src.file.fleet;
        let ca = src.pick(
            ("--redis-ca", self.redis_ca.clone()),
            Some("SCANFLEET_REDIS_CA"),
            ("fleet.redis_ca", file.redis_ca.clone()),
            None,
        )?;
        let cert = src.pick(
            ("--redis-cert", self.redis_cert.clone()),
            Some("SCANFLEET_REDIS_CERT"),
            ("fleet.redis_cert", file.redis_cert.clone()),
            None,
        )?;
        let key = src.pick(
            ("--redis-key", self.redis_key.clone()),
            Some("SCANFLEET_REDIS_KEY"),
            ("fleet.redis_key", file.redis_key.clone()),
            None,
        )?;
        let files = TlsFiles {
            ca: ca.map(|s| s.value),
            cert: cert.map(|s| s.value),
            key: key.map(|s| s.value),
        };
        if files == TlsFiles::default() {
            return Ok(s);
        }
        let joined = tls::join(&s.value, &files);
        tls::split(&joined).map_err(|why| s.invalid(why))?;
        Ok(Setting { value: joined, ..s })
    }

    /// Whether any layer set the store explicitly (the default does not count).
    ///
    /// # Errors
    /// As [`RedisArg::resolve`].
    pub fn given(&self, src: &Sources) -> Result<bool, ConfigError> {
        Ok(self.resolve(src)?.origin != Origin::Default)
    }
}

/// `--metrics-addr ADDR`.
#[derive(Debug, Clone, Default, Args)]
pub struct MetricsArg {
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9464
    /// [env: SCANFLEET_METRICS_ADDR; config fleet.metrics_addr].
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
}

impl MetricsArg {
    /// The listen address from any layer.
    ///
    /// # Errors
    /// [`ConfigError`] naming where a value that is not `IP:PORT` came from.
    pub fn resolve(&self, src: &Sources) -> Result<Option<SocketAddr>, ConfigError> {
        let raw = src.pick::<String>(
            ("--metrics-addr", self.metrics_addr.clone()),
            Some("SCANFLEET_METRICS_ADDR"),
            ("fleet.metrics_addr", src.file.fleet.metrics_addr.clone()),
            None,
        )?;
        raw.map(|s| {
            s.value
                .trim()
                .parse::<SocketAddr>()
                .map_err(|_| s.invalid("expected IP:PORT, such as 127.0.0.1:9464"))
        })
        .transpose()
    }
}

/// `--delivery-limit N`: a topology setting, for the commands that declare queues.
#[derive(Debug, Clone, Default, Args)]
pub struct DeliveryLimitArg {
    /// Deliveries of a shard before the broker dead-letters it; declared with the
    /// queues [env: SCANFLEET_DELIVERY_LIMIT; config fleet.delivery_limit; default 5].
    #[arg(long, value_name = "N")]
    pub delivery_limit: Option<u32>,
}

impl DeliveryLimitArg {
    /// The limit from any layer, 1 to [`MAX_DELIVERY_LIMIT`].
    ///
    /// # Errors
    /// [`ConfigError`] naming where a value out of range came from.
    pub fn resolve(&self, src: &Sources) -> Result<u32, ConfigError> {
        let s = src.pick_or(
            ("--delivery-limit", self.delivery_limit),
            Some("SCANFLEET_DELIVERY_LIMIT"),
            ("fleet.delivery_limit", src.file.fleet.delivery_limit),
            DEFAULT_DELIVERY_LIMIT,
        )?;
        in_range(&s, 1, MAX_DELIVERY_LIMIT)
    }
}

/// `--exclude CIDR`: addresses never probed, whatever a target list or a job says.
#[derive(Debug, Clone, Default, Args)]
pub struct ExcludeArg {
    /// Never probe addresses in this block (CIDR or single IP). Repeatable, or comma-separated.
    #[arg(long = "exclude", value_name = "CIDR", value_delimiter = ',')]
    pub exclude: Vec<String>,
}

impl ExcludeArg {
    /// The flag's blocks after the config file's (`file_key` names the file's list).
    ///
    /// # Errors
    /// [`ConfigError`] naming the entry and where it came from.
    pub fn resolve(
        &self,
        src: &Sources,
        file_key: &'static str,
        file: &[String],
    ) -> Result<Vec<IpNet>, ConfigError> {
        let mut out = Vec::new();
        for c in file {
            out.push(parse_cidr(c).map_err(|why| {
                Setting {
                    value: c.clone(),
                    origin: src.file_origin(file_key),
                }
                .invalid(why)
            })?);
        }
        for c in &self.exclude {
            out.push(parse_cidr(c).map_err(|why| {
                Setting {
                    value: c.clone(),
                    origin: Origin::Flag("--exclude"),
                }
                .invalid(why)
            })?);
        }
        Ok(out)
    }
}

/// Longest zone name: zone names become part of queue names on every backend.
pub const MAX_ZONE_LEN: usize = 64;

/// A zone name every backend can turn into a queue name: 1 to [`MAX_ZONE_LEN`]
/// letters, digits, `-` and `_`.
///
/// # Errors
/// [`ConfigError`] naming the flag or key `what` and the zone, escaped.
pub fn check_zone(zone: &str, what: &str) -> Result<(), ConfigError> {
    let ok = !zone.is_empty()
        && zone.len() <= MAX_ZONE_LEN
        && zone
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError(format!(
            "{what} {}: a zone is 1 to {MAX_ZONE_LEN} letters, digits, - and _ (it becomes part of queue names)",
            crate::text::echo(zone)
        )))
    }
}

/// A CIDR block or a single address (as a /32 or /128), host bits cleared.
///
/// # Errors
/// A message saying what was expected.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| "not a CIDR block (10.0.0.0/8) or an IP address".to_string())
}

/// `SCANFLEET_JOB_SECRET`, the HMAC key the coordinator and the workers share,
/// checked by [`envelope::check_secret`]. It is read from the environment only, so
/// that it never shows in `ps` or in a config file checked into a repository.
///
/// # Errors
/// [`ConfigError`] when it is unset or too short, saying how to make one.
pub fn job_secret(src: &Sources) -> Result<Vec<u8>, ConfigError> {
    let secret = src.env_raw(envelope::SECRET_ENV).map(|s| s.value);
    envelope::check_secret(secret.as_deref().map(str::as_bytes))
        .map(<[u8]>::to_vec)
        .map_err(|e| ConfigError(e.to_string()))
}

/// Check a queue URL's form without connecting.
fn check_queue_url(url: &str) -> Result<(), String> {
    match backend::queue_kind(url).map_err(|_| {
        "expected amqp://user:pass@host:port/vhost, sqs://NAME or an SQS queue URL".to_string()
    })? {
        QueueKind::Amqp => url
            .parse::<lapin::uri::AMQPUri>()
            .map(|_| ())
            .map_err(|e| format!("not a valid AMQP URL: {e}")),
        QueueKind::Sqs => match url.strip_prefix("sqs://") {
            Some(name) => {
                let ok = !name.is_empty()
                    && name.len() <= 80
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if ok {
                    Ok(())
                } else {
                    Err("an SQS queue name is 1 to 80 letters, digits, - and _".into())
                }
            }
            None => check_authority(url),
        },
    }
}

/// Check a Redis URL's form without connecting.
fn check_redis_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err("expected redis://host:port or rediss://host:port".into());
    }
    check_authority(url)
}

/// The `host[:port]` part of `scheme://[userinfo@]host[:port][/...]` is sane.
fn check_authority(url: &str) -> Result<(), String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => return Err("an IPv6 host needs its closing ]".into()),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("the URL names no host".into());
    }
    if let Some(p) = port {
        match p.parse::<u32>() {
            Ok(1..=65535) => {}
            _ => return Err(format!("port {p:?} is not 1 to 65535")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FileConfig;

    fn src(env: &[(&str, &str)]) -> Sources {
        Sources::fixed(FileConfig::default(), None, env)
    }

    #[test]
    fn urls_are_checked_before_any_connection() {
        for bad in [
            "amqp://guest:guest@127.0.0.1:99999/%2f",
            "kafka://x",
            "sqs://",
            "sqs://bad name",
            "http://:80/q",
        ] {
            let q = QueueArg {
                queue: Some(bad.into()),
                ..QueueArg::default()
            };
            let e = q.resolve(&src(&[])).unwrap_err().to_string();
            assert!(e.starts_with(&format!("--queue {bad}")), "{e}");
        }
        let q = QueueArg {
            queue: Some("amqp://guest:guest@127.0.0.1:5672/%2f".into()),
            ..QueueArg::default()
        };
        assert!(q.resolve(&src(&[])).unwrap().is_some());
        for bad in [
            "redis://127.0.0.1:99999",
            "http://127.0.0.1:6379",
            "redis://",
        ] {
            let r = RedisArg {
                redis: Some(bad.into()),
                ..RedisArg::default()
            };
            assert!(r.resolve(&src(&[])).is_err(), "{bad}");
        }
        // TLS files travel in the URL, and a plain redis:// URL refuses them.
        let r = RedisArg {
            redis: Some("rediss://cache:6380".into()),
            redis_ca: Some("/ca.pem".into()),
            ..RedisArg::default()
        };
        let tls = r
            .resolve(&src(&[
                ("SCANFLEET_REDIS_CERT", "/c.pem"),
                ("SCANFLEET_REDIS_KEY", "/k.pem"),
            ]))
            .unwrap();
        assert_eq!(
            tls.value,
            "rediss://cache:6380?ssl_ca_certs=/ca.pem&ssl_certfile=/c.pem&ssl_keyfile=/k.pem"
        );
        let plain = RedisArg {
            redis_ca: Some("/ca.pem".into()),
            ..RedisArg::default()
        };
        let e = plain.resolve(&src(&[])).unwrap_err().to_string();
        assert!(e.contains("need a rediss:// URL"), "{e}");
        let half = RedisArg {
            redis: Some("rediss://cache:6380".into()),
            redis_cert: Some("/c.pem".into()),
            ..RedisArg::default()
        };
        let e = half.resolve(&src(&[])).unwrap_err().to_string();
        assert!(e.contains("needs its key"), "{e}");
        let r = RedisArg::default();
        let e = r
            .resolve(&src(&[("SCANFLEET_REDIS", "redis://h:0")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("environment variable SCANFLEET_REDIS="),
            "{e}"
        );
        assert_eq!(r.resolve(&src(&[])).unwrap().value, DEFAULT_REDIS_URL);
    }

    #[test]
    fn delivery_limit_and_exclude_name_their_input() {
        let d = DeliveryLimitArg {
            delivery_limit: Some(0),
        };
        assert_eq!(
            d.resolve(&src(&[])).unwrap_err().to_string(),
            "--delivery-limit 0: expected 1 to 1000"
        );
        assert_eq!(DeliveryLimitArg::default().resolve(&src(&[])).unwrap(), 5);
        let x = ExcludeArg {
            exclude: vec!["10.0.0.5".into(), "10.1.0.0/16".into()],
        };
        assert_eq!(
            x.resolve(&src(&[]), "worker.exclude", &[]).unwrap().len(),
            2
        );
        let x = ExcludeArg {
            exclude: vec!["10.0.0/8".into()],
        };
        let e = x
            .resolve(&src(&[]), "worker.exclude", &[])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--exclude 10.0.0/8: "), "{e}");
    }

    #[test]
    fn zones_are_queue_name_safe() {
        assert!(check_zone("zone-vpc-0a1b", "--zone").is_ok());
        for bad in ["", "a b", "z/1", "dead\u{1b}", &"z".repeat(65)] {
            let e = check_zone(bad, "--zone").unwrap_err().to_string();
            assert!(e.starts_with("--zone \""), "{e}");
        }
    }

    #[test]
    fn secrets_are_long_enough() {
        let e = job_secret(&src(&[("SCANFLEET_JOB_SECRET", "x")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("is 1 byte") && e.contains("openssl rand -hex 32"),
            "{e}"
        );
        assert!(job_secret(&src(&[])).is_err());
        let long = "a".repeat(64);
        assert_eq!(
            job_secret(&src(&[("SCANFLEET_JOB_SECRET", &long)]))
                .unwrap()
                .len(),
            64
        );
    }

    #[test]
    fn metrics_addr_is_ip_and_port() {
        let m = MetricsArg {
            metrics_addr: Some("localhost:9".into()),
        };
        let e = m.resolve(&src(&[])).unwrap_err().to_string();
        assert!(
            e.starts_with("--metrics-addr localhost:9: expected IP:PORT"),
            "{e}"
        );
        let m = MetricsArg::default();
        assert_eq!(
            m.resolve(&src(&[("SCANFLEET_METRICS_ADDR", "127.0.0.1:9464")]))
                .unwrap(),
            Some("127.0.0.1:9464".parse().unwrap())
        );
    }
}
