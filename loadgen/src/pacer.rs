//! Precise waiting for the open-loop scheduler.
//!
//! tokio's timer has 1 ms granularity — ten request slots at 10k rps — so the pacer
//! runs on its own OS thread and waits in two phases: it sleeps until shortly before
//! the deadline (with the thread's timer slack set to 1 ns, so the kernel wakes it on
//! time), then waits out the last stretch yielding the CPU (so a worker thread that
//! shares the core can run) and spins only the final microseconds. How early to wake
//! is learned: the pacer keeps a running mean of how late its sleeps return and wakes
//! that much (plus 10 µs) early, so it spins only as long as this machine's typical
//! wake-up delay requires. The CPU this costs is
//! measured (thread CPU time) and reported with every result.

use std::time::{Duration, Instant};

/// Shortest sleep worth asking the kernel for; below this the pacer spins.
const MIN_SLEEP: Duration = Duration::from_micros(20);
/// Longest single sleep, so a stop request is noticed promptly.
const MAX_SLEEP: Duration = Duration::from_millis(20);
/// Bounds on the learned wake-up margin.
const MIN_MARGIN_NS: f64 = 5_000.0;
const MAX_MARGIN_NS: f64 = 500_000.0;
/// Added to the typical oversleep: covers most of the wake-up jitter above it without
/// spinning through the whole tail.
const MARGIN_HEADROOM_NS: f64 = 10_000.0;
/// Weight of the newest oversleep in the running mean.
const MARGIN_ALPHA: f64 = 0.1;
/// Factor applied to the oversleep estimate after each wait that did not sleep.
const SPIN_DECAY: f64 = 0.98;
/// In the final phase, yield the CPU while more than this remains, so a worker that
/// shares the core can run; spin tightly only for the last microseconds.
const YIELD_ABOVE: Duration = Duration::from_micros(8);

/// A waiter that learns how late sleeps return on this machine.
#[derive(Debug)]
pub struct PreciseTimer {
    /// Running mean of how late a sleep returns, ns.
    oversleep_ns: f64,
    spins: u64,
    sleeps: u64,
}

impl Default for PreciseTimer {
    fn default() -> Self {
        Self::new()
    }
}

impl PreciseTimer {
    /// A timer for the calling thread; also lowers the thread's timer slack.
    pub fn new() -> Self {
        crate::sys::set_thread_timer_slack(1);
        Self {
            oversleep_ns: 20_000.0,
            spins: 0,
            sleeps: 0,
        }
    }

    fn margin_ns(&self) -> f64 {
        (self.oversleep_ns + MARGIN_HEADROOM_NS).clamp(MIN_MARGIN_NS, MAX_MARGIN_NS)
    }

    /// Blocks the calling thread until `deadline`. Returns early (false) if `stop`
    /// becomes true; returns true once the deadline has passed. A deadline in the past
    /// returns at once.
    pub fn wait_until(&mut self, deadline: Instant, stop: impl Fn() -> bool) -> bool {
        loop {
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            if stop() {
                return false;
            }
            let remaining = deadline - now;
            let margin = Duration::from_nanos(self.margin_ns() as u64);
            if remaining > margin + MIN_SLEEP {
                let want = (remaining - margin).min(MAX_SLEEP);
                let asked_at = Instant::now();
                std::thread::sleep(want);
                self.sleeps += 1;
                let over = asked_at.elapsed().saturating_sub(want).as_nanos() as f64;
                // A running mean of how late sleeps return; rare long wake-ups move it
                // a little, so the pacer does not spin through every interval after one.
                self.oversleep_ns += MARGIN_ALPHA * (over.min(MAX_MARGIN_NS) - self.oversleep_ns);
            } else {
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    if left > YIELD_ABOVE {
                        std::thread::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                }
                self.spins += 1;
                // Decay the estimate while not sleeping: otherwise one long oversleep
                // could push the margin past the send interval, after which the pacer
                // would never sleep (and never re-measure) again, spinning for good.
                self.oversleep_ns *= SPIN_DECAY;
                return true;
            }
        }
    }

    /// The current learned wake-up margin.
    pub fn margin(&self) -> Duration {
        Duration::from_nanos(self.margin_ns() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_returns_before_the_deadline() {
        let mut t = PreciseTimer::new();
        for i in 0..50u64 {
            let deadline = Instant::now() + Duration::from_micros(50 + 37 * i);
            assert!(t.wait_until(deadline, || false));
            assert!(Instant::now() >= deadline);
        }
        assert!(t.margin() >= Duration::from_nanos(MIN_MARGIN_NS as u64));
    }

    /// After a burst of late wake-ups the margin comes back down even while every
    /// wait is short enough to be spun, so the pacer returns to sleeping.
    #[test]
    fn margin_recovers_after_a_long_oversleep() {
        let mut t = PreciseTimer::new();
        t.oversleep_ns = MAX_MARGIN_NS;
        for _ in 0..400 {
            let deadline = Instant::now() + Duration::from_micros(50);
            t.wait_until(deadline, || false);
        }
        assert!(t.margin() < Duration::from_micros(100), "{:?}", t.margin());
    }

    #[test]
    fn past_deadline_returns_immediately_and_stop_is_honoured() {
        let mut t = PreciseTimer::new();
        assert!(t.wait_until(Instant::now() - Duration::from_millis(1), || true));
        let far = Instant::now() + Duration::from_secs(3600);
        assert!(!t.wait_until(far, || true));
    }
}
