//! Raw sockets and batched system calls: the only unsafe code of the engine.
//!
//! * Sending: one `SOCK_RAW`/`IPPROTO_RAW` socket per family. For IPv4 that
//!   implies `IP_HDRINCL` and for IPv6 `IPV6_HDRINCL` (Linux >= 4.5): we write
//!   the whole packet, the kernel only routes it (and fills in the IPv4 header
//!   checksum again). Packets go out in batches with `sendmmsg(2)`.
//! * Receiving: an `IPPROTO_TCP` and an `IPPROTO_ICMP`(`V6`) raw socket per
//!   family, each a copy of every matching packet the host receives, with a
//!   large receive buffer (`SO_RCVBUFFORCE`, needs CAP_NET_ADMIN, else
//!   `SO_RCVBUF` up to `net.core.rmem_max`), a classic BPF filter so the kernel
//!   drops unrelated traffic before it is queued, and `SO_RXQ_OVFL` so buffer
//!   overflows are counted, not silent. Read with `recvmmsg(2)`.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Size of one send slot (the largest probe is 64 bytes).
pub const SEND_SLOT: usize = 64;
/// Bytes kept of each received packet: enough for IPv4 with options, TCP with
/// options, or an ICMP error quoting IPv4 with options and 8 TCP bytes.
pub const RECV_SLOT: usize = 256;
/// Messages per `recvmmsg`.
pub const RECV_BATCH: usize = 64;
const CTRL_SLOT: usize = 64;
/// `ICMP6_FILTER` socket option (netinet/icmp6.h), not exported by libc.
const ICMP6_FILTER: libc::c_int = 1;

/// Address family of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Open a raw socket (close-on-exec).
///
/// # Errors
/// The OS error: `EPERM`/`EACCES` without CAP_NET_RAW, `EAFNOSUPPORT` when the
/// family is disabled.
pub fn raw_socket(family: Family, protocol: libc::c_int) -> io::Result<OwnedFd> {
    let domain = match family {
        Family::V4 => libc::AF_INET,
        Family::V6 => libc::AF_INET6,
    };
    // SAFETY: plain system call; on success we own the returned descriptor.
    let fd = cvt(unsafe { libc::socket(domain, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) })?;
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live T of the size we pass.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

fn getsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: v and len are live and sized as the kernel expects for an int option.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(v)
}

/// Ask for a receive buffer of `bytes`: forced past `rmem_max` when we hold
/// CAP_NET_ADMIN, else as much as `rmem_max` allows. Returns what the kernel
/// granted (it doubles the request for its bookkeeping).
pub fn set_recv_buffer(fd: &OwnedFd, bytes: usize) -> io::Result<usize> {
    let want = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX / 2);
    let fd = fd.as_raw_fd();
    if setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &want).is_err() {
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &want)?;
    }
    Ok(getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF)?.max(0) as usize)
}

/// Same for the send buffer (so a burst of `sendmmsg` does not block early).
pub fn set_send_buffer(fd: &OwnedFd, bytes: usize) -> io::Result<()> {
    let want = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX / 2);
    let fd = fd.as_raw_fd();
    if setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &want).is_err() {
        setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, &want)?;
    }
    Ok(())
}

/// Count packets the kernel dropped on a full receive queue (`SO_RXQ_OVFL`).
pub fn enable_drop_counter(fd: &OwnedFd) -> io::Result<()> {
    setsockopt(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_RXQ_OVFL,
        &1 as &libc::c_int,
    )
}

const fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

const fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

const ACCEPT: libc::sock_filter = stmt(libc::BPF_RET | libc::BPF_K, 0xffff);
const REJECT: libc::sock_filter = stmt(libc::BPF_RET | libc::BPF_K, 0);

