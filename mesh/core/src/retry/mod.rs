//! Retries: the policy (Istio `retries`), Envoy's jittered exponential backoff, the
//! per-cluster retry budget, and the per-request retry state machine.
//!
//! Semantics follow Istio and Envoy:
//!
//! * `attempts` is the number of *retries*: a request is tried at most `attempts + 1`
//!   times. A route with no `retries` block still retries: Istio applies
//!   [`RetryPolicy::istio_default`] (2 retries on connect failure, refused stream, gRPC
//!   `unavailable`/`cancelled`, and HTTP 503). Every [`RetryDecision::Retry`] says which
//!   policy source it came from, so the silent default shows up in traces.
//! * The route timeout bounds every try and backoff; the per-try timeout bounds one try.
//! * Retries prefer endpoints not tried yet ([`RetryState::excluded_endpoints`]).
//! * Concurrent retries per cluster are bounded by `maxRetries` or a retry budget
//!   ([`RetryBudget`]); a refused retry returns the last response as is.
//!
//! * [`policy`] — [`RetryPolicy`], `retryOn` conditions, result classification.
//! * [`backoff`] — [`Backoff`].
//! * [`budget`] — [`RetryBudget`], [`RetryBudgetPolicy`].
//! * [`state`] — [`RetryState`], [`RetryDecision`].

pub mod backoff;
pub mod budget;
pub mod policy;
pub mod state;

pub use backoff::Backoff;
pub use budget::{RetryBudget, RetryBudgetPolicy, RetryLimit, RetryLimiterKind, RetryOverflow};
pub use policy::{
    AttemptResult, DEFAULT_BACKOFF_BASE, RetryOn, RetryOnError, RetryPolicy, RetryPolicySource,
};
pub use state::{
    AttemptStart, GiveUpReason, RetryDecision, RetryReason, RetryState, RetryStateError,
};

use std::time::Duration;

/// Serializes a duration as integer nanoseconds (fields are renamed `*_ns`).
fn ser_ns<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Serializes an optional duration as integer nanoseconds or null.
fn ser_opt_ns<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_ns(d, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests;
