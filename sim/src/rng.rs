//! Seeded randomness: one root seed, and every random choice derived from it.
//!
//! A scenario has one seed. The simulator builds a root generator from it and forks an
//! independent stream for each consumer (a node's app, a link, the load generator),
//! so that the same seed gives the same run, and adding draws in one consumer does not
//! shift the numbers every other consumer sees. Nothing here reads entropy from the OS.
//!
//! The generator is rand's [`SmallRng`] (Xoshiro256++ on 64-bit targets in rand 0.9):
//! fast, small, and good enough statistically for simulation (it is not a CSPRNG, and
//! nothing here needs one). Its output is stable for a given rand version; a rand upgrade
//! that changed the algorithm would change every simulated result, so pin it knowingly.

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

/// The simulator's random generator.
pub type SimRng = SmallRng;

/// A generator seeded from `seed`.
pub fn seeded(seed: u64) -> SimRng {
    SimRng::seed_from_u64(seed)
}

/// An independent stream derived from `rng` and a stream number.
///
/// Consumes one draw from `rng` (so forks taken in the same order from the same parent
/// are the same), mixes it with `stream` through SplitMix64, and seeds a new generator
/// from the result. Distinct `stream` numbers from the same parent state give
/// unrelated sequences.
pub fn fork(rng: &mut SimRng, stream: u64) -> SimRng {
    let draw = rng.next_u64();
    seeded(splitmix64(draw ^ splitmix64(stream)))
}

/// A stream derived from a root seed and a stream number without touching any generator:
/// the same `(seed, stream)` always gives the same stream, whatever else was forked
/// first. Use it for consumers whose creation order may change (e.g. per node).
pub fn stream(seed: u64, stream: u64) -> SimRng {
    seeded(splitmix64(seed ^ splitmix64(stream.wrapping_add(0x5EED))))
}

/// SplitMix64's finaliser (Steele, Lea, Flood 2014): a bijective 64-bit mix where each
/// input bit affects every output bit.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn draws(rng: &mut SimRng) -> Vec<u64> {
        (0..8).map(|_| rng.random()).collect()
    }

    #[test]
    fn same_seed_same_sequence() {
        assert_eq!(draws(&mut seeded(42)), draws(&mut seeded(42)));
        assert_ne!(draws(&mut seeded(42)), draws(&mut seeded(43)));
    }

    #[test]
    fn forks_are_deterministic_and_distinct() {
        let (mut a, mut b) = (seeded(7), seeded(7));
        let (mut fa1, mut fa2) = (fork(&mut a, 1), fork(&mut a, 2));
        let (mut fb1, mut fb2) = (fork(&mut b, 1), fork(&mut b, 2));
        assert_eq!(draws(&mut fa1), draws(&mut fb1));
        assert_eq!(draws(&mut fa2), draws(&mut fb2));
        assert_ne!(
            draws(&mut fork(&mut seeded(7), 1)),
            draws(&mut fork(&mut seeded(7), 2))
        );
        // The parent moved on by exactly one draw per fork.
        assert_eq!(draws(&mut a), draws(&mut b));
    }

    #[test]
    fn streams_do_not_depend_on_order() {
        assert_eq!(draws(&mut stream(9, 3)), draws(&mut stream(9, 3)));
        assert_ne!(draws(&mut stream(9, 3)), draws(&mut stream(9, 4)));
        assert_ne!(draws(&mut stream(9, 3)), draws(&mut stream(10, 3)));
    }
}