/// Classic BPF for a TCP raw socket: accept only segments with ACK set whose
/// destination port is in our source-port range. `ip_header` is true for IPv4
/// (the program sees the IP header first) and false for IPv6 (it sees TCP).
pub fn tcp_filter(ip_header: bool, first_port: u16, last_port: u16) -> Vec<libc::sock_filter> {
    use libc::{
        BPF_ABS, BPF_B, BPF_H, BPF_IND, BPF_JGE, BPF_JGT, BPF_JMP, BPF_JSET, BPF_K, BPF_LD,
        BPF_LDX, BPF_MSH,
    };
    let mode = if ip_header { BPF_IND } else { BPF_ABS };
    let mut prog = Vec::with_capacity(9);
    if ip_header {
        // X = IPv4 header length; reject fragments other than the first.
        prog.push(stmt(BPF_LD | BPF_H | BPF_ABS, 6));
        prog.push(jump(BPF_JMP | BPF_JSET | BPF_K, 0x1fff, 5, 0));
        prog.push(stmt(BPF_LDX | BPF_B | BPF_MSH, 0));
    }
    prog.push(stmt(BPF_LD | BPF_H | mode, 2));
    prog.push(jump(BPF_JMP | BPF_JGE | BPF_K, u32::from(first_port), 0, 3));
    prog.push(jump(BPF_JMP | BPF_JGT | BPF_K, u32::from(last_port), 2, 0));
    prog.push(stmt(BPF_LD | BPF_B | mode, 13));
    prog.push(jump(BPF_JMP | BPF_JSET | BPF_K, 0x10, 1, 0));
    prog.push(REJECT);
    prog.push(ACCEPT);
    // Fix the one forward jump of the IPv4 prefix: it must land on REJECT.
    if ip_header {
        let reject_at = prog.len() - 2;
        prog[1].jt = (reject_at - 2) as u8;
    }
    prog
}

/// Classic BPF for the IPv4 ICMP raw socket: destination unreachable only.
pub fn icmp4_filter() -> Vec<libc::sock_filter> {
    use libc::{BPF_B, BPF_IND, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_LDX, BPF_MSH};
    vec![
        stmt(BPF_LDX | BPF_B | BPF_MSH, 0),
        stmt(BPF_LD | BPF_B | BPF_IND, 0),
        jump(BPF_JMP | BPF_JEQ | BPF_K, 3, 1, 0),
        REJECT,
        ACCEPT,
    ]
}

/// Attach a classic BPF program to a socket.
pub fn attach_filter(fd: &OwnedFd, prog: &[libc::sock_filter]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr().cast_mut(),
    };
    setsockopt(
        fd.as_raw_fd(),
        libc::SOL_SOCKET,
        libc::SO_ATTACH_FILTER,
        &fprog,
    )
}

/// Let only ICMPv6 destination-unreachable (type 1) through an ICMPv6 socket.
pub fn icmp6_pass_only_unreachable(fd: &OwnedFd) -> io::Result<()> {
    // Bit set = blocked (RFC 3542 ICMP6_FILTER_SETBLOCKALL then SETPASS(1)).
    let mut filter = [u32::MAX; 8];
    filter[0] &= !(1u32 << 1);
    setsockopt(fd.as_raw_fd(), libc::IPPROTO_ICMPV6, ICMP6_FILTER, &filter)
}

