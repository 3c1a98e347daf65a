//! Unique names and the URLs of the shared services.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The default of [`amqp_url`]: the machine's shared broker, default vhost.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The default of [`redis_url`]: the machine's shared Redis.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// The shared RabbitMQ broker: `SCANFLEET_AMQP_URL`, else
/// `amqp://guest:guest@127.0.0.1:5672/%2f`.
pub fn amqp_url() -> String {
    from_env("SCANFLEET_AMQP_URL", DEFAULT_AMQP_URL)
}

/// The shared Redis server: `SCANFLEET_REDIS_URL`, else `redis://127.0.0.1:6379`.
pub fn redis_url() -> String {
    from_env("SCANFLEET_REDIS_URL", DEFAULT_REDIS_URL)
}

fn from_env(var: &str, default: &str) -> String {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
        _ => default.to_string(),
    }
}

/// `<prefix>-<pid>-<n>-<t>`: `n` counts calls in this process, `t` is the wall
/// clock's milliseconds modulo 10^6, so names differ between tests of one run and
/// between runs. Only ASCII letters, digits and `-` are added, which every backend
/// accepts in queue names, vhosts and Redis hash tags (keep `prefix` to those too;
/// SQS allows 80 characters in a queue name, and the suffix takes at most 25).
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() % 1_000_000)
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{t}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_keep_the_prefix() {
        let a = unique_name("sftest");
        let b = unique_name("sftest");
        assert_ne!(a, b);
        assert!(
            a.starts_with(&format!("sftest-{}-", std::process::id())),
            "{a}"
        );
        assert!(
            a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "{a}"
        );
    }
}
