//! Fixtures shared by scanfleet's integration tests: the real services they talk to,
//! reached by URL from the environment with localhost defaults, and private
//! instances of them on spare ports for the tests that stop, kill or restart one.
//!
//! - [`amqp_url`], [`redis_url`], [`moto_url`]: the shared RabbitMQ, Redis and moto
//!   servers (`SCANFLEET_AMQP_URL`, `SCANFLEET_REDIS_URL`, `SCANFLEET_MOTO_URL`).
//! - [`unique_name`]: queue prefixes, scan ids, vhost and queue names no other test
//!   (or earlier run) uses.
//! - [`free_port`], [`free_port_pair`], [`wait_listening`]: loopback ports;
//!   [`wait_until`]: a bounded poll; [`terminate`]: SIGTERM and a bounded wait.
//! - [`PrivateRabbit`], [`PrivateRedis`], [`Moto`]: servers of a test's own; [`Vhost`]:
//!   a vhost of a test's own on the shared broker; [`TestPki`]: a CA and certificates.
//! - [`lab_sh`], [`Relay`], [`relay`]: the namespace lab's relays that carry a host
//!   service into the scanner namespace over a unix socket.
//!
//! Every value that owns a process, a directory or a broker object removes it on drop.
//! This is a test kit: a fixture that cannot be set up panics with a message that says
//! what is missing, because a test can do nothing else with the error.
//!
//! The kit depends on no workspace crate (only std), so that `common`,
//! `coordinator` and `worker` can all list it under `[dev-dependencies]`.

mod lab;
mod moto;
mod names;
mod pki;
mod ports;
mod rabbit;
mod redis;

pub use lab::{Relay, lab_sh, relay, repo_root};
pub use moto::{Moto, moto_url};
pub use names::{amqp_url, redis_url, unique_name};
pub use pki::TestPki;
pub use ports::{free_port, free_port_pair, wait_listening};
pub use rabbit::{PrivateRabbit, Vhost};
pub use redis::PrivateRedis;

/// Poll `cond` every 200 ms for at most `within`; whether it came true.
pub fn wait_until(within: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = std::time::Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= until {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Send SIGTERM to `child`, then wait at most `limit` for it to exit: its exit
/// code, or `None` when it is still running (or was killed by a signal).
pub fn terminate(child: &mut std::process::Child, limit: std::time::Duration) -> Option<i32> {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut code = None;
    wait_until(limit, || match child.try_wait() {
        Ok(Some(s)) => {
            code = s.code();
            true
        }
        _ => false,
    });
    code
}
