//! The namespace lab's relays (`loadtest/lab.sh relay`): a process inside a lab
//! namespace cannot reach the host's 127.0.0.1, so a host service is carried into
//! the scanner namespace over a unix socket (socat `UNIX-LISTEN` on the host side,
//! `TCP-LISTEN` on 127.0.0.1 inside), which touches no interface.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root (the folder holding `loadtest/`).
pub fn repo_root() -> PathBuf {
    let kit = Path::new(env!("CARGO_MANIFEST_DIR"));
    kit.parent().unwrap_or(kit).to_path_buf()
}

/// Run `loadtest/lab.sh` with `args`; its output, whatever its status.
///
/// # Panics
/// When the script cannot be run at all.
pub fn lab_sh(args: &[&str]) -> Output {
    let script = repo_root().join("loadtest/lab.sh");
    Command::new(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", script.display()))
}

/// Relay the host's 127.0.0.1:`port` to 127.0.0.1:`port` in the scanner namespace
/// and leave it up (the relays of the shared 5672 and 6379 serve every test).
///
/// # Panics
/// When `lab.sh relay` fails (the lab is down, or the port is taken in the namespace).
pub fn relay(port: u16) {
    let o = lab_sh(&["relay", &port.to_string()]);
    assert!(
        o.status.success(),
        "lab.sh relay {port}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A relay (see [`relay`]) for a service the test started itself, stopped on drop.
pub struct Relay(
    /// The relayed port, the same on both sides.
    pub u16,
);

impl Relay {
    /// Start the relay.
    ///
    /// # Panics
    /// As [`relay`].
    pub fn new(port: u16) -> Relay {
        relay(port);
        Relay(port)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = lab_sh(&["relay-stop", &self.0.to_string()]);
    }
}
