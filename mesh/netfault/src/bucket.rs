//! Token bucket behind the bandwidth fault.

use std::num::NonZeroU64;
use std::time::Duration;

use tokio::time::Instant;

/// How much traffic may pass in one burst: 50 ms worth of the rate.
const BURST_WINDOW_DIVISOR: u64 = 20;

/// A token bucket measured in bytes. Starts full; holds at most one burst
/// (`rate / 20`, i.e. 50 ms of traffic, at least one byte).
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate_bytes_per_sec: NonZeroU64,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate_bytes_per_sec: NonZeroU64, now: Instant) -> Self {
        let burst = burst_bytes(rate_bytes_per_sec);
        TokenBucket {
            rate_bytes_per_sec,
            tokens: burst as f64,
            refilled_at: now,
        }
    }

    /// The largest slice a writer may ask for in one [`take`](Self::take).
    pub(crate) fn burst_bytes(&self) -> usize {
        burst_bytes(self.rate_bytes_per_sec)
    }

    /// Changes the rate; tokens earned so far are kept, up to the new burst.
    pub(crate) fn set_rate(&mut self, rate_bytes_per_sec: NonZeroU64, now: Instant) {
        if rate_bytes_per_sec != self.rate_bytes_per_sec {
            self.refill(now);
            self.rate_bytes_per_sec = rate_bytes_per_sec;
            self.tokens = self.tokens.min(self.burst_bytes() as f64);
        }
    }

    /// Takes `bytes` (at most one burst) now, or says how long to wait before they
    /// are available. Nothing is taken on `Err`.
    pub(crate) fn take(&mut self, bytes: usize, now: Instant) -> Result<(), Duration> {
        debug_assert!(bytes <= self.burst_bytes(), "slice larger than a burst");
        self.refill(now);
        let need = bytes as f64;
        if self.tokens >= need {
            self.tokens -= need;
            Ok(())
        } else {
            let rate = self.rate_bytes_per_sec.get() as f64;
            Err(Duration::from_secs_f64((need - self.tokens) / rate))
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled_at);
        let earned = elapsed.as_secs_f64() * self.rate_bytes_per_sec.get() as f64;
        self.tokens = (self.tokens + earned).min(self.burst_bytes() as f64);
        self.refilled_at = now;
    }
}

fn burst_bytes(rate_bytes_per_sec: NonZeroU64) -> usize {
    let burst = (rate_bytes_per_sec.get() / BURST_WINDOW_DIVISOR).max(1);
    usize::try_from(burst).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(n: u64) -> NonZeroU64 {
        NonZeroU64::new(n).unwrap()
    }

    #[test]
    fn starts_with_one_burst_then_waits_at_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(rate(1000), t0);
        assert_eq!(bucket.burst_bytes(), 50);
        assert_eq!(bucket.take(50, t0), Ok(()));
        let wait = bucket.take(50, t0).unwrap_err();
        assert!(
            (wait.as_secs_f64() - 0.050).abs() < 1e-9,
            "50 bytes at 1000 B/s: {wait:?}"
        );
        // Half the wait is not enough, and nothing is taken by a refused take.
        assert!(bucket.take(50, t0 + Duration::from_millis(25)).is_err());
        assert_eq!(bucket.take(50, t0 + Duration::from_millis(50)), Ok(()));
    }

    #[test]
    fn idle_time_earns_at_most_one_burst() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(rate(1000), t0);
        let later = t0 + Duration::from_secs(60);
        assert_eq!(bucket.take(50, later), Ok(()));
        assert!(bucket.take(1, later).is_err());
    }

    #[test]
    fn tiny_rates_still_make_progress() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(rate(1), t0);
        assert_eq!(bucket.burst_bytes(), 1);
        assert_eq!(bucket.take(1, t0), Ok(()));
        assert_eq!(bucket.take(1, t0).unwrap_err(), Duration::from_secs(1));
    }

    #[test]
    fn lowering_the_rate_clamps_saved_tokens() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(rate(100_000), t0);
        bucket.set_rate(rate(1000), t0);
        assert_eq!(bucket.burst_bytes(), 50);
        assert_eq!(bucket.take(50, t0), Ok(()));
        assert!(bucket.take(1, t0).is_err());
    }
}
