//! Rate profiles and the schedule of intended send times they produce.
//!
//! An open-loop run is one global schedule: request `k` is *intended* to be sent at the
//! time `t_k` where the profile's cumulative count `N(t)` reaches `k`. The schedule is a
//! pure function of the profile — no clock, no randomness — so it can be tested exactly
//! and the simulator can reuse it. Latency is measured from `t_k`, whatever the load
//! generator or the server did, which is what corrects coordinated omission.

use std::time::Duration;

/// How fast to send, over time.
#[derive(Debug, Clone, PartialEq)]
pub enum RateProfile {
    /// Closed loop: every connection sends back-to-back, as fast as responses return.
    Max,
    /// `rps` requests per second, evenly spaced.
    Constant { rps: f64 },
    /// Linear change from `from_rps` to `to_rps` over `over`, then `to_rps` onwards.
    Ramp {
        from_rps: f64,
        to_rps: f64,
        over: Duration,
    },
    /// Piecewise-constant rates; each step lasts `hold`, the last one holds forever.
    Steps(Vec<Step>),
}

/// One step of [`RateProfile::Steps`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub rps: f64,
    pub hold: Duration,
}

/// Why a rate profile was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProfileError {
    #[error("rate {0} is not a finite number of requests per second ≥ 0")]
    BadRate(f64),
    #[error(
        "a constant rate must be above 0 (use the closed-loop profile for 'as fast as possible')"
    )]
    ZeroConstant,
    #[error("a ramp needs a duration above 0")]
    ZeroRamp,
    #[error("a step profile needs at least one step")]
    NoSteps,
    #[error("the profile never sends anything (every rate is 0)")]
    NeverSends,
}

impl RateProfile {
    /// Checks the numbers: rates finite and ≥ 0, something is ever sent.
    pub fn validate(&self) -> Result<(), ProfileError> {
        let check = |r: f64| {
            if r.is_finite() && r >= 0.0 {
                Ok(())
            } else {
                Err(ProfileError::BadRate(r))
            }
        };
        match self {
            RateProfile::Max => Ok(()),
            RateProfile::Constant { rps } => {
                check(*rps)?;
                if *rps == 0.0 {
                    return Err(ProfileError::ZeroConstant);
                }
                Ok(())
            }
            RateProfile::Ramp {
                from_rps,
                to_rps,
                over,
            } => {
                check(*from_rps)?;
                check(*to_rps)?;
                if over.is_zero() {
                    return Err(ProfileError::ZeroRamp);
                }
                if *from_rps == 0.0 && *to_rps == 0.0 {
                    return Err(ProfileError::NeverSends);
                }
                Ok(())
            }
            RateProfile::Steps(steps) => {
                if steps.is_empty() {
                    return Err(ProfileError::NoSteps);
                }
                for s in steps {
                    check(s.rps)?;
                }
                if steps.iter().all(|s| s.rps == 0.0) {
                    return Err(ProfileError::NeverSends);
                }
                Ok(())
            }
        }
    }

    /// True for the closed-loop profile.
    pub fn is_closed_loop(&self) -> bool {
        matches!(self, RateProfile::Max)
    }

    /// Expected number of requests intended in `[0, t)`: the integral of the rate.
    /// `None` for the closed loop.
    pub fn cumulative(&self, t: Duration) -> Option<f64> {
        let t = t.as_secs_f64();
        Some(match self {
            RateProfile::Max => return None,
            RateProfile::Constant { rps } => rps * t,
            RateProfile::Ramp {
                from_rps,
                to_rps,
                over,
            } => {
                let big_t = over.as_secs_f64();
                let a = (to_rps - from_rps) / (2.0 * big_t);
                if t <= big_t {
                    from_rps * t + a * t * t
                } else {
                    from_rps * big_t + a * big_t * big_t + to_rps * (t - big_t)
                }
            }
            RateProfile::Steps(steps) => {
                let mut n = 0.0;
                let mut start = 0.0;
                for (i, s) in steps.iter().enumerate() {
                    let last = i + 1 == steps.len();
                    let end = start + s.hold.as_secs_f64();
                    if last || t < end {
                        return Some(n + s.rps * (t - start).max(0.0));
                    }
                    n += s.rps * s.hold.as_secs_f64();
                    start = end;
                }
                n
            }
        })
    }

    /// Mean intended rate over `[0, t)`; `None` for the closed loop or `t = 0`.
    pub fn mean_rps(&self, t: Duration) -> Option<f64> {
        if t.is_zero() {
            return match self {
                RateProfile::Constant { rps } => Some(*rps),
                _ => None,
            };
        }
        self.cumulative(t).map(|n| n / t.as_secs_f64())
    }
}

