//! How many times to probe a target's silent ports: until an open port among
//! them is unlikely to have been missed.
//!
//! # The model
//! Each probe to a port that answers (open, closed or ICMP-unreachable) is lost,
//! on its way out or its answer's way back, independently with the target's
//! round-trip loss `p`. After `k` attempts an open port is still silent with
//! probability `p^k`, so probing stops for a target once
//!
//! ```text
//! P(miss) = p̂^k < 1 / miss_one_in        (default 1 in 10 000)
//! ```
//!
//! or at `1 + max_retries` attempts. `p` is estimated from the target's own
//! answers: if `A_j` ports first answered on attempt `j`, then under the model
//! `A_{j+1} = A_j · p`, so
//!
//! ```text
//! p̂ = (Σ_{j=2..k} A_j + 0.5) / (Σ_{j=1..k-1} A_j + 50)
//! ```
//!
//! The pseudo-counts are a prior of 1 % loss worth 50 answers: they keep a
//! target that answered on few ports (a host behind a security group with three
//! open ports) from being trusted as loss-free after one quiet retransmission,
//! and vanish next to a full sweep's tens of thousands of answers.
//!
//! Consequences: a target that left no port silent is done after one pass; a
//! loss-free target with silent (filtered) ports costs one retransmission of
//! those ports (no port answered late, `p̂` is tiny, `p̂²` below the bound); a
//! target with 20 % loss gets about six attempts (`0.2⁶ ≈ 6·10⁻⁵`). Before the
//! first retransmission there is no evidence at all (a silent port may be
//! filtered or lost), so a target with silent ports always gets one. A target
//! that answered nothing gives no evidence ever (down, or filtered
//! everywhere): it gets the profile's fixed `retries`.

/// Prior losses (numerator pseudo-count) of the loss estimate.
const PRIOR_LOST: f64 = 0.5;
/// Prior answers (denominator pseudo-count): 0.5 / 50 = 1 % prior loss.
const PRIOR_TRIALS: f64 = 50.0;

/// The answers of one target, pass by pass, and what they imply.
#[derive(Debug, Clone, Default)]
pub struct LossModel {
    /// First answers per attempt: `by_attempt[j]` answered on attempt `j + 1`.
    by_attempt: Vec<u64>,
}

/// What to do with a target after a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Probe its silent ports again.
    Retransmit,
    /// Stop: nothing silent, the bound is met, or the attempts are used up.
    Done,
}

impl LossModel {
    /// Record that `first_answers` ports answered for the first time on the
    /// attempt just made (call once per pass, in order).
    pub fn record_pass(&mut self, first_answers: u64) {
        self.by_attempt.push(first_answers);
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.by_attempt.len() as u32
    }

    /// Ports that answered at all.
    pub fn answered(&self) -> u64 {
        self.by_attempt.iter().sum()
    }

    /// Estimated round-trip loss (see the module documentation); the prior
    /// (1 %) before any retransmission.
    pub fn loss(&self) -> f64 {
        let k = self.by_attempt.len();
        if k == 0 {
            return PRIOR_LOST / PRIOR_TRIALS;
        }
        let late: u64 = self.by_attempt[1..].iter().sum();
        let earlier: u64 = self.by_attempt[..k - 1].iter().sum();
        ((late as f64 + PRIOR_LOST) / (earlier as f64 + PRIOR_TRIALS)).min(1.0)
    }

    /// The chance that one open port is still silent after the attempts made:
    /// 0 when `silent` is 0 (nothing left to miss).
    pub fn miss_chance(&self, silent: u64) -> f64 {
        if silent == 0 {
            return 0.0;
        }
        self.loss().powi(self.attempts() as i32)
    }

