//! Round-trip times without per-probe state.
//!
//! The source port of a probe is picked by a clock: `first + (ms since the
//! scan started) mod range`. Every kind of reply echoes our source port (the
//! destination port of a SYN-ACK or RST, the quoted source port of an ICMP
//! error), so the receive path reads the send time back out of the reply and
//! gets an RTT sample for every answer, closed ports included, with 1 ms
//! resolution. The clock wraps every `range` ms (4.5 s for the default range);
//! samples are only trusted when the range spans at least [`MIN_CLOCK_SLOTS`] ms,
//! and an RTT longer than a wrap reads short, which only makes the next wait
//! shorter and costs a retransmit.
//!
//! Samples feed an RFC 6298 estimator; the wait after each pass is
//! `srtt + 4 * rttvar`, bounded by the profile's timeout above and by a
//! configurable floor below.

use std::time::{Duration, Instant};

/// Smallest source-port range whose wrap-around (in ms) we trust for RTT samples.
pub const MIN_CLOCK_SLOTS: u32 = 1000;

/// Source ports as a millisecond clock.
#[derive(Debug, Clone, Copy)]
pub struct PortClock {
    epoch: Instant,
    first: u16,
    slots: u32,
}

impl PortClock {
    /// A clock over `first..=last` (swapped when given backwards).
    pub fn new(epoch: Instant, first: u16, last: u16) -> Self {
        let (first, last) = if first <= last {
            (first, last)
        } else {
            (last, first)
        };
        PortClock {
            epoch,
            first,
            slots: u32::from(last - first) + 1,
        }
    }

    pub fn first(&self) -> u16 {
        self.first
    }

    pub fn last(&self) -> u16 {
        (u32::from(self.first) + self.slots - 1) as u16
    }

    fn slot_at(&self, now: Instant) -> u32 {
        (now.saturating_duration_since(self.epoch).as_millis() % u128::from(self.slots)) as u32
    }

    /// The source port for a probe sent at `now`.
    pub fn port_at(&self, now: Instant) -> u16 {
        (u32::from(self.first) + self.slot_at(now)) as u16
    }

    /// How long ago (mod the wrap) a probe from `port` was sent, if `port` is
    /// ours and the range is wide enough to trust.
    pub fn age(&self, port: u16, now: Instant) -> Option<Duration> {
        if self.slots < MIN_CLOCK_SLOTS
            || port < self.first
            || u32::from(port - self.first) >= self.slots
        {
            return None;
        }
        let sent = u32::from(port - self.first);
        let ms = (self.slot_at(now) + self.slots - sent) % self.slots;
        Some(Duration::from_millis(u64::from(ms)))
    }
}

/// RFC 6298 smoothed RTT.
#[derive(Debug, Clone, Copy, Default)]
pub struct RttEstimator {
    srtt_us: f64,
    rttvar_us: f64,
    samples: u64,
}

impl RttEstimator {
    pub fn sample(&mut self, rtt: Duration) {
        // The port clock has 1 ms steps: count a sample as the middle of its step.
        let r = rtt.as_secs_f64() * 1e6 + 500.0;
        if self.samples == 0 {
            self.srtt_us = r;
            self.rttvar_us = r / 2.0;
        } else {
            self.rttvar_us = 0.75 * self.rttvar_us + 0.25 * (self.srtt_us - r).abs();
            self.srtt_us = 0.875 * self.srtt_us + 0.125 * r;
        }
        self.samples += 1;
    }

    pub fn samples(&self) -> u64 {
        self.samples
    }

    pub fn srtt(&self) -> Option<Duration> {
        (self.samples > 0).then(|| Duration::from_secs_f64(self.srtt_us / 1e6))
    }

    /// How long to wait for answers to the last probe of a pass: `srtt + 4 *
    /// rttvar` clamped to `floor..=ceiling`, or `ceiling` before any sample.
    pub fn rto(&self, floor: Duration, ceiling: Duration) -> Duration {
        let floor = floor.min(ceiling);
        if self.samples == 0 {
            return ceiling;
        }
        Duration::from_secs_f64((self.srtt_us + 4.0 * self.rttvar_us) / 1e6).clamp(floor, ceiling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_encode_send_time() {
        let epoch = Instant::now();
        let c = PortClock::new(epoch, 61000, 65535);
        assert_eq!(c.port_at(epoch), 61000);
        let sent = epoch + Duration::from_millis(4535);
        assert_eq!(c.port_at(sent), 65535);
        assert_eq!(
            c.port_at(epoch + Duration::from_millis(4536)),
            61000,
            "wraps"
        );
        let now = sent + Duration::from_millis(17);
        assert_eq!(c.age(c.port_at(sent), now), Some(Duration::from_millis(17)));
        assert_eq!(c.age(60999, now), None);
        assert_eq!((c.first(), c.last()), (61000, 65535));
        let narrow = PortClock::new(epoch, 40000, 40100);
        assert_eq!(narrow.age(40000, now), None, "too narrow to trust");
        assert!((40000..=40100).contains(&narrow.port_at(now)));
    }

    #[test]
    fn rto_follows_samples_within_bounds() {
        let (floor, ceil) = (Duration::from_millis(100), Duration::from_secs(1));
        let mut e = RttEstimator::default();
        assert_eq!(e.rto(floor, ceil), ceil, "no sample: the profile timeout");
        for _ in 0..50 {
            e.sample(Duration::from_millis(0));
        }
        assert_eq!(e.rto(floor, ceil), floor);
        for _ in 0..50 {
            e.sample(Duration::from_millis(200));
        }
        let rto = e.rto(floor, ceil);
        assert!(rto > Duration::from_millis(200) && rto < ceil, "{rto:?}");
        for _ in 0..50 {
            e.sample(Duration::from_secs(5));
        }
        assert_eq!(e.rto(floor, ceil), ceil);
        assert_eq!(
            e.rto(Duration::from_secs(2), ceil),
            ceil,
            "floor above ceiling"
        );
    }
}
