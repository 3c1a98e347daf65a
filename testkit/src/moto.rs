//! moto's AWS server (`moto_server`) on a spare port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::ports::free_port;

/// A `moto_server` this process started on 127.0.0.1. A shell holds it and kills
/// it (SIGKILL) when its stdin closes: on [`Moto::kill`], on drop, or when the test
/// process exits however it exits, so a server kept in a `static` never outlives
/// the tests either.
///
/// The binary is `$SCANFLEET_MOTO_SERVER`, else `moto_server` on the PATH. moto
/// keeps state per account and region in memory; [`Moto::reset`] clears it, and a
/// restart ([`Moto::start_on`] the same port) starts empty.
pub struct Moto {
    /// The port on 127.0.0.1 (relay it to reach the server from the lab).
    pub port: u16,
    /// `http://127.0.0.1:<port>`, the endpoint for AWS SDK clients.
    pub url: String,
    holder: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

/// The shell that holds the server: $1 binary, $2 port, $3 log file (removed when
/// the server is gone).
const HOLDER: &str = r#""$1" -H 127.0.0.1 -p "$2" >"$3" 2>&1 </dev/null & pid=$!
read -r _
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -f "$3"
exit 0"#;

impl Moto {
    /// A server on a free port, up and reset. A free port can be taken between the
    /// probe and moto's bind: three ports are tried.
    ///
    /// # Panics
    /// When moto_server is not installed or does not answer within 60 s.
    pub fn start() -> Moto {
        let mut last = String::new();
        for _ in 0..3 {
            match Moto::try_start_on(free_port()) {
                Ok(m) => return m,
                Err(e) => last = e,
            }
        }
        panic!("{last}");
    }

    /// A server on `port` (for a restart on the port a client already uses).
    ///
    /// # Panics
    /// As [`Moto::start`].
    pub fn start_on(port: u16) -> Moto {
        Moto::try_start_on(port).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_start_on(port: u16) -> Result<Moto, String> {
        let bin = std::env::var("SCANFLEET_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let log = log_path(port);
        let mut holder = Command::new("sh")
            .args(["-c", HOLDER, "moto-holder", &bin, &port.to_string()])
            .arg(&log)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("sh to start {bin}: {e}"))?;
        let stdin = holder.stdin.take();
        let mut moto = Moto {
            port,
            url: format!("http://127.0.0.1:{port}"),
            holder,
            stdin,
            log: log.clone(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while post(port, "/moto-api/reset", "").is_err() {
            let exited = moto.holder.try_wait().ok().flatten().is_some();
            if exited || Instant::now() > deadline {
                let out = std::fs::read_to_string(&log).unwrap_or_default();
                drop(moto);
                return Err(format!(
                    "{bin} did not answer on port {port} (install moto[server] or set \
                     SCANFLEET_MOTO_SERVER):\n{out}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(moto)
    }

    /// Environment for AWS SDK clients in child processes (coordinator, workers)
    /// to use this server: endpoint, dummy credentials, us-east-1.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.url.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// POST to the server's own API (`/moto-api/...`); the whole answer on a 200.
    ///
    /// # Errors
    /// When the server cannot be reached or answers with another status (the
    /// answer is the error's message).
    pub fn post(&self, path: &str, body: &str) -> std::io::Result<String> {
        post(self.port, path, body)
    }

    /// Clear every account's and region's state (`POST /moto-api/reset`).
    ///
    /// # Panics
    /// When the server does not answer.
    pub fn reset(&self) {
        if let Err(e) = self.post("/moto-api/reset", "") {
            panic!("moto reset on port {}: {e}", self.port);
        }
    }

    /// From now on every request must be signed by a known IAM identity and be
    /// allowed by its policies (moto's `INITIAL_NO_AUTH_ACTION_COUNT` = 0).
    ///
    /// # Panics
    /// When the server does not answer.
    pub fn enforce_iam(&self) {
        if let Err(e) = self.post("/moto-api/reset-auth", "0") {
            panic!("moto reset-auth on port {}: {e}", self.port);
        }
    }

    /// SIGKILL the server and wait until it is gone. Killing twice does nothing.
    pub fn kill(&mut self) {
        drop(self.stdin.take());
        let _ = self.holder.wait();
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.log);
    }
}

fn log_path(port: u16) -> PathBuf {
    std::env::temp_dir().join(format!("sftest-moto-{}-{port}.log", std::process::id()))
}

/// The moto server a test binary's tests share: `SCANFLEET_MOTO_URL` (for example
/// `http://127.0.0.1:5000`, without a trailing `/`), else one [`Moto`] started on
/// first use that lives until the process exits. Tests on a shared server use
/// names of their own ([`crate::unique_name`]) and never reset it.
///
/// # Panics
/// As [`Moto::start`], on first use without `SCANFLEET_MOTO_URL`.
pub fn moto_url() -> &'static str {
    static SHARED: OnceLock<(String, Option<Moto>)> = OnceLock::new();
    &SHARED
        .get_or_init(|| match std::env::var("SCANFLEET_MOTO_URL") {
            Ok(url) if !url.trim().is_empty() => {
                (url.trim().trim_end_matches('/').to_string(), None)
            }
            _ => {
                let moto = Moto::start();
                (moto.url.clone(), Some(moto))
            }
        })
        .0
}

fn post(port: u16, path: &str, body: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    if !out.starts_with("HTTP/1.1 200") && !out.starts_with("HTTP/1.0 200") {
        return Err(std::io::Error::other(out));
    }
    Ok(out)
}
