//! The CA's roots in the simulator: which root signs, and which roots the trust bundle
//! it returns with every certificate holds, through rotations with an overlap period
//! (the `ca: rotate` fault).
//!
//! The phases are mesh-ca's (`mesh/ca/src/roots.rs`, `TrustRoots`), with each root a
//! number (its epoch: 0 is the root the mesh starts with, each rotation makes the
//! next) instead of a key. A rotation with overlap `O`, started at `t`:
//!
//! | from | bundle (trusted) | signs with |
//! |---|---|---|
//! | before `t` | old | old |
//! | `t` | old + new | old |
//! | `t + O/2` | old + new | new |
//! | `t + O` | new | new |
//!
//! [`Roots`] is a sans-IO state machine: it never reads a clock; the world asks
//! [`Roots::poll_timeout`] when to call [`Roots::handle_timeout`] next. One rotation
//! runs at a time (validation refuses a rotation that starts before the previous one's
//! old root is dropped, as mesh-ca refuses it).

use std::fmt;

use mesh_core::Time;

/// A trust bundle: one root, or two consecutive roots during an overlap. Sidecars
/// keep the bundle the CA returned with their latest certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Bundle {
    /// The newest root in the bundle.
    pub newest: u32,
    /// Whether the root before `newest` is in the bundle too (an overlap).
    pub with_previous: bool,
}

impl Bundle {
    /// Whether a certificate signed by root `root` is trusted.
    pub fn trusts(self, root: u32) -> bool {
        root == self.newest || (self.with_previous && root.checked_add(1) == Some(self.newest))
    }
}

impl fmt::Display for Bundle {
    /// `[#0, #1]` during an overlap, `[#1]` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.newest.checked_sub(1) {
            Some(previous) if self.with_previous => write!(f, "[#{previous}, #{}]", self.newest),
            _ => write!(f, "[#{}]", self.newest),
        }
    }
}

/// What a [`Roots::handle_timeout`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// The new root signs from now on.
    SigningSwitched,
    /// The old root left the bundle; the rotation is over.
    OldRootDropped,
}

/// When a running rotation's next phases begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeline {
    /// `at + overlap / 2`: the new root signs from here.
    pub switch_at: Time,
    /// `at + overlap`: the old root leaves the bundle here.
    pub drop_old_at: Time,
}

/// A rotation that cannot start: another is under way until `drop_old_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InProgress {
    pub drop_old_at: Time,
}

/// The roots the CA trusts and the one it signs with.
#[derive(Debug, Default)]
pub(crate) struct Roots {
    bundle: Bundle,
    /// The running rotation, and whether the new root signs yet.
    overlap: Option<(Timeline, bool)>,
}

// === impl Roots ===

impl Roots {
    /// The root that signs now.
    pub fn signer(&self) -> u32 {
        match self.overlap {
            Some((_, false)) => self.bundle.newest.saturating_sub(1),
            _ => self.bundle.newest,
        }
    }

    /// The bundle the CA returns with a certificate now.
    pub fn bundle(&self) -> Bundle {
        self.bundle
    }

    /// Starts a rotation at `now`: a new root, trusted at once; it signs from
    /// `now + overlap / 2`; the old root is dropped at `now + overlap`. Call
    /// [`Roots::handle_timeout`] first, so a rotation due to end now has ended.
    pub fn rotate(&mut self, now: Time, overlap_ns: u64) -> Result<Timeline, InProgress> {
        if let Some((t, _)) = self.overlap {
            return Err(InProgress {
                drop_old_at: t.drop_old_at,
            });
        }
        let timeline = Timeline {
            switch_at: Time(now.as_nanos().saturating_add(overlap_ns / 2)),
            drop_old_at: Time(now.as_nanos().saturating_add(overlap_ns)),
        };
        self.bundle = Bundle {
            newest: self.bundle.newest.saturating_add(1),
            with_previous: true,
        };
        self.overlap = Some((timeline, false));
        Ok(timeline)
    }