    /// Whether the target's `silent` ports need another attempt, under a bound
    /// of 1 in `miss_one_in` (0: fixed `retries` only), at most `max_retries`
    /// retransmissions; `retries` is what a target without any answer gets.
    pub fn next(&self, silent: u64, miss_one_in: u32, max_retries: u8, retries: u8) -> Next {
        let k = self.attempts();
        if silent == 0 {
            return Next::Done;
        }
        let fixed = |n: u8| {
            if k < 1 + u32::from(n) {
                Next::Retransmit
            } else {
                Next::Done
            }
        };
        if miss_one_in == 0 || self.answered() == 0 {
            return fixed(retries);
        }
        if k > u32::from(max_retries) {
            return Next::Done;
        }
        if k < 2 {
            return Next::Retransmit;
        }
        if self.miss_chance(silent) < 1.0 / f64::from(miss_one_in) {
            Next::Done
        } else {
            Next::Retransmit
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Expected first answers per attempt of `r` answering ports under loss `p`.
    fn simulate(r: f64, p: f64, attempts: usize) -> LossModel {
        let mut m = LossModel::default();
        let mut left = r;
        for _ in 0..attempts {
            let got = left * (1.0 - p);
            m.record_pass(got.round() as u64);
            left -= got;
        }
        m
    }

    /// Run the model as the engine does; returns the attempts it asks for.
    fn attempts_taken(r: f64, silent_filtered: u64, p: f64) -> u32 {
        let mut m = LossModel::default();
        let mut left = r;
        loop {
            let got = left * (1.0 - p);
            m.record_pass(got.round() as u64);
            left -= got;
            let silent = silent_filtered + left.round() as u64;
            if m.next(silent, 10_000, 10, 2) == Next::Done {
                return m.attempts();
            }
        }
    }

    #[test]
    fn nothing_silent_is_one_pass() {
        let mut m = LossModel::default();
        m.record_pass(65_535);
        assert_eq!(m.next(0, 10_000, 10, 2), Next::Done);
        assert_eq!(m.miss_chance(0), 0.0);
    }

    #[test]
    fn a_loss_free_host_with_filtered_ports_costs_one_retransmission() {
        assert_eq!(attempts_taken(65_530.0, 5, 0.0), 2);
        // Three open ports behind a security group, everything else filtered.
        assert_eq!(attempts_taken(3.0, 65_532, 0.0), 2);
    }

    #[test]
    fn twenty_percent_loss_gets_about_six_attempts() {
        let k = attempts_taken(60_000.0, 5_000, 0.2);
        assert!((6..=7).contains(&k), "{k} attempts");
        let m = simulate(60_000.0, 0.2, k as usize);
        assert!((m.loss() - 0.2).abs() < 0.01, "estimate {}", m.loss());
        assert!(m.miss_chance(1) < 1e-4);
    }

    #[test]
    fn no_answers_means_fixed_retries() {
        let mut m = LossModel::default();
        m.record_pass(0);
        assert_eq!(m.next(100, 10_000, 10, 2), Next::Retransmit);
        m.record_pass(0);
        m.record_pass(0);
        assert_eq!(
            m.next(100, 10_000, 10, 2),
            Next::Done,
            "1 + retries attempts"
        );
    }

    #[test]
    fn the_model_off_means_fixed_retries() {
        let m = simulate(1000.0, 0.5, 3);
        assert_eq!(m.next(500, 0, 10, 2), Next::Done);
        assert_eq!(
            simulate(1000.0, 0.5, 2).next(500, 0, 10, 2),
            Next::Retransmit
        );
    }

    proptest! {
        /// Whatever the loss, the model stops by 1 + max_retries attempts, and
        /// when it stops early the bound holds for its own estimate.
        #[test]
        fn stops_within_bounds(r in 1u64..100_000, p in 0.0f64..0.9, max in 1u8..12) {
            let mut m = LossModel::default();
            let mut left = r as f64;
            loop {
                let got = left * (1.0 - p);
                m.record_pass(got.round() as u64);
                left -= got;
                let silent = 10 + left.round() as u64;
                if m.next(silent, 10_000, max, 2) == Next::Done {
                    prop_assert!(m.attempts() <= 1 + u32::from(max));
                    if m.answered() > 0 && m.attempts() < 1 + u32::from(max) {
                        prop_assert!(m.miss_chance(silent) < 1e-4);
                    }
                    break;
                }
                prop_assert!(m.attempts() <= u32::from(max).max(2));
            }
        }

        /// More loss never means fewer attempts.
        #[test]
        fn more_loss_more_attempts(r in 1000u64..100_000, p in 0.0f64..0.5, dp in 0.0f64..0.3) {
            prop_assert!(attempts_taken(r as f64, 10, p) <= attempts_taken(r as f64, 10, (p + dp).min(0.8)));
        }
    }
}
