//! Which datagram each UDP port gets, and how its answer is read. A port of a
//! known protocol gets a request its servers answer; every other port gets an
//! empty datagram, which many services ignore (then the port stays
//! open|filtered) but a closed port still answers with ICMP port unreachable.

use scanfleet_common::{ServiceInfo, escape_bytes};

use super::{dns, ike, memcached, netbios, ntp, snmp, ssdp, tftp};

/// Bytes of an unrecognised answer kept as its banner.
const BANNER_MAX: usize = 256;

/// A protocol payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Payload {
    Dns,
    Ntp,
    Snmp,
    Memcached,
    Ssdp,
    Netbios,
    Ike,
    Mdns,
    Tftp,
    Empty,
}

impl Payload {
    /// Every payload, for tests and the fuzz targets.
    pub const ALL: [Payload; 10] = [
        Payload::Dns,
        Payload::Ntp,
        Payload::Snmp,
        Payload::Memcached,
        Payload::Ssdp,
        Payload::Netbios,
        Payload::Ike,
        Payload::Mdns,
        Payload::Tftp,
        Payload::Empty,
    ];

    /// The payload for a port, by the protocol registered on it.
    pub fn for_port(port: u16) -> Payload {
        match port {
            53 => Payload::Dns,
            123 => Payload::Ntp,
            161 => Payload::Snmp,
            11211 => Payload::Memcached,
            1900 => Payload::Ssdp,
            137 => Payload::Netbios,
            500 => Payload::Ike,
            5353 => Payload::Mdns,
            69 => Payload::Tftp,
            _ => Payload::Empty,
        }
    }

    /// The name in `ServiceInfo.extra["udp"]`: which payload got the answer.
    pub fn name(self) -> &'static str {
        match self {
            Payload::Dns => "dns",
            Payload::Ntp => "ntp",
            Payload::Snmp => "snmp",
            Payload::Memcached => "memcached",
            Payload::Ssdp => "ssdp",
            Payload::Netbios => "netbios",
            Payload::Ike => "ike",
            Payload::Mdns => "mdns",
            Payload::Tftp => "tftp",
            Payload::Empty => "empty",
        }
    }

    /// True when the server answers from another port than the one we sent
    /// to (TFTP answers from its transfer id).
    pub fn any_source_port(self) -> bool {
        self == Payload::Tftp
    }

    /// Every datagram of one attempt: one, but SNMP's two (v2c `public` and v3
    /// engine discovery, [`snmp`]). Each takes its own rate token.
    pub fn requests(self, nonce: u64) -> Vec<Vec<u8>> {
        match self {
            Payload::Snmp => vec![
                snmp::request(nonce as u32),
                snmp::discovery_request(nonce as u32),
            ],
            p => vec![p.request(nonce)],
        }
    }

    /// The (first) datagram to send; `nonce` (fresh per port) becomes the
    /// transaction id, cookie or timestamp an answer must echo.
    pub fn request(self, nonce: u64) -> Vec<u8> {
        match self {
            Payload::Dns => dns::version_bind_query(nonce as u16),
            Payload::Ntp => ntp::request(nonce),
            Payload::Snmp => snmp::request(nonce as u32),
            Payload::Memcached => memcached::request(nonce as u16),
            Payload::Ssdp => ssdp::request(),
            Payload::Netbios => netbios::request(nonce as u16),
            Payload::Ike => ike::request(nonce.to_be_bytes()),
            Payload::Mdns => dns::mdns_services_query(),
            Payload::Tftp => tftp::request(),
            Payload::Empty => Vec::new(),
        }
    }

    /// What an answer tells, when it is this protocol's answer to our request.
    pub fn parse(self, reply: &[u8], nonce: u64) -> Option<ServiceInfo> {
        match self {
            Payload::Dns => dns::parse_version_bind(reply, nonce as u16),
            Payload::Ntp => ntp::parse(reply),
            Payload::Snmp => snmp::parse(reply, nonce as u32)
                .or_else(|| snmp::parse_discovery(reply, nonce as u32)),
            Payload::Memcached => memcached::parse(reply, nonce as u16),
            Payload::Ssdp => ssdp::parse(reply),
            Payload::Netbios => netbios::parse(reply, nonce as u16),
            Payload::Ike => ike::parse(reply, nonce.to_be_bytes()),
            Payload::Mdns => dns::parse_mdns(reply),
            Payload::Tftp => tftp::parse(reply),
            Payload::Empty => None,
        }
    }

    /// The service of an open port from its answer: the parsed facts, or
    /// `unknown` with the answer as banner when it is not what we asked; either
    /// way with `extra.udp` naming the payload.
    pub fn describe(self, reply: &[u8], nonce: u64) -> ServiceInfo {
        let mut info = self.parse(reply, nonce).unwrap_or_else(|| ServiceInfo {
            name: "unknown".into(),
            banner: (!reply.is_empty()).then(|| escape_bytes(reply, BANNER_MAX)),
            ..ServiceInfo::default()
        });
        info.extra.insert("udp".into(), self.name().into());
        info
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_protocol_port_has_its_payload_and_others_get_an_empty_one() {
        for (port, p) in [
            (53, Payload::Dns),
            (123, Payload::Ntp),
            (161, Payload::Snmp),
            (11211, Payload::Memcached),
            (1900, Payload::Ssdp),
            (137, Payload::Netbios),
            (500, Payload::Ike),
            (5353, Payload::Mdns),
            (69, Payload::Tftp),
            (9, Payload::Empty),
        ] {
            assert_eq!(Payload::for_port(port), p);
        }
        assert!(Payload::Empty.request(1).is_empty());
        assert_eq!(Payload::Snmp.requests(1).len(), 2);
        assert_eq!(Payload::Dns.requests(1), vec![Payload::Dns.request(1)]);
        for p in Payload::ALL {
            if p != Payload::Empty {
                assert!(!p.request(42).is_empty(), "{p:?}");
            }
        }
    }

    #[test]
    fn an_unrecognised_answer_is_unknown_with_an_escaped_banner() {
        let info = Payload::Empty.describe(b"hi\x00\xff", 1);
        assert_eq!(info.name, "unknown");
        assert_eq!(info.banner.as_deref(), Some("hi\\x00\\xff"));
        assert_eq!(info.extra["udp"], "empty");
        let info = Payload::Dns.describe(b"garbage", 1);
        assert_eq!(
            (info.name.as_str(), info.extra["udp"].as_str()),
            ("unknown", "dns")
        );
    }
}
