//! A redis-server of a test's own.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::ports::{free_port, wait_closed, wait_listening};

/// A redis-server of the test's own on a spare port of 127.0.0.1, daemonized, with
/// AOF and `appendfsync always`: a write it acknowledged survives `kill -9`, so a
/// restart loses nothing (what production gets from AOF or replicas). For tests that
/// crash or restart Redis: the shared server is never touched. Killed and its
/// directory removed on drop.
pub struct PrivateRedis {
    /// The port on 127.0.0.1 (relay it to reach the server from the lab).
    pub port: u16,
    dir: PathBuf,
}

impl Default for PrivateRedis {
    fn default() -> Self {
        Self::new()
    }
}

impl PrivateRedis {
    /// Pick a port and make the data directory; [`PrivateRedis::start`] runs the server.
    ///
    /// # Panics
    /// When the directory cannot be made.
    pub fn new() -> PrivateRedis {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("sftest-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        PrivateRedis { port, dir }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn pidfile(&self) -> PathBuf {
        self.dir.join("redis.pid")
    }

    /// Run the server (again, after [`PrivateRedis::kill`]: it reloads its AOF) and
    /// wait up to 20 s until it listens.
    ///
    /// # Panics
    /// When `redis-server` is missing, fails, or does not listen in time.
    pub fn start(&self) {
        self.start_with(&[]);
    }

    /// As [`PrivateRedis::start`], with more `redis-server` options after the usual
    /// ones (later options win: `--port 0 --tls-port P` makes a TLS-only server).
    ///
    /// # Panics
    /// As [`PrivateRedis::start`].
    pub fn start_with(&self, extra: &[&std::ffi::OsStr]) {
        let status = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--daemonize", "yes", "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--pidfile")
            .arg(self.pidfile())
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .args(extra)
            .status()
            .unwrap_or_else(|e| panic!("run redis-server: {e}"));
        assert!(status.success(), "redis-server failed to start");
        assert!(
            wait_listening(self.port, Duration::from_secs(20)),
            "private redis-server did not listen on {} within 20 s (log in {})",
            self.port,
            self.dir.join("redis.log").display()
        );
    }

    /// SIGKILL: a crash, not a clean shutdown. Returns once the port is closed (or
    /// after 10 s). Killing a server that is not running does nothing.
    pub fn kill(&self) {
        let Ok(pid) = std::fs::read_to_string(self.pidfile()) else {
            return;
        };
        let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        wait_closed(self.port, Duration::from_secs(10));
        let _ = std::fs::remove_file(self.pidfile());
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