fn sockaddr_of(ip: IpAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero bytes are a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match ip {
        IpAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        IpAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

fn ip_of(ss: &libc::sockaddr_storage) -> Option<IpAddr> {
    match libc::c_int::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read((ss as *const libc::sockaddr_storage).cast()) };
            Some(IpAddr::V4(Ipv4Addr::from(
                sin.sin_addr.s_addr.to_ne_bytes(),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6: libc::sockaddr_in6 =
                unsafe { std::ptr::read((ss as *const libc::sockaddr_storage).cast()) };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

/// What one flush achieved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    pub sent: u64,
    /// Packets the kernel refused (route or firewall errors); they count as
    /// unanswered and are retried with the next pass.
    pub failed: u64,
    pub last_error: Option<i32>,
}

/// Up to `cap` packets waiting to go out through one raw socket.
pub struct SendBatch {
    fd: OwnedFd,
    cap: usize,
    bufs: Vec<[u8; SEND_SLOT]>,
    lens: Vec<usize>,
    addrs: Vec<libc::sockaddr_storage>,
    addr_lens: Vec<libc::socklen_t>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    n: usize,
}

// SAFETY: the raw pointers inside `iovs`/`msgs` only ever point into this
// batch's own buffers and are rebuilt before each use; the batch moves to the
// transmit thread as a whole.
unsafe impl Send for SendBatch {}

impl SendBatch {
    /// A batch of `cap` (>= 1) packets over `fd`; `cap == 1` uses `sendto(2)`.
    pub fn new(fd: OwnedFd, cap: usize) -> Self {
        let cap = cap.max(1);
        // SAFETY: all-zero bytes are valid for these plain C structs.
        let (ss, iov, msg) = unsafe {
            (
                zeroed::<libc::sockaddr_storage>(),
                zeroed::<libc::iovec>(),
                zeroed::<libc::mmsghdr>(),
            )
        };
        SendBatch {
            fd,
            cap,
            bufs: vec![[0u8; SEND_SLOT]; cap],
            lens: vec![0; cap],
            addrs: vec![ss; cap],
            addr_lens: vec![0; cap],
            iovs: vec![iov; cap],
            msgs: vec![msg; cap],
            n: 0,
        }
    }

    pub fn is_full(&self) -> bool {
        self.n >= self.cap
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The next free slot; call [`SendBatch::commit`] after writing into it.
    /// Flush first when the batch is full.
    pub fn slot(&mut self) -> &mut [u8; SEND_SLOT] {
        let i = self.n.min(self.cap - 1);
        &mut self.bufs[i]
    }

    /// Queue the `len` bytes written into [`SendBatch::slot`] for `dst`.
    pub fn commit(&mut self, len: usize, dst: IpAddr) {
        if self.n >= self.cap || len == 0 {
            return;
        }
        let (ss, sl) = sockaddr_of(dst);
        self.lens[self.n] = len.min(SEND_SLOT);
        self.addrs[self.n] = ss;
        self.addr_lens[self.n] = sl;
        self.n += 1;
    }

    /// Send everything queued. Retries `ENOBUFS`/`EAGAIN` (a full device or
    /// socket queue) with short sleeps; drops a packet the kernel refuses.
    pub fn flush(&mut self) -> Flushed {
        let mut out = Flushed::default();
        let mut off = 0usize;
        let mut backoffs = 0u32;
        while off < self.n {
            let r = if self.cap == 1 {
                // SAFETY: buffer and address are live and sized as passed.
                unsafe {
                    libc::sendto(
                        self.fd.as_raw_fd(),
                        self.bufs[off].as_ptr().cast(),
                        self.lens[off],
                        0,
                        (&self.addrs[off] as *const libc::sockaddr_storage).cast(),
                        self.addr_lens[off],
                    ) as libc::c_int
                }
                .min(1)
            } else {
                for i in off..self.n {
                    self.iovs[i] = libc::iovec {
                        iov_base: self.bufs[i].as_mut_ptr().cast(),
                        iov_len: self.lens[i],
                    };
                    let h = &mut self.msgs[i].msg_hdr;
                    h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
                    h.msg_namelen = self.addr_lens[i];
                    h.msg_iov = &mut self.iovs[i];
                    h.msg_iovlen = 1;
                    h.msg_control = std::ptr::null_mut();
                    h.msg_controllen = 0;
                    h.msg_flags = 0;
                    self.msgs[i].msg_len = 0;
                }
                // SAFETY: msgs[off..n] point into our own live buffers (set just above).
                unsafe {
                    libc::sendmmsg(
                        self.fd.as_raw_fd(),
                        self.msgs[off..].as_mut_ptr(),
                        (self.n - off) as libc::c_uint,
                        0,
                    )
                }
            };
            if r > 0 {
                out.sent += r as u64;
                off += r as usize;
                backoffs = 0;
                continue;
            }
            let err = io::Error::last_os_error().raw_os_error().unwrap_or(0);
            match err {
                libc::EINTR => {}
                libc::ENOBUFS | libc::EAGAIN if backoffs < 200 => {
                    backoffs += 1;
                    std::thread::sleep(Duration::from_micros(100 * u64::from(backoffs.min(10))));
                }
                _ => {
                    // The first packet of the rest failed: skip it, keep the others.
                    out.failed += 1;
                    out.last_error = Some(err);
                    off += 1;
                    backoffs = 0;
                }
            }
        }
        self.n = 0;
        out
    }
}

/// A reusable set of receive buffers for `recvmmsg`.
pub struct RecvBatch {
    bufs: Vec<[u8; RECV_SLOT]>,
    names: Vec<libc::sockaddr_storage>,
    ctrl: Vec<[u8; CTRL_SLOT]>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    n: usize,
}

// SAFETY: see SendBatch: pointers are rebuilt before each call and only point
// into the batch itself.
unsafe impl Send for RecvBatch {}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl RecvBatch {
    pub fn new() -> Self {
        // SAFETY: all-zero bytes are valid for these plain C structs.
        let (ss, iov, msg) = unsafe {
            (
                zeroed::<libc::sockaddr_storage>(),
                zeroed::<libc::iovec>(),
                zeroed::<libc::mmsghdr>(),
            )
        };
        RecvBatch {
            bufs: vec![[0u8; RECV_SLOT]; RECV_BATCH],
            names: vec![ss; RECV_BATCH],
            ctrl: vec![[0u8; CTRL_SLOT]; RECV_BATCH],
            iovs: vec![iov; RECV_BATCH],
            msgs: vec![msg; RECV_BATCH],
            n: 0,
        }
    }

    /// Read what is queued on `fd` without blocking: the number of packets
    /// (0 when the queue is empty).
    ///
    /// # Errors
    /// Any error but `EAGAIN`/`EINTR`.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for i in 0..RECV_BATCH {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: RECV_SLOT,
            };
            let h = &mut self.msgs[i].msg_hdr;
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = self.ctrl[i].as_mut_ptr().cast();
            h.msg_controllen = CTRL_SLOT as _;
            h.msg_flags = 0;
            self.msgs[i].msg_len = 0;
        }
        // SAFETY: every header points into this batch's live buffers, sized as declared.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                RECV_BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            self.n = 0;
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(0),
                _ => Err(e),
            };
        }
        self.n = r as usize;
        Ok(self.n)
    }

    /// Bytes of packet `i` (truncated to [`RECV_SLOT`]).
    pub fn packet(&self, i: usize) -> &[u8] {
        if i >= self.n {
            return &[];
        }
        let len = (self.msgs[i].msg_len as usize).min(RECV_SLOT);
        &self.bufs[i][..len]
    }

    /// Source address of packet `i`.
    pub fn source(&self, i: usize) -> Option<IpAddr> {
        if i >= self.n {
            return None;
        }
        ip_of(&self.names[i])
    }

    /// The socket's cumulative drop count, if packet `i` carried one.
    pub fn drops(&self, i: usize) -> Option<u32> {
        if i >= self.n {
            return None;
        }
        let h = &self.msgs[i].msg_hdr;
        // SAFETY: the kernel filled msg_control/msg_controllen for this header;
        // CMSG_* walk only within that buffer.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_RXQ_OVFL {
                    let p = libc::CMSG_DATA(c).cast::<u32>();
                    return Some(std::ptr::read_unaligned(p));
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        None
    }
}

