//! Probe pacing: token buckets (one global cap per worker and one budget per
//! target, both in packets or connection attempts per second) and the
//! per-target adaptive controller of the SYN engine ([`Aimd`]).

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

    /// Change the rate (0 is treated as 1), keeping the tokens already there
    /// (at most the new burst of 1/50 s).
    pub fn set_rate(&mut self, rate_pps: u32, now: Instant) {
        self.refill(now);
        self.rate = f64::from(rate_pps.max(1));
        self.burst = (self.rate / 50.0).max(1.0);
        self.tokens = self.tokens.min(self.burst);
    }

    /// The current rate, tokens per second.
    pub fn rate(&self) -> f64 {
        self.rate
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

/// Settings of the [`Aimd`] controller.
#[derive(Debug, Clone, Copy)]
pub struct AimdParams {
    /// Shortest time between two decisions about one target.
    pub interval: Duration,
    /// Fewest probes a window needs before its answer ratio is judged.
    pub min_samples: u64,
    /// Multiplicative decrease on a drop (0.5 halves the rate).
    pub decrease: f64,
    /// Additive increase per clean window, as a share of the ceiling.
    pub increase: f64,
    /// A window's answer ratio may fall this far below the best window's
    /// (relative, plus three binomial standard deviations) before it is a drop.
    pub tolerance: f64,
}

impl Default for AimdParams {
    fn default() -> Self {
        AimdParams {
            interval: Duration::from_millis(200),
            min_samples: 64,
            decrease: 0.5,
            increase: 0.1,
            tolerance: 0.1,
        }
    }
}

/// One target's rate, adapted like TCP's (and nmap's) congestion control:
/// additive increase, multiplicative decrease.
///
/// The signal is the *answer ratio* of the target over a window: answers
/// (SYN-ACK, RST, ICMP unreachable) received / probes sent. The probe order is
/// a random permutation of the target's ports, so on a target that keeps up the
/// ratio is stationary (its share of answering ports: closed and open ports
/// answer, filtered ones do not), and a target, or a path, that starts dropping
/// under the rate shows as a ratio below the best window seen. Random loss that
/// does not depend on the rate lowers every window alike and causes no back-off:
/// it is the retransmission model's business, not the controller's.
///
/// * start at `start` (the target's budget);
/// * every window of at least [`AimdParams::interval`] and
///   [`AimdParams::min_samples`] probes: a drop multiplies the rate by
///   [`AimdParams::decrease`] (never below `floor`), a clean window adds
///   [`AimdParams::increase`] x `ceiling` (never above `ceiling`);
/// * [`Aimd::new_pass`] forgets the best ratio: a retransmission pass probes
///   only silent ports, whose ratio is not comparable with the first pass's.
#[derive(Debug, Clone)]
pub struct Aimd {
    params: AimdParams,
    rate: f64,
    floor: f64,
    ceiling: f64,
    best: Option<f64>,
    window_start: Instant,
    sent_at_start: u64,
    answered_at_start: u64,
    backoffs: u32,
    max_rate: f64,
}

impl Aimd {
    /// A controller starting at `start_pps`, adapting within
    /// `floor_pps..=ceiling_pps` (`start` is clamped into that range).
    pub fn new(
        start_pps: u32,
        floor_pps: u32,
        ceiling_pps: u32,
        params: AimdParams,
        now: Instant,
    ) -> Self {
        let ceiling = f64::from(ceiling_pps.max(1));
        let floor = f64::from(floor_pps.max(1)).min(ceiling);
        let rate = f64::from(start_pps).clamp(floor, ceiling);
        Aimd {
            params,
            rate,
            floor,
            ceiling,
            best: None,
            window_start: now,
            sent_at_start: 0,
            answered_at_start: 0,
            backoffs: 0,
            max_rate: rate,
        }
    }

    /// The rate to pace the target at now, packets per second.
    pub fn rate_pps(&self) -> u32 {
        self.rate as u32
    }

    /// The highest rate used so far.
    pub fn max_rate_pps(&self) -> u32 {
        self.max_rate as u32
    }

    /// How many times the rate was cut.
    pub fn backoffs(&self) -> u32 {
        self.backoffs
    }

    /// Forget the best ratio and start a new window (a new pass begins).
    pub fn new_pass(&mut self, now: Instant, sent_total: u64, answered_total: u64) {
        self.best = None;
        self.restart(now, sent_total, answered_total);
    }

    fn restart(&mut self, now: Instant, sent: u64, answered: u64) {
        self.window_start = now;
        self.sent_at_start = sent;
        self.answered_at_start = answered;
    }

    /// Feed the target's running totals of probes sent and answers received.
    /// Returns the new rate when this call changed it.
    pub fn observe(&mut self, now: Instant, sent_total: u64, answered_total: u64) -> Option<u32> {
        if now.saturating_duration_since(self.window_start) < self.params.interval {
            return None;
        }
        let sent = sent_total.saturating_sub(self.sent_at_start);
        if sent < self.params.min_samples {
            return None;
        }
        let answered = answered_total.saturating_sub(self.answered_at_start);
        let ratio = (answered as f64 / sent as f64).min(1.0);
        self.restart(now, sent_total, answered_total);
        let before = self.rate;
        match self.best {
            None => {
                self.best = Some(ratio);
                self.grow();
            }
            Some(best) => {
                let noise = 3.0 * (best * (1.0 - best) / sent as f64).sqrt();
                if ratio < best * (1.0 - self.params.tolerance) - noise {
                    self.rate = (self.rate * self.params.decrease).max(self.floor);
                    self.backoffs += 1;
                } else {
                    self.best = Some(best.max(ratio));
                    self.grow();
                }
            }
        }
        self.max_rate = self.max_rate.max(self.rate);
        (self.rate != before).then(|| self.rate_pps())
    }

    fn grow(&mut self) {
        self.rate = (self.rate + self.params.increase * self.ceiling).min(self.ceiling);
    }

    /// Cut the rate now (a signal from outside the answers, such as the NIC's
    /// allowance counters).
    pub fn back_off(&mut self) {
        self.rate = (self.rate * self.params.decrease).max(self.floor);
        self.backoffs += 1;
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

    /// A simulated target that answers `ratio` of its probes while the rate
    /// stays at or below `limit_pps`, and drops the excess above it.
    fn answers(sent: u64, rate: f64, ratio: f64, limit: f64) -> u64 {
        let kept = if rate > limit { limit / rate } else { 1.0 };
        (sent as f64 * ratio * kept) as u64
    }

    /// Drive one controller and a global bucket for `secs` of paused time;
    /// returns the controller and the probes sent.
    async fn drive(
        c: &mut Aimd,
        global: &mut TokenBucket,
        secs: u64,
        ratio: f64,
        limit: f64,
    ) -> u64 {
        let mut own = TokenBucket::smooth(c.rate_pps());
        let (mut sent, mut answered) = (0u64, 0u64);
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            let step = tokio::time::Instant::now();
            // 10 ms of sending under both buckets.
            let mut n = 0u64;
            while own.try_take(1, step) && global.try_take(1, step) {
                n += 1;
            }
            sent += n;
            answered += answers(n, f64::from(c.rate_pps()), ratio, limit);
            if let Some(r) = c.observe(Instant::now(), sent, answered) {
                own.set_rate(r, Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sent
    }

    #[tokio::test(start_paused = true)]
    async fn drops_back_off() {
        let mut c = Aimd::new(8_000, 100, 16_000, AimdParams::default(), Instant::now());
        let mut global = TokenBucket::smooth(1_000_000);
        // The target keeps up with 2 000 pps only; above that it drops.
        drive(&mut c, &mut global, 10, 0.9, 2_000.0).await;
        assert!(c.backoffs() > 0, "never backed off");
        assert!(c.rate_pps() <= 4_000, "rate stayed at {}", c.rate_pps());
        assert!(c.rate_pps() >= 100);
    }

    #[tokio::test(start_paused = true)]
    async fn clean_grows_to_the_ceiling() {
        let mut c = Aimd::new(8_000, 100, 16_000, AimdParams::default(), Instant::now());
        let mut global = TokenBucket::smooth(1_000_000);
        // 20% of the ports answer (the rest filtered), whatever the rate: clean.
        drive(&mut c, &mut global, 5, 0.2, f64::INFINITY).await;
        assert_eq!(c.backoffs(), 0);
        assert_eq!(c.rate_pps(), 16_000, "grows up to the ceiling, not beyond");
        assert_eq!(c.max_rate_pps(), 16_000);
    }

    #[tokio::test(start_paused = true)]
    async fn random_loss_is_not_congestion() {
        let mut c = Aimd::new(5_000, 100, 10_000, AimdParams::default(), Instant::now());
        let mut global = TokenBucket::smooth(1_000_000);
        // 20% random loss: every window answers 0.8 x the answering share.
        drive(&mut c, &mut global, 5, 0.8 * 0.5, f64::INFINITY).await;
        assert_eq!(c.backoffs(), 0);
        assert_eq!(c.rate_pps(), 10_000);
    }

    #[tokio::test(start_paused = true)]
    async fn the_global_cap_is_a_hard_cap() {
        let mut global = TokenBucket::smooth(3_000);
        let mut c = Aimd::new(8_000, 100, 16_000, AimdParams::default(), Instant::now());
        let start = Instant::now();
        let sent = drive(&mut c, &mut global, 10, 0.5, f64::INFINITY).await;
        let secs = start.elapsed().as_secs_f64();
        // The controller may believe 16 000 pps; the worker's cap holds.
        assert!(
            sent as f64 <= 3_000.0 * secs + 60.0,
            "{sent} probes in {secs} s under a 3 000 pps cap"
        );
        assert!(
            sent as f64 >= 2_500.0 * secs,
            "the cap is used: {sent} in {secs} s"
        );
    }

    #[test]
    fn set_rate_keeps_no_more_than_the_new_burst() {
        let now = Instant::now();
        let mut b = TokenBucket::smooth(50_000);
        b.set_rate(100, now);
        assert!(b.try_take(2, now), "100 pps has a burst of 2");
        assert!(!b.try_take(1, now), "the old burst of 1 000 is gone");
    }
}
