//! The trust bundle and root rotation with an overlap period.
//!
//! [`TrustRoots`] is a deterministic state machine in the sans-IO style: every method
//! that depends on time takes `now`, nothing inside reads a clock, and the driver asks
//! [`TrustRoots::poll_timeout`] when to call [`TrustRoots::handle_timeout`] next.
//!
//! A rotation with overlap `O`, started at `t`:
//!
//! | from | bundle (trusted) | signs with | phase |
//! |---|---|---|---|
//! | before `t` | old | old | [`Phase::Steady`] |
//! | `t` | old + new | old | [`Phase::OverlapOldSigning`] |
//! | `t + O/2` | old + new | new | [`Phase::OverlapNewSigning`] |
//! | `t + O` | new | new | [`Phase::Steady`] |
//!
//! Why this order: every workload first learns to trust the new root (it receives the
//! bundle with each certificate it renews), then certificates from the new root
//! appear, and the old root is dropped only after the certificates it signed have
//! expired. That holds when the overlap is at least twice the workload TTL: a
//! certificate signed by the old root just before the switch, at `t + O/2`, expires by
//! `t + O/2 + TTL ≤ t + O`; and a workload renewing at half its TTL has fetched the new
//! bundle by `t + TTL/2 ≤ t + O/2`. A shorter overlap is allowed (tests want seconds),
//! with a note saying what may break.
//!
//! Only a root this process generated can be rotated by generating another; a CA
//! loaded from files belongs to an external PKI whose successor meshrig cannot mint
//! (restart the CA with the new files, listing both roots in `--root-cert` for the
//! overlap, instead). [`TrustRoots::rotate_to`] takes any successor of the same trust
//! domain, for drivers that have one.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::authority::{Ca, Origin, unix_s};
use crate::{CaError, DEFAULT_TTL};

/// Where a rotation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// One root (or the roots given at start): trusted, and the CA signs under it.
    Steady,
    /// Both roots trusted; the old one still signs.
    OverlapOldSigning,
    /// Both roots trusted; the new one signs; the old one is about to be dropped.
    OverlapNewSigning,
}

impl Phase {
    /// The phase's name, as in logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Steady => "steady",
            Phase::OverlapOldSigning => "overlap_old_signing",
            Phase::OverlapNewSigning => "overlap_new_signing",
        }
    }

    /// The `meshrig_ca_rotation_phase` gauge: 0, 1, 2 in the order above.
    pub fn gauge(self) -> u8 {
        match self {
            Phase::Steady => 0,
            Phase::OverlapOldSigning => 1,
            Phase::OverlapNewSigning => 2,
        }
    }
}

/// When a rotation's phases begin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    /// Both roots trusted from here; the old one signs.
    pub started: SystemTime,
    /// The new root signs from here: `started + overlap / 2`.
    pub switch_at: SystemTime,
    /// The old root leaves the bundle here: `started + overlap`.
    pub drop_old_at: SystemTime,
}

/// What [`TrustRoots::rotate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub timeline: Timeline,
    /// A warning for the operator (the overlap is short for the TTL), if any.
    pub note: Option<String>,
}

/// What a [`TrustRoots::handle_timeout`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The new root signs from now on.
    SigningSwitched,
    /// The old root left the bundle; the rotation is over.
    OldRootDropped,
}

/// A rotation that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error(
        "this CA was loaded from --ca-cert/--ca-key (an existing PKI): meshrig cannot mint its successor root; restart the CA with the new CA files, listing the old and new roots in --root-cert for the overlap"
    )]
    Loaded,
    #[error("a rotation is already under way: the old root is dropped at unix time {0} s")]
    InProgress(u64),
    #[error("the overlap must be at least 2 s (half of it is spent before the switch)")]
    Overlap,
    #[error("the new root is for trust domain '{new}', the CA's is '{current}'")]
    TrustDomain { current: String, new: String },
    #[error("cannot make the new root: {0}")]
    Ca(#[from] CaError),
}

