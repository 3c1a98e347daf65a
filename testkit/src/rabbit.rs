//! RabbitMQ of a test's own: a second node on spare ports, or a vhost on the
//! shared broker.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::names::{amqp_url, unique_name};
use crate::ports::{free_port_pair, wait_closed, wait_listening};

/// The distribution (Erlang clustering) port of a [`PrivateRabbit`] is its AMQP
/// port plus this.
pub const DIST_PORT_OFFSET: u16 = 20000;

/// A RabbitMQ node of the test's own (`rabbitmq-server -detached`) on a spare port
/// of 127.0.0.1, its distribution port [`DIST_PORT_OFFSET`] above it, its data
/// (mnesia, logs, feature flags, an empty plugin list) in a temporary directory
/// owned by the rabbitmq user. For tests that stop or restart the broker: the
/// machine's shared broker is never touched. Stopped and removed on drop.
///
/// Needs root (the directory is handed to the rabbitmq user); the first boot takes
/// 6 to 13 s on the development machines.
pub struct PrivateRabbit {
    /// The Erlang node name, `sftest<pid>-<port>@localhost`, for `rabbitmqctl -n`.
    pub node: String,
    /// The AMQP port on 127.0.0.1 (relay it to reach the node from the lab).
    pub port: u16,
    dir: PathBuf,
}

impl Default for PrivateRabbit {
    fn default() -> Self {
        Self::new()
    }
}

impl PrivateRabbit {
    /// Pick the ports and prepare the node's directory; [`PrivateRabbit::start`] boots it.
    ///
    /// # Panics
    /// When the directory cannot be written or handed to the rabbitmq user.
    pub fn new() -> PrivateRabbit {
        let port = free_port_pair(DIST_PORT_OFFSET);
        let pid = std::process::id();
        let node = format!("sftest{pid}-{port}@localhost");
        let dir = std::env::temp_dir().join(format!("sftest-rabbit-{pid}-{port}"));
        let write = |path: PathBuf, text: String| {
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()))
        };
        for sub in ["mnesia", "log"] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        }
        write(dir.join("enabled_plugins"), "[].\n".into());
        write(
            dir.join("rabbitmq.conf"),
            format!("listeners.tcp.local = 127.0.0.1:{port}\n"),
        );
        let chown = Command::new("chown")
            .arg("-R")
            .arg("rabbitmq:rabbitmq")
            .arg(&dir)
            .status();
        assert!(
            chown.is_ok_and(|s| s.success()),
            "chown {} to the rabbitmq user (the private node needs root)",
            dir.display()
        );
        PrivateRabbit { node, port, dir }
    }

    /// The node's default vhost, as seen from the host and, through a [`crate::Relay`]
    /// of [`PrivateRabbit::port`], from the scanner namespace.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// A node that also listens for AMQPS on the returned port, with the server
    /// certificate of `pki` and client certificates required (verify_peer,
    /// fail_if_no_peer_cert). Not started yet.
    ///
    /// # Panics
    /// As [`PrivateRabbit::new`], or when the certificates cannot be copied.
    pub fn with_tls(pki: &crate::TestPki) -> (PrivateRabbit, u16) {
        let rabbit = PrivateRabbit::new();
        let tls_port = crate::free_port();
        let copy = |name: &str| {
            let to = rabbit.dir.join(name);
            std::fs::copy(pki.path(name), &to)
                .unwrap_or_else(|e| panic!("copy {name} to {}: {e}", to.display()));
            to.display().to_string()
        };
        let (ca, cert, key) = (copy("ca.pem"), copy("server.pem"), copy("server.key"));
        let conf = format!(
            "listeners.tcp.local = 127.0.0.1:{port}\n\
             listeners.ssl.default = 127.0.0.1:{tls_port}\n\
             ssl_options.cacertfile = {ca}\n\
             ssl_options.certfile = {cert}\n\
             ssl_options.keyfile = {key}\n\
             ssl_options.verify = verify_peer\n\
             ssl_options.fail_if_no_peer_cert = true\n",
            port = rabbit.port
        );
        std::fs::write(rabbit.dir.join("rabbitmq.conf"), conf).expect("write rabbitmq.conf");
        let chown = Command::new("chown")
            .arg("-R")
            .arg("rabbitmq:rabbitmq")
            .arg(&rabbit.dir)
            .status();
        assert!(
            chown.is_ok_and(|s| s.success()),
            "chown the TLS node's files"
        );
        (rabbit, tls_port)
    }

    /// Boot the node (again, after [`PrivateRabbit::stop`]: its data survives) and
    /// wait up to 60 s until it accepts connections.
    ///
    /// # Panics
    /// When `rabbitmq-server` is missing, fails, or the node does not listen in time.
    pub fn start(&self) {
        let d = |p: &str| self.dir.join(p);
        let status = Command::new("rabbitmq-server")
            .arg("-detached")
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env(
                "RABBITMQ_DIST_PORT",
                (u32::from(self.port) + u32::from(DIST_PORT_OFFSET)).to_string(),
            )
            .env("RABBITMQ_MNESIA_BASE", d("mnesia"))
            .env("RABBITMQ_LOG_BASE", d("log"))
            .env("RABBITMQ_FEATURE_FLAGS_FILE", d("feature_flags"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", d("rabbitmq.conf"))
            .stdout(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("run rabbitmq-server: {e}"));
        assert!(status.success(), "rabbitmq-server -detached failed");
        assert!(
            wait_listening(self.port, Duration::from_secs(60)),
            "private RabbitMQ node {} did not listen on {} within 60 s (logs in {})",
            self.node,
            self.port,
            self.dir.join("log").display()
        );
    }

    /// A clean stop of the node (the broker closes its connections); returns once
    /// its AMQP port is closed, or after 30 s. Stopping a stopped node does nothing.
    pub fn stop(&self) {
        let _ = Command::new("rabbitmqctl")
            .args(["-n", &self.node, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        wait_closed(self.port, Duration::from_secs(30));
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A RabbitMQ vhost of the test's own on the shared broker (the one of
/// [`amqp_url`]), with full permissions for guest, so that queue names never collide
/// between tests. Deleted, with its queues, on drop.
pub struct Vhost(
    /// The vhost's name, `sftest-<tag>-<pid>-<n>-<t>`.
    pub String,
);

impl Vhost {
    /// Create the vhost with `rabbitmqctl` (the shared broker runs on this machine).
    ///
    /// # Panics
    /// When `rabbitmqctl` is missing or refuses.
    pub fn new(tag: &str) -> Vhost {
        let name = unique_name(&format!("sftest-{tag}"));
        let ctl = |args: &[&str]| {
            let o = Command::new("rabbitmqctl")
                .args(args)
                .output()
                .unwrap_or_else(|e| panic!("run rabbitmqctl: {e}"));
            assert!(
                o.status.success(),
                "rabbitmqctl {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        ctl(&["add_vhost", &name]);
        ctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        Vhost(name)
    }

    /// [`amqp_url`] with this vhost in place of its own.
    pub fn url(&self) -> String {
        let base = amqp_url();
        let authority_end = base
            .find("://")
            .map(|i| i + 3)
            .and_then(|start| base[start..].find('/').map(|j| start + j))
            .unwrap_or(base.len());
        format!("{}/{}", &base[..authority_end], self.0)
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.0])
            .output();
    }
}
