//! The worker's own network limits: the ENA allowance counters of the
//! interface its probes leave by.
//!
//! On EC2 the Elastic Network Adapter counts the packets it shaped or dropped
//! because the *instance* exceeded an allowance (`pps_allowance_exceeded`,
//! `bw_out_allowance_exceeded`, `bw_in_allowance_exceeded`,
//! `conntrack_allowance_exceeded`) and reports the tracked connections left
//! (`conntrack_allowance_available`). They are read with the ethtool
//! statistics ioctl (`SIOCETHTOOL`: `ETHTOOL_GSSET_INFO` for the count,
//! `ETHTOOL_GSTRINGS` for the names, `ETHTOOL_GSTATS` for the values), every
//! second, behind the [`NicCounters`] trait. When an exceeded counter grows, the
//! [`Governor`] halves the worker's global rate; each quiet second gives back a
//! tenth. Interfaces without these counters (a veth, a laptop) are said so once.

use std::collections::HashMap;
use std::io;

use scanfleet_common::metrics::NicAllowance;

/// One reading of the allowance counters (cumulative, as the driver keeps them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NicSample {
    pub pps_exceeded: u64,
    pub bw_out_exceeded: u64,
    pub bw_in_exceeded: u64,
    pub conntrack_exceeded: u64,
    pub conntrack_available: Option<u64>,
}

impl NicSample {
    fn exceeded(&self) -> [(NicAllowance, u64); 4] {
        [
            (NicAllowance::Pps, self.pps_exceeded),
            (NicAllowance::BwOut, self.bw_out_exceeded),
            (NicAllowance::BwIn, self.bw_in_exceeded),
            (NicAllowance::Conntrack, self.conntrack_exceeded),
        ]
    }
}

/// A source of allowance counters.
pub trait NicCounters: Send {
    /// The current counters; `Ok(None)` when the interface has none (not an ENA).
    ///
    /// # Errors
    /// The ioctl failing (no such interface, no permission).
    fn read(&mut self) -> io::Result<Option<NicSample>>;
}

/// Turns counter readings into a global-rate multiplier.
#[derive(Debug, Clone)]
pub struct Governor {
    last: Option<NicSample>,
    permille: u32,
    /// Lowest multiplier, per mille of the profile's cap.
    pub floor_permille: u32,
    /// Growth of each exceeded counter over the last reading.
    pub last_growth: [(NicAllowance, u64); 4],
    pub backoffs: u64,
}

impl Default for Governor {
    fn default() -> Self {
        Governor {
            last: None,
            permille: 1000,
            floor_permille: 30,
            last_growth: NicSample::default().exceeded().map(|(a, _)| (a, 0)),
            backoffs: 0,
        }
    }
}

impl Governor {
    /// The multiplier of the global rate now, per mille.
    pub fn permille(&self) -> u32 {
        self.permille
    }

    /// Feed one reading (once a second). Growth of any exceeded counter halves
    /// the rate (never below the floor); a quiet reading adds 100 per mille back.
    /// Returns true when this reading caused a back-off.
    pub fn observe(&mut self, s: NicSample) -> bool {
        let prev = self.last.replace(s);
        let Some(prev) = prev else {
            return false;
        };
        let now = s.exceeded();
        let before = prev.exceeded();
        let mut grew = false;
        for i in 0..4 {
            // A counter that went backwards was reset (driver reload): no growth.
            let g = now[i].1.saturating_sub(before[i].1);
            self.last_growth[i] = (now[i].0, g);
            grew |= g > 0;
        }
        if grew {
            self.permille = (self.permille / 2).max(self.floor_permille);
            self.backoffs += 1;
        } else {
            self.permille = (self.permille + 100).min(1000);
        }
        grew
    }
}

/// The ethtool statistics of one interface, through `SIOCETHTOOL`.
pub struct Ethtool {
    name: String,
    fd: std::os::fd::OwnedFd,
    /// Index of each counter we want in the driver's statistics array.
    index: Option<HashMap<&'static str, usize>>,
    n_stats: usize,
}

const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSTATS: u32 = 0x1d;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETH_SS_STATS: u32 = 1;
const ETH_GSTRING_LEN: usize = 32;
const WANTED: [&str; 5] = [
    "pps_allowance_exceeded",
    "bw_out_allowance_exceeded",
    "bw_in_allowance_exceeded",
    "conntrack_allowance_exceeded",
    "conntrack_allowance_available",
];

#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

