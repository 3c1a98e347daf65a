//! SYN cookies: the TCP sequence number of a probe is a keyed hash of the
//! connection it opens, so a reply is validated from its own fields with no
//! per-probe state (masscan's and ZMap's design).
//!
//! The key is fresh per scan (the request seed mixed with process randomness),
//! so replies to another scan, another worker or an earlier run of the same
//! shard are rejected, and an off-path host cannot forge an "open" port
//! without guessing 32 bits.

use std::hash::Hasher;
use std::net::IpAddr;

use siphasher::sip::SipHasher13;

use super::packet::Reply;

/// The per-scan SipHash key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CookieKey {
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is what makes replies unforgeable: keep it out of logs.
        f.write_str("CookieKey(..)")
    }
}

impl CookieKey {
    /// A key for one scan: `seed` (from the request) mixed with fresh randomness,
    /// so two runs of the same shard never accept each other's replies.
    pub fn for_scan(seed: u64) -> Self {
        CookieKey {
            k0: seed ^ rand::random::<u64>(),
            k1: rand::random(),
        }
    }

    /// A fixed key (tests, reproducible benchmarks).
    pub fn from_keys(k0: u64, k1: u64) -> Self {
        CookieKey { k0, k1 }
    }

    /// The sequence number of the probe `local:local_port -> target:target_port`.
    pub fn cookie(&self, local: IpAddr, target: IpAddr, target_port: u16, local_port: u16) -> u32 {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        match (local, target) {
            (IpAddr::V4(l), IpAddr::V4(t)) => {
                h.write_u64((u64::from(l.to_bits()) << 32) | u64::from(t.to_bits()));
            }
            (l, t) => {
                // Mixed families never match a probe; the tag keeps them apart.
                h.write_u8(6);
                h.write(&ip_bytes(l));
                h.write(&ip_bytes(t));
            }
        }
        h.write_u32((u32::from(target_port) << 16) | u32::from(local_port));
        let x = h.finish();
        (x ^ (x >> 32)) as u32
    }

    /// True when `r` answers a probe made with this key: its cookie (ack - 1 of
    /// a SYN-ACK or RST-ACK, or the sequence number quoted in an ICMP error)
    /// matches the hash of the addresses and ports it names.
    pub fn validates(&self, r: &Reply) -> bool {
        r.cookie == self.cookie(r.local, r.target, r.target_port, r.local_port)
    }
}

fn ip_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::syn::packet::ReplyKind;
    use proptest::prelude::*;

    fn reply(key: &CookieKey, local: IpAddr, target: IpAddr, tp: u16, lp: u16) -> Reply {
        Reply {
            kind: ReplyKind::SynAck,
            target,
            target_port: tp,
            local,
            local_port: lp,
            cookie: key.cookie(local, target, tp, lp),
        }
    }

    proptest! {
        #[test]
        fn exact_reply_validates_and_any_change_does_not(k0 in any::<u64>(), k1 in any::<u64>(), l in any::<u32>(), t in any::<u32>(), tp in any::<u16>(), lp in any::<u16>(), delta in 1u32..) {
            let key = CookieKey::from_keys(k0, k1);
            let other = IpAddr::from((t ^ delta).to_be_bytes());
            let (l, t) = (IpAddr::from(l.to_be_bytes()), IpAddr::from(t.to_be_bytes()));
            let good = reply(&key, l, t, tp, lp);
            prop_assert!(key.validates(&good));
            // Another ack.
            let bad_ack = Reply { cookie: good.cookie.wrapping_add(delta), ..good };
            prop_assert!(!key.validates(&bad_ack));
            // Another source port, target port, or address. (A 2^-32 collision
            // would fail this test; proptest's runs make that negligible.)
            let bad_lp = Reply { local_port: lp.wrapping_add(delta as u16 | 1), ..good };
            prop_assert!(!key.validates(&bad_lp));
            let bad_tp = Reply { target_port: tp.wrapping_add(delta as u16 | 1), ..good };
            prop_assert!(!key.validates(&bad_tp));
            let bad_target = Reply { target: other, ..good };
            prop_assert!(!key.validates(&bad_target));
            let bad_local = Reply { local: other, ..good };
            prop_assert!(!key.validates(&bad_local) || other == l);
            // Another key (another scan).
            prop_assert!(!CookieKey::from_keys(k0 ^ 1, k1).validates(&good));
        }
    }

    #[test]
    fn scans_get_different_keys() {
        assert_ne!(CookieKey::for_scan(1), CookieKey::for_scan(1));
        assert_eq!(format!("{:?}", CookieKey::from_keys(1, 2)), "CookieKey(..)");
    }

    #[test]
    fn v6_cookies_depend_on_every_byte() {
        let key = CookieKey::from_keys(3, 4);
        let a: IpAddr = "fd00::1".parse().unwrap();
        let b: IpAddr = "fd00::2".parse().unwrap();
        let c: IpAddr = "fd00:1::2".parse().unwrap();
        assert_ne!(key.cookie(a, b, 80, 61000), key.cookie(a, c, 80, 61000));
        assert!(key.validates(&reply(&key, a, b, 80, 61000)));
    }
}
