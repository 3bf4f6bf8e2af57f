//! The workload certificate lifecycle: request, renew, back off, expire.
//!
//! [`CertLifecycle`] is a sans-IO state machine for **one** workload certificate
//! (SVID). The CA's crypto lives in `mesh-ca`; this module only decides *when*:
//!
//! ```text
//! Unissued ──▶ Requesting ──issued──▶ Valid ──renew_at──▶ Renewing ──issued──▶ Valid
//!                 │  ▲                                      │    │
//!                 └──┘ failed/timeout: backoff, retry       │    └─not_after─▶ Expired
//!                                                           └ failed: backoff, retry   │
//!                                          Valid ◀──────────────issued────────────────┘
//! ```
//!
//! * Renewal at `renew_fraction` (default 50 %) of the certificate's lifetime, with
//!   jitter (default ±10 % of that point), see [`LifecycleConfig`].
//! * Exponential backoff while the CA is unreachable: `backoff_base × 2^(n−1)`, capped
//!   at `backoff_max`, optionally jittered.
//! * Expiry at `not_after` if no new certificate arrived; requests continue and a
//!   later issuance recovers.
//!
//! Every method returns [`IdentityEvent`]s saying what happened and why — the
//! decision trace for the event log and the UI.

mod config;
mod events;
mod lifecycle;

#[cfg(test)]
mod tests;

pub use config::{ConfigProblem, IdentityError, LifecycleConfig};
pub use events::{FailureCause, IdentityEvent, IgnoredAnswer, RequestReason};
pub use lifecycle::{Attempt, AttemptPhase, CertLifecycle, CertState, IssuedCert};