impl Ethtool {
    /// Open the statistics of interface `name` (nothing is read yet).
    ///
    /// # Errors
    /// The socket failing, or a name longer than the kernel allows.
    pub fn new(name: &str) -> io::Result<Self> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("interface name {name:?}"),
            ));
        }
        // SAFETY: plain socket(2); the result is checked.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        Ok(Ethtool {
            name: name.into(),
            fd,
            index: None,
            n_stats: 0,
        })
    }

    fn ioctl(&self, data: *mut libc::c_void) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            data,
            _pad: [0; 16],
        };
        for (d, s) in req.name.iter_mut().zip(self.name.bytes()) {
            *d = s as libc::c_char;
        }
        // SAFETY: SIOCETHTOOL with an ifreq whose data points at a buffer the
        // caller sized for the command; the kernel writes only within it.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::SIOCETHTOOL as _, &mut req) };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Learn where the wanted counters are (once).
    fn locate(&mut self) -> io::Result<()> {
        if self.index.is_some() {
            return Ok(());
        }
        // struct ethtool_sset_info { cmd, reserved, sset_mask: u64, data[1]: u32 }
        let mut info = [0u32; 6];
        info[0] = ETHTOOL_GSSET_INFO;
        info[2] = 1 << ETH_SS_STATS;
        self.ioctl(info.as_mut_ptr().cast())?;
        let n = if info[2] & (1 << ETH_SS_STATS) != 0 {
            info[4] as usize
        } else {
            0
        };
        let mut index = HashMap::new();
        if n > 0 && n < 1 << 16 {
            // struct ethtool_gstrings { cmd, string_set, len, data[] }
            let mut buf = vec![0u8; 12 + n * ETH_GSTRING_LEN];
            buf[0..4].copy_from_slice(&ETHTOOL_GSTRINGS.to_ne_bytes());
            buf[4..8].copy_from_slice(&ETH_SS_STATS.to_ne_bytes());
            buf[8..12].copy_from_slice(&(n as u32).to_ne_bytes());
            self.ioctl(buf.as_mut_ptr().cast())?;
            for i in 0..n {
                let s = &buf[12 + i * ETH_GSTRING_LEN..12 + (i + 1) * ETH_GSTRING_LEN];
                let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
                let name = String::from_utf8_lossy(&s[..end]);
                if let Some(w) = WANTED.iter().find(|w| **w == name) {
                    index.insert(*w, i);
                }
            }
        }
        self.n_stats = n;
        self.index = Some(index);
        Ok(())
    }
}

impl NicCounters for Ethtool {
    fn read(&mut self) -> io::Result<Option<NicSample>> {
        self.locate()?;
        let Some(index) = self.index.as_ref().filter(|i| !i.is_empty()) else {
            return Ok(None);
        };
        // struct ethtool_stats { cmd, n_stats, data[]: u64 }
        let n = self.n_stats;
        let mut buf = vec![0u64; 1 + n];
        let head = (u64::from(n as u32) << 32) | u64::from(ETHTOOL_GSTATS);
        buf[0] = if cfg!(target_endian = "little") {
            head
        } else {
            head.rotate_left(32)
        };
        self.ioctl(buf.as_mut_ptr().cast())?;
        let get = |k: &str| index.get(k).map(|&i| buf[1 + i]);
        Ok(Some(NicSample {
            pps_exceeded: get("pps_allowance_exceeded").unwrap_or(0),
            bw_out_exceeded: get("bw_out_allowance_exceeded").unwrap_or(0),
            bw_in_exceeded: get("bw_in_allowance_exceeded").unwrap_or(0),
            conntrack_exceeded: get("conntrack_allowance_exceeded").unwrap_or(0),
            conntrack_available: get("conntrack_allowance_available"),
        }))
    }
}

/// The interface that holds `local` (the address probes are sent from).
pub fn interface_of(local: std::net::IpAddr) -> Option<String> {
    let mut addrs: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates the list; it is freed below.
    if unsafe { libc::getifaddrs(&mut addrs) } != 0 {
        return None;
    }
    let mut found = None;
    let mut p = addrs;
    while !p.is_null() {
        // SAFETY: p walks the list getifaddrs returned.
        let ifa = unsafe { &*p };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points at a sockaddr of the family it names.
            let fam = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            let ip = match fam {
                libc::AF_INET => {
                    // SAFETY: AF_INET means sockaddr_in.
                    let a = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                    Some(std::net::IpAddr::from(
                        u32::from_be(a.sin_addr.s_addr).to_be_bytes(),
                    ))
                }
                libc::AF_INET6 => {
                    // SAFETY: AF_INET6 means sockaddr_in6.
                    let a = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                    Some(std::net::IpAddr::from(a.sin6_addr.s6_addr))
                }
                _ => None,
            };
            if ip == Some(local) {
                // SAFETY: ifa_name is a NUL-terminated string of the list.
                let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
                found = Some(name.to_string_lossy().into_owned());
                break;
            }
        }
        p = ifa.ifa_next;
    }
    // SAFETY: the list from getifaddrs above.
    unsafe { libc::freeifaddrs(addrs) };
    found
}

