//! The fault model: what a [`Link`](crate::Link) does to the bytes crossing it.
//!
//! Everything here is plain data. A [`Faults`] value is the whole state of a link;
//! [`LinkHandle`](crate::LinkHandle) edits it at runtime and every connection reads it
//! before each chunk, so changes apply to existing connections too.

use std::num::NonZeroU64;
use std::time::Duration;

use rand::Rng;
use rand::rngs::SmallRng;

use crate::error::InvalidProbability;

/// Which way bytes travel through a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    /// Client → server: bytes read from the accepted connection, written upstream.
    Upstream,
    /// Server → client: bytes read from the upstream connection, written back to the client.
    Downstream,
}

impl Direction {
    /// Both directions, upstream first.
    pub const BOTH: [Direction; 2] = [Direction::Upstream, Direction::Downstream];

    pub(crate) fn index(self) -> usize {
        match self {
            Direction::Upstream => 0,
            Direction::Downstream => 1,
        }
    }
}

/// One-way delay added to every chunk: `delay` plus a uniform draw from `[0, jitter]`.
///
/// The draw comes from the link's seeded RNG. Release times never go backwards, so
/// jitter never reorders bytes (TCP would not either).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Latency {
    delay: Duration,
    jitter: Duration,
}

impl Latency {
    /// A constant delay, no jitter.
    pub const fn fixed(delay: Duration) -> Self {
        Latency {
            delay,
            jitter: Duration::ZERO,
        }
    }

    /// `delay` plus a uniform extra delay in `[0, jitter]` per chunk.
    pub const fn with_jitter(delay: Duration, jitter: Duration) -> Self {
        Latency { delay, jitter }
    }

    /// The fixed part of the delay.
    pub const fn delay(&self) -> Duration {
        self.delay
    }

    /// The width of the uniform jitter added on top of [`delay`](Self::delay).
    pub const fn jitter(&self) -> Duration {
        self.jitter
    }

    /// Draws one chunk's delay. Consumes no randomness when there is no jitter.
    pub(crate) fn sample(&self, rng: &mut SmallRng) -> Duration {
        if self.jitter.is_zero() {
            return self.delay;
        }
        let jitter_ns = u64::try_from(self.jitter.as_nanos()).unwrap_or(u64::MAX);
        self.delay
            .saturating_add(Duration::from_nanos(rng.random_range(0..=jitter_ns)))
    }
}

/// A probability in `[0, 1]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, PartialOrd)]
pub struct Probability(f64);

impl Probability {
    /// Never.
    pub const ZERO: Probability = Probability(0.0);
    /// Always.
    pub const ONE: Probability = Probability(1.0);

    /// Checks that `p` is a finite number in `[0, 1]`.
    pub fn new(p: f64) -> Result<Self, InvalidProbability> {
        if (0.0..=1.0).contains(&p) {
            Ok(Probability(p))
        } else {
            Err(InvalidProbability { value: p })
        }
    }

    /// The probability as a number in `[0, 1]`.
    pub fn get(self) -> f64 {
        self.0
    }

    /// One Bernoulli draw. A zero probability consumes no randomness, so turning an
    /// unused fault off leaves the other draws (jitter) of a seed unchanged.
    pub(crate) fn draw(self, rng: &mut SmallRng) -> bool {
        self.0 > 0.0 && rng.random_bool(self.0)
    }
}

impl TryFrom<f64> for Probability {
    type Error = InvalidProbability;

    fn try_from(p: f64) -> Result<Self, Self::Error> {
        Probability::new(p)
    }
}

/// When a reset probability is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResetScope {
    /// Once per accepted connection, before it is forwarded: the client is reset at once
    /// and the upstream never sees the connection.
    Connection,
    /// Once per chunk read, in either direction: both ends of the connection are reset.
    Chunk,
}

