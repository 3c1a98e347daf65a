//! SYN probes out, replies in: building the probe and parsing what comes back.
//!
//! The parsers take arbitrary bytes (anything a raw socket hands us, truncated
//! or forged) and never panic: every offset is checked against the bytes that
//! actually arrived, never against a length field. They only *extract* the
//! fields; whether a reply answers one of our probes is decided by the cookie
//! check in [`super::cookie`].
//!
//! TCP checksums of replies are deliberately not verified: on loopback the
//! kernel hands raw sockets its own segments with `CHECKSUM_PARTIAL` (only the
//! pseudo-header sum filled in), and a corrupted reply fails the cookie check
//! anyway with probability 1 - 2^-32.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use pnet_packet::icmp::IcmpPacket;
use pnet_packet::icmpv6::Icmpv6Packet;
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv4::{self, Ipv4Packet, MutableIpv4Packet};
use pnet_packet::ipv6::{Ipv6Packet, MutableIpv6Packet};
use pnet_packet::tcp::{self, MutableTcpPacket, TcpFlags, TcpPacket};

/// TCP header of a probe: 20 bytes plus one MSS option (as nmap sends; some
/// stacks ignore a SYN without options).
pub const TCP_SYN_LEN: usize = 24;
/// An IPv4 SYN probe on the wire (no IP options).
pub const SYN_LEN_V4: usize = 20 + TCP_SYN_LEN;
/// An IPv6 SYN probe on the wire (no extension headers).
pub const SYN_LEN_V6: usize = 40 + TCP_SYN_LEN;
/// Window we advertise in probes (nmap's choice: small, unremarkable).
const PROBE_WINDOW: u16 = 1024;
const PROBE_TTL: u8 = 64;
const PROBE_MSS: u16 = 1460;

/// The fields that make one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe<A> {
    pub local: A,
    pub target: A,
    pub local_port: u16,
    pub target_port: u16,
    /// The SYN cookie.
    pub seq: u32,
}

/// Write the TCP part of a SYN (options included, checksum left at zero).
fn write_tcp_syn(tcp: &mut MutableTcpPacket<'_>, local_port: u16, target_port: u16, seq: u32) {
    tcp.set_source(local_port);
    tcp.set_destination(target_port);
    tcp.set_sequence(seq);
    tcp.set_acknowledgement(0);
    tcp.set_data_offset((TCP_SYN_LEN / 4) as u8);
    tcp.set_reserved(0);
    tcp.set_flags(TcpFlags::SYN);
    tcp.set_window(PROBE_WINDOW);
    tcp.set_checksum(0);
    tcp.set_urgent_ptr(0);
    let opts = tcp.get_options_raw_mut();
    if opts.len() >= 4 {
        opts[0] = 2; // kind: MSS
        opts[1] = 4; // length
        opts[2..4].copy_from_slice(&PROBE_MSS.to_be_bytes());
    }
}

/// Build a SYN of the family of `p`'s addresses into `buf` and return its
/// length, or 0 when `buf` is too short or the two addresses differ in family.
pub fn build_syn(buf: &mut [u8], p: &Probe<IpAddr>) -> usize {
    match (p.local, p.target) {
        (IpAddr::V4(local), IpAddr::V4(target)) => build_syn_v4(buf, &p.with(local, target)),
        (IpAddr::V6(local), IpAddr::V6(target)) => build_syn_v6(buf, &p.with(local, target)),
        _ => 0,
    }
}

impl<A> Probe<A> {
    /// The same ports and cookie between other addresses.
    fn with<B>(&self, local: B, target: B) -> Probe<B> {
        Probe {
            local,
            target,
            local_port: self.local_port,
            target_port: self.target_port,
            seq: self.seq,
        }
    }
}