/// The sequence of intended send offsets (from the start of the run) of a profile.
///
/// Offsets are computed from the request index by inverting the cumulative count, not
/// by adding intervals, so there is no drift however long the run.
#[derive(Debug, Clone)]
pub struct Schedule {
    profile: RateProfile,
    next_index: u64,
    /// Steps profile: precomputed (start_s, count_before, rps) per step.
    steps: Vec<(f64, f64, f64)>,
    step_cursor: usize,
}

impl Schedule {
    /// A schedule for `profile`. Panics in debug builds on the closed-loop profile,
    /// which has no schedule; validate the profile first.
    pub fn new(profile: RateProfile) -> Self {
        debug_assert!(!profile.is_closed_loop(), "closed loop has no schedule");
        let mut steps = Vec::new();
        if let RateProfile::Steps(list) = &profile {
            let (mut start, mut count) = (0.0, 0.0);
            for s in list {
                steps.push((start, count, s.rps));
                start += s.hold.as_secs_f64();
                count += s.rps * s.hold.as_secs_f64();
            }
        }
        Self {
            profile,
            next_index: 0,
            steps,
            step_cursor: 0,
        }
    }

    /// How many requests the schedule intends in `[0, t)`: the smallest integer at or
    /// above the cumulative count (request k is intended at the time the count reaches k).
    pub fn count_before(&self, t: Duration) -> u64 {
        let n = self.profile.cumulative(t).unwrap_or(0.0);
        if n.is_finite() && n > 0.0 {
            n.ceil().min(u64::MAX as f64) as u64
        } else {
            0
        }
    }

    /// Index of the next request the schedule will produce.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// The intended offset of the next request, or `None` when the profile sends no
    /// more (a final rate of 0).
    pub fn next_offset(&mut self) -> Option<Duration> {
        let k = self.next_index as f64;
        let secs = self.offset_of(k)?;
        self.next_index += 1;
        // A rate so low that the next send is beyond any representable time ends the
        // schedule instead of overflowing.
        Duration::try_from_secs_f64(secs.max(0.0)).ok()
    }

