//! Throwaway network namespaces for the SYN engine's tests: `sfsyn-<pid>-<n>-<tag>`,
//! deleted on drop (and, for namespaces of dead test processes, at the next
//! run). Code runs inside one on a dedicated thread that did `setns(2)`:
//! sockets it creates live in that namespace for good, whichever thread uses
//! them later.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);
const PREFIX: &str = "sfsyn-";

fn run(cmd: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut c = Command::new(cmd);
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = c.spawn().map_err(|e| format!("{cmd}: {e}"))?;
    if let Some(text) = stdin {
        use std::io::Write;
        let mut s = child.stdin.take().ok_or("no stdin")?;
        s.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Why namespace tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root (raw sockets and network namespaces need it)".into());
    }
    cleanup_stale();
    match Netns::create("probe") {
        Ok(_) => None,
        Err(e) => Some(format!("cannot create a network namespace: {e}")),
    }
}

/// Delete namespaces left by test processes that no longer exist.
fn cleanup_stale() {
    let Ok(list) = run("ip", &["netns", "list"], None) else {
        return;
    };
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run("ip", &["netns", "del", name], None);
        }
    }
}

/// A network namespace this test process created.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Create `sfsyn-<pid>-<n>-<tag>` with its loopback up.
    pub fn create(tag: &str) -> Result<Netns, String> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{n}-{tag}", std::process::id());
        run("ip", &["netns", "add", &name], None)?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// `ip -n <ns> ...`
    pub fn ip(&self, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all, None)
    }

    /// Load an nftables ruleset inside the namespace.
    pub fn nft(&self, ruleset: &str) -> Result<(), String> {
        run(
            "ip",
            &["netns", "exec", &self.name, "nft", "-f", "-"],
            Some(ruleset),
        )
        .map(|_| ())
    }

    /// Run `f` on a fresh thread inside this namespace.
    pub fn enter<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> R {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            // SAFETY: setns on a valid namespace fd; it only affects this thread.
            let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }

    /// Run an async closure on a current-thread runtime inside this namespace.
    pub fn block_on<R, Fut>(&self, f: impl FnOnce() -> Fut + Send + 'static) -> R
    where
        R: Send + 'static,
        Fut: std::future::Future<Output = R>,
    {
        self.enter(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(f())
        })
    }

    /// Bind TCP listeners on `addr` for `ports` inside this namespace. The
    /// kernel completes handshakes for them; nothing ever accepts.
    pub fn listeners(&self, addr: std::net::IpAddr, ports: &[u16]) -> Vec<std::net::TcpListener> {
        let ports = ports.to_vec();
        self.enter(move || {
            ports
                .iter()
                .map(|&p| {
                    std::net::TcpListener::bind((addr, p))
                        .unwrap_or_else(|e| panic!("bind {addr}:{p}: {e}"))
                })
                .collect()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.name], None);
    }
}

/// A veth pair between two namespaces.
pub struct Link {
    pub a: Ipv4Addr,
    pub b: Ipv4Addr,
    pub b_dev: String,
}

/// Connect `a` and `b` with a veth pair on 10.214.`subnet`.0/24 (`a` gets .1,
/// `b` gets .2) and fd00:214:`subnet`::/64 (::1 and ::2).
pub fn veth(a: &Netns, b: &Netns, subnet: u8) -> Result<Link, String> {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // Interface names are at most 15 bytes; they live in our namespaces only.
    let (ia, ib) = (
        format!("sfs{}x{n}a", std::process::id() % 100_000),
        format!("sfs{}x{n}b", std::process::id() % 100_000),
    );
    a.ip(&[
        "link", "add", &ia, "type", "veth", "peer", "name", &ib, "netns", &b.name,
    ])?;
    let (aa, ba) = (
        Ipv4Addr::new(10, 214, subnet, 1),
        Ipv4Addr::new(10, 214, subnet, 2),
    );
    a.ip(&["addr", "add", &format!("{aa}/24"), "dev", &ia])?;
    b.ip(&["addr", "add", &format!("{ba}/24"), "dev", &ib])?;
    // IPv6 on the same link, without duplicate address detection delays.
    a.ip(&[
        "addr",
        "add",
        &format!("fd00:214:{subnet}::1/64"),
        "dev",
        &ia,
        "nodad",
    ])?;
    b.ip(&[
        "addr",
        "add",
        &format!("fd00:214:{subnet}::2/64"),
        "dev",
        &ib,
        "nodad",
    ])?;
    a.ip(&["link", "set", &ia, "up"])?;
    b.ip(&["link", "set", &ib, "up"])?;
    // Resolve neighbours before a test starts its clock: right after link-up
    // the first IPv6 neighbour solicitation is often lost and the retry comes
    // 1 s later, while the kernel queues only ~256 packets per unresolved
    // neighbour. A connect (refused or not) from a to b warms both caches.
    let targets = [
        std::net::SocketAddr::from((ba, 9)),
        format!("[fd00:214:{subnet}::2]:9")
            .parse()
            .map_err(|e| format!("{e}"))?,
    ];
    a.enter(move || {
        for t in targets {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while std::time::Instant::now() < deadline {
                match std::net::TcpStream::connect_timeout(
                    &t,
                    std::time::Duration::from_millis(300),
                ) {
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                    _ => break,
                }
            }
        }
    });
    Ok(Link {
        a: aa,
        b: ba,
        b_dev: ib,
    })
}

/// Drop CAP_NET_RAW from the calling thread's effective and permitted sets
/// (the raw `capset` system call changes only the calling thread).
pub fn drop_net_raw_on_this_thread() -> std::io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const V3: u32 = 0x2008_0522;
    const CAP_NET_RAW: u32 = 13;
    let mut h = Header {
        version: V3,
        pid: 0,
    };
    let mut d = [Data::default(); 2];
    // SAFETY: header and two data structs as capget/capset v3 expect.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut h as *mut Header, d.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        d[0].effective &= !(1 << CAP_NET_RAW);
        d[0].permitted &= !(1 << CAP_NET_RAW);
        if libc::syscall(libc::SYS_capset, &mut h as *mut Header, d.as_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