/// The faults applied to one direction of a link.
///
/// Default: no fault (no latency, no bandwidth cap, not partitioned, not held).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectionFaults {
    /// Delay added to each chunk. Default `None`.
    pub latency: Option<Latency>,
    /// Cap in bytes per second, per connection. Default `None` (uncapped).
    pub bandwidth_bytes_per_sec: Option<NonZeroU64>,
    /// No bytes are read or delivered in this direction. Default `false`.
    pub partitioned: bool,
    /// Bytes are read and queued (up to the queue limit) but not delivered. Default `false`.
    pub held: bool,
}

impl DirectionFaults {
    /// Whether delivery in this direction is currently stopped (partitioned or held).
    pub fn stalls_delivery(&self) -> bool {
        self.partitioned || self.held
    }
}

/// The whole fault state of a link. Default: a perfect link.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Faults on client → server bytes.
    pub upstream: DirectionFaults,
    /// Faults on server → client bytes.
    pub downstream: DirectionFaults,
    /// Probability that a new connection is reset instead of forwarded. Default 0.
    pub reset_per_connection: Probability,
    /// Probability that a chunk read (either direction) resets the connection. Default 0.
    pub reset_per_chunk: Probability,
}

impl Faults {
    /// The faults of one direction.
    pub fn direction(&self, dir: Direction) -> &DirectionFaults {
        match dir {
            Direction::Upstream => &self.upstream,
            Direction::Downstream => &self.downstream,
        }
    }

    /// The faults of one direction, for editing.
    pub fn direction_mut(&mut self, dir: Direction) -> &mut DirectionFaults {
        match dir {
            Direction::Upstream => &mut self.upstream,
            Direction::Downstream => &mut self.downstream,
        }
    }

    /// Whether either direction is partitioned. New connections wait (blackholed)
    /// while this holds, since a TCP handshake needs both directions.
    pub fn is_partitioned(&self) -> bool {
        self.upstream.partitioned || self.downstream.partitioned
    }
}

/// Derives an independent RNG seed for one stream (a connection direction, the
/// accept loop) from the link seed, so draws do not depend on task interleaving.
pub(crate) fn stream_seed(seed: u64, stream: u64) -> u64 {
    splitmix64(seed ^ splitmix64(stream))
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn probability_rejects_out_of_range_and_nan() {
        for bad in [-0.1, 1.000_001, f64::NAN, f64::INFINITY] {
            let err = Probability::new(bad).unwrap_err();
            assert!(err.to_string().contains("[0, 1]"), "{err}");
        }
        assert_eq!(Probability::new(0.0).unwrap(), Probability::ZERO);
        assert_eq!(Probability::new(1.0).unwrap(), Probability::ONE);
    }

    #[test]
    fn probability_edges_are_exact() {
        let mut rng = SmallRng::seed_from_u64(7);
        assert!((0..1000).all(|_| Probability::ONE.draw(&mut rng)));
        assert!((0..1000).all(|_| !Probability::ZERO.draw(&mut rng)));
    }

    #[test]
    fn jitter_stays_in_range_and_is_reproducible() {
        let latency = Latency::with_jitter(Duration::from_millis(10), Duration::from_millis(5));
        let draw = |seed| {
            let mut rng = SmallRng::seed_from_u64(seed);
            (0..200)
                .map(|_| latency.sample(&mut rng))
                .collect::<Vec<_>>()
        };
        let a = draw(42);
        assert_eq!(a, draw(42), "same seed, same delays");
        assert_ne!(a, draw(43), "different seed, different delays");
        assert!(
            a.iter()
                .all(|d| *d >= Duration::from_millis(10) && *d <= Duration::from_millis(15))
        );
        let fixed = Latency::fixed(Duration::from_millis(3));
        let mut rng = SmallRng::seed_from_u64(1);
        assert_eq!(fixed.sample(&mut rng), Duration::from_millis(3));
    }

    #[test]
    fn stream_seeds_differ_per_stream() {
        let seeds: std::collections::BTreeSet<u64> = (0..1000).map(|s| stream_seed(9, s)).collect();
        assert_eq!(seeds.len(), 1000);
    }
}