#[derive(Debug)]
enum State {
    Steady {
        ca: Arc<Ca>,
    },
    Overlap {
        old: Arc<Ca>,
        new: Arc<Ca>,
        timeline: Timeline,
        switched: bool,
    },
}

/// The roots the mesh trusts and the CA that signs now.
#[derive(Debug)]
pub struct TrustRoots {
    state: State,
    /// The workload TTL the server hands out by default (for the overlap warning).
    default_ttl: Duration,
    rotations: u64,
}

// === impl TrustRoots ===

impl TrustRoots {
    /// Starts steady with `ca`; `default_ttl` is the workload TTL the server hands out
    /// by default, which a rotation's overlap is checked against.
    pub fn new(ca: Ca, default_ttl: Duration) -> TrustRoots {
        TrustRoots {
            state: State::Steady { ca: Arc::new(ca) },
            default_ttl,
            rotations: 0,
        }
    }

    /// [`TrustRoots::new`] with [`DEFAULT_TTL`].
    pub fn with_default_ttl(ca: Ca) -> TrustRoots {
        TrustRoots::new(ca, DEFAULT_TTL)
    }

    /// The CA that signs now.
    pub fn signer(&self) -> &Arc<Ca> {
        match &self.state {
            State::Steady { ca } => ca,
            State::Overlap {
                old,
                switched: false,
                ..
            } => old,
            State::Overlap { new, .. } => new,
        }
    }

    /// Every root trusted now, PEM (the old root first during an overlap).
    pub fn bundle_pem(&self) -> String {
        match &self.state {
            State::Steady { ca } => ca.bundle_pem().to_owned(),
            State::Overlap { old, new, .. } => {
                format!("{}{}", old.bundle_pem(), new.bundle_pem())
            }
        }
    }

    /// Where the rotation stands.
    pub fn phase(&self) -> Phase {
        match &self.state {
            State::Steady { .. } => Phase::Steady,
            State::Overlap {
                switched: false, ..
            } => Phase::OverlapOldSigning,
            State::Overlap { .. } => Phase::OverlapNewSigning,
        }
    }

    /// The running rotation's timeline, if one is under way.
    pub fn timeline(&self) -> Option<Timeline> {
        match &self.state {
            State::Steady { .. } => None,
            State::Overlap { timeline, .. } => Some(*timeline),
        }
    }

    /// How many rotations have started.
    pub fn rotations(&self) -> u64 {
        self.rotations
    }

    /// Starts a rotation at `now` to a newly generated root, with both roots trusted
    /// for `overlap` (see the module docs for the phases). Refused for a loaded CA,
    /// during another rotation, and for an overlap under 2 s; `note` warns when the
    /// overlap is under twice the default TTL.
    pub fn rotate(&mut self, now: SystemTime, overlap: Duration) -> Result<Rotation, RotateError> {
        let current = self.signer();
        if current.origin() == Origin::Loaded {
            return Err(RotateError::Loaded);
        }
        self.check_can_rotate(overlap)?;
        let new = Ca::generate_at(current.trust_domain(), now)?;
        self.rotate_to(now, overlap, new)
    }

    /// Starts a rotation at `now` to `new`, a CA of the same trust domain (whatever its
    /// origin). Same phases and checks as [`TrustRoots::rotate`], but not the origin.
    pub fn rotate_to(
        &mut self,
        now: SystemTime,
        overlap: Duration,
        new: Ca,
    ) -> Result<Rotation, RotateError> {
        self.check_can_rotate(overlap)?;
        let old = Arc::clone(self.signer());
        if new.trust_domain() != old.trust_domain() {
            return Err(RotateError::TrustDomain {
                current: old.trust_domain().to_owned(),
                new: new.trust_domain().to_owned(),
            });
        }
        let timeline = Timeline {
            started: now,
            switch_at: now + overlap / 2,
            drop_old_at: now + overlap,
        };
        let note = (overlap < 2 * self.default_ttl).then(|| {
            format!(
                "the overlap ({}) is shorter than twice the default workload TTL ({}): a certificate signed by the old root just before the switch may outlive the old root's place in the bundle, and a workload that renews at half its TTL may not have the new bundle before the new root signs",
                humanize(overlap),
                humanize(self.default_ttl)
            )
        });
        self.state = State::Overlap {
            old,
            new: Arc::new(new),
            timeline,
            switched: false,
        };
        self.rotations += 1;
        Ok(Rotation { timeline, note })
    }