/// Process-wide totals of what the monitors saw, for the worker's metrics.
#[derive(Debug, Default)]
pub struct Totals {
    /// Growth per allowance, in [`NicAllowance::ALL`] order.
    pub exceeded: [std::sync::atomic::AtomicU64; 4],
    pub backoffs: std::sync::atomic::AtomicU64,
    /// Last `conntrack_allowance_available`, or -1 when unknown.
    pub conntrack_available: std::sync::atomic::AtomicI64,
}

/// The totals of this process.
pub fn totals() -> &'static Totals {
    static T: std::sync::OnceLock<Totals> = std::sync::OnceLock::new();
    T.get_or_init(|| Totals {
        conntrack_available: std::sync::atomic::AtomicI64::new(-1),
        ..Totals::default()
    })
}

/// Say once per interface that it has no allowance counters.
fn say_once(name: &str, why: &str) {
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|p| p.into_inner());
    if !said.iter().any(|n| n == name) {
        said.push(name.to_string());
        tracing::info!(
            interface = name,
            "{why}; the worker paces by its global cap and the targets' answers only"
        );
    }
}

/// Watch the counters of the interface holding `local` every second until
/// `stop`, writing the rate multiplier to `permille`.
pub fn monitor(
    local: std::net::IpAddr,
    stop: &std::sync::atomic::AtomicBool,
    permille: &std::sync::atomic::AtomicU32,
) {
    use std::sync::atomic::Ordering;
    let Some(name) = interface_of(local) else {
        return;
    };
    let mut counters = match Ethtool::new(&name) {
        Ok(e) => e,
        Err(e) => return say_once(&name, &format!("cannot read its ethtool statistics ({e})")),
    };
    let mut g = Governor::default();
    let t = totals();
    loop {
        match counters.read() {
            Ok(Some(s)) => {
                if g.observe(s) {
                    t.backoffs.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(interface = %name, permille = g.permille(), "NIC allowance exceeded (ENA counters grew); global rate cut");
                }
                for (i, (_, grew)) in g.last_growth.iter().enumerate() {
                    t.exceeded[i].fetch_add(*grew, Ordering::Relaxed);
                }
                if let Some(a) = s.conntrack_available {
                    t.conntrack_available
                        .store(a.min(i64::MAX as u64) as i64, Ordering::Relaxed);
                }
                permille.store(g.permille(), Ordering::Relaxed);
            }
            Ok(None) => return say_once(&name, "no ENA allowance counters on this interface"),
            Err(e) => return say_once(&name, &format!("cannot read its ethtool statistics ({e})")),
        }
        for _ in 0..20 {
            if stop.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counters a test feeds, one reading per call.
    struct Fed(std::vec::IntoIter<NicSample>);

    impl NicCounters for Fed {
        fn read(&mut self) -> io::Result<Option<NicSample>> {
            Ok(self.0.next())
        }
    }

    #[test]
    fn growing_counters_back_off_and_quiet_ones_recover() {
        let s = |pps, bw| NicSample {
            pps_exceeded: pps,
            bw_out_exceeded: bw,
            ..NicSample::default()
        };
        let mut fed =
            Fed(vec![s(10, 0), s(10, 0), s(50, 0), s(50, 7), s(50, 7), s(50, 7)].into_iter());
        let mut g = Governor::default();
        let mut seen = Vec::new();
        while let Some(x) = fed.read().unwrap() {
            g.observe(x);
            seen.push(g.permille());
        }
        // The first reading is the base; growth of pps, then of bw_out, halves.
        assert_eq!(seen, [1000, 1000, 500, 250, 350, 450]);
        assert_eq!(g.backoffs, 2);
        assert_eq!(g.last_growth[0], (NicAllowance::Pps, 0));
    }

    #[test]
    fn the_floor_holds_and_resets_are_not_growth() {
        let mut g = Governor::default();
        for i in 0..20u64 {
            g.observe(NicSample {
                conntrack_exceeded: i * 100,
                ..NicSample::default()
            });
        }
        assert_eq!(g.permille(), g.floor_permille);
        assert!(
            !g.observe(NicSample::default()),
            "a counter reset is no growth"
        );
    }

    #[test]
    fn loopback_has_no_ena_counters() {
        // SAFETY: geteuid has no preconditions.
        let mut e = Ethtool::new("lo").unwrap();
        match e.read() {
            Ok(None) => {}
            Ok(Some(s)) => panic!("lo has ENA counters? {s:?}"),
            // Some kernels refuse ethtool stats on lo outright: also "none".
            Err(err) => assert!(err.raw_os_error().is_some(), "{err}"),
        }
        assert_eq!(
            interface_of("127.0.0.1".parse().unwrap()).as_deref(),
            Some("lo")
        );
    }
}