    /// When [`Roots::handle_timeout`] must next be called (`None`: not before another
    /// rotation starts).
    pub fn poll_timeout(&self) -> Option<Time> {
        match self.overlap? {
            (t, false) => Some(t.switch_at),
            (t, true) => Some(t.drop_old_at),
        }
    }

    /// Applies every phase change due at `now`, in order (at most two); returns what
    /// changed. Calling it early or twice is harmless.
    pub fn handle_timeout(&mut self, now: Time) -> Vec<Change> {
        let mut changes = Vec::new();
        while let Some((t, switched)) = self.overlap {
            if !switched && now >= t.switch_at {
                self.overlap = Some((t, true));
                changes.push(Change::SigningSwitched);
            } else if switched && now >= t.drop_old_at {
                self.overlap = None;
                self.bundle.with_previous = false;
                changes.push(Change::OldRootDropped);
            } else {
                break;
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_rotation_goes_through_each_phase_at_its_time() {
        let mut roots = Roots::default();
        assert_eq!(
            (roots.signer(), roots.bundle().to_string()),
            (0, "[#0]".into())
        );
        assert_eq!(roots.poll_timeout(), None);

        let t = roots.rotate(Time(100 * S), 120 * S).expect("steady");
        assert_eq!(
            t,
            Timeline {
                switch_at: Time(160 * S),
                drop_old_at: Time(220 * S)
            }
        );
        // At once: both trusted, the old root signs.
        assert_eq!(
            (roots.signer(), roots.bundle().to_string()),
            (0, "[#0, #1]".into())
        );
        assert_eq!(roots.poll_timeout(), Some(Time(160 * S)));
        assert!(roots.handle_timeout(Time(160 * S - 1)).is_empty());
        assert_eq!(
            roots.rotate(Time(150 * S), 10 * S),
            Err(InProgress {
                drop_old_at: Time(220 * S)
            })
        );

        // At overlap/2: the new root signs, both still trusted.
        assert_eq!(
            roots.handle_timeout(Time(160 * S)),
            [Change::SigningSwitched]
        );
        assert_eq!(
            (roots.signer(), roots.bundle().to_string()),
            (1, "[#0, #1]".into())
        );
        assert_eq!(roots.poll_timeout(), Some(Time(220 * S)));

        // At overlap: the old root is dropped.
        assert_eq!(
            roots.handle_timeout(Time(220 * S)),
            [Change::OldRootDropped]
        );
        assert_eq!(
            (roots.signer(), roots.bundle().to_string()),
            (1, "[#1]".into())
        );
        assert_eq!(roots.poll_timeout(), None);
        assert!(roots.handle_timeout(Time(1_000 * S)).is_empty());
    }

    #[test]
    fn a_late_call_applies_both_changes_in_order_and_the_next_rotation_may_start() {
        let mut roots = Roots::default();
        roots.rotate(Time(0), 10 * S).expect("steady");
        assert_eq!(
            roots.handle_timeout(Time(10 * S)),
            [Change::SigningSwitched, Change::OldRootDropped]
        );
        roots
            .rotate(Time(10 * S), 10 * S)
            .expect("the first is over");
        assert_eq!(
            (roots.signer(), roots.bundle().to_string()),
            (1, "[#1, #2]".into())
        );
    }

    #[test]
    fn a_bundle_trusts_exactly_its_roots() {
        let steady = Bundle {
            newest: 3,
            with_previous: false,
        };
        let overlap = Bundle {
            newest: 3,
            with_previous: true,
        };
        let trusted = |b: Bundle| (0..6).filter(|&r| b.trusts(r)).collect::<Vec<u32>>();
        assert_eq!(trusted(steady), [3]);
        assert_eq!(trusted(overlap), [2, 3]);
        assert_eq!(trusted(Bundle::default()), [0]);
        // Root 0 has no predecessor.
        let first = Bundle {
            newest: 0,
            with_previous: true,
        };
        assert_eq!(trusted(first), [0]);
        assert_eq!(first.to_string(), "[#0]");
    }
}