    fn check_can_rotate(&self, overlap: Duration) -> Result<(), RotateError> {
        if let Some(t) = self.timeline() {
            return Err(RotateError::InProgress(unix_s(t.drop_old_at)));
        }
        if overlap < Duration::from_secs(2) {
            return Err(RotateError::Overlap);
        }
        Ok(())
    }

    /// When [`TrustRoots::handle_timeout`] must next be called (`None`: not until the
    /// next rotation).
    pub fn poll_timeout(&self) -> Option<SystemTime> {
        match &self.state {
            State::Steady { .. } => None,
            State::Overlap {
                timeline,
                switched: false,
                ..
            } => Some(timeline.switch_at),
            State::Overlap { timeline, .. } => Some(timeline.drop_old_at),
        }
    }

    /// Applies every phase change due at `now`, in order; returns what changed (empty
    /// if nothing was due). Calling it early or twice is harmless.
    pub fn handle_timeout(&mut self, now: SystemTime) -> Vec<Change> {
        let mut changes = Vec::new();
        // At most two transitions per rotation: a bounded loop.
        for _ in 0..2 {
            let State::Overlap {
                new,
                timeline,
                switched,
                ..
            } = &mut self.state
            else {
                break;
            };
            if !*switched && now >= timeline.switch_at {
                *switched = true;
                changes.push(Change::SigningSwitched);
            } else if *switched && now >= timeline.drop_old_at {
                let new = Arc::clone(new);
                self.state = State::Steady { ca: new };
                changes.push(Change::OldRootDropped);
            } else {
                break;
            }
        }
        changes
    }
}