/// Build an IPv4 SYN with correct IP and TCP checksums into `buf` and return
/// its length, or 0 when `buf` is shorter than [`SYN_LEN_V4`].
pub fn build_syn_v4(buf: &mut [u8], p: &Probe<Ipv4Addr>) -> usize {
    let header = |ip: &mut [u8]| {
        let mut ip = MutableIpv4Packet::new(ip)?;
        ip.set_version(4);
        ip.set_header_length(5);
        ip.set_total_length(SYN_LEN_V4 as u16);
        // Stateless but varied: the ID comes from the cookie, like masscan.
        ip.set_identification((p.seq >> 16) as u16 ^ p.seq as u16);
        ip.set_ttl(PROBE_TTL);
        ip.set_next_level_protocol(IpNextHeaderProtocols::Tcp);
        ip.set_source(p.local);
        ip.set_destination(p.target);
        let cs = ipv4::checksum(&ip.to_immutable());
        ip.set_checksum(cs);
        Some(())
    };
    build_syn_after(buf, SYN_LEN_V4, header, p, |tcp| {
        tcp::ipv4_checksum(tcp, &p.local, &p.target)
    })
}

/// Build an IPv6 SYN (header included, as an `IPPROTO_RAW` socket sends it)
/// into `buf` and return its length, or 0 when `buf` is too short.
pub fn build_syn_v6(buf: &mut [u8], p: &Probe<Ipv6Addr>) -> usize {
    let header = |ip: &mut [u8]| {
        let mut ip = MutableIpv6Packet::new(ip)?;
        ip.set_version(6);
        ip.set_flow_label(p.seq & 0xf_ffff);
        ip.set_payload_length(TCP_SYN_LEN as u16);
        ip.set_next_header(IpNextHeaderProtocols::Tcp);
        ip.set_hop_limit(PROBE_TTL);
        ip.set_source(p.local);
        ip.set_destination(p.target);
        Some(())
    };
    build_syn_after(buf, SYN_LEN_V6, header, p, |tcp| {
        tcp::ipv6_checksum(tcp, &p.local, &p.target)
    })
}

/// Zero the first `len` bytes of `buf`, write the IP header with `header` and
/// the TCP SYN after it, checksummed by `checksum`; `len`, or 0 when `buf` is
/// too short.
fn build_syn_after<A>(
    buf: &mut [u8],
    len: usize,
    header: impl FnOnce(&mut [u8]) -> Option<()>,
    p: &Probe<A>,
    checksum: impl FnOnce(&TcpPacket<'_>) -> u16,
) -> usize {
    let Some(buf) = buf.get_mut(..len) else {
        return 0;
    };
    buf.fill(0);
    let (ip, tcp) = buf.split_at_mut(len - TCP_SYN_LEN);
    if header(ip).is_none() {
        return 0;
    }
    let Some(mut tcp) = MutableTcpPacket::new(tcp) else {
        return 0;
    };
    write_tcp_syn(&mut tcp, p.local_port, p.target_port, p.seq);
    let cs = checksum(&tcp.to_immutable());
    tcp.set_checksum(cs);
    len
}

/// What a reply says about the probed port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// SYN+ACK: something listens.
    SynAck,
    /// RST+ACK: the host answered, nothing listens.
    Rst,
    /// ICMP destination unreachable quoting our probe (code kept for logs).
    Unreachable { code: u8 },
}

/// A reply reduced to what classification and cookie validation need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub kind: ReplyKind,
    /// The probed host (source of a TCP reply; destination quoted in an ICMP error).
    pub target: IpAddr,
    pub target_port: u16,
    /// Our address and source port as the reply names them.
    pub local: IpAddr,
    pub local_port: u16,
    /// The cookie the reply carries: `ack - 1` of a TCP reply, the quoted
    /// sequence number of an ICMP error.
    pub cookie: u32,
}

/// Classify a TCP segment from `target` to `local`: `None` unless it is a
/// SYN-ACK or an RST-ACK (a bare SYN is our own probe seen on loopback; a bare
/// RST is our kernel resetting a SYN-ACK, neither answers a probe).
fn classify_tcp(seg: &[u8], target: IpAddr, local: IpAddr) -> Option<Reply> {
    let tcp = TcpPacket::new(seg)?;
    let flags = tcp.get_flags();
    if flags & TcpFlags::ACK == 0 {
        return None;
    }
    let kind = if flags & TcpFlags::RST != 0 {
        ReplyKind::Rst
    } else if flags & TcpFlags::SYN != 0 {
        ReplyKind::SynAck
    } else {
        return None;
    };
    Some(Reply {
        kind,
        target,
        target_port: tcp.get_source(),
        local,
        local_port: tcp.get_destination(),
        cookie: tcp.get_acknowledgement().wrapping_sub(1),
    })
}

