//! The driver's monotonic clock, as mesh-core's [`Time`]: nanoseconds since the proxy
//! started.

use std::time::Instant;

use mesh_core::Time;

/// A monotonic clock whose origin is its creation.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    /// A clock starting now.
    pub fn start() -> Self {
        Clock {
            origin: Instant::now(),
        }
    }

    /// Now, as mesh-core time.
    pub fn now(&self) -> Time {
        self.at(Instant::now())
    }

    /// `instant` as mesh-core time (the origin if it is earlier).
    pub fn at(&self, instant: Instant) -> Time {
        let ns = instant.saturating_duration_since(self.origin).as_nanos();
        Time(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// The instant of mesh-core time `t`, for tokio timers.
    pub fn instant(&self, t: Time) -> Instant {
        self.origin + std::time::Duration::from_nanos(t.as_nanos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_and_instant_round_trip() {
        let clock = Clock::start();
        let t = Time::from_nanos(1_500_000);
        assert_eq!(clock.at(clock.instant(t)), t);
        assert!(clock.now() >= Time::ZERO);
        assert_eq!(
            clock.at(clock.origin - std::time::Duration::from_secs(1)),
            Time::ZERO
        );
    }
}