/// `90s` as `1m 30s`, `2h`, `1h 30m`: whole seconds, as flags are written.
pub fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
    let mut out = Vec::new();
    if h > 0 {
        out.push(format!("{h}h"));
    }
    if m > 0 {
        out.push(format!("{m}m"));
    }
    if sec > 0 || out.is_empty() {
        out.push(format!("{sec}s"));
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::pem_util::count_certificates;

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    fn roots(ttl: Duration) -> TrustRoots {
        TrustRoots::new(Ca::generate_at("cluster.local", t(0)).unwrap(), ttl)
    }

    #[test]
    fn a_rotation_goes_through_each_phase_at_its_time() {
        let mut roots = roots(Duration::from_secs(60));
        let first = Arc::clone(roots.signer());
        assert_eq!(roots.phase(), Phase::Steady);
        assert_eq!(roots.poll_timeout(), None);
        assert_eq!(count_certificates(&roots.bundle_pem()), 1);

        let rotation = roots.rotate(t(100), Duration::from_secs(120)).unwrap();
        assert_eq!(
            rotation.timeline,
            Timeline {
                started: t(100),
                switch_at: t(160),
                drop_old_at: t(220)
            }
        );
        assert_eq!(rotation.note, None, "120 s is twice the 60 s TTL");
        // Immediately: both trusted, the old one signs.
        assert_eq!(roots.phase(), Phase::OverlapOldSigning);
        assert!(Arc::ptr_eq(roots.signer(), &first));
        let bundle = roots.bundle_pem();
        assert_eq!(count_certificates(&bundle), 2);
        assert!(bundle.starts_with(first.bundle_pem()), "old root first");
        assert_eq!(roots.poll_timeout(), Some(t(160)));

        // Before the switch nothing changes.
        assert!(roots.handle_timeout(t(159)).is_empty());
        assert!(Arc::ptr_eq(roots.signer(), &first));

        // At overlap/2: the new root signs, both still trusted.
        assert_eq!(roots.handle_timeout(t(160)), [Change::SigningSwitched]);
        assert_eq!(roots.phase(), Phase::OverlapNewSigning);
        let second = Arc::clone(roots.signer());
        assert!(!Arc::ptr_eq(&second, &first));
        assert_eq!(roots.bundle_pem(), bundle);
        assert_eq!(roots.poll_timeout(), Some(t(220)));
        assert!(roots.handle_timeout(t(200)).is_empty());

        // At overlap: the old root is dropped.
        assert_eq!(roots.handle_timeout(t(220)), [Change::OldRootDropped]);
        assert_eq!(roots.phase(), Phase::Steady);
        assert_eq!(roots.bundle_pem(), second.bundle_pem());
        assert_eq!(roots.poll_timeout(), None);
        assert!(Arc::ptr_eq(roots.signer(), &second));
        assert_eq!(roots.rotations(), 1);
    }

    #[test]
    fn a_late_wake_up_applies_both_changes_in_order() {
        let mut roots = roots(Duration::from_secs(1));
        roots.rotate(t(0), Duration::from_secs(10)).unwrap();
        assert_eq!(
            roots.handle_timeout(t(1000)),
            [Change::SigningSwitched, Change::OldRootDropped]
        );
        assert_eq!(roots.phase(), Phase::Steady);
        // And a second rotation may start.
        roots.rotate(t(1001), Duration::from_secs(10)).unwrap();
        assert_eq!(roots.rotations(), 2);
    }

    #[test]
    fn a_short_overlap_is_allowed_with_a_note() {
        let mut roots = roots(Duration::from_secs(3600));
        let rotation = roots.rotate(t(0), Duration::from_secs(3600)).unwrap();
        let note = rotation.note.expect("a note");
        assert!(
            note.contains("(1h) is shorter than twice the default workload TTL (1h)"),
            "{note}"
        );
    }

    #[test]
    fn rotations_that_cannot_start_say_why() {
        let mut r = roots(Duration::from_secs(1));
        assert!(matches!(
            r.rotate(t(0), Duration::from_secs(1)),
            Err(RotateError::Overlap)
        ));
        r.rotate(t(0), Duration::from_secs(10)).unwrap();
        let err = r.rotate(t(1), Duration::from_secs(10)).unwrap_err();
        assert!(matches!(err, RotateError::InProgress(_)), "{err}");

        let generated = Ca::generate("cluster.local").unwrap();
        let loaded = Ca::load("cluster.local", generated.cert_pem(), &generated.key_pem()).unwrap();
        let mut r = TrustRoots::with_default_ttl(loaded);
        let err = r.rotate(t(0), Duration::from_secs(10)).unwrap_err();
        assert!(
            err.to_string().contains("cannot mint its successor"),
            "{err}"
        );
        assert_eq!(r.phase(), Phase::Steady, "nothing changed");

        // A loaded CA can be rotated to a given successor; not to another domain's.
        let other = Ca::generate("example.org").unwrap();
        assert!(matches!(
            r.rotate_to(t(0), Duration::from_secs(10), other),
            Err(RotateError::TrustDomain { .. })
        ));
        let next = Ca::generate("cluster.local").unwrap();
        r.rotate_to(t(0), Duration::from_secs(10), next).unwrap();
        assert_eq!(r.phase(), Phase::OverlapOldSigning);
    }

    #[test]
    fn durations_read_like_flags() {
        assert_eq!(humanize(Duration::from_secs(90)), "1m 30s");
        assert_eq!(humanize(Duration::from_secs(86400)), "24h");
        assert_eq!(humanize(Duration::ZERO), "0s");
    }
}