    fn offset_of(&mut self, k: f64) -> Option<f64> {
        match &self.profile {
            RateProfile::Max => None,
            RateProfile::Constant { rps } => Some(k / rps),
            RateProfile::Ramp {
                from_rps,
                to_rps,
                over,
            } => {
                let big_t = over.as_secs_f64();
                let a = (to_rps - from_rps) / (2.0 * big_t);
                let b = *from_rps;
                let n_ramp = b * big_t + a * big_t * big_t;
                if k < n_ramp {
                    // Solve a t² + b t = k with the cancellation-free form.
                    let disc = (b * b + 4.0 * a * k).max(0.0);
                    let denom = b + disc.sqrt();
                    if denom <= 0.0 {
                        return Some(0.0);
                    }
                    Some(2.0 * k / denom)
                } else if *to_rps > 0.0 {
                    Some(big_t + (k - n_ramp) / to_rps)
                } else {
                    None
                }
            }
            RateProfile::Steps(_) => {
                while self.step_cursor < self.steps.len() {
                    let (start, before, rps) = self.steps[self.step_cursor];
                    let last = self.step_cursor + 1 == self.steps.len();
                    let after = self
                        .steps
                        .get(self.step_cursor + 1)
                        .map_or(f64::INFINITY, |s| s.1);
                    if rps > 0.0 && (last || k < after) {
                        return Some(start + (k - before) / rps);
                    }
                    if last {
                        return None;
                    }
                    self.step_cursor += 1;
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn offsets(profile: RateProfile, n: usize) -> Vec<f64> {
        let mut s = Schedule::new(profile);
        (0..n)
            .map_while(|_| s.next_offset().map(|d| d.as_secs_f64()))
            .collect()
    }

    #[test]
    fn constant_rate_is_evenly_spaced_without_drift() {
        let mut s = Schedule::new(RateProfile::Constant { rps: 3.0 });
        let first: Vec<_> = (0..4).map(|_| s.next_offset().unwrap()).collect();
        assert_eq!(first[0], Duration::ZERO);
        assert!((first[3].as_secs_f64() - 1.0).abs() < 1e-9);
        for _ in 4..3_000_000 {
            s.next_offset();
        }
        // Request 3,000,000 at 3 rps is intended at exactly 1,000,000 s.
        assert!((s.next_offset().unwrap().as_secs_f64() - 1_000_000.0).abs() < 1e-6);
    }

    #[test]
    fn ramp_then_hold() {
        // 0 → 100 rps over 10 s sends 500 requests during the ramp.
        let p = RateProfile::Ramp {
            from_rps: 0.0,
            to_rps: 100.0,
            over: Duration::from_secs(10),
        };
        let t = offsets(p, 700);
        assert!((t[500] - 10.0).abs() < 1e-9, "{}", t[500]);
        assert!((t[600] - 11.0).abs() < 1e-9, "{}", t[600]);
        assert!(t.windows(2).all(|w| w[1] >= w[0]));
        // Gaps shrink as the rate rises.
        assert!(t[2] - t[1] > t[400] - t[399]);
    }

    #[test]
    fn decreasing_ramp_to_zero_ends() {
        let p = RateProfile::Ramp {
            from_rps: 100.0,
            to_rps: 0.0,
            over: Duration::from_secs(2),
        };
        let t = offsets(p, 1000);
        assert_eq!(t.len(), 100, "0.5 × 100 rps × 2 s");
        assert!(t.iter().all(|&x| x <= 2.0));
    }

    #[test]
    fn steps_follow_each_rate() {
        let p = RateProfile::Steps(vec![
            Step {
                rps: 10.0,
                hold: Duration::from_secs(1),
            },
            Step {
                rps: 0.0,
                hold: Duration::from_secs(1),
            },
            Step {
                rps: 100.0,
                hold: Duration::from_secs(1),
            },
        ]);
        let t = offsets(p, 30);
        assert!((t[9] - 0.9).abs() < 1e-9);
        assert!(
            (t[10] - 2.0).abs() < 1e-9,
            "the 0-rps step is skipped: {}",
            t[10]
        );
        assert!((t[11] - 2.01).abs() < 1e-9);
    }

    #[test]
    fn count_before_matches_stepping() {
        for p in [
            RateProfile::Constant { rps: 333.0 },
            RateProfile::Ramp {
                from_rps: 10.0,
                to_rps: 500.0,
                over: Duration::from_secs(2),
            },
        ] {
            let horizon = Duration::from_millis(2500);
            let mut s = Schedule::new(p.clone());
            let mut stepped = 0u64;
            while s.next_offset().is_some_and(|o| o < horizon) {
                stepped += 1;
            }
            let counted = Schedule::new(p.clone()).count_before(horizon);
            assert!(
                counted.abs_diff(stepped) <= 1,
                "{p:?}: {counted} vs {stepped}"
            );
        }
    }

    #[test]
    fn absurdly_low_rates_end_the_schedule_instead_of_overflowing() {
        let mut s = Schedule::new(RateProfile::Constant { rps: 1e-30 });
        assert_eq!(s.next_offset(), Some(Duration::ZERO));
        assert_eq!(s.next_offset(), None);
    }

    #[test]
    fn validation() {
        assert!(RateProfile::Constant { rps: 0.0 }.validate().is_err());
        assert!(RateProfile::Constant { rps: f64::NAN }.validate().is_err());
        assert!(RateProfile::Constant { rps: -1.0 }.validate().is_err());
        assert!(RateProfile::Steps(vec![]).validate().is_err());
        assert!(
            RateProfile::Ramp {
                from_rps: 1.0,
                to_rps: 2.0,
                over: Duration::ZERO
            }
            .validate()
            .is_err()
        );
        assert!(RateProfile::Max.validate().is_ok());
    }

    proptest! {
        /// The number of requests intended in [0, T) matches the integral of the rate
        /// to within one request, for every profile shape.
        #[test]
        fn counts_match_the_integral(from in 0.0f64..2000.0, to in 1.0f64..2000.0,
                                     over_ms in 1u64..5000, horizon_ms in 1u64..8000) {
            let horizon = Duration::from_millis(horizon_ms);
            for p in [
                RateProfile::Constant { rps: to },
                RateProfile::Ramp { from_rps: from, to_rps: to, over: Duration::from_millis(over_ms) },
                RateProfile::Steps(vec![
                    Step { rps: from, hold: Duration::from_millis(over_ms) },
                    Step { rps: to, hold: Duration::from_millis(over_ms) },
                ]),
            ] {
                let expected = p.cumulative(horizon).unwrap();
                let mut s = Schedule::new(p.clone());
                let mut n = 0u64;
                while let Some(off) = s.next_offset() {
                    if off >= horizon { break; }
                    n += 1;
                }
                prop_assert!((n as f64 - expected).abs() <= 1.0 + 1e-6 * expected,
                    "{p:?}: {n} sent vs {expected} expected");
            }
        }

        /// Offsets never go backwards.
        #[test]
        fn offsets_are_monotone(from in 0.0f64..5000.0, to in 0.0f64..5000.0, over_ms in 1u64..3000) {
            prop_assume!(from + to > 0.0);
            let t = offsets(RateProfile::Ramp { from_rps: from, to_rps: to, over: Duration::from_millis(over_ms) }, 2000);
            prop_assert!(t.windows(2).all(|w| w[1] >= w[0]));
        }
    }
}
