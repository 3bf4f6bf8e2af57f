//! What the certificate lifecycle tells its driver, and why: the decision trace.
//!
//! Times are [`Time`] (nanoseconds on the workload's clock); durations are `_ns`
//! fields. Everything serializes with an `event` tag and snake_case names.

use serde::Serialize;

use crate::Time;

/// Why a certificate request is sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RequestReason {
    /// The workload has never had a certificate.
    Initial,
    /// The current certificate reached its (jittered) renewal point.
    RenewalDue { renew_at: Time, not_after: Time },
    /// The previous attempt failed and its backoff has elapsed.
    Retry { consecutive_failures: u32 },
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FailureCause {
    /// The driver reported an error (CA unreachable, refused, ...).
    CaError { message: String },
    /// No answer within `request_timeout`.
    TimedOut { timeout_ns: u64 },
    /// The CA returned `not_after <= not_before`.
    InvalidCertificate { not_before: Time, not_after: Time },
    /// The certificate had already expired by the workload's clock when it arrived
    /// (a clock running ahead of the CA's, or a very short TTL).
    ExpiredOnArrival { not_after: Time },
}

/// Which answer was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IgnoredAnswer {
    Issued,
    Failed,
}

/// One event of the lifecycle, returned by the `handle_timeout` / `on_*` methods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum IdentityEvent {
    /// The driver must send a CSR to the CA now, asking for `ttl_requested_ns`, and
    /// report the answer with `on_issued` or `on_request_failed`.
    RequestCertificate {
        at: Time,
        /// 1 for the first attempt of a streak, +1 per retry.
        attempt: u32,
        reason: RequestReason,
        ttl_requested_ns: u64,
    },
    /// A certificate was accepted; renewal is scheduled at `renew_at`, drawn
    /// uniformly in `[renew_window_start, renew_window_end]`.
    Issued {
        at: Time,
        not_before: Time,
        not_after: Time,
        renew_at: Time,
        renew_window_start: Time,
        renew_window_end: Time,
        /// The window was already past on the workload's clock: renew immediately.
        renew_at_clamped_to_now: bool,
        /// `now < not_before` on the workload's clock (skew): usable only later.
        not_yet_valid: bool,
    },
    /// An attempt failed; the next one goes out at `retry_at`.
    RequestFailed {
        at: Time,
        attempt: u32,
        cause: FailureCause,
        backoff_ns: u64,
        retry_at: Time,
        /// The doubling hit `backoff_max`.
        backoff_capped: bool,
    },
    /// The current certificate lapsed before a new one arrived.
    Expired { at: Time, not_after: Time },
    /// An answer arrived with no request outstanding (duplicate or stale).
    AnswerIgnored {
        at: Time,
        answer: IgnoredAnswer,
        state: &'static str,
    },
}