/// Wait until one of `fds` is readable or `timeout` passes.
pub fn poll_readable(fds: &[RawFd], timeout: Duration) -> io::Result<()> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: p is a live array of p.len() pollfds.
    let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
    Ok(())
}

/// The address the kernel would use as source towards `target` (its route
/// source), found by connecting a UDP socket, which sends nothing.
///
/// # Errors
/// No route to the target (`ENETUNREACH`), or the family is unavailable.
pub fn route_source(target: IpAddr) -> io::Result<IpAddr> {
    let sock = match target {
        IpAddr::V4(_) => std::net::UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?,
        IpAddr::V6(_) => {
            std::net::UdpSocket::bind(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0))?
        }
    };
    sock.connect((target, 9))?;
    Ok(sock.local_addr()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run a classic BPF program on `pkt` (the subset of instructions we use),
    /// so the filters are tested without a kernel.
    fn run_bpf(prog: &[libc::sock_filter], pkt: &[u8]) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let load = |off: usize, size: usize| -> Option<u32> {
            let b = pkt.get(off..off + size)?;
            Some(b.iter().fold(0u32, |acc, &v| (acc << 8) | u32::from(v)))
        };
        loop {
            let ins = prog[pc];
            let code = u32::from(ins.code);
            pc += 1;
            match code {
                c if c == libc::BPF_RET | libc::BPF_K => return ins.k,
                c if c == libc::BPF_LD | libc::BPF_H | libc::BPF_ABS => {
                    match load(ins.k as usize, 2) {
                        Some(v) => a = v,
                        None => return 0,
                    }
                }
                c if c == libc::BPF_LD | libc::BPF_B | libc::BPF_ABS => {
                    match load(ins.k as usize, 1) {
                        Some(v) => a = v,
                        None => return 0,
                    }
                }
                c if c == libc::BPF_LD | libc::BPF_H | libc::BPF_IND => {
                    match load(x as usize + ins.k as usize, 2) {
                        Some(v) => a = v,
                        None => return 0,
                    }
                }
                c if c == libc::BPF_LD | libc::BPF_B | libc::BPF_IND => {
                    match load(x as usize + ins.k as usize, 1) {
                        Some(v) => a = v,
                        None => return 0,
                    }
                }
                c if c == libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH => {
                    match load(ins.k as usize, 1) {
                        Some(v) => x = 4 * (v & 0xf),
                        None => return 0,
                    }
                }
                c if c & 0x07 == libc::BPF_JMP => {
                    let cond = match code & 0xf0 {
                        op if op == libc::BPF_JEQ => a == ins.k,
                        op if op == libc::BPF_JGE => a >= ins.k,
                        op if op == libc::BPF_JGT => a > ins.k,
                        op if op == libc::BPF_JSET => a & ins.k != 0,
                        other => panic!("jump op {other:#x}"),
                    };
                    pc += usize::from(if cond { ins.jt } else { ins.jf });
                }
                other => panic!("opcode {other:#x}"),
            }
        }
    }

    fn tcp4(dport: u16, flags: u8, frag: u16, ihl: u8) -> Vec<u8> {
        let hl = usize::from(ihl) * 4;
        let mut p = vec![0u8; hl + 20];
        p[0] = 0x40 | ihl;
        p[6..8].copy_from_slice(&frag.to_be_bytes());
        p[9] = 6;
        p[hl + 2..hl + 4].copy_from_slice(&dport.to_be_bytes());
        p[hl + 13] = flags;
        p
    }

    #[test]
    fn tcp4_filter_accepts_acks_to_our_ports_only() {
        let f = tcp_filter(true, 61000, 65535);
        assert_ne!(run_bpf(&f, &tcp4(61000, 0x12, 0, 5)), 0, "syn-ack");
        assert_ne!(run_bpf(&f, &tcp4(65535, 0x14, 0, 5)), 0, "rst-ack");
        assert_ne!(
            run_bpf(&f, &tcp4(62000, 0x12, 0x4000, 6)),
            0,
            "DF set, IP options"
        );
        assert_eq!(run_bpf(&f, &tcp4(60999, 0x12, 0, 5)), 0, "below range");
        assert_eq!(run_bpf(&f, &tcp4(62000, 0x02, 0, 5)), 0, "our own SYN");
        assert_eq!(run_bpf(&f, &tcp4(62000, 0x04, 0, 5)), 0, "bare RST");
        assert_eq!(
            run_bpf(&f, &tcp4(62000, 0x12, 0x0001, 5)),
            0,
            "later fragment"
        );
        assert_eq!(run_bpf(&f, &tcp4(62000, 0x12, 0, 5)[..30]), 0, "truncated");
        let g = tcp_filter(true, 40000, 40010);
        assert_eq!(run_bpf(&g, &tcp4(40011, 0x12, 0, 5)), 0, "above range");
        assert_ne!(run_bpf(&g, &tcp4(40010, 0x12, 0, 5)), 0);
    }

    #[test]
    fn tcp6_filter_sees_tcp_header_first() {
        let f = tcp_filter(false, 61000, 65535);
        let mut seg = vec![0u8; 20];
        seg[2..4].copy_from_slice(&61001u16.to_be_bytes());
        seg[13] = 0x12;
        assert_ne!(run_bpf(&f, &seg), 0);
        seg[13] = 0x02;
        assert_eq!(run_bpf(&f, &seg), 0);
    }

    #[test]
    fn icmp4_filter_takes_unreachable_only() {
        let f = icmp4_filter();
        let mut p = vec![0x45u8; 28];
        p[20] = 3;
        assert_ne!(run_bpf(&f, &p), 0);
        p[20] = 0;
        assert_eq!(run_bpf(&f, &p), 0);
    }

    #[test]
    fn route_source_of_loopback_is_loopback() {
        assert!(
            route_source("127.0.0.1".parse().unwrap())
                .unwrap()
                .is_loopback()
        );
    }
}
