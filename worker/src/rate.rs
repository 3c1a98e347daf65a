//! Token buckets for probe pacing: one global cap per worker and one budget per
//! target, both in packets (or connection attempts) per second.

use std::time::Duration;

use tokio::time::Instant;

/// A token bucket refilled continuously at `rate` tokens per second, holding at
/// most `burst` tokens.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// `rate_pps` of 0 is treated as 1 so that a bucket always drains eventually.
    pub fn new(rate_pps: u32, burst: u32) -> Self {
        let rate = f64::from(rate_pps.max(1));
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// A bucket whose burst is a 1/50 s worth of tokens (at least 1): smooth pacing.
    pub fn smooth(rate_pps: u32) -> Self {
        Self::new(rate_pps, (rate_pps / 50).max(1))
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.last = now;
    }

    /// Take `n` tokens if they are there.
    pub fn try_take(&mut self, n: u32, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= f64::from(n) {
            self.tokens -= f64::from(n);
            true
        } else {
            false
        }
    }

    /// How long until `n` tokens are available (zero if they are now).
    pub fn wait_for(&mut self, n: u32, now: Instant) -> Duration {
        self.refill(now);
        let missing = f64::from(n) - self.tokens;
        if missing <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(missing / self.rate)
        }
    }

    /// Wait until `n` tokens are available, then take them.
    pub async fn take(&mut self, n: u32) {
        loop {
            let now = Instant::now();
            if self.try_take(n, now) {
                return;
            }
            tokio::time::sleep(self.wait_for(n, now).max(Duration::from_micros(50))).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn paces_to_rate() {
        let mut b = TokenBucket::new(100, 10);
        let start = Instant::now();
        for _ in 0..110 {
            b.take(1).await;
        }
        // 10 from the burst, 100 more at 100/s.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(990) && took <= Duration::from_millis(1100),
            "{took:?}"
        );
    }

    #[test]
    fn never_exceeds_burst() {
        let mut b = TokenBucket::new(1000, 5);
        let later = Instant::now() + Duration::from_secs(10);
        assert!(b.try_take(5, later));
        assert!(!b.try_take(1, later));
    }
}