/// The IPv4 header length of `pkt` if it is a plausible IPv4 header that fits.
fn ipv4_header(pkt: &[u8]) -> Option<(Ipv4Packet<'_>, usize)> {
    let ip = Ipv4Packet::new(pkt)?;
    let ihl = usize::from(ip.get_header_length()) * 4;
    if ip.get_version() != 4 || ihl < 20 || ihl > pkt.len() {
        return None;
    }
    Some((ip, ihl))
}

/// Parse what an `AF_INET`/`IPPROTO_TCP` raw socket delivers: an IPv4 packet,
/// header included, possibly truncated to the receive buffer.
pub fn parse_tcp_v4(pkt: &[u8]) -> Option<Reply> {
    let (ip, ihl) = ipv4_header(pkt)?;
    if ip.get_next_level_protocol() != IpNextHeaderProtocols::Tcp {
        return None;
    }
    // A fragment other than the first carries no TCP header.
    if ip.get_fragment_offset() != 0 {
        return None;
    }
    classify_tcp(
        pkt.get(ihl..)?,
        IpAddr::V4(ip.get_source()),
        IpAddr::V4(ip.get_destination()),
    )
}

/// Parse what an `AF_INET`/`IPPROTO_ICMP` raw socket delivers: an IPv4 packet
/// holding an ICMP destination-unreachable that quotes one of our TCP probes
/// (quoted IPv4 header and at least the first 8 TCP bytes: ports and sequence).
pub fn parse_icmp_v4(pkt: &[u8]) -> Option<Reply> {
    let (ip, ihl) = ipv4_header(pkt)?;
    if ip.get_next_level_protocol() != IpNextHeaderProtocols::Icmp {
        return None;
    }
    let icmp_bytes = pkt.get(ihl..)?;
    let icmp = IcmpPacket::new(icmp_bytes)?;
    let code = icmp.get_icmp_code().0;
    // Type 3 = destination unreachable; code 4 (fragmentation needed) is about
    // the size of our packet, not about the port.
    if icmp.get_icmp_type().0 != 3 || code == 4 {
        return None;
    }
    // 4 bytes type/code/checksum + 4 unused (or next-hop MTU), then the quote.
    let quoted = icmp_bytes.get(8..)?;
    let (qip, qihl) = ipv4_header(quoted)?;
    if qip.get_next_level_protocol() != IpNextHeaderProtocols::Tcp || qip.get_fragment_offset() != 0
    {
        return None;
    }
    unreachable(
        code,
        IpAddr::V4(qip.get_source()),
        IpAddr::V4(qip.get_destination()),
        quoted.get(qihl..)?,
    )
}

/// Parse what an `AF_INET6`/`IPPROTO_TCP` raw socket delivers: the TCP segment
/// alone (IPv6 raw sockets strip the IP header); `source` comes from the
/// socket address of the datagram and `local` from the probe plan.
pub fn parse_tcp_v6(seg: &[u8], source: Ipv6Addr, local: Ipv6Addr) -> Option<Reply> {
    classify_tcp(seg, IpAddr::V6(source), IpAddr::V6(local))
}

/// Parse what an `AF_INET6`/`IPPROTO_ICMPV6` raw socket delivers: an ICMPv6
/// message (no IPv6 header); a destination unreachable (type 1) that quotes
/// an IPv6 header without extension headers and 8 bytes of our TCP probe.
pub fn parse_icmp_v6(msg: &[u8]) -> Option<Reply> {
    let icmp = Icmpv6Packet::new(msg)?;
    if icmp.get_icmpv6_type().0 != 1 {
        return None;
    }
    let code = icmp.get_icmpv6_code().0;
    let quoted = msg.get(8..)?;
    let qip = Ipv6Packet::new(quoted)?;
    if qip.get_version() != 6 || qip.get_next_header() != IpNextHeaderProtocols::Tcp {
        return None;
    }
    unreachable(
        code,
        IpAddr::V6(qip.get_source()),
        IpAddr::V6(qip.get_destination()),
        quoted.get(40..)?,
    )
}

