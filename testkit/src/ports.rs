//! Loopback ports: spare ones, and waiting for a server to listen.

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A TCP port nothing listens on now on 127.0.0.1 (the kernel's pick; another
/// process may take it before the caller binds it, so servers started on it are
/// checked with [`wait_listening`] or a readiness probe of their own).
///
/// # Panics
/// When no loopback port can be bound at all.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free port on 127.0.0.1")
}

/// A free port `p` on 127.0.0.1 such that `p + offset` is free too (a RabbitMQ
/// node needs its distribution port next to its AMQP port).
///
/// # Panics
/// When 100 tries found no such pair.
pub fn free_port_pair(offset: u16) -> u16 {
    (0..100)
        .map(|_| free_port())
        .find(|p| {
            p.checked_add(offset)
                .is_some_and(|q| TcpListener::bind(("127.0.0.1", q)).is_ok())
        })
        .unwrap_or_else(|| panic!("no free port pair (p, p + {offset}) on 127.0.0.1"))
}

/// Wait until something accepts TCP on 127.0.0.1:`port`, polling every 100 ms
/// for at most `within`. Returns whether it did.
pub fn wait_listening(port: u16, within: Duration) -> bool {
    let until = Instant::now() + within;
    loop {
        let probe = Duration::from_millis(500);
        if TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), probe).is_ok() {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Wait until nothing accepts TCP on 127.0.0.1:`port` any more, for at most
/// `within`. Returns whether the port closed.
pub(crate) fn wait_closed(port: u16, within: Duration) -> bool {
    let until = Instant::now() + within;
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_free_and_waiting_sees_a_listener() {
        let p = free_port();
        assert!(!wait_listening(p, Duration::ZERO), "nothing on {p}");
        let l = TcpListener::bind(("127.0.0.1", p)).expect("the free port binds");
        assert!(wait_listening(p, Duration::from_secs(1)));
        drop(l);
        assert!(wait_closed(p, Duration::from_secs(1)));

        let q = free_port_pair(20000);
        TcpListener::bind(("127.0.0.1", q)).expect("first of the pair");
        TcpListener::bind(("127.0.0.1", q + 20000)).expect("second of the pair");
    }
}
