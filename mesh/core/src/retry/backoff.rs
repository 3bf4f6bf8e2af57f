//! Envoy's fully jittered exponential backoff between retries.
//!
//! Envoy's `JitteredExponentialBackOffStrategy`: before retry *n* (1-based) it waits a
//! uniformly random time in `[0, (2^n - 1) × base)`, capped at `max`; the exponent stops
//! growing once `(2^n - 1) × base` exceeds `max`. With Envoy's defaults (25 ms, 250 ms):
//! `[0, 25)`, `[0, 75)`, `[0, 175)`, then `min([0, 375), 250)` ms. Envoy counts in
//! milliseconds; meshrig in nanoseconds, which changes only the resolution.

use std::time::Duration;

use rand::Rng;

/// The backoff state of one request: call [`Backoff::next_backoff`] once per retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    /// Envoy's `current_retry_`: starts at 1, grows while the window is under `max`.
    exponent: u32,
}

// === impl Backoff ===

impl Backoff {
    /// A fresh backoff (before the first retry). A zero `base` gives zero backoffs.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            exponent: 1,
        }
    }

    /// The upper bound of the window the next call draws from, before the cap.
    pub fn window(&self) -> Duration {
        let multiplier = (1u64 << self.exponent.min(62)) - 1;
        self.base
            .saturating_mul(u32::try_from(multiplier).unwrap_or(u32::MAX))
    }

    /// Draws the wait before the next retry, and advances. Call when a retry is decided.
    pub fn next_backoff(&mut self, rng: &mut impl Rng) -> Duration {
        let window = self.window();
        if window <= self.max {
            self.exponent += 1;
        }
        let window_ns = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        if window_ns == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(rng.random_range(0..window_ns)).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn windows_grow_as_envoy_then_cap() {
        let mut b = Backoff::new(Duration::from_millis(25), Duration::from_millis(250));
        let mut rng = SmallRng::seed_from_u64(1);
        let mut windows = Vec::new();
        for _ in 0..6 {
            windows.push(b.window().as_millis());
            let d = b.next_backoff(&mut rng);
            assert!(d <= Duration::from_millis(250));
        }
        // 25, 75, 175, 375 (exceeds max: stops growing), 375, 375
        assert_eq!(windows, vec![25, 75, 175, 375, 375, 375]);
    }

    #[test]
    fn first_backoff_is_below_base() {
        let mut rng = SmallRng::seed_from_u64(7);
        for _ in 0..1000 {
            let mut b = Backoff::new(Duration::from_millis(25), Duration::from_millis(250));
            assert!(b.next_backoff(&mut rng) < Duration::from_millis(25));
        }
    }

    #[test]
    fn zero_base_means_no_wait() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO);
        let mut rng = SmallRng::seed_from_u64(7);
        assert_eq!(b.next_backoff(&mut rng), Duration::ZERO);
    }
}