/// An unreachable with `code` about the probe from `local` to `target` whose
/// TCP header starts `qtcp` (at least its first 8 bytes: ports and sequence).
fn unreachable(code: u8, local: IpAddr, target: IpAddr, qtcp: &[u8]) -> Option<Reply> {
    let qtcp = qtcp.get(..8)?;
    Some(Reply {
        kind: ReplyKind::Unreachable { code },
        target,
        target_port: u16::from_be_bytes([qtcp[2], qtcp[3]]),
        local,
        local_port: u16::from_be_bytes([qtcp[0], qtcp[1]]),
        cookie: u32::from_be_bytes([qtcp[4], qtcp[5], qtcp[6], qtcp[7]]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn probe<A>(local: A, target: A, local_port: u16, target_port: u16, seq: u32) -> Probe<A> {
        Probe {
            local,
            target,
            local_port,
            target_port,
            seq,
        }
    }

    /// A probe from fd00::1 port 61001 to fd00::2 port 22.
    fn v6_probe(seq: u32) -> Probe<Ipv6Addr> {
        let v6 = |s: &str| s.parse().unwrap();
        probe(v6("fd00::1"), v6("fd00::2"), 61001, 22, seq)
    }

    #[test]
    fn syn_of_either_family_and_never_of_mixed_ones() {
        let (a, b) = (v4([10, 0, 0, 1]), v4([10, 0, 0, 2]));
        let mut buf = [0u8; SYN_LEN_V6];
        let mixed = probe(IpAddr::V4(a), "fd00::2".parse().unwrap(), 61000, 443, 1);
        assert_eq!(build_syn(&mut buf, &mixed), 0);
        let p4 = probe(a, b, 61000, 443, 1);
        let wide = probe(IpAddr::V4(a), IpAddr::V4(b), 61000, 443, 1);
        assert_eq!(build_syn(&mut buf, &wide), SYN_LEN_V4);
        let mut want = [0u8; SYN_LEN_V4];
        build_syn_v4(&mut want, &p4);
        assert_eq!(&buf[..SYN_LEN_V4], &want);
        let p6 = v6_probe(1);
        let wide = probe(IpAddr::V6(p6.local), IpAddr::V6(p6.target), 61001, 22, 1);
        assert_eq!(build_syn(&mut buf, &wide), SYN_LEN_V6);
        let mut want = [0u8; SYN_LEN_V6];
        build_syn_v6(&mut want, &p6);
        assert_eq!(buf, want);
    }

    fn v4(a: [u8; 4]) -> Ipv4Addr {
        Ipv4Addr::from(a)
    }

    /// A reply as a Linux stack would send it to one of our probes.
    pub(crate) fn reply_v4(p: &Probe<Ipv4Addr>, flags: u8, ack: u32) -> Vec<u8> {
        let mut buf = vec![0u8; 20 + 20];
        {
            let mut ip = MutableIpv4Packet::new(&mut buf).unwrap();
            ip.set_version(4);
            ip.set_header_length(5);
            ip.set_total_length(40);
            ip.set_ttl(64);
            ip.set_next_level_protocol(IpNextHeaderProtocols::Tcp);
            ip.set_source(p.target);
            ip.set_destination(p.local);
        }
        let mut tcp = MutableTcpPacket::new(&mut buf[20..]).unwrap();
        tcp.set_source(p.target_port);
        tcp.set_destination(p.local_port);
        tcp.set_acknowledgement(ack);
        tcp.set_sequence(0xdead_beef);
        tcp.set_data_offset(5);
        tcp.set_flags(flags);
        buf
    }

    #[test]
    fn syn_v4_has_valid_checksums_and_fields() {
        let p = probe(
            v4([10, 0, 0, 1]),
            v4([10, 0, 0, 2]),
            61000,
            443,
            0x1234_5678,
        );
        let mut buf = [0u8; 64];
        assert_eq!(build_syn_v4(&mut buf, &p), SYN_LEN_V4);
        let pkt = &buf[..SYN_LEN_V4];
        // Internet checksum over a header that includes its checksum folds to 0.
        assert_eq!(
            pnet_packet::util::checksum(&pkt[..20], 5),
            u16::from_be_bytes([pkt[10], pkt[11]])
        );
        let ip = Ipv4Packet::new(pkt).unwrap();
        assert_eq!(ip.get_checksum(), ipv4::checksum(&ip));
        let tcp = TcpPacket::new(&pkt[20..]).unwrap();
        assert_eq!(
            tcp.get_checksum(),
            tcp::ipv4_checksum(&tcp, &p.local, &p.target)
        );
        assert_ne!(tcp.get_checksum(), 0);
        assert_eq!(tcp.get_flags(), TcpFlags::SYN);
        assert_eq!(tcp.get_sequence(), p.seq);
        assert_eq!((tcp.get_source(), tcp.get_destination()), (61000, 443));
        assert_eq!(ip.get_total_length() as usize, SYN_LEN_V4);
        assert_eq!(&pkt[40..44], &[2, 4, 0x05, 0xb4]);
    }

    #[test]
    fn syn_v6_has_valid_checksum() {
        let p = v6_probe(7);
        let mut buf = [0u8; SYN_LEN_V6];
        assert_eq!(build_syn_v6(&mut buf, &p), SYN_LEN_V6);
        let ip = Ipv6Packet::new(&buf).unwrap();
        assert_eq!(ip.get_payload_length() as usize, TCP_SYN_LEN);
        let tcp = TcpPacket::new(&buf[40..]).unwrap();
        assert_eq!(
            tcp.get_checksum(),
            tcp::ipv6_checksum(&tcp, &p.local, &p.target)
        );
    }

    #[test]
    fn short_buffers_build_nothing() {
        let p = probe(v4([1, 1, 1, 1]), v4([2, 2, 2, 2]), 1, 2, 3);
        assert_eq!(build_syn_v4(&mut [0u8; 43], &p), 0);
    }

    #[test]
    fn parses_syn_ack_rst_and_ignores_the_rest() {
        let p = probe(v4([127, 0, 0, 1]), v4([127, 0, 0, 1]), 61000, 80, 99);
        let synack = parse_tcp_v4(&reply_v4(&p, TcpFlags::SYN | TcpFlags::ACK, 100)).unwrap();
        assert_eq!(synack.kind, ReplyKind::SynAck);
        assert_eq!(
            (synack.target_port, synack.local_port, synack.cookie),
            (80, 61000, 99)
        );
        let rst = parse_tcp_v4(&reply_v4(&p, TcpFlags::RST | TcpFlags::ACK, 100)).unwrap();
        assert_eq!(rst.kind, ReplyKind::Rst);
        // Our own SYN seen on loopback, and our kernel's bare RST: not replies.
        let mut own = [0u8; SYN_LEN_V4];
        build_syn_v4(&mut own, &p);
        assert_eq!(parse_tcp_v4(&own), None);
        assert_eq!(parse_tcp_v4(&reply_v4(&p, TcpFlags::RST, 0)), None);
        assert_eq!(parse_tcp_v4(&reply_v4(&p, TcpFlags::ACK, 100)), None);
    }

    #[test]
    fn parses_icmp_unreachable_quoting_our_probe() {
        let p = probe(
            v4([10, 214, 0, 1]),
            v4([10, 214, 0, 2]),
            62000,
            3306,
            0xabcd_ef01,
        );
        let mut syn = [0u8; SYN_LEN_V4];
        build_syn_v4(&mut syn, &p);
        let mut pkt = vec![0u8; 20 + 8];
        {
            let mut ip = MutableIpv4Packet::new(&mut pkt).unwrap();
            ip.set_version(4);
            ip.set_header_length(5);
            ip.set_next_level_protocol(IpNextHeaderProtocols::Icmp);
            ip.set_source(p.target);
            ip.set_destination(p.local);
        }
        pkt[20] = 3; // destination unreachable
        pkt[21] = 13; // administratively prohibited
        // Routers quote the IP header and 8 bytes; Linux quotes more.
        for quote in [28usize, SYN_LEN_V4] {
            let mut full = pkt.clone();
            full.extend_from_slice(&syn[..quote]);
            let r = parse_icmp_v4(&full).unwrap();
            assert_eq!(r.kind, ReplyKind::Unreachable { code: 13 });
            assert_eq!(
                (r.target, r.target_port, r.local, r.local_port, r.cookie),
                (
                    IpAddr::V4(p.target),
                    3306,
                    IpAddr::V4(p.local),
                    62000,
                    p.seq
                )
            );
        }
        let mut short = pkt.clone();
        short.extend_from_slice(&syn[..27]);
        assert_eq!(parse_icmp_v4(&short), None);
        let mut frag_needed = pkt.clone();
        frag_needed[21] = 4;
        frag_needed.extend_from_slice(&syn);
        assert_eq!(parse_icmp_v4(&frag_needed), None);
    }

    #[test]
    fn parses_icmpv6_unreachable() {
        let p = v6_probe(0x0102_0304);
        let mut syn = [0u8; SYN_LEN_V6];
        build_syn_v6(&mut syn, &p);
        let mut msg = vec![1u8, 1, 0, 0, 0, 0, 0, 0];
        msg.extend_from_slice(&syn);
        let r = parse_icmp_v6(&msg).unwrap();
        assert_eq!(
            (r.target, r.target_port, r.local_port, r.cookie),
            (IpAddr::V6(p.target), 22, 61001, p.seq)
        );
        assert_eq!(parse_icmp_v6(&msg[..8 + 47]), None);
    }

    proptest! {
        #[test]
        fn build_then_parse_roundtrips(local in any::<[u8; 4]>(), target in any::<[u8; 4]>(), lp in any::<u16>(), tp in any::<u16>(), seq in any::<u32>()) {
            let p = Probe { local: v4(local), target: v4(target), local_port: lp, target_port: tp, seq };
            let mut buf = [0u8; SYN_LEN_V4];
            prop_assert_eq!(build_syn_v4(&mut buf, &p), SYN_LEN_V4);
            let ip = Ipv4Packet::new(&buf).unwrap();
            prop_assert_eq!(ip.get_checksum(), ipv4::checksum(&ip));
            let tcp = TcpPacket::new(&buf[20..]).unwrap();
            prop_assert_eq!(tcp.get_checksum(), tcp::ipv4_checksum(&tcp, &p.local, &p.target));
            // The target's SYN-ACK parses back to the probe's fields.
            let r = parse_tcp_v4(&reply_v4(&p, TcpFlags::SYN | TcpFlags::ACK, seq.wrapping_add(1))).unwrap();
            prop_assert_eq!((r.target, r.target_port, r.local, r.local_port, r.cookie), (IpAddr::V4(p.target), tp, IpAddr::V4(p.local), lp, seq));
        }

        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_tcp_v4(&bytes);
            let _ = parse_icmp_v4(&bytes);
            let _ = parse_tcp_v6(&bytes, Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST);
            let _ = parse_icmp_v6(&bytes);
        }

        /// Random bytes behind plausible headers reach the deeper branches.
        #[test]
        fn parsers_never_panic_on_plausible_headers(ihl in 0u8..16, proto in prop_oneof![Just(1u8), Just(6u8), any::<u8>()], rest in proptest::collection::vec(any::<u8>(), 0..120), cut in 0usize..160) {
            let mut pkt = vec![0x40 | ihl, 0, 0, 0, 0, 0, 0, 0, 64, proto, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
            pkt.extend_from_slice(&rest);
            if rest.len() > 8 {
                let at = 20.min(pkt.len() - 1);
                pkt[at] = 3;
            }
            let pkt = &pkt[..cut.min(pkt.len())];
            let _ = parse_tcp_v4(pkt);
            let _ = parse_icmp_v4(pkt);
            let _ = parse_icmp_v6(pkt);
        }
    }
}
